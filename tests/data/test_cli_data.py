"""thinktune data convert / curate / stats / mix / distill from the command line, as a new user runs them."""

import json
from pathlib import Path

from typer.testing import CliRunner

from thinktune.cli import app

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
runner = CliRunner()


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_convert_curate_stats_mix(tmp_path):
    out = tmp_path / "g.jsonl"
    res = runner.invoke(app, ["data", "convert", str(FIX / "gsm8k_test_head5.jsonl"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert len(rows) == 5 and rows[0]["answer"] == "18"
    dup = tmp_path / "dup.jsonl"
    dup.write_text(out.read_text() + json.dumps({**rows[0], "id": "copy"}) + "\n"
                   + json.dumps({**rows[1], "id": "wrong", "answer": "999"}) + "\n")
    cur = tmp_path / "c.jsonl"
    res = runner.invoke(app, ["data", "curate", str(dup), "-o", str(cur), "--against", str(FIX / "math500_head3.jsonl")])
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in _rows(cur)] == [r["id"] for r in rows]
    report = json.loads((tmp_path / "c.jsonl.stats.json").read_text())
    assert report["removed"]["exact_dedupe"]["removed"] == 1
    assert report["removed"]["answer_consistency"]["examples"][0]["id"] == "wrong"
    res = runner.invoke(app, ["data", "stats", str(cur), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["answer_formats"] == {"integer": 5}
    res = runner.invoke(app, ["data", "stats", str(cur)])
    assert res.exit_code == 0 and "per task" in res.output
    mixed = tmp_path / "m.jsonl"
    res = runner.invoke(app, ["data", "mix", "--reasoning", str(cur), "--non-reasoning", str(FIX / "math500_head3.jsonl"),
                              "--ratio", "4:1", "-o", str(mixed)])
    assert res.exit_code == 0, res.output
    assert len(_rows(mixed)) == 6 and "reasoning=5, non_reasoning=1" in res.output


def test_failed_commands_leave_no_output(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    for args in (["convert", str(bad), "-o", str(tmp_path / "o1.jsonl")],
                 ["curate", str(bad), "-o", str(tmp_path / "o2.jsonl"), "--tokenizer", str(tmp_path / "no-such-tok"),
                  "--max-completion-tokens", "10"],
                 ["mix", "--reasoning", str(bad), "--non-reasoning", str(bad), "-o", str(tmp_path / "o3.jsonl"),
                  "--ratio", "x"],
                 ["distill", str(bad), "-o", str(tmp_path / "o4.jsonl"), "--base-url", "http://127.0.0.1:9/v1",
                  "--model", "m"]):
        res = runner.invoke(app, ["data", *args])
        assert res.exit_code == 1, (args, res.output)
        assert "Traceback" not in res.output and "error" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # no output, no temp files


def test_help_for_every_command():
    for cmd in ("validate", "convert", "curate", "sample", "split", "stats", "mix", "distill"):
        res = runner.invoke(app, ["data", cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_validate_detects_the_format_like_every_data_command_and_hints_at_formats(tmp_path):
    # issue 21, point 9: validate defaulted to canonical records while convert/curate/stats auto-detect, so raw
    # GSM8K gave 50 lines of "id: required field is missing" before the hint
    f = tmp_path / "raw.jsonl"
    f.write_text((FIX / "gsm8k_test_head5.jsonl").read_text())
    res = runner.invoke(app, ["data", "validate", str(f)])
    assert res.exit_code == 0 and "5 valid rows, 0 problem(s)" in res.output and "id:" not in res.output
    for cmd in ("validate", "convert", "curate", "stats", "sample", "split"):
        assert _default(cmd, "fmt") == "auto", cmd
    res = runner.invoke(app, ["data", "validate", str(f), "--format", "canonical"])
    assert res.exit_code == 1 and f"{f}:1: id: required field is missing" in res.output and "--format" in res.output


def _default(command: str, param: str):
    import inspect

    from thinktune.cli.data import data_app

    fn = next(c.callback for c in data_app.registered_commands if c.name == command)
    return inspect.signature(fn).parameters[param].default


def test_curate_reports_every_filter_it_ran_even_when_it_removed_nothing(tmp_path):
    out = tmp_path / "c.jsonl"
    res = runner.invoke(app, ["data", "curate", str(FIX / "gsm8k_test_head5.jsonl"), "-o", str(out), "--no-near"])
    assert res.exit_code == 0, res.output
    assert "exact_dedupe: removed 0" in res.output and "answer_consistency: removed 0" in res.output
    assert "near_dedupe" not in res.output  # turned off: not reported
    report = json.loads((tmp_path / "c.jsonl.stats.json").read_text())
    assert list(report["removed"]) == ["exact_dedupe", "answer_consistency"]
    assert report["removed"]["exact_dedupe"] == {"removed": 0, "reasons": {}, "examples": []}
