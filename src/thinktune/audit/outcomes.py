"""Outcome metrics of a model on held-out records: greedy accuracy, format compliance, length.

Generation goes through :mod:`thinktune.generation`, grading through the one answer layer
(:func:`thinktune.rewards.answers.grade`) and the one parser, so the audit judges exactly what the rewards judge.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from thinktune.data.records import Record
from thinktune.formatting import CompletionFormat, chat_prompt, parse_completion
from thinktune.generation import SamplingParams, generate_texts
from thinktune.progress import reporter
from thinktune.rewards.answers import grade


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion k/n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_greedy(
    model,
    tokenizer,
    records: Sequence[Record],
    fmt: CompletionFormat,
    instruction: str | None = None,
    system: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    label: str = "eval",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(aggregate metrics, one row per record) for greedy decoding."""
    prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in records]
    params = SamplingParams(max_new_tokens=max_new_tokens, stop=(fmt.stop,))
    with reporter().task(f"audit {label}", total=len(prompts)) as bar:
        completions = generate_texts(model, tokenizer, prompts, params, batch_size=batch_size, on_batch=bar.advance)
    rows = []
    for rec, outs in zip(records, completions):
        text = outs[0]
        parsed = parse_completion(text, fmt)
        verdict = grade(rec, parsed.answer)
        rows.append({
            "id": rec.id,
            "question": rec.question,
            "gold": rec.answer,
            "completion": text,
            "answer": parsed.answer,
            "correct": verdict,
            "well_formed": parsed.well_formed,
            "n_steps": len(parsed.steps),
            "completion_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
            "difficulty": rec.meta.get("n_ops", rec.meta.get("level")),
        })
    return aggregate(rows), rows


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["correct"] is not None]
    k = sum(bool(r["correct"]) for r in scored)
    n = len(scored)
    lo, hi = wilson_interval(k, n)
    by_difficulty: dict[str, list[bool]] = defaultdict(list)
    for r in scored:
        if r.get("difficulty") is not None:
            by_difficulty[str(r["difficulty"])].append(bool(r["correct"]))
    return {
        "n": len(rows),
        "n_scored": n,
        "accuracy": k / n if n else 0.0,
        "accuracy_ci95": [lo, hi],
        "format_rate": sum(r["well_formed"] for r in rows) / len(rows) if rows else 0.0,
        "mean_completion_tokens": sum(r["completion_tokens"] for r in rows) / len(rows) if rows else 0.0,
        "accuracy_by_difficulty": {d: sum(v) / len(v) for d, v in sorted(by_difficulty.items())},
    }
