"""Audit stage: evaluate every model of the run (base, sft, grpo, …) on the same held-out items.

Writes ``audit/<model>/audit.json`` (aggregates) and ``audit/<model>/examples.jsonl`` (one row per item), and
``results.json`` at the run root. The audit directory is built in a staging directory and renamed into place.
"""

from __future__ import annotations

import json
from typing import Any

from thinktune.audit.outcomes import evaluate_greedy
from thinktune.data.records import read_records, write_jsonl
from thinktune.formatting import CompletionFormat
from thinktune.io import atomic_write_json, commit_dir, staging_dir
from thinktune.models import load_stage_output
from thinktune.run import Run


def run(run: Run, resume: bool) -> dict[str, Any]:
    import torch

    recipe, cfg = run.recipe, run.recipe.audit
    assert cfg is not None
    fmt = CompletionFormat(**recipe.format.model_dump())
    records = read_records(run.output_path("data") / "eval.jsonl")
    if cfg.max_items:
        records = records[: cfg.max_items]
    target = run.output_path("audit")
    tmp = staging_dir(target)
    results: dict[str, Any] = {}
    for stage in run.model_stages():
        torch.manual_seed(recipe.seed)
        model, tokenizer = load_stage_output(run.output_path(stage), recipe.model)
        agg, rows = evaluate_greedy(model, tokenizer, records, fmt, recipe.model.instruction, recipe.model.system,
                                    cfg.max_new_tokens, cfg.batch_size, label=stage)
        (tmp / stage).mkdir()
        atomic_write_json(tmp / stage / "audit.json", agg)
        write_jsonl(tmp / stage / "examples.jsonl", rows)
        results[stage] = agg
        del model
    commit_dir(tmp, target)
    summary = {
        "run": recipe.name,
        "eval_items": len(records),
        "models": {s: {k: a[k] for k in ("accuracy", "accuracy_ci95", "format_rate", "mean_completion_tokens",
                                         "accuracy_by_difficulty", "n")} for s, a in results.items()},
    }
    atomic_write_json(run.root / "results.json", summary)
    return {s: {"accuracy": round(a["accuracy"], 4), "format_rate": round(a["format_rate"], 4)}
            for s, a in results.items()}


def load_results(run_root) -> dict[str, Any] | None:
    path = run_root / "results.json"
    return json.loads(path.read_text()) if path.exists() else None
