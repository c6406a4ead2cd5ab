"""GRPO stage: group-relative policy optimisation with TRL's ``GRPOTrainer``.

Follows DeepSeekMath's GRPO (arXiv 2402.03300) as implemented by TRL; the loss variant is chosen by a named
preset (docs/METHODS.md, "GRPO and its loss variants"), never re-implemented here:

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
from thinktune.context import StageContext
from thinktune.data.records import read_records
from thinktune.distributed import barrier, is_main
from thinktune.errors import StageError
from thinktune.formatting import chat_prompt
from thinktune.io import atomic_write_json
from thinktune.models import MODEL_META, load_stage_output
from thinktune.progress import reporter
from thinktune.rewards.learned import weak_reward_model
from thinktune.rewards.probes import PROBES_FILE, probe_rewards
from thinktune.rewards.runner import RewardRunner
from thinktune.stages.callbacks import GRPOAlerts
from thinktune.stages.preflight import check, preflight, problems
from thinktune.stages.setup import (
    peft_config,
    seed_everything,
    stage_callbacks,
    train_resumable,
    trainer_args,
    trl_passthrough,
)

log = logging.getLogger(__name__)

# preset -> TRL settings (Dr. GRPO needs both the aggregation and the unscaled advantages; docs/METHODS.md)
PRESETS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_type": "grpo", "scale_rewards": "group"},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    "dapo": {"loss_type": "dapo", "scale_rewards": "group"},
}


def grpo_trl_args(cfg: GRPOStage) -> dict[str, Any]:
    """The GRPOConfig fields of GRPO alone (beside setup.trainer_args, before the ``trl:`` passthrough)."""
    eps_low, eps_high = cfg.clip
    return {
        **PRESETS[cfg.preset],
        "num_generations": cfg.samples_per_prompt,
        "max_completion_length": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "beta": cfg.kl_coef,
        "epsilon": eps_low,
        "epsilon_high": eps_high,
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
    kind = json.loads((input_final / MODEL_META).read_text()).get("kind", "full")
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


def run_stage(ctx: StageContext) -> dict[str, Any]:
    from datasets import Dataset

    recipe, cfg = ctx.recipe, ctx.config
    ctx.dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)

    input_final = ctx.input_model()
    model, tokenizer = load_stage_output(input_final, recipe.model)
    reference = pin_reference(model, tokenizer, cfg, recipe.model.lora is not None, input_final, ctx.dir)
    records = read_records(ctx.data_file("train"))
    if cfg.max_train_prompts:
        records = records[: cfg.max_train_prompts]
    if not records:
        raise StageError("grpo: no training prompts")
    dataset = Dataset.from_list([
        {"prompt": chat_prompt(tokenizer, r.question, recipe.model.instruction, recipe.model.system),
         "record": r.model_dump_json()}
        for r in records
    ])

    rewards = RewardRunner(ctx.grpo_rewards(), ctx.fmt, cfg.reward_max_error_fraction,
                           completions_dir=ctx.dir / "completions", workers=cfg.reward_workers,
                           deadline=cfg.reward_deadline)
    try:
        result = _train(ctx, model, tokenizer, records, dataset, rewards)
        return {**result, "kl_reference": reference}
    finally:
        rewards.close()


def _train(ctx: StageContext, model, tokenizer, records, dataset, rewards) -> dict[str, Any]:
    from trl import GRPOConfig

    recipe, cfg = ctx.recipe, ctx.config
    # Under `run --processes N` the reward probes and the pre-flight run on rank 0 alone (one writer, counted once);
    # the other ranks go on to the trainer and wait at its first collective, or are stopped when rank 0 refuses.
    if cfg.reward_probes and is_main():  # a reward that pays for a hack is found before training (docs/METHODS.md)
        report = probe_rewards(rewards.specs, records, ctx.fmt, runner=rewards, max_items=cfg.reward_probe_items)
        atomic_write_json(ctx.dir / PROBES_FILE, report.to_dict())
        if not report.ok:
            raise StageError(f"grpo: {report.summary()}\n(fix the rewards, or set grpo.reward_probes=false)")
        reporter().note(f"[grpo] {report.summary()}")
    if cfg.min_reward_model_accuracy is not None and is_main():  # a learned reward no better than chance
        for spec in rewards.specs:
            if spec.fn == "reward_model" and (why := weak_reward_model(spec.kwargs.get("path", ""),
                                                                        cfg.min_reward_model_accuracy)):
                raise StageError(f"grpo: {why}")
    if cfg.preflight and not ctx.resume and is_main():
        numbers = preflight(model, tokenizer, records, cfg, rewards, recipe.model.instruction, recipe.model.system)
        reasons = problems(numbers, cfg.preflight_max_truncated)
        atomic_write_json(ctx.dir / "preflight.json", {**numbers, "refused": bool(reasons), "reasons": reasons})
        check(numbers, cfg.preflight_max_truncated)
        reporter().note(f"[grpo] pre-flight: {numbers['zero_variance_fraction']:.0%} of {numbers['groups']} groups "
                        f"without reward variance, {numbers['truncated_fraction']:.0%} truncated")
    ours: dict[str, Any] = {
        **trainer_args(ctx, cfg),
        **grpo_trl_args(cfg),
        "reward_weights": rewards.weights,
        "remove_unused_columns": False,  # rewards need the `record` column
        "log_completions": False,  # thinktune writes completions/ itself (all of them, every step)
    }
    args = GRPOConfig(**trl_passthrough(GRPOConfig, cfg.trl, ours, "grpo"))
    callbacks = [GRPOAlerts(), *stage_callbacks(ctx, cfg, tokenizer, cfg.max_new_tokens)]
    trainer = trainer_class(cfg)(
        model=model,
        reward_funcs=rewards.trl_functions(),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(recipe.model.lora) if recipe.model.lora else None,
        callbacks=callbacks,
    )
    result = train_resumable(ctx, trainer, tokenizer)
    return {**result, "prompts": len(dataset), "reward_outcomes": rewards.total_counts()}
