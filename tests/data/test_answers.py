"""The answer layer: extraction and equivalence tables (docs/METHODS.md, "Grading answers")."""

from __future__ import annotations

import pytest

from thinktune.data.answers import (
    boxed_contents,
    extract_answer,
    grade,
    is_abstention,
    split_candidates,
)
from thinktune.data.records import Record


def rec(answer: str, task: str = "", answerable: bool = True, **meta) -> Record:
    return Record(id="x", question="q?", answer=answer, task=task, answerable=answerable, meta=meta)


@pytest.mark.parametrize("text, extractor, expected", [
    ("<think>\na\n</think>\n<answer>5</answer>", "answer_tag", "5"),
    ("<think>a</think><answer>\\boxed{1,000}</answer>", "answer_tag", "1,000"),
    ("<think>a</think><answer>1</answer><answer>2</answer>", "answer_tag", None),  # several blocks: none
    ("<think>a</think><answer></answer>", "answer_tag", None),
    ("so \\boxed{3} then \\boxed{ 7 }", "boxed", "3, 7"),  # different boxed answers are all returned
    ("\\boxed{4} and again \\boxed{4}", "boxed", "4"),
    ("cell \\boxed{\\phantom{2}} ... \\boxed{4}", "boxed", "4"),  # empty / phantom boxes are not answers
    ("\\boxed{\\frac{1}{2}}", "boxed", "\\frac{1}{2}"),
    ("\\boxed 5", "boxed", "5"),
    ("no box here 12", "boxed", None),
    ("She pays 3 * 6 = <<3*6=18>>18.\n#### 1,800", "gsm8k", "1,800"),
    ("Q: ...\nA: 42", "a_colon", "42"),
    ("the total is 1,234.5 dollars, not 7", "last_number", "7"),
    ("it costs -3/4 of that", "last_number", "-3/4"),
    ("The answer is (C).", "choice", "C"),
    ("Answer: B", "choice", "B"),
    ("\\boxed{D}", "choice", "D"),
    ("blah\n(A)", "choice", "A"),
    ("blah\nA, B", "choice", "A, B"),
    ("<think>x</think><answer>7</answer>", "auto", "7"),
    ("so \\boxed{9}", "auto", "9"),
    ("so\n#### 12", "auto", "12"),
    ("so 3 then 4", "auto", "4"),
])
def test_extractors(text, extractor, expected):
    assert extract_answer(text, extractor=extractor) == expected


def test_unknown_extractor_is_an_error():
    with pytest.raises(ValueError, match="unknown extractor"):
        extract_answer("x", extractor="regex")


@pytest.mark.parametrize("text, expected", [
    ("18 or 17", ["18", "17"]),
    ("17, 18", ["17", "18"]),
    ("either 3 or 4", ["3", "4"]),
    ("x = 2 \\text{ or } x = 3", ["x = 2", "x = 3"]),
    ("1,000", ["1,000"]),
    ("10{,}000", ["10{,}000"]),
    ("900,\\!000", ["900,\\!000"]),
    ("(1, 2)", ["(1, 2)"]),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", ["\\left( 3, \\frac{\\pi}{2} \\right)"]),
    ("\\{1,2\\}", ["\\{1,2\\}"]),
    ("\\text{Tom and Jerry}", ["\\text{Tom and Jerry}"]),
    ("5; 6", ["5", "6"]),
])
def test_split_candidates(text, expected):
    assert split_candidates(text) == expected


@pytest.mark.parametrize("gold, predicted, expected", [
    # accuracy known-answer table
    ("1000", "1000", True),          # GSM8K "#### 1,000" gold after the loader
    ("1,000", "1000", True),
    ("1000", "1,000", True),
    ("1,000", "\\boxed{1,000}", True),
    ("18", "18 or 17", False),       # hedged
    ("18", "17 or 18", False),
    ("18", "17, 18", False),         # listed
    ("18", "\\boxed{17}, \\boxed{18}", False),
    ("18", "18 or 18.0", True),      # every candidate is the gold: not a hedge
    ("18", "", False),               # empty answer
    ("18", None, False),
    # LaTeX equivalence through Math-Verify
    ("\\frac{1}{9}", "\\dfrac{1}{9}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{14}{3}", "14/3", True),
    ("48", "48^\\circ", True),
    ("25", "25\\%", True),
    ("6", "\\$6", True),
    ("100", "100\\text{ square units}", True),
    ("900,000,000", "900,\\!000,\\!000", True),
    ("10{,}000", "10000", True),
    ("\\text{Evelyn}", "Evelyn", True),
    ("\\text{4:30 p.m.}", "4:30 \\text{ p.m.}", True),
    ("7\\pi", "7pi", True),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True),
    ("1, 2", "2, 1", True),          # a list gold compares as a set
    ("1, 2", "1", False),
    ("\\frac{1}{9}", "\\frac{1}{10}", False),
    ("37.50", "37.5", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("x \\rightarrow 0", "x \\rightarrow 0", True),
    ("-4", "-4", True),
    ("-4", "4", False),
    # multiple choice
    ("B", "(B)", True),
    ("B", "\\text{(B)}", True),
    ("B", "C", False),
    ("B", "B or C", False),
])
def test_grade_table(gold, predicted, expected):
    assert grade(rec(gold), predicted) is expected


@pytest.mark.parametrize("gold", ["", "   "])
def test_unusable_gold_is_none_never_credit(gold):
    assert grade(rec(gold), gold or "x") is None


def test_unparseable_gold_is_none_even_for_an_identical_prediction():
    assert grade(rec("\\frac{"), "\\frac{") is None  # huggingface/open-r1#215: never 1.0


def test_unanswerable_records_are_not_graded():
    assert grade(rec("I don't know", answerable=False), "I don't know") is None


def test_builtin_task_verifier_is_used():
    r = rec("132", task="chain_arith")
    assert grade(r, "132") is True
    assert grade(r, "131") is False
    assert grade(r, "132 or 131") is False  # the hedge rule applies before the task's verifier


def test_reasoning_gym_scorer_is_used():
    import reasoning_gym

    entry = reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=3)[0]
    r = rec(str(entry["answer"]), task="rg:basic_arithmetic", metadata=entry["metadata"])
    assert grade(r, str(entry["answer"])) is True
    assert grade(r, str(int(entry["answer"]) + 1)) is False


def test_boxed_contents_handles_nesting():
    assert boxed_contents("\\boxed{\\frac{a}{b^{2}}} and \\fbox{3}") == ["\\frac{a}{b^{2}}", "3"]


@pytest.mark.parametrize("answer, expected", [
    ("I don't know.", True),
    ("I do not know", True),
    ("It cannot be determined from the information given", True),
    ("Unanswerable", True),
    ("I know: it is 5", False),
    ("unknown, maybe 5", False),
    ("5", False),
    (None, False),
])
def test_abstention_keywords(answer, expected):
    assert is_abstention(answer) is expected


def test_abstention_matches_the_records_own_abstain_string():
    assert is_abstention("No idea", abstain_string="no idea") is True
