"""Data stage: produce the run's ``data/train.jsonl``, ``data/eval.jsonl`` and ``data/stats.json``.

Sources: a built-in synthetic task generated from the recipe seed (train and held-out items come from disjoint
seed streams, and any held-out question that also occurs in train is dropped), or canonical JSONL files. The
directory is written into a staging directory and renamed into place, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from thinktune.data.records import Record, read_records, write_jsonl
from thinktune.data.tasks import get_task
from thinktune.errors import RecipeError, StageError
from thinktune.io import atomic_write_json, commit_dir, staging_dir
from thinktune.run import Run


def _from_task(recipe) -> tuple[list[Record], list[Record], dict[str, Any]]:
    tcfg = recipe.data.task
    try:
        task = get_task(tcfg.name)
    except KeyError as e:
        raise RecipeError(f"data.task.name: {e.args[0]}") from None
    try:
        train = task.generate(tcfg.n_train, seed=recipe.seed * 2, id_prefix=f"{tcfg.name}-train", **tcfg.knobs)
        held = task.generate(tcfg.n_eval * 2, seed=recipe.seed * 2 + 1, id_prefix=f"{tcfg.name}-eval", **tcfg.knobs)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"data.task.knobs: {e}") from None
    seen = {r.question for r in train}
    fresh = [r for r in held if r.question not in seen]
    eval_records = fresh[: tcfg.n_eval]
    stats = {"source": f"task:{tcfg.name}", "eval_dropped_overlap": len(held) - len(fresh)}
    if len(eval_records) < tcfg.n_eval:
        raise StageError(f"data: only {len(eval_records)} held-out items are distinct from train "
                         f"(asked for {tcfg.n_eval}); make the task harder or n_train smaller")
    return train, eval_records, stats


def _from_files(recipe) -> tuple[list[Record], list[Record], dict[str, Any]]:
    d = recipe.data
    train, eval_records = read_records(d.train_file), read_records(d.eval_file)
    rng = random.Random(recipe.seed)
    rng.shuffle(train)
    eval_questions = {r.question for r in eval_records}
    kept = [r for r in train if r.question not in eval_questions]
    stats = {"source": f"files:{d.train_file},{d.eval_file}", "train_dropped_eval_overlap": len(train) - len(kept)}
    return kept, eval_records, stats


def run(run: Run, resume: bool) -> dict[str, Any]:
    recipe = run.recipe
    train, eval_records, stats = _from_task(recipe) if recipe.data.task else _from_files(recipe)
    if recipe.data.max_train:
        train = train[: recipe.data.max_train]
    if recipe.data.max_eval:
        eval_records = eval_records[: recipe.data.max_eval]
    if not train:
        raise StageError("data: the training set is empty")
    if not eval_records:
        raise StageError("data: the held-out set is empty")
    stats.update({
        "train": len(train),
        "eval": len(eval_records),
        "train_by_task": dict(Counter(r.task for r in train)),
        "train_with_reasoning": sum(bool(r.reasoning.strip()) for r in train),
    })
    target = run.output_path("data")
    tmp = staging_dir(target)
    write_jsonl(tmp / "train.jsonl", train)
    write_jsonl(tmp / "eval.jsonl", eval_records)
    atomic_write_json(tmp / "stats.json", stats)
    commit_dir(tmp, target)
    return {"train": len(train), "eval": len(eval_records)}
