"""benchmarks/grpo_reward_rise.py: the first-10 % / last-10 % reward windows of a GRPO metrics.jsonl."""

import json

import pytest

from tests.helpers.benchmarks import load_benchmark

rise = load_benchmark("grpo_reward_rise")


def _run(tmp_path, rewards, every=5):
    stage = tmp_path / "run" / "grpo"
    stage.mkdir(parents=True)
    rows = [{"step": every * (i + 1), "reward": r, "loss": 0.0} for i, r in enumerate(rewards)]
    rows.insert(3, {"step": 20, "eval_accuracy": 0.5, "eval_items": 200})
    rows.append({"step": every * len(rewards), "eval_accuracy": 0.7, "eval_items": 200})
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (stage / "effective_config.json").write_text(json.dumps({"max_steps": every * len(rewards)}))
    return tmp_path / "run"


def test_windows_are_the_first_and_last_tenth_of_steps(tmp_path, capsys):
    # 100 steps logged every 5: rows 5, 10 are the first 10 %, rows 95, 100 the last 10 %
    rewards = [0.4, 0.5] + [9.0] * 16 + [0.6, 0.8]
    r = rise.run_rise(_run(tmp_path, rewards))
    assert r["first"] == pytest.approx(0.45) and r["last"] == pytest.approx(0.7)
    assert r["rise"] == pytest.approx(0.25) and r["held_out_accuracy"] == 0.7
    assert rise.main([str(tmp_path / "run")]) == 0
    assert "rise +0.250" in capsys.readouterr().out
    assert rise.main([str(tmp_path / "run"), "--min-rise", "0.3"]) == 1


def test_coarse_logging_is_refused():
    with pytest.raises(ValueError, match="first/last 10 steps"):
        rise.reward_rise([{"step": 50, "reward": 0.1}, {"step": 100, "reward": 0.2}], 100)
