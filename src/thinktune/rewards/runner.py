"""Run reward functions for TRL: isolated in worker processes, batched, length-checked, with outcome accounting.

``RewardRunner(specs, fmt).trl_functions()`` returns one TRL-compatible callable per reward spec
(``fn(prompts, completions, **columns) -> list[float | None]``), named after the reward so TRL logs
``rewards/<name>/mean``. Rows carry their canonical record as JSON in the ``record`` column::

    with RewardRunner(cfg.rewards, fmt, completions_dir=stage_dir / "completions") as rewards:
        trainer = GRPOTrainer(..., reward_funcs=rewards.trl_functions(), args=GRPOConfig(reward_weights=rewards.weights))
        trainer.train()

Design (docs/ARCHITECTURE.md, "Reward isolation"):

1. Every reward runs in a persistent pool of spawned worker processes (:mod:`thinktune.rewards.pool`) with a
   per-call ``deadline``; a hung call is abandoned and its worker killed and replaced. ``workers=0`` runs
   in-process without isolation (debugging only).
2. Outcomes are kept apart and counted per function, in total (``counts``) and per step (``step_counts``): a float
   is a score; ``None`` is "not applicable" (masked by TRL); an error (exception, timeout, NaN, wrong type, a dead
   worker, a batch reward returning the wrong number of values) is counted, masked like None, and stops the run
   with a :class:`StageError` once more than ``max_error_fraction`` of a batch has failed — as soon as that is
   certain, without waiting for the rest of the batch. Never a silent 0 (verifiers PR #1487; UniRL#214).
3. The counts of each call are also handed to TRL's ``log_metric`` (``rewards/<name>/n_errors``, ``n_timeouts``,
   ``n_none``), so they appear in the training metrics.
4. Repeated (completion, record) judgements within a step are cached (GRPO groups often repeat completions);
   ``cache=False`` turns it off.
5. Rewards are per-sample functions ``fn(completion, record, fmt=…, **settings)``; a user reward whose signature
   has ``completions`` is treated as a TRL-style batch callable and runs on one worker per call.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thinktune.data.records import Record
from thinktune.distributed import gather_to_main
from thinktune.errors import StageError
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat
from thinktune.rewards.library import (
    RewardError,
    call_kwargs,
    completion_text,
    is_batch_reward,
    records_from_columns,
    resolve,
)
from thinktune.rewards.pool import Outcome, WorkerPool, call_items

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "none", "error", "timeout")
_TRL_KWARGS = {"trainer_state", "log_extra", "log_metric", "completion_ids", "environments"}  # not dataset columns

__all__ = ["RewardRunner", "completion_text", "OUTCOMES"]


def _label(specs: Sequence[Any]) -> list[str]:
    """Unique display names: the spec's fn, with ``#2``, ``#3`` for repeats."""
    seen: Counter = Counter()
    out = []
    for s in specs:
        seen[s.fn] += 1
        out.append(s.fn if seen[s.fn] == 1 else f"{s.fn}#{seen[s.fn]}")
    return out


class RewardRunner:
    """Turns reward specs into isolated TRL callables and keeps per-function outcome counts."""

    def __init__(self, specs: Sequence[Any], fmt: CompletionFormat = DEFAULT_FORMAT, max_error_fraction: float = 0.1,
                 completions_dir: str | os.PathLike | None = None, *, workers: int = 2, deadline: float = 10.0,
                 cache: bool = True):
        if not 0.0 <= max_error_fraction <= 1.0:
            raise ValueError(f"max_error_fraction must be in [0, 1], got {max_error_fraction}")
        self.specs = list(specs)
        self.fmt = fmt
        self.max_error_fraction = max_error_fraction
        self.deadline = deadline
        self.names = _label(self.specs)
        self.counts: dict[str, Counter] = {n: Counter() for n in self.names}
        self.step_counts: dict[int, dict[str, Counter]] = {}
        self._fns, self._kwargs, self._batch = [], [], []
        for spec, name in zip(self.specs, self.names):
            try:
                fn = resolve(spec.fn)
            except KeyError as e:
                raise RewardError(str(e.args[0])) from None
            batch = is_batch_reward(fn)
            self._fns.append(fn)
            self._batch.append(batch)
            self._kwargs.append(dict(spec.kwargs) if batch else call_kwargs(name, fn, dict(spec.kwargs), fmt))
        self.completions_dir = Path(completions_dir) if completions_dir else None
        self._pending: dict[str, list[float | None]] = {}
        self.cache_enabled = cache
        self._cache: dict[tuple[int, str, str], Outcome] = {}
        self._cache_step: int | None = None
        self.cache_hits = 0
        self._pool = WorkerPool(workers, deadline) if workers > 0 else None  # spawned now: warms up while models load

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def wait_ready(self) -> None:
        """Block until every reward worker has started (otherwise the first call waits for them)."""
        if self._pool is not None:
            self._pool.wait_ready()

    @property
    def weights(self) -> list[float]:
        return [s.weight for s in self.specs]

    @property
    def workers_replaced(self) -> int:
        return self._pool.replaced if self._pool else 0

    # -- scoring --------------------------------------------------------------------------------------------------
    def evaluate(self, index: int, completions: Sequence[str], records: Sequence[Record | str],
                 step: int | None = None, max_failures: int | None = None) -> list[Outcome | None]:
        """Outcomes of reward ``index`` on each completion (no accounting, no raising on errors).

        ``records`` are Records or their JSON. None marks items skipped after ``max_failures`` failures.
        """
        if len(completions) != len(records):
            raise ValueError(f"{len(completions)} completions but {len(records)} records")
        rjson = [r if isinstance(r, str) else r.model_dump_json() for r in records]
        if self._batch[index]:
            return self._evaluate_batch(index, list(completions), rjson)
        if step != self._cache_step:
            self._cache, self._cache_step = {}, step
        keys = [(index, t, r) for t, r in zip(completions, rjson)]
        todo = [i for i, k in enumerate(keys) if not (self.cache_enabled and k in self._cache)]
        if self.cache_enabled:  # each distinct judgement is computed once
            first: dict[tuple[int, str, str], int] = {}
            todo = [i for i in todo if first.setdefault(keys[i], i) == i]
        items = [(completions[i], rjson[i]) for i in todo]
        name, fn, kwargs = self.specs[index].fn, self._fns[index], self._kwargs[index]
        if self._pool is not None:
            got = self._pool.run_items(name, kwargs, items, max_failures)
        else:
            got = call_items(fn, kwargs, items, _parse_record)
        fresh = dict(zip((keys[i] for i in todo), got))
        if self.cache_enabled:
            self._cache.update({k: v for k, v in fresh.items() if v is not None})
        out: list[Outcome | None] = []
        for k in keys:
            o = fresh.get(k) if k in fresh else self._cache.get(k)
            out.append(o)
        self.cache_hits += len(keys) - len(todo)
        return out

    def _evaluate_batch(self, index: int, completions: list[str], rjson: list[str]) -> list[Outcome | None]:
        records = [_parse_record(r) for r in rjson]
        columns = {"record": rjson, "answer": [r.answer for r in records], "task": [r.task for r in records],
                   "answerable": [r.answerable for r in records], "id": [r.id for r in records]}
        prompts = [r.question for r in records]
        name, kwargs = self.specs[index].fn, self._kwargs[index]
        if self._pool is not None:
            got = self._pool.run_batch(name, kwargs, prompts, completions, columns)
        else:
            from thinktune.rewards.pool import classify

            try:
                values = self._fns[index](prompts=prompts, completions=completions, **columns, **kwargs)
                got = [classify(v) for v in values] if isinstance(values, (list, tuple)) else Outcome(
                    "error", message=f"returned {type(values).__name__}, expected a list")
            except Exception as e:
                got = Outcome("error", message=f"{type(e).__name__}: {e}")
        if isinstance(got, Outcome):
            return [got] * len(completions)
        if len(got) != len(completions):
            msg = f"returned {len(got)} values for {len(completions)} completions"
            return [Outcome("error", message=msg)] * len(completions)
        return list(got)

    def score(self, index: int, completions: Sequence[str], records: Sequence[Record | str],
              step: int | None = None, log_metric: Callable[[str, float], None] | None = None) -> list[float | None]:
        """Scores of reward ``index``; counts outcomes; StageError when too many of the batch failed."""
        name = self.names[index]
        n = len(completions)
        allowed = math.floor(self.max_error_fraction * n + 1e-9)
        outcomes = self.evaluate(index, completions, records, step, max_failures=allowed)
        tally = Counter(o.status for o in outcomes if o is not None)
        self.counts[name].update(tally)
        if step is not None:
            self.step_counts.setdefault(step, {}).setdefault(name, Counter()).update(tally)
        if log_metric is not None:
            log_metric(f"rewards/{name}/n_errors", float(tally["error"] + tally["timeout"]))
            log_metric(f"rewards/{name}/n_timeouts", float(tally["timeout"]))
            log_metric(f"rewards/{name}/n_none", float(tally["none"]))
        failed = tally["error"] + tally["timeout"]
        if n and failed > allowed:
            first = next(o.message for o in outcomes if o is not None and o.status in ("error", "timeout"))
            raise StageError(
                f"reward {name!r} failed on {failed} of {n} completions in one batch (limit: "
                f"max_error_fraction={self.max_error_fraction:g}): {tally['timeout']} timed out "
                f"(deadline {self.deadline:g}s), {tally['error']} errors; first: {first}"
            )
        if failed:
            log.warning("reward %r: %d of %d completions failed (%d timeouts)", name, failed, n, tally["timeout"])
        return [o.value if o is not None and o.status == "ok" else None for o in outcomes]

    def score_all(self, completions: Sequence[str], records: Sequence[Record], chunk: int = 256,
                  on_advance: Callable[[int], None] | None = None) -> list[list[float | None]]:
        """Every reward's scores of every completion (one list per reward), ``chunk`` completions per call."""
        columns: list[list[float | None]] = []
        for i in range(len(self.specs)):
            values: list[float | None] = []
            for start in range(0, len(records), chunk):
                part = slice(start, start + chunk)
                values += self.score(i, completions[part], records[part])
                if on_advance is not None:
                    on_advance(len(completions[part]))
            columns.append(values)
        return columns

    def outcomes(self, completions: Sequence[str], records: Sequence[Record]) -> list[dict[str, float | str | None]]:
        """Per completion, every reward's value, or what happened instead ("error", "timeout", None when the reward
        abstains) — what the audit stage stores next to each held-out sample and the report shows."""
        per_fn = [self.evaluate(j, completions, records) for j in range(len(self.specs))]
        return [{name: _shown(per_fn[j][k]) for j, name in enumerate(self.names)} for k in range(len(completions))]

    def total_counts(self) -> dict[str, dict[str, int]]:
        """Outcome counts per function, summed over all processes (``run --processes N``: call it on every rank;
        rank 0 gets the sum, the others their own counts). One process: ``counts`` as plain dicts."""
        parts = gather_to_main({name: dict(c) for name, c in self.counts.items()})
        if parts is None:
            return {name: dict(c) for name, c in self.counts.items()}
        total: dict[str, Counter] = {name: Counter() for name in self.names}
        for part in parts:
            for name, c in part.items():
                total[name].update(c)
        return {name: dict(c) for name, c in total.items()}

    # -- TRL ------------------------------------------------------------------------------------------------------
    def trl_functions(self) -> list[Callable[..., list[float | None]]]:
        return [self._trl_function(i) for i in range(len(self.specs))]

    def _trl_function(self, index: int) -> Callable[..., list[float | None]]:
        def reward(prompts=None, completions=None, **kwargs: Any) -> list[float | None]:
            texts = [completion_text(c) for c in completions]
            columns = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS}
            if columns.get("record") is not None:
                records: list[Record | str] = list(columns["record"])
            else:
                records = records_from_columns(len(texts), prompts, columns)
            state = kwargs.get("trainer_state")
            step = getattr(state, "global_step", None)
            scores = self.score(index, texts, records, step=step, log_metric=kwargs.get("log_metric"))
            if len(scores) != len(texts):  # pragma: no cover - score() is one-per-item by construction
                raise StageError(f"reward {self.names[index]!r} returned {len(scores)} values for {len(texts)}")
            self._log_batch(index, texts, records, scores, step)
            return scores

        reward.__name__ = self.names[index].replace(":", ".")
        return reward

    def _log_batch(self, index: int, texts: list[str], records: list[Record | str], scores: list[float | None],
                   step: int | None) -> None:
        """Once every reward has scored a batch, append one row per completion to completions/step-N.jsonl."""
        if self.completions_dir is None:
            return
        self._pending[self.names[index]] = scores
        if index != len(self.specs) - 1:
            return
        step = step or 0
        rows = []
        for i, (text, rec) in enumerate(zip(texts, records)):
            rid = _parse_record(rec).id if isinstance(rec, str) else rec.id
            rewards = {name: vals[i] for name, vals in self._pending.items()}
            rows.append(json.dumps({"step": step, "id": rid, "completion": text, "rewards": rewards}) + "\n")
        self._pending = {}
        # Several processes (`run --processes N`): each scored its own slice of the batch; rank 0 writes them all,
        # in rank order, which is the order one process would have written them in.
        gathered = gather_to_main(rows)
        if gathered is None:
            return
        self.completions_dir.mkdir(parents=True, exist_ok=True)
        with open(self.completions_dir / f"step-{step:06d}.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(row for part in gathered for row in part)


def _shown(o: Outcome | None) -> float | str | None:
    if o is None:
        return "skipped"
    if o.status == "ok":
        return o.value
    return None if o.status == "none" else o.status


def read_scored_rows(path: Path) -> tuple[list[Record], list[str]]:
    """Rows of a JSONL file that are a canonical record plus a ``completion`` field (``thinktune rewards score``)."""
    from thinktune.data.records import DataError, iter_jsonl, parse_record

    records, completions = [], []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
        obj = dict(obj)
        completion = obj.pop("completion", None)
        if not isinstance(completion, str):
            raise DataError(path, line, "completion", "missing or not a string (each row is a record + completion)")
        records.append(parse_record(obj, path, line))  # several completions of one record may share its id
        completions.append(completion)
    if not records:
        raise DataError(path, None, None, "no rows")
    return records, completions


def _parse_record(record: Record | str) -> Record:
    return record if isinstance(record, Record) else Record.model_validate_json(record)
