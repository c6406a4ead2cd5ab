"""GRPO pre-flight: a model whose groups all earn the same reward is refused before training, with the numbers."""

import json

import pytest

from tests.helpers.pipeline import thinktune
from thinktune.errors import StageError
from thinktune.stages.preflight import check

pytestmark = pytest.mark.slow


def test_untrained_model_is_refused_before_grpo_trains(recipe_factory):
    recipe = recipe_factory("pf", sft={"max_steps": 2}, grpo={"preflight": True})
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 1
    assert "pre-flight refused to train" in proc.stderr and "zero reward variance" in proc.stderr
    assert "Traceback" not in proc.stderr
    root = recipe.parent / "runs" / "pf"
    numbers = json.loads((root / "grpo" / "preflight.json").read_text())
    assert numbers["zero_variance_fraction"] == 1.0 and numbers["completions"] == 4 * 4
    # why it refused, and what it saw: every sampled completion with its per-reward scores (issue 21, point 4)
    assert numbers["refused"] and "zero reward variance" in numbers["reasons"][0]
    assert len(numbers["samples"]) == 16 and set(numbers["samples"][0]["rewards"]) == {"correct", "format"}
    assert "grpo/preflight.json" in proc.stderr
    assert not (root / "grpo" / "final").exists() and not list((root / "grpo").glob("checkpoint-*"))


@pytest.mark.parametrize("numbers, refused", [
    ({"truncated_fraction": 0.8, "zero_variance_fraction": 0.5, "groups": 4, "mean_reward": 0.3}, "max_new_tokens"),
    ({"truncated_fraction": 0.1, "zero_variance_fraction": 1.0, "groups": 4, "mean_reward": 0.0}, "zero reward"),
    ({"truncated_fraction": 0.5, "zero_variance_fraction": 0.75, "groups": 4, "mean_reward": 0.4}, None),
])
def test_check_thresholds(numbers, refused):
    if refused is None:
        check(numbers, max_truncated=0.5)
    else:
        with pytest.raises(StageError, match=refused):
            check(numbers, max_truncated=0.5)
