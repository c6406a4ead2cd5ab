"""Calibration of the answer's confidence: Brier score, expected calibration error, reliability bins, selective curve.

Standard definitions (docs/METHODS.md, "Abstention and calibration"; they do not come from AbstentionBench).
Confidence c_i ∈ [0, 1] is the probability of the model's own answer after its full chain (the scorer's
log-probability of ``answer + close tag``, audit/scoring.py) or, with sampling, the majority-vote share; z_i ∈ {0, 1}
is whether the answer is correct::

    Brier = mean_i (c_i − z_i)²
    ECE   = Σ_b (|B_b| / N) · | mean_{i∈B_b} z_i − mean_{i∈B_b} c_i |   equal-width bins; c = 1 in the last bin

Run through the audit (``thinktune audit MODEL --data FILE``). No deviations: the bin count is reported with ECE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def brier(conf: Sequence[float], correct: Sequence[int]) -> float:
    """conf, correct: (N,)."""
    return sum((c - z) ** 2 for c, z in zip(conf, correct)) / len(conf)


def _bin(c: float, bins: int) -> int:
    return min(int(c * bins), bins - 1)  # c = 1.0 goes in the last bin


def reliability_bins(conf: Sequence[float], correct: Sequence[int], bins: int = 10) -> list[dict[str, Any]]:
    """Per equal-width bin: [lo, hi), count, mean confidence, accuracy (empty bins included with count 0)."""
    acc: list[list[tuple[float, int]]] = [[] for _ in range(bins)]
    for c, z in zip(conf, correct):
        acc[_bin(c, bins)].append((c, z))
    out = []
    for b, members in enumerate(acc):
        n = len(members)
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n,
                    "confidence": sum(c for c, _ in members) / n if n else None,
                    "accuracy": sum(z for _, z in members) / n if n else None})
    return out


def ece(conf: Sequence[float], correct: Sequence[int], bins: int = 10) -> float:
    n = len(conf)
    filled = [b for b in reliability_bins(conf, correct, bins) if b["n"]]
    return sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in filled)


def selective_curve(conf: Sequence[float], correct: Sequence[int],
                    coverages: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0)) -> dict[str, float]:
    """Accuracy on the x% most confident items (ties broken by input order)."""
    order = sorted(range(len(conf)), key=lambda i: -conf[i])
    out = {}
    for cov in coverages:
        k = max(1, round(cov * len(order)))
        out[f"{cov:g}"] = sum(correct[i] for i in order[:k]) / k
    return out


def calibration_summary(conf: Sequence[float], correct: Sequence[int], bins: int = 10) -> dict[str, Any] | None:
    if not conf:
        return None
    z = [int(bool(v)) for v in correct]
    return {"n": len(conf), "bins": bins, "ece": ece(conf, z, bins), "brier": brier(conf, z),
            "mean_confidence": sum(conf) / len(conf), "accuracy": sum(z) / len(z),
            "reliability": reliability_bins(conf, z, bins), "selective_accuracy": selective_curve(conf, z)}
