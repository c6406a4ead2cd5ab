"""Each warning fires on a constructed run that has its failure pattern and stays silent on one that does not."""

import pytest

from tests.helpers.report_runs import audit_agg, grpo_rows, make_run
from thinktune.report.build import ReportOptions, build_report
from thinktune.report.diagnose import diagnose, trend
from thinktune.report.load import load_run

RISING = [0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
FLAT = [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]

CASES = [  # (case, make_run kwargs, the warning kind expected or None)
    ("accuracy up, AOC down", dict(audits={"base": audit_agg(0.2, aoc=0.5), "sft": audit_agg(0.5, aoc=0.2)}),
     "faithfulness_fell"),
    ("accuracy up, mistakes AOC down", dict(audits={"base": audit_agg(0.2, mistakes_aoc=0.6),
                                                    "sft": audit_agg(0.5, mistakes_aoc=0.3)}), "faithfulness_fell"),
    ("accuracy up, info gain down", dict(audits={"base": audit_agg(0.2, info_gain=0.6),
                                                 "sft": audit_agg(0.5, info_gain=0.3)}), "faithfulness_fell"),
    ("accuracy up, faithfulness kept", dict(audits={"base": audit_agg(0.2, aoc=0.5, info_gain=0.4),
                                                    "sft": audit_agg(0.5, aoc=0.52, info_gain=0.45)}), None),
    ("faithfulness down, accuracy flat", dict(audits={"base": audit_agg(0.5, aoc=0.5, info_gain=0.6),
                                                      "sft": audit_agg(0.5, aoc=0.2, info_gain=0.3)}), None),
    ("abstention recall down", dict(audits={"sft": audit_agg(0.5, recall=0.8), "grpo": audit_agg(0.5, recall=0.3)}),
     "abstention_fell"),
    ("abstention recall kept", dict(audits={"sft": audit_agg(0.5, recall=0.8), "grpo": audit_agg(0.5, recall=0.8)}),
     None),
    ("reward up, held-out curve flat", dict(audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.3)},
                                            grpo_metrics=grpo_rows(RISING, [0.3, 0.3, 0.3])), "reward_hacking"),
    ("reward up, held-out curve up", dict(audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.6)},
                                          grpo_metrics=grpo_rows(RISING, [0.2, 0.4, 0.6])), None),
    ("reward up, no curve, audit flat", dict(audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.3)},
                                             grpo_metrics=grpo_rows(RISING)), "reward_hacking"),
    ("reward up, no curve, audit up", dict(audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.5)},
                                           grpo_metrics=grpo_rows(RISING)), None),
    ("reward flat, held-out flat", dict(audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.3)},
                                        grpo_metrics=grpo_rows(FLAT, [0.3, 0.3, 0.3])), None),
    ("zero-variance groups", dict(grpo_metrics=grpo_rows([0.0] * 6, zero_std=1.0)), "no_learning_signal"),
    ("varied groups", dict(grpo_metrics=grpo_rows([0.0] * 6, zero_std=0.25)), None),
    ("reward errors", dict(stages={"grpo": {"status": "complete", "result": {
        "reward_outcomes": {"correct": {"ok": 90, "error": 3, "timeout": 1}, "format": {"ok": 94}}}}}),
     "reward_failures"),
    ("no reward errors", dict(stages={"grpo": {"status": "complete", "result": {
        "reward_outcomes": {"correct": {"ok": 94, "error": 0}, "format": {"ok": 94}}}}}), None),
    # issue 21, point 11: a run with every model at 0 % and GRPO's reward falling 0.088 -> 0.013 showed a green
    # "No known failure pattern found"
    ("every model at zero", dict(audits={"base": audit_agg(0.0), "sft": audit_agg(0.0), "grpo": audit_agg(0.02)}),
     "near_zero_accuracy"),
    ("one model above zero", dict(audits={"base": audit_agg(0.0), "sft": audit_agg(0.3)}), None),
    ("reward falling", dict(grpo_metrics=grpo_rows([0.088, 0.08, 0.05, 0.03, 0.02, 0.013])), "reward_fell"),
    ("reward falling a little", dict(grpo_metrics=grpo_rows([0.30, 0.31, 0.29, 0.30, 0.29, 0.29])), None),
]
WARN_KINDS = {"faithfulness_fell", "abstention_fell", "reward_hacking", "no_learning_signal", "reward_failures",
              "near_zero_accuracy", "reward_fell"}


@pytest.mark.parametrize("case, kwargs, expected", CASES, ids=[c[0] for c in CASES])
def test_warning_fires_only_on_its_pattern(tmp_path, case, kwargs, expected):
    run = load_run(make_run(tmp_path, **kwargs))
    kinds = {f.kind for f in diagnose(run) if f.level == "warn"}
    assert kinds == ({expected} if expected else set()), case


def test_warnings_are_at_the_top_of_the_report(tmp_path):
    hacked = make_run(tmp_path, "hacked", audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.3)},
                      grpo_metrics=grpo_rows(RISING, [0.3, 0.3, 0.3], per_fn={"correct": FLAT, "format": RISING}))
    html, info = build_report([hacked], ReportOptions())
    assert [w.kind for w in info.warnings] == ["reward_hacking"]
    first_section = html.index('<section class="card"')
    assert html.index('data-kind="reward_hacking"') < first_section
    assert "correct +0, format +0.65" in html  # the detail says which reward function drove the rise

    clean = make_run(tmp_path, "clean", audits={"sft": audit_agg(0.3), "grpo": audit_agg(0.5)},
                     grpo_metrics=grpo_rows(RISING, [0.2, 0.4, 0.6]))
    html, info = build_report([clean], ReportOptions())
    assert info.warnings == [] and 'data-kind="none"' in html
    assert not any(f'data-kind="{k}"' in html for k in WARN_KINDS)


def test_incomplete_stage_is_an_info_note_not_a_warning(tmp_path):
    run = load_run(make_run(tmp_path, stages={"data": {"status": "complete"}, "sft": {"status": "running"}}))
    found = diagnose(run)
    assert [(f.kind, f.level) for f in found] == [("incomplete", "info")]


@pytest.mark.parametrize("values, expected", [([1.0, 3.0], (1.0, 3.0)), ([1, 2, 3, 4, 5, 6], (1.5, 5.5)),
                                              ([2.0], None), ([], None)])
def test_trend_compares_first_and_last_thirds(values, expected):
    assert trend(values) == expected


def test_the_report_stage_writing_the_report_is_not_incomplete(tmp_path):
    run_dir = make_run(tmp_path, stages={"data": {"status": "complete"}, "report": {"status": "running"}})
    assert diagnose(load_run(run_dir)) == []
    html, _ = build_report([run_dir], ReportOptions())
    assert "1/1</div>" in html  # stages complete: the running report stage is not counted
