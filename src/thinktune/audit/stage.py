"""The recipe's ``audit`` stage: every model of the run (base, sft, grpo, …) audited on the same held-out items.

Writes ``audit/<model>/audit.json`` + ``examples.jsonl`` per model (audit/battery.py) and ``audit/comparison.json``
(paired differences against the first model, audit/compare.py), built in a staging directory and renamed into
place, then ``results.json`` at the run root (held-out accuracy and the audit's headline numbers of every model).

When the recipe trains with GRPO, every held-out completion is also scored with the recipe's GRPO rewards (the
same isolated runner as training, rewards/runner.py) and the scores are stored in its ``examples.jsonl`` row
(``rewards``), so the report shows them without running a reward.
"""

from __future__ import annotations

from typing import Any

from thinktune.audit.battery import (
    check_records,
    headline,
    lookup,
    with_unanswerable,
    write_audit,
)
from thinktune.audit.compare import compare
from thinktune.audit.significance import stage_changes
from thinktune.context import RESULTS_FILE, StageContext
from thinktune.data.records import Record, read_records
from thinktune.io import atomic_write_json, commit_dir, staging_dir


def run_stage(ctx: StageContext) -> dict[str, Any]:
    import torch

    from thinktune.audit.battery import audit_model
    from thinktune.models import load_stage_output

    recipe, cfg = ctx.recipe, ctx.config
    fmt = ctx.fmt
    records = read_records(ctx.data_file("eval"))
    if cfg.max_items:
        records = records[: cfg.max_items]
    records, variant_counts = with_unanswerable(records, cfg)
    extra = {name: read_records(path) for name, path in cfg.extra_sets.items()}  # a bad file fails before any model
    set_cfg = cfg.model_copy(update={"tests": [], "samples": 0, "unanswerable": "none", "max_items": None})
    audits: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    set_audits: dict[str, dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]] = {name: {} for name in extra}
    for stage in ctx.model_stages():
        torch.manual_seed(recipe.seed)
        model, tokenizer = load_stage_output(ctx.output_path(stage), recipe.model)
        check_records(records, "data/eval.jsonl")  # a model without a chat template was trained on the plain prompt
        agg, rows = audit_model(model, tokenizer, records, cfg, fmt, recipe.model.instruction, recipe.model.system,
                                label=stage, seed=recipe.seed, model_path=str(ctx.output_path(stage)))
        if variant_counts:
            agg["unanswerable_variants"] = variant_counts
        audits[stage] = (agg, rows)
        for name, set_records in extra.items():
            set_audits[name][stage] = audit_model(model, tokenizer, set_records, set_cfg, fmt, recipe.model.instruction,
                                                  recipe.model.system, label=f"{stage} on {name}", seed=recipe.seed)
        del model
    if recipe.grpo is not None:
        score_samples(ctx, audits, records)
    target = ctx.output_path("audit")
    tmp = staging_dir(target)
    for stage, (agg, rows) in audits.items():
        write_audit(tmp / stage, agg, rows)
    for name, by_stage in set_audits.items():
        for stage, (agg, rows) in by_stage.items():
            write_audit(tmp / stage / "sets" / name, agg, rows)
    if len(audits) > 1:
        atomic_write_json(tmp / "comparison.json", compare(audits, cfg.bootstrap, recipe.seed))
    commit_dir(tmp, target)
    n_answerable = sum(r.answerable for r in records)
    inputs = {s: ctx.input_model_stage(s) for s in list(audits)[1:]}
    changes = stage_changes({s: rows for s, (_, rows) in audits.items()}, inputs, seed=recipe.seed)
    summary = {
        "run": recipe.name,
        "eval_items": n_answerable,
        "models": {s: {**{k: a[k] for k in ("accuracy", "accuracy_ci95", "format_rate", "mean_completion_tokens",
                                            "accuracy_by_difficulty", "n")}, "audit": headline(a)}
                   for s, (a, _) in audits.items()},
        # each model against the model it was trained from, paired on the same items (audit/significance.py)
        "changes": [c.to_dict() for c in changes],
    }
    if set_audits:  # the extra held-out sets, each with its own paired changes
        summary["sets"] = {name: set_summary(cfg.extra_sets[name], by_stage, inputs, recipe.seed)
                           for name, by_stage in set_audits.items()}
    atomic_write_json(ctx.root / RESULTS_FILE, summary)
    return {s: {"accuracy": round(a["accuracy"], 4), "format_rate": round(a["format_rate"], 4),
                "aoc": _round(lookup(a, ("faithfulness", "early_answering", "aoc"))),
                "info_gain": _round(lookup(a, ("info_gain", "info_gain")))}
            for s, (a, _) in audits.items()}


def set_summary(path: str, by_stage: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]],
                inputs: dict[str, str], seed: int) -> dict[str, Any]:
    """results.json's entry for one extra held-out set: each model's accuracy and the paired changes."""
    changes = stage_changes({s: rows for s, (_, rows) in by_stage.items()}, inputs, seed=seed)
    first = next(iter(by_stage.values()))[0]
    return {"file": path, "items": first["n"],
            "models": {s: {k: a[k] for k in ("accuracy", "accuracy_ci95", "format_rate", "n")}
                       for s, (a, _) in by_stage.items()},
            "changes": [c.to_dict() for c in changes]}


def score_samples(ctx: StageContext, audits: dict[str, tuple[dict, list]], records: list[Record]) -> None:
    """Add each row's GRPO reward scores (``row["rewards"]``: reward name → value, or what happened instead)."""
    from thinktune.rewards.runner import RewardRunner

    g = ctx.recipe.grpo
    by_id = {r.id: r for r in records}
    with RewardRunner(g.rewards, ctx.fmt, max_error_fraction=1.0, workers=g.reward_workers,
                      deadline=g.reward_deadline, cache=False) as runner:
        for _, rows in audits.values():
            scored = [r for r in rows if isinstance(r.get("completion"), str) and r.get("id") in by_id]
            outcomes = runner.outcomes([r["completion"] for r in scored], [by_id[r["id"]] for r in scored])
            for row, rewards in zip(scored, outcomes):
                row["rewards"] = rewards


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v
