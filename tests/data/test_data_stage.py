"""The recipe's data stage with data.sources: load, split/eval sets, curate, mix, stats.json; failures are clean."""

import json

import pytest
import yaml

from thinktune.config import load_recipe, resolved_dict
from thinktune.errors import RecipeError, StageError
from thinktune.run import execute
from thinktune.stages import data as data_stage

FNS = {"data": data_stage.run_stage, "base": lambda ctx: {}}


def _recipe(tmp_path, data: dict, name="d"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "output_dir": str(tmp_path / "runs"), "model": {"tiny": {}},
                                 "data": data}))
    return load_recipe(p)


def _canon(tmp_path, name, rows):
    f = tmp_path / name
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def test_sources_stage_end_to_end(tmp_path, shared_data):
    rg = {"reasoning_gym": "leg_counting", "size": 100, "kind": "non_reasoning"}
    pytest.importorskip("reasoning_gym")
    r = _recipe(tmp_path, {
        "sources": [{"path": str(shared_data / "gsm8k_train.jsonl"), "limit": 600}, rg],
        "eval_sources": [{"path": str(shared_data / "gsm8k_test.jsonl"), "limit": 200}],
        "curate": {"max_completion_tokens": 400},
        "mix": {"reasoning": 3, "non_reasoning": 1},
    })
    run = execute(r, stage_fns=FNS)
    d = run.stage_dir("data")
    stats = json.loads((d / "stats.json").read_text())
    kept = stats["mix"]["kept"]
    assert kept["reasoning"] == 3 * kept["non_reasoning"] and 90 <= kept["non_reasoning"] <= 100
    assert stats["train"] == 4 * kept["non_reasoning"] and stats["eval"] == 200
    assert stats["curate"]["removed"]["length"]["reasons"] == {"completion_too_long": stats["curate"]["removed"]
                                                              ["length"]["removed"]}
    assert "bytes" in stats["curate"]["notes"][0]  # tiny model: no tokenizer yet, said so
    assert stats["train_stats"]["by_task"]["rg:leg_counting"]["count"] == kept["non_reasoning"]
    train = [json.loads(x) for x in (d / "train.jsonl").read_text().splitlines()]
    assert len(train) == stats["train"] and {t["task"] for t in train} == {"gsm8k", "rg:leg_counting"}


def test_eval_fraction_split_and_decontamination(tmp_path):
    rows = [{"id": f"r{i}", "question": f"Tom has {i} apples and buys {i + 3} more apples at the shop. How many now?",
             "reasoning": f"{i} + {i + 3} = {2 * i + 3}", "answer": str(2 * i + 3)} for i in range(300)]
    rows.append({"id": "bad", "question": "", "answer": "1"})
    r = _recipe(tmp_path, {"sources": [{"path": _canon(tmp_path, "t.jsonl", rows)}], "eval_fraction": 0.2,
                           "curate": {"near_dedupe": False, "decontaminate": False}})
    run = execute(r, stage_fns=FNS)
    stats = json.loads((run.stage_dir("data") / "stats.json").read_text())
    assert stats["bad_rows"]["count"] == 1 and "t.jsonl:301: question" in stats["bad_rows"]["examples"][0]
    assert 30 < stats["eval"] < 90 and stats["train"] + stats["eval"] == 300
    # an eval file holding 3 of the training questions with a word added: those 3 rows go (templated text, so a
    # high threshold: every row shares the number-free n-grams)
    evals = [{"id": f"e{i}", "question": "Today " + rows[i]["question"], "answer": rows[i]["answer"]}
             for i in (5, 50, 150)]
    r = _recipe(tmp_path, {"sources": [{"path": _canon(tmp_path, "t.jsonl", rows[:-1])}],
                           "eval_file": _canon(tmp_path, "e.jsonl", evals),
                           "curate": {"near_dedupe": False, "decontam_threshold": 0.8}}, name="d2")
    run = execute(r, stage_fns=FNS)
    stats = json.loads((run.stage_dir("data") / "stats.json").read_text())
    assert stats["curate"]["removed"]["decontaminate"]["removed"] == 3
    assert {m["id"]: m["eval_ids"][0] for m in stats["curate"]["contamination_matches"]} == {
        "r5": "e5", "r50": "e50", "r150": "e150"}


def test_too_many_drops_fail_cleanly_and_leave_no_data_dir(tmp_path):
    rows = [{"id": f"r{i}", "question": "Same question?", "reasoning": "1 + 1 = 2", "answer": "2"} for i in range(20)]
    r = _recipe(tmp_path, {"sources": [{"path": _canon(tmp_path, "t.jsonl", rows)}],
                           "eval_file": _canon(tmp_path, "e.jsonl", [{"id": "e", "question": "Other?", "answer": "1"}])})
    with pytest.raises(StageError, match="max_drop_fraction"):
        execute(r, stage_fns=FNS)
    assert not (tmp_path / "runs" / "d" / "data" / "train.jsonl").exists()


@pytest.mark.parametrize("data, msg", [
    ({"sources": [{"path": "x.jsonl"}]}, "eval_sources"),
    ({"sources": [{"path": "x.jsonl", "hf": "y"}], "eval_fraction": 0.1}, "exactly one of path, hf"),
    ({"task": {"name": "chain_arith"}, "curate": {}}, "not data.task"),
    ({"sources": [{"path": "x.jsonl", "fromat": "gsm8k"}], "eval_fraction": 0.1}, "did you mean 'format'"),
])
def test_recipe_errors(tmp_path, data, msg):
    with pytest.raises(RecipeError, match=msg):
        _recipe(tmp_path, data)


def test_task_recipe_resolves_without_new_keys(tmp_path):
    r = _recipe(tmp_path, {"task": {"name": "chain_arith", "n_train": 10, "n_eval": 5}})
    assert set(resolved_dict(r)["data"]) == {"task", "train_file", "eval_file", "max_train", "max_eval"}


def _task_recipe(tmp_path, name, **extra):
    return _recipe(tmp_path, {"task": {"name": "chain_arith", "n_train": 400, "n_eval": 20}, **extra}, name=name)


def test_unanswerable_fraction_mixes_abstention_targets(tmp_path):
    run = execute(_task_recipe(tmp_path, "u", unanswerable_fraction=0.25), stage_fns=FNS)
    d = run.stage_dir("data")
    train = [json.loads(x) for x in (d / "train.jsonl").read_text().splitlines()]
    plain = [json.loads(x) for x in (execute(_task_recipe(tmp_path, "p"), stage_fns=FNS).stage_dir("data")
                                     / "train.jsonl").read_text().splitlines()]
    stats = json.loads((d / "stats.json").read_text())
    unans = [t for t in train if not t["answerable"]]
    assert len(train) == len(plain) == 400 and len(unans) == 100
    assert stats["unanswerable"] == {"variant": "unknown_number", "fraction": 0.25, "replaced": 100, "no_variant": 0}
    by_id = {p["id"]: p for p in plain}
    for t in unans:  # each replaces its own source record in place, with an abstention as the SFT target
        src = by_id[t["meta"]["source_id"]]
        assert t["answer"] == "I don't know" and t["reasoning"] and t["meta"]["original_answer"] == src["answer"]
        assert " x" in t["question"] and t["question"].replace(" x", "") != src["question"].replace(" x", "")
    assert [t["id"] for t in train if t["answerable"]] == [p["id"] for p in plain if p["id"] not in
                                                           {u["meta"]["source_id"] for u in unans}]
    assert all(json.loads(x)["answerable"] for x in (d / "eval.jsonl").read_text().splitlines())


def test_unanswerable_fields_leave_old_fingerprints_alone(tmp_path):
    plain = resolved_dict(_task_recipe(tmp_path, "p"))["data"]
    assert "unanswerable_fraction" not in plain and "unanswerable_variant" not in plain
    with pytest.raises(RecipeError, match="unanswerable_variant needs data.unanswerable_fraction"):
        _task_recipe(tmp_path, "bad", unanswerable_variant="question_only")
    with pytest.raises(RecipeError, match="unanswerable_fraction"):
        _task_recipe(tmp_path, "bad2", unanswerable_fraction=1.5)


def test_unanswerable_variant_that_fits_nothing_fails_clearly(tmp_path):
    r = _task_recipe(tmp_path, "q", unanswerable_fraction=0.1, unanswerable_variant="question_only")
    with pytest.raises(StageError, match="could not rewrite any training question"):
        execute(r, stage_fns=FNS)
    assert not (tmp_path / "runs" / "q" / "data").exists()
