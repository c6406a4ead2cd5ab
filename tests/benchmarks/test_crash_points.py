"""benchmarks/crash_points.py on fewer kill points and smaller inputs (the full count, 20 per command, is what the
script runs by default; its last full runs are in docs/HARDENING.md): every check passes for curate, run, report."""

from __future__ import annotations

import random

import pytest

from tests.helpers.benchmarks import load_benchmark

crash = load_benchmark("crash_points")


def test_curate_kill_points(tmp_path):
    lines: list[str] = []
    assert crash.curate_points(tmp_path, 4, random.Random(1), lines.append, sizes=(800, 1200)) == [], lines
    assert len(lines) == 4 and all(line.endswith("ok") for line in lines), lines


@pytest.mark.slow
def test_run_and_report_kill_points(tmp_path):
    lines: list[str] = []
    assert crash.run_points(tmp_path, 3, random.Random(2), lines.append) == [], lines
    assert crash.report_points(tmp_path, 2, random.Random(3), lines.append) == [], lines
    assert sum("point" in line for line in lines) == 5


def test_leftovers_finds_what_a_kill_leaves(tmp_path):
    (tmp_path / "a" / ".final.tmp").mkdir(parents=True)
    (tmp_path / ".out.jsonl.ttabcdef-12.x1.tmp").write_text("")
    (tmp_path / ".sft.old").mkdir()
    (tmp_path / "fine.jsonl").write_text("")
    assert sorted(crash.leftovers(tmp_path)) == [".out.jsonl.ttabcdef-12.x1.tmp", ".sft.old", "a/.final.tmp"]
