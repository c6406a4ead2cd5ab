"""Run every arm × seed of an experiment as a normal thinktune run, sharing completed stages between runs.

Layout: ``<out>/<experiment>/<arm>-s<seed>/`` is an ordinary run directory (run.py). Summaries go to
``<results>/<experiment>/<arm>-s<seed>.json`` (small, committed).

Sharing (issue 9: "arms share completed stages through the run directory"): before a run starts, every run directory
under ``<out>`` (all experiments) is a donor candidate. A stage's fingerprint (run.py) hashes the seed, model, data
and the configs of this and every earlier stage, so a donor stage with the same fingerprint is exactly the stage this
run would compute. The longest prefix of stages (data, base, sft, dpo, grpo, audit) that some donor has *complete*
is hard-linked into the new run directory (copied where links fail) and its manifest records are copied with
``shared_from`` set; ``execute`` then skips them as complete. The audit's fingerprint covers the configs of every
stage before it, so it is shared only between runs with the same models (identical arms of two experiments).

Resumable: a run whose summary exists with the same recipe hash is skipped; an interrupted run resumes through
run.py's own state machine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinktune.config import STAGES, Recipe, stage_row
from thinktune.context import RunDir
from thinktune.experiments.spec import LoadedExperiment, MetricSpec, arm_hash, file_hash
from thinktune.io import atomic_write_json
from thinktune.progress import reporter
from thinktune.run import RunState, execute, inputs_fingerprint, stage_inputs, versions
from thinktune.run_lock import try_run_lock

SHAREABLE = tuple(s.name for s in STAGES if not s.view)  # a view (the report) is cheap and always rebuilt
_FIRST_TRAINING = next(i for i, s in enumerate(STAGES) if s.trains)
COSTLY = tuple(s.name for s in STAGES[_FIRST_TRAINING:] if not s.view)  # worth waiting for another run to finish


def stage_fingerprints(recipe: Recipe) -> dict[str, str]:
    return {s: inputs_fingerprint(stage_inputs(recipe, s)) for s in recipe.stages() if s in SHAREABLE}


def _complete_records(root: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {s: rec for s, rec in manifest.get("stages", {}).items() if rec.get("status") == "complete"}


def find_donor(recipe: Recipe, pool: Path) -> tuple[Path | None, list[str]]:
    """(donor run dir, stages to take from it): the completed run under ``pool`` that shares the longest prefix of
    stage fingerprints with ``recipe``."""
    fps = stage_fingerprints(recipe)
    order = [s for s in recipe.stages() if s in fps]
    target = recipe.run_dir().resolve()
    best: tuple[Path | None, list[str]] = (None, [])
    for manifest in sorted(pool.glob("*/*/manifest.json")):
        root = manifest.parent
        if root.resolve() == target:
            continue
        recs = _complete_records(root)  # a corrupt manifest: no complete stage, not a donor
        donor = RunDir(root, recipe)  # for output_path(), which depends on the root and the stage name alone
        shared = []
        for s in order:
            if s in recs and recs[s].get("fingerprint") == fps[s] and donor.output_path(s).exists():
                shared.append(s)
            else:
                break
        if len(shared) > len(best[1]):
            best = (root, shared)
    return best


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def share_stages(recipe: Recipe, pool: Path) -> list[str]:
    """Hard-link a donor's completed stages whose fingerprints match into this run's directory (before ``execute``).
    Returns the stages taken. A run that already has records for those stages keeps its own."""
    root = recipe.run_dir()
    own = _complete_records(root)
    donor, stages = find_donor(recipe, pool)
    stages = [s for s in stages if s not in own]
    if donor is None or not stages:
        return []
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"stages": {}}
    donor_recs = _complete_records(donor)
    root.mkdir(parents=True, exist_ok=True)
    for s in stages:
        dst = root / s
        if dst.exists():
            shutil.rmtree(dst)
        tmp = root / f".{s}.share.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        _link_tree(donor / s, tmp)
        os.replace(tmp, dst)
        if s == "audit" and (donor / "results.json").exists():  # the audit stage's run-level summary
            shutil.copy2(donor / "results.json", root / "results.json")
        manifest["stages"][s] = {**donor_recs[s], "shared_from": os.path.relpath(donor, root)}
        atomic_write_json(manifest_path, manifest)  # after each stage: a crash leaves a consistent prefix
    return stages


# ----------------------------------------------------------------------------------------------------------------
# Metrics and summaries


def _dotted(obj: Any, path: str) -> Any:
    cur = obj
    for key in path.split("."):
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return None
    return cur


def last_model_stage(recipe: Recipe) -> str:
    return [s for s in recipe.stages() if stage_row(s).makes_model][-1]


def extract_metric(run_root: Path, recipe: Recipe, m: MetricSpec, audit_dir: str = "audit") -> dict[str, Any]:
    """{"value": float | None, "ci95": [lo, hi] | None} for one metric of one finished run."""
    stage = m.stage or last_model_stage(recipe)
    model = last_model_stage(recipe) if m.model == "last" else m.model
    value, ci = None, None
    if m.source == "audit":
        path = run_root / audit_dir / model / "audit.json"
        if path.exists():
            agg = json.loads(path.read_text())
            value = _dotted(agg, m.path)
            ci = _dotted(agg, m.ci) if m.ci else None
    elif m.source == "result":
        rec = _complete_records(run_root).get(stage, {})
        value = _dotted(rec.get("result", {}), m.path)
    else:
        path = run_root / stage / "metrics.jsonl"
        if path.exists():
            vals = []
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                v = _dotted(row, m.path)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    vals.append(float(v))
            if vals:
                tail = vals[-m.last:]
                value = sum(tail) / len(tail)
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, (int, float)):
        value = None
    if not (isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci)):
        ci = None
    return {"value": None if value is None else float(value), "ci95": ci}


def summarize_run(exp: LoadedExperiment, arm: str, seed: int, recipe: Recipe, reduced: bool,
                  shared: list[str] | None = None) -> dict[str, Any]:
    root = recipe.run_dir()
    manifest = json.loads((root / "manifest.json").read_text())
    kind = exp.spec.arms[arm].variant  # type: ignore[union-attr]
    audit_dirs = ["audit"] + ([f"audit-{kind}"] if kind else [])
    metrics = {m.name: extract_metric(root, recipe, m, audit_dirs[-1]) for m in exp.spec.metrics}
    stages = {s: {"seconds": rec.get("seconds"), "fingerprint": rec.get("fingerprint"),
                  "finished": rec.get("finished"), "shared_from": rec.get("shared_from")}
              for s, rec in manifest.get("stages", {}).items()}
    if kind:  # the variant's audit is this arm's own compute, listed as a pseudo-stage
        done = root / f"audit-{kind}" / last_model_stage(recipe) / "audit.json"
        agg = json.loads(done.read_text()) if done.exists() else {}
        stages[f"audit-{kind}"] = {"seconds": agg.get("variant_seconds"), "fingerprint": None,
                                   "finished": agg.get("variant_finished"), "shared_from": None}
    return {
        "experiment": exp.name,
        "arm": arm,
        "seed": seed,
        "reduced": reduced,
        "recipe_hash": arm_hash(exp, arm, seed, reduced),
        "experiment_file": os.path.relpath(exp.path.resolve(), exp.root.resolve()),
        "experiment_file_hash": file_hash(exp.path),
        "base_recipe": exp.spec.recipe,
        "base_recipe_hash": file_hash(exp.recipe_path()),
        "stages": stages,
        "shared_stages": shared or [],
        "compute_seconds": round(sum((r.get("seconds") or 0) for r in stages.values() if not r.get("shared_from")), 1),
        "metrics": metrics,
        "audit": audit_headlines(root, audit_dirs),
        "versions": manifest.get("versions") or versions(),
        "hardware": manifest.get("hardware"),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def audit_headlines(root: Path, audit_dirs) -> dict[str, dict[str, Any]]:
    """The audit's one-line summary (battery.headline) of every audited model, keyed ``<dir>/<model>``."""
    from thinktune.audit.battery import headline

    out = {}
    for d in audit_dirs:
        for path in sorted((root / d).glob("*/audit.json")):
            agg = json.loads(path.read_text())
            out[f"{d}/{path.parent.name}"] = {"accuracy_ci95": agg.get("accuracy_ci95"), **headline(agg)}
    return out


def summary_path(results: Path, exp: str, arm: str, seed: int) -> Path:
    return results / exp / f"{arm}-s{seed}.json"


# ----------------------------------------------------------------------------------------------------------------
# Decoding variants


def audit_variant(run: RunState, exp: LoadedExperiment, name: str) -> None:
    """Audit the run's last model again with the arm's decoding variant into ``<run>/audit-<variant>/<model>/``:
    TIP (decoding/tip.py) as a logits processor on every generation of the audit, or activation steering
    (decoding/steering.py) as a residual-stream hook around the whole audit. Already done → nothing to do."""
    import torch

    from thinktune.audit.battery import audit_model, with_unanswerable, write_audit
    from thinktune.data.records import read_records
    from thinktune.decoding.variants import intervention
    from thinktune.models import load_stage_output

    arm = exp.spec.arms[name]
    recipe, cfg, kind = run.recipe, run.recipe.audit, arm.variant  # type: ignore[union-attr]
    assert cfg is not None and kind is not None, "a decoding variant needs the audit stage"
    stage = last_model_stage(recipe)
    target = run.root / f"audit-{kind}" / stage
    if (target / "audit.json").exists():
        return
    t0 = time.perf_counter()
    records = read_records(run.output_path("data") / "eval.jsonl")
    if cfg.max_items:
        records = records[: cfg.max_items]
    records, _ = with_unanswerable(records, cfg)
    torch.manual_seed(recipe.seed)
    model, tok = load_stage_output(run.output_path(stage), recipe.model)
    fmt = recipe.format.completion_format()
    if kind == "tip":
        from thinktune.decoding.tip import TipConfig

        settings: dict[str, Any] = {"alpha": arm.tip.alpha, "beta": arm.tip.beta}  # type: ignore[union-attr]
        if arm.tip.words:  # type: ignore[union-attr]
            settings["words"] = arm.tip.words  # type: ignore[union-attr]
        setting: Any = TipConfig(**settings)
    else:
        from thinktune.decoding.steering import SteeringVector

        steer = arm.steer  # type: ignore[union-attr]
        vector = SteeringVector.load(exp.resolve(steer.vector))
        settings = {"vector": steer.vector, "strength": steer.strength, "layer": vector.layer}
        setting = (vector, steer.strength)
    with intervention(kind, setting, model, tok) as processors:
        agg, rows = audit_model(model, tok, records, cfg, fmt, recipe.model.instruction, recipe.model.system,
                                label=f"{stage}+{kind}", seed=recipe.seed, logits_processors=processors)
    agg[kind] = settings
    agg["variant_seconds"] = round(time.perf_counter() - t0, 2)
    agg["variant_finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = target.with_name(f".{stage}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_audit(tmp, agg, rows)
    os.replace(tmp, target)


# ----------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class RunOutcome:
    experiment: str
    arm: str
    seed: int
    status: str  # "done" | "skipped" | "busy" (another process runs it) | "failed" | "pending"
    seconds: float = 0.0
    shared: tuple[str, ...] = ()
    error: str = ""


def run_one(exp: LoadedExperiment, arm: str, seed: int, out: Path, results: Path, reduced: bool = False,
            stage_fns: dict[str, Callable] | None = None) -> RunOutcome:
    """One arm × seed: skip when its summary matches, else share, execute, audit variants, summarize."""
    recipe = exp.arm_recipe(arm, seed, reduced, out / exp.name)
    spath = summary_path(results, exp.name, arm, seed)
    if spath.exists():
        try:
            old = json.loads(spath.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("recipe_hash") == arm_hash(exp, arm, seed, reduced) and old.get("reduced") == reduced:
            return RunOutcome(exp.name, arm, seed, "skipped")
    with try_run_lock(recipe.run_dir()) as mine:  # held around sharing, execute (which re-enters it) and the summary
        if not mine:
            return RunOutcome(exp.name, arm, seed, "busy", error="another process is running it")
        return _run_locked(exp, arm, seed, recipe, out, spath, reduced, stage_fns)


def _run_locked(exp: LoadedExperiment, arm: str, seed: int, recipe: Recipe, out: Path, spath: Path, reduced: bool,
                stage_fns: dict[str, Callable] | None) -> RunOutcome:
    t0 = time.perf_counter()
    shared = share_stages(recipe, out)
    if shared:
        reporter().note(f"{exp.name}/{arm}-s{seed}: sharing {', '.join(shared)} from a completed run")
    if recipe.threads:
        import torch

        torch.set_num_threads(recipe.threads)
    run = execute(recipe, stage_fns=stage_fns)
    spec = exp.spec.arms[arm]  # type: ignore[union-attr]
    variant_error = None
    if spec.variant is not None:  # type: ignore[union-attr]
        try:
            audit_variant(run, exp, arm)
        except ValueError as e:  # e.g. this tokenizer cannot spell any switch word: recorded, the table says why
            variant_error = f"{spec.variant}: {e}"  # type: ignore[union-attr]
    summary = summarize_run(exp, arm, seed, recipe, reduced, shared)
    if variant_error:
        summary["variant_error"] = variant_error
    atomic_write_json(spath, summary)
    return RunOutcome(exp.name, arm, seed, "done", time.perf_counter() - t0, tuple(shared))


def _worker(args: tuple) -> RunOutcome:
    exp_path, root, arm, seed, out, results, reduced = args
    from thinktune.experiments.spec import load_experiment

    exp = load_experiment(exp_path, root)
    try:
        return run_one(exp, arm, seed, Path(out), Path(results), reduced)
    except Exception as e:  # noqa: BLE001 - reported in the parent with the run named
        return RunOutcome(exp.name, arm, seed, "failed", error=f"{type(e).__name__}: {e}")


def plan_order(items: list[tuple[LoadedExperiment, str, int, Recipe]]) -> list[tuple[int, int | None]]:
    """(index, index of the earlier run it must wait for) so that runs sharing a trained stage (sft, dpo, grpo) wait for
    the first run that computes it: the earlier run with the longest common prefix of stage fingerprints."""
    fps = [[(s, f) for s, f in stage_fingerprints(r).items()] for *_, r in items]
    deps: list[tuple[int, int | None]] = []
    for i, mine in enumerate(fps):
        best, best_len = None, 0
        for j in range(i):
            n, trained = 0, False
            for a, b in zip(mine, fps[j]):
                if a != b:
                    break
                n, trained = n + 1, trained or a[0] in COSTLY
            if trained and n > best_len:  # the stages before training (data, the tiny base) take seconds
                best, best_len = j, n
        deps.append((i, best))
    return deps


def run_experiments(exps: list[LoadedExperiment], out: Path, results: Path, reduced: bool = False, jobs: int = 1,
                    on_done: Callable[[RunOutcome], None] | None = None,
                    seeds: list[int] | None = None) -> list[RunOutcome]:
    """Every arm × seed of every experiment (``seeds``: only those). ``jobs`` > 1 runs that many in parallel (separate
    processes); a run that can share stages with an earlier one waits for it. Two runners given disjoint seeds of
    one experiment never wait for or duplicate each other's work."""
    outcomes: list[RunOutcome] = []

    def done(o: RunOutcome) -> None:
        outcomes.append(o)
        if on_done:
            on_done(o)

    ready_exps = []
    for e in exps:
        if missing := e.missing_requirements():  # e.g. a dpo experiment before the dpo stage exists: pending
            done(RunOutcome(e.name, "*", -1, "pending", error=f"needs recipe field(s) {', '.join(missing)}"))
        elif not e.recipe_path().is_file():
            done(RunOutcome(e.name, "*", -1, "pending", error=f"base recipe {e.spec.recipe} not in this checkout"))
        else:
            ready_exps.append(e)
    items = [(e, arm, seed, e.arm_recipe(arm, seed, reduced, out / e.name)) for e in ready_exps
             for arm, seed in e.runs(reduced, seeds)]  # validates every arm before anything runs

    if jobs <= 1:
        for e, arm, seed, _ in items:
            try:
                done(run_one(e, arm, seed, out, results, reduced))
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - one failed run does not stop the others; reported at the end
                if os.environ.get("THINKTUNE_DEBUG"):
                    raise
                done(RunOutcome(e.name, arm, seed, "failed", error=f"{type(err).__name__}: {err}"))
        return outcomes
    import concurrent.futures as cf
    import multiprocessing as mp

    deps = dict(plan_order(items))
    finished: set[int] = set()
    pending = list(range(len(items)))
    running: dict[cf.Future, int] = {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        while pending or running:
            for i in list(pending):
                if len(running) >= jobs:
                    break
                if deps[i] is None or deps[i] in finished:
                    e, arm, seed, _ = items[i]
                    fut = pool.submit(_worker, (str(e.path), str(e.root), arm, seed, str(out), str(results), reduced))
                    running[fut] = i
                    pending.remove(i)
            if not running:  # everything left waits on something that cannot start: run in order
                deps = {i: None for i in pending}
                continue
            ready, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in ready:
                finished.add(running.pop(fut))
                done(fut.result())
    return outcomes
