"""Run reward functions for TRL: batched, length-checked, with outcome accounting.

``RewardRunner(specs, fmt).trl_functions()`` returns one TRL-compatible callable per reward spec
(``fn(prompts, completions, **columns) -> list[float | None]``), named after the reward so TRL logs
``rewards/<name>/mean``. Rows carry their canonical record as JSON in the ``record`` column.

Outcomes are kept apart and counted per function (RELIABILITY.md §5.3): a float is a score; ``None`` is "not
applicable" (masked by TRL); an error (exception, NaN/inf, wrong type) is counted, masked like None, and fails
the step when its share of a batch exceeds ``max_error_fraction``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thinktune.data.records import Record
from thinktune.errors import StageError
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat
from thinktune.rewards.library import resolve


def completion_text(completion: Any) -> str:
    """TRL passes strings (standard datasets) or message lists (conversational datasets)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


class RewardRunner:
    """Turns reward specs into TRL callables and keeps per-function outcome counts."""

    def __init__(self, specs: Sequence[Any], fmt: CompletionFormat = DEFAULT_FORMAT, max_error_fraction: float = 0.1,
                 completions_dir: str | os.PathLike | None = None):
        self.specs = list(specs)
        self.fmt = fmt
        self.max_error_fraction = max_error_fraction
        self.counts: dict[str, Counter] = {s.fn: Counter() for s in self.specs}
        self._fns = [resolve(s.fn) for s in self.specs]
        self.completions_dir = Path(completions_dir) if completions_dir else None
        self._pending: dict[str, list[float | None]] = {}

    @property
    def weights(self) -> list[float]:
        return [s.weight for s in self.specs]

    def score(self, index: int, completions: Sequence[str], records: Sequence[Record]) -> list[float | None]:
        spec, fn = self.specs[index], self._fns[index]
        counts = self.counts[spec.fn]
        out: list[float | None] = []
        errors = 0
        for text, rec in zip(completions, records, strict=True):
            try:
                value = fn(text, rec, fmt=self.fmt, **spec.kwargs)
                if value is not None:
                    value = float(value)
                    if not math.isfinite(value):
                        raise ValueError(f"non-finite reward {value}")
            except Exception:  # a user reward's failure is recorded, never allowed to crash or hang training
                counts["error"] += 1
                errors += 1
                out.append(None)
                continue
            counts["none" if value is None else "ok"] += 1
            out.append(value)
        if completions and errors / len(completions) > self.max_error_fraction:
            raise StageError(
                f"reward {spec.fn!r} failed on {errors}/{len(completions)} completions of a batch "
                f"(limit {self.max_error_fraction:.0%})"
            )
        return out

    def trl_functions(self) -> list[Callable[..., list[float | None]]]:
        return [self._trl_function(i) for i in range(len(self.specs))]

    def _trl_function(self, index: int) -> Callable[..., list[float | None]]:
        def reward(prompts=None, completions=None, record=None, **kwargs: Any) -> list[float | None]:
            if record is None:
                raise StageError("reward called without the 'record' column (set remove_unused_columns=False)")
            texts = [completion_text(c) for c in completions]
            records = [Record.model_validate_json(r) for r in record]
            scores = self.score(index, texts, records)
            if len(scores) != len(texts):
                raise StageError(f"reward {self.specs[index].fn!r} returned {len(scores)} values for {len(texts)}")
            self._log_batch(index, texts, records, scores, kwargs.get("trainer_state"))
            return scores

        reward.__name__ = self.specs[index].fn.replace(":", ".")
        return reward

    def _log_batch(self, index: int, texts: list[str], records: list[Record], scores: list[float | None],
                   trainer_state: Any) -> None:
        """Once every reward has scored a batch, append one row per completion to completions/step-N.jsonl."""
        if self.completions_dir is None:
            return
        self._pending[self.specs[index].fn] = scores
        if index != len(self.specs) - 1:
            return
        step = getattr(trainer_state, "global_step", 0)
        self.completions_dir.mkdir(parents=True, exist_ok=True)
        with open(self.completions_dir / f"step-{step:06d}.jsonl", "a", encoding="utf-8") as fh:
            for i, (text, rec) in enumerate(zip(texts, records)):
                rewards = {name: vals[i] for name, vals in self._pending.items()}
                fh.write(json.dumps({"step": step, "id": rec.id, "completion": text, "rewards": rewards}) + "\n")
        self._pending = {}
