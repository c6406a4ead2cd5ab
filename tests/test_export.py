"""`thinktune export`: a standalone model that plain transformers loads, identical to the run's model."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from thinktune.cli import app
from tests.helpers.tiny_chain import base_and_adapter
from thinktune.models import load_stage_output



def fake_run(tmp_path):
    """base (full) → sft (adapter) written the way the stages write them, plus manifest and recipe."""
    root = tmp_path / "run"
    _, _, tok = base_and_adapter(root)
    recipe = {"name": "run", "model": {"tiny": {}}, "data": {"task": {}}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    stages = {s: {"status": "complete"} for s in ("data", "base", "sft")}
    (root / "manifest.json").write_text(json.dumps({"stages": stages}))
    return root, tok


def test_export_merges_the_adapter_chain(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, tok = fake_run(tmp_path)
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(out)
    tok2 = AutoTokenizer.from_pretrained(out)
    assert tok2.chat_template == tok.chat_template
    expected, _ = load_stage_output(root / "sft" / "final")
    ids = tok("Compute 3 + 4.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, expected(ids).logits, atol=1e-5)


def test_export_without_merge_copies_the_adapter(tmp_path):
    root, _ = fake_run(tmp_path)
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(tmp_path / "ad"), "--no-merge"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ad" / "adapter_config.json").exists()


@pytest.mark.parametrize("args, fragment", [(["--stage", "grpo"], "no completed model"), ([], "not a thinktune run")])
def test_export_errors(tmp_path, args, fragment):
    root = fake_run(tmp_path)[0] if "--stage" in args else tmp_path / "nothing"
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(tmp_path / "x"), *args])
    assert result.exit_code == 1 and fragment in result.output and "Traceback" not in result.output


def test_export_bf16_with_a_truthful_model_card(tmp_path):
    # issue 21, point 12: export was float32 only and the card said "fine-tuned version of [None](…)"
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    root, tok = fake_run(tmp_path)
    (root / "results.json").write_text(json.dumps({"models": {"base": {"accuracy": 0.125, "format_rate": 0.5, "n": 8},
                                                              "sft": {"accuracy": 0.375, "format_rate": 1.0, "n": 8}}}))
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "stats.json").write_text(json.dumps({"train": 321}))
    out = tmp_path / "bf16"
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(out), "--dtype", "bf16"])
    assert result.exit_code == 0 and "bfloat16" in result.output, result.output
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert plain.dtype == torch.bfloat16
    ids = tok("Compute 3 + 4.", return_tensors="pt")["input_ids"]
    expected, _ = load_stage_output(root / "sft" / "final")
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits.float(), expected(ids).logits, atol=0.1)
    card = (out / "README.md").read_text()
    assert "[None]" not in card and "# run: the sft model" in card
    assert "built from scratch" in card and "base → sft" in card and "321 training records" in card
    assert "| sft | 37.5% | 100.0% | 8 |" in card and "bfloat16" in card
    assert (out / "recipe.yaml").read_text() == (root / "recipe.yaml").read_text()


def test_export_without_merge_replaces_the_adapter_card_and_refuses_a_bad_dtype(tmp_path):
    root, _ = fake_run(tmp_path)
    (root / "sft" / "final" / "README.md").write_text("This model is a fine-tuned version of [None](None).\n")
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(tmp_path / "ad"), "--no-merge"])
    assert result.exit_code == 0, result.output
    assert "[None]" not in (tmp_path / "ad" / "README.md").read_text()
    result = CliRunner().invoke(app, ["export", str(root), "-o", str(tmp_path / "x"), "--dtype", "int4"])
    assert result.exit_code == 1 and "expected one of fp32, bf16, fp16" in result.output
    assert not (tmp_path / "x").exists()
