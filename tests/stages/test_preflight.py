"""GRPO pre-flight: a model whose groups all earn the same reward is refused before training, with the numbers."""

import json

import pytest

from tests.helpers.pipeline import thinktune
from thinktune.errors import StageError
from thinktune.stages.preflight import check




@pytest.mark.slow
def test_untrained_model_is_refused_before_grpo_trains(recipe_factory):
    recipe = recipe_factory("pf", sft={"max_steps": 2}, grpo={"preflight": True})
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 1
    assert "pre-flight refused to train" in proc.stderr and "zero reward variance" in proc.stderr
    assert "Traceback" not in proc.stderr
    root = recipe.parent / "runs" / "pf"
    numbers = json.loads((root / "grpo" / "preflight.json").read_text())
    # no group with variance: 4 rounds of 4 fresh prompts each were sampled before refusing
    assert numbers["zero_variance_fraction"] == 1.0 and numbers["rounds"] == 4 and numbers["completions"] == 16 * 4
    # why it refused, and what it saw: every sampled completion with its per-reward scores (issue 21, point 4)
    assert numbers["refused"] and any("zero reward variance" in r for r in numbers["reasons"])
    assert len(numbers["samples"]) == 64 and set(numbers["samples"][0]["rewards"]) == {"correct", "format"}
    assert [s["round"] for s in numbers["samples"][::16]] == [0, 1, 2, 3]
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


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class _Rewards:
    """Scores a completion by the number it names: 'c1' -> 1.0 (right), 'c0' -> 0.0 (wrong)."""

    def score(self, i, texts, owners):
        return [float(t.endswith("1")) for t in texts]


def _cfg():
    from types import SimpleNamespace

    return SimpleNamespace(preflight_groups=4, samples_per_prompt=8, max_new_tokens=96, temperature=0.8,
                           rewards=[SimpleNamespace(weight=1.0)])


@pytest.mark.parametrize("outcomes, rounds, refused", [
    # item -> its 8 samples' outcomes; items 0-3 are the first round
    ({0: "1" * 8, 1: "1" * 8, 2: "1" * 8, 3: "0" * 8, 5: "11110000"}, 2, False),  # 3 right, 1 wrong, then variance
    ({}, 4, True),  # every sample wrong in 16 groups: refused
    ({0: "10101010"}, 1, False),  # variance in the first round: one round, as before
])
def test_preflight_samples_more_groups_before_refusing(monkeypatch, outcomes, rounds, refused):
    from types import SimpleNamespace

    from thinktune.stages import preflight as pf

    records = [SimpleNamespace(question=f"q{i}", id=str(i)) for i in range(40)]
    index = {f"q{i}": i for i in range(40)}
    monkeypatch.setattr(pf, "chat_prompt", lambda tok, q, *a: q)
    monkeypatch.setattr(pf, "generate_texts", lambda m, t, prompts, params, batch_size: [
        [f"c{outcomes.get(index[p], '0' * 8)[k]}" for k in range(8)] for p in prompts])
    numbers = pf.preflight(None, _Tok(), records, _cfg(), _Rewards())
    assert numbers["rounds"] == rounds and numbers["groups"] == 4 * rounds and numbers["completions"] == 32 * rounds
    if refused:
        with pytest.raises(StageError, match=f"all {4 * rounds} sampled groups have zero reward variance"):
            check(numbers, max_truncated=0.5)
    else:
        check(numbers, max_truncated=0.5)
