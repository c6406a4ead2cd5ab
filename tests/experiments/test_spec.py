"""Experiment file validation: every mistake is a clear error naming the field (and a non-zero CLI exit)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.experiments import write_experiment
from thinktune.cli import app
from thinktune.errors import RecipeError
from thinktune.experiments.spec import load_experiment, recipe_hash, select


def test_valid_experiment_builds_one_recipe_per_arm_and_seed(tmp_path):
    exp = load_experiment(write_experiment(tmp_path))
    assert exp.name == "01_test" and exp.runs() == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    a, b = exp.arm_recipe("a", 1, output_dir=tmp_path / "out"), exp.arm_recipe("b", 1)
    assert (a.name, a.seed, a.grpo.kl_coef, b.grpo.kl_coef) == ("a-s1", 1, 0.0, 0.1)
    assert str(a.run_dir()) == str(tmp_path / "out" / "a-s1")
    # the hash ignores where a run is written, not what it computes
    assert recipe_hash(a) == recipe_hash(exp.arm_recipe("a", 1, output_dir="elsewhere")) != recipe_hash(
        exp.arm_recipe("b", 1))


@pytest.mark.parametrize("changes, message", [
    ({"claims": "x"}, "claims: unknown key; did you mean 'claim'?"),
    ({"criteria": [{"metric": "accuracy", "a": "a", "b": "bb", "test": "greater"}]},
     "criteria.0.b: unknown arm 'bb'; did you mean 'b'?"),
    ({"criteria": [{"metric": "acc", "a": "a", "b": "b", "test": "greater"}]},
     "criteria.0.metric: unknown metric 'acc'"),
    ({"criteria": [{"metric": "accuracy", "a": "a", "b": "b", "test": "bigger"}]}, "criteria.0.test:"),
    ({"arms": {"a": {}}}, "arms: an experiment compares at least two arms"),
    ({"metrics": [{"name": "x", "path": "accuracy", "sorce": "audit"}]},
     "metrics.0.sorce: unknown key; did you mean 'source'?"),
    ({"seeds": []}, "seeds:"),
])
def test_invalid_experiment_names_the_field(tmp_path, changes, message):
    with pytest.raises(RecipeError) as err:
        load_experiment(write_experiment(tmp_path, **changes))
    assert "invalid experiment" in str(err.value) and message in str(err.value)


def test_bad_arm_override_is_reported_with_the_arm(tmp_path):
    exp = load_experiment(write_experiment(tmp_path, arms={"a": {}, "b": {"sft.learnin_rate": 0.1}}))
    exp.arm_recipe("a", 0)
    with pytest.raises(RecipeError, match=r"(?s)\(arm b\).*sft.learnin_rate: unknown key; did you mean 'learn"):
        exp.arm_recipe("b", 0)


def test_reduced_keys_never_bring_back_a_dropped_stage(tmp_path):
    exp = load_experiment(write_experiment(tmp_path, arms={"a": {}, "b": {"grpo": None}},
                                           reduced={"grpo.max_steps": 1, "sft.max_steps": 1}))
    a, b = exp.arm_recipe("a", 0, reduced=True), exp.arm_recipe("b", 0, reduced=True)
    assert a.grpo.max_steps == 1 and b.grpo is None and b.sft.max_steps == 1


def test_select_by_number_and_unknown_names(tmp_path):
    write_experiment(tmp_path)
    write_experiment(tmp_path, name="02_other")
    assert [e.name for e in select(["02"], tmp_path / "experiments")] == ["02_other"]
    with pytest.raises(RecipeError, match="experiment '9': not found; experiments: 01_test, 02_other"):
        select(["9"], tmp_path / "experiments")
    with pytest.raises(RecipeError, match="--all"):
        select([], tmp_path / "experiments")


def test_cli_reports_an_invalid_experiment_without_a_traceback(tmp_path, monkeypatch):
    write_experiment(tmp_path, criteria=[{"metric": "accuracy", "a": "a", "b": "zz", "test": "greater"}])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["experiments", "run", "01", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 1
    assert "criteria.0.b: unknown arm 'zz'" in res.output and "Traceback" not in res.output


def test_a_key_given_twice_is_an_error(tmp_path):
    path = write_experiment(tmp_path, reduced={"sft.max_steps": 2})
    path.write_text(path.read_text() + "  sft.max_steps: 3\n")
    with pytest.raises(RecipeError, match="not valid YAML.*'sft.max_steps' is given twice"):
        load_experiment(path)


def test_seeds_select_runs_and_an_unknown_seed_is_an_error(tmp_path, monkeypatch):
    exp = load_experiment(write_experiment(tmp_path))  # seeds 0, 1, 2; arms a, b
    assert exp.runs(only_seeds=[2, 0]) == [("a", 0), ("b", 0), ("a", 2), ("b", 2)]
    with pytest.raises(RecipeError, match="seed\\(s\\) 5 not among its seeds 0, 1, 2"):
        exp.runs(only_seeds=[1, 5])
    monkeypatch.chdir(tmp_path)
    for bad, message in (("5", "seed(s) 5 not among its seeds"), ("x", "--seeds expects seeds separated by commas")):
        res = CliRunner().invoke(app, ["experiments", "run", "01", "--seeds", bad, "--out", str(tmp_path / "runs")])
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
        assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_planned_experiments_load_with_recipes_from_the_repository_root():
    """experiments/planned/ holds defined, not yet run experiments (README: run one with its path); their recipe
    paths are relative to the repository root like every other experiment's."""
    repo = Path(__file__).resolve().parents[2]
    files = sorted((repo / "experiments" / "planned").glob("*.yaml"))
    assert files
    for f in files:
        exp = load_experiment(f)
        assert exp.root == repo
        for arm in exp.spec.arms:
            assert exp.arm_recipe(arm, exp.spec.seeds[0]).model.path == "smollm2"
