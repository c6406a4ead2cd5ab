"""Per-step information gain: how much each reasoning step raises the probability of the gold answer.

Paper: *Knowledge or Reasoning? A Close Look at How LLMs Think Across Domains* (Wu et al.), arXiv 2506.02126;
official code UCSC-VLAA/ReasoningEval (``metrics.py``: ``InformationGainScorer``). Definitions: docs/METHODS.md,
"Information gain per step". Runs inside the audit (``thinktune audit MODEL --data FILE``; ``tests: [info_gain]`` in a
recipe).

For a chain of n steps and gold answer y (tokens y_1..y_m)::

    NLL_k    = −(1/m) Σ_j log p(y_j | x, s_≤k, cue, y_<j)          k = 0..n   (answer tokens only, nats)
    IG_k     = NLL_{k−1} − NLL_k                                    k = 1..n   (IG^nat, nats per answer token)
    InfoGain = (1/(n+1)) Σ_k IG_k = (NLL_0 − NLL_n) / (n+1)          the official normalisation (telescopes)

Every NLL_k is one branch of the prefix-cached scorer (scoring.py): the steps' prefixes nest, so the chain is run
once per item. The paper's units (perplexities, IG_k = PPL_{k−1} − PPL_k) are reported too.

Deviations (numbered):
1. The evaluator is the audited model itself (the paper allows a fixed reference model; the audit records which).
2. Steps are the non-empty lines of the model's own chain, not GPT-4o-extracted ``knowledge`` fields.
3. The answer cue is the completion format's (think-close + answer-open), not the paper's ``" Answer: "``: the audited
   models are trained on that format.
4. Default scope is answer tokens only; ``whole_sequence`` (the paper's scope: question, steps, cue and answer all
   enter the perplexity) is behind the ``info_gain_mode`` switch.
5. A trace with fewer than ``min_steps`` steps is skipped (the official code meant to skip ≤ 2 steps but compares a
   list with an int); zero steps give an empty per-step list and InfoGain ``None`` (not applicable).
6. A model that never writes the think tags (an untrained base model) has no chain to score unless
   ``audit.untagged_chains`` is on: then its free text's non-empty lines are the steps, scored inside the format's
   tags with the same cue (audit/traces.py), so its chains and a fine-tuned model's compare on the same items
   (experiments/08_infogain_after_sft.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from thinktune.audit.scoring import Branch, BranchSet, score_branches
from thinktune.audit.traces import Trace


def info_gain(nll: Sequence[float]) -> tuple[list[float], float | None]:
    """(per-step IG_k for k = 1..n, trace InfoGain); nll[k] for k = 0..n. Works for NLLs or PPLs alike."""
    per_step = [nll[k - 1] - nll[k] for k in range(1, len(nll))]
    if not per_step:
        return [], None
    return per_step, sum(per_step) / len(nll)


def plan(bset: BranchSet, trace: Trace) -> list[int]:
    """One branch per prefix s_≤k, k = 0..n, scoring the gold answer tokens after the cue."""
    r = bset.root(trace.root)
    return [bset.add(r, trace.bounds[k], trace.cue_at(k), trace.gold) for k in range(trace.n + 1)]


def read(nll: Sequence[float]) -> dict[str, Any]:
    per_step, trace_ig = info_gain(nll)
    ppl = [math.exp(v) for v in nll]
    _, trace_ig_ppl = info_gain(ppl)
    return {"nll": [round(v, 6) for v in nll], "per_step": [round(v, 6) for v in per_step], "info_gain": trace_ig,
            "info_gain_ppl": trace_ig_ppl}


def read_answer_only(bset: BranchSet, handles: Sequence[int]) -> dict[str, Any]:
    return read([bset.result(h).nll for h in handles])


def whole_sequence_nll(model, traces: Sequence[Trace], batch_size: int, pad_id: int) -> list[list[float]]:
    """The paper's scope: NLL over every token of question, steps s_≤k, cue and answer (first token excluded)."""
    roots = [t.root for t in traces]
    branches = [Branch(root=i, cut=t.bounds[k], suffix=t.cue_at(k), target=t.gold)
                for i, t in enumerate(traces) for k in range(t.n + 1)]
    res = score_branches(model, roots, branches, batch_size, pad_id, with_suffix=True, with_roots=True)
    assert res.roots is not None
    out, j = [], 0
    for i, t in enumerate(traces):
        row = []
        for k in range(t.n + 1):
            s = res.branches[j]
            j += 1
            lps = list(res.roots[i][: t.bounds[k] - 1]) + list(s.suffix_logprobs) + list(s.target_logprobs)
            row.append(-sum(lps) / len(lps))
        out.append(row)
    return out


def summarize(items: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean trace InfoGain, the per-step distribution and the share of steps that do not help (IG ≤ 0)."""
    done = [it for it in items if it.get("info_gain") is not None]
    if not done:
        return None
    steps = sorted(v for it in done for v in it["per_step"])

    def q(p: float) -> float:
        return steps[min(len(steps) - 1, int(p * len(steps)))]

    return {
        "n": len(done),
        "info_gain": sum(it["info_gain"] for it in done) / len(done),
        "info_gain_ppl": sum(it["info_gain_ppl"] for it in done) / len(done),
        "per_step_quantiles": {"p10": q(0.1), "p50": q(0.5), "p90": q(0.9)},
        "frac_steps_nonpositive": sum(v <= 0 for v in steps) / len(steps),
        "skipped": sum(it.get("info_gain") is None for it in items),
    }
