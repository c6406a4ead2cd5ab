"""Data pipeline throughput and memory: validate + exact dedupe + length filter over 1M rows, then near-dedupe.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_data.py [--rows 1000000] [--near-rows 1000000] [--dir /tmp/tt-bench]

1. Generates GSM8K-shaped canonical rows (~600 bytes: a 52-word question, three calculation lines, an integer
   answer; words drawn from the GSM8K train vocabulary when ../shared/data is present) with 10 % exact duplicates
   (same content, new id), 5 % near duplicates (2 word substitutions / insertions in the question) and 0.5 %
   traces of ~1.6 kB (over the 512-token limit; too short for the byte bounds, so the tokenizer decides them), into --dir (not the repository).
2. Streams them through ``scan_records`` (validation) → ``curate_stream`` (exact dedupe + completion length ≤ 512
   tokens with a byte-level BPE tokenizer trained on the data) → a JSONL writer, in a fresh process, and prints
   rows/s and peak RSS.
3. Near-dedupe (MinHash + LSH) over the first --near-rows rows, in another fresh process: rows/s, and precision /
   recall against the planted near duplicates (a planted row counts as found when it is removed; precision =
   planted rows removed / all rows removed by near-dedupe, exact duplicates having been removed first).

Acceptance (issue 4): ≥ 20,000 rows/s and < 1.5 GB peak RSS for step 2 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"


def _vocab() -> list[str]:
    f = SHARED / "gsm8k_train.jsonl"
    if f.is_file():
        words = set()
        for line in f.open():
            words.update(re.findall(r"[A-Za-z]+", json.loads(line)["question"]))
        return sorted(words)
    return [f"w{i}" for i in range(8000)]


def generate(path: Path, n: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    vocab = _vocab()
    planted = {"exact": 0, "near": 0, "long": 0}
    recent: list[dict] = []
    with open(path, "w") as fh:
        for i in range(n):
            u = rng.random()
            if u < 0.10 and recent:
                row = {**rng.choice(recent), "id": f"x{i}"}
                planted["exact"] += 1
            elif u < 0.15 and recent:
                base = rng.choice(recent)
                w = base["question"].split()
                for _ in range(2):
                    j = rng.randrange(len(w))
                    if rng.random() < 0.5:
                        w[j] = rng.choice(vocab)
                    else:
                        w.insert(j, rng.choice(vocab))
                row = {**base, "id": f"n{i}", "question": " ".join(w), "meta": {"near_of": base["id"]}}
                planted["near"] += 1
            else:
                q = " ".join(rng.choices(vocab, k=52)) + "?"
                a, b, c = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 99)
                lines = [f"First {a} + {b} = {a + b} {rng.choice(vocab)}.", f"Then {a + b} * {c} = {(a + b) * c}.",
                         f"So the total is {(a + b) * c - a} {rng.choice(vocab)}."]
                if rng.random() < 0.005:
                    lines *= 14  # ~1.6 kB: over the 512-token limit, decided by the tokenizer
                    planted["long"] += 1
                row = {"id": f"r{i}", "question": q, "reasoning": "\n".join(lines), "answer": str((a + b) * c - a),
                       "task": "bench"}
                recent.append(row)
                if len(recent) > 5000:
                    recent.pop(rng.randrange(len(recent)))
            fh.write(json.dumps(row) + "\n")
    return planted


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream(path: Path, out: Path, tok_dir: Path) -> None:
    from transformers import AutoTokenizer

    from thinktune.data.curate import CurateOptions, CurateReport, LengthChecker, curate_stream
    from thinktune.data.records import JsonlWriter, Problem, scan_records

    tok = AutoTokenizer.from_pretrained(tok_dir)
    rss0 = _rss_mb()
    problems = 0

    def records():
        nonlocal problems
        for _, item in scan_records(path):
            if isinstance(item, Problem):
                problems += 1
            else:
                yield item

    rep = CurateReport()
    opts = CurateOptions(answer_consistency=False, length=LengthChecker(tok, max_completion=512))
    t0 = time.perf_counter()
    with JsonlWriter(out) as w:
        for rec in curate_stream(records(), opts, rep):
            w.write(rec)
    dt = time.perf_counter() - t0
    removed = {k: v.removed for k, v in rep.filters.items()}
    print(json.dumps({"step": "validate+dedupe+length", "rows": rep.seen, "seconds": round(dt, 1),
                      "rows_per_s": round(rep.seen / dt), "peak_rss_mb": round(_rss_mb()),
                      "rss_after_imports_mb": round(rss0), "kept": rep.kept, "removed": removed,
                      "problems": problems, "tokenized_rows": opts.length.tokenized}))


def near(path: Path, n: int) -> None:
    import numpy as np

    from thinktune.data.curate import MinHasher, near_duplicates
    from thinktune.data.records import scan_records

    seen, texts, planted = set(), [], set()  # exact duplicates out first (as in curate), then near-dedupe the rest
    for _, rec in scan_records(path):
        if len(texts) >= n:
            break
        text = rec.question + " " + rec.reasoning
        key = hash(text)
        if key in seen:
            continue
        seen.add(key)
        if rec.id.startswith("n"):
            planted.add(len(texts))
        texts.append(text)
    del seen
    h = MinHasher()
    t0 = time.perf_counter()
    sigs = np.concatenate([h.signatures(texts[i : i + 4096]) for i in range(0, len(texts), 4096)])
    t_sig = time.perf_counter() - t0
    drop = near_duplicates(sigs)
    dt = time.perf_counter() - t0
    removed = set(drop)
    tp = len(planted & removed)
    print(json.dumps({"step": "near_dedupe", "rows": len(texts), "seconds": round(dt, 1),
                      "rows_per_s": round(len(texts) / dt), "signature_seconds": round(t_sig, 1),
                      "planted": len(planted), "removed": len(removed),
                      "recall": round(tp / max(len(planted), 1), 4), "precision": round(tp / max(len(removed), 1), 4),
                      "peak_rss_mb": round(_rss_mb())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--near-rows", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/tt-bench"))
    ap.add_argument("--step", choices=["all", "stream", "near"], default="all")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    data, tok_dir = args.dir / f"rows-{args.rows}.jsonl", args.dir / "tok"
    if args.step == "stream":
        return stream(data, args.dir / "out.jsonl", tok_dir)
    if args.step == "near":
        return near(data, args.near_rows)
    if not data.exists():
        t = time.perf_counter()
        planted = generate(data, args.rows)
        print(json.dumps({"step": "generate", "rows": args.rows, "bytes_per_row": round(data.stat().st_size / args.rows),
                          "planted": planted, "seconds": round(time.perf_counter() - t, 1)}))
    if not tok_dir.exists():
        from thinktune.models import build_tiny_tokenizer

        sample = [json.loads(x) for _, x in zip(range(5000), data.open())]
        build_tiny_tokenizer([r["question"] + "\n" + r["reasoning"] for r in sample], 2048).save_pretrained(tok_dir)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for step in ("stream", "near"):
        subprocess.run([sys.executable, __file__, "--step", step, "--rows", str(args.rows), "--near-rows",
                        str(args.near_rows), "--dir", str(args.dir)], check=True, env=env)
    print(f"cpus={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f} (other work on the machine slows both steps)")


if __name__ == "__main__":
    main()
