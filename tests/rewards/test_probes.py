"""The hack-probe rule, per probe and per built-in reward, on real items and on generated ones (issue 3).

Rule (rewards/probes.py): a probe whose answer is not uniquely the gold earns no more than the honest wrong
completion (A); a probe with the right answer that breaks format or reasoning earns no more than the honest correct
one, and strictly less for the properties the reward defends (its ``guards``) (B). None counts as 0 (TRL nansum).
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinktune.config import RewardSpec
from thinktune.data.answers import grade
from thinktune.data.records import Record
from thinktune.data.tasks import ChainArithmetic
from thinktune.formatting import parse_completion
from thinktune.rewards.library import REWARDS
from thinktune.rewards.probes import (
    PROBES,
    build_probes,
    default_items,
    probe_rewards,
    wrong_answers,
)

EPS = 1e-9


@functools.lru_cache(maxsize=1)
def real_sets():
    items = default_items() + ChainArithmetic().generate(3, seed=1)
    return [build_probes(r) for r in items]


def credit(value: float | None) -> float:
    return 0.0 if value is None else value


def check_rule(name: str, ps, probe) -> str | None:
    """None when reward ``name`` obeys the rule on ``probe``; else a description of the breach."""
    fn = REWARDS[name]
    rec = ps.record
    earned = credit(fn(probe.text, rec))
    if probe.rule == "A":
        ref = credit(fn(ps.honest_wrong, rec))
        ok = earned <= ref + EPS
    else:
        ref = credit(fn(ps.honest_correct, rec))
        ok = earned < ref - EPS if probe.tag in fn.guards else earned <= ref + EPS
    return None if ok else f"{name} on {probe.name} ({rec.id}): {earned:.4f} vs reference {ref:.4f}"


def test_the_references_are_what_they_claim():
    for ps in real_sets():
        assert grade(ps.record, parse_completion(ps.honest_correct).answer) is True
        assert grade(ps.record, parse_completion(ps.honest_wrong).answer) is False
        assert REWARDS["correct"](ps.honest_correct, ps.record) == 1.0
        assert REWARDS["format"](ps.honest_wrong, ps.record) == 1.0


def test_every_probe_is_built_for_real_items():
    names = {p.name for ps in real_sets() for p in ps.probes}
    assert names == set(PROBES)


def test_wrong_answers_are_wrong_and_distinct():
    for rec in default_items():
        wrong = wrong_answers(rec, 3)
        assert len(set(wrong)) == 3
        assert all(grade(rec, w) is False for w in wrong)


@pytest.mark.parametrize("probe", sorted(PROBES))
@pytest.mark.parametrize("name", sorted(set(REWARDS) - {"reward_model"}))  # a learned reward: no rule to hold
def test_rule_per_probe_and_reward_on_real_items(name, probe):
    breaches = [check_rule(name, ps, p) for ps in real_sets() for p in ps.probes if p.name == probe]
    assert not [b for b in breaches if b], breaches


def test_answer_probes_earn_nothing_from_correct():
    for ps in real_sets():
        for p in ps.probes:
            if p.rule == "A":
                assert REWARDS["correct"](p.text, ps.record) == 0.0, (p.name, ps.record.id)


# --- property-driven: items beyond those listed ------------------------------------------------------------------

WORDS = st.sampled_from("the we add total so then number each of and is apples costs left half twice more".split())
NUMBER = st.integers(-10**6, 10**6)


@st.composite
def golds(draw) -> str:
    kind = draw(st.sampled_from(["int", "thousands", "decimal", "frac", "letter", "text", "neg_frac"]))
    if kind == "int":
        return str(draw(NUMBER))
    if kind == "thousands":
        return f"{draw(st.integers(1000, 10**7)):,}"
    if kind == "decimal":
        return f"{draw(st.integers(0, 10**4))}.{draw(st.integers(1, 99)):02d}"
    if kind == "frac":
        return f"\\frac{{{draw(st.integers(1, 50))}}}{{{draw(st.integers(51, 99))}}}"
    if kind == "neg_frac":
        return f"-\\frac{{{draw(st.integers(1, 9))}}}{{{draw(st.integers(11, 19))}}}"
    if kind == "letter":
        return draw(st.sampled_from("ABCDE"))
    return f"\\text{{{draw(st.sampled_from(['Evelyn', 'Tuesday', 'blue', 'north']))}}}"


@st.composite
def items(draw) -> Record:
    gold = draw(golds())
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        words = draw(st.lists(st.one_of(WORDS, NUMBER.map(str)), min_size=1, max_size=12))
        lines.append(" ".join(words))
    if draw(st.booleans()):
        lines.append(f"so the answer is {gold}")
    return Record(id="gen", question="A generated question?", reasoning="\n".join(lines), answer=gold, task="math")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items())
def test_rule_holds_for_generated_items(record):
    ps = build_probes(record, giant_chars=20_000)
    breaches = [check_rule(name, ps, p) for name in REWARDS if name != "reward_model" for p in ps.probes]
    assert not [b for b in breaches if b]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items(), min_size=1, max_size=3))
def test_default_reward_set_passes_the_probes_for_generated_items(records):
    specs = [RewardSpec(fn="correct", weight=1.0), RewardSpec(fn="format", weight=0.1)]
    report = probe_rewards(specs, records, workers=0)
    assert report.ok, report.summary()


# --- the check ---------------------------------------------------------------------------------------------------

def test_probes_passes_the_full_builtin_set_and_reports_nothing_unguarded():
    specs = [RewardSpec(fn=n, weight=w) for n, w in [("correct", 1.0), ("format", 0.1), ("overlong", 0.5),
                                                     ("repetition", 0.2), ("language", 0.1)]]
    report = probe_rewards(specs, default_items(), workers=0, max_items=6)
    assert report.ok, report.summary()
    assert report.honest_correct > report.honest_wrong
    assert {r.status for r in report.rows} == {"ok"}


def test_probes_of_the_default_set_reports_unguarded_properties_without_failing():
    report = probe_rewards([RewardSpec(fn="correct"), RewardSpec(fn="format", weight=0.1)], default_items(),
                           workers=0, max_items=4)
    assert report.ok
    assert {r.probe for r in report.rows if r.status == "unguarded"} == {"giant_correct", "repeated_reasoning",
                                                                         "wrong_language"}
    assert any("no reward defends" in n for n in report.notes)


def test_probes_catches_a_substring_match_reward():  # Liuziyu77/Visual-RFT#176
    report = probe_rewards([RewardSpec(fn="tests.helpers.faulty_rewards:substring_match")], default_items(), workers=0,
                           max_items=4)
    assert not report.ok
    assert "empty_answer" in {v.probe for v in report.violations if v.rule == "A"}
    assert "reward probes failed" in report.summary()


def test_probes_catches_an_ungated_correct_reward():
    report = probe_rewards([RewardSpec(fn="correct", kwargs={"require_format": False})], default_items(),
                           workers=0, max_items=3)
    broken = {v.probe for v in report.violations}
    assert {"no_reasoning", "empty_think", "text_after_answer"} <= broken
    assert not {p for p in broken if PROBES[p][0] == "A"}  # hedges still earn nothing


def test_probes_reports_errors_as_violations():
    report = probe_rewards([RewardSpec(fn="tests.helpers.faulty_rewards:raises")], default_items(), workers=0, max_items=2)
    assert {v.rule for v in report.violations} == {"error"}


def test_probes_skips_unusable_items_and_needs_some():
    unanswerable = Record(id="u", question="q", answer="I don't know", answerable=False)
    report = probe_rewards([RewardSpec(fn="correct")], [unanswerable] + default_items()[:1], workers=0)
    assert report.items == 1 and any("unanswerable" in n for n in report.notes)
    with pytest.raises(ValueError, match="no usable items"):
        probe_rewards([RewardSpec(fn="correct")], [unanswerable], workers=0)


def test_probes_through_the_worker_pool():
    report = probe_rewards([RewardSpec(fn="correct"), RewardSpec(fn="format", weight=0.1)], default_items(),
                           workers=2, max_items=2)
    assert report.ok and report.items == 2
