"""Built-in rewards: hand-computed values and adversarial tables (docs/METHODS.md, "Rule-based rewards")."""

from __future__ import annotations

import math

import pytest

from thinktune.data.records import Record
from thinktune.formatting import CompletionFormat, render
from thinktune.rewards.library import (
    REWARDS,
    RewardError,
    abstain,
    as_trl,
    call_kwargs,
    correct,
    cosine_length,
    language,
    language_share,
    overlong,
    records_from_columns,
    repetition,
    resolve,
    strict_format,
    tag_count,
)

REC = Record(id="r", question="What is 2 + 3?", answer="5")


def test_registry_names():
    assert set(REWARDS) == {"correct", "format", "tag_count", "cosine_length", "overlong", "repetition", "language",
                            "abstain", "reward_model"}  # reward_model: a learned reward (rewards/learned.py)
    for fn in REWARDS.values():
        assert fn.__doc__ and hasattr(fn, "guards")


@pytest.mark.parametrize("text, expected", [  # format reward: known-answer table
    ("<think>a</think>\n<answer>5</answer>", 1.0),
    ("<think>a\n<answer>5</answer>", 0.0),  # closing </think> missing
    ("<think>a</think><think>b</think><answer>5</answer>", 0.0),  # two think blocks
    ("<think>a</think><answer>5</answer><answer>5</answer>", 0.0),  # two answer blocks
    ("<think></think>\n<answer>5</answer>", 0.0),  # empty think block
    ("<think>a</think>\n<answer></answer>", 0.0),  # empty answer
    ("<think>a</think>\n<answer>5</answer> and more", 0.0),  # text after
    ("Sure! <think>a</think>\n<answer>5</answer>", 0.0),  # text before
])
def test_format_table(text, expected):
    assert strict_format(text, REC) == expected


def test_format_with_a_prefilled_think_tag():  # huggingface/trl#6966
    assert strict_format("a</think>\n<answer>5</answer>", REC, think_prefilled=True) == 1.0
    assert strict_format("a</think>\n<answer>5</answer>", REC) == 0.0


def test_format_minimum_reasoning():
    assert strict_format(render("ok", "5"), REC, min_reasoning_chars=10) == 0.0
    assert strict_format(render("long enough reasoning", "5"), REC, min_reasoning_chars=10) == 1.0


def test_custom_tags():
    fmt = CompletionFormat("<reasoning>", "</reasoning>", "<final>", "</final>")
    text = render("a", "5", fmt)
    assert strict_format(text, REC, fmt) == 1.0 and correct(text, REC, fmt) == 1.0
    assert correct(render("a", "5"), REC, fmt) == 0.0


@pytest.mark.parametrize("text, expected", [
    (render("2 + 3 = 5", "5"), 1.0),
    (render("2 + 3 = 5", "6"), 0.0),
    (render("2 + 3 = 5", "5 or 6"), 0.0),
    ("<answer>5</answer>", 0.0),  # right answer, no reasoning: require_format
    (render("x", "5") + " extra", 0.0),
])
def test_correct_table(text, expected):
    assert correct(text, REC) == expected


def test_correct_without_the_format_gate_and_other_extractors():
    assert correct("<answer>5</answer>", REC, require_format=False) == 1.0
    assert correct("so 2 + 3 = \\boxed{5}", REC, extractor="boxed") == 1.0
    assert correct("2 + 3 = 5\n#### 5", REC, extractor="gsm8k") == 1.0


def test_correct_is_none_for_unusable_gold_and_unanswerable_items():
    assert correct(render("x", "5"), Record(id="a", question="q", answer=" ")) is None
    assert correct(render("x", "I don't know"), Record(id="a", question="q", answer="I don't know",
                                                       answerable=False)) is None


@pytest.mark.parametrize("text, expected", [
    (render("a", "5"), 1.0),
    ("<think>a</think><think>b</think><answer>5</answer>", 0.5),  # <think> and </think> twice
    ("<answer>5</answer>", 0.5),
    ("<think>a<answer>5</answer>", 0.75),
    ("", 0.0),
])
def test_tag_count(text, expected):
    assert tag_count(text, REC) == expected


def test_cosine_length_hand_computed():
    # reasoning of length L/2: cos(pi/2) = 0 → the midpoint of the two values
    text_ok = render("x" * 50, "5")
    text_bad = render("x" * 50, "6")
    assert cosine_length(text_ok, REC, max_len=100) == pytest.approx(0.75)
    assert cosine_length(text_bad, REC, max_len=100) == pytest.approx(-0.75)
    # length 0 is impossible for a well-formed completion; length 1 ≈ the start values
    assert cosine_length(render("x", "5"), REC, max_len=10_000) == pytest.approx(1.0, abs=1e-6)
    assert cosine_length(render("x", "6"), REC, max_len=10_000) == pytest.approx(-1.0, abs=1e-6)
    # past max_len: the exceed penalty
    assert cosine_length(render("x" * 101, "5"), REC, max_len=100) == -1.0
    assert cosine_length(render("x" * 101, "5"), REC, max_len=100, exceed_penalty=-2.0) == -2.0
    # malformed: the floor, whatever the length
    assert cosine_length("<answer>5</answer>", REC, max_len=100) == -1.0


def test_cosine_length_is_monotone_in_length():
    lengths = [1, 10, 100, 500, 999]
    right = [cosine_length(render("x" * n, "5"), REC, max_len=1000) for n in lengths]
    wrong = [cosine_length(render("x" * n, "6"), REC, max_len=1000) for n in lengths]
    assert right == sorted(right, reverse=True) and min(right) > max(wrong)
    assert wrong == sorted(wrong)


@pytest.mark.parametrize("n, expected", [(50, 0.0), (60, 0.0), (70, -0.25), (100, -1.0), (101, -1.0)])
def test_overlong_hand_computed(n, expected):  # DAPO eq. 13 with L_max = 100, L_cache = 40
    assert overlong("a" * n, REC, max_len=100, cache_len=40) == pytest.approx(expected)


def test_repetition_hand_computed():
    # 6 words, 3-grams: (a b c) (b c a) (c a b) (a b c) → 3 unique of 4 → -(1 - 3/4)
    assert repetition(render("a b c a b c", "5"), REC) == pytest.approx(-0.25)
    assert repetition(render("one two three four", "5"), REC) == 0.0
    assert repetition(render("too short", "5"), REC) == 0.0
    assert repetition("<answer>5</answer>", REC) == -1.0  # no reasoning: the floor, never the best score
    assert repetition(render("a b c a b c", "5"), REC, max_penalty=-0.5) == pytest.approx(-0.125)


@pytest.mark.parametrize("text, expected", [  # language reward: known-answer table
    ("We add the numbers and check the result", 1.0),
    ("We add 我 and", 0.75),  # 3 of 4 counted words are English
    ("", None),
    ("2 + 3 = 5", None),  # numbers are not words
    ("$\\frac{a}{b}$ \\sqrt{x} then", 1.0),  # LaTeX is not counted
    ("我们计算", 0.0),
])
def test_language_share(text, expected):
    assert language_share(text, "en") == (pytest.approx(expected) if expected is not None else None)


def test_language_share_for_chinese_and_the_reward():
    assert language_share("我们计算 the", "zh") == pytest.approx(4 / 5)
    assert language(render("We add them", "5"), REC) == 1.0
    assert language("<answer>5</answer>", REC) == 0.0
    with pytest.raises(ValueError, match="unsupported language"):
        language_share("x", "klingon")


def test_abstain():
    unanswerable = Record(id="u", question="How many?", answer="I don't know", answerable=False)
    assert abstain(render("x", "I don't know"), unanswerable) == 1.0
    assert abstain(render("x", "5"), unanswerable) == 0.0
    assert abstain(render("x", "I don't know"), REC) == -0.5
    assert abstain(render("x", "5"), REC) == 0.0
    assert abstain(render("x", "Cannot be determined"), REC, penalty=1.0) == -1.0


def test_settings_are_validated_with_a_suggestion():
    assert call_kwargs("overlong", overlong, {"max_len": 10, "cache_len": 5}, CompletionFormat())["max_len"] == 10
    with pytest.raises(RewardError, match="no setting 'maxlen'.*did you mean 'max_len'"):
        call_kwargs("overlong", overlong, {"maxlen": 10}, CompletionFormat())


def test_resolve_custom_and_unknown():
    assert resolve("tests.helpers.faulty_rewards:pid").__name__ == "pid"
    with pytest.raises(KeyError, match="did you mean 'format'"):
        resolve("formatt")


def test_as_trl_with_an_answer_column():
    fn = as_trl("correct")
    assert fn.__name__ == "correct"
    out = fn(prompts=["p1", "p2"], completions=[render("a", "5"), render("a", "4")], answer=["5", "5"])
    assert out == [1.0, 0.0]
    conversational = [[{"role": "assistant", "content": render("a", "5")}]]
    assert fn(prompts=["p"], completions=conversational, answer=["5"]) == [1.0]


def test_records_from_solution_columns():
    recs = records_from_columns(2, ["q1", "q2"], {"solution": ["so \\boxed{7}", "x\n#### 1,000"]})
    assert [r.answer for r in recs] == ["7", "1,000"]
    with pytest.raises(RewardError, match="'record' column"):
        records_from_columns(1, ["q"], {})


def test_every_builtin_returns_finite_or_none_on_junk():
    junk = ["", "<think>", "</answer><answer>", "\\boxed{", "<answer>\\frac{</answer>", "x" * 5000, "😀 <think>😀</think>"]
    for name, fn in REWARDS.items():
        if name == "reward_model":  # a learned reward needs a trained model (tests/stages/test_reward_model.py)
            continue
        for text in junk:
            v = fn(text, REC)
            assert v is None or math.isfinite(v), (name, text)
