"""SFT stage: supervised fine-tuning on chain-of-thought traces with TRL's ``SFTTrainer``.

Each record becomes a prompt (the question through the chat template) and a completion (``render(reasoning,
answer)``); the loss is on the completion only (TRL ``completion_only_loss``). Full fine-tuning, or LoRA when
``model.lora`` is set. Checkpoints are committed (stages/callbacks.py) and the stage resumes from the latest
committed one after a crash.

Deviations from a plain ``SFTTrainer`` run:

1. Examples longer than ``max_length`` are *dropped and counted*, not truncated: a truncated trace teaches
   the model to stop mid-thought, and a fully truncated completion trains on nothing (huggingface/trl#6025).
2. Batch sizes are named by what they count (``examples_per_step``, ``micro_batch_size``); TRL's values are
   derived by the batch plan (batch.py). With ``packing`` they count *packed rows* of up to ``max_length`` tokens
   (TRL packs best-fit decreasing, "bfd"), each holding several examples; the result names ``packed_rows``.
   TRL's bfd packing is padding-free: the collator flattens a batch into one sequence whose ``position_ids``
   restart at every example, transformers turns that into a block-diagonal mask, and the labels (``-100`` outside
   completions) keep the loss on completion tokens only. Without FlashAttention (CPU) that one sequence costs a
   full attention over the whole batch, so packing saves padding but not compute there.
3. ``eval_loss_every``: TRL's own evaluation (``eval_dataset``, ``eval_strategy="steps"``) on the first
   ``eval_items`` held-out records, built exactly like the training examples; ``eval_loss`` lands in
   metrics.jsonl. ``eval_every`` is the separate greedy-accuracy curve.
4. QLoRA (``model.lora.quantize``, Dettmers et al., arXiv 2305.14314): the input model is loaded through
   bitsandbytes (models.py); TRL's SFTTrainer then adds the adapter and casts it to bf16 as the paper does.
"""

from __future__ import annotations

import logging
from typing import Any

from thinktune.config import Recipe, SFTStage
from thinktune.context import StageContext
from thinktune.data.records import Record, read_records
from thinktune.errors import StageError
from thinktune.formatting import CompletionFormat, chat_prompt, render
from thinktune.models import load_stage_output
from thinktune.stages.callbacks import StopAtAccuracy
from thinktune.stages.setup import (
    peft_config,
    seed_everything,
    stage_callbacks,
    train_resumable,
    trainer_args,
    trl_passthrough,
)

log = logging.getLogger(__name__)


def completion_for(record: Record, fmt: CompletionFormat, answer_only: bool) -> str:
    if answer_only:
        return f"{fmt.answer_open}{record.answer.strip()}{fmt.answer_close}"
    return render(record.reasoning, record.answer, fmt)


def build_dataset(records: list[Record], tokenizer, recipe: Recipe, cfg: SFTStage):
    """(datasets.Dataset of prompt/completion, number dropped as too long, number without reasoning)."""
    from datasets import Dataset

    fmt = recipe.format.completion_format()
    rows, too_long, no_reasoning = [], 0, 0
    for r in records:
        if not cfg.answer_only and not r.reasoning.strip():
            no_reasoning += 1
            continue
        prompt = chat_prompt(tokenizer, r.question, recipe.model.instruction, recipe.model.system)
        completion = completion_for(r, fmt, cfg.answer_only)
        n_tokens = len(tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        if n_tokens > cfg.max_length:
            too_long += 1
            continue
        rows.append({"prompt": prompt, "completion": completion})
    return Dataset.from_list(rows), too_long, no_reasoning


def run_stage(ctx: StageContext) -> dict[str, Any]:
    from trl import SFTConfig, SFTTrainer

    recipe, cfg = ctx.recipe, ctx.config
    ctx.dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)

    lora = recipe.model.lora
    model, tokenizer = load_stage_output(ctx.input_model(), recipe.model, quantize=lora.quantize if lora else None)
    records = read_records(ctx.data_file("train"))
    valid: list[Record] = []
    if cfg.stop_at:  # validation items for the stop: the last training records, held out of SFT
        if len(records) <= cfg.stop_at.items:
            raise StageError(f"sft.stop_at.items: {cfg.stop_at.items} validation items need more than that many "
                             f"training records (there are {len(records)})")
        records, valid = records[: -cfg.stop_at.items], records[-cfg.stop_at.items:]
    dataset, too_long, no_reasoning = build_dataset(records, tokenizer, recipe, cfg)
    if len(dataset) == 0:
        raise StageError(f"sft: no usable training examples ({too_long} longer than max_length={cfg.max_length}, "
                         f"{no_reasoning} without reasoning)")
    if too_long:
        log.warning("sft: dropped %d examples longer than max_length=%d", too_long, cfg.max_length)

    ours: dict[str, Any] = {
        **trainer_args(ctx, cfg),
        "max_length": cfg.max_length,
        "completion_only_loss": True,
        "packing": cfg.packing,
    }
    eval_dataset = None
    if cfg.eval_loss_every:
        held_out = read_records(ctx.data_file("eval"))[: cfg.eval_items]
        eval_dataset, _, _ = build_dataset(held_out, tokenizer, recipe, cfg)
        if len(eval_dataset) == 0:
            raise StageError(f"sft.eval_loss_every: none of the first {cfg.eval_items} held-out records is usable "
                             f"(each is longer than max_length={cfg.max_length} or has no reasoning)")
        ours.update(eval_strategy="steps", eval_steps=cfg.eval_loss_every,
                    per_device_eval_batch_size=cfg.micro_batch_size)
    args = SFTConfig(**trl_passthrough(SFTConfig, cfg.trl, ours, "sft"))
    max_new = recipe.audit.max_new_tokens if recipe.audit else 256
    callbacks = stage_callbacks(ctx, cfg, tokenizer, max_new)
    stopper = None
    if cfg.stop_at:
        stopper = StopAtAccuracy(valid, tokenizer, ctx.fmt, ctx.dir / "metrics.jsonl", cfg.stop_at.every, max_new,
                                 recipe.model.instruction, recipe.model.system, threshold=cfg.stop_at.accuracy)
        callbacks.append(stopper)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(lora) if lora else None,
        callbacks=callbacks,
    )
    result = train_resumable(ctx, trainer, tokenizer)
    extra: dict[str, Any] = {"packed_rows": len(trainer.train_dataset)} if cfg.packing else {}
    if eval_dataset is not None:
        extra["eval_loss_items"] = len(eval_dataset)
    if stopper is not None:  # where SFT stopped and at what validation accuracy (None: it ran to max_steps)
        extra.update(stopped_at_step=stopper.stopped_at, valid_accuracy=stopper.last_accuracy,
                     valid_items=len(valid))
    return {**result, "examples": len(dataset), "dropped_too_long": too_long, "dropped_no_reasoning": no_reasoning,
            **extra}
