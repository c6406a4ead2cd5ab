"""GRPO's KL reference is the stage's input model, also after a LoRA SFT merged into a full fine-tune."""

import json

import torch

from tests.helpers.tiny_chain import base_and_adapter
from thinktune.config import GRPOStage
from thinktune.models import load_stage_output
from thinktune.stages.grpo import pin_reference



def test_full_finetune_after_lora_sft_gets_the_merged_input_as_reference(tmp_path):
    from transformers import AutoModelForCausalLM

    _, sft, tok = base_and_adapter(tmp_path)
    merged, tok2 = load_stage_output(sft)
    assert "base" in merged.config._name_or_path  # what TRL would otherwise reload as the reference
    cfg = GRPOStage(kl_coef=0.04)
    ref = pin_reference(merged, tok2, cfg, lora=False, input_final=sft, stage_dir=tmp_path / "grpo")
    assert ref == str(tmp_path / "grpo" / "reference")
    reloaded = AutoModelForCausalLM.from_pretrained(ref)  # what TRL's create_model_from_path will load
    ids = tok("Compute 3 + 4.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, merged(ids).logits, atol=1e-6)
    assert pin_reference(merged, tok2, GRPOStage(kl_coef=0.0), False, sft, tmp_path / "g2") is None
    assert pin_reference(merged, tok2, cfg, True, sft, tmp_path / "g3") == "input model (adapter disabled)"
    assert json.loads((sft / "thinktune_model.json").read_text())["kind"] == "adapter"
