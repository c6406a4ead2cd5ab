"""Build one self-contained HTML report from one run directory, or a comparison report from several.

    thinktune report runs/quickstart                       # -> runs/quickstart/report.html
    thinktune report runs/a runs/b -o compare.html        # several runs, model by model
    report: {}                                            # in a recipe: the `report` stage writes report.html

From code: ``html, info = build_report([path, …])`` or ``write_report([path, …], out)``.

Sections (each omitted when no run has its data): warnings (report/diagnose.py), run summary, data, training
curves per stage, the audit of every model (report/auditview.py), the reward-hack probe table, and a searchable
sample browser (report/samples.py). The file is self-contained — inline CSS, one inline script, inline SVG, and a
Content-Security-Policy that forbids every network request — readable at 390 px, printable, and kept under
``max_bytes`` (10 MB) by halving the samples shown per model until it fits.

The report reads what the run stored and never runs a model or a reward: the probe table is the GRPO stage's
``grpo/reward_probes.json``, the samples' reward scores are the audit stage's. One deviation: the run's data
statistics that the data stage did not store (synthetic tasks) are computed by the report from the first 20,000
training records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thinktune import __version__
from thinktune.io import atomic_write_text
from thinktune.report.auditview import audit_section
from thinktune.report.diagnose import Finding, diagnose
from thinktune.report.load import ReportError, load_run
from thinktune.report.markup import Ctx, esc, make_ctx
from thinktune.report.samples import samples_section
from thinktune.report.sections import (
    data_section,
    probes_section,
    summary_section,
    training_section,
    warnings_section,
)
from thinktune.report.template import page

MAX_BYTES = 10_000_000  # the limit for one report file


@dataclass
class ReportOptions:
    samples_per_model: int = 200  # held-out items per model in the sample browser (halved until the file fits)
    max_bytes: int = MAX_BYTES


@dataclass
class ReportInfo:
    bytes: int
    runs: list[str]
    models: list[str]
    sections: list[str]
    samples_per_model: int
    warnings: list[Finding] = field(default_factory=list)


NAV = (("warnings", "Warnings"), ("summary", "Summary"), ("data", "Data"), ("training", "Training"),
       ("audit", "Audit"), ("probes", "Reward probes"), ("samples", "Samples"))


def build_report(run_dirs: Sequence[str | Path], options: ReportOptions | None = None) -> tuple[str, ReportInfo]:
    """(the HTML document, what it holds). Raises ReportError when a path is not a run directory."""
    opts = options or ReportOptions()
    if not run_dirs:
        raise ReportError("no run directory given")
    runs = [load_run(p) for p in run_dirs]
    ctx = make_ctx(runs)
    findings = [f for run in runs for f in diagnose(run)]
    fixed = {"warnings": warnings_section(ctx, findings), "summary": summary_section(ctx), "data": data_section(ctx),
             "training": training_section(ctx), "audit": audit_section(ctx), "probes": probes_section(ctx)}
    limit = opts.samples_per_model
    while True:
        parts = {**fixed, "samples": samples_section(ctx, opts.samples_per_model, limit) if limit > 0 else ""}
        html = _page(ctx, parts)
        size = len(html.encode("utf-8"))
        if size <= opts.max_bytes or limit == 0:
            break
        limit //= 2
    info = ReportInfo(size, list(ctx.names), [m.label for m in ctx.models], [k for k, v in parts.items() if v],
                      limit, [f for f in findings if f.level == "warn"])
    return html, info


def write_report(run_dirs: Sequence[str | Path], out: str | Path, options: ReportOptions | None = None) -> ReportInfo:
    html, info = build_report(run_dirs, options)
    try:
        atomic_write_text(out, html)
    except OSError as e:
        raise ReportError(f"{out}: cannot write the report ({e})") from None
    return info


def _page(ctx: Ctx, parts: dict[str, str]) -> str:
    names = ctx.names
    if ctx.multi:
        title = "thinktune comparison — " + (" vs ".join(names) if len(names) <= 3 else f"{len(names)} runs")
    else:
        title = f"thinktune report — {names[0]}"
    models = ", ".join(m.label for m in ctx.models) or "no audited model"
    subtitle = (f"{len(names)} run{'s' if ctx.multi else ''} · models: {esc(models)} · generated "
                f"{esc(time.strftime('%Y-%m-%d %H:%M'))} by thinktune {esc(__version__)}")
    nav = [(a, t) for a, t in NAV if parts.get(a)]
    body = "".join(parts[a] for a, _ in NAV if parts.get(a))
    footer = ("Self-contained report: no external resources, works offline. Runs: "
              + esc(", ".join(str(r.root) for r in ctx.runs)) + ".")
    return page(title, subtitle, nav, body, footer)
