"""DPO stage: preference pairs from verified samples, then TRL's ``DPOTrainer``.

Loss: Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290), computed by TRL (``loss_type``,
default ``sigmoid`` = the paper's loss; a list such as ``[sigmoid, sft]`` adds the NLL term of Iterative RPO).

Pairs (docs/METHODS.md, "DPO on verified samples"), ``dpo.pairs``:

- ``self``: sample ``samples_per_question`` completions per training question from this stage's input model and
  grade each with the ``correct`` reward (rewards/library.py: the task's verifier *and* a well-formed completion, so
  a right answer in a malformed block is a rejected completion). Up to ``pairs_per_question`` (correct, incorrect)
  pairs are formed per question ("zip" policy: distinct correct and distinct incorrect texts, shuffled with the
  seed, paired in order, the shorter list cycled); questions with only correct or only incorrect samples give no
  pair and are counted — the DPO analogue of a zero-variance GRPO group. This is one iteration of *Iterative
  Reasoning Preference Optimization* (Pang et al. 2024, arXiv 2404.19733), which samples CoTs from the current
  model and pairs correct with incorrect ones.
- ``teacher``: the same, with another model (``dpo.teacher``) sampling.
- ``file``: a JSONL of ``{question | prompt, chosen, rejected}`` rows (``id`` optional), validated with
  ``file:line: field:`` errors. ``question`` goes through the chat template; ``prompt`` is used verbatim. A labels
  file written by ``thinktune label`` works too: its labels become pairs (data/labels.py; ties, both-bad and
  disagreeing judgements give none and are counted in ``pairs_stats.json`` with the annotators' agreement).

The pairs are written atomically to ``dpo/pairs.jsonl`` and their counts to ``dpo/pairs_stats.json`` (written
last, so it marks the pairs complete); a resumed stage reuses them instead of sampling again.

Reference model: this stage's input model. With LoRA, models.py merges the incoming adapter and a new adapter is
trained, so TRL's "adapter disabled" reference is the input model. With full fine-tuning an in-memory copy of the
input model is passed to TRL explicitly (TRL would otherwise reload ``config._name_or_path``, which after a merged
LoRA SFT names the pre-SFT base). The stage result names the reference.

Deviations from Pang et al.: one iteration (iterate by chaining runs), no NLL term unless ``loss_type`` asks for it,
pairs are not filtered by length. Pairs longer than ``max_length`` tokens are dropped and counted, not truncated.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from thinktune.config import DPOStage, Recipe
from thinktune.context import StageContext
from thinktune.data.pairs import load_pairs
from thinktune.data.records import Record, iter_jsonl, read_records, write_jsonl
from thinktune.distributed import main_first
from thinktune.errors import StageError
from thinktune.formatting import CompletionFormat, chat_prompt
from thinktune.io import atomic_write_json
from thinktune.models import load_stage_output
from thinktune.progress import reporter
from thinktune.stages.setup import (
    peft_config,
    preference_rows,
    seed_everything,
    stage_callbacks,
    train_resumable,
    trainer_args,
    trl_passthrough,
)

log = logging.getLogger(__name__)

SEQUENCES_PER_CALL = 256  # sampled sequences per generate() call while building pairs (prompts × samples)


# --------------------------------------------------------------------------------------------------------------
# Pairs from samples


@dataclass
class PairStats:
    questions: int = 0  # questions sampled
    samples: int = 0  # completions sampled
    correct: int = 0  # completions the verifier accepted (well formed, right answer)
    incorrect: int = 0
    ungradable: int = 0  # gold unusable: neither chosen nor rejected
    with_both: int = 0  # questions with at least one correct and one incorrect completion
    only_correct: int = 0  # skipped: nothing to reject
    only_incorrect: int = 0  # skipped: nothing to choose
    pairs: int = 0

    @property
    def skipped(self) -> int:
        return self.questions - self.with_both

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": self.skipped}


def _distinct(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def pair_up(good: Sequence[str], bad: Sequence[str], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Up to ``n`` distinct (chosen, rejected) pairs: distinct texts shuffled, zipped, the shorter list cycled."""
    good, bad = _distinct(good), _distinct(bad)
    if not good or not bad:
        return []
    rng.shuffle(good)
    rng.shuffle(bad)
    out = []
    for i in range(min(n, max(len(good), len(bad)))):
        g, b = good[i % len(good)], bad[i % len(bad)]
        if g != b:
            out.append((g, b))
    return out


def build_pairs(records: Sequence[Record], samples: Sequence[Sequence[str]],
                verify: Callable[[str, Record], float | None], pairs_per_question: int,
                seed: int) -> tuple[list[dict[str, str]], PairStats]:
    """Pairs from ``samples[i]`` (completions of ``records[i]``) graded by ``verify`` (1.0 correct, 0.0 incorrect,
    None ungradable). The same seed gives the same pairs."""
    if len(samples) != len(records):
        raise ValueError(f"{len(samples)} sample lists for {len(records)} questions")
    stats, pairs = PairStats(), []
    for i, (record, texts) in enumerate(zip(records, samples)):
        stats.questions += 1
        stats.samples += len(texts)
        good, bad = [], []
        for t in texts:
            v = verify(t, record)
            if v is None:
                stats.ungradable += 1
            elif v >= 1.0:
                good.append(t)
            else:
                bad.append(t)
        stats.correct += len(good)
        stats.incorrect += len(bad)
        if not good or not bad:
            if good:
                stats.only_correct += 1
            elif bad:
                stats.only_incorrect += 1
            continue
        stats.with_both += 1
        for chosen, rejected in pair_up(good, bad, pairs_per_question, random.Random(f"{seed}:{record.id}")):
            pairs.append({"id": record.id, "question": record.question, "chosen": chosen, "rejected": rejected})
    stats.pairs = len(pairs)
    return pairs, stats


def sample_completions(model, tokenizer, records: Sequence[Record], cfg: DPOStage, fmt: CompletionFormat,
                       instruction: str | None, system: str | None, seed: int) -> list[list[str]]:
    """``cfg.samples_per_question`` sampled completions per record (seeded, batched, stopping at the answer tag)."""
    import torch

    from thinktune.generation import SamplingParams, generate_texts

    prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in records]
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                            n=cfg.samples_per_question, stop=(fmt.stop,))
    with torch.random.fork_rng(), reporter().task("dpo: sampling pairs", total=len(prompts)) as bar:
        torch.manual_seed(seed)
        return generate_texts(model, tokenizer, prompts, params,
                              batch_size=max(1, SEQUENCES_PER_CALL // cfg.samples_per_question),
                              on_batch=bar.advance)


def make_pairs(ctx: StageContext, model, tokenizer) -> tuple[list[dict[str, str]], dict]:
    """The stage's pairs: reused from ``pairs.jsonl`` when a previous attempt completed them, else built."""
    from thinktune.rewards.library import correct

    recipe, cfg = ctx.recipe, ctx.config
    pairs_path, stats_path = ctx.dir / "pairs.jsonl", ctx.dir / "pairs_stats.json"
    if stats_path.exists() and pairs_path.exists():
        reporter().note("[dpo] reusing pairs.jsonl from the interrupted attempt")
        return [obj for _, obj in iter_jsonl(pairs_path)], json.loads(stats_path.read_text())
    fmt = ctx.fmt
    if cfg.pairs == "file":
        assert cfg.pairs_file is not None
        pairs, stats = load_pairs(cfg.pairs_file)
    else:
        records = read_records(ctx.data_file("train"))
        if cfg.max_questions:
            records = records[: cfg.max_questions]
        if cfg.pairs == "teacher":
            from thinktune.config import ModelConfig
            from thinktune.models import load_model

            sampler, sampler_tok = load_model(ModelConfig(path=cfg.teacher))
        else:
            sampler, sampler_tok = model, tokenizer
        samples = sample_completions(sampler, sampler_tok, records, cfg, fmt, recipe.model.instruction,
                                     recipe.model.system, recipe.seed)
        pairs, pair_stats = build_pairs(records, samples, lambda t, r: correct(t, r, fmt), cfg.pairs_per_question,
                                        recipe.seed)
        stats = {"source": cfg.pairs, **({"teacher": cfg.teacher} if cfg.teacher else {}), **pair_stats.to_dict()}
        reporter().note(f"[dpo] {pair_stats.pairs} pairs from {pair_stats.with_both} of {pair_stats.questions} "
                        f"questions ({pair_stats.only_correct} all correct, {pair_stats.only_incorrect} all wrong "
                        f"skipped); {pair_stats.correct}/{pair_stats.samples} samples correct")
    write_jsonl(pairs_path, pairs)
    atomic_write_json(stats_path, stats)  # written last: marks pairs.jsonl complete
    return pairs, stats


# --------------------------------------------------------------------------------------------------------------
# Training


def build_dataset(pairs: Sequence[dict[str, str]], tokenizer, recipe: Recipe, cfg: DPOStage):
    """(datasets.Dataset of prompt/chosen/rejected, number of pairs dropped as longer than max_length)."""
    from datasets import Dataset

    rows, too_long = preference_rows(pairs, tokenizer, recipe.model, cfg.max_length)
    return Dataset.from_list(rows), too_long


def trl_loss_types() -> list[str]:
    """The loss names TRL's DPOConfig documents (read from its field help, so the list follows TRL)."""
    import dataclasses
    import re

    from trl import DPOConfig

    field = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type")
    return re.findall(r"`'([a-z_]+)'`", field.metadata.get("help", ""))


def check_loss_type(cfg: DPOStage) -> list[str]:
    """``cfg.loss_type`` as TRL's list; RecipeError naming the field for a name TRL does not know (TRL itself only
    fails at the first training step, after the pairs were sampled)."""
    from thinktune.errors import RecipeError

    names = [cfg.loss_type] if isinstance(cfg.loss_type, str) else list(cfg.loss_type)
    known = trl_loss_types()
    bad = [n for n in names if n not in known]
    if not names or (known and bad):
        raise RecipeError(f"dpo.loss_type: {bad[0] if bad else '[]'!r} is not a TRL DPO loss (one of "
                          f"{', '.join(known)})")
    return names


def run_stage(ctx: StageContext) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    recipe, cfg = ctx.recipe, ctx.config
    ctx.dir.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)

    input_final = ctx.input_model()
    ours: dict[str, Any] = {
        **trainer_args(ctx, cfg),
        "beta": cfg.beta,
        "loss_type": check_loss_type(cfg),
        "max_length": cfg.max_length,
    }
    try:
        args = DPOConfig(**trl_passthrough(DPOConfig, cfg.trl, ours, "dpo"))
    except ValueError as e:  # TRL's own checks (e.g. loss_weights length), before any sampling
        raise StageError(f"dpo: TRL rejected the settings: {e}") from None

    model, tokenizer = load_stage_output(input_final, recipe.model)
    with main_first():  # `run --processes N`: rank 0 samples and writes pairs.jsonl, the others read it
        pairs, pair_stats = make_pairs(ctx, model, tokenizer)
    dataset, too_long = build_dataset(pairs, tokenizer, recipe, cfg)
    if len(dataset) == 0:
        raise StageError(f"dpo: no training pairs ({json.dumps(pair_stats)}; {too_long} longer than "
                         f"max_length={cfg.max_length}). Sample more (dpo.samples_per_question, dpo.max_questions) "
                         f"or raise dpo.temperature")
    if too_long:
        log.warning("dpo: dropped %d pairs longer than max_length=%d", too_long, cfg.max_length)

    lora = recipe.model.lora is not None
    ref_model = None if lora else copy.deepcopy(model)  # taken before training: the input model's weights
    reference = (f"input model {input_final} (adapter disabled)" if lora
                 else f"input model {input_final} (in-memory copy passed to TRL)")
    callbacks = stage_callbacks(ctx, cfg, tokenizer, cfg.max_new_tokens)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(recipe.model.lora) if lora else None,
        callbacks=callbacks,
    )
    result = train_resumable(ctx, trainer, tokenizer)
    return {**result, "pairs": len(dataset), "dropped_too_long": too_long, "pair_stats": pair_stats,
            "reference": reference}
