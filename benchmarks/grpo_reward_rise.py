"""Did GRPO's sampled reward rise? First-10 % vs last-10 % mean reward of a run's ``grpo/metrics.jsonl``.

Run::

    python benchmarks/grpo_reward_rise.py runs/quickstart [more runs ...] [--fraction 0.1] [--min-rise 0.1]

The number is TRL's logged ``reward``: the weighted total reward (correct + 0.1 × format in the quickstart) averaged
over *every* completion sampled at the training temperature in the logging window — with dynamic sampling, every
round's completions, before the zero-variance filter. A metrics row logged at step s covers the steps after the
previous row up to s, so the first window is the rows with step ≤ ⌈fraction × max_steps⌉ and the last window the rows
whose covered steps all lie in the last fraction (logging_steps must divide that window for the windows to be exact).

Prints one line per run (first, last, rise, held-out greedy accuracy at the last in-training eval when logged) and
exits 1 when any run's rise is below ``--min-rise``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def reward_rise(rows: list[dict], max_steps: int, fraction: float = 0.1) -> tuple[float, float]:
    """(mean reward over the first ``fraction`` of steps, over the last ``fraction``), weighting rows by steps."""
    logged = sorted((r["step"], r["reward"]) for r in rows if "reward" in r and "step" in r)
    if not logged:
        raise ValueError("no 'reward' rows in metrics.jsonl (is this a GRPO stage's metrics file?)")
    window = max(1, math.ceil(fraction * max_steps))
    first, last, prev = [], [], 0
    for step, reward in logged:
        span = step - prev
        if step <= window:
            first.append((reward, span))
        if prev >= max_steps - window:
            last.append((reward, span))
        prev = step
    if not first or not last:
        raise ValueError(f"no logged rows inside the first/last {window} steps (logging_steps too coarse?)")

    def mean(xs):
        return sum(r * n for r, n in xs) / sum(n for _, n in xs)

    return mean(first), mean(last)


def run_rise(run_dir: Path, fraction: float = 0.1) -> dict:
    stage = run_dir / "grpo"
    rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines() if line.strip()]
    cfg = json.loads((stage / "effective_config.json").read_text()) if (stage / "effective_config.json").exists() else {}
    max_steps = int(cfg.get("max_steps") or max(r["step"] for r in rows if "step" in r))
    first, last = reward_rise(rows, max_steps, fraction)
    acc = [r for r in rows if "eval_accuracy" in r]
    return {"run": str(run_dir), "max_steps": max_steps, "first": first, "last": last, "rise": last - first,
            "held_out_accuracy": acc[-1]["eval_accuracy"] if acc else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<name>)")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--min-rise", type=float, default=0.1)
    args = ap.parse_args(argv)
    ok = True
    for run in args.runs:
        r = run_rise(run, args.fraction)
        acc = "" if r["held_out_accuracy"] is None else f"  held-out (in-training eval) {r['held_out_accuracy']:.3f}"
        print(f"{r['run']}: reward first {args.fraction:.0%} {r['first']:.3f} → last {args.fraction:.0%} "
              f"{r['last']:.3f}  rise {r['rise']:+.3f}{acc}")
        ok &= r["rise"] >= args.min_rise
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
