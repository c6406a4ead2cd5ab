"""``thinktune data …``: validate, convert, curate, sample, split, stats, mix, distill. Routing and rendering only.

Every command writes its outputs through a temp file + rename, so a failed command leaves no half-written file.
Bad data is reported as ``file:line: field: message`` lines, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from thinktune.cli.console import (
    command_group,
    console,
    error_exit,
    out,
    progress_shown,
    setup_logging,
    user_errors,
)

data_app = command_group("Load, validate, curate, sample, split, mix and distill reasoning datasets.")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="auto | canonical | gsm8k | math.")]
FieldOpt = Annotated[list[str] | None, typer.Option("--field", help="Map a field: canonical=column, e.g. question=problem.")]
ShowOpt = Annotated[int, typer.Option("--show", help="How many problems / removed rows to list.")]


def _spec(path: Path, fmt: str, fields: list[str] | None, max_row_bytes: int | None = None, limit: int | None = None):
    from thinktune.data.records import MAX_ROW_BYTES, DataError
    from thinktune.data.sources import SourceSpec

    mapping = {}
    for f in fields or []:
        if "=" not in f:
            raise DataError("--field", None, None, f"expected canonical=column, got {f!r}")
        k, v = f.split("=", 1)
        mapping[k.strip()] = v.strip()
    src = str(path)
    rg = src.startswith("rg:")
    return SourceSpec(path=None if rg else src, reasoning_gym=src[3:] if rg else None, format=fmt, fields=mapping,
                      max_row_bytes=max_row_bytes or MAX_ROW_BYTES, limit=limit, size=limit or 1000)


def _records(specs, problems: list, counts: Counter, show: int):
    """Records of every spec; problems counted (and the first ``show`` kept)."""
    from thinktune.data.records import Problem
    from thinktune.data.sources import iter_source

    for spec in specs:
        for _line, item in iter_source(spec):
            if isinstance(item, Problem):
                counts[item.kind] += 1
                if len(problems) < show:
                    problems.append(item)
            else:
                yield item


def _print_problems(problems, counts: Counter) -> None:
    from rich.markup import escape

    for p in problems:
        console.print(f"  [red]✗[/] {escape(str(p))}", highlight=False, soft_wrap=True)
    total = sum(counts.values())
    if total > len(problems):
        console.print(f"  … and {total - len(problems)} more")
    if counts:
        console.print("  problems by kind: " + ", ".join(f"{k}={v}" for k, v in counts.most_common()))


@data_app.command("validate")
def validate_cmd(
    files: Annotated[list[Path], typer.Argument(help="Data files (.jsonl .json .csv .tsv .parquet) or dataset dirs.")],
    fmt: FormatOpt = "auto",
    fields: FieldOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on any problem (default: skip bad rows, report counts).")] = False,
    max_row_bytes: Annotated[int | None, typer.Option(help="Longest allowed JSONL line in bytes (default 1,000,000).")] = None,
    show: ShowOpt = 50,
) -> None:
    """Check every row as convert/curate/stats read it (the format auto-detected from the first row, like every
    data command): bad JSON / UTF-8, missing, empty or non-string fields, duplicate ids, over-long rows — each
    reported with file:line and field."""

    problems: list = []
    counts: Counter = Counter()
    good = 0
    with user_errors():
        for f in files:
            good += sum(1 for _ in _records([_spec(f, fmt, fields, max_row_bytes)], problems, counts, show))
    _print_problems(problems, counts)
    bad = sum(counts.values())
    if good == 0:
        from rich.markup import escape

        hint = {"canonical": " (not canonical records? try --format auto, gsm8k or math)",
                "auto": " (try --format gsm8k or math, or map columns with --field question=COLUMN)"}.get(fmt, "") \
            if bad else ""
        first = f" (first problem: {problems[0]})" if problems else " (the input is empty)"
        error_exit(escape(f"{', '.join(map(str, files))}: no valid rows{first}") + hint)
    out.print(f"{'[green]ok[/]' if not bad else '[yellow]problems[/]'}: {good} valid rows, {bad} problem(s) "
              f"in {len(files)} file(s){' (bad rows would be skipped)' if bad and not strict else ''}")
    if bad and strict:
        raise typer.Exit(1)


@data_app.command("convert")
def convert_cmd(
    source: Annotated[Path, typer.Argument(help="A file, a datasets directory, or rg:<reasoning-gym dataset>.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Canonical JSONL to write.")],
    fmt: FormatOpt = "auto",
    fields: FieldOpt = None,
    limit: Annotated[int | None, typer.Option(help="Read only the first N rows (reasoning-gym: how many items).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad row.")] = False,
    show: ShowOpt = 20,
) -> None:
    """Load any supported source into canonical records (GSM8K '#### N' → answer, MATH \\boxed{} → answer)."""
    from thinktune.data.records import DataError, JsonlWriter

    problems: list = []
    counts: Counter = Counter()
    with user_errors():
        with JsonlWriter(output) as w:
            for rec in _records([_spec(source, fmt, fields, limit=limit)], problems, counts, show):
                w.write(rec)
            if strict and counts:
                raise DataError(str(problems[0]), None, None, "stopping (--strict); nothing was written")
            if w.count == 0:
                first = f" (first problem: {problems[0]})" if problems else " (the input is empty)"
                raise DataError(source, None, None, f"no valid rows{first}; nothing was written")
    _print_problems(problems, counts)
    out.print(f"[green]wrote[/] {w.count} records to {output}" + (f" (skipped {sum(counts.values())} bad rows)" if counts else ""))
    if counts:
        console.print("  run `thinktune data validate` on the source for the full list")


@data_app.command("curate")
def curate_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Input files (any supported format).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Curated canonical JSONL.")],
    fmt: FormatOpt = "auto",
    against: Annotated[list[Path] | None, typer.Option("--against", help="Eval set(s) to decontaminate against.")] = None,
    dedupe: Annotated[bool, typer.Option("--dedupe/--no-dedupe", help="Exact duplicates (normalised text).")] = True,
    near: Annotated[bool, typer.Option("--near/--no-near", help="Near duplicates (MinHash + LSH).")] = True,
    near_threshold: Annotated[float, typer.Option(help="Estimated Jaccard for near duplicates.")] = 0.7,
    consistency: Annotated[bool, typer.Option("--consistency/--no-consistency", help="Answer read from the reasoning must verify.")] = True,
    require_reasoning: Annotated[bool, typer.Option(help="Drop rows with empty reasoning.")] = False,
    reject_code_blocks: Annotated[bool, typer.Option(help="Drop traces with ``` blocks.")] = False,
    max_paragraph_chars: Annotated[int | None, typer.Option(help="Drop traces with a longer paragraph.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer for token limits: hub id, local dir or smollm2 (default: bytes).")] = None,
    max_prompt_tokens: Annotated[int | None, typer.Option(help="Max question tokens.")] = None,
    max_completion_tokens: Annotated[int | None, typer.Option(help="Max rendered-completion tokens.")] = None,
    min_completion_tokens: Annotated[int | None, typer.Option(help="Min rendered-completion tokens.")] = None,
    decontam_ngram: Annotated[int, typer.Option(help="Word n-gram length for decontamination.")] = 6,
    decontam_threshold: Annotated[float, typer.Option(help="Fraction of an eval item's n-grams that flags a row.")] = 0.3,
    eval_fraction: Annotated[float | None, typer.Option(help="Also split off this fraction by id hash into --eval-output.")] = None,
    eval_output: Annotated[Path | None, typer.Option(help="Where the split-off eval rows go.")] = None,
    report: Annotated[Path | None, typer.Option(help="Report JSON (default: <output>.stats.json).")] = None,
    show: ShowOpt = 10,
) -> None:
    """Filter a dataset: dedupe, near-dedupe, answer consistency, token length, decontamination; every filter
    reports how many rows it removed and why."""
    from thinktune.data.curate import (
        ContaminationIndex,
        CurateOptions,
        CurateReport,
        LengthChecker,
        curate_files,
    )
    from thinktune.data.records import DataError
    from thinktune.data.stats import compute_stats
    from thinktune.io import FileGroup
    from thinktune.models import load_tokenizer
    from thinktune.progress import reporter

    if (eval_fraction is None) != (eval_output is None):
        error_exit("--eval-fraction and --eval-output go together", code=2)
    problems: list = []
    counts: Counter = Counter()
    rep = CurateReport()
    with user_errors():
        eval_recs: list = []
        for a in against or []:
            eval_recs.extend(_records([_spec(a, "auto", None)], [], Counter(), 0))
            if not eval_recs:
                raise DataError(a, None, None, "no valid rows in the eval set")
        tok = load_tokenizer(tokenizer) if tokenizer else None
        if tok is None and any((max_prompt_tokens, max_completion_tokens, min_completion_tokens)):
            rep.notes.append("lengths counted in UTF-8 bytes (no --tokenizer)")
        opts = CurateOptions(dedupe=dedupe, near_dedupe=near, near_threshold=near_threshold,
                             answer_consistency=consistency, require_reasoning=require_reasoning,
                             reject_code_blocks=reject_code_blocks, max_paragraph_chars=max_paragraph_chars,
                             length=LengthChecker(tok, max_prompt=max_prompt_tokens,
                                                  max_completion=max_completion_tokens,
                                                  min_completion=min_completion_tokens),
                             contamination=ContaminationIndex(eval_recs, decontam_ngram, decontam_threshold)
                             if eval_recs else None)
        rows = _records([_spec(p, fmt, None) for p in inputs], problems, counts, show)
        stats_path = report or output.with_name(output.name + ".stats.json")
        targets = [output, *([eval_output] if eval_output else []), stats_path]
        # outputs and stats are committed together, stats last (io.FileGroup): a kill never pairs a new output
        # with a stale stats file; without a valid row nothing is written
        with FileGroup(targets, last=stats_path) as group:
            with reporter().task("curate") as t:
                res = curate_files(rows, output, opts, rep, eval_output=eval_output, eval_fraction=eval_fraction,
                                   on_chunk=t.advance, group=group)
            if rep.seen == 0:
                first = f" (first problem: {problems[0]})" if problems else " (the input is empty)"
                raise DataError(", ".join(map(str, inputs)), None, None, f"no valid rows{first}; nothing was written")
            summary = {"inputs": [str(p) for p in inputs], "bad_rows": dict(counts), **rep.to_dict(),
                       "train": res.train, "eval": res.eval, "stats": compute_stats(res.kept_sample, tok)}
            group.write_text(stats_path, json.dumps(summary, indent=2, default=str) + "\n")
    _print_problems(problems, counts)
    for name, f in rep.filters.items():
        why = f" ({', '.join(f'{k}={v}' for k, v in f.reasons.items())})" if f.reasons else ""
        out.print(f"  [bold]{name}[/]: removed {f.removed}{why}")
        for ex in f.examples[:show]:
            out.print(f"      {ex['id']}: {ex['reason']}", highlight=False, markup=False)
    out.print(f"[green]kept[/] {rep.kept} of {rep.seen} → {output}"
              + (f" ({res.train} train, {res.eval} eval → {eval_output})" if res.eval is not None else ""))


StratifyOpt = Annotated[str | None, typer.Option(
    "--stratify", help="Keep the proportions of: task, difficulty, meta.<key> (comma-separated).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (the same seed draws the same rows).")]


def _draw(source: Path, fmt: str, size: float, seed: int, stratify: str | None):
    """(records, indices chosen, stratification keys) for ``data sample`` / ``data split``."""
    from thinktune.data.records import DataError
    from thinktune.data.split import choose, resolve_count, stratum_value

    keys = [k.strip() for k in stratify.split(",") if k.strip()] if stratify else []
    problems: list = []
    counts: Counter = Counter()
    records = list(_records([_spec(source, fmt, None)], problems, counts, 5))
    _print_problems(problems, counts)
    if not records:
        raise DataError(source, None, None, "no valid rows (see `thinktune data validate`)")
    try:
        for k in keys:
            stratum_value(records[0], k)
        n = resolve_count(size, len(records))
        return records, choose(records, n, seed, keys), keys
    except ValueError as e:
        raise DataError(source, None, None, str(e)) from None


def _write(path: Path, rows) -> None:
    from thinktune.data.records import JsonlWriter

    with JsonlWriter(path) as w:
        for r in rows:
            w.write(r)


def _strata_note(rows, keys) -> str:
    from thinktune.data.split import strata_counts

    return (" (" + ", ".join(f"{k}={v}" for k, v in strata_counts(rows, keys).items()) + ")") if keys else ""


@data_app.command("sample")
def sample_cmd(
    source: Annotated[Path, typer.Argument(help="A data file (any supported format) or datasets directory.")],
    n: Annotated[float, typer.Option("--n", "-n", help="How many rows: a count, or a fraction such as 0.1.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Canonical JSONL to write.")],
    seed: SeedOpt = 0,
    stratify: StratifyOpt = None,
    fmt: FormatOpt = "auto",
) -> None:
    """A seeded random sample of N rows (in their input order), stratified by task or difficulty when asked."""
    with user_errors():
        records, idx, keys = _draw(source, fmt, n, seed, stratify)
        rows = [records[i] for i in idx]
        _write(output, rows)
    out.print(f"[green]wrote[/] {len(rows)} of {len(records)} records to {output} (seed {seed})"
              + _strata_note(rows, keys))


@data_app.command("split")
def split_cmd(
    source: Annotated[Path, typer.Argument(help="A data file (any supported format) or datasets directory.")],
    eval_size: Annotated[float, typer.Option("--eval", help="Held-out rows: a count, or a fraction such as 0.1.")],
    train_out: Annotated[Path, typer.Option("--train-out", help="Canonical JSONL for the training part.")],
    eval_out: Annotated[Path, typer.Option("--eval-out", help="Canonical JSONL for the held-out part.")],
    seed: SeedOpt = 0,
    stratify: StratifyOpt = None,
    fmt: FormatOpt = "auto",
) -> None:
    """Split rows at random into a training and a held-out file (seeded; stratified when asked)."""
    from thinktune.data.records import DataError

    with user_errors():
        if train_out.resolve() == eval_out.resolve():
            raise DataError(train_out, None, None, "--train-out and --eval-out are the same file")
        records, idx, keys = _draw(source, fmt, eval_size, seed, stratify)
        held = set(idx)
        if len(held) == len(records):
            raise DataError(source, None, None, f"--eval {eval_size:g} leaves no training rows")
        _write(eval_out, [records[i] for i in idx])
        _write(train_out, [r for i, r in enumerate(records) if i not in held])
    out.print(f"[green]wrote[/] {len(records) - len(held)} training records to {train_out} and {len(held)} held-out "
              f"records to {eval_out} (seed {seed})" + _strata_note([records[i] for i in idx], keys))


@data_app.command("stats")
def stats_cmd(
    files: Annotated[list[Path], typer.Argument(help="Data files.")],
    fmt: FormatOpt = "auto",
    tokenizer: Annotated[str | None, typer.Option(help="Count tokens with this tokenizer (default: bytes).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Counts, length histograms, answer formats and a per-task breakdown."""
    from rich.table import Table

    from thinktune.data.stats import compute_stats
    from thinktune.models import load_tokenizer

    counts: Counter = Counter()
    with user_errors():
        tok = load_tokenizer(tokenizer) if tokenizer else None
        s = compute_stats(_records([_spec(f, fmt, None) for f in files], [], counts, 0), tok)
    s["bad_rows"] = dict(counts)
    if as_json:
        out.print_json(json.dumps(s))
        return
    out.print(f"{s['count']} records, {s['with_reasoning']} with reasoning, {s['unanswerable']} unanswerable"
              + (f", {sum(counts.values())} bad rows skipped" if counts else ""))
    out.print("answer formats: " + ", ".join(f"{k}={v}" for k, v in s["answer_formats"].items()))
    for key in ("question_length", "completion_length", "reasoning_steps"):
        h = s[key]
        if h.get("count"):
            unit = "lines" if key == "reasoning_steps" else s["length_unit"]
            out.print(f"{key} ({unit}): mean {h['mean']}, p50 {h['p50']}, p90 {h['p90']}, p99 {h['p99']}, max {h['max']}"
                      + "  |  " + "  ".join(f"{b}:{c}" for b, c in h["bins"].items()))
    t = Table(title="per task")
    for col in ("task", "count", "with reasoning", "answer formats"):
        t.add_column(col)
    for task, c in s["by_task"].items():
        fm = ", ".join(f"{k[7:]}={v}" for k, v in c.items() if k.startswith("answer:"))
        t.add_row(task, str(c.get("count", 0)), str(c.get("with_reasoning", 0)), fm)
    out.print(t)


@data_app.command("mix")
def mix_cmd(
    reasoning: Annotated[list[Path], typer.Option("--reasoning", help="Reasoning data file(s).")],
    non_reasoning: Annotated[list[Path], typer.Option("--non-reasoning", help="Non-reasoning data file(s).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Mixed canonical JSONL.")],
    ratio: Annotated[str, typer.Option(help="reasoning:non_reasoning, e.g. 3:1 (DeepSeek-R1 used 600k:200k).")] = "3:1",
    total: Annotated[int | None, typer.Option(help="Cap on the mixed set.")] = None,
    fmt: FormatOpt = "auto",
) -> None:
    """Mix reasoning and non-reasoning data at a ratio; rows chosen by id hash (reproducible)."""
    from thinktune.data.curate import mix
    from thinktune.data.records import DataError, JsonlWriter

    with user_errors():
        try:
            a, b = (float(x) for x in ratio.split(":"))
        except ValueError:
            raise DataError("--ratio", None, None, f"expected A:B, e.g. 3:1, got {ratio!r}") from None
        groups = {"reasoning": list(_records([_spec(p, fmt, None) for p in reasoning], [], Counter(), 0)),
                  "non_reasoning": list(_records([_spec(p, fmt, None) for p in non_reasoning], [], Counter(), 0))}
        try:
            rows, info = mix(groups, {"reasoning": a, "non_reasoning": b}, total)
        except ValueError as e:
            raise DataError("--ratio", None, None, str(e)) from None
        with JsonlWriter(output) as w:
            for r in rows:
                w.write(r)
    out.print(f"[green]wrote[/] {len(rows)} records to {output}: " + ", ".join(f"{k}={v}" for k, v in info["kept"].items())
              + " (available: " + ", ".join(f"{k}={v}" for k, v in info["available"].items()) + ")")


@data_app.command("distill")
def distill_cmd(
    questions: Annotated[Path, typer.Argument(help="Questions with gold answers (any supported format).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Verified traces (canonical JSONL).")],
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the endpoint.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    local: Annotated[str | None, typer.Option(help="A local transformers model (path, hub id or smollm2) instead of an endpoint.")] = None,
    k: Annotated[int, typer.Option("-k", help="Samples per question.")] = 4,
    keep_per_question: Annotated[int | None, typer.Option(help="Keep at most this many verified traces per question.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 8,
    retries: Annotated[int, typer.Option(help="Retries per request (exponential backoff).")] = 5,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120.0,
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per sample.")] = 1024,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.95,
    instruction: Annotated[bool, typer.Option("--instruction/--no-instruction", help="Prepend the think/answer format instruction.")] = True,
    fmt: FormatOpt = "auto",
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    allow_failures: Annotated[bool, typer.Option(help="Write the output even if some questions failed.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Sample k traces per question from a teacher and keep only verified ones (rejection sampling).
    Resumable: run the same command again after a crash and finished questions are skipped."""
    from thinktune.data.distill import (
        DistillError,
        LocalTeacher,
        OpenAITeacher,
        TeacherSettings,
        distill,
    )
    from thinktune.data.records import DataError
    from thinktune.formatting import DEFAULT_INSTRUCTION
    from thinktune.progress import reporter

    setup_logging(verbose)
    with user_errors():
        if (base_url is None) == (local is None):
            raise DistillError("give exactly one teacher: --base-url (with --model) or --local")
        recs = list(_records([_spec(questions, fmt, None, limit=limit)], [], Counter(), 0))
        if not recs:
            raise DataError(questions, None, None, "no valid questions")
        settings = TeacherSettings(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                   instruction=DEFAULT_INSTRUCTION if instruction else None)
        if base_url:
            if not model:
                raise DistillError("--model is required with --base-url")
            teacher = OpenAITeacher(base_url, model, os.environ.get(api_key_env), settings, timeout_s=timeout,
                                    max_retries=retries, concurrency=concurrency)
        else:
            from thinktune.config import ModelConfig
            from thinktune.models import load_model

            m, tok = load_model(ModelConfig(path=local))
            teacher = LocalTeacher(m, tok, settings, name=local)
        with progress_shown(), reporter().task("distill", total=len(recs)) as t:
            rep = distill(recs, teacher, output, k=k, keep_per_question=keep_per_question,
                          on_question=t.advance, allow_failures=allow_failures)
    d = rep.to_dict()
    out.print(f"[green]kept[/] {d['kept']} verified traces from {d['samples']} samples "
              f"({d['questions_with_a_trace']}/{d['questions']} questions have one) → {output}")
    out.print("  verdicts: " + ", ".join(f"{k2}={v}" for k2, v in d["verdicts"].items())
              + f"; resumed {d['resumed']}, retries {d['retries']}, failed {d['failed']}, {d['seconds']}s")
