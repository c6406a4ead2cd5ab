"""The CLI's contract for bad input: a short message naming the problem, exit 1, no traceback, nothing written."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from thinktune.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def recipe_file(tmp_path, **over):
    raw = {"name": "bad", "output_dir": str(tmp_path / "runs"), "model": {"tiny": {}},
           "data": {"task": {"name": "chain_arith", "n_train": 20, "n_eval": 5}}, "sft": {"max_steps": 1}}
    raw.update(over)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def assert_clean_failure(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def test_help_on_every_command():
    for args in ([], ["run"], ["recipe"], ["recipe", "check"], ["recipe", "show"], ["version"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_recipe_check_ok_and_show_resolves_defaults():
    result = runner.invoke(app, ["recipe", "check", str(ROOT / "recipes" / "quickstart.yaml")])
    assert result.exit_code == 0 and "ok" in result.output
    shown = runner.invoke(app, ["recipe", "show", str(ROOT / "recipes" / "quickstart.yaml"), "seed=7"])
    resolved = yaml.safe_load(shown.output)
    assert resolved["seed"] == 7 and resolved["grpo"]["kl_coef"] == 0.0 and resolved["format"]["think_open"] == "<think>"


@pytest.mark.parametrize(
    "over, fragment",
    [
        ({"sft": {"max_steps": 1, "learnig_rate": 1}}, "did you mean 'learning_rate'"),
        ({"model": {"tiny": {"hidden_size": "big"}}}, "model.tiny.hidden_size"),
        ({"sft": {"max_steps": -2}}, "sft.max_steps"),
        ({"model": {"path": "./missing-model"}}, "model.path: ./missing-model does not exist"),
    ],
)
def test_bad_recipes_fail_before_anything_is_written(tmp_path, over, fragment):
    path = recipe_file(tmp_path, **over)
    for cmd in (["recipe", "check"], ["run"]):
        assert_clean_failure(runner.invoke(app, [*cmd, str(path)]), fragment)
    assert not (tmp_path / "runs").exists()


def test_empty_dataset_fails_without_a_half_written_stage(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "e1", "question": "q?", "answer": "1"}) + "\n")
    path = recipe_file(tmp_path, data={"train_file": str(tmp_path / "train.jsonl"),
                                       "eval_file": str(tmp_path / "eval.jsonl")})
    result = runner.invoke(app, ["run", str(path)])
    assert_clean_failure(result, "empty")
    run_dir = tmp_path / "runs" / "bad"
    assert not (run_dir / "data").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_bad_data_file_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"id": "a", "question": "q", "answer": "1"}) + "\n{oops\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "e1", "question": "q?", "answer": "1"}) + "\n")
    path = recipe_file(tmp_path, data={"train_file": str(tmp_path / "train.jsonl"),
                                       "eval_file": str(tmp_path / "eval.jsonl")})
    result = runner.invoke(app, ["run", str(path)])
    assert_clean_failure(result, "train.jsonl:2")
