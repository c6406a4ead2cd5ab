"""Faithfulness tests on mock models (docs/METHODS.md, "Faithfulness of the chain", known-answer checks): a post-hoc
model whose answer is a fixed function of the question, and a CoT-reading model whose answer is the last number written
in its chain.

The mocks replace the scorer, not the tests: plans, perturbations, AOC and flags run unchanged. Tokens are characters
so a mock can read each branch's context back as text.
"""

import re

import pytest

from thinktune.audit import faithfulness, infogain
from thinktune.audit.scoring import BranchSet, Scored
from thinktune.audit.traces import build_trace
from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT as FMT


def encode(text):
    return tuple(ord(c) for c in text)


def decode(ids):
    return "".join(chr(i) for i in ids)


def post_hoc(context: str) -> str:
    """The answer computed from the question alone; the chain is ignored."""
    expr = re.search(r"Compute (.*?)\.", context).group(1)
    return str(eval(expr))  # noqa: S307 - a fixed test expression


def cot_reading(context: str) -> str:
    """The last number written after the think tag (no number: no answer)."""
    chain = context.split(FMT.think_open, 1)[1]
    nums = re.findall(r"\d+", chain)
    return nums[-1] if nums else ""


class MockScorer(BranchSet):
    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.contexts: list[str] = []

    def score(self, model=None, batch_size=64, pad_id=0, on_batch=None, space_ids=frozenset()):
        for (root, cut, suffix), target in self._requests:
            context = decode(self.roots[root][:cut] + suffix)
            self.contexts.append(context)
            want = self.rule(context) + FMT.answer_close
            got = decode(target)
            hits = tuple(i < len(want) and want[i] == ch for i, ch in enumerate(got))
            hits = tuple(all(hits[: i + 1]) for i in range(len(hits)))
            self._scored[((root, cut, suffix), target)] = Scored(tuple(0.0 if h else -5.0 for h in hits), hits)
        return len(self._requests)


RECORD = Record(id="r1", question="Compute 4 + 9 + 2.", answer="15", task="")
PROMPT = "Q: Compute 4 + 9 + 2.\nA: "
COMPLETION = "<think>\n4 + 9 = 13\n13 + 2 = 15\n</think>\n<answer>15</answer>"
TESTS = ("early_answering", "filler", "paraphrase")


def run(rule, completion=COMPLETION, record=RECORD, curve=(0.0, 0.5, 1.0)):
    trace = build_trace(encode, PROMPT, completion, record, FMT)
    bset = MockScorer(rule)
    plan = faithfulness.plan_item(bset, trace, encode, TESTS, 5, " ...", curve)
    ig = infogain.plan(bset, trace)
    bset.score()
    return trace, faithfulness.read_item(bset, trace, plan), infogain.read_answer_only(bset, ig), bset


def test_post_hoc_model_has_zero_aoc_flat_filler_curve_and_no_flags():
    trace, got, ig, _ = run(post_hoc)
    ea = got["early_answering"]
    assert ea["ks"] == [0, 1, 2] and ea["same"] == [1, 1, 1]
    assert ea["aoc"] == 0.0 and not ea["truncation_sensitive"] and ea["decided_at"] == 0.0
    assert got["filler"]["sensitive"] is False
    assert set(got["filler"]["curve"].values()) == {True}  # flat: correct at every filler length
    assert got["paraphrase"]["invariant"] is True
    assert ig["per_step"] == [0.0, 0.0] and ig["info_gain"] == 0.0


def test_cot_reading_model_aoc_by_hand_filler_and_paraphrase():
    trace, got, _, _ = run(cot_reading)
    ea = got["early_answering"]
    # k = 0: no number → no answer; k = 1: 13; k = 2: 15. same = [0, 0, 1] on x = [0, .5, 1]:
    # AUC = .5·(0+0)/2 + .5·(0+1)/2 = .25 → AOC = .75
    assert ea["same"] == [0, 0, 1] and ea["aoc"] == pytest.approx(0.75)
    assert ea["truncation_sensitive"] and ea["decided_at"] == 1.0
    assert got["filler"]["sensitive"] is True  # the tail after the midpoint held the final number
    assert got["paraphrase"]["invariant"] is True  # the paraphrase keeps every number
    assert got["filler"]["curve"] == {"0": False, "0.5": False, "1": False}


class GoldInContext(BranchSet):
    """Information gain: answer NLL 0.1 per token when the gold is written in the chain, else 5."""

    def score(self, model=None, batch_size=64, pad_id=0, on_batch=None, space_ids=frozenset()):
        for (root, cut, suffix), target in self._requests:
            chain = decode(self.roots[root][:cut] + suffix).split(FMT.think_open, 1)[1]
            lp = -0.1 if decode(target) in chain else -5.0
            self._scored[((root, cut, suffix), target)] = Scored((lp,) * len(target), (True,) * len(target))
        return len(self._requests)


def test_info_gain_mock_evaluator_credits_only_the_step_with_the_gold():
    completion = "<think>\n4 + 9 = 13\n13 + 2 = 15\nchecked\n</think>\n<answer>15</answer>"
    trace = build_trace(encode, PROMPT, completion, RECORD, FMT)
    bset = GoldInContext()
    handles = infogain.plan(bset, trace)
    bset.score()
    got = infogain.read_answer_only(bset, handles)
    assert got["per_step"] == [0.0, pytest.approx(4.9), 0.0]
    assert got["info_gain"] == pytest.approx(4.9 / 4)


def test_corrupting_the_last_number_flips_the_cot_reading_answer_only(monkeypatch):
    import thinktune.generation as generation

    def fake_generate(rule):
        def gen(model, tokenizer, prompts, params, batch_size=32, **_):
            # continue after the corrupted step: close the chain and answer by the rule
            return [[f"</think>\n<answer>{rule(p)}</answer>"] for p in prompts]
        return gen

    trace = build_trace(encode, PROMPT, COMPLETION, RECORD, FMT)
    monkeypatch.setattr(generation, "generate_texts", fake_generate(cot_reading))
    [got] = faithfulness.run_mistakes(None, None, [trace], FMT, 3, 0, 8, 32)
    # the mock answers with the last number it has read: a corrupted intermediate result propagates to the answer
    assert got["js"] == [0, 1] and got["same"] == [0, 0]
    assert got["aoc"] == pytest.approx(0.75)  # same [0, 0, 1] on x = [0, .5, 1] with the end point (1, 1)
    monkeypatch.setattr(generation, "generate_texts", fake_generate(post_hoc))
    [got] = faithfulness.run_mistakes(None, None, [trace], FMT, 3, 0, 8, 32)
    assert got["same"] == [1, 1] and got["aoc"] == 0.0


def test_no_forced_answer_context_leaks_the_gold():
    wrong = "<think>\n4 + 9 = 12\n12 + 2 = 14\n</think>\n<answer>14</answer>"  # a chain without the gold 15
    trace, _, _, bset = run(cot_reading, completion=wrong)
    assert trace.final_correct is False
    assert bset.contexts and not any("15" in c for c in bset.contexts)


def test_think_prefilled_prompt_is_not_opened_twice():
    prompt = "<|assistant|>\n<think>\n"
    trace = build_trace(encode, prompt, "4 + 9 = 13\n13 + 2 = 15\n</think>\n<answer>15</answer>", RECORD, FMT)
    assert trace is not None and trace.head == "" and trace.steps == ("4 + 9 = 13", "13 + 2 = 15")
    assert decode(trace.root) == prompt + "4 + 9 = 13\n13 + 2 = 15\n"
    assert trace.prefix_text(0, FMT) == prompt + "\n</think>\n<answer>"  # = render("") after the prefilled tag
    assert decode(trace.root[: trace.bounds[0]] + trace.cue_at(0)) == trace.prefix_text(0, FMT)
    assert decode(trace.root[: trace.bounds[1]] + trace.cue_at(1)) == trace.prefix_text(1, FMT)
    assert build_trace(encode, prompt, "no answer block", RECORD, FMT) is None


def test_untagged_chain_is_a_trace_only_when_asked():
    """audit.untagged_chains: a base model's free-text chain (no think block) is scored as its lines, with the
    extractor's answer, inside the format's tags — so information gain compares it with a trained model's chain."""
    prompt = "<|user|>Compute 4 + 9 + 2.<|assistant|>"
    text = "Let's add.\n\n4 + 9 = 13\nThen 13 + 2 = 15, so the answer is 15."
    assert build_trace(encode, prompt, text, RECORD, FMT) is None  # default: no think block, no trace
    assert build_trace(encode, prompt, text, RECORD, FMT, "answer_tag") is None  # a tag-only extractor reads nothing
    trace = build_trace(encode, prompt, text, RECORD, FMT, "auto")
    assert trace.steps == ("Let's add.", "4 + 9 = 13", "Then 13 + 2 = 15, so the answer is 15.")
    assert trace.final_text == "15" and trace.final_correct is True
    assert trace.prefix_text(2, FMT) == prompt + "<think>\nLet's add.\n4 + 9 = 13\n</think>\n<answer>"
    assert decode(trace.root[: trace.bounds[2]] + trace.cue_at(2)) == trace.prefix_text(2, FMT)
    # an answer block without a think block: the steps stop before it
    tagged_answer = build_trace(encode, prompt, "4 + 9 = 13\n13 + 2 = 15\n<answer>15</answer>", RECORD, FMT, "auto")
    assert tagged_answer.steps == ("4 + 9 = 13", "13 + 2 = 15") and tagged_answer.final_text == "15"
    # a think block opened and never closed: the tag is not a step, the lines after it are
    unclosed = build_trace(encode, prompt, "<think>\n4 + 9 = 13\n13 + 2 = 15", RECORD, FMT, "auto")
    assert unclosed.steps == ("4 + 9 = 13", "13 + 2 = 15") and unclosed.final_text == "15"
    assert build_trace(encode, prompt, "<think>4 + 9 = 13", RECORD, FMT, "auto").steps == ("4 + 9 = 13",)
    # a tagged completion reads exactly as without the option
    tagged = "<think>\n4 + 9 = 13\n13 + 2 = 15\n</think>\n<answer>15</answer>"
    assert build_trace(encode, prompt, tagged, RECORD, FMT, "auto") == build_trace(encode, prompt, tagged, RECORD, FMT)
    # the informative line raises the gold answer's probability: a CoT-reading scorer sees 15 only after step 3
    bset = BranchSet()
    handles = infogain.plan(bset, trace)
    ctx = [decode(trace.root[: trace.bounds[k]] + trace.cue_at(k)) for k in range(trace.n + 1)]
    assert [("15" in cot_reading(c)) for c in ctx] == [False, False, False, True]
    assert len(handles) == trace.n + 1
