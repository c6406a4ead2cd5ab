"""Benchmark: thinktune's GRPO stage vs a bare TRL ``GRPOTrainer`` script — is there a wrapper tax?

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_grpo_overhead.py --sft-run /tmp/sftruns/qs-s0 --out /tmp/bench-overhead

``--sft-run`` is a completed quickstart run with data/base/SFT (``thinktune run recipes/quickstart.yaml grpo=null
audit=null report=null``). Two arms, each in a fresh subprocess, interleaved ``--repeats`` times (A B A B …) so both
see the same machine load:

* **thinktune** — ``thinktune run`` of the quickstart's GRPO stage on a copy of the SFT run (``--steps`` steps): the
  reward runner's worker processes with deadlines, completions/*.jsonl logging, metrics.jsonl, committed checkpoints,
  NaN guard, alerts, progress bar. One-off set-up (reward probes, pre-flight) is outside the timed loop; held-out
  evaluation and dynamic sampling are turned off — they are extra work or a different algorithm, not overhead
  (benchmarks/bench_grpo_additions.py measures dynamic sampling).
* **bare TRL** — this file with ``--bare``: the *same* ``GRPOConfig`` (rebuilt from the thinktune arm's
  ``grpo/effective_config.json``, so every hyperparameter and TRL default is identical), the same model (``sft/final``),
  the same prompts (chat template over ``data/train.jsonl``), and the same reward functions called in-process
  (:func:`thinktune.rewards.library.as_trl`), no callbacks beyond TRL's defaults.

Both time ``trainer.train()`` only (TRL's ``train_runtime``; model loading and writing ``final/`` excluded). Printed: per repeat the seconds and steps/s of each arm,
and the median ratio thinktune / bare in steps/s (target ≥ 0.95). Same seed, same data order: both arms generate the
same completions only up to sampling nondeterminism, so per-step work is comparable but not identical; the printed
mean completion length per arm shows whether the work matched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mean_completion_tokens(rows: list[dict]) -> float | None:
    vals = [r["completions/mean_length"] for r in rows if "completions/mean_length" in r]
    return sum(vals) / len(vals) if vals else None


def run_thinktune(recipe: Path, sft_run: Path, out: Path, name: str, steps: int, extra: list[str]) -> dict:
    run_dir = out / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(sft_run, run_dir, ignore=shutil.ignore_patterns("grpo", "audit", "report*"))
    seed = json.loads((run_dir / "manifest.json").read_text())["stages"]["data"]["inputs"]["seed"]
    overrides = [f"name={name}", f"output_dir={out}", f"seed={seed}", f"grpo.max_steps={steps}",
                 f"grpo.save_steps={steps}", "grpo.eval_every=null", "grpo.logging_steps=1", "audit=null",
                 "report=null", *extra]
    proc = subprocess.run([sys.executable, "-m", "thinktune.cli", "run", str(recipe),
                           *overrides], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    if proc.returncode != 0:
        raise SystemExit(f"thinktune arm failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["grpo"]
    rows = [json.loads(x) for x in (run_dir / "grpo" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    runtime = [r["train_runtime"] for r in rows if "train_runtime" in r][-1]  # trainer.train() only, as in bare
    first = [r["step_time"] for r in rows if "step_time" in r]
    return {"seconds": runtime, "steps": stage["result"]["steps"], "first_step": first[0] if first else None,
            "completion_tokens": _mean_completion_tokens(rows), "run_dir": str(run_dir)}


def run_bare(run_dir: Path, out_json: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--bare", str(run_dir), "--bare-out", str(out_json)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bare TRL arm failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out_json.read_text())


def bare_main(run_dir: Path, out_json: Path) -> None:
    """The bare TRL script: what a user would write by hand with the same settings."""
    import dataclasses
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from thinktune.config import load_recipe
    from thinktune.data.records import read_records
    from thinktune.formatting import CompletionFormat, chat_prompt
    from thinktune.rewards.library import as_trl

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    recipe = load_recipe(run_dir / "recipe.yaml") if (run_dir / "recipe.yaml").exists() else None
    eff = json.loads((run_dir / "grpo" / "effective_config.json").read_text())
    init_fields = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    derived = {"generation_batch_size"}  # TRL derives it from steps_per_generation in __post_init__
    args = {k: v for k, v in eff.items() if k in init_fields and k not in derived}
    tmp = tempfile.mkdtemp(prefix="bare-grpo-")
    args.update(output_dir=tmp, report_to=[], push_to_hub=False)
    config = GRPOConfig(**args)
    model_dir = run_dir / "sft" / "final"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    instruction = recipe.model.instruction if recipe else None
    system = recipe.model.system if recipe else None
    fmt = CompletionFormat(**recipe.format.model_dump()) if recipe else CompletionFormat()
    records = read_records(run_dir / "data" / "train.jsonl")
    data = Dataset.from_list([{"prompt": chat_prompt(tok, r.question, instruction, system),
                               "record": r.model_dump_json()} for r in records])
    lengths: list[float] = []
    step_times: list[float] = []

    class Lengths(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])
            if logs and "step_time" in logs:
                step_times.append(logs["step_time"])

    trainer = GRPOTrainer(model=model, reward_funcs=[as_trl("correct", fmt), as_trl("format", fmt)], args=config,
                          train_dataset=data, processing_class=tok, callbacks=[Lengths()])
    out = trainer.train()
    shutil.rmtree(tmp, ignore_errors=True)
    out_json.write_text(json.dumps({"seconds": out.metrics["train_runtime"], "steps": trainer.state.global_step,
                                    "first_step": step_times[0] if step_times else None,
                                    "completion_tokens": sum(lengths) / len(lengths) if lengths else None}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft-run", type=Path, help="completed quickstart run directory with data/base/sft")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "quickstart.yaml",
                    help="the recipe the SFT run was made with (default: the quickstart)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-grpo-overhead"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--override", action="append", default=[],
                    help="extra thinktune override for the thinktune arm (its effective config feeds the bare arm)")
    ap.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--bare-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare:
        bare_main(a.bare, a.bare_out)
        return
    if not a.sft_run or not (a.sft_run / "sft" / "final").exists():
        raise SystemExit("--sft-run must be a completed run with sft/final (see the module docstring)")
    a.out.mkdir(parents=True, exist_ok=True)
    extra = list(a.override)
    from thinktune.config import GRPOStage

    if "dynamic_sampling" in GRPOStage.model_fields:
        extra.append("grpo.dynamic_sampling.enabled=false")
    ratios = []
    print(f"GRPO {a.steps} steps per arm · {a.repeats} interleaved repeats · OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')} · load average {os.getloadavg()[0]:.2f}")
    print(f"{'repeat':<8}{'arm':<11}{'train s':>9}{'step 1 s':>9}{'steps/s':>9}{'mean completion tokens':>24}")
    for i in range(a.repeats):
        ours = run_thinktune(a.recipe, a.sft_run, a.out, f"tt-{i}", a.steps, extra)
        bare = run_bare(Path(ours["run_dir"]), a.out / f"bare-{i}.json")
        for arm, r in (("thinktune", ours), ("bare TRL", bare)):
            tokens = f"{r['completion_tokens']:.1f}" if r["completion_tokens"] is not None else "-"
            first = f"{r['first_step']:.1f}" if r["first_step"] is not None else "-"
            print(f"{i:<8}{arm:<11}{r['seconds']:>9.1f}{first:>9}{r['steps'] / r['seconds']:>9.3f}{tokens:>24}")
        ratios.append((ours["steps"] / ours["seconds"]) / (bare["steps"] / bare["seconds"]))
    print(f"steps/s ratio thinktune / bare TRL per repeat: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"median ratio {statistics.median(ratios):.3f}   (target >= 0.95; load average now "
          f"{os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
