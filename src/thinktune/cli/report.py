"""``thinktune report RUN_DIR [RUN_DIR …] [-o report.html]``: the self-contained HTML report of a run, or of several
runs side by side. Routing and rendering only; the work lives in :mod:`thinktune.report.build`::

    thinktune report runs/quickstart                     # writes runs/quickstart/report.html
    thinktune report runs/a runs/b -o compare.html      # a comparison report, model by model
    thinktune report runs/a --samples 50                # a smaller file

Prints where the report went, its size and the failure patterns it warns about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinktune.cli.console import console, out, setup_logging, user_errors


def report_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (runs/<name>); several = a comparison.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML file (default: "
                                                "RUN_DIR/report.html for one run, ./report.html for several).")] = None,
    samples: Annotated[int, typer.Option(min=0, help="Held-out items per model in the sample browser.")] = 200,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")] = False,
) -> None:
    """Write a self-contained HTML report of one run, or a comparison of several."""
    from rich.markup import escape

    from thinktune.report.build import ReportOptions, write_report

    setup_logging(verbose)
    target = output or (run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html"))
    with user_errors():
        info = write_report(run_dirs, target, ReportOptions(samples_per_model=samples))
    for w in info.warnings:
        console.print(f"[bold yellow]warning[/] {escape(w.run)}: {escape(w.title)}", highlight=False)
    out.print(f"report: {escape(str(target))} ({info.bytes / 1e6:.2f} MB; {', '.join(info.sections)}; "
              f"{len(info.models)} model(s), {len(info.warnings)} warning(s))", highlight=False)
