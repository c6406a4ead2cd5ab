"""Arms share completed stages through the run directory: a second arm with the same SFT never recomputes it.

Stage functions are fakes (each writes its output and records the call), so this tests the sharing itself in a
second; tests/experiments/test_reduced.py shows the same with real training.
"""

import json
import os

from tests.helpers.experiments import write_experiment
from thinktune.experiments.runner import find_donor, plan_order, run_one, share_stages
from thinktune.experiments.spec import load_experiment


def fake_stage_fns(calls):
    def make(stage):
        def fn(ctx):
            calls.append((ctx.root.name, stage))
            out = ctx.output_path(stage)
            if stage == "audit":
                for model in ctx.model_stages():
                    (out / model).mkdir(parents=True, exist_ok=True)
                    (out / model / "audit.json").write_text(json.dumps({"accuracy": 0.5 if model == "grpo" else 0.25}))
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / "weights.bin").write_text(f"{ctx.root.name}:{stage}")
            return {"stage": stage}
        return fn
    return {s: make(s) for s in ("data", "base", "sft", "grpo", "audit", "report")}


def test_second_arm_reuses_the_first_arms_sft_without_recomputing_it(tmp_path):
    exp = load_experiment(write_experiment(tmp_path, seeds=[0]))
    out, results, calls = tmp_path / "runs", tmp_path / "results", []
    first = run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls))
    second = run_one(exp, "b", 0, out, results, stage_fns=fake_stage_fns(calls))
    assert first.status == second.status == "done" and first.shared == ()
    assert second.shared == ("data", "base", "sft")  # grpo differs (kl_coef) and is trained
    assert [s for r, s in calls if r == "b-s0"] == ["grpo", "audit"]  # data, base, sft were not recomputed
    a_man = json.loads((out / exp.name / "a-s0" / "manifest.json").read_text())
    b_man = json.loads((out / exp.name / "b-s0" / "manifest.json").read_text())
    for stage in ("data", "base", "sft"):
        assert b_man["stages"][stage]["shared_from"] == "../a-s0"
        assert b_man["stages"][stage]["finished"] == a_man["stages"][stage]["finished"]  # the donor's, not a new one
        assert b_man["stages"][stage]["fingerprint"] == a_man["stages"][stage]["fingerprint"]
    assert "shared_from" not in b_man["stages"]["grpo"]
    a_w, b_w = (out / exp.name / r / "sft" / "final" / "weights.bin" for r in ("a-s0", "b-s0"))
    assert b_w.read_text() == "a-s0:sft" and os.stat(a_w).st_ino == os.stat(b_w).st_ino  # hard link, no copy
    summary = json.loads((results / exp.name / "b-s0.json").read_text())
    assert summary["shared_stages"] == ["data", "base", "sft"]
    assert summary["metrics"]["accuracy"] == {"value": 0.5, "ci95": None}
    assert summary["audit"]["audit/grpo"]["accuracy"] == 0.5 and summary["audit"]["audit/sft"]["accuracy"] == 0.25
    assert summary["compute_seconds"] == round(sum(b_man["stages"][s]["seconds"] for s in ("grpo", "audit")), 1)


def test_rerun_skips_finished_runs_and_a_changed_recipe_runs_again(tmp_path):
    path = write_experiment(tmp_path, seeds=[0])
    out, results, calls = tmp_path / "runs", tmp_path / "results", []
    exp = load_experiment(path)
    run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls))
    n = len(calls)
    assert run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls)).status == "skipped"
    assert len(calls) == n


def test_other_seeds_and_other_sft_configs_share_nothing_trained(tmp_path):
    exp = load_experiment(write_experiment(tmp_path, seeds=[0, 1], arms={"a": {}, "b": {"sft.learning_rate": 1e-3}}))
    out, results, calls = tmp_path / "runs", tmp_path / "results", []
    run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls))
    assert find_donor(exp.arm_recipe("a", 1, output_dir=out / exp.name), out) == (None, [])  # seed is in every stage
    b = exp.arm_recipe("b", 0, output_dir=out / exp.name)
    assert share_stages(b, out) == ["data", "base"]
    # the scheduler waits only for runs that share a trained stage
    items = [(exp, arm, seed, exp.arm_recipe(arm, seed)) for arm, seed in [("a", 0), ("b", 0), ("a", 1)]]
    assert plan_order(items) == [(0, None), (1, None), (2, None)]
    same = load_experiment(write_experiment(tmp_path, name="02_same", seeds=[0]))
    items = [(same, arm, 0, same.arm_recipe(arm, 0)) for arm in ("a", "b")]
    assert plan_order(items) == [(0, None), (1, 0)]


def test_an_identical_arm_of_another_experiment_shares_everything_including_the_audit(tmp_path):
    one = load_experiment(write_experiment(tmp_path, seeds=[0]))
    two = load_experiment(write_experiment(tmp_path, name="02_same", seeds=[0]))
    out, results, calls = tmp_path / "runs", tmp_path / "results", []
    run_one(one, "a", 0, out, results, stage_fns=fake_stage_fns(calls))
    n = len(calls)
    assert run_one(two, "a", 0, out, results, stage_fns=fake_stage_fns(calls)).shared == (
        "data", "base", "sft", "grpo", "audit")
    assert len(calls) == n  # nothing recomputed
    s1, s2 = (json.loads((results / e / "a-s0.json").read_text()) for e in ("01_test", "02_same"))
    assert s2["metrics"] == s1["metrics"] and s2["compute_seconds"] == 0


def test_a_run_locked_by_a_live_process_is_left_alone_and_a_stale_lock_is_taken_over(tmp_path):
    """The runner takes the same run lock as `thinktune run` (run_lock.py): busy while another process holds it,
    free once that process is gone (killed -9: its lock file stays, with its pid, and blocks nothing)."""
    from tests.helpers.locks import lock_held_elsewhere
    from thinktune.run_lock import LOCK_FILE

    exp = load_experiment(write_experiment(tmp_path, seeds=[0]))
    out, results, calls = tmp_path / "runs", tmp_path / "results", []
    run_dir = out / exp.name / "a-s0"
    with lock_held_elsewhere(run_dir) as holder:
        assert run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls)).status == "busy" and calls == []
    assert (run_dir / LOCK_FILE).read_text().strip() == str(holder.pid)
    assert run_one(exp, "a", 0, out, results, stage_fns=fake_stage_fns(calls)).status == "done" and calls
    assert (results / exp.name / "a-s0.json").exists()
