"""docs/EVIDENCE.md from fixture summaries: deterministic; verdicts follow the criteria (incl. not reproduced)."""

import json

import pytest
from typer.testing import CliRunner

from tests.helpers.experiments import write_experiment
from thinktune.cli import app
from thinktune.experiments.spec import load_experiment, recipe_hash
from thinktune.experiments.table import Stat, build_table


def write_summaries(exp, results, values, drop=(), stale=()):
    """values: {arm: [accuracy per seed]} → one summary per arm × seed (hash of the arm's current recipe)."""
    for arm, accs in values.items():
        for seed, acc in zip(exp.spec.seeds, accs):
            if (arm, seed) in drop:
                continue
            h = "0000" if (arm, seed) in stale else recipe_hash(exp.arm_recipe(arm, seed))
            path = results / exp.name / f"{arm}-s{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"recipe_hash": h, "reduced": False, "metrics": {
                "accuracy": {"value": acc, "ci95": None}, "aoc": {"value": 0.25, "ci95": None}}}))


def test_student_t_interval_over_seeds():
    s = Stat([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.half_width == pytest.approx(4.303 / 3 ** 0.5)
    assert Stat([0.5]).half_width is None and Stat([]).mean is None


def test_reproduced_not_reproduced_and_pending(tmp_path):
    results = tmp_path / "results"
    yes = load_experiment(write_experiment(tmp_path, name="01_yes"))
    no = load_experiment(write_experiment(tmp_path, name="02_no"))
    wait = load_experiment(write_experiment(tmp_path, name="03_wait"))
    write_summaries(yes, results, {"a": [0.60, 0.62, 0.61], "b": [0.40, 0.42, 0.41]})
    write_summaries(no, results, {"a": [0.50, 0.52, 0.51], "b": [0.49, 0.50, 0.51]})
    write_summaries(wait, results, {"a": [0.60, 0.62, 0.61], "b": [0.40, 0.42, 0.41]}, drop={("b", 2)},
                    stale={("a", 1)})
    out = tmp_path / "EVIDENCE.md"
    text, res = build_table([yes, no, wait], results, out, results_label="experiments/results")
    assert [r.verdict for r in res] == ["reproduced", "not reproduced", "pending"]
    assert res[0].criteria[0].diff == pytest.approx(20.0)  # percentage points (scale 100)
    assert res[2].why_pending == "4 of 6 runs have a current summary (1 made from an older recipe ignored)"
    assert out.read_text() == text
    assert "| `a` | (base) | 61.0 ± 2.5 (n=3) | 0.250 ± 0.000 (n=3) |" in text
    assert "| `b` | `grpo.kl_coef=0.1` | 41.0 ± 2.5 (n=3) |" in text
    assert "- ✓ accuracy(a) − accuracy(b) > 5, intervals over seeds not overlapping — difference +20" in text
    assert "- ✗ accuracy(a) − accuracy(b) > 5" in text
    section_no = text.split("## 02_no")[1].split("## 03_wait")[0]
    assert "**Likely reason at this scale.** Too small to show it." in section_no
    assert "Likely reason" not in text.split("## 01_yes")[1].split("## 02_no")[0]
    assert "Ignored (made from an older recipe): a-s1.json" in text
    # deterministic: the same inputs give the same bytes
    assert build_table([yes, no, wait], results, None, results_label="experiments/results")[0] == text


def test_compute_counts_each_stage_where_it_ran(tmp_path):
    results = tmp_path / "results"
    exp = load_experiment(write_experiment(tmp_path, name="01_cost"))
    write_summaries(exp, results, {"a": [0.6, 0.6, 0.6], "b": [0.4, 0.4, 0.4]})
    for path in (results / exp.name).glob("*.json"):
        summary = json.loads(path.read_text())
        own = {"sft": {"seconds": 600.0, "shared_from": None}, "audit": {"seconds": 60.0, "shared_from": None}}
        shared = {"sft": {"seconds": 600.0, "shared_from": "../a-s0"}, "audit": {"seconds": 30.0, "shared_from": None}}
        summary["stages"] = own if path.name.startswith("a-") else shared  # b's SFT was a's: not counted twice
        path.write_text(json.dumps(summary))
    text, [res] = build_table([exp], results, None)
    assert res.computed_seconds == pytest.approx(3 * 660 + 3 * 30)
    assert "| 6 / 6 | 34 min |" in text and "adds up to **34 min**" in text


def test_overlapping_seed_intervals_fail_a_separated_criterion(tmp_path):
    results = tmp_path / "results"
    exp = load_experiment(write_experiment(tmp_path))
    write_summaries(exp, results, {"a": [0.70, 0.45, 0.60], "b": [0.40, 0.55, 0.45]})  # diff 11.7 > 5, but noisy
    _, (r,) = build_table([exp], results, None)
    assert r.criteria[0].diff == pytest.approx(11.6667, abs=1e-3) and r.verdict == "not reproduced"


def test_table_cli_writes_the_page_from_summaries_alone(tmp_path, monkeypatch):
    exp = load_experiment(write_experiment(tmp_path))
    write_summaries(exp, tmp_path / "experiments" / "results", {"a": [0.6, 0.62, 0.61], "b": [0.4, 0.42, 0.41]})
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["experiments", "table"])
    assert res.exit_code == 0, res.output
    assert "01_test: reproduced" in res.output
    assert "✅ reproduced" in (tmp_path / "docs" / "EVIDENCE.md").read_text()
