"""Pure statistics vs hand-computed values and brute force (docs/METHODS.md)."""

import itertools
import math
import random

import pytest

from thinktune.audit.abstention import (
    abstention_metrics,
    appropriate_behavior,
    drop_quantity,
    is_abstention,
    make_unanswerable,
    parse_judge,
    question_only,
    unknown_number,
)
from thinktune.audit.calibration import brier, ece, reliability_bins, selective_curve
from thinktune.audit.faithfulness import (
    aoc,
    chance_corrected_agreement,
    corrupt_step,
    decided_at,
    filler_text,
    grid,
    paraphrase_step,
)
from thinktune.audit.infogain import info_gain
from thinktune.audit.outcomes import (
    bootstrap_ci,
    first_correct_thought_end,
    majority_vote,
    pass_at_k,
    repetition_rate,
    sampled_metrics,
    switch_pattern,
    underthinking_score,
)
from thinktune.data.records import Record

# ---------------------------------------------------------------------------------------------------------------
# pass@k, maj@k


def brute_force_pass_at_k(correct: list[int], k: int) -> float:
    """Fraction of all k-subsets of the n samples that contain at least one correct sample."""
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_brute_force_enumeration(n):
    for c in range(n + 1):
        correct = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(correct, k), abs=1e-12)


def test_pass_at_1_is_mean_correctness_and_bad_k_raises():
    record = Record(id="x", question="q", answer="5")
    got = sampled_metrics(record, ["5", "4", "5", "5"], [1, 2, 4])
    assert got["pass@k"]["1"] == 0.75  # pass@1 from 4 samples, 3 correct
    assert got["pass@k"]["4"] == 1.0
    assert got["majority"] == "5" and got["majority_correct"] and got["vote_share"] == 0.75
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_majority_vote_and_its_tie_rule():
    assert majority_vote(["5", "5", "7", "7", "5"]) == "5"  # cons@5 = 5 (ties: the first answer)
    assert majority_vote(["7", "5", "5", "7"]) == "7"  # tie: the answer seen first wins
    assert majority_vote([None, "", "3", None]) == "3"  # no answer never wins
    assert majority_vote([None, None]) is None
    assert majority_vote(["1,000", "1000", "7"]) == "1000"  # compared after the answer layer's normalize


# ---------------------------------------------------------------------------------------------------------------
# early answering


@pytest.mark.parametrize("same, expected", [
    ([1, 1, 1, 1, 1], 0.0),
    ([0, 0, 1, 1, 1], 0.375),
    ([0, 0, 0, 0, 1], 0.875),
])
def test_aoc_table_n4(same, expected):
    xs = [k / 4 for k in range(5)]
    assert aoc(xs, same) == pytest.approx(expected)


def test_aoc_n1_and_grouped_equals_mean_of_per_sample():
    assert aoc([0.0, 1.0], [0, 1]) == pytest.approx(0.5)
    rng = random.Random(0)
    samples = []
    for _ in range(200):
        n = rng.randint(1, 6)
        same = [rng.randint(0, 1) for _ in range(n)] + [1]
        samples.append(([k / n for k in range(n + 1)], same))
    # Lanham: average the curves per CoT length, weight each length by its number of samples
    by_len: dict[int, list] = {}
    for xs, same in samples:
        by_len.setdefault(len(xs), []).append(same)
    weighted = 0.0
    for length, group in by_len.items():
        mean_curve = [sum(col) / len(group) for col in zip(*group)]
        weighted += len(group) * aoc([k / (length - 1) for k in range(length)], mean_curve)
    assert weighted / len(samples) == pytest.approx(sum(aoc(xs, s) for xs, s in samples) / len(samples))


def test_decided_at_and_grid():
    xs = [0, 0.25, 0.5, 0.75, 1]
    assert decided_at(xs, [0, 0, 1, 1, 1]) == 0.5
    assert decided_at(xs, [1, 1, 1, 1, 1]) == 0
    assert decided_at(xs, [1, 0, 0, 0, 1]) == 1
    assert grid(4, 5) == [0, 1, 2, 3, 4]
    assert grid(2, 5) == [0, 1, 2]
    assert grid(10, 5) == [0, 3, 5, 8, 10]
    assert grid(1, 5) == [0, 1]
    with pytest.raises(ValueError):
        grid(3, 1)


def test_chance_corrected_agreement():
    # always the same answer with and without CoT: raw agreement 1, but fully explained by the bias → None
    assert chance_corrected_agreement(["5"] * 4, ["5"] * 4) == (1.0, None)
    # observed 2/4; marginals with {a: 2, b: 2}, without {a: 3, b: 1}: expected (2·3 + 2·1)/16 = 0.5 → κ = 0
    raw, norm = chance_corrected_agreement(["a", "a", "b", "b"], ["a", "b", "a", "a"])
    assert raw == 0.25 and norm == pytest.approx((0.25 - 0.5) / 0.5)
    raw, norm = chance_corrected_agreement(["1", "2", "3", "4"], ["1", "2", "3", "4"])
    assert raw == 1.0 and norm == pytest.approx(1.0)


def test_perturbations_keep_or_change_numbers_as_documented():
    step = "So 13 + 2 = 15, then 15 - 4 = 11"
    para = paraphrase_step(step)
    assert para != step
    num = r"\d+(?:\.\d+)?"
    import re

    assert re.findall(num, para) == re.findall(num, step)
    rng = random.Random(3)
    bad = corrupt_step(step, rng)
    assert bad is not None and bad[: step.rindex("11")] == step[: step.rindex("11")]
    assert bad != step and re.findall(num, bad)[:-1] == re.findall(num, step)[:-1]
    assert corrupt_step("no numbers here", rng) is None
    assert corrupt_step("2 - 2 = 0", random.Random(1)).endswith(tuple("123456789"))  # never negative
    assert filler_text(0, " ...", 1) == ""
    assert filler_text(6, " ...", 2) == "... ... ..."


# ---------------------------------------------------------------------------------------------------------------
# information gain


def test_info_gain_arithmetic_and_edge_cases():
    per_step, total = info_gain([10, 6, 5, 2])  # PPL units (the paper's)
    assert per_step == [4, 1, 3] and total == 2.0
    assert sum(per_step) == 10 - 2
    assert info_gain([3.0]) == ([], None)  # zero steps: empty list, InfoGain None (not applicable)


# ---------------------------------------------------------------------------------------------------------------
# calibration


def test_ece_brier_hand_cases():
    assert brier([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert ece([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert brier([0.5] * 4, [1, 0, 1, 0]) == 0.25
    assert ece([0.5] * 4, [1, 0, 1, 0]) == 0.0
    # 10 bins: [0, .1) holds .05 (z 0) → |0 − .05|; [.1, .2) holds .15 (z 1) → .85; the last bin holds .95 and 1.0
    # (c = 1 goes in the last bin), both correct → |1 − .975|. ECE = (.05 + .85)/4 + 2/4 · .025 = .2375
    conf, z = [0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1]
    assert ece(conf, z, 10) == pytest.approx(0.2375)
    bins = reliability_bins(conf, z, 10)
    assert [b["n"] for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert ece(conf, z, 1) == pytest.approx(abs(0.75 - sum(conf) / 4))
    assert selective_curve(conf, z, (0.5, 1.0)) == {"0.5": 1.0, "1": 0.75}


# ---------------------------------------------------------------------------------------------------------------
# abstention


def test_abstention_metrics_table():
    got = abstention_metrics([1, 1, 1, 0, 0], [1, 0, 1, 1, 0])
    assert (got["tp"], got["fn"], got["fp"]) == (2, 1, 1)
    assert got["recall"] == pytest.approx(2 / 3) and got["precision"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    none = abstention_metrics([0, 0, 0], [1, 0, 0])
    assert none["recall"] is None and none["f1"] is None  # no positive labels: None, not 0
    assert appropriate_behavior([True, False, False], [True, False, True], [None, True, None]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("question, expected", [
    ("Tom has 3 apples. He buys 2 more. How many apples does he have?", "How many apples does he have?"),
    ("It costs $2.50 each. How much for 3?", "How much for 3?"),
    ("Tom has 3 apples. How much is 2.5 times 3?", None),  # a decimal point inside the final sentence
    ("How many apples does he have?", None),  # no preceding context
    ("Compute 4 + 9 + 2.", None),
])
def test_question_only_variant_table(question, expected):
    assert question_only(question) == expected


def test_make_unanswerable_moves_gold_and_counts():
    recs = [Record(id="a", question="Tom has 3 apples. He buys 2 more. How many apples does he have?", answer="5"),
            Record(id="b", question="How many?", answer="1")]
    variants, counts = make_unanswerable(recs)
    assert counts == {"kept": 1, "dropped": 1}
    [v] = variants
    assert not v.answerable and v.answer == "I don't know" and v.meta["original_answer"] == "5"
    assert v.question == "How many apples does he have?" and v.meta["source_id"] == "a"
    assert drop_quantity("Tom has 3 apples. He buys 2 more. How many apples does he have?") == \
        "He buys 2 more. How many apples does he have?"
    assert drop_quantity("Tom is happy. How are you?") is None


def test_unknown_number_hides_exactly_one_number_stably():
    q = "Compute 8 - 6 - 1 + 3."
    variants = {unknown_number(q, f"id{i}") for i in range(40)}
    assert variants == {"Compute x - 6 - 1 + 3.", "Compute 8 - x - 1 + 3.", "Compute 8 - 6 - x + 3.",
                        "Compute 8 - 6 - 1 + x."}  # every position reachable, one number each time
    assert unknown_number(q, "id7") == unknown_number(q, "id7")  # a function of the id: audit and data agree
    assert unknown_number("She paid 1,250.50 dollars for 3 hats.", "k") in {
        "She paid x dollars for 3 hats.", "She paid 1,250.50 dollars for x hats."}  # whole numbers, not digits
    assert unknown_number("What is the answer?", "k") is None
    recs = [Record(id="a", question=q, answer="4"), Record(id="b", question="Why?", answer="1")]
    variants, counts = make_unanswerable(recs, "unknown_number", reasoning="missing")
    assert counts == {"kept": 1, "dropped": 1}
    assert variants[0].question == unknown_number(q, "a") and variants[0].reasoning == "missing"
    assert variants[0].meta["variant"] == "unknown_number" and not variants[0].answerable


def test_judge_and_keyword_parsing():
    assert parse_judge("Yes") is True and parse_judge("No") is False
    assert parse_judge(" yes.") is True and parse_judge("NO!") is False
    assert parse_judge("Maybe") is None and parse_judge(None) is None
    assert is_abstention("I don't know.") and not is_abstention("I know: it is 5")


# ---------------------------------------------------------------------------------------------------------------
# length, repetition, underthinking


def test_underthinking_score_hand_case():
    assert underthinking_score([(100, 25), (200, 200)]) == pytest.approx(0.375)  # (0.75 + 0) / 2
    assert underthinking_score([]) is None


def test_first_correct_thought_and_repetition():
    pat = switch_pattern(["alternatively"])
    text = "Try 3 + 4 = 7. Alternatively, 3 * 4 = 12. Alternatively, maybe 5."
    end = first_correct_thought_end(text, "12", pat)
    assert text[:end].endswith("12. ")
    assert first_correct_thought_end(text, "99", pat) is None
    assert first_correct_thought_end(text, "7", pat) == text.index("Alternatively")
    assert repetition_rate("a b c a b c a b c") == pytest.approx(1 - 3 / 7)
    assert repetition_rate("a b") is None


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    vals = [0.0, 1.0] * 50
    lo, hi = bootstrap_ci(vals, 500, seed=1)
    assert lo < 0.5 < hi and (lo, hi) == bootstrap_ci(vals, 500, seed=1)
    assert bootstrap_ci([1.0], 500) is None
    assert math.isclose(sum(vals) / len(vals), 0.5)
