"""sft.stop_at: SFT stops at the first validation check that reaches the threshold; the validation items are held
out of SFT; a threshold never reached runs to max_steps."""

import json
from types import SimpleNamespace

import pytest

from thinktune.config import SFTStage
from thinktune.stages.callbacks import StopAtAccuracy
from tests.helpers.pipeline import reduced_recipe, thinktune


class Scripted(StopAtAccuracy):
    """The callback with its generation replaced by a scripted accuracy per check."""

    def __init__(self, accuracies, tmp_path, **kw):
        self.accuracies = iter(accuracies)
        self.path, self.every, self._last = tmp_path / "metrics.jsonl", 5, -1
        self.threshold, self.stopped_at, self.last_accuracy = kw["threshold"], None, None

    def _evaluate(self, model, step):
        self.last_accuracy = next(self.accuracies)


def test_stops_at_the_first_check_that_reaches_the_threshold(tmp_path):
    cb = Scripted([0.1, 0.45, 0.5, 0.7], tmp_path, threshold=0.5)
    control = SimpleNamespace(should_training_stop=False)
    stopped = []
    for step in range(1, 21):
        cb.on_step_end(None, SimpleNamespace(global_step=step, is_world_process_zero=True), control, model=object())
        if control.should_training_stop:
            stopped.append(step)
            break
    assert stopped == [15] and cb.stopped_at == 15 and cb.last_accuracy == 0.5  # checks at 5, 10, 15


def test_config_is_left_out_of_the_fingerprint_when_unset_and_validated():
    assert "stop_at" not in SFTStage().model_dump()
    assert SFTStage(stop_at={"accuracy": 0.5}).model_dump()["stop_at"] == {"accuracy": 0.5, "items": 200, "every": 25}
    for bad in ({"accuracy": 0}, {"accuracy": 1.5}, {"accuracy": 0.5, "items": 0}):
        with pytest.raises(Exception, match="stop_at"):
            SFTStage(stop_at=bad)


@pytest.mark.slow
def test_validation_items_are_held_out_and_an_unreached_threshold_runs_to_max_steps(tmp_path):
    recipe = reduced_recipe(tmp_path, "stop", grpo=None, audit=None, report=None,
                            sft={"stop_at": {"accuracy": 1.0, "items": 50, "every": 8}, "lr_scheduler": "constant"})
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "runs" / "stop"
    result = json.loads((root / "manifest.json").read_text())["stages"]["sft"]["result"]
    n_train = sum(1 for _ in (root / "data" / "train.jsonl").open())
    assert result["examples"] == n_train - 50 and result["valid_items"] == 50
    assert result["stopped_at_step"] is None and result["steps"] == 24  # never reached 100 %: ran to the cap
    checks = [json.loads(line) for line in (root / "sft" / "metrics.jsonl").open() if "valid_accuracy" in line]
    assert [c["step"] for c in checks] == [8, 16, 24] and all(c["valid_items"] == 50 for c in checks)
