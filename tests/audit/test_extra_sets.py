"""audit.extra_sets: more held-out sets evaluated greedily next to data/eval.jsonl, each model on each set, with
paired changes in results.json (the paraphrase set of recipes/data/ is the use case: a gain that is only template
memorisation shows as a gap between the standard and the reworded set)."""

import json

import pytest
import yaml

from tests.helpers.pipeline import ROOT, reduced_recipe, thinktune
from thinktune.config import AuditStage, resolved_dict
from thinktune.data.records import read_records

PARAPHRASES = ROOT / "recipes" / "data" / "chain_arith_paraphrases.jsonl"


@pytest.mark.slow
def test_extra_set_is_audited_for_every_model_with_paired_changes(tmp_path):
    subset = tmp_path / "reworded.jsonl"
    subset.write_text("".join(PARAPHRASES.read_text().splitlines(keepends=True)[:12]))
    recipe = reduced_recipe(tmp_path, "xs", grpo=None, report=None, audit={"extra_sets": {"reworded": str(subset)}})
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "runs" / "xs"
    res = json.loads((root / "results.json").read_text())
    st = res["sets"]["reworded"]
    assert st["file"] == str(subset) and st["items"] == 12
    assert list(st["models"]) == ["base", "sft"]
    ids = {r.id for r in read_records(subset)}
    for model, m in st["models"].items():
        rows = [json.loads(x) for x in (root / "audit" / model / "sets" / "reworded" / "examples.jsonl").open()]
        assert {r["id"] for r in rows} == ids  # the set's own items, not the eval items
        assert m["accuracy"] == pytest.approx(sum(bool(r["correct"]) for r in rows) / len(rows))
    (change,) = st["changes"]
    assert (change["before"], change["after"], change["n"]) == ("base", "sft", 12)
    assert change["delta"] == pytest.approx(st["models"]["sft"]["accuracy"] - st["models"]["base"]["accuracy"])
    assert "reworded (12 items" in proc.stdout  # the CLI prints the set's accuracies and changes


def test_extra_sets_validation_and_fingerprint_neutrality(tmp_path):
    with pytest.raises(ValueError, match="extra set name 'Bad Name'"):
        AuditStage(extra_sets={"Bad Name": "x.jsonl"})
    assert "extra_sets" not in AuditStage().model_dump()  # unset: resolved recipes (and fingerprints) unchanged
    assert "untagged_chains" not in AuditStage().model_dump()  # the same for the later switch, while off
    assert AuditStage(untagged_chains=True).model_dump()["untagged_chains"] is True
    recipe = reduced_recipe(tmp_path, "fp")
    from thinktune.config import load_recipe

    assert "extra_sets" not in resolved_dict(load_recipe(recipe))["audit"]


def test_a_bad_extra_set_fails_before_any_model_is_audited(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n{"id": "a", "question": "2+2?", "answer": "4"}\n')
    recipe = reduced_recipe(tmp_path, "bx", sft={"max_steps": 2, "save_steps": 2}, grpo=None, report=None,
                            audit={"extra_sets": {"bad": str(bad)}})
    proc = thinktune("run", str(recipe))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "bad.jsonl:2: id: duplicate id" in proc.stderr  # file, line, field
    assert not (tmp_path / "runs" / "bx" / "audit").exists() and not (tmp_path / "runs" / "bx" / "results.json").exists()
