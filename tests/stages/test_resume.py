"""kill -9 during SFT or GRPO, then the same `thinktune run`: resume from the last committed checkpoint and
finish with the same numbers as an uninterrupted run (docs/ARCHITECTURE.md, "Crash safety and exact resume")."""

import json

import pytest

from tests.helpers.pipeline import kill_when, run_dir, start, thinktune

pytestmark = pytest.mark.slow

OVERRIDES = {"sft": {"max_steps": 40, "save_steps": 8}, "grpo": {"max_steps": 8, "save_steps": 2}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from tests.helpers.pipeline import reduced_recipe

    recipe = reduced_recipe(tmp_path_factory.mktemp("ref"), "ref", **OVERRIDES)
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir(recipe) / "results.json").read_text())


@pytest.mark.parametrize("stage, marker", [("sft", "checkpoint-16"), ("grpo", "checkpoint-4")])
def test_kill_then_resume_matches_uninterrupted(recipe_factory, reference, stage, marker):
    recipe = recipe_factory(f"kill-{stage}", **OVERRIDES)
    root = run_dir(recipe)
    proc = start(recipe)
    kill_when(proc, root / stage / marker / "COMMITTED")
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"][stage]["status"] == "running"
    assert not (root / stage / "final").exists()

    # a torn checkpoint (killed mid-write: no COMMITTED marker) must never be loaded
    torn = root / stage / "checkpoint-999"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"garbage")
    (torn / "trainer_state.json").write_text("{")

    resumed = thinktune("run", str(recipe))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"[{stage}] interrupted earlier — resuming" in log
    assert f"[{stage}] resuming from checkpoint-" in log
    assert "checkpoint-999" not in log.split("resuming from")[-1].splitlines()[0]
    assert not torn.exists()
    for done in ["data", "base"] + (["sft"] if stage == "grpo" else []):
        assert f"[{done}] complete — skipped" in log
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["data"]["attempts"] == 1
    assert manifest["stages"][stage]["attempts"] == 2
    results = json.loads((root / "results.json").read_text())
    assert results["models"] == reference["models"]
