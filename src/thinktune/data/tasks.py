"""Built-in synthetic reasoning tasks with genuine step-by-step traces.

A trace is *genuine* when each of its lines is a real intermediate result the answer depends on: corrupt one line
and the rest of the chain (and the answer) changes. That property is what lets the audit tell a working chain of
thought from a decorative one.

Each task is deterministic given ``seed`` (records are identical across machines and runs) and carries a verifier,
``task.verify(record, predicted_answer) -> bool``.

Tasks:

- ``chain_arith``: evaluate a left-to-right chain of additions / subtractions / small multiplications. With the
  default ``trace="rewrite"`` each line is the expression after one more operation has been carried out
  (``47 + 85 - 29`` → ``132 - 29`` → ``103``), a scratchpad in the style of Nye et al. (arXiv 2112.00114);
  ``trace="steps"`` writes one operation per line with its running total (``47 + 85 = 132``); ``trace="filler"``
  writes a *decorative* chain with the same answer: 1..max_ops+1 lines of 1..4 `` ...`` units, empty on 15 % of
  the items (the known-answer control of the audit, docs/METHODS.md, "Faithfulness of the chain": the answer has to be
  computed without the chain, so a model trained on it has an unfaithful chain by construction). Difficulty = number of
  operations and operand size; a k-step chain fails if any step fails, so accuracy falls with k and leaves room for RL
  after SFT.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from thinktune.data.records import Record
from thinktune.data.wordings import wide_question, worded_question


class Task(Protocol):
    name: str

    def generate(self, n: int, seed: int, **knobs: Any) -> list[Record]: ...

    def verify(self, record: Record, predicted: str | None) -> bool: ...


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip().replace(",", "")
    if t.startswith("+"):
        t = t[1:]
    try:
        return int(t)
    except ValueError:
        return None


FILLER_UNIT = " ..."  # the decorative chain's unit (also the audit's default filler_unit)


MAX_CHAIN_OPS = 1000  # one question per line of operations; more would be megabytes per record


@dataclass(frozen=True)
class ChainArithmetic:
    """Left-to-right arithmetic chains with one line per operation.

    Knobs: ``min_ops`` / ``max_ops`` (operations per chain), ``max_operand`` (operands drawn from 2..max_operand),
    ``ops`` (subset of "+-*"; "*" multiplies by a single digit 2..9 to keep numbers readable), ``max_value``
    (running totals stay in 0..max_value; subtraction never goes negative), ``trace`` ("rewrite", "steps" or
    "filler" = a decorative chain that does no work), ``wording`` ("compute" = "Compute 7 + 5 - 3."; "varied" =
    the same chain in one of many wordings, thinktune.data.wordings, for + and - chains; "wide" = the same families
    with wider lists of gain and loss verbs, operator words and imperatives).
    """

    name: str = "chain_arith"

    def generate(
        self,
        n: int,
        seed: int,
        min_ops: int = 2,
        max_ops: int = 4,
        max_operand: int = 99,
        ops: str = "+-",
        max_value: int = 999,
        trace: str = "rewrite",
        id_prefix: str | None = None,
        wording: str = "compute",
    ) -> list[Record]:
        if not 1 <= min_ops <= max_ops <= MAX_CHAIN_OPS:
            raise ValueError(f"need 1 <= min_ops <= max_ops <= {MAX_CHAIN_OPS}, got {min_ops}, {max_ops}")
        if max_operand < 2:
            raise ValueError(f"max_operand must be >= 2, got {max_operand}")
        if not ops or set(ops) - set("+-*"):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
        if trace not in ("rewrite", "steps", "filler"):
            raise ValueError(f"trace must be 'rewrite', 'steps' or 'filler', got {trace!r}")
        if wording not in ("compute", "varied", "wide"):
            raise ValueError(f"wording must be 'compute', 'varied' or 'wide', got {wording!r}")
        if wording != "compute" and "*" in ops:
            raise ValueError(f"wording={wording!r} words + and - chains only; drop '*' from ops")
        rng = random.Random(f"{self.name}:{seed}")
        prefix = id_prefix or f"{self.name}-s{seed}"
        return [self._one(rng, f"{prefix}-{i}", min_ops, max_ops, max_operand, ops, max_value, trace, wording)
                for i in range(n)]

    def _one(self, rng: random.Random, rid: str, min_ops: int, max_ops: int, max_operand: int, ops: str,
             max_value: int, trace: str, wording: str = "compute") -> Record:
        k = rng.randint(min_ops, max_ops)
        total = rng.randint(2, max_operand)
        start, steps = total, []
        terms, lines, totals = [str(total)], [], []
        for _ in range(k):
            op = self._pick_op(rng, ops, total, max_operand, max_value)
            if op == "+":
                b = rng.randint(2, max(2, min(max_operand, max_value - total)))
                new = total + b
            elif op == "-":
                b = rng.randint(1, min(max_operand, total))
                new = total - b
            else:
                b = rng.randint(2, max(2, min(9, max_value // max(total, 1))))
                new = total * b
            lines.append(f"{total} {op} {b} = {new}")
            terms.append(f"{op} {b}")
            steps.append((op, b))
            totals.append(new)
            total = new
        question = f"Compute {' '.join(terms)}."
        if wording != "compute":  # its own random stream: numbers, trace and answer are the templated item's
            question = (worded_question if wording == "varied" else wide_question)(random.Random(f"wording:{rid}"),
                                                                                   start, steps)
        if trace == "rewrite":  # line j: the running total after j+1 operations, then the untouched tail
            lines = [" ".join([str(t)] + terms[j + 2 :]) for j, t in enumerate(totals)]
        elif trace == "filler":  # its own random stream: the items are exactly those of the other traces
            frng = random.Random(f"filler:{rid}")
            lines = [] if frng.random() < 0.15 else [
                (FILLER_UNIT * frng.randint(1, 4)).strip() for _ in range(frng.randint(1, max_ops + 1))]
        return Record(id=rid, question=question, reasoning="\n".join(lines), answer=str(total), task=self.name,
                      meta={"n_ops": k})

    @staticmethod
    def _pick_op(rng: random.Random, ops: str, total: int, max_operand: int, max_value: int) -> str:
        allowed = []
        if "+" in ops and total + 2 <= max_value:
            allowed.append("+")
        if "-" in ops and total >= 1:
            allowed.append("-")
        if "*" in ops and total * 2 <= max_value and total >= 2:
            allowed.append("*")
        return rng.choice(allowed or ["-"])

    def verify(self, record: Record, predicted: str | None) -> bool:
        got = _int_or_none(predicted)
        return got is not None and got == _int_or_none(record.answer)


# --------------------------------------------------------------------------------------------------------------
# countdown

_LARGE = (25, 50, 75, 100)


def _eval_expression(text: str) -> tuple[Fraction, Counter] | None:
    """Exact value of an arithmetic expression of integers and + - * / (parentheses allowed), with the multiset of
    integers it uses. None for anything else (names, calls, powers, floats, division by zero, huge inputs)."""
    t = text.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    if len(t) > 200:
        return None
    try:
        tree = ast.parse(t, mode="eval")
    except (SyntaxError, ValueError):
        return None
    used: Counter = Counter()

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used[node.value] += 1
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if b == 0:
                raise ZeroDivisionError
            return a / b
        raise ValueError("not allowed")

    try:
        return ev(tree), used
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


_STEP = re.compile(r"^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Countdown:
    """Reach ``target`` from ``numbers`` with + - * / (TinyZero's Countdown). Integer intermediate results only.

    Knobs: ``min_numbers`` / ``max_numbers`` (how many numbers are given), ``max_small`` (small numbers 1..max_small),
    ``large_prob`` (chance that a number is one of 25/50/75/100), ``min_target`` / ``max_target``, ``use_all``
    (the reference solution uses every number; the verifier never requires it).
    """

    name: str = "countdown"

    def generate(self, n: int, seed: int, min_numbers: int = 3, max_numbers: int = 4, max_small: int = 10,
                 large_prob: float = 0.3, min_target: int = 10, max_target: int = 999, use_all: bool = True,
                 id_prefix: str | None = None) -> list[Record]:
        if not 2 <= min_numbers <= max_numbers <= 8:
            raise ValueError(f"need 2 <= min_numbers <= max_numbers <= 8, got {min_numbers}, {max_numbers}")
        if max_small < 2 or not 0 <= large_prob <= 1 or not 0 <= min_target <= max_target:
            raise ValueError("need max_small >= 2, 0 <= large_prob <= 1 and 0 <= min_target <= max_target")
        rng = random.Random(f"{self.name}:{seed}")
        prefix = id_prefix or f"{self.name}-s{seed}"
        out = []
        for i in range(n):
            for _ in range(10_000):
                rec = self._try_one(rng, f"{prefix}-{i}", min_numbers, max_numbers, max_small, large_prob, min_target,
                                    max_target, use_all)
                if rec is not None:
                    out.append(rec)
                    break
            else:
                raise ValueError(f"could not reach a target in [{min_target}, {max_target}]; widen the target range")
        return out

    def _try_one(self, rng: random.Random, rid: str, min_numbers: int, max_numbers: int, max_small: int,
                 large_prob: float, min_target: int, max_target: int, use_all: bool) -> Record | None:
        k = rng.randint(min_numbers, max_numbers)
        numbers = [rng.choice(_LARGE) if rng.random() < large_prob else rng.randint(1, max_small) for _ in range(k)]
        pool = [(v, str(v)) for v in numbers]  # (value, expression) still available
        lines = []
        n_ops = k - 1 if use_all else rng.randint(1, k - 1)
        for _ in range(n_ops):
            i, j = rng.sample(range(len(pool)), 2)
            (a, ea), (b, eb) = pool[i], pool[j]
            if a < b:
                (a, ea), (b, eb) = (b, eb), (a, ea)
            choices = ["+", "*"] + (["-"] if a > b else []) + (["/"] if b > 1 and a % b == 0 else [])
            op = rng.choice(choices)
            v = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
            pool = [p for idx, p in enumerate(pool) if idx not in (i, j)] + [(v, f"({ea} {op} {eb})")]
            lines.append(f"{a} {op} {b} = {v}")
        target, expr = pool[-1]
        if not min_target <= target <= max_target or target in numbers:
            return None
        expr = expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr
        question = (f"Using the numbers {', '.join(map(str, numbers))}, make {target}. You may use +, -, * and /, "
                    "and each number at most once.")
        return Record(id=rid, question=question, reasoning="\n".join(lines), answer=expr, task=self.name,
                      meta={"numbers": numbers, "target": target})

    @staticmethod
    def _numbers_target(record: Record) -> tuple[list[int], int] | None:
        meta = record.meta or {}
        if "numbers" in meta and "target" in meta:
            return list(meta["numbers"]), int(meta["target"])
        m = re.search(r"numbers ([\d, ]+), make (\d+)", record.question)
        if not m:
            return None
        return [int(x) for x in m.group(1).replace(" ", "").split(",") if x], int(m.group(2))

    def verify(self, record: Record, predicted: str | None) -> bool:
        spec = self._numbers_target(record)
        if predicted is None or spec is None:
            return False
        numbers, target = spec
        expr = predicted.strip()
        if "=" in expr:  # "(75 - 25) * 4 = 200": judge the left side, the right side must agree if it is a number
            left, _, right = expr.partition("=")
            if right.strip() and _int_or_none(right) != target:
                return False
            expr = left
        got = _eval_expression(expr)
        if got is None:
            return False
        value, used = got
        return value == target and not (used - Counter(numbers))

    def answer_from_reasoning(self, record: Record) -> str | None:
        """Rebuild the expression a trace computes, one ``a op b = c`` line at a time (None if a line is not one)."""
        avail: list[tuple[int, str]] = [(v, str(v)) for v in (self._numbers_target(record) or ([], 0))[0]]
        expr = None
        for line in record.reasoning.splitlines():
            if not line.strip():
                continue
            m = _STEP.match(line)
            if not m:
                return None
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            if (op == "/" and b == 0) or {"+": Fraction(a + b), "-": Fraction(a - b), "*": Fraction(a * b),
                                          "/": Fraction(a, b or 1)}[op] != c:
                return None  # a wrong step: the trace does not compute what it claims
            parts = []
            for val in (a, b):
                idx = next((i for i in range(len(avail) - 1, -1, -1) if avail[i][0] == val), None)
                if idx is None:
                    return None
                parts.append(avail.pop(idx)[1])
            expr = f"({parts[0]} {op} {parts[1]})"
            avail.append((c, expr))
        return expr[1:-1] if expr else None


# --------------------------------------------------------------------------------------------------------------
# ordering

_NAMES = ("Ava", "Ben", "Cal", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kai", "Lea", "Max", "Nia", "Oto",
          "Pia", "Quin", "Ray", "Sue", "Tom")
_RELATIONS = (("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
              ("heavier", "lighter", "heaviest", "lightest"), ("faster", "slower", "fastest", "slowest"))
_ORDINALS = ("", "", "second ", "third ", "fourth ", "fifth ", "sixth ", "seventh ", "eighth ", "ninth ", "tenth ")


@dataclass(frozen=True)
class Ordering:
    """Rank people from pairwise facts, then name the person at one rank.

    Knobs: ``min_people`` / ``max_people``, ``distractors`` (redundant facts implied by the others, shuffled in),
    ``ask`` ("extreme": the top or bottom person; "any": any rank, e.g. "the third tallest").
    """

    name: str = "ordering"

    def generate(self, n: int, seed: int, min_people: int = 3, max_people: int = 5, distractors: int = 0,
                 ask: str = "extreme", id_prefix: str | None = None) -> list[Record]:
        if not 2 <= min_people <= max_people <= len(_NAMES):
            raise ValueError(f"need 2 <= min_people <= max_people <= {len(_NAMES)}, got {min_people}, {max_people}")
        if ask not in ("extreme", "any") or distractors < 0:
            raise ValueError(f"ask must be 'extreme' or 'any' and distractors >= 0, got {ask!r}, {distractors}")
        rng = random.Random(f"{self.name}:{seed}")
        prefix = id_prefix or f"{self.name}-s{seed}"
        return [self._one(rng, f"{prefix}-{i}", min_people, max_people, distractors, ask) for i in range(n)]

    def _one(self, rng: random.Random, rid: str, min_people: int, max_people: int, distractors: int,
             ask: str) -> Record:
        k = rng.randint(min_people, max_people)
        order = rng.sample(_NAMES, k)  # order[0] ranks highest
        more, less, top, bottom = rng.choice(_RELATIONS)
        pairs = [(order[i], order[i + 1]) for i in range(k - 1)]
        extra = [(order[i], order[j]) for i in range(k) for j in range(i + 2, k)]
        pairs += rng.sample(extra, min(distractors, len(extra)))
        rng.shuffle(pairs)
        facts = [f"{a} is {more} than {b}." if rng.random() < 0.5 else f"{b} is {less} than {a}." for a, b in pairs]
        if ask == "extreme":
            position = rng.choice([1, k])
        else:
            position = rng.randint(1, k)
        from_top = position <= (k + 1) // 2
        rank = position if from_top else k - position + 1
        word = top if from_top else bottom
        question = " ".join(facts) + f" Who is the {_ORDINALS[rank] if rank > 1 else ''}{word}?"
        adjacent = {(order[i], order[i + 1]) for i in range(k - 1)}
        lines = self._derive([p for p in pairs if p in adjacent], more)
        return Record(id=rid, question=question, reasoning="\n".join(lines), answer=order[position - 1],
                      task=self.name, meta={"position": position, "people": k})

    @staticmethod
    def _derive(pairs: list[tuple[str, str]], more: str) -> list[str]:
        """One line per person added to the order known so far; each line is a genuine intermediate state.

        Only facts that extend the known order at one of its ends are used (a fact ``a > b`` with ``a`` last in the
        order puts ``b`` after it, with ``b`` first puts ``a`` before it), so the loop always completes.
        """
        chain = list(pairs[0])
        lines = [f"{pairs[0][0]} is {more} than {pairs[0][1]}: {' > '.join(chain)}"]
        progress = True
        while progress:
            progress = False
            for a, b in pairs:
                if a == chain[-1] and b not in chain:
                    chain.append(b)
                elif b == chain[0] and a not in chain:
                    chain.insert(0, a)
                else:
                    continue
                lines.append(f"{a} is {more} than {b}: {' > '.join(chain)}")
                progress = True
                break
        return lines

    def verify(self, record: Record, predicted: str | None) -> bool:
        if predicted is None:
            return False
        return predicted.strip().strip(".").casefold() == record.answer.strip().casefold()

    def answer_from_reasoning(self, record: Record) -> str | None:
        lines = [ln for ln in record.reasoning.splitlines() if ">" in ln]
        position = (record.meta or {}).get("position")
        if not lines or not isinstance(position, int):
            return None
        chain = [p.strip() for p in lines[-1].rsplit(":", 1)[-1].split(">")]
        return chain[position - 1] if 1 <= position <= len(chain) else None


# --------------------------------------------------------------------------------------------------------------
# reasoning-gym


def _jsonable(obj: Any) -> Any:
    """reasoning-gym metadata holds tuples and sets; store what JSON can hold (the scorer gets it back as lists)."""
    return json.loads(json.dumps(obj, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


@dataclass(frozen=True)
class ReasoningGym:
    """A reasoning-gym dataset by name; its scorer is the verifier. Knobs: ``dataset`` (required), ``config``."""

    name: str = "reasoning_gym"

    def generate(self, n: int, seed: int, dataset: str | None = None, config: dict[str, Any] | None = None,
                 id_prefix: str | None = None) -> list[Record]:
        rg = _import_reasoning_gym()
        if not dataset:
            raise ValueError("reasoning_gym needs knobs.dataset, e.g. {dataset: leg_counting}")
        try:
            ds = rg.create_dataset(dataset, size=n, seed=seed, **(config or {}))
        except (KeyError, ValueError, TypeError, AssertionError) as e:
            raise ValueError(f"reasoning_gym dataset {dataset!r}: {e}") from None
        prefix = id_prefix or f"rg-{dataset}-s{seed}"
        out = []
        for i, entry in enumerate(ds):
            # task "rg:<dataset>" + meta.metadata is the answer layer's convention (data/answers.py grade)
            out.append(Record(id=f"{prefix}-{i}", question=entry["question"], answer=str(entry["answer"]),
                              task=f"rg:{dataset}", meta={"metadata": _jsonable(entry["metadata"])}))
        return out

    def verify(self, record: Record, predicted: str | None) -> bool:
        """The dataset's own scorer on one answer (the answer layer's ``grade`` adds hedge and gold checks)."""
        dataset = reasoning_gym_dataset(record)
        if dataset is None or predicted is None or not predicted.strip():
            return False
        return reasoning_gym_score(record, dataset, predicted)


def reasoning_gym_dataset(record: Record) -> str | None:
    """The reasoning-gym dataset of a record tagged ``rg:<dataset>`` (or ``reasoning_gym:<dataset>``), else None."""
    for prefix in ("rg:", "reasoning_gym:"):
        if record.task.startswith(prefix):
            return record.task[len(prefix) :]
    return None


def reasoning_gym_score(record: Record, dataset: str, predicted: str) -> bool:
    """reasoning-gym's ``score_answer`` for the entry stored in ``record.meta["metadata"]``: passes at 1.0."""
    import reasoning_gym

    entry = {"question": record.question, "answer": record.answer, "metadata": record.meta.get("metadata", {})}
    score = reasoning_gym.get_score_answer_fn(dataset)(predicted, entry)
    return float(score) >= 1.0 - 1e-9


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ValueError("reasoning-gym is not installed (pip install 'reasoning-gym>=0.1.25')") from None
    return reasoning_gym


TASKS: dict[str, Callable[[], Task]] = {"chain_arith": ChainArithmetic, "countdown": Countdown, "ordering": Ordering,
                                        "reasoning_gym": ReasoningGym}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise KeyError(f"unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}") from None
