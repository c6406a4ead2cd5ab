"""Is a stage's change in held-out accuracy real? Paired tests on the same items.

Two models of a run are evaluated on the *same* held-out items, so their accuracies are paired: what matters is the
items one model gets right and the other wrong (the discordant pairs), not two independent intervals. Comparing
two unpaired 95 % intervals is both too strict (overlapping intervals can hide a clear paired gain) and easy to
misread. This module gives, for a model against the model it was trained from:

- ``delta``: the accuracy difference (new − old, absolute, 0..1 scale);
- ``ci95``: the 95 % paired percentile bootstrap interval of that difference (items resampled with replacement, both
  models' outcomes kept together; Efron & Tibshirani 1993, ch. 13), seeded, so the same rows give the same interval;
- ``mcnemar_p``: the exact two-sided McNemar test (McNemar 1947): under "no change" each of the ``b + c`` discordant
  items is equally likely to favour either model, so ``p = min(1, 2 · P[Bin(b + c, ½) ≤ min(b, c)])``;
- ``significant``: the interval excludes 0. The bootstrap interval is the verdict (it is what the report prints);
  McNemar's p is reported beside it as the classical check, and the two agree except at the boundary.

Only items that both models have a verdict for (answerable items with a gold answer) count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from math import comb


@dataclass(frozen=True)
class PairedChange:
    """One model against another on the same items (accuracy on a 0..1 scale)."""

    before: str
    after: str
    n: int  # items both models have a verdict for
    accuracy_before: float
    accuracy_after: float
    delta: float  # after − before
    ci95: tuple[float, float]  # paired bootstrap interval of delta
    gained: int  # b: right after, wrong before
    lost: int  # c: wrong after, right before
    mcnemar_p: float

    @property
    def significant(self) -> bool:
        return self.ci95[0] > 0 or self.ci95[1] < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95), "significant": self.significant}

    def describe(self) -> str:
        """``+1.4 points, 95 % CI −1.6…+4.4, not significant`` (the report's and the CLI's wording)."""
        lo, hi = self.ci95
        verdict = "significant" if self.significant else "not significant"
        return (f"{100 * self.delta:+.1f} points, 95 % CI {_signed(100 * lo)}…{_signed(100 * hi)}, {verdict} "
                f"({self.gained} items gained, {self.lost} lost of {self.n}; McNemar p = {self.mcnemar_p:.2g})")


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value for ``gained`` vs ``lost`` discordant pairs."""
    n = gained + lost
    if n == 0:
        return 1.0
    k = min(gained, lost)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_change(before: Mapping[str, bool], after: Mapping[str, bool], names: tuple[str, str] = ("before", "after"),
                  n_boot: int = 2000, seed: int = 0) -> PairedChange | None:
    """Compare two models' per-item correctness (``item id -> correct``); None when no item has both verdicts."""
    import numpy as np

    ids = sorted(before.keys() & after.keys())
    if not ids:
        return None
    b = np.array([bool(before[i]) for i in ids], dtype=float)
    a = np.array([bool(after[i]) for i in ids], dtype=float)
    d = a - b  # (N,) in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))  # (B, N)
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    gained, lost = int((d > 0).sum()), int((d < 0).sum())
    return PairedChange(before=names[0], after=names[1], n=len(ids), accuracy_before=float(b.mean()),
                        accuracy_after=float(a.mean()), delta=float(d.mean()), ci95=(float(lo), float(hi)),
                        gained=gained, lost=lost, mcnemar_p=mcnemar_exact(gained, lost))


def correctness(rows: Sequence[Mapping]) -> dict[str, bool]:
    """``item id -> correct`` from an audit's example rows (items without a verdict left out)."""
    return {r["id"]: bool(r["correct"]) for r in rows if r.get("correct") is not None}


def stage_changes(rows_by_stage: Mapping[str, Sequence[Mapping]], inputs: Mapping[str, str], n_boot: int = 2000,
                  seed: int = 0) -> list[PairedChange]:
    """Each model stage against the stage it was trained from (``inputs[stage]``), in the order of ``rows_by_stage``."""
    out = []
    for stage, src in inputs.items():
        if stage in rows_by_stage and src in rows_by_stage:
            change = paired_change(correctness(rows_by_stage[src]), correctness(rows_by_stage[stage]), (src, stage),
                                   n_boot, seed)
            if change is not None:
                out.append(change)
    return out
