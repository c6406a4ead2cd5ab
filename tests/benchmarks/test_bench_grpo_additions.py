"""benchmarks/bench_grpo_additions.py: time to target, per-seed ratio intervals and their median."""

from tests.helpers.benchmarks import load_benchmark

bench = load_benchmark("bench_grpo_additions")


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
