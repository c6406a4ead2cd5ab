"""Batched generation with HF ``generate``: greedy or sampled, stopping at the answer close tag or EOS.

``generate_texts(model, tokenizer, prompts, ...)`` returns the decoded completions (prompt removed), in the
order of ``prompts``. Prompts are sorted by length inside the call so that each batch pads little, then put back
in order. Decoding keeps special tokens out but never touches the completion tags, which are ordinary text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1  # samples per prompt (n > 1 requires do_sample)
    stop: tuple[str, ...] = ("</answer>",)  # generation of a sequence ends once it produced one of these


def trim_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


def hf_generate_kwargs(tokenizer, params: SamplingParams, logits_processors: Sequence = ()) -> dict:
    """Keyword arguments for HF ``generate`` (shared with the server, so both decode the same way)."""
    from transformers import LogitsProcessorList

    gen_kwargs = dict(
        max_new_tokens=params.max_new_tokens,
        do_sample=params.do_sample,
        num_return_sequences=params.n,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if params.do_sample:
        gen_kwargs.update(temperature=params.temperature, top_p=params.top_p)
    if params.stop:
        gen_kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
    if logits_processors:
        gen_kwargs["logits_processor"] = LogitsProcessorList(list(logits_processors))
    return gen_kwargs


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    params: SamplingParams = SamplingParams(),
    batch_size: int = 32,
    logits_processors: Sequence = (),
    on_batch: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Completions for each prompt: ``result[i]`` holds ``params.n`` strings for ``prompts[i]``."""
    if params.n > 1 and not params.do_sample:
        raise ValueError("n > 1 samples per prompt needs do_sample=True")
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[str]] = [[] for _ in prompts]
    gen_kwargs = hf_generate_kwargs(tokenizer, params, logits_processors)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            seqs = model.generate(**enc, **gen_kwargs)
            new = seqs[:, enc["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                for k in range(params.n):
                    out[i].append(trim_at_stop(texts[j * params.n + k], params.stop))
            if on_batch:
                on_batch(len(idx))
    finally:
        model.train(was_training)
    return out


_VLLM_ENGINES: dict[str, object] = {}


def generate_texts_vllm(model_path: str, prompts: Sequence[str], params: SamplingParams = SamplingParams(),
                        seed: int = 0) -> list[list[str]]:
    """The same contract as :func:`generate_texts` on vLLM (optional backend; GPU, ``pip install vllm``).

    vLLM loads the model from ``model_path`` itself (full weights; merge adapters first). The engine is kept per path
    for the process; ``seed`` goes with each request. Stop strings stay in the output so the one parser sees the tag.
    """
    try:
        import vllm
    except ImportError:
        raise ImportError("the vLLM backend needs vllm (pip install vllm, on a machine with a GPU)") from None
    if params.n > 1 and not params.do_sample:
        raise ValueError("n > 1 samples per prompt needs do_sample=True")
    key = str(model_path)
    if key not in _VLLM_ENGINES:
        _VLLM_ENGINES[key] = vllm.LLM(model=str(model_path), seed=seed)
    llm = _VLLM_ENGINES[key]
    sp = vllm.SamplingParams(n=params.n, temperature=params.temperature if params.do_sample else 0.0,
                             top_p=params.top_p if params.do_sample else 1.0, max_tokens=params.max_new_tokens,
                             stop=list(params.stop) or None, include_stop_str_in_output=True, seed=seed)
    outs = llm.generate(list(prompts), sp)  # type: ignore[attr-defined]
    return [[trim_at_stop(o.text, params.stop) for o in out.outputs] for out in outs]
