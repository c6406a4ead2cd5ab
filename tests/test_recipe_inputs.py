"""`thinktune recipe check` verifies every input the run will read (issue 21, point 5): it passed
recipes/smollm2_gsm8k.yaml outside the repository although its data sources did not exist there, and `run` failed."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from thinktune.cli import app

ROOT = Path(__file__).resolve().parents[1]


def check(path):
    res = CliRunner().invoke(app, ["recipe", "check", str(path)], env={"COLUMNS": "300"})
    return res.exit_code, " ".join(res.output.split())


def test_missing_sources_are_named_with_where_relative_paths_are_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a newcomer's own directory, not the repository
    code, out = check(ROOT / "recipes" / "smollm2_gsm8k.yaml")
    assert code == 1 and "Traceback" not in out
    assert "data.sources[0].path: ../shared/data/gsm8k_train.jsonl does not exist" in out
    assert "data.eval_sources[0].path: ../shared/data/gsm8k_test.jsonl does not exist" in out
    assert f"relative paths are read from the working directory, {tmp_path}" in out


def test_a_path_that_exists_beside_the_recipe_is_pointed_out(tmp_path, monkeypatch):
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "train.jsonl").write_text('{"id": "a", "question": "q", "answer": "1"}\n')
    recipe = {"name": "r", "model": {"tiny": {}}, "data": {"sources": [{"path": "data/train.jsonl"}],
                                                           "eval_fraction": 0.1}}
    (tmp_path / "proj" / "r.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    code, out = check(tmp_path / "proj" / "r.yaml")
    assert code == 1 and f"it exists beside the recipe ({tmp_path / 'proj' / 'data' / 'train.jsonl'})" in out
    monkeypatch.chdir(tmp_path / "proj")
    assert check(tmp_path / "proj" / "r.yaml")[0] == 0


def test_unknown_task_and_unresolvable_rewards_are_refused_before_the_run(tmp_path):
    recipe = {"name": "r", "model": {"tiny": {}}, "data": {"task": {"name": "chain_arth"}},
              "grpo": {"rewards": [{"fn": "corect"}, {"fn": "no_such_module_xyz:reward"}]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code, out = check(tmp_path / "r.yaml")
    assert code == 1  # resolved by recipe_check.deep_problems (the hardening branch), one line per field
    assert "data.task.name: unknown task 'chain_arth'" in out
    assert "grpo.rewards.0.fn: unknown reward 'corect'" in out and "no_such_module_xyz" in out
