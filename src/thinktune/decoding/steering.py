"""Activation steering for concise chains (ASC): extract one direction, add it to the residual stream while decoding.

1. Extraction. For each (question, concise chain, verbose chain) pair, one forward pass (no generation) over
   prompt ⊕ chain; the residual h_L at the *last* token is captured at layer L, and
   v = mean_i [h_L(prompt ⊕ concise_i) − h_L(prompt ⊕ verbose_i)]   — v points from verbose to concise.
2. Injection. A forward hook on the decoder block whose output is ``hidden_states[L]`` adds γ·v to the *last
   position* at every forward call (the last prompt token during prefill, then each new token).
3. Calibration. The mean next-token KL(p_unsteered ‖ p_steered) over the unsteered model's own completions, and the
   strength γ_max(δ) at which it reaches δ (by bisection, and by the second-order estimate of docs/METHODS.md,
   "Activation steering").

How to run::

    thinktune steer extract MODEL --pairs pairs.jsonl --layer 21 -o concise.steer
    thinktune generate MODEL --data gsm8k_test.jsonl --steer concise.steer:0.5
    thinktune steer sweep MODEL concise.steer --data gsm8k_test.jsonl     # length, accuracy, KL per strength

Paper: *Activation Steering for Chain-of-Thought Compression* (Azizi, Baghaei Potraghloo, Pedram), arXiv 2507.04742;
code ArminAzizi98/ASC.

Deviations and choices (numbered):
1. Sign: v = concise − verbose and the hook *adds* +γ·v (the released generator subtracts).
   ``thinktune steer sweep`` checks the sign on a dev set (mean length must fall for γ > 0).
2. Layer: ``layer`` indexes ``hidden_states`` as in the released extractor; the hook sits on
   ``decoder_layers[layer − 1]``, the block whose output *is* ``hidden_states[layer]`` (the released hook is one block
   late). Extraction captures the same tensor with the same hook point, so extraction and injection always agree
   (``hidden_states[num_layers]`` has the final norm applied in HF models; the hook output does not).
3. The chain is appended to the *chat prompt* the model sees when generating (``chat_prompt`` with the same
   instruction), not to the bare problem text, so the captured state is the one the hook later shifts.
4. Pairs are user data (``{"question", "concise", "verbose"}`` JSONL); the paper's concise chains come from
   GPT-4o and its verbose ones from the target model itself.
5. γ is chosen empirically (bisection to mean KL ≤ δ on calibration completions), not with the
   paper's closed form; δ has no published value, thinktune's default is 0.1 nats.
6. Vectors are saved as safetensors with JSON metadata (model, layer, hidden size, pairs, sign convention); loading
   refuses a vector whose hidden size differs from the model's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from thinktune.errors import ThinktuneError
from thinktune.formatting import chat_prompt

SIGN_CONVENTION = "v = concise - verbose (mean last-token residual difference); steering adds +strength*v"


class SteeringError(ThinktuneError):
    """A steering vector that cannot be used (wrong file, wrong model, bad layer)."""


@dataclass(frozen=True)
class SteeringPair:
    question: str
    concise: str
    verbose: str


@dataclass
class SteeringVector:
    vector: torch.Tensor  # (d,) float32
    layer: int  # index into hidden_states; the hook sits on decoder_layers[layer - 1]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write safetensors + metadata atomically."""
        from safetensors.torch import save_file

        meta = {**self.meta, "layer": self.layer, "hidden_size": int(self.vector.numel()),
                "norm": float(self.vector.norm()), "sign": SIGN_CONVENTION}
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            save_file({"vector": self.vector.detach().float().contiguous().cpu()}, str(tmp),
                      metadata={"thinktune": json.dumps(meta, sort_keys=True)})
            os.replace(tmp, target)  # readers see the old file or the whole new one
        finally:
            tmp.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> SteeringVector:
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise SteeringError(f"steering vector {p}: no such file")
        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("thinktune", "{}"))
                vector = fh.get_tensor("vector").float()
        except Exception as e:  # safetensors raises several types for a bad file
            raise SteeringError(f"steering vector {p}: not a thinktune steering file ({e})") from None
        if "layer" not in meta or vector.ndim != 1:
            raise SteeringError(f"steering vector {p}: metadata lacks the layer, or the vector is not 1-D")
        return cls(vector, int(meta["layer"]), meta)

    def check(self, model) -> None:
        """Raise SteeringError unless the vector fits ``model`` (hidden size, layer range)."""
        n_layers = len(decoder_layers(model))
        hidden = model.config.hidden_size
        if self.vector.numel() != hidden:
            raise SteeringError(f"steering vector has size {self.vector.numel()} but the model's hidden size is "
                                f"{hidden} (made for {self.meta.get('model', 'another model')})")
        if not 1 <= self.layer <= n_layers:
            raise SteeringError(f"steering layer {self.layer} is outside 1..{n_layers} for this model")


def parse_steer_spec(spec: str) -> tuple[str, float]:
    """``FILE:STRENGTH`` → (file, strength); the strength may be negative."""
    path, sep, strength = spec.rpartition(":")
    try:
        if not sep or not path:
            raise ValueError
        return path, float(strength)
    except ValueError:
        raise SteeringError(f"--steer expects FILE:STRENGTH (e.g. concise.steer:0.5), got {spec!r}") from None


# ---------------------------------------------------------------------------------------------------------------
# Hook point


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM (Llama, Qwen2, Mistral, … and peft-wrapped ones)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = getattr(base.config, "num_hidden_layers", None)
    inner = getattr(base, "model", None)
    if inner is not None and isinstance(getattr(inner, "layers", None), torch.nn.ModuleList):
        return inner.layers
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise SteeringError(f"cannot find the decoder layers of {type(base).__name__}")


def default_layer(model) -> int:
    """A mid-to-late layer: 0.7 × depth (the released vectors use 20 of 28 and 57 of 64)."""
    return max(1, round(0.7 * len(decoder_layers(model))))


def _shift(output, vector: torch.Tensor, strength: float, mask: torch.Tensor | None):
    h = output[0] if isinstance(output, tuple) else output  # (B, T, d): a tensor or a tuple, by version
    h = h.clone()
    delta = (strength * vector).to(device=h.device, dtype=h.dtype)  # (d,)
    if mask is None:
        h[:, -1, :] += delta
    else:
        h[mask.to(h.device)] += delta  # mask: (B, T) bool, positions to shift (teacher-forced evaluation)
    return (h, *output[1:]) if isinstance(output, tuple) else h


def steering_hook(model, vector: SteeringVector, strength: float, mask: torch.Tensor | None = None):
    """Register the steering hook; returns the handle (call ``.remove()``). ``strength == 0`` adds nothing.

    ``mask`` (B, T) shifts the marked positions of a full-sequence forward instead of the last one: shifting the
    completion positions of prompt ⊕ completion reproduces, token for token, what the hook does while generating.
    """
    vector.check(model)
    block = decoder_layers(model)[vector.layer - 1]  # its output is hidden_states[layer] (deviation 2)
    v = vector.vector

    def shift_last_position(module, inputs, output):
        return output if strength == 0 else _shift(output, v, strength, mask)

    return block.register_forward_hook(shift_last_position)


@contextlib.contextmanager
def steered(model, vector: SteeringVector | None, strength: float = 0.0, mask: torch.Tensor | None = None) -> Iterator[None]:
    """``with steered(model, v, 0.5): generate_texts(...)`` — the hook is removed on exit, whatever happens."""
    if vector is None:
        yield
        return
    handle = steering_hook(model, vector, strength, mask)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _capture(model, layer: int) -> Iterator[list[torch.Tensor]]:
    got: list[torch.Tensor] = []

    def keep(module, inputs, output):
        got.append((output[0] if isinstance(output, tuple) else output).detach())

    handle = decoder_layers(model)[layer - 1].register_forward_hook(keep)
    try:
        yield got
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------------------------
# Extraction


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (B, T); positions count real tokens only."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, T - len(s):] = torch.as_tensor(list(s))
            mask[i, T - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


@torch.no_grad()
def last_token_states(model, seqs: Sequence[Sequence[int]], layer: int, pad_id: int, batch_size: int = 8) -> torch.Tensor:
    """(N, d) float32 residual at ``hidden_states[layer]``, last token of each sequence."""
    out = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(seqs), batch_size):
            ids, mask, pos = _left_pad(seqs[s : s + batch_size], pad_id)
            with _capture(model, layer) as got:
                model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                      position_ids=pos.to(model.device), use_cache=False)
            out.append(got[0][:, -1, :].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def pair_ids(tokenizer, pair: SteeringPair, instruction: str | None, system: str | None) -> tuple[list[int], list[int]]:
    """Token ids of prompt ⊕ concise and prompt ⊕ verbose (the prompt tokenised once, shared)."""
    prompt = tokenizer.encode(chat_prompt(tokenizer, pair.question, instruction, system), add_special_tokens=False)
    return ([*prompt, *tokenizer.encode(pair.concise, add_special_tokens=False)],
            [*prompt, *tokenizer.encode(pair.verbose, add_special_tokens=False)])


def extract_steering_vector(model, tokenizer, pairs: Sequence[SteeringPair], layer: int | None = None,
                            instruction: str | None = None, system: str | None = None, batch_size: int = 8,
                            meta: dict[str, Any] | None = None) -> SteeringVector:
    """v = mean_i [h_L(prompt ⊕ concise_i) − h_L(prompt ⊕ verbose_i)] at the last token (module docstring)."""
    if not pairs:
        raise SteeringError("steering extraction needs at least one (concise, verbose) pair")
    layer = default_layer(model) if layer is None else layer
    n_layers = len(decoder_layers(model))
    if not 1 <= layer <= n_layers:
        raise SteeringError(f"layer {layer} is outside 1..{n_layers} (an index into hidden_states)")
    concise, verbose = zip(*(pair_ids(tokenizer, p, instruction, system) for p in pairs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    hc = last_token_states(model, concise, layer, pad, batch_size)  # (N, d)
    hv = last_token_states(model, verbose, layer, pad, batch_size)  # (N, d)
    diffs = hc - hv  # (N, d)
    v = diffs.mean(0)  # (d,) verbose → concise
    digest = hashlib.sha256(json.dumps([[p.question, p.concise, p.verbose] for p in pairs]).encode()).hexdigest()
    info = {
        "n_pairs": len(pairs),
        "pairs_sha256": digest[:16],
        "num_layers": n_layers,
        "model_type": getattr(model.config, "model_type", None),
        "instruction": instruction,
        "system": system,
        # how consistent the direction is: mean cosine of each pair's difference with the mean (1 = all agree)
        "pair_cosine_mean": float(torch.nn.functional.cosine_similarity(diffs, v.unsqueeze(0), dim=-1).mean()),
        "mean_residual_norm": float(torch.cat([hc, hv]).norm(dim=-1).mean()),
        **(meta or {}),
    }
    return SteeringVector(v, layer, info)


def read_pairs(path: str | os.PathLike) -> list[SteeringPair]:
    """``{"question", "concise", "verbose"}`` JSONL; errors name the line and the field."""
    from thinktune.data.records import DataError

    pairs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, n, None, f"bad JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, n, None, "expected a JSON object")
            for key in ("question", "concise", "verbose"):
                if not isinstance(obj.get(key), str) or not obj[key].strip():
                    raise DataError(path, n, key, "missing or empty string")
            pairs.append(SteeringPair(obj["question"], obj["concise"], obj["verbose"]))
    if not pairs:
        raise DataError(path, None, None, "no pairs")
    return pairs


# ---------------------------------------------------------------------------------------------------------------
# Calibration: next-token KL to the unsteered model


@dataclass
class Calibration:
    """Prompt ⊕ completion token ids, with the index of each prompt's last token."""

    seqs: list[list[int]]
    prompt_lens: list[int]

    @classmethod
    def from_texts(cls, tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> Calibration:
        seqs, lens = [], []
        for p, c in zip(prompts, completions):
            pi = tokenizer.encode(p, add_special_tokens=False)
            ci = tokenizer.encode(c, add_special_tokens=False)
            if ci:
                seqs.append([*pi, *ci])
                lens.append(len(pi))
        return cls(seqs, lens)

    @property
    def n_positions(self) -> int:
        return sum(len(s) - p for s, p in zip(self.seqs, self.prompt_lens))


@torch.no_grad()
def _completion_logprobs(model, ids, mask, pos, gen_mask) -> torch.Tensor:
    """Log-probs at the ``gen_mask`` positions only: the LM head runs on those rows, not on (B, T, V)."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or head is None or getattr(model.config, "final_logit_softcapping", None):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits  # (B, T, V)
        return torch.log_softmax(logits[gen_mask].float(), dim=-1)
    h = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state  # (B, T, d)
    return torch.log_softmax(head(h[gen_mask]).float(), dim=-1)  # (n, V)


@torch.no_grad()
def next_token_kl(model, vector: SteeringVector, strengths: Sequence[float], calib: Calibration,
                  batch_size: int = 8) -> dict[float, float]:
    """Mean KL(p_unsteered ‖ p_steered) per strength over the positions that generate each completion token.

    The hook shifts positions prompt_len − 1 … end (exactly the positions it shifts while generating them).
    """
    if not calib.seqs:
        raise SteeringError("no calibration completions to measure the KL on")
    was_training = model.training
    model.eval()
    sums = {float(s): 0.0 for s in strengths}
    n = 0
    try:
        for b in range(0, len(calib.seqs), batch_size):
            seqs, plens = calib.seqs[b : b + batch_size], calib.prompt_lens[b : b + batch_size]
            ids, mask, pos = _left_pad(seqs, 0)
            T = ids.shape[1]
            gen = torch.zeros_like(mask, dtype=torch.bool)  # (B, T) positions whose next token is a completion token
            for i, (s, p) in enumerate(zip(seqs, plens)):
                gen[i, T - len(s) + p - 1 : T - 1] = True
            ids, mask, pos = ids.to(model.device), mask.to(model.device), pos.to(model.device)
            ref = _completion_logprobs(model, ids, mask, pos, gen)  # (n, V)
            for s in sums:
                with steered(model, vector, s, mask=gen):
                    lp = _completion_logprobs(model, ids, mask, pos, gen)
                sums[s] += float((ref.exp() * (ref - lp)).sum())
            n += int(gen.sum())
    finally:
        model.train(was_training)
    return {s: v / n for s, v in sums.items()}


def kl_curvature(model, vector: SteeringVector, calib: Calibration, eps: float = 1e-2, batch_size: int = 8) -> float:
    """E[(Jv)ᵀ(diag(p) − ppᵀ)(Jv)] by a central difference, so KL ≈ ½ γ² × this (second order in γ)."""
    # KL(p ‖ p_γ) is even in γ to second order: ½ (KL(ε) + KL(−ε)) ≈ ½ ε² c  ⇒  c ≈ (KL(ε) + KL(−ε)) / ε²
    kl = next_token_kl(model, vector, [eps, -eps], calib, batch_size)
    return (kl[eps] + kl[-eps]) / eps**2


def gamma_max_estimate(curvature: float, delta: float) -> float | None:
    """γ_max(δ) = sqrt(2δ / curvature); None when the curvature is 0."""
    return math.sqrt(2 * delta / curvature) if curvature > 0 else None


def calibrate_strength(model, vector: SteeringVector, calib: Calibration, delta: float = 0.1, sign: float = 1.0,
                       batch_size: int = 8) -> dict[str, Any]:
    """The largest γ (of ``sign``) whose mean next-token KL stays ≤ δ on ``calib`` (empirical).

    The second-order estimate γ̂ = sqrt(2δ / curvature) seeds a grid γ̂ × (½ … 3) measured in one pass over the
    calibration set; the crossing is interpolated (KL ∝ γ² locally, so on a log-log line) and then verified.
    """
    curvature = kl_curvature(model, vector, calib, batch_size=batch_size)
    estimate = gamma_max_estimate(curvature, delta)
    base = estimate or 1.0
    grid = [sign * base * f for f in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)]
    kl = next_token_kl(model, vector, grid, calib, batch_size)
    ok = [g for g in grid if kl[g] <= delta]
    best = max(ok, key=abs, default=0.0)
    above = [g for g in grid if abs(g) > abs(best) and kl[g] > delta]
    if best and above:  # interpolate between the last grid point under δ and the first above it
        g0, g1 = best, min(above, key=abs)
        k0, k1 = kl[g0], kl[g1]
        if k0 > 0 and k1 > k0:
            slope = math.log(k1 / k0) / math.log(abs(g1) / abs(g0))
            guess = sign * abs(g0) * (delta / k0) ** (1 / slope)
            k_guess = next_token_kl(model, vector, [guess], calib, batch_size)[guess]
            if k_guess <= delta:
                best, kl[guess] = guess, k_guess
    return {"gamma": best, "kl": kl.get(best, 0.0), "delta": delta, "curvature": curvature,
            "crossed": any(k > delta for k in kl.values()),  # False: KL stayed under δ on the whole grid
            "estimate": None if estimate is None else sign * estimate,
            "grid": {f"{g:.6g}": kl[g] for g in grid}}
