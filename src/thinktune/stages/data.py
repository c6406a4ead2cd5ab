"""Data stage: produce the run's ``data/train.jsonl``, ``data/eval.jsonl`` and ``data/stats.json``.

Three ways to get data (exactly one per recipe):

- ``data.task``: a built-in synthetic task generated from the recipe seed (train and held-out items come from
  disjoint seed streams, and any held-out question that also occurs in train is dropped). Not curated.
- ``data.train_file`` + ``data.eval_file``: canonical JSONL, read strictly; ``data.curate`` applies when given.
- ``data.sources``: files / ``datasets`` / reasoning-gym in any supported format (data/sources.py). Bad rows are
  skipped and counted; the held-out set comes from ``eval_sources``, ``eval_file`` or an id-hash split
  (``eval_fraction``: adding rows never moves an existing id between splits); the training rows are curated
  (data/curate.py: dedupe, trace quality, answer consistency, token length, decontamination against the held-out
  set, near-dedupe) and mixed at ``data.mix``'s reasoning : non-reasoning ratio.

stats.json says what every step removed and why, plus counts, length histograms and answer formats. The stage
fails when bad rows and filters remove more than ``curate.max_drop_fraction`` of the input or leave nothing
(silent data loss is worse than a stopped run). The directory is written into a staging directory and renamed into
place, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from thinktune.context import StageContext
from thinktune.data.curate import (
    ContaminationIndex,
    CurateOptions,
    CurateReport,
    LengthChecker,
    curate_records,
    mix,
    normalize_text,
    split_by_id,
)
from thinktune.data.records import DataError, Problem, Record, read_records, write_jsonl
from thinktune.data.sources import SourceSpec, iter_source
from thinktune.data.stats import compute_stats
from thinktune.data.tasks import get_task
from thinktune.errors import RecipeError, StageError
from thinktune.io import atomic_write_json, commit_dir, staging_dir
from thinktune.models import load_tokenizer
from thinktune.progress import reporter

PROBLEM_EXAMPLES = 20


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
    if d.curate is not None:
        train, stats = _curate(recipe, train, {}, eval_records, len(train), {})
        stats["source"] = f"files:{d.train_file},{d.eval_file}"
        random.Random(recipe.seed).shuffle(train)
        return train, eval_records, stats
    rng = random.Random(recipe.seed)
    rng.shuffle(train)
    eval_questions = {r.question for r in eval_records}
    kept = [r for r in train if r.question not in eval_questions]
    stats = {"source": f"files:{d.train_file},{d.eval_file}", "train_dropped_eval_overlap": len(train) - len(kept)}
    return kept, eval_records, stats


# --------------------------------------------------------------------------------------------------------------
# data.sources


def source_spec(cfg) -> SourceSpec:
    """A recipe SourceConfig → the loader's SourceSpec."""
    d = cfg.model_dump()
    d.pop("kind", None)
    return SourceSpec(**d)


def _load(cfgs, problems: Counter, examples: list[str]) -> tuple[list[Record], dict[str, str], int]:
    """Records of every source (bad rows counted, not raised), a kind per id, and the number of rows read."""
    records: list[Record] = []
    kinds: dict[str, str] = {}
    rows = 0
    seen_ids: dict[str, str] = {}
    for cfg in cfgs:
        spec = source_spec(cfg)
        with reporter().task(f"load {spec.describe()}") as t:
            for _line, item in iter_source(spec):
                rows += 1
                if isinstance(item, Problem):
                    problems[item.kind] += 1
                    if len(examples) < PROBLEM_EXAMPLES:
                        examples.append(str(item))
                    continue
                if item.id in seen_ids:
                    problems["duplicate_id"] += 1
                    if len(examples) < PROBLEM_EXAMPLES:
                        examples.append(f"{spec.describe()}: id: duplicate id {item.id!r} (also in "
                                        f"{seen_ids[item.id]})")
                    continue
                seen_ids[item.id] = spec.describe()
                kinds[item.id] = cfg.kind
                records.append(item)
                t.advance()
    return records, kinds, rows


def _eval_set(recipe, train: list[Record], problems: Counter, examples: list[str]) -> tuple[list[Record], list[Record], dict]:
    d = recipe.data
    if d.eval_fraction is not None:
        train, held = split_by_id(train, d.eval_fraction, salt=f"split:{recipe.seed}")
        return train, held, {"split": {"by": "id hash", "eval_fraction": d.eval_fraction, "salt": f"split:{recipe.seed}"}}
    if d.eval_file:
        return train, read_records(d.eval_file), {"eval": f"file:{d.eval_file}"}
    held, _, _ = _load(d.eval_sources, problems, examples)
    seen: set[str] = set()
    unique = []
    for r in held:  # the same question twice in an eval set counts it twice in accuracy
        k = normalize_text(r.question)
        if k not in seen:
            seen.add(k)
            unique.append(r)
    return train, unique, {"eval": "sources", "eval_duplicate_questions_dropped": len(held) - len(unique)}


def _tokenizer(recipe):
    c = recipe.data.curate
    name = c.tokenizer or recipe.model.path
    if not any((c.max_prompt_tokens, c.max_completion_tokens, c.min_completion_tokens)):
        return None, None
    if name is None:
        return None, "token limits counted in UTF-8 bytes: the model is built from scratch and has no tokenizer yet"
    return load_tokenizer(name), None


def _curate(recipe, train: list[Record], kinds: dict[str, str], eval_records: list[Record], rows_read: int,
            problems: Counter) -> tuple[list[Record], dict[str, Any]]:
    from thinktune.config import CurateConfig

    c = recipe.data.curate or CurateConfig()
    fmt = recipe.format.completion_format()
    tok, note = _tokenizer(recipe) if recipe.data.curate else (None, None)
    against = list(eval_records)
    for cfg in c.decontaminate_against:
        against.extend(_load([cfg], Counter(), [])[0])
    opts = CurateOptions(
        dedupe=c.dedupe, dedupe_fields=tuple(c.dedupe_fields), near_dedupe=c.near_dedupe,
        near_threshold=c.near_threshold, answer_consistency=c.answer_consistency,
        require_reasoning=c.require_reasoning, reject_code_blocks=c.reject_code_blocks,
        max_paragraph_chars=c.max_paragraph_chars,
        length=LengthChecker(tok, max_prompt=c.max_prompt_tokens, max_completion=c.max_completion_tokens,
                             min_completion=c.min_completion_tokens, fmt=fmt),
        contamination=ContaminationIndex(against, n=c.decontam_ngram, threshold=c.decontam_threshold)
        if c.decontaminate and against else None,
    )
    report = CurateReport()
    if note:
        report.notes.append(note)
    with reporter().task("curate", total=len(train)) as t:
        kept = list(curate_records(train, opts, report, on_chunk=t.advance))
    stats: dict[str, Any] = {"curate": report.to_dict()}
    if recipe.data.mix is not None:
        m = recipe.data.mix
        groups: dict[str, list[Record]] = {"reasoning": [], "non_reasoning": []}
        for r in kept:
            groups[kinds.get(r.id, "reasoning")].append(r)
        try:
            kept, info = mix(groups, {"reasoning": m.reasoning, "non_reasoning": m.non_reasoning}, m.total,
                             salt=f"mix:{recipe.seed}")
        except ValueError as e:
            raise StageError(f"data.mix: {e}") from None
        stats["mix"] = info
    bad_rows = sum(problems.values())
    removed = sum(f.removed for f in report.filters.values())
    dropped = (bad_rows + removed) / max(rows_read, 1)
    if dropped > c.max_drop_fraction:
        worst = sorted(((f.removed, k) for k, f in report.filters.items()), reverse=True)[:3]
        why = ", ".join(f"{k}: {n}" for n, k in worst) + (f", bad rows: {bad_rows}" if bad_rows else "")
        raise StageError(f"data: {dropped:.0%} of {rows_read} rows were dropped ({why}), over "
                         f"data.curate.max_drop_fraction={c.max_drop_fraction}; see the counts above or run "
                         "`thinktune data curate` on the sources to inspect them")
    return kept, stats


def _from_sources(recipe) -> tuple[list[Record], list[Record], dict[str, Any]]:
    d = recipe.data
    problems: Counter = Counter()
    examples: list[str] = []
    try:
        train, kinds, rows = _load(d.sources, problems, examples)
        train, eval_records, eval_info = _eval_set(recipe, train, problems, examples)
        train, stats = _curate(recipe, train, kinds, eval_records, rows, problems)
    except DataError as e:
        raise StageError(f"data: {e}") from None
    stats = {"source": "sources:" + ",".join(source_spec(s).describe() for s in d.sources), **eval_info,
             "rows_read": rows, "bad_rows": {"count": sum(problems.values()), "by_kind": dict(problems),
                                             "examples": examples}, **stats}
    random.Random(recipe.seed).shuffle(train)
    return train, eval_records, stats


def _mix_unanswerable(train: list[Record], fraction: float, variant: str,
                      seed: int) -> tuple[list[Record], dict[str, Any]]:
    """Replace ``fraction`` of the records (seeded choice) by their unanswerable variants, in place in the order.

    A variant's target is an abstention (audit/abstention.py ``ABSTAIN_REASONING`` + ``I don't know``); a record
    the variant cannot be built for (e.g. no number to hide) stays answerable and is counted.
    """
    from thinktune.audit.abstention import ABSTAIN_REASONING, make_unanswerable

    picked = sorted(random.Random(f"unanswerable:{seed}").sample(range(len(train)), round(fraction * len(train))))
    variants, counts = make_unanswerable([train[i] for i in picked], variant, reasoning=ABSTAIN_REASONING)
    by_source = {v.meta["source_id"]: v for v in variants}
    out = list(train)
    for i in picked:
        out[i] = by_source.get(train[i].id, train[i])
    info = {"variant": variant, "fraction": fraction, "replaced": counts["kept"], "no_variant": counts["dropped"]}
    if not variants:
        raise StageError(f"data.unanswerable_variant: {variant!r} could not rewrite any training question")
    return out, info


def run_stage(ctx: StageContext) -> dict[str, Any]:
    recipe = ctx.recipe
    d = recipe.data
    if d.task:
        train, eval_records, stats = _from_task(recipe)
    elif d.sources is not None:
        train, eval_records, stats = _from_sources(recipe)
    else:
        train, eval_records, stats = _from_files(recipe)
    if d.max_train:
        train = train[: d.max_train]
    if d.max_eval:
        eval_records = eval_records[: d.max_eval]
    if not train:
        raise StageError("data: the training set is empty")
    if d.unanswerable_fraction:
        train, stats["unanswerable"] = _mix_unanswerable(train, d.unanswerable_fraction, d.unanswerable_variant,
                                                         recipe.seed)
    if not eval_records:
        raise StageError("data: the held-out set is empty")
    stats.update({
        "train": len(train),
        "eval": len(eval_records),
        "train_by_task": dict(Counter(r.task for r in train)),
        "train_with_reasoning": sum(bool(r.reasoning.strip()) for r in train),
    })
    if not d.task:
        stats["train_stats"] = compute_stats(train)
        stats["eval_stats"] = compute_stats(eval_records)
    target = ctx.output_path("data")
    tmp = staging_dir(target)
    write_jsonl(tmp / "train.jsonl", train)
    write_jsonl(tmp / "eval.jsonl", eval_records)
    atomic_write_json(tmp / "stats.json", stats)
    commit_dir(tmp, target)
    return {"train": len(train), "eval": len(eval_records)}
