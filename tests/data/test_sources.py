"""Loaders: formats (GSM8K, MATH, canonical), file types, field mapping, datasets dirs, reasoning-gym."""

import json
from pathlib import Path

import pytest

from thinktune.data.records import DataError, Problem
from thinktune.data.sources import SourceSpec, iter_source, load_records, split_gsm8k

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def test_gsm8k_format_from_fixture():
    recs, problems = load_records(SourceSpec(path=str(FIX / "gsm8k_test_head5.jsonl")))
    assert not problems and len(recs) == 5
    r = recs[0]
    assert (r.id, r.answer, r.task) == ("gsm8k-test-head5-0", "18", "gsm8k")
    assert "<<" not in r.reasoning and "####" not in r.reasoning
    assert r.reasoning.startswith("Janet sells 16 - 3 - 4 = 9 duck eggs a day.")
    keep = load_records(SourceSpec(path=str(FIX / "gsm8k_test_head5.jsonl"), strip_calculator=False))[0][0]
    assert "<<16-3-4=9>>" in keep.reasoning


@pytest.mark.parametrize("solution, expected", [
    ("a = 2\n#### 1,000", ("a = 2", "1000")),
    ("x <<1+1=2>>2\n#### -3", ("x 2", "-3")),
    ("no answer line", None),
    ("ends with marker ####", None),
])
def test_split_gsm8k(solution, expected):
    assert split_gsm8k(solution) == expected


def test_math_format_takes_boxed_and_unique_id():
    recs, _ = load_records(SourceSpec(path=str(FIX / "math500_head3.jsonl")))
    assert recs[0].id == "test/precalculus/807.json"
    assert recs[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert recs[0].task == "math" and recs[0].meta["subject"] == "Precalculus"


def test_real_gsm8k_and_math500_load_completely(shared_data):
    for name, n in (("gsm8k_train.jsonl", 7473), ("gsm8k_test.jsonl", 1319), ("math500_test.jsonl", 500)):
        recs, problems = load_records(SourceSpec(path=str(shared_data / name)), strict=False)
        assert (len(recs), problems) == (n, []), name
    recs, _ = load_records(SourceSpec(path=str(shared_data / "gsm8k_train.jsonl")))
    assert sum("," in r.answer for r in recs) == 0  # 79 thousands separators removed


def test_field_mapping_and_meta(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"uid": 3, "prompt": "Q?", "gold": "5", "cot": "2+3 = 5", "src": "x"}) + "\n")
    recs, (p,) = load_records(SourceSpec(path=str(f), format="canonical", fields={"id": "uid", "question": "prompt",
                                        "answer": "gold", "reasoning": "cot"}), strict=False)
    assert recs == [] and (p.line, p.field, p.kind) == (1, "id", "not_a_string")  # canonical: types stay strict
    f.write_text(json.dumps({"uid": "u3", "prompt": "Q?", "gold": "5", "cot": "2+3 = 5", "src": "x"}) + "\n")
    (r,), _ = load_records(SourceSpec(path=str(f), fields={"id": "uid", "question": "prompt", "answer": "gold",
                                                           "reasoning": "cot"}))
    assert (r.id, r.question, r.answer, r.reasoning, r.meta) == ("u3", "Q?", "5", "2+3 = 5", {"src": "x"})


def test_csv_parquet_json_and_datasets_dir_agree(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i}+1?", "answer": str(i + 1), "reasoning": f"{i}+1 = {i + 1}"} for i in range(5)]
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}, indent=1))
    with open(tmp_path / "d.csv", "w") as fh:
        fh.write("question,answer,reasoning\n" + "".join(f'"{r["question"]}",{r["answer"]},{r["reasoning"]}\n' for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "dsdir"))
    got = {}
    for name in ("d.json", "d.csv", "d.parquet", "dsdir"):
        recs, problems = load_records(SourceSpec(path=str(tmp_path / name), id_prefix="x"))
        assert not problems, (name, problems)
        got[name] = [(r.id, r.question, r.answer, r.reasoning) for r in recs]
    assert len({json.dumps(v) for v in got.values()}) == 1
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pq" / "train.parquet")
    for hf in (tmp_path / "pq", tmp_path / "dsdir"):  # datasets.load_dataset on a local dir; a save_to_disk dir
        recs, _ = load_records(SourceSpec(hf=str(hf), id_prefix="x"))
        assert [(r.id, r.question, r.answer, r.reasoning) for r in recs] == got["d.json"]


def test_unopenable_sources_raise_located_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        list(iter_source(SourceSpec(path=str(tmp_path / "nope.jsonl"))))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type"):
        list(iter_source(SourceSpec(path=str(tmp_path / "x.txt"))))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    (_, p), = list(iter_source(SourceSpec(path=str(tmp_path / "bad.parquet"))))
    assert isinstance(p, Problem) and p.kind == "bad_parquet"


def test_reasoning_gym_source_is_graded_by_its_scorer():
    pytest.importorskip("reasoning_gym")
    from thinktune.data.answers import grade

    recs, _ = load_records(SourceSpec(reasoning_gym="leg_counting", size=5, seed=3))
    again, _ = load_records(SourceSpec(reasoning_gym="leg_counting", size=5, seed=3))
    assert [r.model_dump() for r in recs] == [r.model_dump() for r in again]  # deterministic
    assert all(r.task == "rg:leg_counting" for r in recs)
    assert all(grade(r, r.answer) for r in recs)
    assert not any(grade(r, str(int(r.answer) + 1)) for r in recs)
    with pytest.raises(DataError, match="no_such_dataset"):
        load_records(SourceSpec(reasoning_gym="no_such_dataset"))
