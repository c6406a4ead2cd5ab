"""A tiny base model and a LoRA adapter on it, saved the way the stages save them (shared by several tests)."""

import torch

from thinktune.config import LoraConfig, TinyModelConfig
from thinktune.formatting import render
from thinktune.models import build_tiny
from thinktune.stages.setup import peft_config, save_final

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(20) for b in range(5)]


def base_and_adapter(root):
    """(base final dir, sft adapter final dir, tokenizer): base/final full weights, sft/final a non-trivial adapter."""
    from peft import get_peft_model

    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    base = save_final(model, tok, root / "base", None)
    peft_model = get_peft_model(model, peft_config(LoraConfig(r=4, alpha=8, dropout=0.0)))
    with torch.no_grad():  # make the adapter do something
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    sft = save_final(peft_model, tok, root / "sft", base)
    return base, sft, tok
