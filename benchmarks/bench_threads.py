"""Benchmark: torch intra-op threads 1 vs 2 on the SmolLM2 recipe's two kinds of work (issue 18: "measure threads
1 vs 2 on an idle machine and pin the faster").

Run::

    python benchmarks/bench_threads.py --run runs/smollm2-arith --out benchmarks/results/threads_smollm2.json

``--run`` is a completed ``recipes/smollm2_arith.yaml`` run (its ``sft/final`` model, data and resolved recipe).
The two workloads are what the recipe's wall time is made of:

* **generate** — greedy decoding of ``--prompts`` held-out prompts, ``--new-tokens`` tokens, through
  ``thinktune.generation.generate_texts`` (the path the audit and the GRPO rollouts take), one batch;
* **train** — one forward + backward + optimizer step of the recipe's LoRA (r, alpha, all linear layers) on
  ``--train-batch`` SFT examples (prompt + rendered trace), what an SFT step does and what a GRPO step's backward does.

Per repeat, each workload runs at 1 thread, then 2 (``torch.set_num_threads`` in one process, so both settings see
the same model and inputs); the order alternates between repeats. Printed and written: the median seconds per setting,
the ratio 1-thread / 2-thread (> 1: two threads faster), the CPU (as a run's manifest records it) and the load average before
and after (an idle machine is ≤ ~0.1 per core; a busy one disturbs the 2-thread setting most).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from thinktune.io import atomic_write_json
from thinktune.run import cpu_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=16)
    a = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from thinktune.context import read_run_recipe
    from thinktune.data.records import read_records
    from thinktune.formatting import chat_prompt, render
    from thinktune.generation import SamplingParams, generate_texts
    from thinktune.models import load_stage_output

    load0 = os.getloadavg()
    recipe = read_run_recipe(a.run)
    model, tok = load_stage_output(a.run / "sft" / "final", recipe.model)
    model.eval()
    instruction = recipe.model.instruction
    evals = read_records(a.run / "data" / "eval.jsonl")[: a.prompts]
    prompts = [chat_prompt(tok, r.question, instruction) for r in evals]
    params = SamplingParams(max_new_tokens=a.new_tokens)

    lora = recipe.model.lora
    trainee = get_peft_model(load_stage_output(a.run / "sft" / "final", recipe.model)[0],
                             LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0,
                                        target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    trainee.train()
    opt = torch.optim.AdamW([p for p in trainee.parameters() if p.requires_grad], lr=1e-4)
    train = read_records(a.run / "data" / "train.jsonl")[: a.train_batch]
    texts = [chat_prompt(tok, r.question, instruction) + render(r.reasoning, r.answer) for r in train]
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=recipe.sft.max_length)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def generate() -> float:
        t0 = time.perf_counter()
        generate_texts(model, tok, prompts, params, batch_size=len(prompts))
        return time.perf_counter() - t0

    def train_step() -> float:
        t0 = time.perf_counter()
        loss = trainee(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0

    work = {"generate": generate, "train": train_step}
    times: dict[str, dict[int, list[float]]] = {w: {1: [], 2: []} for w in work}
    generate()  # warm-up (allocator, kernels) at the default threads; not counted (generate_texts is no_grad)
    for rep in range(a.repeats):
        for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
            torch.set_num_threads(threads)
            for name, fn in work.items():
                s = fn()
                times[name][threads].append(s)
                print(f"repeat {rep + 1}: {name:8s} threads={threads}: {s:.2f} s", flush=True)
    result = {
        "cpu": cpu_model(), "torch": torch.__version__, "run": str(a.run), "load_before": load0,
        "load_after": os.getloadavg(),
        "settings": {"prompts": len(prompts), "new_tokens": a.new_tokens, "train_batch": len(texts),
                     "train_tokens": int(batch["attention_mask"].sum()), "repeats": a.repeats},
        "seconds": times,
        "median_s": {w: {t: statistics.median(v) for t, v in d.items()} for w, d in times.items()},
    }
    result["ratio_1_over_2"] = {w: m[1] / m[2] for w, m in result["median_s"].items()}
    for w, r in result["ratio_1_over_2"].items():
        m = result["median_s"][w]
        print(f"{w:8s} median 1 thread {m[1]:.2f} s, 2 threads {m[2]:.2f} s: 1/2 = {r:.2f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out, result)


if __name__ == "__main__":
    main()
