"""Setup shared by the training stages: seeding, the trainer arguments, TRL config passthrough, saving ``final/``."""

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
from thinktune.formatting import chat_prompt
from thinktune.formatting import PromptContract
from thinktune.io import atomic_write_json, atomic_write_text, commit_dir, staging_dir
from thinktune.models import MODEL_META

log = logging.getLogger(__name__)



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


def trainer_args(ctx, cfg) -> dict[str, Any]:
    """The TrainingArguments every training stage derives the same way from its config (before the stage's own
    fields and the recipe's ``trl:`` passthrough): the batch plan over this stage's processes, the schedule,
    checkpoints for an exact resume, logging, seeds and the device."""
    recipe = ctx.recipe
    args: dict[str, Any] = {
        "output_dir": str(ctx.dir),
        **cfg.batch().with_processes(world_size()).trl_args(),
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "max_steps": cfg.max_steps or -1,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": None,  # retention happens after the commit marker (callbacks.py); resume depends on it
        "save_only_model": False,  # optimizer + RNG state are needed for exact resume
        "logging_steps": cfg.logging_steps,
        "report_to": list(recipe.report_to),  # TensorBoard / W&B / MLflow for those who want them
        "run_name": f"{recipe.name}-{ctx.stage}",
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        **device_args(),
    }
    fields = type(cfg).model_fields
    if "epochs" in fields:
        args["num_train_epochs"] = cfg.epochs
    if "warmup_ratio" in fields:  # transformers 5 has no warmup_ratio: a float in [0, 1) is a fraction of the steps
        args["warmup_steps"] = cfg.warmup_ratio
    if "weight_decay" in fields:
        args["weight_decay"] = cfg.weight_decay
    return args


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
    """The effective TRL config, TRL's own defaults included (results mean little without it)."""
    atomic_write_json(stage_dir / "effective_config.json", json.loads(args.to_json_string()))


def save_final(model, tokenizer, stage_dir: Path, input_final: Path | None,
               state_dict: dict[str, Any] | None = None, prompt: PromptContract | None = None) -> Path:
    """Write ``final/`` atomically: full weights, or an adapter plus a pointer to the model it applies to, and the
    prompt contract the model was trained with (``prompt`` in ``thinktune_model.json``).

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
    if prompt is not None:
        meta["prompt"] = prompt.to_dict()
    atomic_write_text(tmp / MODEL_META, json.dumps(meta) + "\n")
    commit_dir(tmp, target)
    return target


def peft_config(lora) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, task_type="CAUSAL_LM")


def stage_callbacks(ctx, cfg, tokenizer, max_new_tokens: int | None) -> list:
    """Callbacks every training stage installs: NaN guard, committed checkpoints, metrics.jsonl, progress bar, and
    the held-out accuracy curve when ``cfg.eval_every`` asks for it (greedy, ``max_new_tokens`` per item; None for a
    stage whose model does not generate, which evaluates through its trainer instead)."""
    from thinktune.data.records import read_records
    from thinktune.stages.callbacks import (
        CommitCheckpoints,
        HeldOutAccuracy,
        MetricsLog,
        NonFiniteGuard,
        ProgressBar,
    )

    metrics = ctx.dir / "metrics.jsonl"
    callbacks = [NonFiniteGuard(cfg.max_nonfinite_steps), CommitCheckpoints(ctx.dir, cfg.keep_checkpoints),
                 MetricsLog(metrics), ProgressBar(ctx.stage)]
    if cfg.eval_every and max_new_tokens is not None:
        held_out = read_records(ctx.data_file("eval"))[: cfg.eval_items]
        model = ctx.recipe.model
        callbacks.append(HeldOutAccuracy(held_out, tokenizer, ctx.fmt, metrics, cfg.eval_every, max_new_tokens,
                                         model.instruction, model.system))
    return callbacks


def preference_rows(pairs, tokenizer, model_cfg, max_length: int) -> tuple[list[dict[str, str]], int]:
    """``{prompt, chosen, rejected}`` rows for TRL's preference trainers (DPO, reward model) from pairs files' rows:
    ``question`` goes through the chat template, ``prompt`` is kept as given. Pairs longer than ``max_length`` tokens
    (prompt + the longer completion + EOS) are dropped, not truncated; returns the rows and how many were dropped."""
    rows, too_long = [], 0
    for p in pairs:
        prompt = p["prompt"] if "prompt" in p else chat_prompt(tokenizer, p["question"], model_cfg.instruction,
                                                                model_cfg.system)
        longest = max(len(tokenizer(prompt + p[k], add_special_tokens=False)["input_ids"]) for k in
                      ("chosen", "rejected")) + 1  # + EOS
        if longest > max_length:
            too_long += 1
            continue
        rows.append({"prompt": prompt, "chosen": p["chosen"], "rejected": p["rejected"]})
    return rows, too_long


def train_resumable(ctx, trainer, tokenizer) -> dict[str, Any]:
    """Train (resuming from the latest *committed* checkpoint when the stage resumes) and write ``final/``.

    Checkpoints without a commit marker are torn writes from a killed save: deleted, never loaded
    (docs/ARCHITECTURE.md, "Crash safety and exact resume"). Returns the stage result fields every training stage
    reports.
    """
    import time

    from transformers.trainer_callback import PrinterCallback

    from thinktune.progress import reporter
    from thinktune.stages.callbacks import latest_committed, remove_uncommitted

    stage, stage_dir = ctx.stage, ctx.dir
    trainer.remove_callback(PrinterCallback)  # thinktune logs to metrics.jsonl and the progress bar instead
    removed = []
    if distributed.is_main():  # one writer; the other processes wait (thinktune.distributed)
        write_effective_config(stage_dir, trainer.args)
        removed = remove_uncommitted(stage_dir)
    distributed.barrier()
    if removed:
        reporter().note(f"[{stage}] discarded {len(removed)} uncommitted checkpoint(s): "
                        f"{', '.join(p.name for p in removed)}")
    ckpt = latest_committed(stage_dir) if ctx.resume else None
    if ckpt is not None:
        reporter().note(f"[{stage}] resuming from {ckpt.name}")
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    state_dict = None
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:  # sharded weights: every process takes part
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if distributed.is_main():
        save_final(trainer.model, tokenizer, stage_dir, ctx.input_model(), state_dict, ctx.prompt)
    distributed.barrier()
    return {
        "train_loss": round(float(out.training_loss), 4),
        "steps": trainer.state.global_step,
        "resumed_from": ckpt.name if ckpt else None,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
