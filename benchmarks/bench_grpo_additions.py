"""Benchmark: GRPO training time to reach SFT + 5 points held-out accuracy, with thinktune's additions vs without.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_grpo_additions.py --sft-runs /tmp/sftruns --out /tmp/bench-additions

For each seed, the quickstart's completed data/base/SFT run ``<sft-runs>/qs-s<seed>`` is copied twice and GRPO is run
on each copy, one after the other in this process, so both arms see the same machine:

* **with** — the recipe's GRPO block plus ``--with`` overrides (default: DAPO dynamic sampling on,
  ``grpo.dynamic_sampling.enabled=true``);
* **without** — the same plus ``--without`` overrides (default: ``grpo.dynamic_sampling.enabled=false``), i.e. plain
  TRL ``GRPOTrainer``.

Both log greedy held-out accuracy on the first ``eval_items`` held-out items every ``--eval-every`` steps. The target is
the SFT model's accuracy on the same items (the last ``eval_accuracy`` of ``sft/metrics.jsonl``) + ``--points``. Time
to target is the summed TRL ``step_time`` (generation + scoring + backward; evaluations excluded) up to the first
evaluation at or above the target. Printed: per seed the SFT accuracy, each arm's time to target (or "not reached"
with its best accuracy), the ratio with / without, and the median ratio over the seeds (the acceptance is ≤ 0.7).
A seed whose arm misses the target still bounds its ratio, as an interval: only the *without* arm missed →
``≤ with / without's whole training time`` (its true time to target is longer than its run); only the *with* arm
missed → ``≥ with's whole training time / without``; neither reached it → unknown (0 to ∞). The median over all the
seeds is then an interval too — a median is monotone in each value, so it lies between the median of the lower ends
and the median of the upper ends — and the verdict is "met" only when its upper end is ≤ 0.7, "not met" when its
lower end is above, else "not established". No seed is dropped from the median.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def time_to_target(rows: list[dict], target: float) -> tuple[float | None, float, float]:
    """(seconds of training steps until the first eval ≥ target or None, best eval accuracy, total seconds)."""
    step_time: dict[int, float] = {}
    prev = 0
    for r in sorted((r for r in rows if "step_time" in r), key=lambda r: r["step"]):
        for s in range(prev + 1, r["step"] + 1):  # a logged row averages the steps since the previous row
            step_time[s] = r["step_time"]
        prev = r["step"]
    evals = sorted((r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r)
    total = sum(step_time.values())
    best = max((a for _, a in evals), default=0.0)
    for step, acc in evals:
        if acc >= target:
            return sum(t for s, t in step_time.items() if s <= step), best, total
    return None, best, total


def seed_ratio(with_: tuple[float | None, float, float],
               without: tuple[float | None, float, float]) -> tuple[float, float]:
    """The interval (low, high) that holds the ratio with / without of the times to target, from two
    :func:`time_to_target` results; low == high when both arms reached the target."""
    (w, _, w_total), (wo, _, wo_total) = with_, without
    if w is not None and wo is not None:
        return w / wo, w / wo
    if w is not None:  # without's time to target exceeds its whole run
        return 0.0, w / wo_total
    if wo is not None:  # with's time to target exceeds its whole run
        return w_total / wo, math.inf
    return 0.0, math.inf


def describe(low: float, high: float) -> str:
    """An interval from :func:`seed_ratio` as printed: ``0.52``, ``≤ 0.90``, ``≥ 1.30``, ``0.52–0.81`` or ``unknown``."""
    if low == high:
        return f"{low:.2f}"
    if low == 0.0 and high == math.inf:
        return "unknown"
    if low == 0.0:
        return f"≤ {high:.2f}"
    if high == math.inf:
        return f"≥ {low:.2f}"
    return f"{low:.2f}–{high:.2f}"


def median_interval(intervals: list[tuple[float, float]], target: float = 0.7) -> tuple[float, float, str]:
    """(low, high, verdict) of the median ratio over every seed's interval; verdict met / not met / not established."""
    low = statistics.median(lo for lo, _ in intervals)
    high = statistics.median(hi for _, hi in intervals)
    verdict = "met" if high <= target else "not met" if low > target else "not established"
    return low, high, verdict


def run_arm(recipe: Path, sft_run: Path, out: Path, name: str, seed: int, overrides: list[str], eval_every: int):
    if (out / name).exists():
        shutil.rmtree(out / name)
    shutil.copytree(sft_run, out / name)
    for leftover in ("grpo", "audit", "report.html", "results.json"):
        p = out / name / leftover
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    cmd = [sys.executable, "-m", "thinktune.cli", "run", str(recipe), f"name={name}", f"output_dir={out}",
           f"seed={seed}", "audit=null", "report=null", f"grpo.eval_every={eval_every}", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or "[sft] complete — skipped" not in proc.stdout + proc.stderr:
        raise SystemExit(f"{name}: run failed or re-ran SFT (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return _rows(out / name / "grpo" / "metrics.jsonl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "quickstart.yaml")
    ap.add_argument("--sft-runs", type=Path, required=True, help="directory holding qs-s<seed> runs with SFT done")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--points", type=float, default=5.0, help="target = SFT accuracy + this many points")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--with", dest="with_", nargs="*", default=["grpo.dynamic_sampling.enabled=true"])
    ap.add_argument("--without", nargs="*", default=["grpo.dynamic_sampling.enabled=false"])
    ap.add_argument("--summarize-only", action="store_true",
                    help="train nothing: read the arms already in --out (e.g. seeds run by separate processes)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    intervals: list[tuple[float, float]] = []
    for seed in args.seeds:
        sft_run = args.sft_runs / f"qs-s{seed}"
        sft_acc = [r["eval_accuracy"] for r in _rows(sft_run / "sft" / "metrics.jsonl") if "eval_accuracy" in r][-1]
        target = sft_acc + args.points / 100
        times = {}
        for arm, over in (("with", args.with_), ("without", args.without)):
            if args.summarize_only:
                rows = _rows(args.out / f"{arm}-s{seed}" / "grpo" / "metrics.jsonl")
            else:
                rows = run_arm(args.recipe, sft_run, args.out, f"{arm}-s{seed}", seed, over, args.eval_every)
            times[arm] = time_to_target(rows, target)
        line = f"seed {seed}: SFT {sft_acc:.3f} → target {target:.3f}"
        for arm, (t, best, total) in times.items():
            line += f" | {arm}: " + (f"{t:.0f} s" if t is not None else f"not reached (best {best:.3f})")
            line += f" of {total:.0f} s"
        low, high = seed_ratio(times["with"], times["without"])
        intervals.append((low, high))
        line += f" | ratio {describe(low, high)}"
        print(line, flush=True)
    low, high, verdict = median_interval(intervals)
    print(f"median ratio with/without over {len(intervals)} seeds: {describe(low, high)} (acceptance ≤ 0.7): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
