"""Built-in synthetic reasoning tasks with genuine step-by-step traces.

A trace is *genuine* when each of its lines is a real intermediate result the answer depends on: corrupt one line
and the rest of the chain (and the answer) changes. That property is what lets the audit tell a working chain of
thought from a decorative one.

Each task is deterministic given ``seed`` (records are identical across machines and runs) and carries a verifier,
``task.verify(record, predicted_answer) -> bool``.

Tasks:

- ``chain_arith``: evaluate a left-to-right chain of additions / subtractions / small multiplications, one
  operation per line with its running total (``47 + 85 = 132``). Difficulty = number of operations and operand
  size; a k-step chain fails if any step fails, so accuracy falls with k and leaves room for RL after SFT.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from thinktune.data.records import Record


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


@dataclass(frozen=True)
class ChainArithmetic:
    """Left-to-right arithmetic chains with one line per operation.

    Knobs: ``min_ops`` / ``max_ops`` (operations per chain), ``max_operand`` (operands drawn from 2..max_operand),
    ``ops`` (subset of "+-*"; "*" multiplies by a single digit 2..9 to keep numbers readable), ``max_value``
    (running totals stay in 0..max_value; subtraction never goes negative).
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
        id_prefix: str | None = None,
    ) -> list[Record]:
        if not 1 <= min_ops <= max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops}, {max_ops}")
        if max_operand < 2:
            raise ValueError(f"max_operand must be >= 2, got {max_operand}")
        if not ops or set(ops) - set("+-*"):
            raise ValueError(f"ops must be a non-empty subset of '+-*', got {ops!r}")
        rng = random.Random(f"{self.name}:{seed}")
        prefix = id_prefix or f"{self.name}-s{seed}"
        return [self._one(rng, f"{prefix}-{i}", min_ops, max_ops, max_operand, ops, max_value) for i in range(n)]

    def _one(self, rng: random.Random, rid: str, min_ops: int, max_ops: int, max_operand: int, ops: str,
             max_value: int) -> Record:
        k = rng.randint(min_ops, max_ops)
        total = rng.randint(2, max_operand)
        terms, lines = [str(total)], []
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
            total = new
        question = f"Compute {' '.join(terms)}."
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


TASKS: dict[str, Callable[[], Task]] = {"chain_arith": ChainArithmetic}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise KeyError(f"unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}") from None
