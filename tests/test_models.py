"""Tiny model builder, atomic save and stage-output loading (full and adapter)."""

import json

import torch

from thinktune.config import LoraConfig, TinyModelConfig
from thinktune.formatting import chat_prompt, render
from thinktune.models import build_tiny, count_parameters, load_stage_output
from thinktune.stages.setup import peft_config, save_final

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(30) for b in range(5)]
SMALL = TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, vocab_size=300)


def test_build_is_deterministic_and_small():
    m1, t1 = build_tiny(SMALL, CORPUS, seed=3)
    m2, t2 = build_tiny(SMALL, CORPUS, seed=3)
    m3, _ = build_tiny(SMALL, CORPUS, seed=4)
    assert t1.get_vocab() == t2.get_vocab()
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))
    assert count_parameters(m1) < 100_000


def test_tokenizer_has_chat_template_and_single_digit_tokens():
    _, tok = build_tiny(SMALL, CORPUS, seed=0)
    prompt = chat_prompt(tok, "Compute 12 + 7.")
    assert prompt == "<|user|>\nCompute 12 + 7.\n<|assistant|>\n"
    pieces = tok.convert_ids_to_tokens(tok("12345", add_special_tokens=False)["input_ids"])
    assert pieces == ["1", "2", "3", "4", "5"]
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert "<answer>" not in tok.all_special_tokens


def test_save_and_reload_full_model(tmp_path):
    model, tok = build_tiny(SMALL, CORPUS, seed=0)
    save_final(model, tok, tmp_path / "base", input_final=None)
    final = tmp_path / "base" / "final"
    assert json.loads((final / "thinktune_model.json").read_text()) == {"kind": "full"}
    assert not list(tmp_path.glob("base/.final.tmp"))
    loaded, tok2 = load_stage_output(final)
    ids = tok("Compute 1 + 2.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert tok2.padding_side == "left"


def test_adapter_output_is_merged_onto_its_input_model(tmp_path):
    from peft import get_peft_model

    model, tok = build_tiny(SMALL, CORPUS, seed=0)
    base_final = save_final(model, tok, tmp_path / "base", input_final=None)
    peft_model = get_peft_model(model, peft_config(LoraConfig(r=4, alpha=8, dropout=0.0)))
    with torch.no_grad():  # make the adapter do something
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    sft_final = save_final(peft_model, tok, tmp_path / "sft", input_final=base_final)
    meta = json.loads((sft_final / "thinktune_model.json").read_text())
    assert meta == {"kind": "adapter", "base": "../../base/final"}
    merged, _ = load_stage_output(sft_final)
    ids = tok("Compute 3 + 4.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model(ids).logits
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5)
        plain, _ = load_stage_output(base_final)
        assert not torch.allclose(plain(ids).logits, expected, atol=1e-3)
