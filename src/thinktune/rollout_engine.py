"""Batched decoding for GRPO rollouts on CPU: the same model forward as HF ``generate``, without its waste.

A GRPO step samples ``G`` completions for each of its prompts. On a CPU the time goes, per decode step, into (measured
with cProfile on the quickstart model, 128 sequences, TRL's default ``generate``): growing the KV cache by
``torch.cat`` (29 %, every layer copies its whole cache every step), attention (18 %), the linear layers (16 %), and
per-step overhead that scales with the number of rows. Rows that already ended keep being computed until the longest
row of the batch ends. This engine keeps HF's model forward (any ``transformers`` causal LM with the standard
``Cache`` interface) and changes only the bookkeeping around it:

1. **Preallocated KV cache** (:class:`PreallocatedLayer`): each layer's keys and values are written in place into a
   buffer sized for prompt + ``max_new_tokens``; attention sees a view of the filled part, so nothing is copied per step.
2. **Finished rows leave the batch**: once a row has produced EOS it is dropped from the forward pass (its cache rows
   are compacted away), so the batch shrinks as completions end instead of running to the longest one.
3. **Shared prompts are prefilled once**: the ``G`` copies of a prompt share one prefill; its cache rows are copied
   to the ``G`` samples afterwards.

Sampling follows HF ``generate`` exactly for the settings GRPO uses (repetition penalty, temperature, top-k, top-p,
min-p, applied by transformers' own logits processors in ``generate``'s order; ``torch.multinomial`` on the
softmax), and greedy decoding is the argmax. Each row's computation is the same as in ``generate`` with the same
padding, so greedy outputs are identical (``tests/test_rollout_engine.py`` and ``benchmarks/bench_rollouts.py`` check
token for token); sampled outputs follow the same distribution but not the same random stream, since the batch
shrinks. Stop strings are not supported (GRPO stops at EOS, as TRL does); use :mod:`thinktune.generation` for those.

Deviation from continuous batching (transformers ``generate_batch``, vLLM): finished rows are not replaced by new
requests — a GRPO step has a fixed set of prompts. transformers' paged continuous batching exists but is built for
GPUs: on this CPU it ran the quickstart batch 7-18x slower than plain ``generate`` (benchmarks/bench_rollouts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


COMPACT_EVERY = 8  # compact the batch once 1/8 of its rows have ended (each compaction copies the KV cache)


@dataclass(frozen=True)
class DecodeSettings:
    """What to sample: the fields of TRL's generation config that GRPO uses."""

    max_new_tokens: int
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int | None = None  # None or 0: off
    top_p: float | None = None  # None or 1.0: off
    min_p: float | None = None
    repetition_penalty: float = 1.0


def logits_processors(s: DecodeSettings):
    """transformers' own processors, in the order ``generate`` applies them (penalties first, then the warpers)."""
    from transformers import (LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                              TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    procs = LogitsProcessorList()
    if s.repetition_penalty is not None and s.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=s.repetition_penalty))
    if s.do_sample:
        if s.temperature is not None and s.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(s.temperature))
        if s.top_k:
            procs.append(TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1))
        if s.top_p is not None and s.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1))
        if s.min_p is not None:
            procs.append(MinPLogitsWarper(min_p=s.min_p, min_tokens_to_keep=1))
    return procs


def _layer_class():
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A KV cache layer written in place into a buffer of ``capacity`` positions (no per-step ``torch.cat``)."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.buf_k: torch.Tensor | None = None
            self.buf_v: torch.Tensor | None = None
            self.length = 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            b, h, q, d = key_states.shape  # (B, heads, new positions, head dim)
            if self.buf_k is None:
                self.buf_k = key_states.new_empty((b, h, self.capacity, d))
                self.buf_v = value_states.new_empty((b, h, self.capacity, d))
            if self.length + q > self.capacity:
                raise RuntimeError(f"KV cache capacity {self.capacity} exceeded")
            self.buf_k[:, :, self.length : self.length + q] = key_states
            self.buf_v[:, :, self.length : self.length + q] = value_states
            self.length += q
            self.keys = self.buf_k[:, :, : self.length]
            self.values = self.buf_v[:, :, : self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.buf_k is None:
                return
            new_k = self.buf_k.new_empty((len(indices), *self.buf_k.shape[1:]))
            new_v = self.buf_v.new_empty((len(indices), *self.buf_v.shape[1:]))
            new_k[:, :, : self.length] = self.buf_k[indices, :, : self.length]
            new_v[:, :, : self.length] = self.buf_v[indices, :, : self.length]
            self.buf_k, self.buf_v = new_k, new_v
            self.keys = self.buf_k[:, :, : self.length]
            self.values = self.buf_v[:, :, : self.length]

    return PreallocatedLayer


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


@torch.inference_mode()
def decode(model, prompt_ids: Sequence[Sequence[int]], settings: DecodeSettings, eos_token_ids: Sequence[int],
           pad_token_id: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Completion token ids for each prompt (EOS included when produced), in the order of ``prompt_ids``.

    ``prompt_ids`` may repeat a prompt (GRPO's ``G`` samples); equal prompts share one prefill. The prompts are left
    padded to a common width as HF ``generate`` pads them, so every row sees the positions it would see there.
    """
    from transformers.cache_utils import Cache

    if settings.max_new_tokens < 1 or not prompt_ids:
        return [[] for _ in prompt_ids]
    rows = [tuple(p) for p in prompt_ids]
    unique = list(dict.fromkeys(rows))
    ids, mask = _left_pad(unique, pad_token_id)
    width = ids.shape[1]
    capacity = width + settings.max_new_tokens
    n_layers = model.config.get_text_config().num_hidden_layers
    layer = _layer_class()
    cache = Cache(layers=[layer(capacity) for _ in range(n_layers)])
    device = next(model.parameters()).device
    procs = logits_processors(settings)
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)

    # prefill the distinct prompts once (positions as generate computes them: cumsum of the mask)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    # expand to one row per requested sample
    where = {r: i for i, r in enumerate(unique)}
    row_of = torch.tensor([where[r] for r in rows], dtype=torch.long)
    logits = out.logits[:, -1, :].to(dtype=torch.float32)[row_of]  # (B, V)
    cache.batch_select_indices(row_of.to(device))
    mask = mask[row_of].to(device)  # (B, width)
    last_pos = position_ids[row_of, -1].to(device)  # (B,)
    # the repetition penalty reads prompt + completion so far; the other processors read only the scores
    penalised = settings.repetition_penalty is not None and settings.repetition_penalty != 1.0
    history = ids[row_of].to(device) if penalised else None

    b = len(rows)
    alive = torch.arange(b, device=device)  # original row index of each batch row
    finished = torch.zeros(b, dtype=torch.bool, device=device)  # per batch row: ended (not yet compacted away)
    outputs: list[list[int]] = [[] for _ in range(b)]
    # the decode steps' attention mask, prepared once in the 4-D boolean form transformers builds for sdpa from the
    # 2-D padding mask ((B, 1, 1, kv): True = attend); the model uses a 4-D mask as given
    full_mask = torch.zeros((b, 1, 1, capacity), dtype=torch.bool, device=device)
    full_mask[:, 0, 0, :width] = mask.bool()
    for step in range(settings.max_new_tokens):
        scores = procs(history, logits) if procs else logits
        if settings.do_sample:
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)  # (B_alive,)
        else:
            nxt = torch.argmax(scores, dim=-1)
        for j, tok, gone in zip(alive.tolist(), nxt.tolist(), finished.tolist()):
            if not gone:
                outputs[j].append(tok)
        finished |= torch.isin(nxt, eos)
        n_done = int(finished.sum())
        if step == settings.max_new_tokens - 1 or n_done == finished.numel():
            break
        if n_done * COMPACT_EVERY >= finished.numel():  # enough rows ended: they leave the batch
            keep = (~finished).nonzero().squeeze(1)
            alive, nxt, last_pos, full_mask, finished = (alive[keep], nxt[keep], last_pos[keep], full_mask[keep],
                                                          finished[keep])
            cache.batch_select_indices(keep)
            if history is not None:
                history = history[keep]
        cur = width + step
        full_mask[:, 0, 0, cur] = True
        last_pos = last_pos + 1
        if history is not None:
            history = torch.cat([history, nxt[:, None]], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=full_mask[..., : cur + 1], position_ids=last_pos[:, None],
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1, :].to(dtype=torch.float32)
    return outputs
