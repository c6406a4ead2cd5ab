"""The whole pipeline end to end on a reduced quickstart: data → tiny base → SFT → GRPO → audit."""

import json

import pytest

from tests.helpers.pipeline import run_dir, thinktune

pytestmark = pytest.mark.slow


def test_reduced_quickstart_end_to_end_and_reproducible(recipe_factory):
    recipe = recipe_factory("qs")
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = run_dir(recipe)
    manifest = json.loads((root / "manifest.json").read_text())
    assert [s for s, r in manifest["stages"].items() if r["status"] == "complete"] == \
        ["data", "base", "sft", "grpo", "audit", "report"]
    assert (root / "report.html").stat().st_size > 10_000
    for stage in ("base", "sft", "grpo"):
        assert (root / stage / "final" / "thinktune_model.json").exists()
    for stage in ("sft", "grpo"):
        assert (root / stage / "effective_config.json").exists()
        assert (root / stage / "metrics.jsonl").read_text().strip()
    eff = json.loads((root / "grpo" / "effective_config.json").read_text())
    assert eff["loss_type"] == "dapo" and eff["num_generations"] == 4 and eff["epsilon_high"] == 0.28
    # every GRPO completion is logged with its per-reward scores
    rows = [json.loads(line) for f in sorted((root / "grpo" / "completions").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    assert len(rows) == 6 * 4 * 4
    assert set(rows[0]["rewards"]) == {"correct", "format"}
    results = json.loads((root / "results.json").read_text())
    assert results["eval_items"] == 40
    assert set(results["models"]) == {"base", "sft", "grpo"}
    assert results["models"]["base"]["accuracy"] == 0.0  # an untrained model cannot do arithmetic
    # each model against the one it was trained from, paired on the same 40 items
    changes = {(c["before"], c["after"]): c for c in results["changes"]}
    assert set(changes) == {("base", "sft"), ("sft", "grpo")}
    for (before, after), c in changes.items():
        assert c["n"] == 40
        assert c["delta"] == pytest.approx(results["models"][after]["accuracy"] - results["models"][before]["accuracy"])
        assert c["ci95"][0] <= c["delta"] <= c["ci95"][1]
    examples = (root / "audit" / "sft" / "examples.jsonl").read_text().splitlines()
    assert len(examples) == 40
    # the run stores what the report shows: every held-out sample's GRPO reward scores, the reward-probe report
    assert all(set(json.loads(line)["rewards"]) == {"correct", "format"} for line in examples)
    assert json.loads((root / "grpo" / "reward_probes.json").read_text())["rows"]
    # the results table is printed
    assert "held-out accuracy" in proc.stdout and "grpo" in proc.stdout

    # same seed, fresh directory: the same numbers
    again = recipe_factory("qs2")
    proc2 = thinktune("run", str(again))
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    results2 = json.loads((run_dir(again) / "results.json").read_text())
    assert results2["models"] == results["models"]
    m2 = json.loads((run_dir(again) / "manifest.json").read_text())
    assert m2["stages"]["sft"]["result"]["train_loss"] == manifest["stages"]["sft"]["result"]["train_loss"]

    # a second `run` of the same recipe does nothing
    proc3 = thinktune("run", str(recipe))
    assert proc3.returncode == 0
    assert proc3.stderr.count("skipped") == 5  # the report is regenerated, every other stage skipped
