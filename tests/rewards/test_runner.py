"""The reward runner's isolation contract (docs/ARCHITECTURE.md, "Reward isolation"), one property per test.

A reward that sleeps forever, busy-loops in C, raises, exits its process, returns NaN / None / a string, or (as a
batch callable) the wrong number of values: the batch finishes within deadline + 5 s or the run stops by the
configured rule, the outcome is counted and reaches TRL's metrics, and the pool recovers without leaking processes.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from thinktune.config import RewardSpec
from thinktune.data.records import Record
from thinktune.errors import StageError
from thinktune.formatting import render
from thinktune.rewards.library import RewardError
from thinktune.rewards.runner import RewardRunner

DEADLINE = 1.0
F = "tests.helpers.faulty_rewards:"
FAULTY = ["sleep_on_marker", "busy_loop_in_c", "raises_on_marker", "exits_on_marker", "returns_nan", "returns_none",
          "returns_text", "wrong_length", "slow", "main_thread", "sleep_forever", "raises", "pid"]


def idx(name: str) -> int:
    return FAULTY.index(name)


@pytest.fixture(scope="module")
def runner():
    with RewardRunner([RewardSpec(fn=F + n) for n in FAULTY], max_error_fraction=0.5, workers=2,
                      deadline=DEADLINE) as r:
        r.evaluate(idx("pid"), ["warm"], [Record(id="w", question="q", answer="1")])  # wait for start-up
        yield r


@pytest.fixture
def records():
    return [Record(id=f"r{i}", question="What is 2 + 2?", answer="4") for i in range(8)]


def texts(n: int, marker: str | None = None, at: int = 3) -> list[str]:
    return [render(f"step {i}", "4") + (f" {marker}" if marker and i == at else "") for i in range(n)]


class Metrics:
    def __init__(self):
        self.logged: dict[str, float] = {}

    def __call__(self, name: str, value: float) -> None:
        self.logged[name] = value


def test_a_call_that_hangs_is_abandoned_and_the_batch_finishes(runner, records):
    metrics = Metrics()
    replaced = runner.workers_replaced
    t0 = time.monotonic()
    scores = runner.score(idx("sleep_on_marker"), texts(8, "HANG"), records, step=1, log_metric=metrics)
    assert time.monotonic() - t0 < DEADLINE + 5
    assert scores == [1.0, 1.0, 1.0, None, 1.0, 1.0, 1.0, 1.0]
    assert runner.step_counts[1][F + "sleep_on_marker"] == {"ok": 7, "timeout": 1}
    assert metrics.logged[f"rewards/{F}sleep_on_marker/n_timeouts"] == 1.0
    assert metrics.logged[f"rewards/{F}sleep_on_marker/n_errors"] == 1.0
    assert runner.workers_replaced == replaced + 1


def test_a_busy_loop_in_c_is_killed(runner, records):
    t0 = time.monotonic()
    scores = runner.score(idx("busy_loop_in_c"), texts(8, "HANG"), records)
    assert time.monotonic() - t0 < DEADLINE + 5
    assert scores[3] is None and scores.count(1.0) == 7


def test_a_reward_that_always_hangs_stops_the_run_by_the_rule(runner, records):
    runner.max_error_fraction = 0.1  # the default: no failure allowed in a batch of 8
    t0 = time.monotonic()
    try:
        with pytest.raises(StageError, match=r"failed on \d+ of 8 .*timed out"):
            runner.score(idx("sleep_forever"), texts(8), records)
    finally:
        runner.max_error_fraction = 0.5
    assert time.monotonic() - t0 < DEADLINE + 5  # stops as soon as the limit is certainly exceeded
    after = runner.score(idx("pid"), texts(4), records[:4])  # the pool recovered
    assert all(isinstance(v, float) for v in after)


def test_exceptions_are_counted_and_masked_below_the_limit(runner, records):
    metrics = Metrics()
    scores = runner.score(idx("raises_on_marker"), texts(8, "BOOM"), records, log_metric=metrics)
    assert scores[3] is None and scores.count(0.5) == 7
    assert metrics.logged[f"rewards/{F}raises_on_marker/n_errors"] == 1.0


def test_exceptions_above_the_limit_stop_the_run_with_the_cause(runner, records):
    metrics = Metrics()
    with pytest.raises(StageError, match="ZeroDivisionError: boom"):
        runner.score(idx("raises"), texts(8), records, log_metric=metrics)
    assert runner.counts[F + "raises"]["error"] >= 5
    assert metrics.logged[f"rewards/{F}raises/n_errors"] >= 5  # logged before the run stops


def test_a_batch_reward_returning_the_wrong_length_is_an_error(runner, records):
    metrics = Metrics()
    with pytest.raises(StageError, match="returned 7 values for 8 completions"):
        runner.score(idx("wrong_length"), texts(8), records, log_metric=metrics)
    assert runner.counts[F + "wrong_length"]["error"] == 8
    assert metrics.logged[f"rewards/{F}wrong_length/n_errors"] == 8.0


def test_a_correct_batch_reward_runs_in_a_worker(runner, records):
    with RewardRunner([RewardSpec(fn=F + "batch_length")], workers=0) as r:
        assert r.score(0, [render("x", "4"), render("x", "5")], records[:2]) == [1.0, 0.0]


def test_a_worker_that_exits_is_replaced(runner, records):
    replaced = runner.workers_replaced
    scores = runner.score(idx("exits_on_marker"), texts(8, "EXIT"), records)
    assert scores[3] is None and scores.count(1.0) == 7
    assert runner.workers_replaced == replaced + 1
    assert runner.score(idx("exits_on_marker"), texts(4), records[:4]) == [1.0] * 4


@pytest.mark.parametrize("name, status", [("returns_nan", "error"), ("returns_text", "error"), ("returns_none", "none")])
def test_nan_and_wrong_types_are_errors_none_is_not_applicable(runner, records, name, status):
    runner.max_error_fraction = 1.0
    try:
        assert runner.score(idx(name), texts(4), records[:4]) == [None] * 4
    finally:
        runner.max_error_fraction = 0.5
    assert runner.counts[F + name][status] >= 4


def test_the_deadline_is_per_call_not_per_batch(runner, records):
    t0 = time.monotonic()
    assert runner.score(idx("slow"), texts(8), records) == [1.0] * 8  # 8 × 0.3 s on 2 workers > 1 s deadline
    assert time.monotonic() - t0 > DEADLINE
    assert runner.counts[F + "slow"]["timeout"] == 0


def test_rewards_run_in_the_main_thread_of_other_processes(runner, records):
    import os

    assert runner.score(idx("main_thread"), texts(4), records[:4]) == [1.0] * 4
    pids = runner.score(idx("pid"), texts(8), records)
    assert os.getpid() not in pids


def test_trl_function_contract_and_metrics(runner, records):
    fn = runner.trl_functions()[idx("raises_on_marker")]
    assert fn.__name__ == "tests.helpers.faulty_rewards.raises_on_marker"
    metrics = Metrics()
    out = fn(prompts=["p"] * 8, completions=texts(8, "BOOM"), record=[r.model_dump_json() for r in records],
             trainer_state=SimpleNamespace(global_step=7), log_metric=metrics, log_extra=lambda *a: None,
             completion_ids=[[1]] * 8)
    assert len(out) == 8 and out[3] is None
    assert runner.step_counts[7][F + "raises_on_marker"] == {"ok": 7, "error": 1}
    assert metrics.logged[f"rewards/{F}raises_on_marker/n_errors"] == 1.0


def test_repeated_judgements_within_a_step_are_cached():
    recs = [Record(id="a", question="q", answer="4")] * 6
    with RewardRunner([RewardSpec(fn="correct")], workers=0) as r:
        comps = [render("x", "4")] * 3 + [render("x", "5")] * 3
        assert r.score(0, comps, recs, step=0) == [1.0] * 3 + [0.0] * 3
        assert r.cache_hits == 4
        r.score(0, comps, recs, step=0)
        assert r.cache_hits == 10  # same step: all cached
        r.score(0, comps, recs, step=1)
        assert r.cache_hits == 14  # new step: the cache starts over
    with RewardRunner([RewardSpec(fn="correct")], workers=0, cache=False) as r:
        r.score(0, comps, recs)
        assert r.cache_hits == 0


def test_in_process_and_pooled_scores_agree(runner, records):
    specs = [RewardSpec(fn="correct"), RewardSpec(fn="format", weight=0.1)]
    comps = [render("a", "4"), render("a", "5"), "<answer>4</answer>", render("a", "4 or 5")]
    with RewardRunner(specs, workers=0) as serial, RewardRunner(specs, workers=1) as pooled:
        for i in range(2):
            assert serial.score(i, comps, records[:4]) == pooled.score(i, comps, records[:4])


def test_close_leaves_no_processes():
    r = RewardRunner([RewardSpec(fn="format")], workers=2)
    procs = [w.proc for w in r._pool._workers]
    r.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(StageError, match="closed"):
        r.score(0, ["x"], [Record(id="a", question="q", answer="1")])


def test_bad_specs_fail_before_training():
    with pytest.raises(RewardError, match="did you mean 'max_len'"):
        RewardRunner([RewardSpec(fn="overlong", kwargs={"max_lenn": 10})], workers=0)
    with pytest.raises(RewardError, match="did you mean 'correct'"):
        RewardRunner([RewardSpec(fn="corect")], workers=0)
    with pytest.raises(RewardError, match="cannot import"):
        RewardRunner([RewardSpec(fn="no_such_module:fn")], workers=0)
