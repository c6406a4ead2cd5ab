"""Read a run directory (context.py's layout) into one :class:`RunData` for the report; every part is optional.

``load_run(path)`` never fails on a partial run: missing files leave their field empty (the report omits that
section), unreadable ones are listed in ``problems`` (shown in the report) instead of raising. Only a path that
is not a run directory at all (no manifest.json, recipe.yaml or audit/) raises :class:`ReportError`.

Large files are read with limits: metrics.jsonl fully (a few rows per logged step), examples.jsonl fully (one row
per held-out item), GRPO ``completions/step-N.jsonl`` only for a few steps spread over the run (the sample browser
shows a subsample; build.py decides how many). The report only reads: the held-out samples' reward scores
(``examples.jsonl`` ``rewards``, stored by the audit stage) and the reward-hacking probe report
(``grpo/reward_probes.json``, stored by the GRPO stage) are shown as the run stored them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinktune.config import MODEL_STAGES, TRAINING_STAGES, Recipe
from thinktune.context import MANIFEST_FILE, RECIPE_FILE, RESULTS_FILE, read_run_recipe
from thinktune.errors import ThinktuneError
from thinktune.rewards.probes import PROBES_FILE

ROLLOUT_STEPS = 3  # GRPO completion files read: first, middle, last logged step


class ReportError(ThinktuneError):
    """The report cannot be built (a path that is not a run directory, an output that cannot be written)."""


@dataclass
class ModelAudit:
    run: str
    model: str  # the stage whose model was audited (base, sft, grpo, …)
    agg: dict[str, Any]  # audit.json
    rows: list[dict[str, Any]]  # examples.jsonl


@dataclass
class RunData:
    root: Path
    name: str
    manifest: dict[str, Any] = field(default_factory=dict)
    recipe: Recipe | None = None  # the resolved recipe.yaml (None when missing or no longer valid)
    stats: dict[str, Any] | None = None  # data/stats.json
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stage -> metrics.jsonl rows
    effective: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> effective_config.json
    audits: dict[str, ModelAudit] = field(default_factory=dict)  # model stage -> audit, in pipeline order
    comparison: dict[str, Any] | None = None  # audit/comparison.json
    results: dict[str, Any] | None = None  # results.json
    probes: dict[str, Any] | None = None  # the stored reward-hacking probe report (ProbeReport.to_dict())
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # GRPO completions of a few steps
    problems: list[str] = field(default_factory=list)  # files that exist but could not be read

    def stage_status(self) -> dict[str, str]:
        return {s: rec.get("status", "?") for s, rec in self.manifest.get("stages", {}).items()}


def _json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(f"{path}: unreadable ({e.__class__.__name__}: {e})")
        return None


def read_jsonl(path: Path, problems: list[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file; bad lines are skipped and counted in ``problems`` (a crash can tear the last line)."""
    if not path.is_file():
        return []
    rows, bad = [], 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if limit is not None and len(rows) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                else:
                    bad += 1
    except OSError as e:
        problems.append(f"{path}: unreadable ({e})")
    if bad:
        problems.append(f"{path}: {bad} unreadable line(s) skipped")
    return rows


def load_run(path: str | Path) -> RunData:
    root = Path(path)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    if not any((root / f).exists() for f in (MANIFEST_FILE, RECIPE_FILE, "audit", RESULTS_FILE)):
        raise ReportError(f"{root}: not a run directory (no {MANIFEST_FILE}, {RECIPE_FILE} or audit/)")
    problems: list[str] = []
    manifest = _json(root / MANIFEST_FILE, problems) or {}
    recipe = None
    if (root / RECIPE_FILE).is_file():
        try:
            recipe = read_run_recipe(root)
        except (OSError, ThinktuneError) as e:
            problems.append(str(e).splitlines()[0] if str(e) else f"{root / RECIPE_FILE}: unreadable")
    run = RunData(root=root, name=str(manifest.get("name") or (recipe.name if recipe else None) or root.name),
                  manifest=manifest, recipe=recipe, problems=problems)
    run.stats = _json(root / "data" / "stats.json", problems)
    for stage in TRAINING_STAGES:
        rows = read_jsonl(root / stage / "metrics.jsonl", problems)
        if rows:
            run.metrics[stage] = rows
        eff = _json(root / stage / "effective_config.json", problems)
        if eff:
            run.effective[stage] = eff
    run.audits = _load_audits(root / "audit", run.name, problems)
    run.comparison = _json(root / "audit" / "comparison.json", problems)
    run.results = _json(root / RESULTS_FILE, problems)
    run.probes = (_json(root / "grpo" / PROBES_FILE, problems)
                  or _json(root / "grpo" / "reward_audit.json", problems))  # its name before the probe rename
    run.rollouts = _load_rollouts(root / "grpo" / "completions", problems)
    return run


def _load_audits(audit_dir: Path, run_name: str, problems: list[str]) -> dict[str, ModelAudit]:
    if not audit_dir.is_dir():
        return {}
    names = [p.name for p in audit_dir.iterdir() if p.is_dir() and (p / "audit.json").is_file()]
    order = {s: i for i, s in enumerate(MODEL_STAGES)}
    names.sort(key=lambda n: (order.get(n, len(order)), n))
    out = {}
    for name in names:
        agg = _json(audit_dir / name / "audit.json", problems)
        if isinstance(agg, dict):
            out[name] = ModelAudit(run_name, name, agg, read_jsonl(audit_dir / name / "examples.jsonl", problems))
    return out


def _load_rollouts(comp_dir: Path, problems: list[str]) -> list[dict[str, Any]]:
    files = sorted(comp_dir.glob("step-*.jsonl")) if comp_dir.is_dir() else []
    if not files:
        return []
    picks = sorted({0, len(files) // 2, len(files) - 1})[:ROLLOUT_STEPS]
    rows = []
    for i in picks:
        rows.extend(read_jsonl(files[i], problems, limit=256))
    return rows

