"""Setup shared by the training stages: seeding, input model, TRL config passthrough, saving ``final/``."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

from thinktune import distributed
from thinktune.errors import RecipeError
from thinktune.io import atomic_write_json, atomic_write_text, commit_dir, staging_dir

log = logging.getLogger(__name__)

MODEL_META = "thinktune_model.json"  # in final/: {"kind": "full" | "adapter" | "recipe_model", "base": rel path}


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_args() -> dict[str, Any]:
    """TrainingArguments for the hardware at hand: CPU fp32, or bf16 on a GPU that supports it."""
    import torch

    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "use_cpu": False}
    return {"use_cpu": True, "bf16": False, "fp16": False}


world_size = distributed.world_size  # processes of this stage (1, or N under `thinktune run --processes N`)


def batch_args(stage: str, examples_per_step: int, micro_batch_size: int, n_processes: int) -> dict[str, int]:
    """TRL batch arguments from examples per optimizer step (summed over processes) and the micro-batch size."""
    per_process, rem = divmod(examples_per_step, n_processes)
    assert rem == 0, f"{stage}.examples_per_step must split evenly across processes"
    assert per_process % micro_batch_size == 0, "examples per process must be a multiple of micro_batch_size"
    return {"per_device_train_batch_size": micro_batch_size,
            "gradient_accumulation_steps": per_process // micro_batch_size}


def trl_passthrough(config_cls: type, extra: dict[str, Any], ours: dict[str, Any], stage: str) -> dict[str, Any]:
    """Merge a recipe's ``trl:`` mapping into the arguments, rejecting names TRL's dataclass does not have."""
    valid = {f.name for f in dataclasses.fields(config_cls)}
    for key in extra:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"{stage}.trl.{key}: not a field of trl.{config_cls.__name__}{hint}")
        if key in ours:
            log.warning("%s.trl.%s overrides the value thinktune derived (%r -> %r)", stage, key, ours[key], extra[key])
    return {**ours, **extra}


def write_effective_config(stage_dir: Path, args: Any) -> None:
    """The effective TRL config, TRL's own defaults included (DESIGN.md: results mean little without it)."""
    atomic_write_json(stage_dir / "effective_config.json", json.loads(args.to_json_string()))


def save_final(model, tokenizer, stage_dir: Path, input_final: Path | None,
               state_dict: dict[str, Any] | None = None) -> Path:
    """Write ``final/`` atomically: full weights, or an adapter plus a pointer to the model it applies to.

    One process only (rank 0). ``state_dict``: the full weights gathered from a sharded model (ZeRO-3, FSDP).
    """
    target = stage_dir / "final"
    tmp = staging_dir(target)
    is_adapter = hasattr(model, "peft_config")
    model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
    tokenizer.save_pretrained(tmp)
    meta: dict[str, Any] = {"kind": "adapter" if is_adapter else "full"}
    if is_adapter:
        if input_final is None:
            raise ValueError("an adapter needs the directory of the model it was trained on")
        meta["base"] = os.path.relpath(input_final, target)
    atomic_write_text(tmp / MODEL_META, json.dumps(meta) + "\n")
    commit_dir(tmp, target)
    return target


def peft_config(lora) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, task_type="CAUSAL_LM")


def stage_callbacks(stage: str, stage_dir: Path, keep: int, max_nonfinite_steps: int = 3) -> list:
    """Callbacks every training stage installs: NaN guard, committed checkpoints, metrics.jsonl, progress bar."""
    from thinktune.stages.callbacks import CommitCheckpoints, MetricsLog, NonFiniteGuard, ProgressBar

    return [NonFiniteGuard(max_nonfinite_steps), CommitCheckpoints(stage_dir, keep),
            MetricsLog(stage_dir / "metrics.jsonl"), ProgressBar(stage)]


def train_resumable(trainer, tokenizer, stage: str, stage_dir: Path, resume: bool,
                    input_final: Path | None) -> dict[str, Any]:
    """Train (resuming from the latest *committed* checkpoint when asked) and write ``final/``.

    Checkpoints without a commit marker are torn writes from a killed save: deleted, never loaded
    (RELIABILITY.md §2). Returns the stage result fields every training stage reports.
    """
    import time

    from transformers.trainer_callback import PrinterCallback

    from thinktune.progress import reporter
    from thinktune.stages.callbacks import latest_committed, remove_uncommitted

    trainer.remove_callback(PrinterCallback)  # thinktune logs to metrics.jsonl and the progress bar instead
    removed = []
    if distributed.is_main():  # one writer; the other processes wait (thinktune.distributed)
        write_effective_config(stage_dir, trainer.args)
        removed = remove_uncommitted(stage_dir)
    distributed.barrier()
    if removed:
        reporter().note(f"[{stage}] discarded {len(removed)} uncommitted checkpoint(s): "
                        f"{', '.join(p.name for p in removed)}")
    ckpt = latest_committed(stage_dir) if resume else None
    if ckpt is not None:
        reporter().note(f"[{stage}] resuming from {ckpt.name}")
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    state_dict = None
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:  # sharded weights: every process takes part
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if distributed.is_main():
        save_final(trainer.model, tokenizer, stage_dir, input_final, state_dict)
    distributed.barrier()
    return {
        "train_loss": round(float(out.training_loss), 4),
        "steps": trainer.state.global_step,
        "resumed_from": ckpt.name if ckpt else None,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
