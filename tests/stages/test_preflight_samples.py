"""The GRPO pre-flight keeps what it sampled (issue 21, point 4): ``preflight.json`` used to hold totals only, so
finding out why it refused took an export plus ``generate``."""

from types import SimpleNamespace

from tests.helpers.tiny_chain import base_and_adapter
from thinktune.config import RewardSpec
from thinktune.data.records import Record
from thinktune.models import load_stage_output
from thinktune.stages.preflight import preflight, problems


class FixedRewards:
    """Stands in for the reward runner: ``correct`` pays nothing, ``format`` half a point, for every completion."""

    names = ["correct", "format"]

    def score(self, index, texts, owners):
        return [[0.0, 0.5][index]] * len(texts)


def test_preflight_returns_every_sample_with_its_per_reward_scores_and_the_reason(tmp_path):
    base, _, _ = base_and_adapter(tmp_path)
    model, tok = load_stage_output(base)
    cfg = SimpleNamespace(preflight_groups=2, samples_per_prompt=3, max_new_tokens=6, temperature=1.0,
                          rewards=[RewardSpec(fn="correct", weight=1.0), RewardSpec(fn="format", weight=0.2)])
    records = [Record(id=f"q{i}", question=f"Compute {i} + 1.", reasoning="", answer=str(i + 1)) for i in range(3)]
    numbers = preflight(model, tok, records, cfg, FixedRewards())
    samples = numbers["samples"]
    # no group has variance, so a second round samples the remaining prompt (main's extra pre-flight rounds)
    assert [s["id"] for s in samples] == ["q0"] * 3 + ["q1"] * 3 + ["q2"] * 3
    assert [s["group"] for s in samples] == [0] * 3 + [1] * 3 + [2] * 3
    assert [s["round"] for s in samples] == [0] * 6 + [1] * 3 and numbers["rounds"] == 2
    assert all(s["rewards"] == {"correct": 0.0, "format": 0.5} and s["total"] == 0.1 for s in samples)
    assert all(isinstance(s["completion"], str) and s["truncated"] == (s["tokens"] >= 6) for s in samples)
    assert samples[0]["gold"] == "1" and samples[0]["question"] == "Compute 0 + 1."
    reasons = problems(numbers, max_truncated=1.0)
    assert len(reasons) == 1 and "all 3 sampled groups have zero reward variance" in reasons[0]
