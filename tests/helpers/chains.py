"""Tiny models trained with TRL's SFTTrainer on chain_arith: genuine chains vs decorative chains (same answers).

- ``genuine``: the task's own trace, one operation per line with its running total (data/tasks.py).
- ``filler``: every line replaced by 1..4 filler units; the number of lines varies (1..max_ops + 1) so that
  truncation stays in distribution — the answer has to be computed without the chain.
- ``shuffled``: the lines of another item's chain (plausible-looking, unrelated numbers).

Both decorative kinds leave the chain empty on 15 % of the examples (rendered by ``render("")``, which is what the
audit's zero-step prefix looks like), so that "no chain at all" is in distribution for a model that does not use it.

Models are cached under pytest's cache directory (keyed by the settings) so the slow tests train each once.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from thinktune.config import TinyModelConfig
from thinktune.data.records import Record
from thinktune.data.tasks import get_task
from thinktune.formatting import chat_prompt, render

KNOBS = {"min_ops": 2, "max_ops": 3, "max_operand": 9, "ops": "+-", "max_value": 40}
TINY = {"hidden_size": 96, "intermediate_size": 384, "num_layers": 3, "num_heads": 4, "vocab_size": 300,
        "max_positions": 192}
FILLER_UNIT = " ..."


def task_records(n: int, seed: int) -> list[Record]:
    return get_task("chain_arith").generate(n, seed, **KNOBS)


def decorate(records: list[Record], kind: str, seed: int = 0) -> list[Record]:
    rng = random.Random(f"decorate:{kind}:{seed}")
    if kind == "genuine":
        return records
    out = []
    for r in records:
        if rng.random() < 0.15:
            lines = []
        elif kind == "filler":
            lines = [(FILLER_UNIT * rng.randint(1, 4)).strip() for _ in range(rng.randint(1, KNOBS["max_ops"] + 1))]
        elif kind == "shuffled":
            other = records[rng.randrange(len(records))]
            lines = other.reasoning.splitlines()
        else:
            raise ValueError(kind)
        out.append(r.model_copy(update={"reasoning": "\n".join(lines)}))
    return out


def train_tiny(kind: str, out_dir: Path, n_train: int = 4000, steps: int = 400, seed: int = 0) -> Path:
    """Train (or reuse) a tiny model on ``kind`` traces; returns the saved model directory."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from thinktune.models import build_tiny, save_model

    settings = {"kind": kind, "n_train": n_train, "steps": steps, "seed": seed, "knobs": KNOBS, "tiny": TINY, "v": 3}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    target = out_dir / f"{kind}-{key}"
    if (target / "config.json").exists():
        return target
    train = decorate(task_records(n_train, seed), kind, seed)
    corpus = [r.question for r in train] + [render(r.reasoning, r.answer) for r in train] + [FILLER_UNIT * 8]
    corpus += [render(x.reasoning, x.answer) for x in task_records(200, seed + 7)]  # same vocab for every kind
    torch.manual_seed(seed)
    model, tok = build_tiny(TinyModelConfig(**TINY), corpus, seed)
    rows = [{"prompt": chat_prompt(tok, r.question), "completion": render(r.reasoning, r.answer)} for r in train]
    args = SFTConfig(output_dir=str(out_dir / f"tmp-{key}"), per_device_train_batch_size=32, max_steps=steps,
                     learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=50,
                     save_strategy="no", report_to=[], seed=seed, data_seed=seed, disable_tqdm=True,
                     completion_only_loss=True, max_length=192, use_cpu=True, dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    save_model(trainer.model, tok, target)
    return target
