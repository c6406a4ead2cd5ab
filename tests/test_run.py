"""The run directory state machine: skip complete, resume interrupted, refuse changed, restart-from."""

import json
import os

import pytest

from thinktune.config import Recipe
from thinktune.context import StageContext
from thinktune.errors import RunStateError
from thinktune.run import RunState, execute


def make_recipe(tmp_path, **over):
    raw = {
        "name": "r",
        "output_dir": str(tmp_path / "runs"),
        "model": {"tiny": {}},
        "data": {"task": {"name": "chain_arith", "n_train": 10, "n_eval": 5}},
        "sft": {"max_steps": 3, "examples_per_step": 4, "micro_batch_size": 4},
        "audit": {},
    }
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return Recipe.model_validate(raw)


class FakeStages:
    """Stage functions that record calls and write their outputs, optionally crashing once."""

    def __init__(self, crash_in=None):
        self.calls = []
        self.crash_in = crash_in

    def __call__(self, stage):
        def fn(ctx: StageContext):
            self.calls.append((stage, ctx.resume))
            if stage == self.crash_in:
                self.crash_in = None
                ctx.stage_dir(stage).mkdir(parents=True, exist_ok=True)
                raise RuntimeError("boom")
            ctx.output_path(stage).mkdir(parents=True, exist_ok=True)
            return {"ok": stage}
        return fn

    def fns(self):
        return {s: self(s) for s in ("data", "base", "sft", "grpo", "audit")}


def test_fresh_run_runs_every_stage_and_writes_manifest(tmp_path):
    fake = FakeStages()
    run = execute(make_recipe(tmp_path), stage_fns=fake.fns())
    assert [c[0] for c in fake.calls] == ["data", "base", "sft", "audit"]
    m = json.loads((run.root / "manifest.json").read_text())
    assert all(m["stages"][s]["status"] == "complete" for s in ("data", "base", "sft", "audit"))
    assert m["versions"]["transformers"] and m["recipe_hash"]
    assert (run.root / "recipe.yaml").exists()


def test_second_run_skips_complete_stages(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    fake = FakeStages()
    execute(make_recipe(tmp_path), stage_fns=fake.fns())
    assert fake.calls == []


def test_interrupted_stage_resumes_and_earlier_stages_are_not_redone(tmp_path):
    with pytest.raises(RuntimeError):
        execute(make_recipe(tmp_path), stage_fns=FakeStages(crash_in="sft").fns())
    run = RunState(make_recipe(tmp_path).run_dir(), make_recipe(tmp_path))
    assert run.stage_record("sft")["status"] == "running"
    fake = FakeStages()
    execute(make_recipe(tmp_path), stage_fns=fake.fns())
    assert fake.calls == [("sft", True), ("audit", False)]


def test_changed_config_is_refused_with_the_changed_keys(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    changed = make_recipe(tmp_path, sft={"learning_rate": 1e-3})
    with pytest.raises(RunStateError) as e:
        execute(changed, stage_fns=FakeStages().fns())
    assert "stage 'sft'" in str(e.value) and "sft.learning_rate" in str(e.value)
    assert "--restart-from sft" in str(e.value)


def test_operational_fields_do_not_invalidate_a_stage(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    fake = FakeStages()
    execute(make_recipe(tmp_path, sft={"save_steps": 7, "logging_steps": 1}), stage_fns=fake.fns())
    assert fake.calls == []


def test_restart_from_redoes_that_stage_and_later_ones(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    changed = make_recipe(tmp_path, sft={"learning_rate": 1e-3})
    fake = FakeStages()
    execute(changed, restart_from="sft", stage_fns=fake.fns())
    assert fake.calls == [("sft", False), ("audit", False)]
    fake2 = FakeStages()
    execute(changed, stage_fns=fake2.fns())
    assert fake2.calls == []


def test_restart_from_unknown_stage(tmp_path):
    with pytest.raises(RunStateError, match="this recipe's stages are data, base, sft, audit"):
        execute(make_recipe(tmp_path), restart_from="grpo", stage_fns=FakeStages().fns())


def test_refusal_writes_nothing(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    root = make_recipe(tmp_path).run_dir()
    before = (root / "manifest.json").read_text(), (root / "recipe.yaml").read_text()
    with pytest.raises(RunStateError):
        execute(make_recipe(tmp_path, seed=5), stage_fns=FakeStages().fns())
    assert ((root / "manifest.json").read_text(), (root / "recipe.yaml").read_text()) == before


def test_complete_in_manifest_but_output_missing_is_redone(tmp_path):
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    import shutil

    shutil.rmtree(make_recipe(tmp_path).run_dir() / "audit")
    fake = FakeStages()
    execute(make_recipe(tmp_path), stage_fns=fake.fns())
    assert fake.calls == [("audit", True)]


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    root = make_recipe(tmp_path).run_dir()
    root.mkdir(parents=True)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(RunStateError, match="corrupt manifest"):
        execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())


def test_renamed_keys_keep_the_fingerprints_runs_were_made_with():
    """Stage fingerprints and the recipe hash of a recipe that uses renamed keys (audit.chance_corrected, was
    bias_normalised; grpo.reward_probes*, was reward_audit*; report.score_rewards, removed) equal what f896ed0, the
    release before the rename, computed for the same recipe under the old names (the values below), so completed runs
    are skipped, not refused, and committed experiment summaries still count."""
    from thinktune.config import resolved_dict
    from thinktune.run import inputs_fingerprint, stage_inputs

    recipe = Recipe.model_validate({
        "name": "fp", "model": {"tiny": {}}, "data": {"task": {"name": "chain_arith", "n_train": 10, "n_eval": 5}},
        "sft": {"max_steps": 3, "examples_per_step": 4, "micro_batch_size": 4, "warmup_ratio": 0.1},
        "grpo": {"max_steps": 2, "reward_probes": False, "reward_probe_items": 4, "rollout_engine": "trl"},
        "dpo": {"beta": 0.2}, "audit": {"chance_corrected": True, "max_items": 10}, "report": {}})
    assert {s: inputs_fingerprint(stage_inputs(recipe, s)) for s in recipe.stages()} == {
        "data": "a694e5d411cfb47b", "base": "a694e5d411cfb47b", "sft": "eff0d5835bb6f740", "grpo": "c7643810f67e9d21",
        "dpo": "8a74a3d1c3453c1c", "audit": "6cfe0cc9b9aafd91", "report": "6cfe0cc9b9aafd91"}
    assert inputs_fingerprint(resolved_dict(recipe)) == "31d815c3956c4d3d"


def test_an_interrupted_restart_resumes_with_a_plain_run(tmp_path):
    """`--restart-from sft` killed inside SFT: the next plain `thinktune run` resumes SFT and redoes the audit; it
    used to refuse, the audit still being recorded complete under the old inputs."""
    execute(make_recipe(tmp_path), stage_fns=FakeStages().fns())
    changed = make_recipe(tmp_path, sft={"learning_rate": 1e-3})
    with pytest.raises(RuntimeError):
        execute(changed, restart_from="sft", stage_fns=FakeStages(crash_in="sft").fns())
    fake = FakeStages()
    execute(changed, stage_fns=fake.fns())
    assert fake.calls == [("sft", True), ("audit", False)]


def test_a_second_run_of_the_same_directory_is_refused_while_the_first_works(tmp_path):
    """Two `thinktune run`s of one run directory at once would sweep each other's temp files: the second is refused
    with the holder's pid and runs nothing; once the first ends (here killed, -9) the directory is free again."""
    from tests.helpers.locks import lock_held_elsewhere

    recipe = make_recipe(tmp_path)
    execute(recipe, stage_fns=FakeStages().fns())
    manifest = (recipe.run_dir() / "manifest.json").read_text()
    fake = FakeStages()
    with lock_held_elsewhere(recipe.run_dir()) as holder:
        with pytest.raises(RunStateError, match=rf"another `thinktune run` is working in this run directory \(pid "
                                                rf"{holder.pid}\)"):
            execute(make_recipe(tmp_path, sft={"learning_rate": 1e-3}), restart_from="sft", stage_fns=fake.fns())
    assert fake.calls == [] and (recipe.run_dir() / "manifest.json").read_text() == manifest
    execute(make_recipe(tmp_path, sft={"learning_rate": 1e-3}), restart_from="sft", stage_fns=fake.fns())
    assert [c[0] for c in fake.calls] == ["sft", "audit"]


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    """The experiment runner holds the lock around `execute`, which takes it again: the same process enters, and
    the lock stays held (against other processes) until the outer block ends."""
    import subprocess
    import sys

    from thinktune.run_lock import run_lock, try_run_lock

    recipe = make_recipe(tmp_path)
    probe = ("import sys, pathlib; from thinktune.run_lock import try_run_lock\n"
             "with try_run_lock(pathlib.Path(sys.argv[1])) as mine: print(mine)")

    def free_elsewhere() -> bool:
        return subprocess.run([sys.executable, "-c", probe, str(recipe.run_dir())], capture_output=True, text=True,
                              check=True).stdout.strip() == "True"

    fake = FakeStages()
    with run_lock(recipe.run_dir()):
        execute(recipe, stage_fns=fake.fns())  # re-enters
        assert [c[0] for c in fake.calls] == ["data", "base", "sft", "audit"]
        with try_run_lock(recipe.run_dir()) as mine:
            assert mine
        assert not free_elsewhere()  # the inner blocks ended, the outer one still holds it
    assert free_elsewhere()
