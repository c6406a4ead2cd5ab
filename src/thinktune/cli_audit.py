"""``thinktune audit MODEL… --data FILE``: the reasoning audit of one or several models on the same items.

Routing and rendering only; the work lives in :mod:`thinktune.audit`::

    thinktune audit runs/quickstart/sft/final --data runs/quickstart/data/eval.jsonl
    thinktune audit runs/qs/base/final runs/qs/sft/final runs/qs/grpo/final --data eval.jsonl --out audit/
    thinktune audit smollm2 --data gsm8k.jsonl --unanswerable question_only --tests none --max-new-tokens 192

Writes ``OUT/<model>/audit.json`` and ``OUT/<model>/examples.jsonl`` per model and, for several models,
``OUT/comparison.json`` (paired differences against the first model); prints one table with a column per model and,
for several models, the paired differences with their 95 % intervals.

Models: a directory (a thinktune stage's ``final/`` or any saved transformers model), a hub id already in the local
cache, or ``smollm2`` (the offline SmolLM2-135M-Instruct). ``--instruction auto`` gives thinktune-trained models
(``final/thinktune_model.json``) no instruction and every other model thinktune's format instruction, and picks the
``answer_tag`` extractor for the former and ``auto`` for the latter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

TESTS_HELP = ("Comma-separated tests: early_answering, filler, info_gain, calibration, paraphrase, mistakes "
              "(default: the first four), or 'none' for outcome metrics only.")


def _load(spec: str):
    """(model, tokenizer, trained_on_format) for a directory, a cached hub id or 'smollm2'."""
    from thinktune.audit.battery import AuditError
    from thinktune.config import ModelConfig
    from thinktune.models import load_model, load_stage_output

    path = Path(spec).expanduser()
    try:
        if spec == "smollm2":
            model, tok = load_model(ModelConfig(path="smollm2"))
            return model, tok, False
        if path.exists():
            if (path / "thinktune_model.json").exists():
                model, tok = load_stage_output(path)
                return model, tok, True
            if not (path / "config.json").exists():
                raise AuditError(f"{spec}: not a model directory (no config.json)")
            model, tok = load_model(ModelConfig(path=str(path)))
            return model, tok, False
        if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
            raise AuditError(f"{spec}: model path does not exist (give a model directory, a hub id, or 'smollm2')")
        model, tok = load_model(ModelConfig(path=spec))
        return model, tok, False
    except AuditError:
        raise
    except (OSError, ValueError, FileNotFoundError) as e:
        raise AuditError(f"cannot load model {spec!r}: {str(e).splitlines()[0]}") from None


def _labels(specs: list[str]) -> list[str]:
    labels = []
    for spec in specs:
        p = Path(spec.rstrip("/"))
        name = p.name if p.name not in ("final", "") else (p.parent.name or spec)
        base, i = name, 2
        while name in labels:
            name, i = f"{base}-{i}", i + 1
        labels.append(name)
    return labels


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.1%}" if kind == "pct" else f"{value:.3f}"


def render_tables(audits: dict[str, tuple[dict, list]], comparison: dict | None, console) -> None:
    from rich.table import Table

    from thinktune.audit.battery import HEADLINE, lookup

    names = list(audits)
    n_items = audits[names[0]][0]["n"]
    table = Table(title=f"reasoning audit · {n_items} answerable items · same items for every model")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for label, path, kind in HEADLINE:
        values = [lookup(audits[n][0], path) for n in names]
        if all(v is None for v in values):
            continue
        table.add_row(label, *(_fmt(v, kind) for v in values))
    table.add_row("items with a chain (scored tests)", *(str(audits[n][0].get("n_traces", 0)) for n in names))
    console.print(table)
    if comparison and comparison["paired"]:
        t = Table(title=f"paired differences vs {comparison['reference']} (same items; 95% bootstrap CI)")
        t.add_column("metric")
        others = list(comparison["paired"])
        for name in others:
            t.add_column(f"{name} − {comparison['reference']}", justify="right")
        metrics = sorted({m for d in comparison["paired"].values() for m in d})
        for m in metrics:
            cells = []
            for name in others:
                d = comparison["paired"][name].get(m)
                if d is None:
                    cells.append("–")
                    continue
                ci = d["ci95"]
                cells.append(f"{d['delta']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
            t.add_row(m, *cells)
        console.print(t)


def audit_cmd(
    models: Annotated[list[str], typer.Argument(help="Model directories, cached hub ids, or 'smollm2'.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Canonical JSONL records (id, question, answer).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("audit"),
    tests: Annotated[str | None, typer.Option(help=TESTS_HELP)] = None,
    max_items: Annotated[int | None, typer.Option(help="Audit the first N records.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation cap per item.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate() call; trees per scoring pass.")] = 32,
    samples: Annotated[int, typer.Option(help="Sampled completions per item for pass@k / maj@k (0 = off).")] = 0,
    unanswerable: Annotated[str, typer.Option(
        help="Add unanswerable variants: none, question_only (AbstentionBench), drop_quantity, "
             "unknown_number.")] = "none",
    instruction: Annotated[str, typer.Option(
        help="'auto', 'none', or the instruction text prepended to each question.")] = "auto",
    system: Annotated[str | None, typer.Option(help="System message for the chat template.")] = None,
    extractor: Annotated[str | None, typer.Option(help="Answer extractor (default: by --instruction auto).")] = None,
    info_gain_mode: Annotated[str, typer.Option(
        help="answer_only or whole_sequence (the paper's scope).")] = "answer_only",
    bias_normalised: Annotated[bool, typer.Option(
        help="Also report no-CoT agreement corrected for answer bias.")] = False,
    backend: Annotated[str, typer.Option(help="Generation backend: hf, or vllm (optional, GPU).")] = "hf",
    paraphraser: Annotated[str | None, typer.Option(
        help="Model that rewrites steps for the paraphrase test (default: rule-based).")] = None,
    judge: Annotated[str | None, typer.Option(
        help="Model that judges abstention Yes/No (default: the offline keyword detector).")] = None,
    plain_prompt: Annotated[bool, typer.Option(
        help="Allow models without a chat template (plain 'Question: … Answer:' prompt).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling, bootstrap and corrupted steps.")] = 0,
    tip: Annotated[bool, typer.Option("--tip", help="Also audit each model with the thought-switching penalty (TIP) "
                                                    "as a variant, side by side.")] = False,
    tip_alpha: Annotated[float, typer.Option(help="TIP penalty α.")] = 3.0,
    tip_beta: Annotated[int, typer.Option(help="TIP window β (tokens from the start of a thought).")] = 600,
    tip_words: Annotated[str | None, typer.Option(help="Comma-separated switch words for TIP.")] = None,
    steer: Annotated[list[str] | None, typer.Option(
        help="Also audit each model steered by FILE:STRENGTH (repeatable), side by side.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")] = False,
) -> None:
    """Audit models: accuracy, faithfulness, information gain, abstention, calibration — side by side."""
    from thinktune.cli import RichReporter, _setup_logging, _user_errors, console, out as stdout
    from thinktune.progress import set_reporter

    _setup_logging(verbose)
    with _user_errors():
        audits, comparison = run_audit(models, data, out, tests, max_items, max_new_tokens, batch_size, samples,
                                       unanswerable, instruction, system, extractor, info_gain_mode,
                                       bias_normalised, plain_prompt, seed, set_reporter, RichReporter(console),
                                       paraphraser=paraphraser, judge=judge, backend=backend,
                                       variants=_variants(tip, tip_alpha, tip_beta, tip_words, steer or []))
    render_tables(audits, comparison, stdout)
    stdout.print(f"written: {out}/<model>/audit.json, examples.jsonl" + (", comparison.json" if comparison else ""))


def _variants(tip: bool, alpha: float, beta: int, words: str | None, steer: list[str]) -> list[tuple[str, Any]]:
    """Decoding-time variants audited next to each model: ("tip", TipConfig) and ("steer", (file, strength))."""
    from thinktune.decoding.steering import parse_steer_spec
    from thinktune.decoding.tip import TipConfig

    out: list[tuple[str, Any]] = []
    if tip:
        kw: dict[str, Any] = {"alpha": alpha, "beta": beta}
        if words:
            kw["words"] = [w.strip() for w in words.split(",") if w.strip()]
        out.append(("tip", TipConfig(**kw)))
    out += [("steer", parse_steer_spec(spec)) for spec in steer]
    return out


def _audit_variant(kind: str, setting: Any, model, tok, audit):
    """Run ``audit(logits_processors)`` under one decoding intervention; returns (label suffix, result)."""
    from thinktune.decoding.variants import intervention

    with intervention(kind, setting, model, tok) as processors:
        return ("+tip" if kind == "tip" else f"+steer{setting[1]:g}"), audit(processors)


def run_audit(models, data, out, tests, max_items, max_new_tokens, batch_size, samples, unanswerable, instruction,
              system, extractor, info_gain_mode, bias_normalised, plain_prompt, seed, set_reporter=None,
              rich_reporter=None, paraphraser=None, judge=None, backend="hf", variants=()):
    import torch
    from pydantic import ValidationError

    from thinktune.audit.battery import (AuditError, audit_model, check_records, check_tokenizer, compare,
                                         with_unanswerable, write_audit)
    from thinktune.config import AuditStage
    from thinktune.data.records import read_records
    from thinktune.formatting import DEFAULT_FORMAT, DEFAULT_INSTRUCTION
    from thinktune.io import atomic_write_json

    if not data.is_file():
        raise AuditError(f"--data {data}: file not found")
    records = read_records(data)
    if max_items:
        records = records[:max_items]
    chosen = ([] if tests == "none" else [t.strip() for t in tests.split(",") if t.strip()]) if tests else None
    settings: dict[str, Any] = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, samples=samples,
                                    unanswerable=unanswerable, info_gain_mode=info_gain_mode,
                                    bias_normalised=bias_normalised, paraphraser=paraphraser, judge=judge,
                                    backend=backend)
    if chosen is not None:
        settings["tests"] = chosen
    try:
        base_cfg = AuditStage(**settings)
    except ValidationError as e:
        raise AuditError("invalid audit options: " + "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
    records, variant_counts = with_unanswerable(records, base_cfg)
    check_records(records, str(data))
    audits: dict[str, tuple[dict, list]] = {}
    prev = set_reporter(rich_reporter) if set_reporter and rich_reporter else None
    try:
        for spec, label in zip(models, _labels(models)):
            model, tok, trained = _load(spec)
            check_tokenizer(tok, label, plain_prompt)
            instr = (None if trained else DEFAULT_INSTRUCTION) if instruction == "auto" else (
                None if instruction == "none" else instruction)
            cfg = base_cfg.model_copy(update={"extractor": extractor or ("answer_tag" if instr is None else "auto"),
                                              "sampling_seed": seed})

            def audit(processors, label=label, model=model, tok=tok, instr=instr, cfg=cfg):
                torch.manual_seed(seed)
                return audit_model(model, tok, records, cfg, DEFAULT_FORMAT, instr, system, label=label, seed=seed,
                                   model_path=None if spec == "smollm2" else spec, logits_processors=processors)

            runs = [("", audit(()), None)]
            for kind, setting in variants:
                suffix, result = _audit_variant(kind, setting, model, tok, audit)
                runs.append((suffix, result, {"kind": kind, "setting": str(setting)}))
            for suffix, (agg, rows), intervention in runs:
                agg["source"] = {"model": spec, "data": str(data), "instruction": instr, "extractor": cfg.extractor,
                                 "intervention": intervention}
                if variant_counts:
                    agg["unanswerable_variants"] = variant_counts
                write_audit(out / (label + suffix), agg, rows)
                audits[label + suffix] = (agg, rows)
            del model
    finally:
        if prev is not None and set_reporter:
            set_reporter(prev)
    comparison = compare(audits, base_cfg.bootstrap, seed) if len(audits) > 1 else None
    if comparison:
        atomic_write_json(out / "comparison.json", comparison)
    return audits, comparison

