"""benchmarks/grpo_reward_rise.py: the first-10 % / last-10 % reward windows of a GRPO metrics.jsonl."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    """A benchmarks/ script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rise = _load("grpo_reward_rise")
bench = _load("bench_grpo_additions")


def _run(tmp_path, rewards, every=5):
    stage = tmp_path / "run" / "grpo"
    stage.mkdir(parents=True)
    rows = [{"step": every * (i + 1), "reward": r, "loss": 0.0} for i, r in enumerate(rewards)]
    rows.insert(3, {"step": 20, "eval_accuracy": 0.5, "eval_items": 200})
    rows.append({"step": every * len(rewards), "eval_accuracy": 0.7, "eval_items": 200})
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (stage / "effective_config.json").write_text(json.dumps({"max_steps": every * len(rewards)}))
    return tmp_path / "run"


def test_windows_are_the_first_and_last_tenth_of_steps(tmp_path, capsys):
    # 100 steps logged every 5: rows 5, 10 are the first 10 %, rows 95, 100 the last 10 %
    rewards = [0.4, 0.5] + [9.0] * 16 + [0.6, 0.8]
    r = rise.run_rise(_run(tmp_path, rewards))
    assert r["first"] == pytest.approx(0.45) and r["last"] == pytest.approx(0.7)
    assert r["rise"] == pytest.approx(0.25) and r["held_out_accuracy"] == 0.7
    assert rise.main([str(tmp_path / "run")]) == 0
    assert "rise +0.250" in capsys.readouterr().out
    assert rise.main([str(tmp_path / "run"), "--min-rise", "0.3"]) == 1


def test_coarse_logging_is_refused():
    with pytest.raises(ValueError, match="first/last 10 steps"):
        rise.reward_rise([{"step": 50, "reward": 0.1}, {"step": 100, "reward": 0.2}], 100)


def test_additions_benchmark_time_to_target_sums_step_times_up_to_the_first_eval_at_target():
    rows = [{"step": 5, "step_time": 2.0}, {"step": 10, "step_time": 4.0}, {"step": 10, "eval_accuracy": 0.55},
            {"step": 15, "step_time": 1.0}, {"step": 20, "step_time": 1.0}, {"step": 20, "eval_accuracy": 0.62}]
    assert bench.time_to_target(rows, 0.6) == (40.0, 0.62, 40.0)
    assert bench.time_to_target(rows, 0.5) == (30.0, 0.62, 40.0)
    assert bench.time_to_target(rows, 0.7) == (None, 0.62, 40.0)


def test_additions_benchmark_ratio_is_an_interval_when_an_arm_misses_the_target():
    inf = float("inf")
    assert bench.seed_ratio((30.0, 0.7, 90.0), (60.0, 0.7, 80.0)) == (0.5, 0.5)
    assert bench.seed_ratio((30.0, 0.7, 90.0), (None, 0.6, 120.0)) == (0.0, 0.25)  # without's run bounds it
    assert bench.seed_ratio((None, 0.6, 90.0), (60.0, 0.7, 80.0)) == (1.5, inf)  # with's run bounds it below
    assert bench.seed_ratio((None, 0.6, 90.0), (None, 0.6, 80.0)) == (0.0, inf)
    assert [bench.describe(*i) for i in [(0.5, 0.5), (0.0, 0.25), (1.5, inf), (0.0, inf), (0.5, 0.8)]] == [
        "0.50", "≤ 0.25", "≥ 1.50", "unknown", "0.50–0.80"]


def test_additions_benchmark_median_keeps_every_seed_and_says_when_the_verdict_is_open():
    inf = float("inf")
    assert bench.median_interval([(0.5, 0.5), (0.6, 0.6), (0.9, 0.9)]) == (0.6, 0.6, "met")
    assert bench.median_interval([(0.5, 0.5), (0.0, 0.65), (0.9, 0.9)]) == (0.5, 0.65, "met")
    assert bench.median_interval([(0.5, 0.5), (0.8, 0.8), (0.0, inf)]) == (0.5, 0.8, "not established")
    assert bench.median_interval([(0.9, 0.9), (0.8, 0.8), (0.0, inf)]) == (0.8, 0.9, "not met")
