"""GRPO pre-flight: sample a few groups before training and refuse the commonest silent "loss is 0" failures.

Two failure patterns make GRPO train on nothing while every log line looks normal (docs/METHODS.md,
"GRPO failure modes"; huggingface/trl#3857, #5697):

1. most completions hit ``max_new_tokens`` (truncated chains earn no answer reward, and masking them leaves nothing);
2. every group has zero reward variance (all right or all wrong), so every advantage is 0.

``preflight`` samples ``groups`` prompts × ``samples_per_prompt`` completions with the stage's own sampling settings,
scores them with the stage's rewards (weighted sum, None counted as 0 as TRL's nansum does), and returns the numbers
with every sampled completion and its per-reward scores (``samples``, written to ``grpo/preflight.json``), so a
refusal can be understood without exporting the model; ``problems`` names what is wrong and ``check`` refuses.
Sampling runs under ``torch.random.fork_rng`` so training's RNG stream, and therefore the run's numbers and exact
resume, are unchanged.

Four groups are a small sample: a model that solves 70 % of its problems leaves all four without variance often
enough to matter (the quickstart's seed 3 was refused with 3 groups all right and 1 all wrong). When no group has
variance, the pre-flight samples ``groups`` more prompts, up to ``ROUNDS`` rounds, and refuses only if none of them
has any; the first round's numbers (and so every run that passed before) are unchanged.
"""

from __future__ import annotations

from typing import Any

from thinktune.errors import StageError
from thinktune.formatting import chat_prompt
from thinktune.generation import SamplingParams, generate_texts


ROUNDS = 4  # rounds of ``preflight_groups`` fresh prompts sampled while no group has reward variance


def preflight(model, tokenizer, records, cfg, rewards, instruction=None, system=None) -> dict[str, Any]:
    import torch

    texts: list[str] = []
    per_group: list[list[float]] = []
    lengths: list[int] = []
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                            n=cfg.samples_per_prompt, stop=())
    names = getattr(rewards, "names", None) or [getattr(s, "fn", f"reward{i}") for i, s in enumerate(cfg.rewards)]
    samples: list[dict[str, Any]] = []
    rounds = 0  # rounds actually sampled (the records may run out first)
    for rnd in range(ROUNDS):
        recs = records[rnd * cfg.preflight_groups:(rnd + 1) * cfg.preflight_groups]
        if not recs:
            break
        rounds += 1
        prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in recs]
        with torch.random.fork_rng():
            torch.manual_seed(rnd)
            groups = generate_texts(model, tokenizer, prompts, params, batch_size=max(1, len(prompts)))
        new = [t for g in groups for t in g]
        owners = [r for r, g in zip(recs, groups) for _ in g]
        totals = [0.0] * len(new)
        scores: list[dict[str, float | None]] = [{} for _ in new]
        for i, spec in enumerate(cfg.rewards):
            for j, v in enumerate(rewards.score(i, new, owners)):
                totals[j] += spec.weight * (v or 0.0)
                scores[j][names[i]] = v
        new_lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in new]
        samples += [{"id": r.id, "round": rnd, "group": len(per_group) + j // cfg.samples_per_prompt,
                     "question": r.question, "gold": getattr(r, "answer", None), "completion": t, "tokens": n,
                     "truncated": n >= cfg.max_new_tokens, "rewards": sc, "total": round(tot, 6)}
                    for j, (r, t, n, sc, tot) in enumerate(zip(owners, new, new_lengths, scores, totals))]
        texts += new
        lengths += new_lengths
        per_group += [totals[k * cfg.samples_per_prompt:(k + 1) * cfg.samples_per_prompt] for k in range(len(recs))]
        if any(max(g) - min(g) >= 1e-12 for g in per_group):
            break
    flat = [v for g in per_group for v in g]
    return {"groups": len(per_group), "rounds": rounds, "completions": len(texts),
            "truncated_fraction": sum(n >= cfg.max_new_tokens for n in lengths) / len(texts),
            "zero_variance_fraction": sum(max(g) - min(g) < 1e-12 for g in per_group) / len(per_group),
            "mean_reward": sum(flat) / len(flat), "mean_tokens": sum(lengths) / len(lengths), "samples": samples}


def problems(numbers: dict[str, Any], max_truncated: float) -> list[str]:
    """Why training would learn nothing (empty when the pre-flight passes)."""
    problems = []
    if numbers["truncated_fraction"] > max_truncated:
        problems.append(f"{numbers['truncated_fraction']:.0%} of sampled completions hit max_new_tokens "
                        f"(limit {max_truncated:.0%}): raise grpo.max_new_tokens or train SFT longer")
    if numbers["zero_variance_fraction"] >= 1.0:
        problems.append(f"all {numbers['groups']} sampled groups have zero reward variance (mean reward "
                        f"{numbers['mean_reward']:.3f}): every advantage would be 0 and GRPO would learn nothing — "
                        f"check the rewards on real completions (thinktune rewards score) or the SFT model")
    return problems


def check(numbers: dict[str, Any], max_truncated: float) -> None:
    """Refuse (StageError, with the numbers) when training would learn nothing."""
    found = problems(numbers, max_truncated)
    if found:
        raise StageError("grpo pre-flight refused to train:\n  " + "\n  ".join(found)
                         + "\n(the sampled completions and their scores are in grpo/preflight.json; "
                           "set grpo.preflight=false to train anyway)")
