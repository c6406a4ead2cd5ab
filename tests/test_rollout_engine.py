"""The batched rollout decoder (rollout_engine.py): greedy outputs token for token equal to HF ``generate`` (left
padding, shared prompts, rows ending at different steps), sampling from the same distribution, the processors, and
the GRPO trainer mixin on TRL's real code path."""

import inspect

import pytest
import torch

from thinktune.config import GRPOStage, TinyModelConfig
from thinktune.formatting import render
from thinktune.models import build_tiny
from thinktune.rollout_engine import DecodeSettings, decode
from thinktune.stages.rollouts import decode_settings

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(20) for b in range(5)]


@pytest.fixture(scope="module")
def tiny():
    """A tiny model trained for a few seconds on the corpus, so that its greedy completions end (EOS) at different
    lengths, as a real policy's do."""
    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    torch.manual_seed(0)
    texts = [t + tok.eos_token for t in CORPUS]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(80):
        batch = tok([texts[(step * 16 + i) % len(texts)] for i in range(16)], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model, tok


def prompts(tok, n_distinct=6, repeats=3):
    texts = [f"Compute {a * 3} + {a % 5}.\n" if a % 2 else f"Compute {a} + {a % 5}.\n" for a in range(n_distinct)]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(repeats)]


def hf_greedy(model, tok, ids, max_new, eos, **kw):
    from transformers import GenerationConfig

    width = max(map(len, ids))
    inp = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    cfg = GenerationConfig(max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=list(eos), disable_compile=True, **kw)
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=mask, generation_config=cfg)[:, width:].tolist()
    return [row[: next((i + 1 for i, t in enumerate(row) if t in eos), len(row))] for row in out]


def test_greedy_is_token_for_token_generate(tiny):
    model, tok = tiny
    ids = prompts(tok)
    eos = [tok.eos_token_id]
    expected = hf_greedy(model, tok, ids, 24, eos)
    got = decode(model, ids, DecodeSettings(max_new_tokens=24, do_sample=False), eos, tok.pad_token_id)
    assert got == expected
    lengths = {len(r) for r in got}
    assert len(lengths) > 1  # rows ended at different steps (the batch shrank while others went on)
    capped = decode(model, ids, DecodeSettings(max_new_tokens=5, do_sample=False), eos, tok.pad_token_id)
    assert capped == [r[:5] for r in expected]


def test_greedy_with_repetition_penalty_matches_generate(tiny):
    model, tok = tiny
    ids = prompts(tok, 4, 2)
    got = decode(model, ids, DecodeSettings(max_new_tokens=10, do_sample=False, repetition_penalty=1.3),
                 [tok.eos_token_id], tok.pad_token_id)
    assert got == hf_greedy(model, tok, ids, 10, [tok.eos_token_id], repetition_penalty=1.3)


def test_sampling_follows_the_tempered_distribution(tiny):
    model, tok = tiny
    ids = [tok("Compute 3 + 1.", add_special_tokens=False)["input_ids"]] * 3000
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids[:1])).logits[0, -1]
    probs = torch.softmax(logits / 0.7, -1)
    gen = torch.Generator().manual_seed(1)
    got = decode(model, ids, DecodeSettings(max_new_tokens=1, temperature=0.7), [tok.eos_token_id],
                 tok.pad_token_id, generator=gen)
    freq = torch.bincount(torch.tensor([r[0] for r in got]), minlength=len(probs)).float() / len(got)
    top = probs.topk(3).indices
    assert torch.allclose(freq[top], probs[top], atol=0.04)  # 3,000 draws: ~0.01 standard error
    assert freq[probs < 1e-4].sum() < 0.01


def test_top_k_one_is_greedy(tiny):
    model, tok = tiny
    ids = prompts(tok, 3, 2)
    greedy = decode(model, ids, DecodeSettings(max_new_tokens=8, do_sample=False), [tok.eos_token_id],
                    tok.pad_token_id)
    assert decode(model, ids, DecodeSettings(max_new_tokens=8, top_k=1), [tok.eos_token_id],
                  tok.pad_token_id) == greedy


def test_settings_from_trl_kwargs_and_fallback_on_what_it_does_not_implement():
    base = {"max_new_tokens": 32, "do_sample": True, "pad_token_id": 0, "bos_token_id": None, "eos_token_id": [1],
            "temperature": 0.6, "top_p": 1.0, "top_k": 0, "min_p": None, "repetition_penalty": 1.0,
            "cache_implementation": None}
    s = decode_settings(base)
    assert s == DecodeSettings(max_new_tokens=32, temperature=0.6, top_k=0, top_p=1.0)
    assert decode_settings({**base, "no_repeat_ngram_size": 3}) is None
    assert decode_settings({**base, "cache_implementation": "static"}) is None


def test_engine_is_the_default_and_trl_keeps_old_fingerprints():
    assert GRPOStage().rollout_engine == "thinktune"
    assert GRPOStage().model_dump()["rollout_engine"] == "thinktune"
    assert "rollout_engine" not in GRPOStage(rollout_engine="trl").model_dump()  # the old behaviour, old fingerprint


def test_mixin_gives_trl_the_same_greedy_completions(tmp_path, tiny, monkeypatch):
    import thinktune.stages.rollouts as rollouts

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from thinktune.stages.grpo import trainer_class

    model, tok = tiny
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                      gradient_checkpointing=False, beta=0.0, generation_kwargs={"do_sample": False})
    data = Dataset.from_list([{"prompt": "Compute 1 + 2."}, {"prompt": "Compute 3 + 4."}])

    def reward(completions, **kw):
        return [0.0] * len(completions)

    ids = prompts(tok, 4, 4)
    ours = trainer_class(GRPOStage())(model=model, reward_funcs=reward, args=args, train_dataset=data,
                                      processing_class=tok)
    theirs = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok)
    assert type(ours).__name__ == "ThinktuneGRPOTrainer"
    calls = []
    monkeypatch.setattr(rollouts, "decode", lambda *a, **kw: calls.append(1) or decode(*a, **kw))
    got, _ = ours._generate_single_turn(ids, None, {}, 4)
    assert calls == [1]  # the engine ran, not TRL's generate
    expected, _ = theirs._generate_single_turn(ids, None, {}, 4)
    assert got == expected


# the TRL method the mixin overrides (a change there means re-checking the mixin)
TRL_SOURCE = "_generate_single_turn"


def test_trl_method_the_mixin_overrides_is_known():
    from trl import GRPOTrainer

    src = inspect.getsource(getattr(GRPOTrainer, TRL_SOURCE))
    assert "def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations" in src
    # the unwrapping context and the cut after the first EOS are what the mixin mirrors
    assert "unwrap_model_for_generation(" in src and "completion_mask = (sequence_indices <= eos_idx" in src
