"""Decoding variants compared on the same items with the audit's own outcome metrics: TIP on/off, steering sweeps.

- :func:`compare_tip`: a plain run on every item selects the items where the model switches thoughts; on those,
  plain vs TIP (for sampling, both re-drawn from one seed so the selection does not bias the plain side). Reports
  the switch rate (mean switches per response, share of responses that switch) and accuracy, with and without,
  plus the paired accuracy change.
- :func:`steer_sweep`: per steering strength, mean/median completion length, the share cut off at the token cap,
  accuracy with its Wilson interval, the paired accuracy change with a bootstrap interval, and the mean next-token
  KL to the unsteered model; the strength whose KL stays ≤ δ is calibrated first. The sign is checked: with
  v = concise − verbose, a positive strength must shorten the chains.
- :func:`steering_pairs`: (concise, verbose) pairs for extraction (GSM8K calculator annotations or a record's
  own reasoning as the concise chain).

How to run::

    thinktune tip compare smollm2 --data ../shared/data/gsm8k_test.jsonl --n 400 --words wait,however
    thinktune steer pairs smollm2 --data ../shared/data/gsm8k_train.jsonl --n 64 -o pairs.jsonl
    thinktune steer sweep smollm2 concise.steer --data ../shared/data/gsm8k_test.jsonl --n 100

Papers: TIP, arXiv 2501.18585; ASC, arXiv 2507.04742 (docs/METHODS.md, "Underthinking and TIP", "Activation steering").

Deviations and choices (numbered):
1. Metrics come from :mod:`thinktune.audit.outcomes` (``outcome_row``, ``aggregate``, ``switch_pattern``, the
   intervals), so a variant is measured exactly as the audit measures a model; this module only adds the pairing.
   (``audit.outcomes`` is pure statistics; decoding depends on it, the audit may depend on ``decoding.tip`` and
   ``decoding.steering`` but not on this module.)
2. "Reasoning length" is the completion length in tokens: models that do not write a think block (SmolLM2) reason
   in the whole completion. The reasoning-only length is reported alongside.
3. The speed-up is reported both as a ratio of mean lengths and as a mean of per-item ratios (the two differ when
   lengths vary).
4. GSM8K pairs: the concise chain is the solution's calculator annotations (``48/2=24``: formal notation, minimal
   English), standing in for the paper's GPT-4o chains (no API offline); the verbose chain is the target model's
   own greedy chain under the same prompt, as in the paper.
5. An accuracy change is "within the interval" when the 95 % bootstrap interval of the paired per-item difference
   contains 0 (or lies above it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thinktune.audit.outcomes import bootstrap_ci, outcome_row, switch_pattern, wilson_interval
from thinktune.data.records import Record
from thinktune.decoding.steering import (
    Calibration,
    SteeringPair,
    SteeringVector,
    calibrate_strength,
    next_token_kl,
    steered,
)
from thinktune.decoding.tip import ThoughtSwitchPenalty, TipConfig, switch_token_ids
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, chat_prompt
from thinktune.generation import SamplingParams, generate_texts
from thinktune.progress import reporter


@dataclass
class EvalSet:
    records: list[Record]
    prompts: list[str]
    prefilled: list[bool]

    @classmethod
    def build(cls, tokenizer, records: Sequence[Record], instruction: str | None = None, system: str | None = None,
              fmt: CompletionFormat = DEFAULT_FORMAT) -> EvalSet:
        prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in records]
        return cls(list(records), prompts, [p.rstrip().endswith(fmt.think_open) for p in prompts])

    def subset(self, idx: Sequence[int]) -> EvalSet:
        return EvalSet([self.records[i] for i in idx], [self.prompts[i] for i in idx], [self.prefilled[i] for i in idx])


def run_variant(model, tokenizer, es: EvalSet, params: SamplingParams, switch_words: Sequence[str],
                processors: Sequence = (), steer: tuple[SteeringVector, float] | None = None,
                fmt: CompletionFormat = DEFAULT_FORMAT, extractor: str = "auto", batch_size: int = 16,
                label: str = "variant") -> list[dict[str, Any]]:
    """One greedy (or sampled) completion per item, as audit outcome rows (plus ``completion`` and ``at_cap``)."""
    vector, strength = steer if steer else (None, 0.0)
    with reporter().task(f"generate: {label}", total=len(es.prompts)) as bar, steered(model, vector, strength):
        completions = [o[0] for o in generate_texts(model, tokenizer, es.prompts, params, batch_size=batch_size,
                                                     logits_processors=processors, on_batch=bar.advance)]
    switch_re = switch_pattern(switch_words)

    def count(s: str) -> int:
        return len(tokenizer.encode(s, add_special_tokens=False))

    rows = []
    for r, c, pf in zip(es.records, completions, es.prefilled):
        row = outcome_row(r, c, fmt, count, pf, extractor, switch_re)
        row["at_cap"] = row["completion_tokens"] >= params.max_new_tokens - 1  # re-tokenising may differ by one
        rows.append(row)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Length, switches and accuracy of one variant."""
    n = len(rows)
    if not n:
        return {"n": 0}
    scored = [r for r in rows if r["correct"] is not None]
    k = sum(bool(r["correct"]) for r in scored)
    toks = sorted(r["completion_tokens"] for r in rows)
    return {
        "n": n,
        "accuracy": k / len(scored) if scored else None,
        "accuracy_ci95": list(wilson_interval(k, len(scored))),
        "mean_tokens": sum(toks) / n,
        "median_tokens": toks[n // 2] if n % 2 else (toks[n // 2 - 1] + toks[n // 2]) / 2,
        "mean_reasoning_tokens": sum(r["reasoning_tokens"] for r in rows) / n,
        "at_cap_rate": sum(r["at_cap"] for r in rows) / n,
        "switches_per_response": sum(r["thought_switches"] for r in rows) / n,
        "switching_responses": sum(r["thought_switches"] > 0 for r in rows) / n,
        "no_answer_rate": sum(r["answer"] is None for r in rows) / n,
    }


def paired(base: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Per-item accuracy change (bootstrap CI) and length ratios (ratio of means, mean of ratios)."""
    diffs = [float(bool(o["correct"])) - float(bool(b["correct"])) for b, o in zip(base, other)
             if b["correct"] is not None and o["correct"] is not None]
    ci = bootstrap_ci(diffs, seed=seed)
    ratios = [o["completion_tokens"] / b["completion_tokens"] for b, o in zip(base, other) if b["completion_tokens"]]
    mean_b = sum(b["completion_tokens"] for b in base) / max(1, len(base))
    mean_o = sum(o["completion_tokens"] for o in other) / max(1, len(other))
    return {
        "accuracy_change": sum(diffs) / len(diffs) if diffs else None,
        "accuracy_change_ci95": list(ci) if ci else None,
        "accuracy_within_ci": ci is None or ci[1] >= 0,  # deviation 5 (no interval: too few items to tell)
        "length_ratio_of_means": mean_o / mean_b if mean_b else None,
        "length_mean_of_ratios": sum(ratios) / len(ratios) if ratios else None,
        "changed_completions": sum(b["completion"] != o["completion"] for b, o in zip(base, other)),
    }


# ---------------------------------------------------------------------------------------------------------------
# TIP


def compare_tip(model, tokenizer, es: EvalSet, tip: TipConfig, params: SamplingParams,
                fmt: CompletionFormat = DEFAULT_FORMAT, extractor: str = "auto", batch_size: int = 16,
                seed: int = 0) -> dict[str, Any]:
    """Switch rate and accuracy with and without TIP on the items where the plain model switches.

    Greedy: the TIP run is compared with the selecting run itself (both are functions of the prompt). Sampling:
    the selected items are decoded again twice from the same seed and batches — plain and with TIP — so that the
    comparison is free of the selection effect (items picked because one sample switched) and the two runs share
    their random stream up to the first token TIP changes.
    """
    import torch

    switch = switch_token_ids(tokenizer, tip.words)
    torch.manual_seed(seed)
    base = run_variant(model, tokenizer, es, params, tip.words, fmt=fmt, extractor=extractor, batch_size=batch_size,
                       label="select: plain")
    chosen = [i for i, r in enumerate(base) if r["thought_switches"] > 0]
    sub = es.subset(chosen)
    proc = ThoughtSwitchPenalty(switch.ids, tip.alpha, tip.beta)
    plain, tipped = [base[i] for i in chosen], []
    if chosen:
        if params.do_sample:
            torch.manual_seed(seed + 1)
            plain = run_variant(model, tokenizer, sub, params, tip.words, fmt=fmt, extractor=extractor,
                                batch_size=batch_size, label="plain (resampled)")
        torch.manual_seed(seed + 1)
        tipped = run_variant(model, tokenizer, sub, params, tip.words, processors=[proc], fmt=fmt,
                             extractor=extractor, batch_size=batch_size, label="TIP")
    return {
        "tip": tip.model_dump(),
        "switch_tokens": [tokenizer.decode([i]) for i in switch.ids],
        "ambiguous_words": [list(a) for a in switch.ambiguous],
        "skipped_spellings": [list(a) for a in switch.skipped],
        "max_new_tokens": params.max_new_tokens,
        "sampling": {"do_sample": params.do_sample, "temperature": params.temperature, "top_p": params.top_p,
                     "seed": seed},
        "n_items": len(es.records),
        "n_items_with_switch": len(chosen),
        "selection_run": {"all_items": summarize(base), "switching_items": summarize([base[i] for i in chosen])},
        "plain": summarize(plain),
        "with_tip": summarize(tipped),
        "paired": paired(plain, tipped) if chosen else None,
        "rows": {"plain": plain, "tip": tipped},
    }


# ---------------------------------------------------------------------------------------------------------------
# Steering


def steer_sweep(model, tokenizer, es: EvalSet, vector: SteeringVector, params: SamplingParams,
                strengths: Sequence[float] | None = None, delta: float = 0.1, calib_items: int = 16,
                switch_words: Sequence[str] = ("alternatively",), fmt: CompletionFormat = DEFAULT_FORMAT,
                extractor: str = "auto", batch_size: int = 16) -> dict[str, Any]:
    """Length, accuracy and next-token KL per strength; the calibrated strength for δ; the sign check."""
    base = run_variant(model, tokenizer, es, params, switch_words, fmt=fmt, extractor=extractor,
                       batch_size=batch_size, label="strength 0")
    calib = Calibration.from_texts(tokenizer, es.prompts[:calib_items], [r["completion"] for r in base[:calib_items]])
    with reporter().task("calibrate strength (KL ≤ δ)", total=None):
        cal = calibrate_strength(model, vector, calib, delta=delta)
    gamma = cal["gamma"] or cal["estimate"] or 1.0
    if strengths is None:  # the calibrated strength, twice it, and its negative for the sign check
        strengths = [-gamma, gamma, 2 * gamma]
    strengths = sorted({float(s) for s in strengths} - {0.0})
    kl = next_token_kl(model, vector, strengths, calib)
    results = [{"strength": 0.0, "kl": 0.0, "within_kl_bound": True, **summarize(base)}]
    per_strength = {0.0: base}
    for s in strengths:
        rows = run_variant(model, tokenizer, es, params, switch_words, steer=(vector, s), fmt=fmt,
                           extractor=extractor, batch_size=batch_size, label=f"strength {s:.4g}")
        per_strength[s] = rows
        results.append({"strength": s, "kl": kl[s], "within_kl_bound": kl[s] <= delta, **summarize(rows),
                        **paired(base, rows)})
    base_len = results[0]["mean_tokens"]
    sign = sign_check(results)
    pos = [r for r in results if r["strength"] > 0]
    ok = [r for r in pos if r["within_kl_bound"] and r["accuracy_within_ci"] and r["mean_tokens"] < base_len]
    best = min(ok, key=lambda r: r["mean_tokens"]) if ok else None
    verdict = (f"strength {best['strength']:.4g} shortens mean length {base_len:.1f} → {best['mean_tokens']:.1f} tokens "
               f"with mean KL {best['kl']:.3g} ≤ δ = {delta} and an accuracy change inside its 95% interval"
               if best else
               f"no strength shortens the chains with mean KL ≤ δ = {delta} and accuracy within its interval "
               f"for this model and vector")
    return {"vector": {k: v for k, v in vector.meta.items() if k not in ("instruction", "system")},
            "layer": vector.layer, "delta": delta, "calibration": {**cal, "n_sequences": len(calib.seqs),
                                                                   "n_positions": calib.n_positions},
            "max_new_tokens": params.max_new_tokens, "n_items": len(es.records), "sweep": results, "sign": sign,
            "accepted_strength": best["strength"] if best else None, "verdict": verdict,
            "rows": {f"{s:.6g}": rows for s, rows in per_strength.items()}}


def sign_check(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Does +v shorten and −v lengthen? Judged on the strengths inside the KL bound (far outside it the model
    degenerates — repeats itself to the cap — whatever the direction), and reported for all strengths too."""
    base_len = next(r["mean_tokens"] for r in results if r["strength"] == 0)

    def verdict(rows, shorter: bool):
        return all((r["mean_tokens"] < base_len) == shorter for r in rows) if rows else None

    inside = [r for r in results if r["within_kl_bound"]]
    return {
        "positive_shortens": verdict([r for r in inside if r["strength"] > 0], True),
        "negative_lengthens": verdict([r for r in inside if r["strength"] < 0], False),
        "positive_shortens_all_strengths": verdict([r for r in results if r["strength"] > 0], True),
        "judged_on": "strengths with mean KL <= delta",
    }


_CALC = re.compile(r"<<([^<>]*)>>")


def concise_from_gsm8k(record: Record) -> str | None:
    """The calculator annotations of a GSM8K record loaded with ``strip_calculator=False``, one per line, then the
    answer (``48/2=24`` …, ``#### 72``); None when the solution has none."""
    exprs = _CALC.findall(record.reasoning)
    if not exprs:
        return None
    return "\n".join(e.replace(" ", "") for e in exprs) + f"\n#### {record.answer}"


def concise_from_reasoning(record: Record) -> str | None:
    """The record's own reasoning (e.g. a procedural task's step trace) as the concise chain; None when empty."""
    return record.reasoning.strip() or None


CONCISE = {"calculator": concise_from_gsm8k, "reasoning": concise_from_reasoning}


def steering_pairs(model, tokenizer, records: Sequence[Record], params: SamplingParams, instruction: str | None = None,
                   system: str | None = None, batch_size: int = 16, concise: str = "calculator") -> list[SteeringPair]:
    """(question, concise chain, verbose = the model's own greedy chain) — deviation 4. ``concise``: "calculator"
    (GSM8K's calculator annotations) or "reasoning" (the record's reasoning field, e.g. chain_arith's step trace)."""
    pick = CONCISE[concise]
    keep = [(r, c) for r in records if (c := pick(r))]
    prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r, _ in keep]
    with reporter().task("verbose chains (the model's own)", total=len(prompts)) as bar:
        verbose = [o[0] for o in generate_texts(model, tokenizer, prompts, params, batch_size=batch_size,
                                                 on_batch=bar.advance)]
    return [SteeringPair(r.question, c, v) for (r, c), v in zip(keep, verbose) if v.strip()]
