"""GRPO stage: group-relative policy optimisation with TRL's ``GRPOTrainer``.

Follows DeepSeekMath's GRPO (arXiv 2402.03300) as implemented by TRL; the loss variant is chosen by a named
preset (METHODS.md §2–4), never re-implemented here:

=========  ===============  ================  ==============================================
preset     TRL loss_type    scale_rewards     notes
=========  ===============  ================  ==============================================
grpo       grpo             group             per-sequence mean; std-normalised advantages
dr_grpo    dr_grpo          none              Dr. GRPO (arXiv 2503.20783): constant normaliser, no std
dapo       dapo             group             DAPO (arXiv 2503.14476) token-level loss; clip-higher by default
=========  ===============  ================  ==============================================

The prompt dataset carries each record as JSON in a ``record`` column; rewards are run by
:class:`thinktune.rewards.runner.RewardRunner`, which also logs every completion with its per-reward scores to
``completions/step-N.jsonl``. When the model has LoRA, the input model is merged and a *new* adapter is trained,
so TRL's "adapter disabled" reference is exactly this stage's input model.
"""

from __future__ import annotations

import logging
from typing import Any

from thinktune.config import GRPOStage
from thinktune.data.records import read_records
from thinktune.distributed import barrier, is_main
from thinktune.errors import StageError
from thinktune.formatting import CompletionFormat, chat_prompt
from thinktune.models import load_stage_output
from thinktune.progress import reporter
from thinktune.io import atomic_write_json
from thinktune.rewards.probes import audit_rewards
from thinktune.stages.preflight import check, preflight
from thinktune.rewards.runner import RewardRunner
from thinktune.run import Run
from thinktune.stages.callbacks import GRPOAlerts, HeldOutAccuracy
from thinktune.stages.setup import (
    device_args,
    peft_config,
    seed_everything,
    stage_callbacks,
    train_resumable,
    trl_passthrough,
    world_size,
)

log = logging.getLogger(__name__)

# preset -> TRL settings (METHODS.md §2.5: Dr. GRPO needs both the aggregation and the unscaled advantages)
PRESETS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_type": "grpo", "scale_rewards": "group"},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    "dapo": {"loss_type": "dapo", "scale_rewards": "group"},
}


def grpo_batch_args(cfg: GRPOStage, n_processes: int) -> dict[str, int]:
    """TRL's batch arguments from quantities named by what they count (DESIGN/STYLE: huggingface/trl#2858)."""
    completions = cfg.prompts_per_step * cfg.samples_per_prompt
    per_process, rem = divmod(completions, n_processes)
    assert rem == 0, "prompts_per_step × samples_per_prompt must split evenly across processes"
    assert per_process % cfg.micro_batch_size == 0, "completions per process must be a multiple of micro_batch_size"
    return {
        "per_device_train_batch_size": cfg.micro_batch_size,  # TRL counts completions here, not prompts
        "gradient_accumulation_steps": per_process // cfg.micro_batch_size,
        "num_generations": cfg.samples_per_prompt,
    }


def grpo_trl_args(cfg: GRPOStage, n_processes: int) -> dict[str, Any]:
    """The GRPOConfig fields thinktune derives from the stage config (before the ``trl:`` passthrough)."""
    eps_low, eps_high = cfg.clip
    return {
        **grpo_batch_args(cfg, n_processes),
        **PRESETS[cfg.preset],
        "max_completion_length": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "beta": cfg.kl_coef,
        "epsilon": eps_low,
        "epsilon_high": eps_high,
        "max_steps": cfg.max_steps,
    }


def pin_reference(model, tokenizer, cfg: GRPOStage, lora: bool, input_final, stage_dir) -> str | None:
    """Make TRL's KL reference equal this stage's input model; returns what the reference is.

    With LoRA, TRL's reference is the model with the adapter disabled — the merged input (models.py merges the
    incoming adapter and a new one is trained). With full fine-tuning TRL reloads the reference from
    ``model.config._name_or_path``, which for a merged adapter chain still names the pre-SFT base: the merged input
    is saved once to ``grpo/reference/`` and named instead.
    """
    import json

    if cfg.kl_coef == 0:
        return None
    if lora:
        return "input model (adapter disabled)"
    kind = json.loads((input_final / "thinktune_model.json").read_text()).get("kind", "full")
    if kind == "adapter":
        ref = stage_dir / "reference"
        if not (ref / "config.json").exists() and is_main():
            from thinktune.models import save_model

            save_model(model, tokenizer, ref)
        barrier()
        model.config._name_or_path = str(ref)
    return str(model.config._name_or_path)


def trainer_class(cfg: GRPOStage) -> type:
    """TRL's ``GRPOTrainer`` with thinktune's mixins: batched rollouts (stages/rollouts.py) and DAPO dynamic sampling
    (stages/dynamic_sampling.py), each only when the recipe asks for it."""
    from trl import GRPOTrainer

    mixins: list[type] = []
    attrs: dict[str, Any] = {}
    if cfg.dynamic_sampling.enabled:  # zero-variance groups never reach the loss
        from thinktune.stages.dynamic_sampling import DynamicSamplingMixin

        mixins.append(DynamicSamplingMixin)
        attrs["ds_max_rounds"] = cfg.dynamic_sampling.max_rounds
    if cfg.rollout_engine == "thinktune":
        from thinktune.stages.rollouts import BatchedRolloutsMixin

        mixins.append(BatchedRolloutsMixin)
    if not mixins:
        return GRPOTrainer
    return type("ThinktuneGRPOTrainer", (*mixins, GRPOTrainer), attrs)


def run(run: Run, resume: bool) -> dict[str, Any]:
    from datasets import Dataset

    recipe, cfg = run.recipe, run.recipe.grpo
    assert cfg is not None
    stage_dir = run.stage_dir("grpo")
    stage_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    fmt = CompletionFormat(**recipe.format.model_dump())

    input_final = run.output_path(run.input_model_stage("grpo"))
    model, tokenizer = load_stage_output(input_final, recipe.model)
    reference = pin_reference(model, tokenizer, cfg, recipe.model.lora is not None, input_final, stage_dir)
    records = read_records(run.output_path("data") / "train.jsonl")
    if cfg.max_train_prompts:
        records = records[: cfg.max_train_prompts]
    if not records:
        raise StageError("grpo: no training prompts")
    dataset = Dataset.from_list([
        {"prompt": chat_prompt(tokenizer, r.question, recipe.model.instruction, recipe.model.system),
         "record": r.model_dump_json()}
        for r in records
    ])

    rewards = RewardRunner(cfg.rewards, fmt, cfg.reward_max_error_fraction, completions_dir=stage_dir / "completions",
                           workers=cfg.reward_workers, deadline=cfg.reward_deadline)
    try:
        result = _train(run, cfg, stage_dir, fmt, model, tokenizer, input_final, records, dataset, rewards, resume)
        return {**result, "kl_reference": reference}
    finally:
        rewards.close()


def _train(run, cfg, stage_dir, fmt, model, tokenizer, input_final, records, dataset, rewards, resume):
    from trl import GRPOConfig

    recipe = run.recipe
    # Under `run --processes N` the reward audit and the pre-flight run on rank 0 alone (one writer, counted once);
    # the other ranks go on to the trainer and wait at its first collective, or are stopped when rank 0 refuses.
    if cfg.reward_audit and is_main():  # RELIABILITY.md §8: a reward that pays for a hack is found before training
        report = audit_rewards(cfg.rewards, records, fmt, runner=rewards, max_items=cfg.reward_audit_items)
        atomic_write_json(stage_dir / "reward_audit.json", report.to_dict())
        if not report.ok:
            raise StageError(f"grpo: {report.summary()}\n(fix the rewards, or set grpo.reward_audit=false)")
        reporter().note(f"[grpo] {report.summary()}")
    if cfg.preflight and not resume and is_main():
        numbers = preflight(model, tokenizer, records, cfg, rewards, recipe.model.instruction, recipe.model.system)
        atomic_write_json(stage_dir / "preflight.json", numbers)
        check(numbers, cfg.preflight_max_truncated)
        reporter().note(f"[grpo] pre-flight: {numbers['zero_variance_fraction']:.0%} of {numbers['groups']} groups "
                        f"without reward variance, {numbers['truncated_fraction']:.0%} truncated")
    ours: dict[str, Any] = {
        "output_dir": str(stage_dir),
        **grpo_trl_args(cfg, world_size()),
        "reward_weights": rewards.weights,
        "remove_unused_columns": False,  # rewards need the `record` column
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": None,
        "save_only_model": False,
        "logging_steps": cfg.logging_steps,
        "report_to": list(recipe.report_to),  # TensorBoard / W&B / MLflow for those who want them
        "run_name": f"{recipe.name}-grpo",
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "log_completions": False,  # thinktune writes completions/ itself (all of them, every step)
        **device_args(),
    }
    args = GRPOConfig(**trl_passthrough(GRPOConfig, cfg.trl, ours, "grpo"))
    callbacks = [GRPOAlerts(), *stage_callbacks("grpo", stage_dir, cfg.keep_checkpoints, cfg.max_nonfinite_steps)]
    if cfg.eval_every:
        held_out = read_records(run.output_path("data") / "eval.jsonl")[: cfg.eval_items]
        callbacks.append(HeldOutAccuracy(held_out, tokenizer, fmt, stage_dir / "metrics.jsonl", cfg.eval_every,
                                         cfg.max_new_tokens, recipe.model.instruction, recipe.model.system))
    trainer = trainer_class(cfg)(
        model=model,
        reward_funcs=rewards.trl_functions(),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(recipe.model.lora) if recipe.model.lora else None,
        callbacks=callbacks,
    )
    result = train_resumable(trainer, tokenizer, "grpo", stage_dir, resume, input_final)
    return {**result, "prompts": len(dataset), "reward_outcomes": rewards.total_counts()}
