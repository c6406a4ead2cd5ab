"""Hostile data files (issue 20): validate / convert / curate agree, every bad row is located, nothing crashes,
and a killed curate leaves nothing behind that the next command does not clean up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import DataError, read_records

runner = CliRunner()
GOOD = {"id": "g1", "question": "What is 2 + 3?", "reasoning": "2 + 3 = 5", "answer": "5"}
GOOD2 = {"id": "g2", "question": "What is 4 + 4?", "reasoning": "4 + 4 = 8", "answer": "8"}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def put(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def three_commands(tmp_path: Path, src: Path):
    """validate, convert and curate on one file: (results, rows written by convert, rows written by curate)."""
    v = cli("data", "validate", src, "--format", "auto")
    c = cli("data", "convert", src, "-o", tmp_path / "conv.jsonl")
    k = cli("data", "curate", src, "-o", tmp_path / "cur.jsonl", "--no-consistency")
    rows = lambda p: [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else None  # noqa: E731
    return (v, c, k), rows(tmp_path / "conv.jsonl"), rows(tmp_path / "cur.jsonl")


@pytest.mark.parametrize("first", [[1, 2, 3], "just a string", 42, None])
def test_a_first_row_that_is_not_an_object_is_a_located_problem_everywhere(tmp_path, first):
    """validate exited 0 while convert / curate crashed with a TypeError traceback."""
    src = put(tmp_path, "d.jsonl", jsonl(json.dumps(first), GOOD, GOOD2))
    results, converted, curated = three_commands(tmp_path, src)
    for r in results:
        assert r.exit_code == 0, r.output
        assert "d.jsonl:1: expected" in r.output, r.output
    assert [r["id"] for r in converted] == [r["id"] for r in curated] == ["g1", "g2"]


def test_a_5000_digit_integer_is_a_located_problem_not_a_crash(tmp_path):
    row = '{"id": "big", "question": "q?", "answer": "1", "meta": {"n": ' + "9" * 5000 + "}}"
    src = put(tmp_path, "d.jsonl", jsonl(row, GOOD, GOOD2))
    results, converted, curated = three_commands(tmp_path, src)
    for r in results:
        assert r.exit_code == 0 and "d.jsonl:1: invalid JSON: an integer has more than" in r.output, r.output
    assert [r["id"] for r in converted] == ["g1", "g2"]
    with pytest.raises(DataError, match=r"d.jsonl:1: invalid JSON: an integer has more than"):
        read_records(src)  # a recipe's train_file


def test_meta_nested_500_deep_is_reported_by_validate_and_does_not_crash_convert(tmp_path):
    deep: dict = {}
    cur = deep
    for _ in range(500):
        cur["x"] = {}
        cur = cur["x"]
    src = put(tmp_path, "d.jsonl", jsonl({**GOOD, "id": "deep", "meta": deep}, GOOD, GOOD2))
    results, converted, curated = three_commands(tmp_path, src)
    for r in results:
        assert r.exit_code == 0 and "d.jsonl:1:" in r.output and "nested deeper than" in r.output, r.output
    assert [r["id"] for r in converted] == [r["id"] for r in curated] == ["g1", "g2"]
    with pytest.raises(DataError, match="nested deeper than"):
        read_records(src)


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.jsonl", b"", "the input is empty"),
    ("blank.jsonl", b"  \n\n\t\n", "the input is empty"),
    ("u16.jsonl", jsonl(GOOD, GOOD2).encode("utf-16"), "UTF-16"),
    ("scalar.json", b"42", "expected a JSON array"),
    ("scalar.jsonl", b"42\n", "expected an object, got int"),
    ("empty.json", b"", "the file is empty"),
])
def test_curate_of_an_input_without_a_valid_row_fails_and_writes_nothing(tmp_path, name, content, fragment):
    """curate exited 0 with an empty output for each of these."""
    src = put(tmp_path, name, content)
    out = tmp_path / "out.jsonl"
    r = cli("data", "curate", src, "-o", out)
    assert r.exit_code == 1 and "no valid rows" in r.output and fragment in r.output, r.output
    assert not out.exists() and not (tmp_path / "out.jsonl.stats.json").exists()
    assert sorted(os.listdir(tmp_path)) == [name]


def test_a_csv_field_over_128_kb_is_read_and_one_over_the_row_limit_is_located(tmp_path):
    """One CSV field over Python's 128 KB default rejected the whole file without a line."""
    src = put(tmp_path, "d.csv", f"id,question,answer\na,{'x' * 200_000},1\nb,short?,2\n")
    r = cli("data", "convert", src, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == ["a", "b"]
    src = put(tmp_path, "e.csv", f"id,question,answer\nb,short?,2\na,{'x' * 2_000_000},1\n")
    r = cli("data", "validate", src, "--format", "auto")
    assert "e.csv:3:" in r.output and "longer than" in r.output, r.output


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_located_problems_not_silent_nulls(tmp_path, token):
    row = '{"id": "n", "question": "q?", "answer": "1", "meta": {"score": ' + token + "}}"
    src = put(tmp_path, "d.jsonl", jsonl(row, GOOD))
    results, converted, curated = three_commands(tmp_path, src)
    for r in results:
        assert "d.jsonl:1:" in r.output and f"{token.lstrip('-')} is not valid JSON" in r.output, r.output
    assert [r["id"] for r in converted] == ["g1"]  # never {"score": null}
    with pytest.raises(DataError, match="d.jsonl:1:"):
        read_records(src)
    src = put(tmp_path, "d.json", "[" + row + ", " + json.dumps(GOOD) + "]")
    r = cli("data", "convert", src, "-o", tmp_path / "j.jsonl")
    assert "d.json:1:" in r.output and "not valid JSON" in r.output


def test_a_json_file_whose_kind_data_precedes_the_data_array(tmp_path):
    """{"kind": "data", "data": [...]}: the re-scan found the string "data" and misread the file."""
    src = put(tmp_path, "d.json", json.dumps({"kind": "data", "tags": ["x", "y"], "note": {"data": [1]},
                                              "data": [GOOD, GOOD2]}, indent=1))
    r = cli("data", "convert", src, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["id"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == ["g1", "g2"]


KILLER = textwrap.dedent("""
    import importlib, os, signal, sys
    target = importlib.import_module("{module}")
    real = target.{attr}
    calls = []
    def dying(*a, **k):
        calls.append(1)
        if len(calls) == {nth}:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    target.{attr} = dying
    from thinktune.cli import app
    sys.argv = ["thinktune", *sys.argv[1:]]
    app()
""")


def _killed_curate(tmp_path: Path, src: Path, out: Path, module: str, attr: str, nth: int) -> int:
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(module=module, attr=attr, nth=nth))
    proc = subprocess.run([sys.executable, str(script), "data", "curate", str(src), "-o", str(out), "--no-near",
                           "--no-consistency"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode


def test_a_killed_curate_leaves_no_temp_after_the_next_command_and_never_pairs_new_output_with_old_stats(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    rows_old = [{**GOOD, "id": f"old{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(30)]
    rows_new = [{**GOOD, "id": f"new{i}", "question": f"What is {i} + 2?", "answer": str(i + 2)} for i in range(40)]
    old_src, new_src = put(tmp_path, "old.jsonl", jsonl(*rows_old)), put(tmp_path, "new.jsonl", jsonl(*rows_new))
    out, stats = work / "out.jsonl", work / "out.jsonl.stats.json"
    assert cli("data", "curate", old_src, "-o", out, "--no-consistency", "--no-near").exit_code == 0
    old_out, old_stats = out.read_bytes(), stats.read_bytes()
    # killed while the stats are computed (outputs written to temps) and between the renames of the commit
    for module, attr, nth in (("thinktune.data.stats", "compute_stats", 1), ("os", "replace", 1), ("os", "replace", 2)):
        code = _killed_curate(tmp_path, new_src, out, module, attr, nth)
        assert code == -9
        if out.read_bytes() == old_out:  # the old output intact, with its own stats (or none)
            assert not stats.exists() or stats.read_bytes() == old_stats
        else:  # the new output is complete; its stats are the new ones or absent, never the old ones
            assert len(out.read_text().splitlines()) == 40
            assert not stats.exists() or json.loads(stats.read_text())["train"] == 40
        assert cli("data", "curate", new_src, "-o", out, "--no-consistency", "--no-near").exit_code == 0
        assert sorted(os.listdir(work)) == ["out.jsonl", "out.jsonl.stats.json"], os.listdir(work)
        assert json.loads(stats.read_text())["train"] == 40
        assert cli("data", "curate", old_src, "-o", out, "--no-consistency", "--no-near").exit_code == 0
        assert out.read_bytes() == old_out
