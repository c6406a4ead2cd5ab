"""DAPO dynamic sampling for TRL's GRPOTrainer: zero-variance groups never reach the loss.

Follows DAPO (Yu et al. 2025, arXiv 2503.14476) §3.2 "dynamic sampling" (docs/METHODS.md, "DAPO dynamic
sampling"): a group whose rewards are all equal has zero advantage and so no gradient, yet under a token-level
loss (``loss_type="dapo"``) its tokens still count in the normaliser Σ|o_i| and dilute every other group's update.
DAPO over-samples and refills the batch until it holds only groups with 0 < accuracy < 1. TRL 1.16 only logs the
fraction of such groups (``frac_reward_zero_std``); this module adds the filter as a thin subclass.

How it maps onto TRL's fixed per-step batch (one generation per optimizer step, ``prompts_per_step`` groups):

* round 1 is TRL's own generation for the dataloader's prompts; rounds 2..``max_rounds`` generate fresh groups for
  prompts drawn at random from the training set (seeded by the step) until ``prompts_per_step`` groups with reward
  variance are collected (:func:`fill_batch`);
* if the rounds run out first, the remaining slots are filled with zero-variance groups whose completion mask is
  zeroed: they add no loss and no tokens to TRL's ``num_items_in_batch`` normaliser (the batch keeps its shape, so
  TRL's splitting into micro-batches is untouched). ``max_rounds: 1`` is therefore "drop only" — no extra
  generation, the zero-variance groups are just masked out;
* when no group of any round has variance the step cannot learn anything and :class:`DynamicSamplingExhausted` stops
  the run with the numbers — it never spins forever.

Deviations from the paper: DAPO over-samples a whole generation batch per round and always trains on a full batch;
here a round samples ``max(1, min(prompts_per_step, 2 × missing))`` prompts, at most ``max_rounds`` rounds run, and a
short batch is trained on (masked filler) rather than waiting for more rounds. "Variance" means the *total weighted
reward* differs within the group (as TRL's advantages use), not only the accuracy: with a format reward a group that
is all correct but differently formatted still carries a signal. Extra rounds are single-process only (with several
processes the groups of a round span processes); the masking works on any number of processes.

Per step, ``dynamic_sampling/kept``, ``/dropped``, ``/rounds`` and ``/filler`` go into TRL's metrics (and so into
``metrics.jsonl``). TRL's ``reward`` metric stays the mean over *every* sampled completion of every round, before
the filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from thinktune.errors import StageError

#: The keys of TRL 1.16's ``_generate_and_score_completions`` output that this module knows how to filter and merge
#: (text-only models; a key outside these makes the subclass refuse rather than silently mis-merge).
LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}
RIGHT_PADDED = {"completion_ids": "pad", "completion_mask": 0, "old_per_token_logps": 0.0,
                "ref_per_token_logps": 0.0, "sampling_per_token_logps": 0.0, "importance_sampling_ratio": 0.0}
PER_ROW = {"advantages"}
KNOWN_KEYS = set(LEFT_PADDED) | set(RIGHT_PADDED) | PER_ROW | {"num_items_in_batch"}


class DynamicSamplingExhausted(StageError):
    """No group with reward variance after ``max_rounds`` generation rounds (it never loops forever)."""


def has_variance(rewards: Sequence[float], tol: float = 1e-6) -> bool:
    """True when the scored (non-NaN) rewards of one group are not all equal — the group has a non-zero advantage."""
    vals = [r for r in rewards if r == r]  # NaN = unscorable, excluded as TRL excludes it from the baseline
    return len(vals) > 1 and max(vals) - min(vals) > tol


@dataclass
class Filled:
    """What :func:`fill_batch` collected: ``kept`` as (round, group index) pairs, in order."""

    kept: list[tuple[int, int]]
    dropped: int
    rounds: int


def fill_batch(sample_round: Callable[[int, int], Iterable[Sequence[float]]], groups_needed: int,
               max_rounds: int) -> Filled:
    """DAPO's ``fill_batch``: keep groups with reward variance until ``groups_needed`` are kept.

    ``sample_round(round, missing)`` samples one round and returns each group's rewards. Stops early once the batch
    is full; after ``max_rounds`` rounds returns what it has (a short batch), or raises
    :class:`DynamicSamplingExhausted` when not a single group qualified.
    """
    if max_rounds < 1 or groups_needed < 1:
        raise ValueError("fill_batch needs max_rounds >= 1 and groups_needed >= 1")
    kept: list[tuple[int, int]] = []
    dropped = 0
    for r in range(max_rounds):
        for g, rewards in enumerate(sample_round(r, groups_needed - len(kept))):
            if len(kept) < groups_needed and has_variance(rewards):
                kept.append((r, g))
            else:
                dropped += 1
        if len(kept) == groups_needed:
            return Filled(kept, dropped, r + 1)
    if not kept:
        raise DynamicSamplingExhausted(
            f"grpo.dynamic_sampling: no group with reward variance in {max_rounds} round(s) ({dropped} groups "
            f"sampled, every one all-equal rewards) — the model always or never solves these prompts; raise "
            f"grpo.dynamic_sampling.max_rounds, change the temperature or the data, or disable dynamic sampling")
    return Filled(kept, dropped, max_rounds)


def _pad_cat(tensors: list, value, left: bool):
    import torch

    width = max(t.size(1) for t in tensors)
    out = []
    for t in tensors:
        pad = t.new_full((t.size(0), width - t.size(1)), value)
        out.append(torch.cat([pad, t] if left else [t, pad], dim=1))
    return torch.cat(out, dim=0)


def merge_rows(parts: list[tuple[dict[str, Any], list[int]]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate the selected rows of several TRL generation outputs, re-padding to a common width."""
    import torch

    keys = set(parts[0][0])
    unknown = keys - KNOWN_KEYS
    if unknown:
        raise StageError(f"grpo.dynamic_sampling: TRL's generation output has keys it cannot merge: {sorted(unknown)} "
                         f"(multimodal / tool-calling batches are not supported)")
    merged: dict[str, Any] = {}
    for key in keys - {"num_items_in_batch"}:
        chosen = [out[key][rows] for out, rows in parts if rows]
        if key in PER_ROW:
            merged[key] = torch.cat(chosen, dim=0)
            continue
        left = key in LEFT_PADDED
        value = (LEFT_PADDED if left else RIGHT_PADDED)[key]
        merged[key] = _pad_cat(chosen, pad_token_id if value == "pad" else value, left)
    return merged


class DynamicSamplingMixin:
    """Mixed into ``trl.GRPOTrainer`` (see :func:`dynamic_sampling_trainer`); overrides two TRL methods:

    * ``_calculate_rewards`` — unchanged, only remembers the (process-gathered) rewards of the last call;
    * ``_generate_and_score_completions`` — runs TRL's, then :func:`fill_batch` over the rounds.
    """

    ds_max_rounds: int = 1

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._ds_last_rewards = rewards_per_func
        return rewards_per_func

    def _group_rewards(self) -> list[list[float]]:
        """The weighted total reward of every completion of the last call, grouped (TRL's ``sum_then_normalize``)."""
        import torch

        per_func = self._ds_last_rewards
        weights = self.reward_weights.to(per_func.device).unsqueeze(0)
        total = (per_func * weights).nansum(dim=1)
        total[torch.isnan(per_func).all(dim=1)] = float("nan")
        return total.view(-1, self.num_generations).tolist()

    def _extra_prompts(self, round_: int, n_groups: int) -> list[dict[str, Any]]:
        """``n_groups`` training rows drawn at random (seeded by seed, step and round), each repeated G times."""
        import torch

        gen = torch.Generator().manual_seed(self.args.seed * 1_000_003 + self.state.global_step * 101 + round_)
        idx = torch.randint(len(self.train_dataset), (n_groups,), generator=gen).tolist()
        return [dict(self.train_dataset[i]) for i in idx for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        if mode != "train":
            return super()._generate_and_score_completions(inputs)
        G = self.num_generations
        n_procs = self.accelerator.num_processes
        if self.ds_max_rounds > 1 and n_procs > 1:
            raise StageError("grpo.dynamic_sampling.max_rounds > 1 needs a single process (set max_rounds: 1 to only "
                             "mask zero-variance groups)")
        local_rows = len(inputs)
        outputs: list[dict[str, Any]] = []
        group_rewards: list[list[list[float]]] = []

        def sample_round(r: int, missing: int):
            if r == 0:
                out = super(DynamicSamplingMixin, self)._generate_and_score_completions(inputs)
            else:
                n = max(1, min(local_rows // G, 2 * missing))
                out = super(DynamicSamplingMixin, self)._generate_and_score_completions(self._extra_prompts(r, n))
            outputs.append(out)
            group_rewards.append(self._group_rewards())
            return group_rewards[-1]

        n_groups_global = local_rows * n_procs // G
        filled = fill_batch(sample_round, n_groups_global, self.ds_max_rounds)
        # TRL's process slice: this process owns global rows [p·local_rows, (p+1)·local_rows) of round 0
        lo = self.accelerator.process_index * local_rows
        keep_global = {(r, g) for r, g in filled.kept}
        filler = [(0, g) for g in range(n_groups_global) if (0, g) not in keep_global][: n_groups_global - len(filled.kept)]
        if n_procs > 1:  # rounds == 1: the batch is round 0 itself, rows stay in place, fillers are masked
            out = dict(outputs[0])
            mask_rows = [i for g in (g for _, g in filler) for i in range(g * G - lo, (g + 1) * G - lo)
                         if 0 <= i < local_rows]
            out = self._mask_rows(out, mask_rows)
        else:
            rows_by_round: dict[int, list[int]] = {}
            for r, g in sorted(filled.kept + filler):
                rows_by_round.setdefault(r, []).extend(range(g * G, (g + 1) * G))
            parts = [(outputs[r], rows) for r, rows in sorted(rows_by_round.items())]
            out = merge_rows(parts, self._tokenizer.pad_token_id)
            filler_rows, offset = [], 0
            filler_set = set(filler)
            for r, rows in sorted(rows_by_round.items()):
                groups = sorted({row // G for row in rows})
                for k, g in enumerate(groups):
                    if (r, g) in filler_set:
                        filler_rows.extend(range(offset + k * G, offset + (k + 1) * G))
                offset += len(rows)
            out = self._mask_rows(out, filler_rows)
        metrics = self._metrics[mode]
        metrics["dynamic_sampling/kept"].append(float(len(filled.kept)))
        metrics["dynamic_sampling/dropped"].append(float(filled.dropped))
        metrics["dynamic_sampling/rounds"].append(float(filled.rounds))
        metrics["dynamic_sampling/filler"].append(float(len(filler)))
        return out

    def _mask_rows(self, out: dict[str, Any], rows: list[int]) -> dict[str, Any]:
        """Zero the loss weight of ``rows`` (completion mask and advantage) and recount TRL's token normaliser."""
        out = dict(out)
        if rows:
            mask = out["completion_mask"].clone()
            mask[rows] = 0
            adv = out["advantages"].clone()
            adv[rows] = 0.0
            out["completion_mask"], out["advantages"] = mask, adv
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        return out


def dynamic_sampling_trainer(max_rounds: int):
    """A ``trl.GRPOTrainer`` subclass with dynamic sampling over at most ``max_rounds`` generation rounds per step."""
    from trl import GRPOTrainer

    if max_rounds < 1:
        raise ValueError("max_rounds must be >= 1")
    return type("DynamicSamplingGRPOTrainer", (DynamicSamplingMixin, GRPOTrainer), {"ds_max_rounds": max_rounds})
