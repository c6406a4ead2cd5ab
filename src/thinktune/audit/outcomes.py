"""Outcome metrics: accuracy, unbiased pass@k, maj@k, format compliance, length, repetition, language mixing,
thought switches and the underthinking score — plus the confidence intervals every aggregate carries.

Generation goes through :mod:`thinktune.generation`, parsing through the one parser and grading through the one
answer layer (:func:`thinktune.data.answers.grade`), so the audit judges exactly what the rewards judge. Run
through the audit (``thinktune audit MODEL --data FILE``).

Sources:
- pass@k: the unbiased estimator of *Evaluating Large Language Models Trained on Code* (Chen et al.),
  arXiv 2107.03374: pass@k = 1 − C(n−c, k) / C(n, k) for c correct out of n samples.
- pass@1 from k samples and cons@k (majority vote): *DeepSeek-R1*, arXiv 2501.12948 (docs/METHODS.md, "Evaluation
  protocol").
- underthinking score ξ_UT and thought switches: *Thoughts Are All Over the Place* (Wang et al.), arXiv 2501.18585
  (docs/METHODS.md, "Underthinking and TIP").

Deviations and choices (numbered):
1. maj@k ties go to the answer that appeared first among the samples (a documented rule);
   answers are compared after the answer layer's ``normalize``; a sample without an answer never wins.
2. A "correct thought" for ξ_UT is a thought that states the gold answer as a number or word (the rule for
   verifiable tasks, docs/METHODS.md, "Underthinking and TIP"); thoughts start at a switch word (``switch_words``,
   default "alternatively"). A response without a correct thought contributes 0.
3. Language mixing = 1 − the rewards library's ``language_share`` (share of the reasoning's words in the target
   language's script, DeepSeek-R1's language-consistency measure). Repetition = 1 − distinct / total lower-cased
   word 3-grams of the reasoning — the quantity the ``repetition`` reward scales, kept here as a pure metric because
   the reward floors malformed completions instead of measuring them.
4. Confidence intervals: Wilson for accuracy (kept for results.json), a percentile bootstrap over items elsewhere.
5. For a completion without a think block read by a non-tag extractor (a base or instruct model that ignores the
   format), the whole completion counts as its reasoning for length, steps, repetition and language mixing.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from thinktune.data.answers import extract_answer, grade, is_abstention, normalize
from thinktune.data.records import Record
from thinktune.formatting import CompletionFormat, parse_completion, split_steps
from thinktune.rewards.library import language_share

# ---------------------------------------------------------------------------------------------------------------
# Pure statistics


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion k/n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from c correct of n samples (Chen et al.): 1 − C(n−c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent normalised answer; ties go to the one seen first; None answers never win."""
    keyed = [normalize(a) for a in answers if a is not None and a.strip()]
    if not keyed:
        return None
    counts = Counter(keyed)
    top = max(counts.values())
    return next(a for a in keyed if counts[a] == top)


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 stat: Callable[[Any], Any] | None = None) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of the mean (or ``stat`` of a resampled list); None for < 2 values."""
    import numpy as np

    vals = [v for v in values if v is not None]
    if len(vals) < 2 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    if stat is None:
        arr = np.asarray(vals, dtype=float)
        idx = rng.integers(0, len(arr), size=(n_boot, len(arr)))  # (B, N)
        boots = arr[idx].mean(axis=1)  # (B,)
    else:
        boots = np.asarray([v for v in (stat([vals[i] for i in rng.integers(0, len(vals), len(vals))])
                                        for _ in range(n_boot)) if v is not None], dtype=float)
        if boots.size == 0:
            return None
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return (float(lo), float(hi))


def repetition_rate(text: str | None, n: int = 3) -> float | None:
    """1 − distinct / total lower-cased word n-grams; None when the text has fewer than n words."""
    words = (text or "").lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else None


def language_mix(text: str | None, target: str = "en") -> float | None:
    """Share of the words not written in ``target``'s script; None when there is no word to judge."""
    share = language_share(text or "", target)
    return None if share is None else 1.0 - share


def switch_pattern(words: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def first_correct_thought_end(text: str, gold: str, pattern: re.Pattern[str]) -> int | None:
    """Character offset where the first thought that states ``gold`` ends (thoughts start at switch words)."""
    starts = [0] + [m.start() for m in pattern.finditer(text) if m.start() > 0] + [len(text)]
    gold_re = re.compile(r"(?<![\w.])" + re.escape(gold.strip()) + r"(?![\w]|\.\d)")
    for a, b in zip(starts, starts[1:]):
        if gold.strip() and gold_re.search(text[a:b]):
            return b
    return None


def underthinking_score(pairs: Sequence[tuple[int, int]]) -> float | None:
    """ξ_UT = mean(1 − T̂/T) over (T, T̂) of incorrect responses; None when there are none."""
    pairs = [(t, th) for t, th in pairs if t > 0]
    return sum(1 - th / t for t, th in pairs) / len(pairs) if pairs else None


# ---------------------------------------------------------------------------------------------------------------
# Per-item rows


def reasoning_text(completion: str, fmt: CompletionFormat, think_prefilled: bool = False,
                   extractor: str = "answer_tag", parsed=None) -> str:
    """The completion's reasoning: the think block, or the whole text for a model that ignores the tags and is read
    with a free-text extractor (deviation 5)."""
    parsed = parsed or parse_completion(completion, fmt, think_prefilled)
    if parsed.reasoning is None and extractor != "answer_tag":
        return completion
    return parsed.reasoning or ""


def outcome_row(record: Record, completion: str, fmt: CompletionFormat, count_tokens: Callable[[str], int],
                think_prefilled: bool = False, extractor: str = "answer_tag",
                switch_re: re.Pattern[str] | None = None) -> dict[str, Any]:
    """Everything the audit reports about one greedy completion."""
    parsed = parse_completion(completion, fmt, think_prefilled)
    answer = extract_answer(completion, fmt, think_prefilled, extractor=extractor)
    verdict = grade(record, answer)
    tokens = count_tokens(completion)
    reasoning = reasoning_text(completion, fmt, think_prefilled, extractor, parsed)
    row: dict[str, Any] = {
        "id": record.id,
        "question": record.question,
        "gold": record.answer,
        "answerable": record.answerable,
        "completion": completion,
        "answer": answer,
        "correct": verdict,
        "well_formed": parsed.well_formed,
        "answer_without_reasoning": answer is not None and not reasoning.strip(),
        "n_steps": len(split_steps(reasoning)),
        "completion_tokens": tokens,
        "reasoning_tokens": count_tokens(reasoning) if reasoning else 0,
        "repetition": repetition_rate(reasoning),
        "language_mix": language_mix(reasoning),
        "abstained": is_abstention(answer if answer is not None else completion[-200:]),
        "difficulty": record.meta.get("n_ops", record.meta.get("level")),
    }
    if switch_re is not None:
        row["thought_switches"] = len(switch_re.findall(reasoning or completion))
        if verdict is False:
            end = first_correct_thought_end(completion, record.answer, switch_re)
            row["tokens_to_first_correct_thought"] = count_tokens(completion[:end]) if end is not None else tokens
    return row


def sampled_metrics(record: Record, answers: Sequence[str | None], ks: Sequence[int],
                    switches: Sequence[int] | None = None, tokens: Sequence[int] | None = None) -> dict[str, Any]:
    """pass@1 (mean over samples), unbiased pass@k, cons@n and the majority's vote share for one item; with
    ``switches`` / ``tokens`` (one per sample) also the thought switches and reasoning length of the samples."""
    verdicts = [grade(record, a) for a in answers]
    if any(v is None for v in verdicts) or not answers:
        return {}
    n, c = len(answers), sum(bool(v) for v in verdicts)
    maj = majority_vote(answers)
    share = sum(1 for a in answers if a is not None and a.strip() and normalize(a) == maj) / n if maj else 0.0
    out = {"n_samples": n, "n_correct": c, "pass@k": {str(k): pass_at_k(n, c, k) for k in ks if k <= n},
           "majority": maj, "majority_correct": bool(grade(record, maj)) if maj else False, "vote_share": share}
    if switches is not None:
        out["switches"] = list(switches)
    if tokens is not None:
        out["reasoning_tokens"] = list(tokens)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Aggregates


def _mean(vals: Sequence[Any]) -> float | None:
    vals = [float(v) for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Outcome aggregates over the answerable rows (results.json keeps the first seven keys)."""
    scored = [r for r in rows if r["correct"] is not None]
    k, n = sum(bool(r["correct"]) for r in scored), len(scored)
    lo, hi = wilson_interval(k, n)
    by_difficulty: dict[str, list[bool]] = defaultdict(list)
    for r in scored:
        if r.get("difficulty") is not None:
            by_difficulty[str(r["difficulty"])].append(bool(r["correct"]))
    answerable = [r for r in rows if r.get("answerable", True)]
    out: dict[str, Any] = {
        "n": len(answerable),
        "n_scored": n,
        "accuracy": k / n if n else 0.0,
        "accuracy_ci95": [lo, hi],
        "format_rate": _mean([r["well_formed"] for r in answerable]) or 0.0,
        "mean_completion_tokens": _mean([r["completion_tokens"] for r in answerable]) or 0.0,
        "accuracy_by_difficulty": {d: sum(v) / len(v) for d, v in sorted(by_difficulty.items())},
        "answer_without_reasoning_rate": _mean([r["answer_without_reasoning"] for r in answerable]),
        "no_answer_rate": _mean([r["answer"] is None for r in answerable]),
        "reasoning_tokens": {"mean": _mean([r["reasoning_tokens"] for r in answerable]),
                             "median": _median([r["reasoning_tokens"] for r in answerable])},
        "repetition": _mean([r["repetition"] for r in answerable]),
        "language_mix": _mean([r["language_mix"] for r in answerable]),
    }
    if answerable and "thought_switches" in answerable[0]:
        out["thought_switches"] = {
            "correct": _mean([r["thought_switches"] for r in scored if r["correct"]]),
            "incorrect": _mean([r["thought_switches"] for r in scored if not r["correct"]]),
        }
        out["underthinking"] = underthinking_score(
            [(r["completion_tokens"], r["tokens_to_first_correct_thought"]) for r in scored
             if r["correct"] is False and "tokens_to_first_correct_thought" in r])
    sampled = [r["sampled"] for r in scored if r.get("sampled")]
    if sampled:
        ks = sorted({k for s in sampled for k in s["pass@k"]}, key=int)
        out["sampling"] = {"n_samples": sampled[0]["n_samples"],
                           "pass@k": {k: _mean([s["pass@k"].get(k) for s in sampled]) for k in ks},
                           "maj@n": _mean([s["majority_correct"] for s in sampled])}
        if "switches" in sampled[0]:  # per sampled response, pooled over items (Wang et al.'s switch counts)
            sw = [x for s in sampled for x in s["switches"]]
            out["sampling"]["switches_per_response"] = _mean(sw)
            out["sampling"]["switching_responses"] = _mean([x > 0 for x in sw])
        if "reasoning_tokens" in sampled[0]:
            out["sampling"]["reasoning_tokens"] = _mean([x for s in sampled for x in s["reasoning_tokens"]])
    return out


def _median(vals: Sequence[float]) -> float | None:
    v = sorted(vals)
    if not v:
        return None
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
