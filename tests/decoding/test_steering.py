"""Steering (docs/METHODS.md, "Activation steering"): neutral settings, layer alignment, position, extraction, KL,
save/load."""

import pytest
import torch

from thinktune.decoding.steering import (
    Calibration,
    SteeringError,
    SteeringPair,
    SteeringVector,
    calibrate_strength,
    decoder_layers,
    extract_steering_vector,
    last_token_states,
    next_token_kl,
    pair_ids,
    parse_steer_spec,
    read_pairs,
    steered,
    steering_hook,
)

PAIRS = [
    SteeringPair("what is 3 + 4?", "3+4=7", "Let us think step by step. We add three and four, which gives seven."),
    SteeringPair("what is 2 + 5?", "2+5=7", "First, we take two. Then we add five to it. Wait, that is seven."),
    SteeringPair("the train leaves at 5", "5", "However the train leaves at 5, but then it waits a while."),
]


def _ids(tok, text):
    return tok(text, return_tensors="pt", add_special_tokens=False)


def _vector(model, layer=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(model.config.hidden_size, generator=g), layer, {"model": "tiny"})


def test_strength_zero_and_removed_hook_are_bit_identical(tiny):
    model, tok = tiny
    enc = _ids(tok, "Alternatively, we could add the numbers.")
    with torch.no_grad():
        ref = model(**enc).logits
        with steered(model, _vector(model), 0.0):
            zero = model(**enc).logits
        with steered(model, _vector(model), 3.0):
            moved = model(**enc).logits
        after = model(**enc).logits
    assert torch.equal(ref, zero) and torch.equal(ref, after)
    assert not torch.equal(ref[:, -1], moved[:, -1])


def test_hook_point_is_the_block_whose_output_is_hidden_states_L(tiny):
    model, tok = tiny
    enc = _ids(tok, "step one\nstep two")
    n = len(decoder_layers(model))
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    for layer in range(1, n):  # hidden_states[n] has the final norm applied
        got = last_token_states(model, [enc["input_ids"][0].tolist()], layer, tok.pad_token_id)
        assert torch.equal(got[0], hs[layer][0, -1].float())


def test_prefill_shifts_only_the_last_position_by_gamma_v(tiny):
    model, tok = tiny
    v, gamma = _vector(model, layer=2), 0.5
    enc = _ids(tok, "Wait, that is wrong. alternatively subtract them.")
    seen = []
    handle = None
    try:
        with torch.no_grad():
            capture = decoder_layers(model)[1].register_forward_hook(lambda m, i, o: seen.append(o.clone()))
            model(**enc)
            capture.remove()
            handle = steering_hook(model, v, gamma)  # registered first: the capture below sees its output
            capture = decoder_layers(model)[1].register_forward_hook(lambda m, i, o: seen.append(o.clone()))
            model(**enc)
    finally:
        capture.remove()
        if handle:
            handle.remove()
    before, after = seen
    assert torch.equal(before[:, :-1], after[:, :-1])
    torch.testing.assert_close(after[0, -1] - before[0, -1], gamma * v.vector, rtol=0, atol=1e-6)
    cos = torch.nn.functional.cosine_similarity
    assert cos(after[0, -1], v.vector, dim=0) > cos(before[0, -1], v.vector, dim=0)


def test_extraction_is_the_mean_last_token_difference(tiny):
    model, tok = tiny
    got = extract_steering_vector(model, tok, PAIRS, layer=2, batch_size=2)  # padded batches
    diffs = []
    for p in PAIRS:  # one sequence at a time, no padding at all
        c, v = pair_ids(tok, p, None, None)
        diffs.append(last_token_states(model, [c], 2, 0)[0] - last_token_states(model, [v], 2, 0)[0])
    torch.testing.assert_close(got.vector, torch.stack(diffs).mean(0), rtol=1e-5, atol=1e-5)
    assert got.meta["n_pairs"] == 3 and got.layer == 2
    with pytest.raises(SteeringError):
        extract_steering_vector(model, tok, PAIRS, layer=99)


def test_save_load_roundtrip_and_model_check(tiny, tmp_path):
    model, tok = tiny
    v = extract_steering_vector(model, tok, PAIRS, layer=1, meta={"model": "tiny"})
    path = v.save(tmp_path / "c.steer")
    back = SteeringVector.load(path)
    assert torch.equal(back.vector, v.vector) and back.layer == 1
    assert back.meta["model"] == "tiny" and back.meta["n_pairs"] == 3 and "concise - verbose" in back.meta["sign"]
    wrong = SteeringVector(torch.zeros(model.config.hidden_size + 1), 1)
    with pytest.raises(SteeringError, match="hidden size"):
        steering_hook(model, wrong, 1.0)
    (tmp_path / "junk.steer").write_text("not safetensors")
    with pytest.raises(SteeringError, match="not a thinktune steering file"):
        SteeringVector.load(tmp_path / "junk.steer")
    with pytest.raises(SteeringError, match="no such file"):
        SteeringVector.load(tmp_path / "missing.steer")


@pytest.mark.parametrize("spec, expected", [("a.steer:0.5", ("a.steer", 0.5)), ("C:/x/a.steer:-1", ("C:/x/a.steer", -1.0))])
def test_parse_steer_spec(spec, expected):
    assert parse_steer_spec(spec) == expected


@pytest.mark.parametrize("spec", ["a.steer", "a.steer:", ":0.5", "a.steer:x"])
def test_parse_steer_spec_rejects(spec):
    with pytest.raises(SteeringError, match="FILE:STRENGTH"):
        parse_steer_spec(spec)


def test_read_pairs_names_line_and_field(tmp_path):
    from thinktune.data.records import DataError

    f = tmp_path / "p.jsonl"
    f.write_text('{"question": "q", "concise": "c", "verbose": "v"}\n{"question": "q", "concise": ""}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: concise"):
        read_pairs(f)


def test_teacher_forced_kl_matches_generation_time_steering(tiny):
    """Shifting the completion positions of prompt ⊕ completion gives the logits the hook gives while generating."""
    model, tok = tiny
    v, gamma = _vector(model, layer=2, seed=1), 0.8
    prompt = tok.apply_chat_template([{"role": "user", "content": "what is 3 + 4?"}], tokenize=False,
                                     add_generation_prompt=True)
    enc = _ids(tok, prompt)
    with steered(model, v, gamma), torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                             output_logits=True, return_dict_in_generate=True)
    P = enc["input_ids"].shape[1]
    seq = out.sequences[0].tolist()
    gen_logp = torch.log_softmax(torch.stack(out.logits)[:, 0].float(), -1)  # (T, V)
    calib = Calibration([seq], [P])
    kl = next_token_kl(model, v, [0.0, gamma], calib)
    assert kl[0.0] == 0.0 and kl[gamma] > 0
    # the steered teacher-forced distribution equals the generation-time one: KL(gen ‖ tf) ≈ 0
    from thinktune.decoding.steering import _completion_logprobs, _left_pad

    ids, mask, pos = _left_pad([seq], 0)
    gen = torch.zeros_like(mask, dtype=torch.bool)
    gen[0, P - 1 : len(seq) - 1] = True
    with steered(model, v, gamma, mask=gen):
        tf = _completion_logprobs(model, ids, mask, pos, gen)
    torch.testing.assert_close(tf, gen_logp[: len(seq) - P], rtol=1e-4, atol=1e-4)


def test_calibrated_strength_respects_delta(tiny):
    model, tok = tiny
    v = extract_steering_vector(model, tok, PAIRS, layer=2)
    prompts = [tok.apply_chat_template([{"role": "user", "content": p.question}], tokenize=False,
                                       add_generation_prompt=True) for p in PAIRS]
    calib = Calibration.from_texts(tok, prompts, ["3+4=7 and so on", "First we take two", "5"])
    got = calibrate_strength(model, v, calib, delta=0.01)
    assert got["gamma"] > 0 and got["kl"] <= 0.01
    assert next_token_kl(model, v, [got["gamma"]], calib)[got["gamma"]] <= 0.01
    assert got["crossed"]  # the grid went past δ, so γ is the crossing, not just "small"
    above = [float(g) for g, k in got["grid"].items() if k > 0.01]
    assert got["gamma"] < min(above)
