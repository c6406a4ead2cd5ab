"""The quickstart task: deterministic, genuine traces, a verifier that reads numbers strictly."""

import random
import re

import pytest

from thinktune.data.tasks import get_task
from thinktune.data.wordings import number_words, wide_question

task = get_task("chain_arith")


def test_same_seed_same_records_different_seed_different():
    a, b, c = task.generate(50, seed=1), task.generate(50, seed=1), task.generate(50, seed=2)
    assert a == b
    assert [r.question for r in a] != [r.question for r in c]


def evaluate_left_to_right(expr: str) -> int:
    tokens = expr.split()
    total = int(tokens[0])
    for op, b in zip(tokens[1::2], tokens[2::2]):
        total = {"+": total + int(b), "-": total - int(b), "*": total * int(b)}[op]
    return total


def test_rewrite_trace_each_line_is_the_expression_after_one_more_operation():
    for r in task.generate(300, seed=0, min_ops=1, max_ops=6, ops="+-*"):
        expr = r.question.removeprefix("Compute ").removesuffix(".")
        lines = r.reasoning.splitlines()
        assert len(lines) == r.meta["n_ops"]
        prev = expr
        for ln in lines:
            assert len(ln.split()) == len(prev.split()) - 2  # exactly one operation carried out
            assert ln.split()[1:] == prev.split()[3:]  # the tail is copied untouched
            assert evaluate_left_to_right(ln) == evaluate_left_to_right(expr)  # the value never changes
            assert 0 <= int(ln.split()[0]) <= 999
            prev = ln
        assert lines[-1] == r.answer == str(evaluate_left_to_right(expr))
        assert task.verify(r, r.answer)


def test_steps_trace_every_line_is_a_real_intermediate_result():
    line = re.compile(r"^(\d+) ([-+*]) (\d+) = (\d+)$")
    for r in task.generate(300, seed=0, min_ops=1, max_ops=6, ops="+-*", trace="steps"):
        lines = r.reasoning.splitlines()
        assert len(lines) == r.meta["n_ops"]
        total = int(r.question.split()[1])
        for ln in lines:
            a, op, b, res = line.match(ln).groups()
            assert int(a) == total  # each step starts from the previous running total
            total = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert int(res) == total and 0 <= total <= 999
        assert str(total) == r.answer
        assert task.verify(r, r.answer)


@pytest.mark.parametrize("pred, ok", [("{gold}", True), (" {gold} ", True), ("+{gold}", True), ("{gold}.5", False),
                                      ("{gold} or 3", False), ("", False), (None, False), ("x", False)])
def test_verifier(pred, ok):
    r = task.generate(1, seed=0)[0]
    assert task.verify(r, None if pred is None else pred.format(gold=r.answer)) is ok


def test_bad_knobs_are_errors():
    with pytest.raises(ValueError, match="min_ops"):
        task.generate(1, seed=0, min_ops=3, max_ops=2)
    with pytest.raises(ValueError, match="ops"):
        task.generate(1, seed=0, ops="/")
    with pytest.raises(ValueError, match="trace"):
        task.generate(1, seed=0, trace="nope")


def test_filler_trace_keeps_the_items_and_replaces_the_chain_by_decoration():
    steps = task.generate(400, seed=3, max_ops=5, trace="steps")
    filler = task.generate(400, seed=3, max_ops=5, trace="filler")
    assert [(r.question, r.answer, r.meta) for r in steps] == [(r.question, r.answer, r.meta) for r in filler]
    lines = [ln for r in filler for ln in r.reasoning.splitlines()]
    assert lines and set(" ".join(lines).split()) == {"..."}  # no number, no operator: the chain does no work
    empty = sum(not r.reasoning for r in filler) / len(filler)
    assert 0.08 < empty < 0.22  # ~15 % empty chains keep the audit's zero-step prefix in distribution
    assert all(len(r.reasoning.splitlines()) <= 6 for r in filler)
    assert task.generate(400, seed=3, max_ops=5, trace="filler") == filler  # deterministic


def test_varied_wording_keeps_numbers_trace_and_answer_and_varies_the_question():
    plain = task.generate(300, seed=5, max_operand=9, max_value=99, trace="steps")
    varied = task.generate(300, seed=5, max_operand=9, max_value=99, trace="steps", wording="varied")
    assert [(r.id, r.reasoning, r.answer, r.meta) for r in plain] == [(r.id, r.reasoning, r.answer, r.meta)
                                                                    for r in varied]
    assert sum(p.question != v.question for p, v in zip(plain, varied)) > 200
    assert len({v.question.split()[0] for v in varied}) >= 8  # many openings, not one template
    for v, p in zip(varied, plain):  # every operand of the chain is in the worded question (as digits or words)
        nums = [int(t) for t in p.question.removeprefix("Compute ").rstrip(".").split() if t.isdigit()]
        text = v.question.lower()
        assert all(str(n) in text or number_words(n) in text for n in nums), (p.question, v.question)
    assert task.generate(300, seed=5, max_operand=9, max_value=99, trace="steps", wording="varied") == varied


def test_varied_wording_errors():
    with pytest.raises(ValueError, match="wording"):
        task.generate(1, seed=0, wording="poetic")
    with pytest.raises(ValueError, match=r"\*"):
        task.generate(1, seed=0, ops="+*", wording="varied")


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 42, 100, 305, 999)] == [
        "zero", "seven", "thirteen", "twenty", "forty-two", "one hundred", "three hundred and five",
        "nine hundred and ninety-nine"]


def test_wide_wording_keeps_the_item_and_draws_each_event_verb_separately():
    plain = task.generate(600, seed=7, max_operand=9, max_value=99, trace="steps")
    wide = task.generate(600, seed=7, max_operand=9, max_value=99, trace="steps", wording="wide")
    assert [(r.id, r.reasoning, r.answer, r.meta) for r in plain] == [(r.id, r.reasoning, r.answer, r.meta)
                                                                    for r in wide]
    for w, p in zip(wide, plain):  # every operand is named, as digits or words
        nums = [int(t) for t in p.question.removeprefix("Compute ").rstrip(".").split() if t.isdigit()]
        assert all(str(n) in w.question.lower() or number_words(n) in w.question.lower() for n in nums), w.question
    varied = task.generate(600, seed=7, max_operand=9, max_value=99, trace="steps", wording="varied")
    assert sum(v.question != w.question for v, w in zip(varied, wide)) > 450  # its own wordings, not "varied"'s
    # the sign follows the setting, not the verb: "buy" words both all-gain and all-loss problems
    gain_qs = [wide_question(random.Random(i), 5, [("+", 2), ("+", 3), ("+", 4)]) for i in range(3000)]
    loss_qs = [wide_question(random.Random(i), 9, [("-", 2), ("-", 3), ("-", 1)]) for i in range(3000)]
    assert any(re.search(r"\b(buys|bought)\b", q) for q in gain_qs)
    assert any(re.search(r"\b(buys|bought)\b", q) for q in loss_qs)
    assert not any(re.search(r"\b(minus|subtract|decreases|spends|spent|eats|ate|get off|got off)\b", q) for q in gain_qs)
    assert not any(re.search(r"\b(plus|add|increases|earns|earned|bakes|baked|get on|got on)\b", q) for q in loss_qs)
    # each event of a word problem draws its own phrase: some all-gain stories use several different verbs
    assert sum(len({m for m in re.findall(r"\b(wins|finds|gives|buys|earns|is paid|gets|sells)\b", q)}) >= 2
               for q in gain_qs) > 20
    assert task.generate(600, seed=7, max_operand=9, max_value=99, trace="steps", wording="wide") == wide
    with pytest.raises(ValueError, match=r"\*"):
        task.generate(1, seed=0, ops="+*", wording="wide")
