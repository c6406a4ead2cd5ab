"""TIP and steering on the real SmolLM2-135M-Instruct (offline GGUF wheel), at a size CI can afford.

The full measurements (≥ 100 switching prompts for TIP, ≥ 50 pairs for steering) are in
``benchmarks/results/decoding_*_smollm2.json``, made with ``thinktune tip compare`` / ``thinktune steer sweep``.
"""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

GSM8K_TEST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k_test.jsonl"
GSM8K_TRAIN = GSM8K_TEST.with_name("gsm8k_train.jsonl")


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from thinktune.config import ModelConfig
    from thinktune.models import load_model, smollm2_gguf

    try:
        smollm2_gguf()
    except FileNotFoundError as e:
        pytest.fail(f"{e} — the README's test command installs it")
    model, tok = load_model(ModelConfig(path="smollm2"))
    return model.eval(), tok


def _gsm8k(path: Path, n: int):
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder sits beside the repository)")
    from thinktune.data.sources import SourceSpec, load_records

    return load_records(SourceSpec(path=str(path), format="gsm8k", limit=n, strip_calculator=False))[0]


def test_tip_lowers_the_count_of_its_words_on_smollm2(smollm2):
    """SmolLM2 writes "Step 1: … step by step" on GSM8K; TIP on "step" must cut how often it does."""
    from thinktune.decoding.evaluate import EvalSet, run_variant, summarize
    from thinktune.decoding.tip import ThoughtSwitchPenalty, TipConfig
    from thinktune.formatting import DEFAULT_INSTRUCTION
    from thinktune.generation import SamplingParams

    model, tok = smollm2
    es = EvalSet.build(tok, _gsm8k(GSM8K_TEST, 12), DEFAULT_INSTRUCTION)
    cfg = TipConfig(words=["step"], alpha=10.0, beta=600)
    params = SamplingParams(max_new_tokens=48)
    plain = summarize(run_variant(model, tok, es, params, cfg.words, batch_size=12))
    tipped = summarize(run_variant(model, tok, es, params, cfg.words, batch_size=12,
                                   processors=[ThoughtSwitchPenalty.from_config(tok, cfg)]))
    assert plain["switches_per_response"] > 0.5
    assert tipped["switches_per_response"] < plain["switches_per_response"] / 2


def test_steering_on_smollm2_layers_kl_and_calibration(smollm2):
    from thinktune.decoding.evaluate import concise_from_gsm8k
    from thinktune.decoding.steering import (
        Calibration,
        SteeringPair,
        calibrate_strength,
        decoder_layers,
        default_layer,
        extract_steering_vector,
        last_token_states,
        next_token_kl,
        steered,
    )
    from thinktune.formatting import DEFAULT_INSTRUCTION, chat_prompt

    model, tok = smollm2
    records = _gsm8k(GSM8K_TRAIN, 8)
    pairs = [SteeringPair(r.question, concise_from_gsm8k(r), r.reasoning.replace("<<", "").replace(">>", " "))
             for r in records]
    layer = default_layer(model)
    assert layer == 21 and len(decoder_layers(model)) == 30
    vec = extract_steering_vector(model, tok, pairs, instruction=DEFAULT_INSTRUCTION, batch_size=4)
    assert vec.layer == layer and vec.vector.shape == (model.config.hidden_size,)

    ids = tok(chat_prompt(tok, records[0].question, DEFAULT_INSTRUCTION), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        hs = model(**ids, output_hidden_states=True).hidden_states
        ref = model(**ids).logits
        with steered(model, vec, 0.0):
            assert torch.equal(model(**ids).logits, ref)
    got = last_token_states(model, [ids["input_ids"][0].tolist()], layer, tok.pad_token_id)
    assert torch.equal(got[0], hs[layer][0, -1].float())  # the hook point is hidden_states[layer]

    prompts = [chat_prompt(tok, r.question, DEFAULT_INSTRUCTION) for r in records[:4]]
    calib = Calibration.from_texts(tok, prompts, [r.reasoning for r in records[:4]])
    kl = next_token_kl(model, vec, [0.0, 0.5, 1.0, 2.0], calib, batch_size=4)
    assert kl[0.0] == 0.0 and 0 < kl[0.5] < kl[1.0] < kl[2.0]
    cal = calibrate_strength(model, vec, calib, delta=0.05, batch_size=4)
    assert cal["gamma"] > 0 and cal["kl"] <= 0.05
    json.dumps(cal)  # the calibration record is plain JSON
