"""NaN guard: a step with a NaN gradient leaves the weights untouched and is counted; M in a row stop the run."""

import pytest
import torch
from transformers import TrainerCallback

from thinktune.config import TinyModelConfig
from thinktune.errors import StageError
from thinktune.formatting import render
from thinktune.models import build_tiny
from thinktune.stages.callbacks import MetricsLog, NonFiniteGuard

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(20) for b in range(6)]


class InjectNaN(TrainerCallback):
    """Poison one gradient before the optimizer step at the given (1-based) steps; record the weights around it."""

    def __init__(self, steps):
        self.steps, self.before, self.after = set(steps), {}, {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        step = state.global_step + 1
        if step in self.steps:
            self.before[step] = [p.detach().clone() for p in model.parameters()]
            next(p for p in model.parameters() if p.grad is not None).grad[0].fill_(float("nan"))

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        step = state.global_step + 1
        if step in self.steps:
            self.after[step] = [p.detach().clone() for p in model.parameters()]


def train(tmp_path, inject, max_consecutive=3, steps=6):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    ds = Dataset.from_list([{"prompt": f"Compute {a} + 1.\n", "completion": f"{a + 1}"} for a in range(64)])
    args = SFTConfig(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-2,
                     weight_decay=0.1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                     logging_steps=1, gradient_checkpointing=False, dataset_num_proc=None)
    guard = NonFiniteGuard(max_consecutive)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[inject, guard, MetricsLog(tmp_path / "metrics.jsonl")])
    trainer.train()
    return guard, trainer


def test_nan_step_is_skipped_weights_unchanged_and_counted(tmp_path):
    inject = InjectNaN([3])
    guard, trainer = train(tmp_path, inject)
    assert guard.skipped == 1
    assert all(torch.equal(a, b) for a, b in zip(inject.before[3], inject.after[3]))  # AdamW did not move them
    assert trainer.state.global_step == 6
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["nonfinite_skipped"] == 1  # the count reaches metrics.jsonl


def test_consecutive_nan_steps_stop_the_run(tmp_path):
    with pytest.raises(StageError, match="3 consecutive optimizer steps had NaN/inf gradients"):
        train(tmp_path, InjectNaN([2, 3, 4]), max_consecutive=3)
