"""TIP (docs/METHODS.md, "Underthinking and TIP"): exact logits on a tiny model, the window, the reset, batching,
α = 0."""

import pytest
import torch

from thinktune.decoding.tip import ThoughtSwitchPenalty, TipConfig, spellings, switch_token_ids
from thinktune.generation import SamplingParams, generate_texts

V = 10
SWITCH = 7


def _drive(proc, rows: list[list[int]], prompt_len: int = 3, logit: float = 5.0):
    """Feed ``rows`` (generated tokens per row) step by step; returns the processed switch logit per step, (T, B)."""
    B, T = len(rows), len(rows[0])
    ids = torch.ones((B, prompt_len), dtype=torch.long)
    seen = []
    for t in range(T + 1):
        scores = torch.zeros((B, V))
        scores[:, SWITCH] = logit
        out = proc(ids, scores)
        other = torch.cat([out[:, :SWITCH], out[:, SWITCH + 1 :]], dim=1)
        assert (other == 0).all(), "only switch tokens are ever penalised"
        seen.append(out[:, SWITCH].tolist())
        if t < T:
            ids = torch.cat([ids, torch.tensor([[r[t]] for r in rows])], dim=1)
    return seen


def test_window_closes_at_beta():
    """Known answer (derived): logit 5.0, α = 3, β = 600 → 2.0 at t = Ψ + 599 and 5.0 at t = Ψ + 600."""
    proc = ThoughtSwitchPenalty([SWITCH], alpha=3.0, beta=600)
    seen = _drive(proc, [[1] * 601])
    assert seen[0] == [2.0] and seen[599] == [2.0] and seen[600] == [5.0]


def test_switch_reopens_window_and_rows_are_independent():
    """A switch emitted at t = 1000 reopens the window until t = 1600; the other row keeps its own Ψ."""
    row0 = [1] * 1700
    row0[1000] = SWITCH
    row1 = [1] * 1700
    proc = ThoughtSwitchPenalty([SWITCH], alpha=3.0, beta=600)
    seen = _drive(proc, [row0, row1])
    assert seen[599] == [2.0, 2.0] and seen[600] == [5.0, 5.0] and seen[1000] == [5.0, 5.0]
    assert seen[1001] == [2.0, 5.0] and seen[1599] == [2.0, 5.0] and seen[1600] == [5.0, 5.0]


def test_new_generate_call_resets_the_window():
    proc = ThoughtSwitchPenalty([SWITCH], alpha=1.0, beta=2)
    assert [s[0] for s in _drive(proc, [[1, 1, 1]])] == [4.0, 4.0, 5.0, 5.0]
    assert [s[0] for s in _drive(proc, [[1, 1, 1]], prompt_len=6)] == [4.0, 4.0, 5.0, 5.0]  # not a continuation


def test_spellings_and_token_ids(tiny, caplog):
    _, tok = tiny
    assert spellings("alternatively") == ["Alternatively", " Alternatively", "alternatively", " alternatively"]
    got = switch_token_ids(tok, ["alternatively", "Wait"])
    texts = {tok.decode([i]) for i in got.ids}
    assert texts == {"Altern", " altern", "Wait"}  # the bare " " of " Alternatively" / " Wait" is never penalised
    assert ("alternatively", "a") in got.skipped  # a one-character first sub-token is left out
    assert any(form == "Alternatively" for form, _ in got.ambiguous)
    assert "other words share" in caplog.text
    with pytest.raises(ValueError):
        switch_token_ids(tok, ["  "])


def _reference_window(seqs: torch.Tensor, prompt_len: int, ids: set[int], beta: int):
    """From the definition: is the window open at step t for row b, given the generated sequences?"""
    B, total = seqs.shape
    T = total - prompt_len
    out = []
    for t in range(T):
        rows = []
        for b in range(B):
            gen = seqs[b, prompt_len : prompt_len + t].tolist()
            psi = max([i for i, x in enumerate(gen) if x in ids], default=0)
            rows.append(t < psi + beta)
        out.append(rows)
    return out  # (T, B) bool: window open


def test_exact_logits_on_tiny_model(tiny):
    """scores = logits − α on switch ids inside the window, == logits everywhere else (bit-exact).

    Sampling (no warpers) from the untrained model makes the switch tokens appear now and then, so the test sees
    open windows, closed windows and resets; the check is on the logits, which do not depend on the sampling.
    """
    model, tok = tiny
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in ("what is 3 + 4?", "Wait, the train leaves")]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    switch = [i for i in range(100, 140) if i != tok.eos_token_id]
    alpha, beta = 0.75, 4
    proc = ThoughtSwitchPenalty(switch, alpha=alpha, beta=beta)
    torch.manual_seed(0)
    out = model.generate(**enc, max_new_tokens=60, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                         pad_token_id=tok.pad_token_id, logits_processor=[proc], output_scores=True,
                         output_logits=True, return_dict_in_generate=True)
    P = enc["input_ids"].shape[1]
    window = _reference_window(out.sequences, P, set(switch), beta)
    inside = outside = 0
    for t, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        for b in range(scores.shape[0]):
            expected = logits[b].clone()
            if window[t][b]:
                expected[switch] = expected[switch] - alpha
                inside += 1
            else:
                outside += 1
            assert torch.equal(scores[b], expected), (t, b)
    resets = sum(int(x) in switch for x in out.sequences[:, P:-1].flatten())
    assert inside and outside and resets, "the test must see both window states and an emitted switch token"


def test_alpha_zero_is_neutral_and_processor_is_reusable_across_batches(tiny):
    model, tok = tiny
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in ("what is 3 + 4?", "Wait, the train", "step one", "Alternatively, we could")]
    params = SamplingParams(max_new_tokens=24, stop=())
    plain = generate_texts(model, tok, prompts, params, batch_size=2)
    ids = switch_token_ids(tok, ["alternatively", "Wait"]).ids
    assert generate_texts(model, tok, prompts, params, batch_size=2,
                          logits_processors=[ThoughtSwitchPenalty(ids, alpha=0.0)]) == plain
    shared = ThoughtSwitchPenalty(ids, alpha=50.0, beta=8)  # one instance across four generate calls
    once = generate_texts(model, tok, prompts, params, batch_size=1, logits_processors=[shared])
    fresh = [generate_texts(model, tok, [p], params, logits_processors=[ThoughtSwitchPenalty(ids, 50.0, 8)])[0]
             for p in prompts]
    assert once == fresh


def test_config_defaults():
    cfg = TipConfig()
    assert (cfg.words, cfg.alpha, cfg.beta) == (["alternatively"], 3.0, 600)
    with pytest.raises(ValueError):
        TipConfig(alpha=-1)
