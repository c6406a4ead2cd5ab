"""Audit metrics added by name: a function of one audited item, averaged over the items.

``audit.metrics: ["my_metrics:digits_in_answer"]`` in a recipe (or ``thinktune audit --metric …``) names functions
``fn(row, record) -> float | None``: ``row`` is the item's ``examples.jsonl`` row (``completion``, ``answer``,
``correct``, ``n_steps``, ``completion_tokens``, …), ``record`` its canonical record, and None means "not applicable".
Each metric is computed for every item (``row["metrics"][name]``) and aggregated as a mean with a bootstrap 95 %
interval (``audit.json`` → ``metrics``); the CLI table, ``results.json`` and the report show it next to the built-in
metrics. Optional attributes of the function: ``label`` (the shown name; default the function's name), ``kind``
("pct" or "num") and ``better`` (+1 when higher is better, −1 when lower is, 0 neither). docs/EXTENDING.md has a
worked example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thinktune.audit.outcomes import bootstrap_ci
from thinktune.data.records import Record
from thinktune.errors import ThinktuneError

MetricFn = Callable[[dict[str, Any], Record], float | None]


class MetricError(ThinktuneError):
    """An audit metric that cannot be loaded or that returned something other than a number or None."""


@dataclass(frozen=True)
class Metric:
    name: str  # key in audit.json ``metrics`` and in each row's ``metrics``
    fn: MetricFn
    label: str
    kind: str = "num"  # "pct" or "num"
    better: int = 0


def resolve(spec: str) -> Metric:
    """``module:function`` → :class:`Metric` (MetricError naming the spec when it cannot be imported)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise MetricError(f"audit metric {spec!r}: expected module:function")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise MetricError(f"audit metric {spec!r}: cannot load it ({e})") from None
    kind = getattr(fn, "kind", "num")
    if kind not in ("pct", "num"):
        raise MetricError(f"audit metric {spec!r}: kind must be 'pct' or 'num', got {kind!r}")
    return Metric(attr, fn, str(getattr(fn, "label", attr)), kind, int(getattr(fn, "better", 0)))


def compute(metrics: Sequence[Metric], rows: Sequence[dict[str, Any]], records: Sequence[Record]) -> None:
    """Every metric of every row, into ``row["metrics"]``."""
    for m in metrics:
        for row, record in zip(rows, records):
            value = m.fn(row, record)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise MetricError(f"audit metric {m.name!r} returned {value!r} for item {record.id!r} (a number "
                                  "or None)")
            row.setdefault("metrics", {})[m.name] = None if value is None else float(value)


def summarize(metrics: Sequence[Metric], rows: Sequence[dict[str, Any]], n_boot: int,
              seed: int) -> dict[str, dict[str, Any]]:
    """Per metric: mean over the items it applies to, their number, the bootstrap 95 % interval and how to show it."""
    out = {}
    for m in metrics:
        values = [v for r in rows if (v := (r.get("metrics") or {}).get(m.name)) is not None]
        out[m.name] = {"label": m.label, "kind": m.kind, "better": m.better, "n": len(values),
                       "mean": sum(values) / len(values) if values else None,
                       "ci95": bootstrap_ci(values, n_boot, seed) if values else None}
    return out
