"""`thinktune run --processes 2` (torchrun, gloo on CPU) against one process at the same global batch.

SFT (and DPO, the same way): the 2-process run splits each step's examples over the ranks (accelerate hands
micro-batch i to rank i mod 2 from the same seeded sampler); the 1-process run accumulates the same
micro-batches. The loss is normalised over the whole step on both sides, so the per-step loss in metrics.jsonl
must agree to float rounding (≤ 1e-4; measured: identical as logged). GRPO: TRL's RepeatSampler is seeded and shared by
the ranks, so each step draws the same prompts; the completions differ (generation is seeded per rank), so only
the prompt ids are compared. The tiny model has no dropout (Qwen2 attention_dropout 0, no LoRA).
"""

import json
import shutil

import pytest
import yaml

from tests.helpers.pipeline import ROOT, reduced_recipe, thinktune

STEPS_SFT, STEPS_DPO, STEPS_GRPO = 6, 2, 3
OVERRIDES = {
    # 16 examples per step in micro-batches of 8: 1 process accumulates 2, 2 processes take 1 each
    "sft": {"max_steps": STEPS_SFT, "examples_per_step": 16, "micro_batch_size": 8, "save_steps": 3,
            "logging_steps": 1, "eval_every": None},
    # 8 pairs per step in micro-batches of 4 (pairs from a file: the tiny model solves nothing to pair up)
    "dpo": {"pairs": "file", "max_steps": STEPS_DPO, "examples_per_step": 8, "micro_batch_size": 4,
            "save_steps": 2, "logging_steps": 1, "eval_every": None},
    # 4 prompts × 4 samples = 16 completions per step in micro-batches of 8
    "grpo": {"max_steps": STEPS_GRPO, "micro_batch_size": 8, "save_steps": 3, "logging_steps": 1,
             "reward_probes": False, "eval_every": None},
}


def _recipe(tmp_path, name):
    from tests.helpers.pipeline import write_pairs

    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs)
    path = reduced_recipe(tmp_path, name, **{**OVERRIDES, "dpo": {**OVERRIDES["dpo"], "pairs_file": str(pairs)}})
    raw = yaml.safe_load(path.read_text())
    del raw["audit"], raw["report"]  # the comparison is about training; audit/report run in the parent anyway
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _loss_by_step(run_dir, stage):
    return {r["step"]: r["loss"] for r in _rows(run_dir / stage / "metrics.jsonl") if "loss" in r}


def _prompt_ids_by_step(run_dir):
    out = {}
    for f in sorted((run_dir / "grpo" / "completions").glob("step-*.jsonl")):
        rows = _rows(f)
        out[rows[0]["step"]] = sorted(r["id"] for r in rows)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mp")
    out = {}
    for name, args in (("one", []), ("two", ["--processes", "2"])):
        recipe = _recipe(tmp, name)
        proc = thinktune("run", str(recipe), *args)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out[name] = tmp / "runs" / name
        out[f"{name}.yaml"] = recipe
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage, steps", [("sft", STEPS_SFT), ("dpo", STEPS_DPO)])
def test_loss_per_step_matches_one_process(runs, stage, steps):
    one, two = _loss_by_step(runs["one"], stage), _loss_by_step(runs["two"], stage)
    assert sorted(one) == sorted(two) == list(range(1, steps + 1))
    diffs = {s: abs(one[s] - two[s]) for s in one}
    assert max(diffs.values()) <= 1e-4, diffs
    assert one[steps] != one[1]  # the model changed between steps (a frozen run would also "match")


@pytest.mark.slow
def test_grpo_sees_the_same_prompts_per_step(runs):
    one, two = _prompt_ids_by_step(runs["one"]), _prompt_ids_by_step(runs["two"])
    assert sorted(one) == sorted(two) == list(range(STEPS_GRPO))
    for step in one:
        assert len(one[step]) == len(two[step]) == 16  # 4 prompts × 4 samples, both ranks' halves in one file
        assert len(set(one[step])) == 4
        assert one[step] == two[step], step
    assert one[0] != one[1]  # the prompts do change from step to step
    for run_dir in (runs["one"], runs["two"]):  # every completion scored once, counted once, whichever rank scored it
        manifest = json.loads((run_dir / "manifest.json").read_text())
        outcomes = manifest["stages"]["grpo"]["result"]["reward_outcomes"]
        assert {fn: sum(c.values()) for fn, c in outcomes.items()} == {"correct": 16 * STEPS_GRPO,
                                                                       "format": 16 * STEPS_GRPO}


@pytest.mark.slow
def test_two_process_run_state_written_once(runs):
    root = runs["two"]
    manifest = json.loads((root / "manifest.json").read_text())
    for stage in ("sft", "dpo", "grpo"):
        rec = manifest["stages"][stage]
        assert rec["status"] == "complete"
        assert rec["result"]["processes"] == 2
        assert rec["result"]["threads_per_process"] == 1  # the recipe's `threads: 1`, per process
        assert (root / stage / "final" / "thinktune_model.json").is_file()
        assert (root / stage / "launch.log").is_file()
        ckpt = root / stage / f"checkpoint-{2 if stage == 'dpo' else 3}"
        assert (ckpt / "COMMITTED").is_file()
        assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
        steps = [r["step"] for r in _rows(root / stage / "metrics.jsonl") if "loss" in r]
        assert steps == sorted(set(steps))  # one writer: no step logged twice
    assert manifest["stages"]["sft"]["result"]["steps"] == STEPS_SFT
    assert (root / "dpo" / "pairs.jsonl").read_text() == (runs["one"] / "dpo" / "pairs.jsonl").read_text()
    assert not list(root.glob("**/.*.tmp"))  # no staging directory left behind


@pytest.mark.slow
def test_rank0_refusal_stops_every_process(runs, tmp_path):
    """The GRPO pre-flight runs on rank 0 alone; its refusal is the CLI's one-line error, and rank 1 (already
    waiting in the trainer) is torn down with it instead of hanging. This tiny model fails the pre-flight."""
    shutil.copytree(runs["two"], tmp_path / "runs" / "two")
    proc = thinktune("run", str(runs["two.yaml"]), f"output_dir={tmp_path / 'runs'}", "grpo.preflight=true",
                     "--restart-from", "grpo", "--processes", "2", timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: grpo (2 processes): grpo pre-flight refused to train" in proc.stderr
    assert "Traceback" not in proc.stderr
    root = tmp_path / "runs" / "two"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["status"] == "complete"
    assert manifest["stages"]["grpo"]["status"] == "running"  # the parent recorded the attempt, not a completion
    assert (root / "grpo" / "preflight.json").is_file() and not (root / "grpo" / "final").exists()


def _cli(*args):
    from typer.testing import CliRunner

    from thinktune.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_batch_that_does_not_split_is_refused_before_anything_runs(tmp_path):
    recipe = _recipe(tmp_path, "odd")
    code, output = _cli("run", str(recipe), "--processes", "3")
    assert code == 1 and "Traceback" not in output
    assert "sft.examples_per_step (16) must be a multiple of --processes × sft.micro_batch_size (3 × 8)" in output
    assert "grpo.prompts_per_step × grpo.samples_per_prompt (16)" in output
    assert "dpo.examples_per_step (8) must be a multiple of --processes × dpo.micro_batch_size (3 × 4)" in output
    assert not (tmp_path / "runs" / "odd").exists()
    code, output = _cli("run", str(recipe), "--processes", "2", "grpo.dynamic_sampling.enabled=true",
                        "grpo.dynamic_sampling.max_rounds=3")
    assert code == 1 and "grpo.dynamic_sampling.max_rounds > 1 needs a single process" in output
    assert not (tmp_path / "runs" / "odd").exists()


def test_sharded_config_refuses_rank0_generation(tmp_path):
    from thinktune.config import load_recipe
    from thinktune.errors import RecipeError
    from thinktune.stages.worker import check_processes

    configs = ROOT / "recipes" / "accelerate"
    recipe = load_recipe(_recipe(tmp_path, "zero3"), ["sft.eval_every=5"])
    for config in ("deepspeed_zero3.yaml", "fsdp.yaml"):
        with pytest.raises(RecipeError, match=r"sft\.eval_every: held-out generation runs on rank 0 only"):
            check_processes(recipe, 2, configs / config)
    for config in ("deepspeed_zero2.yaml", "ddp.yaml"):  # replicated weights: rank 0 can generate alone
        assert check_processes(recipe, 2, configs / config) == 2
    with pytest.raises(RecipeError, match=r"(?s)--processes 8: .*\(8 × 8\)"):  # none given: the config's num_processes
        check_processes(recipe, None, configs / "ddp.yaml")
    with pytest.raises(RecipeError, match="--accelerate-config: .*missing.yaml does not exist"):
        check_processes(recipe, 2, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: MULTI_GPU\nnot_an_accelerate_key: 1\n")
    with pytest.raises(RecipeError, match="not a valid accelerate config"):
        check_processes(recipe, 2, bad)


@pytest.mark.parametrize("config, deepspeed, fsdp, zero_stage", [
    ("ddp", False, False, None), ("deepspeed_zero2", True, False, 2), ("deepspeed_zero3", True, False, 3),
    ("fsdp", False, True, None)])
def test_launch_commands_resolve_with_the_launchers_own_parsers(config, deepspeed, fsdp, zero_stage):
    """What a CPU machine can check of the GPU launch path: accelerate resolves our command + shipped config into
    the intended launcher (the same resolution `accelerate launch` does before it starts anything)."""
    from pathlib import Path

    from accelerate.commands.launch import (
        _validate_launch_command,
        launch_command_parser,
    )

    from thinktune.stages.worker import launch_command

    cmd = launch_command(Path("/runs/x"), "grpo", True, 8, ROOT / "recipes" / "accelerate" / f"{config}.yaml", 2)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    assert (args.num_processes, args.use_deepspeed, args.use_fsdp, args.mixed_precision) == (8, deepspeed, fsdp, "bf16")
    assert args.multi_gpu == (config == "ddp")
    assert getattr(args, "zero_stage", None) == zero_stage
    assert args.module and args.training_script == "thinktune.stages.worker"
    assert args.training_script_args == ["/runs/x", "grpo", "--resume", "--threads", "2"]


def test_cpu_launch_command_is_torchrun_standalone():
    from pathlib import Path

    from torch.distributed.run import get_args_parser

    from thinktune.stages.worker import launch_command

    cmd = launch_command(Path("/runs/x"), "sft", False, 2, None, None)
    args = get_args_parser().parse_args(cmd[3:])
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert (args.standalone, args.nproc_per_node, args.module, args.training_script) == (
        True, "2", True, "thinktune.stages.worker")
    assert args.training_script_args == ["/runs/x", "sft"]


def test_parent_reads_the_worker_protocol(tmp_path, monkeypatch):
    """The parent side of the launch without torchrun: a fake launcher prints what workers print."""
    import sys

    from thinktune.errors import StageError
    from thinktune.progress import Reporter, set_reporter
    from thinktune.stages import worker

    class Recorder(Reporter):
        def __init__(self):
            self.notes = []

        def note(self, message):
            self.notes.append(message)

    class FakeRun:
        root = tmp_path

        def stage_dir(self, stage):
            return tmp_path / stage

    def fake(lines, code=0):
        script = f"import sys; print({lines!r}); sys.exit({code})"
        monkeypatch.setattr(worker, "launch_command", lambda *a: [sys.executable, "-c", script])

    rec = Recorder()
    prev = set_reporter(rec)
    try:
        p = worker.PREFIX
        fake(f'rank 1 noise\n{p}{{"note": "[sft] hello"}}\n{p}{{"task": "sft", "total": 4, "completed": 2}}\n'
             f'{p}{{"not json\n{p}{{"result": {{"steps": 4}}}}')
        assert worker.launch(FakeRun(), "sft", False, 2) == {"steps": 4}
        assert rec.notes[-1] == "[sft] hello"
        assert "rank 1 noise" in (tmp_path / "sft" / "launch.log").read_text()
        fake(f'{p}{{"error": "sft.trl.x: not a field", "rank": 1}}', code=1)
        with pytest.raises(StageError, match=r"^sft \(2 processes\): sft\.trl\.x: not a field$"):
            worker.launch(FakeRun(), "sft", False, 2)
        fake("Segmentation fault", code=3)
        with pytest.raises(StageError, match=r"launcher exited with code 3; see .*launch\.log"):
            worker.launch(FakeRun(), "sft", False, 2)
        fake("", code=0)  # exit 0 without a result is still a failure, never a silent success
        with pytest.raises(StageError, match="exited with code 0"):
            worker.launch(FakeRun(), "sft", False, 2)
    finally:
        set_reporter(prev)
