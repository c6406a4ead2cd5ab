"""A real TRL GRPO step with a reward that hangs: the step finishes within deadline + 5 s and the timeout is in
TRL's logged metrics (issue 3 acceptance). Slow: builds a tiny model and runs GRPOTrainer on CPU."""

from __future__ import annotations

import time

import pytest

from thinktune.config import RewardSpec, TinyModelConfig
from thinktune.data.tasks import ChainArithmetic
from thinktune.formatting import render
from thinktune.rewards.runner import RewardRunner

DEADLINE = 2.0


@pytest.mark.slow
def test_grpo_step_survives_a_hanging_reward(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from thinktune.models import build_tiny

    records = ChainArithmetic().generate(4, seed=0)
    corpus = [r.question + render(r.reasoning, r.answer) for r in records]
    model, tokenizer = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                                  vocab_size=300, max_positions=128), corpus)
    dataset = Dataset.from_list([{"prompt": r.question, "record": r.model_dump_json()} for r in records])
    specs = [RewardSpec(fn="correct"), RewardSpec(fn="tests.helpers.faulty_rewards:hang_once", weight=0.0,
                                                  kwargs={"marker": str(tmp_path / "hung")})]
    with RewardRunner(specs, max_error_fraction=0.25, deadline=DEADLINE, workers=2) as runner:
        timings: list[float] = []
        funcs = runner.trl_functions()

        def timed(fn):
            def wrapper(**kw):
                t0 = time.monotonic()
                try:
                    return fn(**kw)
                finally:
                    timings.append(time.monotonic() - t0)
            wrapper.__name__ = fn.__name__
            return wrapper

        args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
                          max_completion_length=16, max_steps=1, logging_steps=1, report_to=[], use_cpu=True,
                          remove_unused_columns=False, reward_weights=runner.weights, save_strategy="no",
                          disable_tqdm=True, gradient_checkpointing=False)
        trainer = GRPOTrainer(model=model, reward_funcs=[timed(f) for f in funcs], args=args, train_dataset=dataset,
                              processing_class=tokenizer)
        trainer.train()
    assert (tmp_path / "hung").exists()
    assert max(timings) < DEADLINE + 5, timings
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert logged["rewards/tests.helpers.faulty_rewards:hang_once/n_timeouts"] > 0
    assert runner.counts["tests.helpers.faulty_rewards:hang_once"]["timeout"] == 1
