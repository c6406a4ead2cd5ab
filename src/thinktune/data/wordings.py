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
