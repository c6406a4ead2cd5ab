"""The human-feedback loop end to end at smoke size (experiments/human_feedback.py --scale tiny): SFT, sampled
candidates, labels by scripted annotators, a reward model and GRPO against it, DPO on the same labels. The targets
(reward model ≥ 80 %, both arms above SFT) are for the full size; here every number must be there and agree with
the files it came from."""

import json

import pytest

from tests.helpers.labelling import HUMAN_FEEDBACK
from thinktune.data.labels import label_summary, read_labels


@pytest.mark.slow
def test_human_feedback_loop_at_smoke_size(tmp_path):
    out = tmp_path / "hf"
    # a tiny SFT model: about 1 prompt in 8 gives a right + a wrong candidate (48 gave 6 pairs, too few to hold out)
    summary = HUMAN_FEEDBACK.main(["--out", str(out), "--scale", "tiny", "--prompts", "192"])
    assert json.loads((out / "summary.json").read_text()) == summary

    cands = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 192 == summary["candidates"]["prompts"]
    labels = read_labels(out / "labels.jsonl")
    stats = label_summary(labels)
    assert summary["labels"]["labels"] == len(labels) >= 192
    assert summary["labels"]["pairs"] == stats["pairs"] > 0
    assert {lab["annotator"] for lab in labels} == {"ana", "ben"}
    for lab in labels:  # ana is the careful annotator: she chose the verifier's answer whenever they differed
        verdicts = {c["id"]: c.get("correct") for c in lab["candidates"]}
        if lab["annotator"] == "ana" and lab["choice"] in ("A", "B"):
            assert verdicts[lab["ranking"][0]] and not verdicts[lab["ranking"][1]]

    rlhf, dpo = out / "runs" / "rlhf", out / "runs" / "dpo"
    held = json.loads((rlhf / "reward_model" / "held_out.json").read_text())
    assert summary["reward_model"]["accuracy"] == held["accuracy"] and held["pairs"] > 0
    completions = list((rlhf / "grpo" / "completions").glob("*.jsonl"))
    assert completions and "reward_model" in json.loads(completions[0].read_text().splitlines()[0])["rewards"]
    for arm, run in (("rlhf", rlhf), ("dpo", dpo)):
        models = json.loads((run / "results.json").read_text())["models"]
        assert summary[arm]["sft_accuracy"] == models["sft"]["accuracy"]
        assert summary[arm]["accuracy"] == models["grpo" if arm == "rlhf" else "dpo"]["accuracy"]
        lo, hi = summary[arm]["ci95"]
        assert lo <= summary[arm]["delta"] <= hi
    assert set(summary["targets"]) == {"reward_model_accuracy_ge_0.8", "grpo_rm_over_sft", "dpo_over_sft"}


@pytest.mark.parametrize("scale", ["full", "tiny"])
def test_the_experiments_recipes_are_valid_and_differ_only_where_they_should(tmp_path, scale):
    from tests.helpers.labelling import label_file_by_script, write_candidates
    from thinktune.config import load_recipe
    from thinktune.run import stage_inputs

    write_candidates(tmp_path / "cands.jsonl", 8, xss=False)
    label_file_by_script(tmp_path / "cands.jsonl", tmp_path / "labels.jsonl")
    hf = HUMAN_FEEDBACK
    sft = load_recipe(hf.recipe(tmp_path, "sft", scale, grpo=None, audit=None, report=None))
    rlhf = load_recipe(hf.recipe(tmp_path, "rlhf", scale, report=None,
                                 reward_model={**hf.REWARD_MODEL, "pairs_file": str(tmp_path / "labels.jsonl")},
                                 grpo={"rewards": [{"fn": "reward_model", "weight": 1.0}]}))
    dpo = load_recipe(hf.recipe(tmp_path, "dpo", scale, grpo=None, report=None,
                                dpo={**hf.DPO, "pairs_file": str(tmp_path / "labels.jsonl")}))
    assert sft.stages() == ["data", "base", "sft"]
    assert rlhf.stages() == ["data", "base", "sft", "reward_model", "grpo", "audit"]
    assert dpo.stages() == ["data", "base", "sft", "dpo", "audit"]
    for arm in (rlhf, dpo):  # the arms reuse the SFT run's stages: same fingerprint inputs up to SFT
        for stage in ("data", "base", "sft"):
            assert stage_inputs(arm, stage) == stage_inputs(sft, stage)
    quick = load_recipe(hf.ROOT / "recipes" / "quickstart.yaml")
    if scale == "full":  # the quickstart's own settings, GRPO's reward swapped for the learned one
        assert sft.sft == quick.sft and rlhf.grpo.max_steps == quick.grpo.max_steps
        assert [r.fn for r in rlhf.grpo.rewards] == ["reward_model"]
