"""Rewards against pathological completions (issue 20): the parser is linear and exact, huge numbers score 0,
and every built-in reward stays fast on benchmarks/bench_reward_worst_case.py's inputs (smaller sizes here)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.benchmarks import load_benchmark
from thinktune.data.answers import extract_answer, grade
from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, Parsed, parse_completion, split_steps
from thinktune.rewards.library import correct, strict_format

bench = load_benchmark("bench_reward_worst_case")
RECORD = Record(id="r", question="What is 12 + 6?", answer="18")


def reference_parse(text: str, fmt=DEFAULT_FORMAT) -> Parsed:
    """The regex parser this replaced (quadratic in unclosed tags), kept as the reference for its results."""
    def blocks(o, c):
        return list(re.compile(re.escape(o) + r"(.*?)" + re.escape(c), re.DOTALL).finditer(text))
    thinks, answers = blocks(fmt.think_open, fmt.think_close), blocks(fmt.answer_open, fmt.answer_close)
    reasoning = thinks[0].group(1).strip() if thinks else None
    answer = answers[0].group(1).strip() if len(answers) == 1 else None
    trailing = text[max([m.end() for m in thinks + answers], default=0):].strip()
    well = False
    if len(thinks) == 1 and len(answers) == 1 and reasoning:
        t, a = thinks[0], answers[0]
        n_tags = sum(text.count(x) for x in (fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close))
        well = (t.end() <= a.start() and not text[: t.start()].strip() and not text[t.end() : a.start()].strip()
                and not trailing and n_tags == 4 and bool(answer))
    return Parsed(reasoning, split_steps(reasoning or ""), answer, well, len(thinks), len(answers), trailing)


tag_soup = st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "<", ">", "/", "x", " ", "\n",
                                     "18", "<thi", "nk>", "<answer"]), max_size=24).map("".join)


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(tag_soup)
def test_the_linear_parser_gives_the_regex_parsers_results(text):
    assert parse_completion(text) == reference_parse(text)
    assert parse_completion(text, think_prefilled=True) == reference_parse(
        text if text.lstrip().startswith("<think>") else "<think>" + text)


def test_200k_unclosed_answer_tags_score_fast():
    """5 of 7 rewards timed out on this (53 s per item; the parser was quadratic: 128 KB took 12.7 s)."""
    text = "<answer>" * 200_000
    for fn in (correct, strict_format):
        t0 = time.process_time()
        assert fn(text, RECORD) == 0.0
        assert time.process_time() - t0 < 5.0  # CPU seconds; the benchmark measures ≤ 1 s, this leaves slack


@pytest.mark.parametrize("answer", ["9" * 5000, "-" + "1" * 6000, "1" * 4301 + "/7", "1," + "000," * 2000 + "000"])
def test_a_5000_digit_answer_scores_zero_not_an_error(answer):
    """An error instead of 0: in GRPO, errors above 10 % of a batch stop training."""
    completion = f"<think>\nbig\n</think>\n<answer>{answer}</answer>"
    assert correct(completion, RECORD) == 0.0
    assert grade(RECORD, answer) is False
    assert correct(completion, RECORD, extractor="last_number") == 0.0


def test_huge_integers_still_compare_exactly():
    big = "7" * 5000
    assert grade(Record(id="b", question="?", answer=big), big) is True
    assert grade(Record(id="b", question="?", answer=big), "0" + big) is True
    assert grade(Record(id="b", question="?", answer=big), big[:-1] + "8") is False


@pytest.mark.parametrize("text, extractor, expected", [
    ("#### 42  \n", "gsm8k", "42"), ("#### 1\nlater\n#### 7 .", "gsm8k", "7"), ("Answer:  5 \n", "a_colon", "5"),
    ("  A: x\nAnswer: (B)", "choice", "B"), ("the answer is   (C) ok", "choice", "C"),
    ("\\boxed{\\boxed{5}}", "boxed", "\\boxed{5}"), ("\\boxed{1} and \\boxed 2", "boxed", "1, 2"),
    ("1 or 2", "auto", "2"),
])
def test_the_rewritten_extractors_keep_their_answers(text, extractor, expected):
    assert extract_answer(text, extractor=extractor) == expected


def test_every_reward_is_linear_on_the_benchmark_inputs():
    """The benchmark's matrix at 10k and 40k characters: no reward grows faster than ~linearly on any input
    (a quadratic one grows 16x, a linear one 4x; small times are below the clock's noise and skipped)."""
    small = bench.measure_inline(10_000, repeats=2)
    large = bench.measure_inline(40_000, repeats=2)
    slow = [(label, name, small[label][name], t) for label, row in large.items() for name, t in row.items()
            if t > 0.02 and t > 8 * max(small[label][name], 0.0025)]
    assert not slow, slow
    worst = max(t for row in large.values() for t in row.values())
    assert worst < 2.0, worst
