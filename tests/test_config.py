"""Recipe validation, overrides and readable errors."""

import re
from pathlib import Path

import pytest
import yaml

from thinktune.config import apply_overrides, fingerprint, load_recipe, parse_override, resolved_dict
from thinktune.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"

MINIMAL = {"name": "t", "model": {"tiny": {}}, "data": {"task": {"name": "chain_arith", "n_train": 10, "n_eval": 5}}}


def write(tmp_path, obj, name="r.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(obj) if not isinstance(obj, str) else obj)
    return p


def test_quickstart_recipe_is_valid():
    r = load_recipe(QUICKSTART)
    assert r.stages() == ["data", "base", "sft", "grpo", "audit", "report"]
    assert r.data.task.n_eval >= 500


def test_defaults_are_filled_in(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL))
    d = resolved_dict(r)
    assert d["model"]["tiny"]["hidden_size"] == 128
    assert d["format"]["answer_close"] == "</answer>"
    assert r.stages() == ["data", "base"]


@pytest.mark.parametrize(
    "override, expected_fragment",
    [
        ("sft.learnin_rate=1", "sft.learnin_rate: unknown key; did you mean 'learning_rate'?"),
        ("model.tiny.hiden_size=8", "model.tiny.hiden_size: unknown key; did you mean 'hidden_size'?"),
        ("grpo.rewards.0.weigth=2", "grpo.rewards.0.weigth: unknown key; did you mean 'weight'?"),
        ("sedd=3", "sedd: unknown key; did you mean 'seed'?"),
        ("sft.max_steps=abc", "sft.max_steps: Input should be a valid integer"),
        ("sft.micro_batch_size=-4", "sft.micro_batch_size: Input should be greater than 0"),
        ("data.task.n_train=0", "data.task.n_train: Input should be greater than 0"),
        ("grpo.samples_per_prompt=1", "samples_per_prompt must be >= 2"),
        ("grpo.preset=ppo", "grpo.preset: Input should be 'grpo', 'dr_grpo' or 'dapo'"),
        ("model.tiny.num_heads=3", "hidden_size (128) must be divisible by num_heads (3)"),
        ("sft.examples_per_step=48", "must be a multiple of sft.micro_batch_size"),
    ],
)
def test_bad_values_name_the_key(override, expected_fragment):
    with pytest.raises(RecipeError) as e:
        load_recipe(QUICKSTART, [override])
    assert expected_fragment in str(e.value)
    assert str(QUICKSTART) in str(e.value)


def test_missing_required_fields(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, {"name": "x"}))
    msg = str(e.value)
    assert "model: required field is missing" in msg and "data: required field is missing" in msg


def test_missing_files_are_reported(tmp_path):
    bad = dict(MINIMAL, model={"path": "./no/such/model"}, data={"train_file": "nope.jsonl", "eval_file": "e.jsonl"})
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, bad))
    msg = str(e.value)
    assert "model.path: ./no/such/model does not exist" in msg
    assert "data.train_file: nope.jsonl does not exist" in msg


def test_gguf_file_must_exist(tmp_path):
    bad = dict(MINIMAL, model={"path": str(tmp_path), "gguf_file": "m.gguf"})
    with pytest.raises(RecipeError, match="model.gguf_file: .*m.gguf does not exist"):
        load_recipe(write(tmp_path, bad))


@pytest.mark.parametrize("text", ["", "[1, 2]", "a: [unclosed", "just a string"])
def test_unreadable_recipes(tmp_path, text):
    with pytest.raises(RecipeError):
        load_recipe(write(tmp_path, text))


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml")


def test_overrides_parse_yaml_values_and_nest():
    assert parse_override("sft.learning_rate=1e-4") == (["sft", "learning_rate"], 1e-4)
    assert parse_override("grpo.clip=[0.2, 0.28]") == (["grpo", "clip"], [0.2, 0.28])
    raw = apply_overrides({"a": {"b": 1}, "l": [{"w": 1}]}, ["a.b=2", "a.c.d=x", "l.0.w=3"])
    assert raw == {"a": {"b": 2, "c": {"d": "x"}}, "l": [{"w": 3}]}
    with pytest.raises(RecipeError, match="not an index"):
        apply_overrides({"l": [1]}, ["l.5=2"])
    with pytest.raises(RecipeError, match="expected key.path=value"):
        parse_override("novalue")


def test_override_changes_fingerprint():
    a = resolved_dict(load_recipe(QUICKSTART))
    b = resolved_dict(load_recipe(QUICKSTART, ["sft.learning_rate=1e-4"]))
    assert b["sft"]["learning_rate"] == 1e-4
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(resolved_dict(load_recipe(QUICKSTART)))


@pytest.mark.parametrize("override, message", [
    ("audit.bias_normalised=true", "audit.bias_normalised: renamed to 'chance_corrected'"),
    ("grpo.reward_audit=false", "grpo.reward_audit: renamed to 'reward_probes'"),
    ("report.score_rewards=false", "report.score_rewards: removed: the report shows the reward scores"),
])
def test_a_renamed_or_removed_key_says_what_became_of_it(tmp_path, override, message):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nmodel: {tiny: {}}\ndata: {task: {}}\ngrpo: {}\naudit: {}\nreport: {}\n")
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(path, [override])
