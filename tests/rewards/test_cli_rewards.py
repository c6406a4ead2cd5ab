"""`thinktune rewards score` and `thinktune rewards probe`, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.formatting import render

RUN = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows() -> list[dict]:
    base = {"question": "What is 2 + 3?", "answer": "5"}
    return [
        {"id": "a", **base, "completion": render("2 + 3 = 5", "5")},
        {"id": "b", **base, "completion": render("2 + 3 = 6", "6")},
        {"id": "c", **base, "completion": "<answer>5</answer>"},
        {"id": "d", **base, "completion": render("2 + 3 = 5", "5 or 6")},
    ]


def test_score_writes_one_row_per_completion(tmp_path):
    src = write_rows(tmp_path / "outs.jsonl", rows())
    res = RUN.invoke(app, ["rewards", "score", str(src), "--rewards", "correct,format", "-o", str(tmp_path / "s.jsonl")])
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert got == [{"id": "a", "correct": 1.0, "format": 1.0}, {"id": "b", "correct": 0.0, "format": 1.0},
                   {"id": "c", "correct": 0.0, "format": 0.0}, {"id": "d", "correct": 0.0, "format": 1.0}]
    assert "0.250" in res.output and "0.750" in res.output  # the summary table's means


def test_score_with_settings_and_custom_rewards(tmp_path):
    src = write_rows(tmp_path / "outs.jsonl", [{"id": "x", "question": "q", "answer": "7",
                                               "completion": "so the answer is \\boxed{7}"}])
    res = RUN.invoke(app, ["rewards", "score", str(src), "-r", "correct,tests.helpers.faulty_rewards:returns_none",
                           "--set", "correct.extractor=boxed", "-o", str(tmp_path / "s.jsonl"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s.jsonl").read_text()) == {"id": "x", "correct": 1.0,
                                                              "tests.helpers.faulty_rewards:returns_none": None}


def test_score_reports_bad_rows_with_their_line(tmp_path):
    bad = rows()[:1] + [{"id": "z", "question": "q", "answer": "1"}]
    src = write_rows(tmp_path / "outs.jsonl", bad)
    res = RUN.invoke(app, ["rewards", "score", str(src), "-o", str(tmp_path / "s.jsonl"), "--workers", "0"])
    assert res.exit_code == 1
    flat = " ".join(res.output.split())
    assert "outs.jsonl:2: completion: missing" in flat.replace(": \n", ": ") and "Traceback" not in flat
    assert not (tmp_path / "s.jsonl").exists()


def test_score_rejects_unknown_rewards_and_settings(tmp_path):
    src = write_rows(tmp_path / "outs.jsonl", rows())
    out = str(tmp_path / "s.jsonl")
    res = RUN.invoke(app, ["rewards", "score", str(src), "-r", "corect", "-o", out, "--workers", "0"])
    assert res.exit_code == 1 and "did you mean 'correct'" in res.output
    res = RUN.invoke(app, ["rewards", "score", str(src), "-r", "correct", "--set", "correct.extractr=boxed", "-o", out,
                           "--workers", "0"])
    assert res.exit_code == 1 and "did you mean 'extractor'" in res.output


def test_probe_passes_the_default_rewards(tmp_path):
    res = RUN.invoke(app, ["rewards", "probe", "--rewards", "correct,format=0.1", "--items", "3", "--workers", "0",
                           "--json", str(tmp_path / "probes.json")])
    assert res.exit_code == 0, res.output
    assert "reward probes passed" in res.output and "hedged_or" in res.output
    report = json.loads((tmp_path / "probes.json").read_text())
    assert report["violations"] == [] and report["items"] == 3


def test_probe_fails_a_hackable_reward():
    res = RUN.invoke(app, ["rewards", "probe", "--rewards", "tests.helpers.faulty_rewards:substring_match", "--items", "2",
                           "--workers", "0"])
    assert res.exit_code == 1
    assert "VIOLATION" in res.output and "reward probes failed" in res.output


def test_probe_reads_a_recipe_and_its_task(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: probe-test\n"
        f"output_dir: {tmp_path / 'runs'}\n"
        "model: {tiny: {}}\n"
        "data: {task: {name: chain_arith, n_train: 50, n_eval: 10}}\n"
        "grpo:\n  rewards:\n    - {fn: correct}\n    - {fn: format, weight: 0.1}\n    - {fn: overlong, weight: 0.5}\n"
    )
    res = RUN.invoke(app, ["rewards", "probe", str(recipe), "--items", "3"])
    assert res.exit_code == 0, res.output
    assert "task chain_arith" in res.output and "overlong" in res.output


def test_probe_needs_rewards():
    res = RUN.invoke(app, ["rewards", "probe"])
    assert res.exit_code == 1 and "RECIPE or --rewards" in res.output
