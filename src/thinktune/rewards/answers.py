"""The answer layer: extract a final answer from a completion and decide whether it matches the gold.

Used by rewards, data curation and the audit alike (one grader per task; STYLE.md rule 11), so training and
evaluation cannot drift apart.

- :func:`extract_answer` reads the answer block through the one parser (formatting.py).
- :func:`grade` returns ``True`` / ``False``, or ``None`` when the *gold* cannot be interpreted: an unparseable
  reference is excluded from scoring, never rewarded (huggingface/open-r1#215).
"""

from __future__ import annotations

import re

from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def extract_answer(completion: str, fmt: CompletionFormat = DEFAULT_FORMAT, think_prefilled: bool = False) -> str | None:
    """The content of the single answer block, or None (no block, several blocks, unclosed)."""
    return parse_completion(completion, fmt, think_prefilled).answer


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, drop thousands separators and a trailing period."""
    t = " ".join(text.strip().lower().split())
    t = t.rstrip(".")
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    return t


def _as_number(text: str) -> float | None:
    t = normalize(text)
    return float(t) if _NUMBER.match(t) else None


def grade(record: Record, predicted: str | None, rel_tol: float = 1e-9) -> bool | None:
    """Is ``predicted`` equivalent to ``record.answer``? None when the gold itself is unusable.

    Built-in tasks use their own verifier; otherwise numbers compare numerically and text compares normalised.
    """
    gold = record.answer
    if gold is None or not gold.strip():
        return None
    if predicted is None or not predicted.strip():
        return False
    from thinktune.data.tasks import TASKS

    if record.task in TASKS:
        return TASKS[record.task]().verify(record, predicted)
    g, p = _as_number(gold), _as_number(predicted)
    if g is not None:
        return p is not None and abs(g - p) <= rel_tol * max(1.0, abs(g))
    return normalize(gold) == normalize(predicted)
