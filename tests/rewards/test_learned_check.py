"""GRPO's check of a learned reward: the held-out accuracy the reward_model stage recorded, and the refusal of a
reward model not shown better than a threshold (rewards/learned.py)."""

import json

from thinktune.rewards.learned import recorded_accuracy, weak_reward_model


def _model(tmp_path, meta=None, held_out=None):
    final = tmp_path / "reward_model" / "final"
    final.mkdir(parents=True)
    if meta is not None:
        (final / "reward_model.json").write_text(json.dumps(meta))
    if held_out is not None:
        (final.parent / "held_out.json").write_text(json.dumps(held_out))
    return final


def test_recorded_accuracy_is_read_from_the_model_then_from_the_stage(tmp_path):
    rec = {"accuracy": 0.8, "accuracy_ci95": [0.7, 0.87], "pairs": 90}
    assert recorded_accuracy(_model(tmp_path / "a", {"instruction": None, "held_out": rec})) == rec
    stage_only = _model(tmp_path / "b", {"instruction": None}, {"accuracy": 0.6, "accuracy_ci95": [0.4, 0.77],
                                                                "pairs": 20, "scores": []})
    assert recorded_accuracy(stage_only) == {"accuracy": 0.6, "accuracy_ci95": [0.4, 0.77], "pairs": 20}
    assert recorded_accuracy(_model(tmp_path / "c")) is None  # trained elsewhere: nothing recorded
    assert recorded_accuracy(_model(tmp_path / "d", {"held_out": "garbage"})) is None


def test_a_reward_model_is_weak_when_its_interval_reaches_the_threshold(tmp_path):
    weak = _model(tmp_path / "w", {"held_out": {"accuracy": 0.548, "accuracy_ci95": [0.434, 0.657], "pairs": 73}})
    why = weak_reward_model(weak, 0.5)
    assert why and "54.8%" in why and "43.4%…65.7%" in why and "73 pairs" in why
    assert "min_reward_model_accuracy=null" in why
    strong = _model(tmp_path / "s", {"held_out": {"accuracy": 0.83, "accuracy_ci95": [0.75, 0.89], "pairs": 150}})
    assert weak_reward_model(strong, 0.5) is None
    assert weak_reward_model(strong, 0.75) is not None  # the lower end must be above the threshold
    assert weak_reward_model(_model(tmp_path / "n"), 0.5) is None  # nothing recorded: nothing to judge by


def test_a_meta_file_that_is_not_an_object_records_nothing(tmp_path):
    final = _model(tmp_path)
    (final / "reward_model.json").write_text("[1, 2]")
    assert recorded_accuracy(final) is None
