"""Hostile recipes (issue 20): each must be a located one-line error from `recipe check`, exit 1, no traceback,
no hang — and nothing a user owns may be deleted by a run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.config import Recipe
from thinktune.context import StageContext
from thinktune.errors import RunStateError
from thinktune.run import RunState, execute

runner = CliRunner()

BASE = {"name": "h", "model": {"tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2,
                                        "vocab_size": 300, "max_positions": 128}},
        "data": {"task": {"name": "chain_arith", "n_train": 20, "n_eval": 5}}}

BOMB = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


def write(tmp_path: Path, obj, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))
    return p


def recipe(tmp_path: Path, **over) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw["output_dir"] = str(tmp_path / "runs")
    for key, value in over.items():
        cur = raw
        parts = key.split("__")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
    return raw


def check(*args, timeout: float = 20.0):
    t0 = time.process_time()  # CPU seconds: a busy shared machine must not fail this
    result = runner.invoke(app, ["recipe", *args])
    elapsed = time.process_time() - t0
    assert elapsed < timeout, f"took {elapsed:.1f}s of CPU"
    return result


def assert_refused(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for f in fragments:
        assert f in result.output, result.output


# -- names and paths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../x", ""])
def test_a_run_name_must_be_one_plain_directory_name(tmp_path, name):
    assert_refused(check("check", str(write(tmp_path, recipe(tmp_path, name=name)))), "name")


def test_name_dotdot_cannot_replace_the_users_data_directory(tmp_path, monkeypatch):
    """`name: '..'` made the working directory the run directory; the data stage then replaced ./data."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("the user's own file")
    raw = recipe(tmp_path, name="..", output_dir="runs")
    result = runner.invoke(app, ["run", str(write(tmp_path, raw))])
    assert result.exit_code == 1, result.output
    assert (tmp_path / "data" / "mine.txt").read_text() == "the user's own file"
    assert not (tmp_path / "manifest.json").exists()


def test_a_run_never_uses_a_directory_it_did_not_create(tmp_path):
    """The second line of defence, below the name check: an existing directory that is not a run is refused."""
    r = Recipe.model_validate(recipe(tmp_path))
    foreign = r.run_dir()
    (foreign / "data").mkdir(parents=True)
    (foreign / "data" / "keep.txt").write_text("x")
    with pytest.raises(RunStateError, match="not a thinktune run directory"):
        execute(r, stage_fns={s: (lambda ctx: {}) for s in ("data", "base")})
    assert (foreign / "data" / "keep.txt").read_text() == "x"


def test_the_working_directory_is_never_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifest.json").write_text('{"stages": {}}')
    r = Recipe.model_validate(recipe(tmp_path, output_dir=str(tmp_path.parent), name=tmp_path.name))
    with pytest.raises(RunStateError, match="working directory"):
        RunState(r.run_dir(), r).plan()


def test_output_dir_that_is_a_file_is_a_clean_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    raw = recipe(tmp_path, output_dir=str(tmp_path / "afile"))
    assert_refused(check("check", str(write(tmp_path, raw))), "output_dir", "is a file")
    result = runner.invoke(app, ["run", str(write(tmp_path, raw))])
    assert_refused(result, "output_dir")


# -- YAML ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["sft:\n  trl:\n    x: *a8\n", "data:\n  task:\n    name: chain_arith\n"
                                   "    knobs:\n      x: *a8\n"])
@pytest.mark.parametrize("command", ["check", "show"])
def test_a_yaml_alias_bomb_is_refused_fast(tmp_path, where, command):
    """1 KB of aliases expanding to 9^9 values: `recipe check` passed it, `show`/`run` spun > 60 s into MemoryError."""
    text = BOMB + "\nname: h\nmodel: {tiny: {}}\n" + where
    if "data:" not in where:
        text += "data: {task: {name: chain_arith, n_train: 20, n_eval: 5}}\n"
    assert len(text) < 1500
    result = check(command, str(write(tmp_path, text)), timeout=5)
    assert_refused(result, "r.yaml:", "expands to more than")


def test_deeply_nested_yaml_is_a_located_error_not_a_recursion_error(tmp_path):
    text = "name: h\nmodel: {tiny: {}}\ndata: {task: {name: chain_arith}}\nsft:\n  trl:\n    x: " + "[" * 5000 + "]" * 5000
    result = check("check", str(write(tmp_path, text)), timeout=10)
    assert_refused(result, "r.yaml:6:", "nested deeper than")


def test_a_key_given_twice_is_an_error_with_its_line(tmp_path):
    text = "name: h\nmodel: {tiny: {}}\ndata: {task: {name: chain_arith}}\nseed: 1\nseed: 2\n"
    assert_refused(check("check", str(write(tmp_path, text))), "r.yaml:5:", "'seed' is given twice")


def test_an_override_value_goes_through_the_same_loader(tmp_path):
    result = check("check", str(write(tmp_path, recipe(tmp_path))), "sft.trl={a: 1, a: 2}")
    assert_refused(result, "given twice")


# -- names that must resolve at check time ---------------------------------------------------------------------


@pytest.mark.parametrize("over, fragment", [
    ({"grpo": {"rewards": [{"fn": "corect"}]}}, "grpo.rewards.0.fn: unknown reward 'corect'; did you mean 'correct'"),
    ({"grpo": {"rewards": [{"fn": "no_such_module_x:fn"}]}}, "grpo.rewards.0.fn: cannot import reward"),
    ({"grpo": {"rewards": [{"fn": "format", "kwargs": {"min_chars": 1}}]}}, "grpo.rewards.0.kwargs: reward 'format' "
                                                                          "has no setting 'min_chars'"),
    ({"grpo": {"rewards": [{"fn": "correct", "kwargs": {"extractor": "nope"}}]}}, "grpo.rewards.0.kwargs:"),
    ({"sft": {"trl": {"lr_schedular_kwargs": {}}}}, "sft.trl.lr_schedular_kwargs: not a field of trl.SFTConfig; "
                                                    "did you mean 'lr_scheduler_kwargs'"),
    ({"grpo": {"trl": {"beta_": 1}}}, "grpo.trl.beta_: not a field of trl.GRPOConfig"),
    ({"data": {"task": {"name": "chain_arithmetic"}}}, "data.task.name: unknown task 'chain_arithmetic'"),
    ({"data": {"task": {"name": "chain_arith", "knobs": {"max_opz": 3}}}}, "data.task.knobs.max_opz: unknown knob"),
    ({"data": {"task": {"name": "chain_arith", "knobs": {"max_ops": "many"}}}}, "data.task.knobs.max_ops: expected int"),
    ({"data": {"task": {"name": "chain_arith", "knobs": {"min_ops": 5, "max_ops": 2}}}}, "data.task.knobs: need 1"),
    ({"data": {"task": {"name": "chain_arith", "knobs": {"max_ops": 10**9}}}}, "data.task.knobs: need 1"),
])
def test_recipe_check_resolves_every_name(tmp_path, over, fragment):
    """Each of these passed `recipe check` and failed at run time (an unknown reward only after SFT finished)."""
    assert_refused(check("check", str(write(tmp_path, {**recipe(tmp_path), **over}))), fragment)


def test_recipe_check_resolves_names_without_loading_torch(tmp_path):
    """The size bound asked torch for GPU memory: `recipe check` spent 30 s importing it on a busy machine."""
    import subprocess
    import sys

    path = write(tmp_path, recipe(tmp_path, grpo={"rewards": [{"fn": "correct"}, {"fn": "format"}]}))
    code = ("import sys\nfrom thinktune.config import check_inputs, load_recipe\n"
            f"check_inputs(load_recipe({str(path)!r}), 'r')\nprint(sorted(m for m in ('torch', 'transformers', 'trl') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout


# -- values ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, fragment", [
    ("grpo.temperature=.inf", "grpo.temperature"),
    ("grpo.temperature=.nan", "grpo.temperature"),
    ("dpo.temperature=-.inf", "dpo.temperature"),
    ("grpo.rewards.0.weight=.nan", "grpo.rewards.0.weight"),
    ("format.answer_open=''", "format.answer_open must not be empty"),
    ("format.think_close='  '", "format.think_close must not be empty"),
    ("format.answer_open=<think>", "must differ from"),
    ("seed=1099511627776", "seed"),
])
def test_values_that_cannot_work_are_refused(tmp_path, override, fragment):
    raw = recipe(tmp_path, grpo={"rewards": [{"fn": "correct"}]}, dpo={"pairs": "self"}) \
        if override.startswith(("grpo", "dpo")) else recipe(tmp_path)
    if override.startswith("dpo"):
        raw["sft"] = {"max_steps": 1}
    assert_refused(check("check", str(write(tmp_path, raw)), override), fragment)


@pytest.mark.parametrize("override, fragment", [
    ("data.task.n_train=1000000000000", "data.task.n_train"),
    ("model.tiny.hidden_size=1000000000", "model.tiny"),
    ("model.tiny.num_heads=1", None),
    ("threads=1000000", "threads: 1,000,000 is more than"),
    ("sft.max_steps=100000000000000", "sft.max_steps"),
])
def test_absurd_sizes_are_refused_naming_the_key(tmp_path, override, fragment):
    """They passed check and died with MemoryError / RuntimeError tracebacks in the run."""
    raw = recipe(tmp_path, sft={"max_steps": 1})
    result = check("check", str(write(tmp_path, raw)), override)
    if fragment is None:  # a legitimate change stays legal
        assert result.exit_code == 0, result.output
    else:
        assert_refused(result, fragment)


# -- fixing a recipe is not a change of inputs -----------------------------------------------------------------


def _fns(fail: str | None = None, progress: bool = False):
    def make(stage):
        def fn(ctx: StageContext):
            if stage == fail:
                ctx.dir.mkdir(parents=True, exist_ok=True)
                if progress:
                    ckpt = ctx.dir / "checkpoint-5"
                    ckpt.mkdir()
                    (ckpt / "COMMITTED").write_text("{}")
                raise RuntimeError("unknown reward / trl key")
            ctx.output_path(stage).mkdir(parents=True, exist_ok=True)
            return {}
        return fn
    return {s: make(s) for s in ("data", "base", "sft", "grpo", "audit")}


def test_a_stage_that_failed_before_making_progress_reruns_after_the_fix(tmp_path):
    """Unknown trl key → the stage failed on start; after the fix the rerun was refused as 'different inputs'."""
    bad = Recipe.model_validate(recipe(tmp_path, sft={"max_steps": 1, "trl": {"bogus": 1}}))
    with pytest.raises(RuntimeError):
        execute(bad, stage_fns=_fns(fail="sft"))
    fixed = Recipe.model_validate(recipe(tmp_path, sft={"max_steps": 1}))
    run = execute(fixed, stage_fns=_fns())
    assert run.manifest["stages"]["sft"]["status"] == "complete"


def test_a_stage_with_committed_progress_is_still_refused_when_its_inputs_change(tmp_path):
    bad = Recipe.model_validate(recipe(tmp_path, sft={"max_steps": 10}))
    with pytest.raises(RuntimeError):
        execute(bad, stage_fns=_fns(fail="sft", progress=True))
    changed = Recipe.model_validate(recipe(tmp_path, sft={"max_steps": 20}))
    with pytest.raises(RunStateError, match="different inputs"):
        execute(changed, stage_fns=_fns())


def test_a_kill_inside_reset_never_leaves_a_half_deleted_stage_marked_complete(tmp_path, monkeypatch):
    r = Recipe.model_validate(recipe(tmp_path, sft={"max_steps": 1}))
    execute(r, stage_fns=_fns())
    run = RunState(r.run_dir(), r)
    calls = []

    def dying_rmtree(path, *a, **k):
        calls.append(path)
        raise KeyboardInterrupt  # the process dies inside the delete

    monkeypatch.setattr("thinktune.run.shutil.rmtree", dying_rmtree)
    with pytest.raises(KeyboardInterrupt):
        run.reset_stage("sft")
    monkeypatch.undo()
    assert "sft" not in json.loads((run.root / "manifest.json").read_text())["stages"]
    assert not (run.root / "sft").exists()  # moved aside first; the next run sweeps the remains
    execute(r, stage_fns=_fns())
    assert not [p for p in os.listdir(run.root) if p.endswith(".tmp")]
