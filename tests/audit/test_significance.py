"""Paired significance of a stage's accuracy change: hand-computed McNemar values, a bootstrap interval that is
paired (not two unpaired intervals), and the report warning that names a change within noise."""

import pytest

from thinktune.audit.significance import correctness, mcnemar_exact, paired_change, stage_changes
from thinktune.report.diagnose import diagnose
from thinktune.report.load import load_run
from tests.helpers.report_runs import audit_agg, make_run


@pytest.mark.parametrize("gained, lost, p", [
    (0, 0, 1.0),
    (10, 0, 2 / 2**10),  # all ten discordant items favour one model: 2 * (1/2)^10
    (3, 2, 1.0),  # 2 * P[Bin(5, .5) <= 2] = 2 * 16/32, capped at 1
    (9, 1, 2 * 11 / 2**10),  # 2 * (C(10,0) + C(10,1)) / 2^10
])
def test_mcnemar_exact_by_hand(gained, lost, p):
    assert mcnemar_exact(gained, lost) == pytest.approx(p)
    assert mcnemar_exact(lost, gained) == pytest.approx(p)  # two-sided: symmetric


def outcomes(n, right, flips_up=0, flips_down=0):
    """(before, after) correctness on n items: ``right`` correct before; then flips in both directions."""
    before = {f"i{k}": k < right for k in range(n)}
    after = dict(before)
    wrong = [k for k in range(n) if not before[f"i{k}"]]
    ok = [k for k in range(n) if before[f"i{k}"]]
    for k in wrong[:flips_up]:
        after[f"i{k}"] = True
    for k in ok[:flips_down]:
        after[f"i{k}"] = False
    return before, after


def test_paired_interval_is_tight_where_unpaired_intervals_overlap():
    # 500 items, 300 right before; 30 gained, 5 lost: +5 points. Unpaired 95 % Wilson intervals of 60 % and 65 %
    # overlap; paired, the 35 discordant items all but settle it.
    before, after = outcomes(500, 300, flips_up=30, flips_down=5)
    c = paired_change(before, after, ("sft", "grpo"))
    assert (c.gained, c.lost, c.n) == (30, 5, 500)
    assert c.delta == pytest.approx(0.05)
    assert c.ci95[0] > 0 and c.significant
    assert c.mcnemar_p < 0.001
    assert c.describe().startswith("+5.0 points, 95 % CI +")


def test_change_within_noise_is_not_significant_and_deterministic():
    before, after = outcomes(500, 140, flips_up=20, flips_down=13)  # +1.4 points
    c = paired_change(before, after, ("sft", "grpo"), seed=3)
    assert c.delta == pytest.approx(0.014)
    assert c.ci95[0] < 0 < c.ci95[1] and not c.significant
    assert c == paired_change(before, after, ("sft", "grpo"), seed=3)
    assert "not significant" in c.describe()


def test_only_items_with_a_verdict_on_both_sides_count():
    rows_a = [{"id": "a", "correct": True}, {"id": "b", "correct": None}, {"id": "c", "correct": False}]
    rows_b = [{"id": "a", "correct": True}, {"id": "b", "correct": True}, {"id": "c", "correct": True}]
    (c,) = stage_changes({"sft": rows_a, "grpo": rows_b}, {"grpo": "sft"})
    assert c.n == 2 and (c.gained, c.lost) == (1, 0)
    assert correctness(rows_a) == {"a": True, "c": False}


def run_with_change(tmp_path, name, flips_up, flips_down):
    before, after = outcomes(500, 140, flips_up, flips_down)
    rows = {m: [{"id": i, "correct": ok} for i, ok in d.items()] for m, d in (("sft", before), ("grpo", after))}
    changes = stage_changes(rows, {"grpo": "sft"})
    acc = {m: sum(d.values()) / 500 for m, d in (("sft", before), ("grpo", after))}
    return load_run(make_run(tmp_path, name, audits={m: audit_agg(a) for m, a in acc.items()},
                             results={"eval_items": 500, "changes": [c.to_dict() for c in changes]}))


def test_grpo_gain_within_noise_raises_the_report_warning(tmp_path):
    found = [f for f in diagnose(run_with_change(tmp_path, "noise", 20, 13)) if f.level == "warn"]
    assert [f.kind for f in found] == ["gain_not_significant"]
    assert found[0].title.startswith("GRPO: +1.4 points, 95 % CI −") and found[0].title.endswith(", not significant")


def test_a_real_grpo_gain_raises_no_warning(tmp_path):
    assert [f for f in diagnose(run_with_change(tmp_path, "real", 45, 10)) if f.level == "warn"] == []


def test_a_significant_drop_is_its_own_warning(tmp_path):
    found = [f for f in diagnose(run_with_change(tmp_path, "drop", 5, 40)) if f.level == "warn"]
    assert [f.kind for f in found] == ["accuracy_fell"]
