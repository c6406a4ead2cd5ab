"""``thinktune label …``: people rank completions on a local page; the labels train a reward model and DPO.

Routing and rendering only; the work lives in :mod:`thinktune.feedback` and :mod:`thinktune.data.labels`::

    thinktune label runs/quickstart --out labels.jsonl              # the run's models' held-out completions
    thinktune label candidates.jsonl --out labels.jsonl --k 2       # prompts with candidate completions
    thinktune label runs/qs/sft/final --prompts runs/qs/data/eval.jsonl --k 4 --out labels.jsonl   # sampled
    thinktune label stats labels.jsonl                              # counts, pairs, Cohen's kappa
    thinktune label pairs labels.jsonl --out pairs.jsonl            # TRL's preference format
    thinktune label export labels.sqlite --out labels.jsonl         # the labels file from the session's database

``thinktune label SOURCE`` is ``thinktune label start SOURCE``. The session lives in ``--db`` (default: the
``--out`` file with the suffix ``.sqlite``); starting again with the same ``--out`` resumes it, same URL included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from thinktune.cli.console import command_group, console, out, setup_logging, user_errors


class _SourceFirst(TyperGroup):
    """``thinktune label SOURCE …`` runs ``label start SOURCE …``; ``stats``, ``pairs`` and ``export`` are commands."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().resolve_command(ctx, args)


label_app = command_group("Label preferences between completions in the browser (thinktune label SOURCE --out "
                          "labels.jsonl); stats, pairs and export of the labels.", cls=_SourceFirst)


def db_path(out_file: Path, db: Path | None) -> Path:
    return db if db is not None else out_file.with_suffix(".sqlite")


@label_app.command("start")
def start_cmd(
    source: Annotated[str, typer.Argument(help="A run directory, a candidates JSONL, or a model (with --prompts).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The labels file (JSONL), kept up to date.")],
    db: Annotated[Path | None, typer.Option(help="The session database (default: --out with .sqlite).")] = None,
    k: Annotated[int, typer.Option(min=2, max=10, help="Completions shown per prompt (k > 2: ranked).")] = 2,
    models: Annotated[str | None, typer.Option(help="A run's audited models to compare, comma-separated "
                                                    "(default: all).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Questions for a model source (canonical records JSONL).")] = None,
    temperature: Annotated[float, typer.Option(min=0.01, help="Sampling temperature (model source).")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Completion cap (model source).")] = 256,
    instruction: Annotated[str, typer.Option(help="auto | none | default | text (model source).")] = "auto",
    guidelines: Annotated[Path | None, typer.Option(help="A text file shown to annotators.")] = None,
    annotators: Annotated[str | None, typer.Option(help="Allowed annotator names, comma-separated "
                                                        "(default: anyone with the link).")] = None,
    overlap: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of items labelled by two annotators "
                                                                  "(for agreement).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seeds the overlap, the candidate order and the sampling.")] = 0,
    lease_minutes: Annotated[float, typer.Option(min=0.1, help="An unlabelled item held this long may go to "
                                                               "someone else.")] = 30.0,
    export_every: Annotated[float, typer.Option(min=0.0, help="Seconds between rewrites of --out while labels "
                                                              "change (0: at start and stop only).")] = 10.0,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8765,
    new_token: Annotated[bool, typer.Option("--new-token", help="Replace the session's URL token.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library and server messages.")] = False,
) -> None:
    """Serve the labelling page for SOURCE until Ctrl-C; every click is saved before the page moves on."""
    import socket

    from rich.markup import escape

    setup_logging(verbose)
    with user_errors():
        from thinktune.data.records import DataError
        from thinktune.feedback.items import open_source
        from thinktune.feedback.server import LabelServerConfig, LabelService, serve_labels
        from thinktune.feedback.store import LabelStore, Settings

        names = [n.strip() for n in (annotators or "").split(",") if n.strip()]
        text = ""
        if guidelines is not None:
            if not guidelines.is_file():
                raise DataError(guidelines, None, None, "guidelines file not found")
            text = guidelines.read_text(encoding="utf-8")
        items, sampler = open_source(source, k, seed, models=models.split(",") if models else None, prompts=prompts,
                                     temperature=temperature, max_new_tokens=max_new_tokens, instruction=instruction)
        path = db_path(out_file, db)
        resumed = path.exists()
        store = LabelStore(path, items, Settings(seed, overlap, lease_minutes * 60))
        store.check_export_target(out_file)
        if new_token:
            store.new_token()
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        service = LabelService(store, LabelServerConfig(token=store.token, out=out_file, guidelines=text,
                                                        annotators=names, export_every=export_every))
        p = store.progress()
        if resumed and (store.settings.overlap, store.settings.seed) != (overlap, seed):
            console.print(f"[yellow]note[/] this session was started with --overlap {store.settings.overlap} "
                          f"--seed {store.settings.seed}; those stay", highlight=False)
        console.print(f"{'resuming' if resumed else 'labelling'} {p['items']} items from {escape(store.source)} "
                      f"({items.dropped} without two distinct completions left out); "
                      f"{p['judgements_done']} / {p['judgements_needed']} judgements done", highlight=False)
        url = f"http://{host}:{port}/?token={store.token}"
        out.print(f"open {url}", highlight=False, soft_wrap=True)
        for name in names:
            out.print(f"  {escape(name)}: {url}&annotator={name.replace(' ', '%20')}", highlight=False, soft_wrap=True)
        console.print(f"labels: {escape(str(out_file))} (session: {escape(str(path))}); Ctrl-C to stop",
                      highlight=False)
        serve_labels(service, host, port, "info" if verbose else "warning")
        final = store.progress()
    console.print(f"stopped; {final['labels']} labels in {escape(str(out_file))}", highlight=False)


def _labels(path: Path) -> list[dict[str, Any]]:
    from thinktune.data.labels import read_labels

    if path.suffix == ".sqlite":
        from thinktune.feedback.store import LabelStore

        store = LabelStore(path)
        try:
            return store.labels()
        finally:
            store.close()
    return read_labels(path)


@label_app.command("stats")
def stats_cmd(
    labels: Annotated[Path, typer.Argument(help="A labels file (or the session's .sqlite).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Label counts by choice and annotator, the pairs they give, and Cohen's kappa on doubly labelled items."""
    from rich.table import Table

    from thinktune.data.labels import label_summary

    setup_logging(False)
    with user_errors():
        summary = label_summary(_labels(labels))
    if as_json:
        out.print_json(json.dumps(summary))
        return
    t = Table(title=f"{labels}: {summary['labels']} labels by {summary['annotators']} annotator(s) on "
                    f"{summary['items']} items")
    for col in ("annotator", "labels", "A", "B", "rank", "tie", "both_bad", "skip", "median s"):
        t.add_column(col, justify="right" if col != "annotator" else "left")
    for name, row in summary["per_annotator"].items():
        secs = row.get("median_seconds")
        t.add_row(name, str(row["labels"]), *(str(row.get(c, 0)) for c in ("A", "B", "rank", "tie", "both_bad",
                                                                           "skip")),
                  "–" if secs is None else f"{secs:.1f}")
    out.print(t)
    out.print(f"pairs: {summary['pairs']} (no pair: {summary['tie']} tie, {summary['both_bad']} both bad, "
              f"{summary['disagreement']} disagreeing, {summary['identical']} identical texts); verdict revealed "
              f"on {summary['verdict_seen']} labels")
    a = summary["agreement"]
    if a["items"]:
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.2f}"
        out.print(f"agreement on {a['items']} items labelled twice: {a['observed']:.0%} observed, Cohen's kappa "
                  f"{kappa}")
        for row in a["by_pair"]:
            k = "–" if row["kappa"] is None else f"{row['kappa']:.2f}"
            out.print(f"  {' & '.join(row['annotators'])}: {row['items']} items, {row['observed']:.0%}, kappa {k}")
    else:
        out.print("agreement: no item was labelled by two annotators yet")


@label_app.command("pairs")
def pairs_cmd(
    labels: Annotated[Path, typer.Argument(help="A labels file (or the session's .sqlite).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Preference pairs (JSONL) in TRL's format.")],
) -> None:
    """Write the pairs the labels give in TRL's conversational preference format (prompt / chosen / rejected)."""
    from thinktune.data.labels import preference_pairs, trl_preference_rows
    from thinktune.data.records import write_jsonl

    setup_logging(False)
    with user_errors():
        pairs, counts = preference_pairs(_labels(labels))
        n = write_jsonl(out_file, trl_preference_rows(pairs))
    out.print(f"{n} pairs -> {out_file} (no pair: {counts.tie} tie, {counts.both_bad} both bad, "
              f"{counts.disagreement} disagreeing, {counts.identical} identical; {counts.choices.get('skip', 0)} "
              f"skipped labels)")


@label_app.command("export")
def export_cmd(
    db: Annotated[Path, typer.Argument(help="The session database (.sqlite).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The labels file to write.")],
) -> None:
    """Write a session's labels file from its database (the server does this by itself while it runs)."""
    from thinktune.feedback.store import LabelStore

    setup_logging(False)
    with user_errors():
        store = LabelStore(db)
        try:
            n = store.export(out_file)
        finally:
            store.close()
    out.print(f"{n} labels -> {out_file}")
