"""`thinktune data sample|split` (issue 21, point 8): `convert --limit` took the first N rows, so a newcomer's
"300-item split" was the file's head. Samples are seeded, in input order, and keep a mix's proportions when asked."""

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import Record, read_records, write_jsonl
from thinktune.data.split import choose, resolve_count

FIXTURE = "tests/fixtures/data/gsm8k_test_head5.jsonl"


def mixed(n_a=60, n_b=30, n_c=10):
    return [Record(id=f"{t}-{i}", question=f"q {t} {i}", answer=str(i), task=t, meta={"n_ops": i % 3 + 1})
            for t, n in (("a", n_a), ("b", n_b), ("c", n_c)) for i in range(n)]


def test_choose_is_seeded_in_input_order_and_not_the_head():
    recs = mixed()
    first, again, other = choose(recs, 20, seed=0), choose(recs, 20, seed=0), choose(recs, 20, seed=1)
    assert first == again == sorted(first) and first != other and len(set(first)) == 20
    assert first != list(range(20))


@pytest.mark.parametrize("keys, expected", [(["task"], {"a": 12, "b": 6, "c": 2}),
                                            (["difficulty"], {"1": 7, "2": 7, "3": 6})])
def test_stratified_draws_keep_each_stratum_share(keys, expected):
    recs = mixed()
    idx = choose(recs, 20, seed=3, stratify=keys)
    key = (lambda r: r.task) if keys == ["task"] else (lambda r: str(r.meta["n_ops"]))
    assert dict(Counter(key(recs[i]) for i in idx)) == expected


def test_sizes_and_errors():
    assert resolve_count(0.1, 95) == 10 and resolve_count(300, 7473) == 300
    with pytest.raises(ValueError):
        resolve_count(2.5, 10)
    with pytest.raises(ValueError, match="cannot draw 11 of 10"):
        choose(mixed(5, 3, 2), 11)


def test_cli_sample_and_split_read_raw_gsm8k(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "sample", FIXTURE, "-n", "3", "-o", str(tmp_path / "s.jsonl"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    sample = read_records(tmp_path / "s.jsonl")
    assert len(sample) == 3 and all(r.task == "gsm8k" and r.answer for r in sample)
    res = runner.invoke(app, ["data", "split", FIXTURE, "--eval", "0.4", "--train-out", str(tmp_path / "tr.jsonl"),
                              "--eval-out", str(tmp_path / "ev.jsonl")])
    assert res.exit_code == 0, res.output
    train, held = read_records(tmp_path / "tr.jsonl"), read_records(tmp_path / "ev.jsonl")
    assert (len(train), len(held)) == (3, 2) and not {r.id for r in train} & {r.id for r in held}
    assert "wrote 3 training records" in " ".join(res.output.split())


def test_cli_split_refusals_are_one_line_and_write_nothing(tmp_path):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, mixed(4, 0, 0))
    runner = CliRunner()
    for args, fragment in ((["--eval", "4"], "leaves no training rows"), (["--eval", "9"], "cannot draw 9 of 4"),
                           (["--eval", "1", "--stratify", "colour"], "unknown stratification key 'colour'")):
        res = runner.invoke(app, ["data", "split", str(data), *args, "--train-out", str(tmp_path / "t.jsonl"),
                                  "--eval-out", str(tmp_path / "e.jsonl")], env={"COLUMNS": "200"})
        assert res.exit_code == 1 and fragment in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "e.jsonl").exists()
    assert json.loads(data.read_text().splitlines()[0])["id"] == "a-0"
