"""The run's state machine: skip complete stages, resume an interrupted one, refuse changes.

The run directory's layout is in context.py; the stages and their order are the stage table (config.STAGES).
:func:`execute` walks the table: each stage function (the table's ``entry``, imported when the stage runs) gets
a :class:`thinktune.context.StageContext` and returns a JSON-able result that goes into the manifest.

Rules:

1. A stage is *complete* when its output (``final/`` for a stage that makes a model, else the stage directory)
   exists and the manifest says ``complete`` with the same fingerprint. Both are written atomically
   (temp + rename).
2. A stage's fingerprint hashes everything its output depends on: seed, model, format, data and the configs
   of this and every earlier stage (operational fields such as ``save_steps`` excluded).
3. ``thinktune run`` skips complete stages, resumes a ``running`` stage with an unchanged fingerprint from its
   latest committed checkpoint, and refuses a stage whose fingerprint changed unless ``--restart-from`` names
   it or an earlier stage; then that stage and all later ones are redone from scratch. A *view* stage (the
   report) is rebuilt on every run. A stage that never completed and left nothing to resume (no committed
   checkpoint, no DPO pairs) has no result to conflict with: under changed inputs it simply runs again (fixing a
   recipe that failed, say on an unknown reward, is not a change of inputs that needs ``--restart-from``).
4. The run directory is validated before anything is written (paths.py): it must be a directory of its own,
   and if it exists, a thinktune run directory. Starting a run sweeps what killed commands left in it: stale
   temp files, half-built staging directories, a directory a killed commit had moved aside (io.py).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thinktune import __version__
from thinktune.config import (
    STAGES,
    Recipe,
    as_first_released,
    fingerprint,
    resolved_dict,
    stage_row,
)
from thinktune.context import MANIFEST_FILE, RECIPE_FILE, RunDir, StageContext
from thinktune.errors import RunStateError
from thinktune.io import atomic_write_json, atomic_write_text, sweep_temps
from thinktune.paths import run_dir_problem
from thinktune.progress import reporter
from thinktune.run_lock import run_lock

# Fields that change how a stage runs but not what it produces.
OPERATIONAL_FIELDS = {"save_steps", "keep_checkpoints", "logging_steps", "eval_every", "eval_items",
                      "eval_loss_every",
                      "gradient_checkpointing", "reward_workers", "reward_deadline", "reward_max_error_fraction",
                      "reward_probes", "reward_probe_items", "max_nonfinite_steps", "preflight", "preflight_groups",
                      "preflight_max_truncated", "min_reward_model_accuracy"}


def _strip(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _strip(v) for k, v in cfg.items() if k not in OPERATIONAL_FIELDS}
    return cfg


def stage_inputs(recipe: Recipe, stage: str) -> dict[str, Any]:
    """Everything a stage's output depends on (hashed into its fingerprint, diffed in refusals)."""
    full = resolved_dict(recipe)
    inputs: dict[str, Any] = {"seed": full["seed"], "model": full["model"], "format": full["format"],
                              "data": full["data"]}
    upto = [s.name for s in STAGES].index(stage) + 1
    for s in STAGES[:upto]:
        if s.config is not None and not s.view and full.get(s.field) is not None:
            inputs[s.field] = _strip(full[s.field])
    return inputs


def inputs_fingerprint(inputs: dict[str, Any]) -> str:
    """A stage's fingerprint: its inputs hashed under the first release's key names (config.as_first_released)."""
    return fingerprint(as_first_released(inputs))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"thinktune": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "math-verify"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class StagePlan:
    stage: str
    action: str  # "skip" | "resume" | "run"
    reason: str = ""


class RunState(RunDir):
    """One run directory's manifest: the plan of a run and the transitions of its stages."""

    def __init__(self, root: Path, recipe: Recipe):
        super().__init__(root, recipe)
        self.manifest_path = self.root / MANIFEST_FILE
        self.manifest = self._read_manifest()

    # -- manifest ----------------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunStateError(f"{self.manifest_path}: corrupt manifest ({e}); delete the run directory") from None
        data.setdefault("stages", {})
        return data

    def _write_manifest(self) -> None:
        atomic_write_json(self.manifest_path, self.manifest)

    def stage_record(self, stage: str) -> dict[str, Any]:
        return self.manifest["stages"].get(stage, {})

    def is_complete(self, stage: str) -> bool:
        rec = self.stage_record(stage)
        return rec.get("status") == "complete" and self.output_path(stage).exists()

    def has_progress(self, stage: str) -> bool:
        """Whether an unfinished stage left work a resume would continue (committed checkpoints, DPO pairs)."""
        d = self.stage_dir(stage)
        return d.is_dir() and (any(d.glob("checkpoint-*/COMMITTED")) or (d / "pairs_stats.json").exists())

    # -- planning ----------------------------------------------------------------------------------------
    def plan(self, restart_from: str | None = None) -> list[StagePlan]:
        stages = self.recipe.stages()
        if problem := run_dir_problem(self.root):
            raise RunStateError(problem)
        if restart_from is not None and restart_from not in stages:
            raise RunStateError(f"--restart-from {restart_from!r}: this recipe's stages are {', '.join(stages)}")
        plans: list[StagePlan] = []
        restarting = False
        for stage in stages:
            restarting = restarting or stage == restart_from
            rec = self.stage_record(stage)
            inputs = stage_inputs(self.recipe, stage)
            fp = inputs_fingerprint(inputs)
            if stage_row(stage).view:  # a view of the run, cheap to rebuild: always regenerated, never refused
                plans.append(StagePlan(stage, "run", "regenerated"))
            elif restarting:
                plans.append(StagePlan(stage, "run", "restarted"))
            elif not rec:
                if self.stage_dir(stage).exists():
                    plans.append(StagePlan(stage, "run", "leftover directory from an unrecorded attempt"))
                else:
                    plans.append(StagePlan(stage, "run", "new"))
            elif rec.get("fingerprint") != fp and rec.get("status") != "complete" and not self.has_progress(stage):
                plans.append(StagePlan(stage, "run", "the earlier attempt, under other inputs, left nothing to resume"))
            elif rec.get("fingerprint") != fp:
                keys = changed_keys(rec.get("inputs", {}), inputs)
                shown = ", ".join(keys[:8]) + (" …" if len(keys) > 8 else "")
                raise RunStateError(
                    f"stage '{stage}' in {self.root} was {rec.get('status', 'started')} with different inputs "
                    f"(changed: {shown}). Use --restart-from {stage} to redo it and every later stage, "
                    f"or choose another run name."
                )
            elif self.is_complete(stage):
                plans.append(StagePlan(stage, "skip", "complete"))
            else:
                plans.append(StagePlan(stage, "resume", "interrupted"))
        return plans

    # -- transitions -------------------------------------------------------------------------------------
    def begin(self) -> None:
        """Write the resolved recipe and the run-level manifest fields (after planning succeeded)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        atomic_write_text(self.root / RECIPE_FILE, yaml.safe_dump(resolved_dict(self.recipe), sort_keys=False))
        self.manifest.update({
            "name": self.recipe.name,
            "recipe_hash": inputs_fingerprint(resolved_dict(self.recipe)),
            "versions": versions(),
            "hardware": {"platform": platform.platform(), "processor": platform.machine(), "cpu": cpu_model(),
                         "cpus": _cpu_count(), "torch_threads": _torch_threads(), "gpu": _gpu_name()},
        })
        self.manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_manifest()

    def sweep(self) -> None:
        """Remove what killed commands left: stale temp files, staging directories (``.name.tmp``), and put back a
        directory a killed commit had moved aside. Only called by the one command that owns the run directory."""
        sweep_temps(self.root)
        for parent in (self.root, *(self.stage_dir(s.name) for s in STAGES)):
            if parent.is_dir():
                for tmp in parent.glob(".*.tmp"):
                    if tmp.is_dir() and not tmp.is_symlink():
                        shutil.rmtree(tmp, ignore_errors=True)

    def reset_stage(self, stage: str) -> None:
        """Delete a stage's directory and record (for a restart). The record goes first and the directory is
        renamed away before it is deleted, so a kill half-way never leaves a half-deleted output marked complete."""
        self.manifest["stages"].pop(stage, None)
        self._write_manifest()
        d = self.stage_dir(stage)
        if d.exists():
            trash = d.with_name(f".{d.name}.deleting.tmp")
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(d, trash)
            shutil.rmtree(trash)

    def forget(self, stages: list[str]) -> None:
        """Drop the records of the stages a ``--restart-from`` is about to redo, all before the first of them runs:
        a restart interrupted in its first stage then resumes with a plain ``thinktune run``, instead of meeting a
        later stage still recorded complete under the old inputs. Their directories stay until each stage runs
        (``reset_stage``); a stage directory without a record is redone, never trusted."""
        if any(s in self.manifest["stages"] for s in stages):
            for s in stages:
                self.manifest["stages"].pop(s, None)
            self._write_manifest()

    def mark_running(self, stage: str) -> None:
        rec = self.manifest["stages"].setdefault(stage, {})
        inputs = stage_inputs(self.recipe, stage)
        rec.update({"status": "running", "fingerprint": inputs_fingerprint(inputs), "inputs": inputs})
        rec.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        rec["attempts"] = rec.get("attempts", 0) + 1
        self._write_manifest()

    def mark_complete(self, stage: str, seconds: float, result: dict[str, Any]) -> None:
        rec = self.manifest["stages"][stage]
        rec.update({"status": "complete", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "seconds": round(rec.get("seconds_before", 0.0) + seconds, 2), "result": result})
        rec.pop("seconds_before", None)
        self._write_manifest()

    def discard_staging(self, stage: str) -> None:
        """Remove half-built staging directories (``.name.tmp``) a failed stage left behind."""
        for parent in (self.root, self.stage_dir(stage)):
            if parent.is_dir():
                for tmp in parent.glob(".*.tmp"):
                    if tmp.is_dir():
                        shutil.rmtree(tmp, ignore_errors=True)

    def add_partial_time(self, stage: str, seconds: float) -> None:
        rec = self.manifest["stages"].get(stage)
        if rec is not None:
            rec["seconds_before"] = round(rec.get("seconds_before", 0.0) + seconds, 2)
            self._write_manifest()


def cpu_model() -> str | None:
    """CPU model and the vector ISA torch dispatches to: runs are bit-identical only on the same kind of CPU (the same
    seed gave 56.4 % and 27.8 % quickstart SFT accuracy on two x86 hosts with identical package versions)."""
    name, ident = None, []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and name is None:
                    name = value
                elif key in ("cpu family", "model") and len(ident) < 2:
                    ident.append(f"{key} {value}")
                if key == "flags":
                    break
    except OSError:
        pass
    try:
        import torch

        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - optional detail
        isa = None
    parts = [p for p in (name, ", ".join(ident) or None, isa and f"torch {isa}") if p]
    return "; ".join(parts) or None


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


StageFn = Callable[[StageContext], dict[str, Any]]


def default_stage_fns() -> dict[str, StageFn]:
    """Every stage's own function, from the stage table."""
    return {s.name: s.function() for s in STAGES}


def execute(recipe: Recipe, restart_from: str | None = None, stage_fns: dict[str, StageFn] | None = None) -> RunState:
    """Run (or continue) the recipe's pipeline. Returns the run's state with its manifest up to date.

    ``stage_fns`` replaces the table's functions for the stages it names (``thinktune run --processes N`` launches
    the training stages in workers; tests use stand-ins).
    """
    RunState(recipe.run_dir(), recipe).plan(restart_from)  # a refusal leaves no directory behind
    with run_lock(recipe.run_dir()):  # one command per run directory (run_lock.py); planned again under the lock
        return _execute(RunState(recipe.run_dir(), recipe), restart_from, stage_fns)


def _execute(state: RunState, restart_from: str | None, stage_fns: dict[str, StageFn] | None) -> RunState:
    plans = state.plan(restart_from)
    state.begin()
    state.forget([p.stage for p in plans if p.reason == "restarted"])
    rep = reporter()
    for p in plans:
        if p.action == "skip":
            rep.note(f"[{p.stage}] complete — skipped")
            continue
        if p.action == "run":
            state.reset_stage(p.stage)
        else:
            rep.note(f"[{p.stage}] interrupted earlier — resuming")
        state.mark_running(p.stage)
        fn = (stage_fns or {}).get(p.stage) or stage_row(p.stage).function()
        t0 = time.perf_counter()
        try:
            result = fn(StageContext(state.root, state.recipe, p.stage, resume=p.action == "resume"))
        except BaseException:
            state.add_partial_time(p.stage, time.perf_counter() - t0)
            state.discard_staging(p.stage)
            raise
        state.mark_complete(p.stage, time.perf_counter() - t0, result)
        rep.note(f"[{p.stage}] done in {time.perf_counter() - t0:.1f}s")
    return state
