"""Seeded random samples and train / held-out splits of records, optionally stratified.

``choose(records, n, seed, stratify)`` picks ``n`` records at random (``thinktune data sample``; ``thinktune data
split`` writes the chosen part and the rest). With ``stratify`` (``task``, ``difficulty`` or ``meta.<key>``) each
stratum gets its share of ``n`` in proportion to its size (largest remainder, ties by stratum order), so a 300-item
sample of a mix keeps the mix. Records keep their input order in both parts; the same seed gives the same parts.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from thinktune.data.records import Record

STRATA = ("task", "difficulty")  # plus meta.<key>


def stratum_value(record: Record, key: str) -> str:
    """A record's value for one stratification key (``difficulty``: ``meta.n_ops`` or ``meta.level``)."""
    if key == "task":
        return str(record.task)
    if key == "difficulty":
        return str(record.meta.get("n_ops", record.meta.get("level")))
    if key.startswith("meta."):
        return str(record.meta.get(key[5:]))
    raise ValueError(f"unknown stratification key {key!r} (task, difficulty or meta.<key>)")


def resolve_count(size: float, total: int) -> int:
    """``size`` as a number of records: a count (≥ 1) or a fraction of ``total`` (0 < size < 1), rounded."""
    if 0 < size < 1:
        return max(1, round(size * total))
    if size >= 1 and float(size).is_integer():
        return int(size)
    raise ValueError(f"expected a count (1, 2, …) or a fraction between 0 and 1, got {size:g}")


def choose(records: Sequence[Record], n: int, seed: int = 0, stratify: Sequence[str] = ()) -> list[int]:
    """Indices (ascending) of ``n`` records drawn without replacement, in proportion per stratum when asked."""
    if not 0 < n <= len(records):
        raise ValueError(f"cannot draw {n} of {len(records)} records")
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[tuple(stratum_value(r, k) for k in stratify)].append(i)
    keys = sorted(groups)
    exact = {k: n * len(groups[k]) / len(records) for k in keys}
    quota = {k: int(exact[k]) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - quota[k]), keys.index(k)))[: n - sum(quota.values())]:
        quota[k] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for k in keys:
        chosen += rng.sample(groups[k], quota[k])
    return sorted(chosen)


def strata_counts(records: Sequence[Record], stratify: Sequence[str]) -> dict[str, int]:
    """Records per stratum (``a/b`` for several keys), for the command's summary line."""
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts["/".join(stratum_value(r, k) for k in stratify)] += 1
    return dict(sorted(counts.items()))
