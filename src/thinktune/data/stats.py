"""Dataset statistics: counts, length histograms, answer-format distribution, per-task breakdown.

``thinktune data stats file.jsonl [--tokenizer smollm2]`` prints them; the data stage writes them to
``runs/<name>/data/stats.json``. Lengths are tokens when a tokenizer is given, else UTF-8 bytes (the unit is
recorded next to the numbers).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, render

EDGES = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)

_INT = re.compile(r"[-+]?\d{1,3}(,\d{3})+|[-+]?\d+")
_DEC = re.compile(r"[-+]?(\d+\.\d*|\.\d+)")
_FRAC = re.compile(r"[-+]?\d+\s*/\s*\d+")
_EXPR = re.compile(r"[\d\s+\-*/().×÷]+")


def answer_format(answer: str) -> str:
    """A coarse class of a gold answer: integer, decimal, fraction, latex, yes_no, choice, expression, text, empty."""
    a = answer.strip()
    if not a:
        return "empty"
    if _INT.fullmatch(a):
        return "integer"
    if _DEC.fullmatch(a):
        return "decimal"
    if _FRAC.fullmatch(a):
        return "fraction"
    if "\\" in a or "$" in a or "^" in a or "{" in a:
        return "latex"
    if a.casefold().rstrip(".") in ("yes", "no", "true", "false"):
        return "yes_no"
    if re.fullmatch(r"\(?[A-Ea-e]\)?", a):
        return "choice"
    if _EXPR.fullmatch(a) and any(op in a for op in "+-*/×÷"):
        return "expression"
    return "text"


def histogram(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    v = np.asarray(values)
    counts, _ = np.histogram(v, bins=list(EDGES) + [max(EDGES[-1] + 1, int(v.max()) + 1)])
    bins = {f"{lo}-{EDGES[i + 1] - 1 if i + 1 < len(EDGES) else 'max'}": int(c)
            for i, (lo, c) in enumerate(zip(EDGES, counts)) if c}
    return {"count": len(values), "mean": round(float(v.mean()), 1), "p50": int(np.percentile(v, 50)),
            "p90": int(np.percentile(v, 90)), "p99": int(np.percentile(v, 99)), "max": int(v.max()), "bins": bins}


def compute_stats(records: Iterable[Record], tokenizer=None, fmt: CompletionFormat = DEFAULT_FORMAT,
                  batch_size: int = 1024) -> dict[str, Any]:
    """Counts and distributions over ``records`` (one pass; lengths batched through the tokenizer if given)."""
    n = reasoning = unanswerable = 0
    formats: Counter = Counter()
    by_task: dict[str, Counter] = {}
    q_len: list[int] = []
    c_len: list[int] = []
    steps: list[int] = []
    buf_q: list[str] = []
    buf_c: list[str] = []

    def flush() -> None:
        q_len.extend(_lengths(buf_q, tokenizer))
        c_len.extend(_lengths(buf_c, tokenizer))
        buf_q.clear()
        buf_c.clear()

    for r in records:
        n += 1
        has = bool(r.reasoning.strip())
        reasoning += has
        unanswerable += not r.answerable
        f = answer_format(r.answer)
        formats[f] += 1
        t = by_task.setdefault(r.task or "(none)", Counter())
        t["count"] += 1
        t["with_reasoning"] += has
        t[f"answer:{f}"] += 1
        if has:
            steps.append(sum(1 for line in r.reasoning.splitlines() if line.strip()))
        buf_q.append(r.question)
        buf_c.append(render(r.reasoning, r.answer, fmt))
        if len(buf_q) >= batch_size:
            flush()
    flush()
    return {
        "count": n,
        "with_reasoning": reasoning,
        "unanswerable": unanswerable,
        "answer_formats": dict(formats.most_common()),
        "length_unit": "tokens" if tokenizer is not None else "bytes",
        "question_length": histogram(q_len),
        "completion_length": histogram(c_len),
        "reasoning_steps": histogram(steps),
        "by_task": {k: dict(v) for k, v in sorted(by_task.items())},
    }


def _lengths(texts: list[str], tokenizer) -> list[int]:
    if not texts:
        return []
    if tokenizer is None:
        return [len(t.encode("utf-8")) for t in texts]
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
