"""benchmarks/bench_labels.py at a few labels: it measures what it says and every label is stored once."""

import pytest

from tests.helpers.benchmarks import load_benchmark


@pytest.mark.slow
def test_bench_labels_counts_every_label_once():
    bench = load_benchmark("bench_labels")
    result = bench.measure(30, clients=2, warmup=3)
    assert result["labels"] == 30 and result["stored_once"] is True
    assert 0 < result["save_ms_p50"] <= result["save_ms_p99"] <= result["save_ms_max"]
    assert result["labels_per_min"] == pytest.approx(30 / result["wall_s"] * 60, rel=0.02)  # wall_s is rounded
