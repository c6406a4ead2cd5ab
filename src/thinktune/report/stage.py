"""The recipe's ``report`` stage: write ``runs/<name>/report.html`` for the run (report/build.py).

Enabled by a ``report: {}`` block (config.ReportStage). It runs last, after the audit, on rank 0, and only reads
the run directory, so it can be redone at any time (``--restart-from report``) or replaced by
``thinktune report runs/<name>``. The file is written atomically (temp + rename).
"""

from __future__ import annotations

from typing import Any

from thinktune.report.build import ReportOptions, write_report


def run(run, resume: bool) -> dict[str, Any]:
    cfg = run.recipe.report
    opts = ReportOptions() if cfg is None else ReportOptions(samples_per_model=cfg.samples_per_model,
                                                              score_rewards=cfg.score_rewards)
    out = run.root / "report.html"
    info = write_report([run.root], out, opts)
    return {"path": str(out), "bytes": info.bytes, "sections": info.sections,
            "warnings": [f"{w.kind}: {w.title}" for w in info.warnings], "samples_per_model": info.samples_per_model}
