"""A run's models are used where they lie, with the prompt they were trained with (issue 21, points 1 and 2).

`thinktune generate|audit|serve runs/x/sft/final` used to fail on a run whose base is the recipe's own model
("pass the recipe's model config") and a run directory was "not a model directory"; the standalone audit prompted
the model with another instruction than its run's audit did, and audit.json did not say which.
"""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.helpers.tiny_chain import base_and_adapter
from thinktune.cli import app
from thinktune.config import ModelConfig
from thinktune.data.records import Record, write_jsonl
from thinktune.errors import ModelError
from thinktune.models import MODEL_META, load_stage_output, save_model
from thinktune.named_model import resolve_model

INSTRUCTION, SYSTEM = "Add the numbers.", "Be terse."


def pointer_run(tmp_path):
    """A run made the way a `model.path` recipe makes it: base/final points at the recipe's model, sft/final is an
    adapter on it; written before models carried their prompt contract (the contract comes from recipe.yaml)."""
    root = tmp_path / "runs" / "x"
    base, _, tok = base_and_adapter(root)
    plain = tmp_path / "plain"
    model, _ = load_stage_output(base)
    save_model(model, tok, plain)
    (base / MODEL_META).write_text(json.dumps({"kind": "recipe_model"}))
    recipe = {"name": "x", "model": {"path": str(plain), "instruction": INSTRUCTION, "system": SYSTEM},
              "data": {"task": {}}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    stages = {s: {"status": "complete"} for s in ("data", "base", "sft")}
    (root / "manifest.json").write_text(json.dumps({"stages": stages}))
    return root, tok


def logits(model, tok):
    with torch.no_grad():
        return model(tok("Compute 3 + 4.", return_tensors="pt")["input_ids"]).logits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pointer_run(tmp_path_factory.mktemp("named"))


@pytest.mark.parametrize("suffix", ["sft/final", "sft", ""])
def test_a_stage_final_its_stage_dir_and_the_run_dir_resolve_with_the_run_model(run, suffix):
    root, tok = run
    named = resolve_model(str(root / suffix) if suffix else str(root))
    assert named.final == root / "sft" / "final"
    assert (named.prompt.instruction, named.prompt.system) == (INSTRUCTION, SYSTEM)
    model, _ = named.load()
    expected, _ = load_stage_output(root / "sft" / "final", ModelConfig(path=str(root.parent.parent / "plain")))
    assert torch.allclose(logits(model, tok), logits(expected, tok))


def test_a_base_that_points_at_the_recipe_model_loads(run):
    root, tok = run
    with pytest.raises(ValueError, match="pass the recipe's model config"):
        load_stage_output(root / "base" / "final")  # what `generate runs/x/base/final` used to hit
    model, _ = resolve_model(str(root / "base" / "final")).load()
    assert logits(model, tok).shape[-1] == len(tok)


def test_the_contract_written_in_the_model_wins_over_the_recipe(tmp_path):
    root, _ = pointer_run(tmp_path)
    meta = json.loads((root / "sft" / "final" / MODEL_META).read_text())
    meta["prompt"] = {"instruction": "Other.", "system": None, "format": {"answer_open": "<a>", "answer_close": "</a>"}}
    (root / "sft" / "final" / MODEL_META).write_text(json.dumps(meta))
    prompt = resolve_model(str(root / "sft" / "final")).prompt
    assert (prompt.instruction, prompt.system, prompt.fmt.answer_open, prompt.fmt.think_open) == \
        ("Other.", None, "<a>", "<think>")


def test_unusable_names_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        resolve_model(str(tmp_path / "empty"))
    root, _ = pointer_run(tmp_path)
    (root / "manifest.json").write_text(json.dumps({"stages": {}}))
    with pytest.raises(ModelError, match="no completed model stage"):
        resolve_model(str(root))


def test_cli_generate_and_audit_take_a_stage_final_and_audit_records_its_prompt(run, tmp_path):
    root, _ = run
    final = str(root / "sft" / "final")
    res = CliRunner().invoke(app, ["generate", final, "--prompt", "Compute 3 + 4.", "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    data = tmp_path / "eval.jsonl"
    write_jsonl(data, [Record(id=f"q{i}", question=f"Compute {i} + 2.", reasoning="", answer=str(i + 2))
                       for i in range(3)])
    res = CliRunner().invoke(app, ["audit", final, "--data", str(data), "--tests", "none", "--max-new-tokens", "4",
                                   "-o", str(tmp_path / "audit")])
    assert res.exit_code == 0, res.output
    prompt = json.loads((tmp_path / "audit" / "sft" / "audit.json").read_text())["prompt"]
    assert (prompt["instruction"], prompt["system"], prompt["extractor"]) == (INSTRUCTION, SYSTEM, "answer_tag")
    assert SYSTEM in prompt["example"] and INSTRUCTION + "\n\nCompute 0 + 2." in prompt["example"]


def test_export_keeps_the_prompt_contract(run, tmp_path):
    root, _ = run
    out = tmp_path / "export"
    res = CliRunner().invoke(app, ["export", str(root), "-o", str(out)])
    assert res.exit_code == 0, res.output
    prompt = resolve_model(str(out)).prompt
    assert (prompt.instruction, prompt.system) == (INSTRUCTION, SYSTEM)
