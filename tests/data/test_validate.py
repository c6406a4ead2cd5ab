"""validate: every problem reported with file:line and field; never a traceback (table-driven bad rows)."""

import json

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import DataError, Problem, Record, read_records, scan_records
from thinktune.data.sources import SourceSpec, iter_source

GOOD = json.dumps({"id": "ok", "question": "What is 2+2?", "reasoning": "2+2 = 4", "answer": "4"})

# (raw line bytes, expected (kind, field)) — each bad row is placed on line 2, after a good row
CASES = [
    (b"{not json", ("bad_json", None)),
    (b'{"id": "x", "question": "q", "answer": "1"} trailing', ("bad_json", None)),
    (b"[1, 2, 3]", ("not_an_object", None)),
    (b'"just a string"', ("not_an_object", None)),
    (b'{"question": "q", "answer": "1"}', ("missing_field", "id")),
    (b'{"id": "x", "answer": "1"}', ("missing_field", "question")),
    (b'{"id": "x", "question": "q"}', ("missing_field", "answer")),
    (b'{"id": "x", "question": "   ", "answer": "1"}', ("empty_field", "question")),
    (b'{"id": "x", "question": "q", "answer": ""}', ("empty_field", "answer")),
    (b'{"id": "", "question": "q", "answer": "1"}', ("empty_field", "id")),
    (b'{"id": 7, "question": "q", "answer": "1"}', ("not_a_string", "id")),
    (b'{"id": "x", "question": ["q"], "answer": "1"}', ("not_a_string", "question")),
    (b'{"id": "x", "question": "q", "answer": 18}', ("not_a_string", "answer")),
    (b'{"id": "x", "question": "q", "answer": null}', ("missing_field", "answer")),
    (b'{"id": "x", "question": "q", "answer": "1", "reasoning": 5}', ("not_a_string", "reasoning")),
    (b'{"id": "x", "question": "q", "answer": "1", "meta": [1]}', ("wrong_type", "meta")),
    (b'{"id": "x", "question": "q", "answer": "1", "answerable": "maybe"}', ("wrong_type", "answerable")),
    (b'{"id": "x", "question": "q\xff", "answer": "1"}', ("bad_utf8", None)),
    (b'{"id": "ok", "question": "again", "answer": "1"}', ("duplicate_id", "id")),
    (b"[" * 100_000 + b"]" * 100_000, ("row_too_long", None)),
]


@pytest.mark.parametrize("raw, expected", CASES, ids=[c[1][0] + ":" + str(c[1][1]) for c in CASES])
def test_each_bad_row_is_reported_on_its_line(tmp_path, raw, expected):
    f = tmp_path / "d.jsonl"
    f.write_bytes(GOOD.encode() + b"\n" + raw + b"\n" + GOOD.replace('"ok"', '"ok2"').encode() + b"\n")
    items = list(scan_records(f, max_row_bytes=100_000))
    problems = [(line, p) for line, p in items if isinstance(p, Problem)]
    assert [(line, p.kind, p.field) for line, p in problems] == [(2, *expected)], problems
    assert [r.id for _, r in items if isinstance(r, Record)] == ["ok", "ok2"]  # bad row skipped, others kept
    assert str(problems[0][1]).startswith(f"{f}:2: ")
    assert problems[0][1].to_error().line == 2


def test_strict_reader_raises_on_the_same_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(GOOD + "\n{oops\n")
    with pytest.raises(DataError) as e:
        read_records(f)
    assert (e.value.line, str(e.value).split(": ")[0]) == (2, f"{f}:2")


def test_blank_lines_keep_line_numbers_exact(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n\n" + GOOD + "\n\n   \n{oops\n")
    items = list(scan_records(f))
    assert [line for line, _ in items] == [3, 6]


def test_duplicate_reports_first_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join([GOOD, GOOD.replace('"ok"', '"b"'), GOOD]) + "\n")
    (line, p), = [(ln, x) for ln, x in scan_records(f) if isinstance(x, Problem)]
    assert line == 3 and "first on line 1" in p.message


def test_json_array_and_csv_line_numbers(tmp_path):
    j = tmp_path / "d.json"
    j.write_text('[\n  {"id": "a", "question": "q", "answer": "1"},\n  {"id": "b", "question": "", "answer": "1"},\n'
                 '  {"id": "c", "question": "q",\n   "answer": 3}\n]\n')
    got = [(ln, x.field) for ln, x in iter_source(SourceSpec(path=str(j), format="canonical")) if isinstance(x, Problem)]
    assert got == [(3, "question"), (4, "answer")]
    c = tmp_path / "d.csv"
    c.write_text('id,question,answer\na,"multi\nline question",1\nb,,2\nc,q,3,extra\n')
    got = [(ln, x.kind) for ln, x in iter_source(SourceSpec(path=str(c))) if isinstance(x, Problem)]
    assert got == [(4, "empty_field"), (5, "bad_csv")]


def test_cli_validate_reports_and_strict_exit(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(GOOD.encode() + b"\n{bad\n" + b'{"id": 1, "question": "q", "answer": "1"}\n')
    runner = CliRunner()
    res = runner.invoke(app, ["data", "validate", str(f)])
    assert res.exit_code == 0, res.output
    assert f"{f}:2: invalid JSON" in res.output and f"{f}:3: id: must be a string" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["data", "validate", str(f), "--strict"])
    assert res.exit_code == 1
    res = runner.invoke(app, ["data", "validate", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 1 and "file not found" in res.output and "Traceback" not in res.output
