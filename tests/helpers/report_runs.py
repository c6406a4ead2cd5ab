"""Hand-written run directories for the report tests: only the files the report reads, with chosen numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REWARDS = [{"fn": "correct", "weight": 1.0, "kwargs": {}}, {"fn": "format", "weight": 0.1, "kwargs": {}}]


def audit_agg(accuracy: float, aoc: float | None = 0.5, info_gain: float | None = 0.4,
              recall: float | None = None, mistakes_aoc: float | None = None, n: int = 4) -> dict[str, Any]:
    agg: dict[str, Any] = {"n": n, "n_scored": n, "accuracy": accuracy, "accuracy_ci95": [max(0, accuracy - 0.1),
                                                                                             min(1, accuracy + 0.1)],
                           "format_rate": 1.0, "mean_completion_tokens": 20.0, "accuracy_by_difficulty": {},
                           "reasoning_tokens": {"mean": 12.0, "median": 12.0}}
    faith: dict[str, Any] = {}
    if aoc is not None:
        faith["early_answering"] = {"n": n, "aoc": aoc, "truncation_sensitive": 0.5}
    if mistakes_aoc is not None:
        faith["mistakes"] = {"n": n, "aoc": mistakes_aoc}
    if faith:
        agg["faithfulness"] = faith
    if info_gain is not None:
        agg["info_gain"] = {"n": n, "info_gain": info_gain, "frac_steps_nonpositive": 0.2}
    if recall is not None:
        agg["abstention"] = {"tp": 1, "fn": 1, "fp": 0, "recall": recall, "precision": 1.0, "f1": 0.5}
    return agg


def example_rows(n: int = 4, correct_every: int = 2, completion: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        ok = i % correct_every == 0
        text = completion if completion is not None else (
            f"<think>\nstep one of {i}\nstep two\n</think>\n<answer>{i if ok else i + 1}</answer>")
        rows.append({"id": f"item-{i}", "question": f"What is {i} + 0?", "gold": str(i), "answerable": True,
                     "completion": text, "answer": str(i if ok else i + 1), "correct": ok, "well_formed": True,
                     "n_steps": 2, "completion_tokens": 12, "reasoning_tokens": 8,
                     "faithfulness": {"early_answering": {"ks": [0, 1, 2], "same": [0, 1, 1],
                                                          "p_final": [0.1, 0.6, 0.9], "aoc": 0.5}},
                     "info_gain": {"nll": [2.0, 1.0, 0.5], "per_step": [1.0, 0.5], "info_gain": 0.5}})
    return rows


def grpo_rows(rewards: list[float], eval_accuracy: list[float] | None = None, zero_std: float = 0.25,
              per_fn: dict[str, list[float]] | None = None) -> list[dict[str, Any]]:
    rows = []
    for step, r in enumerate(rewards, start=1):
        row = {"step": step, "loss": 0.01, "reward": r, "frac_reward_zero_std": zero_std, "kl": 0.0, "entropy": 1.0,
               "learning_rate": 1e-4, "completions/mean_length": 20.0}
        for fn, vals in (per_fn or {}).items():
            row[f"rewards/{fn}/mean"] = vals[step - 1]
        rows.append(row)
    for j, acc in enumerate(eval_accuracy or []):
        rows.append({"step": 1 + j * max(1, (len(rewards) - 1) // max(1, len(eval_accuracy) - 1)),
                     "eval_accuracy": acc, "eval_items": 20})
    return rows


def make_run(root: Path, name: str = "made", audits: dict[str, dict[str, Any]] | None = None,
             grpo_metrics: list[dict[str, Any]] | None = None, stages: dict[str, dict[str, Any]] | None = None,
             rows: dict[str, list[dict[str, Any]]] | None = None, grpo: bool = True,
             results: dict[str, Any] | None = None) -> Path:
    """A run directory with a manifest, resolved recipe, held-out data, audits and optional GRPO metrics."""
    run = root / name
    (run / "data").mkdir(parents=True, exist_ok=True)
    recipe = {"name": name, "seed": 0, "model": {"tiny": {"hidden_size": 32}},
              "format": {"think_open": "<think>", "think_close": "</think>", "answer_open": "<answer>",
                         "answer_close": "</answer>"},
              "data": {"task": {"name": "chain_arith"}}}
    if grpo:
        recipe["grpo"] = {"rewards": REWARDS}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    stages = stages if stages is not None else {s: {"status": "complete", "seconds": 1.0, "result": {}}
                                               for s in ["data", *(audits or {}), "audit"]}
    manifest = {"name": name, "recipe_hash": "abc123", "versions": {"thinktune": "0.1.0", "python": "3.11"},
                "hardware": {"platform": "linux", "cpus": 2}, "created": "2026-01-01T00:00:00", "stages": stages}
    (run / "manifest.json").write_text(json.dumps(manifest))
    records = [{"id": f"item-{i}", "question": f"What is {i} + 0?", "reasoning": f"{i} + 0 = {i}", "answer": str(i),
                "answerable": True, "task": "chain_arith", "meta": {}} for i in range(4)]
    for split in ("train", "eval"):
        (run / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "data" / "stats.json").write_text(json.dumps({"source": "task:chain_arith", "train": 4, "eval": 4}))
    for model, agg in (audits or {}).items():
        d = run / "audit" / model
        d.mkdir(parents=True, exist_ok=True)
        (d / "audit.json").write_text(json.dumps({**agg, "model": model}))
        model_rows = (rows or {}).get(model) or example_rows(agg.get("n", 4))
        (d / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in model_rows))
    if results is not None:
        (run / "results.json").write_text(json.dumps(results))
    if grpo_metrics is not None:
        (run / "grpo").mkdir(exist_ok=True)
        (run / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in grpo_metrics))
    return run
