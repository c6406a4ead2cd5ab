"""``thinktune experiments run|table|list``: thinktune measured on known effects (issue 9). Routing and rendering
only; the work lives in :mod:`thinktune.experiments`::

    thinktune experiments list                            # experiments, arms × seeds, cost notes
    thinktune experiments run 01 02                       # every arm × seed, stages shared between runs
    thinktune experiments run --all --jobs 2              # everything, two runs at a time
    thinktune experiments run 01 --reduced --out /tmp/x   # the CI-sized version (summaries under /tmp/x/results)
    thinktune experiments table                           # docs/EVIDENCE.md from experiments/results/ alone
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinktune.cli.console import (
    command_group,
    console,
    out,
    progress_shown,
    setup_logging,
    user_errors,
)

experiments_app = command_group("Reproduce known effects and regenerate docs/EVIDENCE.md.")

NamesArg = Annotated[list[str] | None, typer.Argument(help="Experiments: file stem, its number (01) or a path.")]
DirOpt = Annotated[Path, typer.Option("--experiments", help="Directory of experiment YAML files.")]


@experiments_app.command("list")
def list_cmd(directory: DirOpt = Path("experiments")) -> None:
    """List the experiments with their arms, seeds and cost notes."""
    from rich.table import Table

    from thinktune.experiments.spec import select

    with user_errors():
        exps = select([], directory, all_=True)
    t = Table(title=f"experiments in {directory}/")
    for col in ("name", "arms", "seeds", "runs", "cost"):
        t.add_column(col)
    for e in exps:
        t.add_row(e.name, ", ".join(e.spec.arms), ", ".join(map(str, e.spec.seeds)), str(len(e.runs())),
                  e.spec.cost.strip().splitlines()[0] if e.spec.cost.strip() else "")
    out.print(t)


@experiments_app.command("run")
def run_cmd(
    names: NamesArg = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every experiment.")] = False,
    reduced: Annotated[bool, typer.Option("--reduced", help="The CI-sized version (`reduced:` of each file).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the run directories go (shared between experiments, "
                                          "so arms reuse each other's completed stages).")] = Path("runs/experiments"),
    results: Annotated[Path | None, typer.Option(help="Where summaries go (default: experiments/results, or "
                                                 "OUT/results with --reduced).")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Runs in parallel (separate processes, one thread each).")] = 1,
    seeds: Annotated[str | None, typer.Option(help="Only these seeds, comma-separated (e.g. 0,2): two runners given "
                                                   "disjoint seeds share one experiment without waiting.")] = None,
    table: Annotated[bool, typer.Option("--table/--no-table", help="Regenerate the evidence page afterwards.")] = True,
    directory: DirOpt = Path("experiments"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")] = False,
) -> None:
    """Run every arm × seed of the named experiments (resumable: finished runs are skipped) and write summaries."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from thinktune.experiments.runner import run_experiments
    from thinktune.experiments.spec import select

    setup_logging(verbose)
    results_dir = results or (out_dir / "results" if reduced else Path("experiments/results"))
    failed = []
    with user_errors():
        exps = select(names or [], directory, all_=all_)
        only = _parse_seeds(seeds)
        total = sum(len(e.runs(reduced, only)) for e in exps)
        with progress_shown():
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=False) as progress:
                task = progress.add_task("experiment runs", total=total)

                def on_done(o) -> None:
                    if o.status == "pending":
                        console.print(f"[yellow]pending[/] {o.experiment}: {escape(o.error)}", highlight=False)
                        progress.advance(task, len(next(e for e in exps if e.name == o.experiment).runs(reduced, only)))
                        return
                    progress.advance(task)
                    label = f"{o.experiment}/{o.arm}-s{o.seed}"
                    if o.status == "busy":
                        console.print(f"[yellow]busy[/] {label}: {escape(o.error)}", highlight=False)
                    elif o.status == "failed":
                        failed.append(label)
                        console.print(f"[bold red]failed[/] {label}: {escape(o.error)}", highlight=False)
                    else:
                        shared = f" (shared {', '.join(o.shared)})" if o.shared else ""
                        console.print(f"[green]{o.status}[/] {label} {o.seconds:.0f}s{shared}", highlight=False)

                run_experiments(exps, out_dir, results_dir, reduced=reduced, jobs=jobs, on_done=on_done, seeds=only)
        if table:
            page = results_dir / "EVIDENCE.md" if reduced else Path("docs/EVIDENCE.md")
            _write_table(directory, results_dir, page, reduced, out)
    out.print(f"summaries: {results_dir}/")
    if failed:
        console.print(f"[bold red]error:[/] {len(failed)} run(s) failed: {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)


def _write_table(directory: Path, results: Path, output: Path, reduced: bool, out) -> None:
    from thinktune.experiments.spec import select
    from thinktune.experiments.table import build_table

    label = "experiments/results" if results == Path("experiments/results") else str(results)
    _, evaluated = build_table(select([], directory, all_=True), results, output, reduced, label)
    for r in evaluated:
        out.print(f"{r.exp.name}: {r.verdict}" + (f" ({r.why_pending})" if r.verdict == "pending" else ""),
                  highlight=False)
    out.print(f"evidence page: {output}")


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        from thinktune.errors import RecipeError

        raise RecipeError(f"--seeds expects seeds separated by commas, e.g. 0,2 (got {text!r})")
    return seeds


@experiments_app.command("table")
def table_cmd(
    results: Annotated[Path, typer.Option(help="Directory of run summaries.")] = Path("experiments/results"),
    output: Annotated[Path, typer.Option("--output", "-o", help="The page to write.")] = Path("docs/EVIDENCE.md"),
    reduced: Annotated[bool, typer.Option("--reduced", help="Tabulate the reduced (CI) summaries.")] = False,
    directory: DirOpt = Path("experiments"),
) -> None:
    """Regenerate docs/EVIDENCE.md from the run summaries alone (deterministic; no run directories needed)."""

    with user_errors():
        _write_table(directory, results, output, reduced, out)
