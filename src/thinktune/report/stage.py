"""The recipe's ``report`` stage: write ``runs/<name>/report.html`` for the run (report/build.py).

Enabled by a ``report: {}`` block (config.ReportStage). It runs last, after the audit, on rank 0, and only reads
the run directory, so it can be redone at any time (``--restart-from report``) or replaced by
``thinktune report runs/<name>``. The file is written atomically (temp + rename).
"""

from __future__ import annotations

from typing import Any

from thinktune.context import StageContext
from thinktune.report.build import ReportOptions, write_report


def run_stage(ctx: StageContext) -> dict[str, Any]:
    out = ctx.output_path("report")
    info = write_report([ctx.root], out, ReportOptions(samples_per_model=ctx.config.samples_per_model))
    return {"path": str(out), "bytes": info.bytes, "sections": info.sections,
            "warnings": [f"{w.kind}: {w.title}" for w in info.warnings], "samples_per_model": info.samples_per_model}
