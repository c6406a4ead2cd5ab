"""Reward-model stage: a scalar reward model trained on preference pairs with TRL's ``RewardTrainer``.

Follows InstructGPT's reward model (Ouyang et al. 2022, arXiv 2203.02155, §3.5): start from this stage's input
model (the SFT model), replace its LM head by a scalar head, and train on the pairwise Bradley–Terry loss
``−log σ(r(x, y_chosen) − r(x, y_rejected))`` — computed by TRL, never here. The pairs come from ``pairs_file``:
a labels file written by ``thinktune label`` (people's judgements; ties, both-bad and disagreeing labels give no
pair and are counted, data/labels.py) or a pairs JSONL like DPO's.

A ``held_out`` fraction of the *prompts* (chosen by a hash of the prompt and the seed, so every pair of one prompt
falls on the same side) is never trained on. After training, the stage scores each held-out pair with the saved
model through the same code the ``reward_model`` reward uses (rewards/learned.py) and reports the pairwise
accuracy — the share of pairs where the chosen completion scores higher — with its 95 % Wilson interval. GRPO then
trains against this model with ``{fn: reward_model}`` (its path filled in from this run).

Outputs: ``reward_model/final/`` (full weights, tokenizer, ``reward_model.json`` with the prompt settings),
``pairs_stats.json`` (the labels' counts and agreement), ``held_out.json`` (accuracy, per-pair scores).

Deviations from InstructGPT: 1. each pair is its own example (InstructGPT batches all K-choose-2 comparisons of a
prompt together to avoid overfitting; with one or two pairs per prompt it makes no difference); 2. the reward
model is always fully fine-tuned — ``model.lora`` applies to the policy stages — so the reward loads as one
ordinary checkpoint; 3. pairs longer than ``max_length`` tokens are dropped and counted, not truncated.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from thinktune.audit.outcomes import wilson_interval
from thinktune.context import StageContext
from thinktune.data.pairs import load_pairs
from thinktune.distributed import barrier, is_main
from thinktune.errors import StageError
from thinktune.io import atomic_write_json
from thinktune.models import load_stage_output, reward_model_from
from thinktune.progress import reporter
from thinktune.rewards.learned import HELD_OUT_FILE, REWARD_MODEL_META
from thinktune.stages.setup import (
    preference_rows,
    seed_everything,
    stage_callbacks,
    train_resumable,
    trainer_args,
    trl_passthrough,
)


def is_held_out(prompt: str, seed: int, fraction: float) -> bool:
    """Whether a prompt's pairs are held out (a stable hash of seed and prompt, uniform in [0, 1))."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def pairwise_accuracy(path, rows: list[dict[str, str]]) -> dict[str, Any]:
    """The saved reward model's accuracy on ``{prompt, chosen, rejected}`` rows (ties count as wrong)."""
    from thinktune.rewards.learned import RewardModelScorer

    scorer = RewardModelScorer(path)
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score_texts(prompts, [r["chosen"] for r in rows])
    rejected = scorer.score_texts(prompts, [r["rejected"] for r in rows])
    right = sum(c > r for c, r in zip(chosen, rejected))
    lo, hi = wilson_interval(right, len(rows))
    return {"pairs": len(rows), "accuracy": right / len(rows) if rows else None, "accuracy_ci95": [lo, hi],
            "scores": [[round(c, 4), round(r, 4)] for c, r in zip(chosen, rejected)]}


def run_stage(ctx: StageContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    recipe, cfg = ctx.recipe, ctx.config
    ctx.dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    policy, tokenizer = load_stage_output(ctx.input_model(), recipe.model)
    model = reward_model_from(policy)
    del policy
    pairs, pair_stats = load_pairs(cfg.pairs_file)
    rows, too_long = preference_rows(pairs, tokenizer, recipe.model, cfg.max_length)
    train = [r for r in rows if not is_held_out(r["prompt"], recipe.seed, cfg.held_out)]
    held = [r for r in rows if is_held_out(r["prompt"], recipe.seed, cfg.held_out)]
    if not train or not held:
        raise StageError(f"reward_model: {len(train)} training and {len(held)} held-out pairs from {len(rows)} "
                         f"({too_long} longer than max_length={cfg.max_length}); both need at least one — label more "
                         f"or change reward_model.held_out")
    if is_main():
        atomic_write_json(ctx.dir / "pairs_stats.json", pair_stats)
    reporter().note(f"[reward_model] {len(train)} training pairs, {len(held)} held out "
                    f"({too_long} longer than max_length dropped)")

    ours: dict[str, Any] = {**trainer_args(ctx, cfg), "max_length": cfg.max_length}
    if cfg.eval_every:
        ours.update(eval_strategy="steps", eval_steps=cfg.eval_every, per_device_eval_batch_size=cfg.micro_batch_size)
    args = RewardConfig(**trl_passthrough(RewardConfig, cfg.trl, ours, "reward_model"))
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                            eval_dataset=Dataset.from_list(held) if cfg.eval_every else None,
                            processing_class=tokenizer, callbacks=stage_callbacks(ctx, cfg, tokenizer, None))
    result = train_resumable(ctx, trainer, tokenizer)
    final = ctx.dir / "final"
    if is_main():
        meta = {"instruction": recipe.model.instruction, "system": recipe.model.system}
        atomic_write_json(final / REWARD_MODEL_META, meta)
        evaluation = pairwise_accuracy(final, held)
        atomic_write_json(ctx.dir / HELD_OUT_FILE, evaluation)
        atomic_write_json(final / REWARD_MODEL_META, {**meta, "held_out": {  # travels with the model (GRPO's check)
            "accuracy": evaluation["accuracy"], "accuracy_ci95": evaluation["accuracy_ci95"], "pairs": len(held)}})
        reporter().note(f"[reward_model] held-out pairwise accuracy {evaluation['accuracy']:.1%} "
                        f"on {len(held)} pairs")
    barrier()
    evaluation = json.loads((ctx.dir / HELD_OUT_FILE).read_text())
    return {**result, "pairs": len(train), "held_out_pairs": len(held), "dropped_too_long": too_long,
            "held_out_accuracy": evaluation["accuracy"], "held_out_accuracy_ci95": evaluation["accuracy_ci95"],
            "labels": {k: pair_stats.get(k) for k in ("source", "labels", "items", "annotators", "tie", "both_bad",
                                                      "disagreement") if k in pair_stats},
            "agreement": {k: (pair_stats.get("agreement") or {}).get(k) for k in ("items", "observed", "kappa")}}
