"""``thinktune audit MODEL… --data FILE``: the reasoning audit of one or several models on the same items.

Routing and rendering only; the work lives in :func:`thinktune.audit.compare.audit_models`::

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

from thinktune.cli.console import out as stdout
from thinktune.cli.console import progress_shown, setup_logging, user_errors

TESTS_HELP = ("Comma-separated tests: early_answering, filler, info_gain, calibration, paraphrase, mistakes "
              "(default: the first four), or 'none' for outcome metrics only.")


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.1%}" if kind == "pct" else f"{value:.3f}"


def render_tables(audits: dict[str, tuple[dict, list]], comparison: dict | None, console) -> None:
    from rich.table import Table

    from thinktune.audit.battery import headline_rows, lookup

    names = list(audits)
    n_items = audits[names[0]][0]["n"]
    table = Table(title=f"reasoning audit · {n_items} answerable items · same items for every model")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for label, path, kind in headline_rows(audits[names[0]][0]):
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
    chance_corrected: Annotated[bool, typer.Option(
        help="Also report no-CoT agreement corrected for chance (one short generation per item).")] = False,
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
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="Also compute this per-item metric, module:function (repeatable; docs/EXTENDING.md).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")] = False,
) -> None:
    """Audit models: accuracy, faithfulness, information gain, abstention, calibration — side by side."""
    from thinktune.audit.compare import audit_config, audit_models
    from thinktune.decoding.variants import build_variants

    setup_logging(verbose)
    with user_errors():
        chosen = ([] if tests == "none" else [t.strip() for t in tests.split(",") if t.strip()]) if tests else None
        settings: dict[str, Any] = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, samples=samples,
                                        unanswerable=unanswerable, info_gain_mode=info_gain_mode,
                                        chance_corrected=chance_corrected, paraphraser=paraphraser, judge=judge,
                                        backend=backend, metrics=metric or [])
        if chosen is not None:
            settings["tests"] = chosen
        cfg = audit_config(**settings)
        variants = build_variants(tip, tip_alpha, tip_beta,
                                  [w.strip() for w in tip_words.split(",") if w.strip()] if tip_words else None,
                                  steer or [])
        with progress_shown():
            audits, comparison = audit_models(models, data, out, cfg, instruction=instruction, system=system,
                                              extractor=extractor, plain_prompt=plain_prompt, seed=seed,
                                              max_items=max_items, variants=variants)
    render_tables(audits, comparison, stdout)
    stdout.print(f"written: {out}/<model>/audit.json, examples.jsonl" + (", comparison.json" if comparison else ""))
