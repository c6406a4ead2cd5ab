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
A seed where the *with* arm never reaches the target has no ratio. A seed where only the *without* arm misses it
gets an upper bound, ``with / without's whole training time`` (its true time to target is longer than the run), printed
as ``≤ r``; the median over seeds is then an upper bound too (a median is monotone in each value) and says so.
Both are printed, never hidden.
"""

from __future__ import annotations

import argparse
import json
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
               without: tuple[float | None, float, float]) -> tuple[float | None, bool]:
    """(ratio with / without of the times to target, True when it is only an upper bound), from two
    :func:`time_to_target` results; (None, False) when the with arm never reached the target."""
    if with_[0] is None:
        return None, False
    if without[0] is None:  # without's time to target exceeds its whole run: the ratio is below with / total
        return with_[0] / without[2], True
    return with_[0] / without[0], False


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
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ratios = []
    for seed in args.seeds:
        sft_run = args.sft_runs / f"qs-s{seed}"
        sft_acc = [r["eval_accuracy"] for r in _rows(sft_run / "sft" / "metrics.jsonl") if "eval_accuracy" in r][-1]
        target = sft_acc + args.points / 100
        times = {}
        for arm, over in (("with", args.with_), ("without", args.without)):
            rows = run_arm(args.recipe, sft_run, args.out, f"{arm}-s{seed}", seed, over, args.eval_every)
            times[arm] = time_to_target(rows, target)
        line = f"seed {seed}: SFT {sft_acc:.3f} → target {target:.3f}"
        for arm, (t, best, total) in times.items():
            line += f" | {arm}: " + (f"{t:.0f} s" if t is not None else f"not reached (best {best:.3f})")
            line += f" of {total:.0f} s"
        ratio, bound = seed_ratio(times["with"], times["without"])
        if ratio is not None:
            ratios.append((ratio, bound))
            line += f" | ratio {'≤ ' if bound else ''}{ratio:.2f}"
        print(line, flush=True)
    if ratios:
        med = statistics.median(r for r, _ in ratios)
        bound = any(b for _, b in ratios)
        note = " (an upper bound: a without arm never reached the target)" if bound else ""
        print(f"median ratio with/without over {len(ratios)} of {len(args.seeds)} seeds: "
              f"{'≤ ' if bound else ''}{med:.2f}{note} (acceptance ≤ 0.7)")
    else:
        print("no seed where the with arm reached the target: no ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
