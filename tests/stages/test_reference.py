"""GRPO's KL reference is the stage's input model, also after a LoRA SFT merged into a full fine-tune."""

import json

import torch

from thinktune.config import GRPOStage, LoraConfig, TinyModelConfig
from thinktune.formatting import render
from thinktune.models import build_tiny, load_stage_output
from thinktune.stages.grpo import pin_reference
from thinktune.stages.setup import peft_config, save_final

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(20) for b in range(5)]


def test_full_finetune_after_lora_sft_gets_the_merged_input_as_reference(tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    base = save_final(model, tok, tmp_path / "base", None)
    peft_model = get_peft_model(model, peft_config(LoraConfig(r=4, alpha=8, dropout=0.0)))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    sft = save_final(peft_model, tok, tmp_path / "sft", base)
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
