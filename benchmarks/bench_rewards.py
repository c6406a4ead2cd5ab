"""Benchmark: ``correct`` judgements per second through the isolated reward runner vs plain serial Math-Verify.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_rewards.py            # --workers 2 --repeats 3

Pairs (gold, completion) come from real data in ``../shared/data`` (override with ``--data-dir``): the 800 Qwen
chain-of-thought samples of ``math_cot_100_qwen_samples.jsonl`` (gold = the MATH answer, the answer is the last
``\\boxed{}``) and the 500 messy boxed predictions of ``math500_gpt_answers_rasbt.json``; duplicates are dropped so
every judgement is distinct, and the runner's cache is off.

Three ways to judge the same pairs. Each measurement runs in a fresh Python process (so no method inherits
another's warm sympy / Math-Verify caches) and is repeated ``--repeats`` times; medians are reported:

1. plain serial Math-Verify, as TRL's ``accuracy_reward`` does it:
   ``verify(parse(gold), parse(completion))`` in one process, main thread;
2. thinktune's ``correct`` reward serially in-process (``workers=0``);
3. thinktune's ``correct`` through :class:`RewardRunner` with ``--workers`` spawned processes and the per-call
   deadline on; the pool is started and waited for before timing (its start-up is printed separately).

Caches are off everywhere: the runner's (completion, record) cache and the answer layer's per-process judgement
memo (``THINKTUNE_GRADE_MEMO=0``).

Printed: judgements/s of each, the headline ratio (3) / (1), the parallel speed-up (3) / (2), whether (3) and (2)
gave identical verdicts (they must), and how often (3) agrees with plain Math-Verify, with the disagreements
tallied by kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_pairs(data_dir: Path) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for line in (data_dir / "math_cot_100_qwen_samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        pairs += [(row["answer"], completion) for completion in row["code"]]
    for row in json.loads((data_dir / "math500_gpt_answers_rasbt.json").read_text()):
        pairs.append((row["answer"], row["prediction"]))
    return list(dict.fromkeys(pairs))


def plain_math_verify(pairs: list[tuple[str, str]]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(f"${gold}$"), parse(completion))) for gold, completion in pairs]


def measure(mode: str, data_dir: Path, workers: int, deadline: float) -> dict:
    """One timed pass of one method over all pairs, in this (fresh) process."""
    pairs = load_pairs(data_dir)
    if mode == "plain":
        from thinktune.data.answers import WARM_UP_PAIRS

        plain_math_verify(list(WARM_UP_PAIRS))  # the warm-up every reward worker runs: same start for every method
        cpu0 = cpu_seconds(os.getpid())
        t0 = time.perf_counter()
        verdicts = plain_math_verify(pairs)
        return {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds(os.getpid()) - cpu0, "verdicts": verdicts}

    from thinktune.config import RewardSpec
    from thinktune.data.records import Record
    from thinktune.data.answers import warm_up
    from thinktune.rewards.runner import RewardRunner

    records = [Record(id=f"p{i}", question="?", answer=gold, task="math") for i, (gold, _) in enumerate(pairs)]
    texts = [completion for _, completion in pairs]
    spec = [RewardSpec(fn="correct", kwargs={"extractor": "boxed"})]
    warm = (["1,000"], [Record(id="w", question="?", answer="1000")])  # not one of the pairs
    t0 = time.perf_counter()
    with RewardRunner(spec, workers=workers if mode == "pool" else 0, deadline=deadline, cache=False) as runner:
        if mode == "serial":
            warm_up()  # what every pool worker runs before it reports ready
        runner.wait_ready()
        runner.evaluate(0, *warm)
        startup = time.perf_counter() - t0
        pids = [os.getpid()] + (runner._pool.pids if runner._pool else [])
        cpu0 = sum(cpu_seconds(p) for p in pids)
        t0 = time.perf_counter()
        outcomes = runner.evaluate(0, texts, records)
        seconds = time.perf_counter() - t0
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        replaced = runner.workers_replaced
    return {"seconds": seconds, "cpu": cpu, "startup": startup, "replaced": replaced,
            "verdicts": [o.value for o in outcomes], "statuses": [o.status for o in outcomes]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_fresh(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--mode", mode, "--data-dir", str(args.data_dir), "--workers", str(args.workers),
           "--deadline", str(args.deadline)]
    env = {**os.environ, "THINKTUNE_GRADE_MEMO": "0"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--mode", choices=["plain", "serial", "pool"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.data_dir, args.workers, args.deadline)))
        return

    from thinktune.data.answers import extract_answer

    pairs = load_pairs(args.data_dir)
    n = len(pairs)
    print(f"{n} distinct (gold, completion) pairs; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at "
          f"start; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.repeats} fresh-process repeats")
    runs: dict[str, list[dict]] = {"plain": [], "serial": [], "pool": []}
    for _ in range(args.repeats):  # interleaved, so slow phases of a loaded machine hit every method alike
        for mode in runs:
            runs[mode].append(run_fresh(mode, args))
    sec = {mode: statistics.median(r["seconds"] for r in rs) for mode, rs in runs.items()}
    rate = {mode: n / s for mode, s in sec.items()}
    ratios = [n / p["seconds"] / (n / q["seconds"]) for p, q in zip(runs["pool"], runs["plain"])]
    print(f"plain serial math-verify     : {rate['plain']:8.1f} judgements/s  (median {sec['plain']:.2f} s)")
    print(f"thinktune correct, serial    : {rate['serial']:8.1f} judgements/s  (median {sec['serial']:.2f} s)")
    print(f"thinktune correct, {args.workers} workers : {rate['pool']:8.1f} judgements/s  (median {sec['pool']:.2f} s; "
          f"pool start-up {statistics.median(r['startup'] for r in runs['pool']):.2f} s once; "
          f"workers replaced {sum(r['replaced'] for r in runs['pool'])})")
    print(f"RATIO runner / plain serial math-verify: {rate['pool'] / rate['plain']:.2f}x "
          f"(per-repeat: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"parallel speed-up runner / serial correct: {rate['pool'] / rate['serial']:.2f}x")
    cores = {mode: statistics.median(r["cpu"] / r["seconds"] for r in rs) for mode, rs in runs.items()}
    per_cpu = {mode: n / statistics.median(r["cpu"] for r in rs) for mode, rs in runs.items()}
    print(f"CPU cores actually obtained (cpu-seconds / wall-seconds): plain {cores['plain']:.2f}, serial "
          f"{cores['serial']:.2f}, runner {cores['pool']:.2f} (parent + workers)")
    print(f"judgements per CPU-second: plain {per_cpu['plain']:.0f}, serial {per_cpu['serial']:.0f}, runner "
          f"{per_cpu['pool']:.0f} (parent + workers; load-independent cost)")
    v_serial, v_pool = runs["serial"][0]["verdicts"], runs["pool"][0]["verdicts"]
    same_all = all(r["verdicts"] == v_serial for r in runs["pool"] + runs["serial"])
    print(f"verdicts identical (every runner and serial repeat): {same_all} "
          f"({sum(a == b for a, b in zip(v_serial, v_pool))}/{n}); outcomes "
          f"{dict(Counter(runs['pool'][0]['statuses']))}")
    plain_mv = runs["plain"][0]["verdicts"]
    agree = sum(bool(v) == mv for v, mv in zip(v_pool, plain_mv))
    kinds: Counter = Counter()
    for (gold, completion), v, mv in zip(pairs, v_pool, plain_mv):
        if bool(v) == mv:
            continue
        ours = extract_answer(completion, extractor="boxed")
        if ours is not None and ", " in ours and mv:
            kinds["several different boxed answers: math-verify credits, thinktune does not"] += 1
        elif mv:
            kinds["math-verify credits, thinktune does not (other)"] += 1
        else:
            kinds["thinktune credits, math-verify does not"] += 1
    print(f"agreement with plain math-verify: {agree}/{n} ({agree / n:.1%})")
    for kind, count in kinds.most_common():
        print(f"  {count:4d}  {kind}")


if __name__ == "__main__":
    main()
