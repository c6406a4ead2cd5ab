"""Decoding variants of an experiment arm (TIP, activation steering): audited into ``audit-<variant>/``, their compute
counted, their settings (and the steering vector's bytes) part of the arm's hash. Real stages on a random tiny model
(no training), ~10 s."""

import json

import pytest
import torch

from tests.helpers.experiments import write_experiment
from thinktune.errors import RecipeError
from thinktune.experiments.runner import run_one
from thinktune.experiments.spec import arm_hash, load_experiment
from thinktune.experiments.table import evaluate, load_summaries

AUDIT = {"max_new_tokens": 8, "batch_size": 5, "tests": [], "samples": 2, "pass_k": [1], "temperature": 1.0,
         "bootstrap": 0, "switch_words": ["Compute"]}


def _vector(path, hidden=32, scale=1.0):
    from thinktune.decoding.steering import SteeringVector

    SteeringVector(torch.full((hidden,), scale), layer=1, meta={}).save(path)


def _experiment(tmp_path, arms):
    path = write_experiment(tmp_path, seeds=[0], overrides={"sft": None, "grpo": None, "audit": AUDIT}, arms=arms,
                            metrics=[{"name": "accuracy", "path": "accuracy"},
                                     {"name": "switches", "path": "sampling.switches_per_response"}],
                            criteria=[{"metric": "accuracy", "a": "plain", "b": "steer", "test": "similar",
                                       "tolerance": 1.0}])
    return path


def test_steer_and_tip_arms_audit_their_variant_and_count_its_compute(tmp_path):
    arms = {"plain": {}, "steer": {"steer": {"vector": "experiments/v.steer", "strength": 8.0}},
            "tip": {"tip": {"alpha": 1000.0, "words": ["Compute"]}}}
    path = _experiment(tmp_path, arms)
    _vector(tmp_path / "experiments" / "v.steer")
    exp = load_experiment(path)
    out, results = tmp_path / "runs", tmp_path / "results"
    outcomes = {arm: run_one(exp, arm, 0, out, results) for arm in arms}
    assert {o.status for o in outcomes.values()} == {"done"}, outcomes
    summaries = {arm: json.loads((results / exp.name / f"{arm}-s0.json").read_text()) for arm in arms}
    for arm in ("steer", "tip"):
        s = summaries[arm]
        agg = json.loads((out / exp.name / f"{arm}-s0" / f"audit-{arm}" / "base" / "audit.json").read_text())
        assert arm in agg and agg["variant_seconds"] > 0
        assert s["stages"][f"audit-{arm}"]["seconds"] == agg["variant_seconds"]
        assert s["shared_stages"] == ["data", "base", "audit"]  # same recipe as `plain`: only the variant is new
        assert s["compute_seconds"] == pytest.approx(agg["variant_seconds"], abs=0.1)
        assert s["metrics"]["switches"]["value"] == agg["sampling"]["switches_per_response"]
        assert set(s["audit"]) == {"audit/base", f"audit-{arm}/base"}
    plain = [json.loads(x) for x in (out / exp.name / "plain-s0" / "audit" / "base" / "examples.jsonl")
             .read_text().splitlines()]
    steered = [json.loads(x) for x in (out / exp.name / "steer-s0" / "audit-steer" / "base" / "examples.jsonl")
               .read_text().splitlines()]
    assert [r["completion"] for r in plain] != [r["completion"] for r in steered]  # the hook was active
    assert all(len(r["sampled"]["switches"]) == 2 for r in plain)  # per sampled completion
    # TIP at α = 1000 bans the word in the sampled completions too
    tip = json.loads((out / exp.name / "tip-s0" / "audit-tip" / "base" / "audit.json").read_text())
    assert tip["sampling"]["switches_per_response"] == 0.0
    assert evaluate(load_summaries(exp, results)).verdict in ("reproduced", "not reproduced")

    # the vector's bytes are part of the steer arm's hash: a new vector stales its summary, not the others'
    before = {arm: arm_hash(exp, arm, 0) for arm in arms}
    _vector(tmp_path / "experiments" / "v.steer", scale=2.0)
    after = {arm: arm_hash(exp, arm, 0) for arm in arms}
    assert after["steer"] != before["steer"] and after["plain"] == before["plain"] and after["tip"] == before["tip"]
    assert run_one(exp, "plain", 0, out, results).status == "skipped"
    assert load_summaries(exp, results).stale == ["steer-s0.json"]

    # the audit's sampled completions go through the processors too: force the switch word, count it per sample
    _sampled_switches_follow_the_processors(exp, out / exp.name / "plain-s0")


def _sampled_switches_follow_the_processors(exp, run_root):
    from thinktune.audit.battery import audit_model
    from thinktune.config import AuditStage, FormatConfig
    from thinktune.data.records import read_records
    from thinktune.formatting import CompletionFormat
    from thinktune.models import load_stage_output

    model, tok = load_stage_output(run_root / "base" / "final")
    (word_id,) = tok.encode("Compute", add_special_tokens=False)  # a whole word of the tiny BPE vocabulary
    space_id = tok.encode(" ", add_special_tokens=False)[0]

    def force(input_ids, scores):  # "Compute Compute …": the word, then a space, then the word again
        scores = scores.clone()
        last_is_word = input_ids[:, -1] == word_id
        scores[~last_is_word, word_id] += 1e4
        scores[last_is_word, space_id] += 1e4
        return scores

    records = read_records(run_root / "data" / "eval.jsonl")[:3]
    cfg = AuditStage(**{**AUDIT, "max_new_tokens": 4})
    agg, rows = audit_model(model, tok, records, cfg, CompletionFormat(**FormatConfig().model_dump()),
                            logits_processors=[force])
    assert [r["sampled"]["switches"] for r in rows] == [[2, 2]] * 3, rows[0]["sampled"]  # 4 tokens: 2 words
    assert agg["sampling"]["switches_per_response"] == 2.0 and agg["sampling"]["switching_responses"] == 1.0


def test_an_arm_with_two_variants_or_a_missing_vector_is_refused(tmp_path):
    both = {"plain": {}, "steer": {"tip": {"alpha": 3.0}, "steer": {"vector": "experiments/v.steer", "strength": 1.0}}}
    with pytest.raises(RecipeError, match="at most one decoding variant"):
        load_experiment(_experiment(tmp_path, both))
    missing = {"plain": {}, "steer": {"steer": {"vector": "experiments/nowhere.steer", "strength": 1.0}}}
    with pytest.raises(RecipeError, match=r"arms\.steer\.steer\.vector: experiments/nowhere\.steer not found"):
        load_experiment(_experiment(tmp_path, missing))
