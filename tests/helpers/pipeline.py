"""Whole-pipeline helpers: a reduced quickstart recipe (same pipeline, sizes small enough for CI), the CLI as a
subprocess, a run killed at a chosen moment, and a DPO pairs file."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from thinktune.formatting import render

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"  # the project's real data next to the repository (tests skip without it)

# A CI-sized DPO block (recipes/quickstart_dpo.yaml at toy scale): 24 questions x 4 samples, a few pair steps.
REDUCED_DPO = {"pairs": "self", "max_questions": 24, "samples_per_question": 4, "pairs_per_question": 2,
               "max_new_tokens": 40, "learning_rate": 5.0e-5, "max_steps": 4, "examples_per_step": 4,
               "micro_batch_size": 4, "max_length": 256, "save_steps": 2, "logging_steps": 1}


def reduced_recipe(tmp_path: Path, name: str = "qs", **stage_overrides) -> Path:
    raw = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    raw["name"] = name
    raw["output_dir"] = str(tmp_path / "runs")
    raw["threads"] = 1  # toy sizes gain nothing from a second thread, and CI runs tests side by side
    raw["model"]["tiny"].update(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, vocab_size=300)
    raw["data"]["task"].update(n_train=400, n_eval=40)
    raw["sft"].update(max_steps=24, examples_per_step=16, micro_batch_size=16, save_steps=8, warmup_ratio=0.0)
    raw["sft"].pop("stop_at", None)  # a toy model never reaches it: the step cap decides (tests/stages/test_stop_at.py)
    raw["grpo"].update(max_steps=6, prompts_per_step=4, samples_per_prompt=4, micro_batch_size=16,
                       max_new_tokens=40, save_steps=2,
                       preflight=False,  # this model is too small to learn the format: the pre-flight would refuse
                       # and most groups have no reward variance: dynamic sampling would stop the run (as it should)
                       dynamic_sampling={"enabled": False})
    raw["audit"].update(max_new_tokens=40, batch_size=40)
    for stage, over in stage_overrides.items():
        if over is None:  # drop a stage: reduced_recipe(tmp, grpo=None)
            raw.pop(stage, None)
        elif stage == "dpo" and "dpo" not in raw:  # the quickstart has no DPO: a CI-sized block, then the overrides
            raw["dpo"] = {**REDUCED_DPO, **over}
        else:
            raw[stage].update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def thinktune(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "thinktune.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def run_dir(recipe):
    return recipe.parent / "runs" / recipe.stem


def start(recipe):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "thinktune.cli", "run", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def kill_when(proc, path, timeout=300):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path} appeared:\n{proc.stdout.read().decode()[-3000:]}")
        if time.time() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def write_pairs(path):
    rows = []
    for a in range(2, 9):
        for b in range(1, 4):
            rows.append({"question": f"Compute {a} + {b} - 1.",
                         "chosen": render(f"{a} + {b} = {a + b}\n{a + b} - 1 = {a + b - 1}", str(a + b - 1)),
                         "rejected": render(f"{a} + {b} = {a + b + 1}\n{a + b + 1} - 1 = {a + b}", str(a + b))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)
