"""Varied wordings of a left-to-right chain of additions and subtractions (``chain_arith``'s ``wording="varied"``).

One template ("Compute 7 + 5 - 3.") teaches a model the template as much as the arithmetic: on SmolLM2-135M-Instruct,
GRPO reached 82.8 % on templated held-out problems and 18.8 % on hand-written paraphrases of the same chains
(docs/RESULTS.md, "A real model: SmolLM2-135M-Instruct"). Training on many wordings of the same chains is the usual
remedy (data augmentation by paraphrase, as in the instruction-tuning literature, e.g. FLAN's several templates per
task, arXiv 2109.01652); here the wordings are procedural, so the numbers, the trace and the answer stay exactly
those of the templated item.

The hand-written paraphrase set (recipes/data/chain_arith_paraphrases.jsonl) is *not* drawn from these templates:
it was written separately, item by item, and stays the held-out test of whether a gain survives a change of wording.
Some of its styles (word problems, spelled-out numbers) are also families here; no sentence is shared.

Only "+" and "-" chains are worded; a chain with "*" keeps the symbolic form.
"""

from __future__ import annotations

import random

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for 0..999 ("forty-two"); digits above that."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    return str(n)


# word problems: (setting with {name} and {a}, verb phrase for +b, verb phrase for -b, question)
_STORIES = [
    ("{name} has {a} marbles.", "{They} wins {b} more", "{They} loses {b}", "How many marbles does {name} have now?"),
    ("{name} collects stickers and has {a} of them.", "{They} is given {b}", "{They} trades away {b}",
     "How many stickers does {name} own at the end?"),
    ("A bus leaves the depot with {a} people on board.", "{b} people get on", "{b} people get off",
     "How many people are on the bus after these stops?"),
    ("{name}'s wallet holds {a} dollars.", "{They} earns {b} dollars", "{They} spends {b} dollars",
     "How many dollars are in the wallet now?"),
    ("At dawn the thermometer reads {a} degrees.", "it warms up by {b} degrees", "it cools down by {b} degrees",
     "What does the thermometer read at the end?"),
    ("A lift is on floor {a}.", "it rises {b} floors", "it descends {b} floors", "Which floor is the lift on now?"),
    ("{name}'s team has {a} points.", "they score {b} points", "they are penalised {b} points",
     "What is the team's score now?"),
    ("A shelf holds {a} books.", "the librarian adds {b} books", "readers borrow {b} books",
     "How many books are on the shelf now?"),
    ("A farmer keeps {a} sheep in a field.", "{b} more sheep are brought in", "{b} sheep are moved out",
     "How many sheep are in the field now?"),
    ("A jar contains {a} cookies.", "{name} bakes {b} more and puts them in", "{name} eats {b}",
     "How many cookies remain in the jar?"),
]
_NAMES = [("Ana", "She"), ("Ben", "He"), ("Chen", "He"), ("Dara", "She"), ("Eli", "He"), ("Farah", "She"),
          ("Gus", "He"), ("Hana", "She"), ("Ivo", "He"), ("Jin", "She")]
_ADD = ["add {b}", "plus {b}", "increase it by {b}", "put {b} more on", "add on {b}"]
_SUB = ["subtract {b}", "minus {b}", "decrease it by {b}", "take {b} off", "remove {b}"]
_JOIN = [", then ", ", after that ", " and then ", ", next "]


def _story(rng: random.Random, a: int, steps: list[tuple[str, int]]) -> str:
    setting, plus, minus, question = rng.choice(_STORIES)
    name, they = rng.choice(_NAMES)
    events = []
    for i, (op, b) in enumerate(steps):
        phrase = (plus if op == "+" else minus).format(b=b, name=name, They=they.lower())
        if i > 0 and phrase.startswith(name):  # "Ana bakes ..., then she eats 3"
            phrase = they.lower() + phrase[len(name):]
        events.append(phrase)
    first = rng.choice(["Then ", "First ", "During the day "]) + events[0]
    body = first + "".join(rng.choice(_JOIN) + e for e in events[1:]) + "."
    return " ".join([setting.format(name=name, a=a), body, question.format(name=name)])


def worded_question(rng: random.Random, a: int, steps: list[tuple[str, int]]) -> str:
    """One wording of ``a op1 b1 op2 b2 ...`` (ops "+" / "-" only), drawn with ``rng``."""
    if any(op not in "+-" for op, _ in steps):
        raise ValueError("only + and - chains have worded forms")
    family = rng.randrange(6)
    if family == 0:  # symbolic, as the template
        return "Compute " + " ".join([str(a)] + [f"{op} {b}" for op, b in steps]) + "."
    if family == 1:  # operator words, digits or words
        spell = number_words if rng.random() < 0.5 else str
        expr = " ".join([spell(a)] + [("plus " if op == "+" else "minus ") + spell(b) for op, b in steps])
        asks = ["What is {e}?", "How much is {e}?", "Work out {e}.", "Find the value of {e}."]
        return rng.choice(asks).format(e=expr)
    if family == 2:  # imperative chain
        parts = [rng.choice(_ADD if op == "+" else _SUB).format(b=b) for op, b in steps]
        chain = parts[0] + "".join(rng.choice(_JOIN) + p for p in parts[1:])
        opening = rng.choice(["Begin with {a}", "Take the number {a}", "Starting from {a}", "Write down {a}"])
        close = rng.choice(["What number do you end with?", "What is the result?", "What do you have now?"])
        return f"{opening.format(a=a)}; {chain}. {close}"
    if family == 3:  # a quantity that goes up and down
        moves = [("goes up by " if op == "+" else "goes down by ") + str(b) for op, b in steps]
        return (f"A counter shows {a}. It " + moves[0] + "".join(rng.choice(_JOIN) + m for m in moves[1:])
                + ". What does the counter show at the end?")
    if family == 4:  # a variable
        var = rng.choice("xynk")
        upd = [f"{var} {'increases' if op == '+' else 'decreases'} by {b}" for op, b in steps]
        return f"Let {var} = {a}. Then " + ", then ".join(upd) + f". What is {var} now?"
    return _story(rng, a, steps)


# ---- wording="wide": a wider lexicon of gains and losses ------------------------------------------------------------
# A model trained on "varied" read the operation off the verb it had seen with a story: SmolLM2's GRPO model got the
# sign of an operation wrong in 24-29 % of hand-written paraphrases vs 11-14 % of held-out items (docs/RESULTS.md).
# "wide" draws every event's verb separately from a setting's list of gain and loss phrases (present or past tense),
# so that one problem mixes verbs and the same verb ("buys") can add in one setting and subtract in another; it also
# widens the operator words and imperatives ("take away", "subtract b from that"). The lists were written from
# ordinary English usage, not copied from the paraphrase file, which stays the held-out test. Measured on SmolLM2
# (seed 0): no better on the paraphrases than "varied" (GRPO 36.8 vs 38.9 %) and slower to learn; docs/RESULTS.md,
# "A wider lexicon of gains and losses".

# setting: (opening present, opening past, gains, losses, question present, question past); a gain or loss is
# (present, past) with {b}, {name}, {they} / {them}.
_WIDE_SETTINGS = [
    ("{name} has {a} marbles.", "{name} had {a} marbles.",
     [("{they} wins {b} more", "{they} won {b} more"), ("{they} finds {b}", "{they} found {b}"),
      ("a friend gives {them} {b}", "a friend gave {them} {b}"), ("{they} buys {b} more", "{they} bought {b} more")],
     [("{they} loses {b}", "{they} lost {b}"), ("{they} gives {b} to a friend", "{they} gave {b} to a friend"),
      ("{they} trades away {b}", "{they} traded away {b}"), ("{they} drops {b} down a drain", "{they} dropped {b} down a drain")],
     "How many marbles does {name} have now?", "How many marbles did {name} have in the end?"),
    ("{name} has {a} dollars.", "{name} had {a} dollars.",
     [("{they} earns {b} dollars", "{they} earned {b} dollars"), ("{they} is paid {b} dollars", "{they} was paid {b} dollars"),
      ("{they} gets {b} dollars as a gift", "{they} got {b} dollars as a gift"), ("{they} finds {b} dollars", "{they} found {b} dollars"),
      ("{they} sells a book for {b} dollars", "{they} sold a book for {b} dollars")],
     [("{they} spends {b} dollars", "{they} spent {b} dollars"), ("{they} pays {b} dollars for a ticket", "{they} paid {b} dollars for a ticket"),
      ("{they} buys a snack for {b} dollars", "{they} bought a snack for {b} dollars"),
      ("{they} lends {b} dollars to a friend", "{they} lent {b} dollars to a friend"), ("{they} loses {b} dollars", "{they} lost {b} dollars")],
     "How much money does {name} have now?", "How many dollars did {name} have left?"),
    ("A jar holds {a} cookies.", "There were {a} cookies in a jar.",
     [("{name} bakes {b} more", "{name} baked {b} more"), ("{name} puts in {b} more", "{name} put in {b} more"),
      ("a neighbour brings {b}", "a neighbour brought {b}")],
     [("{name} eats {b}", "{name} ate {b}"), ("the children take {b}", "the children took {b}"),
      ("{name} gives away {b}", "{name} gave away {b}"), ("{b} are used for a party", "{b} were used for a party")],
     "How many cookies are in the jar now?", "How many cookies were left in the jar?"),
    ("A bus has {a} passengers.", "A train left the station with {a} passengers.",
     [("{b} people get on", "{b} people got on"), ("{b} more passengers board", "{b} more passengers boarded"),
      ("{b} people climb aboard", "{b} people climbed aboard")],
     [("{b} people get off", "{b} people got off"), ("{b} passengers step off", "{b} passengers stepped off"),
      ("{b} riders leave", "{b} riders left")],
     "How many passengers are on board now?", "How many passengers were on board at the end?"),
    ("The temperature is {a} degrees.", "In the morning it was {a} degrees.",
     [("it rises {b} degrees", "it rose {b} degrees"), ("it warms by {b} degrees", "it warmed by {b} degrees"),
      ("it climbs {b} degrees", "it climbed {b} degrees")],
     [("it drops {b} degrees", "it dropped {b} degrees"), ("it falls by {b} degrees", "it fell by {b} degrees"),
      ("it cools {b} degrees", "it cooled {b} degrees")],
     "What is the temperature now?", "What was the temperature at the end?"),
    ("A lift stands at floor {a}.", "{name} started on step {a} of a staircase.",
     [("it goes up {b} floors", "{they} went up {b} steps"), ("it climbs {b} floors", "{they} climbed {b} steps")],
     [("it goes down {b} floors", "{they} went down {b} steps"), ("it descends {b} floors", "{they} stepped back {b} steps")],
     "Which floor is the lift on now?", "Which step was {name} on at the end?"),
    ("A team has {a} points.", "{name} had {a} points in a game.",
     [("they score {b} points", "{they} scored {b} points"), ("they gain {b} points", "{they} won {b} points"),
      ("they get a bonus of {b}", "{they} earned a bonus of {b}")],
     [("they lose {b} points", "{they} lost {b} points"), ("they are penalised {b} points", "{they} had {b} points taken away"),
      ("{b} points are deducted", "a penalty cost {them} {b} points")],
     "What is the score now?", "How many points did {name} finish with?"),
    ("A shelf holds {a} books.", "The library shelf had {a} books.",
     [("the librarian adds {b}", "the librarian added {b}"), ("readers return {b}", "readers returned {b}"),
      ("{b} new books are donated", "{b} new books were donated")],
     [("readers borrow {b}", "readers borrowed {b}"), ("{b} are taken out", "{b} were taken out"),
      ("the librarian removes {b}", "the librarian removed {b}")],
     "How many books are on the shelf now?", "How many books were on the shelf after that?"),
    ("A farm has {a} sheep.", "A farmer had {a} goats.",
     [("{b} lambs are born", "{b} kids were born"), ("the farmer buys {b}", "the farmer bought {b}"),
      ("{b} wander in", "{b} wandered in")],
     [("the farmer sells {b}", "the farmer sold {b}"), ("{b} run away", "{b} ran away"),
      ("{b} are moved to another farm", "{b} were moved to another farm")],
     "How many animals are on the farm now?", "How many animals did the farmer have then?"),
    ("A tank holds {a} litres of water.", "A barrel had {a} litres of rain water.",
     [("{name} pours in {b} litres", "{name} poured in {b} litres"), ("rain adds {b} litres", "rain added {b} litres")],
     [("{b} litres leak out", "{b} litres leaked out"), ("{name} uses {b} litres", "{name} used {b} litres"),
      ("{b} litres are drained", "{b} litres were drained")],
     "How many litres are in the tank now?", "How many litres were left?"),
    ("{name}'s savings account holds {a} dollars.", "{name} kept {a} coins in a piggy bank.",
     [("{they} deposits {b}", "{they} put in {b}"), ("{they} adds {b}", "{they} saved {b} more")],
     [("{they} withdraws {b}", "{they} took out {b}"), ("{they} takes out {b}", "{they} shook out {b}")],
     "How much is in the account now?", "How many coins were in the piggy bank then?"),
    ("A shop has {a} hats in stock.", "A bakery had {a} loaves.",
     [("a delivery brings {b}", "the baker made {b} more"), ("the owner orders {b} more", "a delivery brought {b}")],
     [("customers buy {b}", "customers bought {b}"), ("the shop sells {b}", "{b} were sold")],
     "How many hats are in stock now?", "How many loaves were left?"),
    ("A token sits at {a} on a number line.", "A robot stood at position {a} on a track.",
     [("it moves {b} to the right", "it moved {b} forward"), ("it jumps {b} forward", "it rolled ahead {b}")],
     [("it moves {b} to the left", "it moved {b} back"), ("it steps back {b}", "it rolled back {b}")],
     "Where is the token now?", "Where did the robot end up?"),
    ("A parking lot has {a} cars.", "A pond had {a} ducks.",
     [("{b} cars drive in", "{b} ducks flew in"), ("{b} more park", "{b} more ducks landed")],
     [("{b} cars drive away", "{b} ducks flew away"), ("{b} leave", "{b} swam off")],
     "How many cars are in the lot now?", "How many ducks were on the pond then?"),
    ("A plant is {a} centimetres tall.", "A kite flew at {a} metres.",
     [("it grows {b} centimetres", "it rose {b} metres"), ("it shoots up {b} centimetres", "it climbed {b} metres")],
     [("{name} trims {b} centimetres off", "it sank {b} metres"), ("it is cut back by {b} centimetres", "it dipped {b} metres")],
     "How tall is the plant now?", "How high was the kite in the end?"),
]
_WIDE_NAMES = _NAMES + [("Kai", "He"), ("Lina", "She"), ("Mo", "He"), ("Nora", "She"), ("Omar", "He"), ("Pia", "She")]
_WIDE_ADD = _ADD + ["add on {b}", "then {b} more", "raise it by {b}", "add {b} to it", "count up {b}"]
_WIDE_SUB = _SUB + ["take away {b}", "subtract {b} from that", "lower it by {b}", "reduce it by {b}", "count down {b}",
                    "take {b} away"]
_WIDE_JOIN = _JOIN + [", ", "; then ", ", and after that "]
_WIDE_OPENING = ["Begin with {a}", "Take the number {a}", "Starting from {a}", "Write down {a}", "Think of {a}",
                 "Start at {a}", "You have {a}", "Let the total be {a}"]
_WIDE_CLOSE = ["What number do you end with?", "What is the result?", "What do you have now?", "What is the total?",
               "What number is left?", "Where do you end up?"]
_OP_WORDS = {"+": ["plus", "add", "and"], "-": ["minus", "take away", "less"]}


def _wide_story(rng: random.Random, a: int, steps: list[tuple[str, int]], spell) -> str:
    present, past, gains, losses, q_present, q_past = rng.choice(_WIDE_SETTINGS)
    tense = rng.randrange(2)
    name, they = rng.choice(_WIDE_NAMES)
    pron = {"they": they.lower(), "them": "her" if they == "She" else "him"}
    events = []
    for op, b in steps:
        phrase = rng.choice(gains if op == "+" else losses)[tense]
        events.append(phrase.format(b=spell(b), name=name, **pron))
    first = rng.choice(["Then ", "First ", "Later ", "After a while ", ""]) + events[0]
    first = first[0].upper() + first[1:]
    body = first + "".join(rng.choice(_WIDE_JOIN) + e for e in events[1:]) + "."
    opening = (present, past)[tense].format(name=name, a=spell(a))
    return " ".join([opening[0].upper() + opening[1:], body, (q_present, q_past)[tense].format(name=name)])


def wide_question(rng: random.Random, a: int, steps: list[tuple[str, int]]) -> str:
    """One ``wording="wide"`` form of ``a op1 b1 op2 b2 ...`` (+ and - only): the "varied" families with wider lists
    of verbs, operator words and imperatives; word problems draw each event's phrase separately."""
    if any(op not in "+-" for op, _ in steps):
        raise ValueError("only + and - chains have worded forms")
    spell = number_words if rng.random() < 0.25 else str
    family = rng.randrange(6)
    if family == 0:
        return "Compute " + " ".join([str(a)] + [f"{op} {b}" for op, b in steps]) + "."
    if family == 1:
        expr = " ".join([spell(a)] + [rng.choice(_OP_WORDS[op]) + " " + spell(b) for op, b in steps])
        asks = ["What is {e}?", "How much is {e}?", "Work out {e}.", "Find the value of {e}.", "Calculate {e}.",
                "What do you get from {e}?"]
        return rng.choice(asks).format(e=expr)
    if family == 2:
        parts = [rng.choice(_WIDE_ADD if op == "+" else _WIDE_SUB).format(b=spell(b)) for op, b in steps]
        chain = parts[0] + "".join(rng.choice(_WIDE_JOIN) + p for p in parts[1:])
        return f"{rng.choice(_WIDE_OPENING).format(a=spell(a))}; {chain}. {rng.choice(_WIDE_CLOSE)}"
    if family == 3:
        up = ["goes up by {b}", "rises by {b}", "increases by {b}", "climbs {b}", "gains {b}"]
        down = ["goes down by {b}", "falls by {b}", "decreases by {b}", "drops {b}", "loses {b}"]
        moves = [rng.choice(up if op == "+" else down).format(b=spell(b)) for op, b in steps]
        thing = rng.choice(["A counter shows", "A scoreboard reads", "A meter reads", "A display shows"])
        return (f"{thing} {spell(a)}. It " + moves[0] + "".join(rng.choice(_WIDE_JOIN) + m for m in moves[1:])
                + ". What does it show at the end?")
    if family == 4:
        var = rng.choice("xynkabm")
        upd = [f"{var} {rng.choice(['increases', 'grows', 'goes up']) if op == '+' else rng.choice(['decreases', 'shrinks', 'goes down'])}"
               f" by {spell(b)}" for op, b in steps]
        return f"Let {var} = {spell(a)}. Then " + ", then ".join(upd) + f". What is {var} now?"
    return _wide_story(rng, a, steps, spell)
