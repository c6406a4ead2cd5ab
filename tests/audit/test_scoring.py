"""The prefix-tree scorer equals a fresh full forward pass, and its greedy test equals greedy generation."""

import random

import pytest
import torch

from thinktune.audit.scoring import Branch, BranchSet, UnsupportedModel, answer_logprobs, score_branches
from thinktune.config import TinyModelConfig
from thinktune.data.tasks import get_task
from thinktune.models import build_tiny


@pytest.fixture(scope="module")
def qwen():
    recs = get_task("chain_arith").generate(60, 0)
    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=300), [r.question + "\n" + r.reasoning for r in recs], 0)
    return model.eval(), tok, [tok(r.question + "\n" + r.reasoning)["input_ids"] for r in recs[:8]]


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    rng = random.Random(1)
    return LlamaForCausalLM(cfg).eval(), [[rng.randrange(120) for _ in range(rng.randint(5, 30))] for _ in range(6)]


def full_logprobs(model, ids):
    with torch.no_grad():
        lp = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def random_branches(roots, vocab, n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.randrange(len(roots))
        suffix = tuple(rng.randrange(vocab) for _ in range(rng.randint(0, 5)))
        target = tuple(rng.randrange(vocab) for _ in range(rng.randint(1, 4)))
        out.append(Branch(r, rng.randint(1, len(roots[r])), suffix, target))
    return out


def assert_matches_full_forward(model, roots, branches, **kw):
    res = score_branches(model, roots, branches, with_roots=True, **kw)
    for b, s in zip(branches, res.branches):
        ref = full_logprobs(model, list(roots[b.root][: b.cut]) + list(b.suffix) + list(b.target))
        assert s.target_logprobs == pytest.approx(ref[len(ref) - len(b.target):], abs=1e-4)
    for r, lps in enumerate(res.roots):
        assert lps == pytest.approx(full_logprobs(model, list(roots[r])), abs=1e-4)


@pytest.mark.parametrize("batch_size, max_tokens", [(1, 2048), (3, 2048), (64, 64), (64, 100000)])
def test_qwen2_scores_equal_full_forward_for_any_batching(qwen, batch_size, max_tokens):
    model, tok, roots = qwen
    branches = random_branches(roots, len(tok), 30, seed=batch_size)
    assert_matches_full_forward(model, roots, branches, batch_size=batch_size, max_tokens=max_tokens)


def test_llama_gqa_scores_equal_full_forward(llama):
    model, roots = llama
    assert_matches_full_forward(model, roots, random_branches(roots, 120, 25, seed=7), batch_size=4)


def test_suffix_logprobs_shared_nodes_and_branches_along_the_root(qwen):
    model, tok, roots = qwen
    cue, a, b = (5, 6, 7), (8, 9), (10,)
    branches = [Branch(0, 10, cue, a), Branch(0, 10, cue, b),  # share the cue nodes
                Branch(1, 4, tuple(roots[1][4:7]), (11,))]  # a suffix that walks along the root
    res = score_branches(model, roots, branches, with_suffix=True)
    for br, s in zip(branches, res.branches):
        ref = full_logprobs(model, list(roots[br.root][: br.cut]) + list(br.suffix) + list(br.target))
        n = len(br.suffix) + len(br.target)
        assert list(s.suffix_logprobs) + list(s.target_logprobs) == pytest.approx(ref[len(ref) - n:], abs=1e-4)
    # cut 0: the branch starts a sequence of its own (its first token is context only)
    [s] = score_branches(model, roots, [Branch(2, 0, (3, 4), (12,))]).branches
    assert s.target_logprobs == pytest.approx(full_logprobs(model, [3, 4, 12])[-1:], abs=1e-4)


def test_greedy_flag_equals_greedy_generation(qwen):
    model, tok, roots = qwen
    for root in roots[:5]:
        cut = len(root) // 2
        with torch.no_grad():
            gen = model.generate(torch.tensor([root[:cut]]), max_new_tokens=4, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, cut:].tolist()
        other = gen[:-1] + [(gen[-1] + 1) % len(tok)]
        pair = [Branch(0, cut, (), tuple(gen)), Branch(0, cut, (), tuple(other))]
        got, wrong = score_branches(model, [root], pair).branches
        assert got.greedy and not wrong.greedy
        assert got.target_greedy[:-1] == wrong.target_greedy[:-1]


def test_branch_set_merges_prefix_targets_and_text_convenience(qwen):
    model, tok, roots = qwen
    bset = BranchSet()
    r = bset.root(roots[0])
    long_h = bset.add(r, 6, (1, 2), (3, 4, 5))
    short_h = bset.add(r, 6, (1, 2), (3, 4))
    dup_h = bset.add(r, 6, (1, 2), (3, 4, 5))
    assert bset.score(model) == 1  # one row serves all three requests
    assert bset.result(short_h).target_logprobs == bset.result(long_h).target_logprobs[:2]
    assert bset.result(dup_h) == bset.result(long_h)
    ref = score_branches(model, roots, [Branch(0, 6, (1, 2), (3, 4, 5))]).branches[0]
    assert bset.result(long_h).target_logprobs == pytest.approx(ref.target_logprobs)

    prefixes = ["Compute 4 + 9", "Compute 4 + 9 + 2.", "Compute 7"]
    got = answer_logprobs(model, tok, prefixes, [" = 13", " 15", " = 7"])
    for p, a, s in zip(prefixes, [" = 13", " 15", " = 7"], got):
        ids = tok(p, add_special_tokens=False)["input_ids"]
        n = len(tok(a, add_special_tokens=False)["input_ids"])
        ref = full_logprobs(model, ids + tok(a, add_special_tokens=False)["input_ids"])
        assert s.target_logprobs == pytest.approx(ref[-n:], abs=1e-4)


def test_bad_inputs_raise(qwen):
    model, tok, roots = qwen
    with pytest.raises(ValueError, match="empty"):
        score_branches(model, [[]], [])
    with pytest.raises(ValueError, match="out of range"):
        score_branches(model, roots, [Branch(0, 10_000, (), (1,))])
    with pytest.raises(ValueError, match="no context"):
        score_branches(model, roots, [Branch(0, 0, (), (1,))])
    model.config._attn_implementation_internal = "flash_attention_2"
    try:
        with pytest.raises(UnsupportedModel, match="4-D attention mask"):
            score_branches(model, roots, [Branch(0, 3, (), (1,))])
    finally:
        model.config._attn_implementation_internal = "sdpa"


def test_branch_set_tolerates_one_whitespace_token_before_the_close_tag(llama):
    """A model that writes ``2\\n</answer>`` answers "2": greedy g0 g1 g2 g3 with g1 declared whitespace matches the
    target (g0, g2, g3) when space_at=1, and only then."""
    model, roots = llama
    for root in roots:
        with torch.no_grad():
            g = model.generate(torch.tensor([root]), max_new_tokens=4, do_sample=False,
                               pad_token_id=0)[0, len(root):].tolist()
        if g[1] != g[2]:
            break
    else:
        pytest.skip("every greedy continuation repeats its token")
    for space_ids, expected in ((frozenset({g[1]}), True), (frozenset(), False)):
        bset = BranchSet()
        h = bset.add(bset.root(root), len(root), (), (g[0], g[2], g[3]), space_at=1)
        plain = bset.add(bset.root(root), len(root), (), (g[0], g[2], g[3]))
        bset.score(model, space_ids=space_ids)
        assert bset.result(h).greedy is expected
        assert bset.result(plain).greedy is False  # no tolerance asked for
