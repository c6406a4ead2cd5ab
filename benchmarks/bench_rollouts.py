"""Benchmark: GRPO rollouts through thinktune's batched decoder vs TRL's default generation.

Run::

    python benchmarks/bench_rollouts.py --run runs/quickstart --out benchmarks/results/rollouts_quickstart.json

``--run`` is a completed quickstart run (its ``sft/final`` model, ``data/train.jsonl`` prompts and resolved recipe).
Both arms are the same ``trl.GRPOTrainer`` method, ``_generate_single_turn``, on the same model, the same prompts
(``prompts_per_step`` distinct training prompts, each repeated ``samples_per_prompt`` times, exactly the batch one
GRPO step generates) and the same generation settings (TRL builds them from the recipe's GRPO config: temperature,
top-k 0, top-p 1, ``max_new_tokens``):

* **trl** — ``trl.GRPOTrainer`` as shipped: HF ``model.generate`` on the left-padded batch (TRL's default path);
* **thinktune** — the trainer class the GRPO stage builds (``grpo.rollout_engine: thinktune``): the batched decoder
  of ``thinktune/rollout_engine.py``.

Per repeat, each arm generates ``--batches`` step batches (different prompts per batch, the same for both arms);
arms alternate A B A B … within one process, one torch thread, so both see the same machine load. Printed: sequences/s
per arm and repeat (wall clock, and per CPU second, which a busy machine disturbs less), the median ratio
thinktune / trl over repeats (issue 17's target: ≥ 2 in sequences/s on an idle machine), mean completion tokens
per arm (equal work), and greedy identity: both arms decode every prompt greedily (``do_sample: False``) and must
produce the same token ids for every sequence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from thinktune.run import cpu_model


def trainers(run: Path, tmp: Path, greedy: bool, prompts: int | None = None):
    """(trl trainer, thinktune trainer, tokenizer, recipe) on the run's SFT model."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from thinktune.context import read_run_recipe
    from thinktune.models import load_stage_output
    from thinktune.stages.grpo import grpo_trl_args, trainer_class
    from thinktune.stages.setup import device_args

    recipe = read_run_recipe(run)
    if prompts:
        recipe.grpo.prompts_per_step = prompts
    cfg = recipe.grpo
    model, tok = load_stage_output(run / "sft" / "final", recipe.model)
    trl_args = {**cfg.batch().trl_args(), **grpo_trl_args(cfg), "learning_rate": cfg.learning_rate,
                "lr_scheduler_type": cfg.lr_scheduler, "max_steps": cfg.max_steps}
    args = GRPOConfig(output_dir=str(tmp), report_to=[], save_strategy="no", disable_tqdm=True,
                      gradient_checkpointing=False, **{k: v for k, v in trl_args.items()}, **device_args(),
                      **({"generation_kwargs": {"do_sample": False}} if greedy else {}))
    data = Dataset.from_list([{"prompt": "x"}])

    def reward(completions, **kw):
        return [0.0] * len(completions)

    kw = dict(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok)
    return GRPOTrainer(**kw), trainer_class(cfg.model_copy(update={"dynamic_sampling": type(cfg.dynamic_sampling)()}))(
        **kw), tok, recipe


def step_batches(run: Path, tok, recipe, n_batches: int) -> list[list[list[int]]]:
    from thinktune.data.records import read_records
    from thinktune.formatting import chat_prompt

    cfg = recipe.grpo
    records = read_records(run / "data" / "train.jsonl")[-n_batches * cfg.prompts_per_step:]  # the last rows
    ids = [tok(chat_prompt(tok, r.question, recipe.model.instruction, recipe.model.system),
               add_special_tokens=False)["input_ids"] for r in records]
    k, g = cfg.prompts_per_step, cfg.samples_per_prompt
    return [[p for p in ids[b * k:(b + 1) * k] for _ in range(g)] for b in range(n_batches)]


def timed(trainer, batches) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, sequences, completion tokens) for generating every batch."""
    import torch

    torch.manual_seed(0)
    seqs = toks = 0
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out, _ = trainer._generate_single_turn(batch, None, {}, 1)
        seqs += len(out)
        toks += sum(map(len, out))
    return time.perf_counter() - start, time.process_time() - cpu, seqs, toks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=None, help="prompts per batch (default: the recipe's prompts_per_step)")
    args = ap.parse_args()

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trl_g, ours_g, tok, recipe = trainers(args.run, Path(tmp), greedy=True, prompts=args.prompts)
        batches = step_batches(args.run, tok, recipe, args.batches)
        same = total = 0
        for batch in batches:
            a, _ = trl_g._generate_single_turn(batch, None, {}, 1)
            b, _ = ours_g._generate_single_turn(batch, None, {}, 1)
            same += sum(x == y for x, y in zip(a, b))
            total += len(a)
        print(f"greedy identity: {same}/{total} sequences token for token identical", flush=True)

        trl_s, ours_s, _, _ = trainers(args.run, Path(tmp), greedy=False, prompts=args.prompts)
        rows = []
        for rep in range(args.repeats):
            row = {}
            for name, trainer in (("trl", trl_s), ("thinktune", ours_s)):
                secs, cpu, seqs, toks = timed(trainer, batches)
                row[name] = {"seconds": round(secs, 3), "cpu_seconds": round(cpu, 3), "sequences": seqs,
                             "seq_per_s": round(seqs / secs, 2), "seq_per_cpu_s": round(seqs / cpu, 2),
                             "mean_completion_tokens": round(toks / seqs, 2)}
            row["ratio"] = round(row["thinktune"]["seq_per_s"] / row["trl"]["seq_per_s"], 3)
            row["cpu_ratio"] = round(row["thinktune"]["seq_per_cpu_s"] / row["trl"]["seq_per_cpu_s"], 3)
            rows.append(row)
            print(f"repeat {rep}: trl {row['trl']['seq_per_s']:.1f} seq/s ({row['trl']['mean_completion_tokens']:.1f} "
                  f"tokens), thinktune {row['thinktune']['seq_per_s']:.1f} seq/s "
                  f"({row['thinktune']['mean_completion_tokens']:.1f} tokens), ratio {row['ratio']:.2f} "
                  f"(CPU time: {row['cpu_ratio']:.2f})", flush=True)
    median = statistics.median(r["ratio"] for r in rows)
    median_cpu = statistics.median(r["cpu_ratio"] for r in rows)
    load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else None
    cfg = recipe.grpo
    result = {
        "what": "GRPO step batches generated by TRL's default generate vs thinktune's batched decoder",
        "run": str(args.run), "cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
        "batch": {"prompts": cfg.prompts_per_step, "samples_per_prompt": cfg.samples_per_prompt,
                  "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, "batches": args.batches},
        "greedy_identical": [same, total], "repeats": rows, "median_ratio": median, "median_cpu_ratio": median_cpu,
        "load_average_at_end": load,
    }
    print(f"median ratio thinktune / trl: {median:.2f} in sequences/s (target >= 2), {median_cpu:.2f} in sequences per "
          f"CPU second; greedy identical {same}/{total}; load average {load}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
