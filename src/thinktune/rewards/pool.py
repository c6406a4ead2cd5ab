"""Worker processes that run reward functions with a per-call deadline.

:class:`WorkerPool` keeps ``n_workers`` spawned processes for its whole life (one start-up cost per
``RewardRunner``). A batch of (completion, record) items is cut into chunks handed to idle workers; a worker streams
back one outcome per item, so the parent times every call on its own::

    with WorkerPool(n_workers=2, deadline=10.0) as pool:
        outcomes = pool.run_items("correct", {"extractor": "boxed"}, [(text, record_json), ...])

Why processes, and why this shape (docs/ARCHITECTURE.md, "Reward isolation"):

1. Math-Verify's timeout is ``signal.alarm``: it only works in a main thread and cannot interrupt C code
   (huggingface/Math-Verify#65). Each worker runs calls in its *main* thread, so that timeout is the first line of
   defence, and the process deadline is the backstop.
2. A hung call cannot be cancelled in a thread or a ``concurrent.futures`` process pool (areal-project/AReaL#1426):
   on a missed deadline the worker is killed, the call recorded as a timeout, the rest of its chunk re-queued and
   a fresh worker spawned in its place. A worker that dies (``os._exit``, a segfault) is handled the same way.
3. ``spawn`` start method: no forked copies of the trainer's threads, CUDA state or locks.
4. Workers ignore SIGINT, so Ctrl-C reaches the trainer, which closes the pool.

Functions are sent by name (a registered name or ``module:function``) and resolved in the worker, so they must be
importable there (the parent's ``sys.path`` is passed on by ``spawn``).
"""

from __future__ import annotations

import importlib
import math
import multiprocessing as mp
import numbers
import os
import signal
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from thinktune.errors import StageError

WARM_IMPORTS = ("thinktune.rewards.library", "math_verify", "sympy")  # imported before a worker reports ready
WARM_UP = "thinktune.data.answers:warm_up"  # then called once, so the first real call is not the slow one


@dataclass(frozen=True)
class Outcome:
    """One call's result: ``ok`` (a float), ``none`` (not applicable), ``error`` or ``timeout``."""

    status: str
    value: float | None = None
    message: str = ""


def classify(value: Any) -> Outcome:
    """A reward's raw return value as an outcome: numbers (and bools) are scores, None is "not applicable", NaN / inf
    and anything else are errors."""
    if value is None:
        return Outcome("none")
    if not isinstance(value, numbers.Real):
        return Outcome("error", message=f"returned {type(value).__name__}, expected a float or None")
    value = float(value)
    if not math.isfinite(value):
        return Outcome("error", message=f"returned a non-finite value ({value})")
    return Outcome("ok", value)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]


def call_items(fn, kwargs: dict[str, Any], items, parse_record) -> list[Outcome]:
    """Run a per-sample reward over items in this process (the worker's loop body; also the in-process mode)."""
    out = []
    for text, record in items:
        try:
            out.append(classify(fn(text, parse_record(record), **kwargs)))
        except Exception as e:  # an exception is a counted error, never a silent 0
            out.append(Outcome("error", message=_describe(e)))
        except BaseException as e:  # e.g. math_verify.errors.TimeoutException derives from BaseException
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            out.append(Outcome("timeout" if "Timeout" in type(e).__name__ else "error", message=_describe(e)))
    return out


def _record_parser():
    from thinktune.data.records import Record

    cache: dict[str, Any] = {}

    def parse(record):
        if not isinstance(record, str):
            return record
        got = cache.get(record)
        if got is None:
            if len(cache) > 4096:
                cache.clear()
            got = cache[record] = Record.model_validate_json(record)
        return got

    return parse


def _worker_main(conn: Connection, warm: tuple[str, ...]) -> None:  # pragma: no cover - runs in the child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in warm:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    from thinktune.rewards.library import resolve

    if "math_verify" in warm:
        try:
            resolve(WARM_UP)()
        except Exception:
            pass
    parse_record = _record_parser()
    fns: dict[str, Any] = {}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _, job, name, kwargs, batch, payload = msg
        try:
            fn = fns.get(name) or fns.setdefault(name, resolve(name))
        except Exception as e:
            conn.send(("fatal", job, f"cannot load reward {name!r} in the worker: {_describe(e)}"))
            continue
        if batch:
            prompts, completions, columns = payload
            try:
                values = fn(prompts=prompts, completions=completions, **columns, **kwargs)
                conn.send(("batch", job, [classify(v) for v in values] if isinstance(values, (list, tuple))
                           else Outcome("error", message=f"returned {type(values).__name__}, expected a list")))
            except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent
                conn.send(("batch", job, Outcome("error", message=_describe(e))))
            continue
        for index, item in payload:
            (outcome,) = call_items(fn, kwargs, [item], parse_record)
            conn.send(("item", job, index, outcome))


class _Worker:
    def __init__(self, ctx, warm: tuple[str, ...]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, warm), daemon=True, name="thinktune-reward")
        self.proc.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.last = self.started  # time of the last message, i.e. when the current call started
        self.chunk: deque[int] = deque()  # item indices sent and not yet answered, in order

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        finally:
            self.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        try:
            if w.ready and not w.chunk:
                w.conn.send(("stop",))
            else:  # still starting up, or busy with calls nobody will read: no point waiting
                w.proc.kill()
        except (OSError, ValueError):
            pass
    for w in workers:
        w.proc.join(1)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(5)
        try:
            w.conn.close()
        except OSError:
            pass


class WorkerPool:
    """``n_workers`` persistent reward processes with a per-call ``deadline`` in seconds."""

    def __init__(self, n_workers: int = 2, deadline: float = 10.0, startup_timeout: float = 120.0,
                 warm: tuple[str, ...] = WARM_IMPORTS):
        if n_workers < 1:
            raise ValueError("n_workers must be >= 1")
        self.deadline, self.startup_timeout, self.warm = deadline, startup_timeout, warm
        self._ctx = mp.get_context("spawn")
        self._workers = [_Worker(self._ctx, warm) for _ in range(n_workers)]
        self._job = 0
        self.replaced = 0  # workers killed and respawned (timeouts and deaths)
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self.warm)
        self.replaced += 1

    def _receive(self, w: _Worker) -> list[tuple]:
        msgs = []
        try:
            while w.conn.poll():
                msgs.append(w.conn.recv())
        except (EOFError, OSError):
            msgs.append(("died",))
        return msgs

    def _check_startup(self, w: _Worker, now: float) -> None:
        if not w.ready and now - w.started > self.startup_timeout:
            raise StageError(f"a reward worker did not start within {self.startup_timeout:.0f}s")
        if not w.ready and not w.proc.is_alive():
            raise StageError(
                f"a reward worker exited during start-up (exit code {w.proc.exitcode}). Workers use the 'spawn' "
                "start method, which re-imports the main script: guard a script's top level with "
                "`if __name__ == '__main__':`")

    def wait_ready(self) -> None:
        """Block until every worker has started (imports and warm-up done)."""
        while not all(w.ready for w in self._workers):
            now = time.monotonic()
            for w in self._workers:
                self._check_startup(w, now)
            wait([w.conn for w in self._workers if not w.ready], timeout=1.0)
            for w in self._workers:
                for msg in self._receive(w):
                    if msg[0] == "ready":
                        w.ready, w.last = True, time.monotonic()

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    # -- per-sample calls -----------------------------------------------------------------------------------------
    def run_items(self, name: str, kwargs: dict[str, Any], items: list[tuple[str, Any]],
                  max_failures: int | None = None) -> list[Outcome | None]:
        """One outcome per item (None for items skipped after an abort at ``max_failures`` failures)."""
        if self.closed:
            raise StageError("the reward pool is closed")
        n = len(items)
        results: list[Outcome | None] = [None] * n
        if not n:
            return results
        self._job += 1
        job = self._job
        size = max(1, min(32, math.ceil(n / (4 * len(self._workers)))))
        pending: deque[list[int]] = deque(list(range(i, min(i + size, n))) for i in range(0, n, size))
        failures, done = 0, 0
        while done < n:
            for w in list(self._workers):
                if w.ready and not w.chunk and not w.proc.is_alive():  # died while idle
                    self._replace(w)
                    continue
                if w.ready and not w.chunk and pending:  # only idle workers: a send never blocks on a busy one
                    chunk = pending.popleft()
                    w.conn.send(("run", job, name, kwargs, False, [(i, items[i]) for i in chunk]))
                    w.chunk.extend(chunk)
                    w.last = time.monotonic()
            busy = [w for w in self._workers if w.chunk or not w.ready]
            now = time.monotonic()
            waits = [w.last + self.deadline - now for w in busy if w.ready] + [1.0]
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=max(0.0, min(waits)))
            for w in list(self._workers):
                for msg in self._receive(w):
                    kind = msg[0]
                    if kind == "ready":
                        w.ready, w.last = True, time.monotonic()
                    elif kind == "item" and msg[1] == job and w.chunk and msg[2] == w.chunk[0]:
                        w.chunk.popleft()
                        results[msg[2]] = msg[3]
                        done += 1
                        failures += msg[3].status in ("error", "timeout")
                        w.last = time.monotonic()
                    elif kind == "fatal":
                        raise StageError(msg[2])
                    elif kind == "died":
                        break
                now = time.monotonic()
                if w.ready and w.chunk and (not w.proc.is_alive() or now - w.last > self.deadline):
                    hung = w.chunk.popleft()
                    alive = w.proc.is_alive()
                    results[hung] = (Outcome("timeout", message=f"no result within {self.deadline:g}s; worker killed")
                                     if alive else
                                     Outcome("error", message=f"worker died (exit code {w.proc.exitcode})"))
                    done += 1
                    failures += 1
                    if w.chunk:
                        pending.appendleft(list(w.chunk))
                        w.chunk.clear()
                    self._replace(w)
                elif not w.ready:
                    self._check_startup(w, now)
            if max_failures is not None and failures > max_failures:
                for w in list(self._workers):
                    if w.chunk:  # abandon the calls in flight
                        w.chunk.clear()
                        self._replace(w)
                break
        return results

    # -- TRL-style batch calls ------------------------------------------------------------------------------------
    def run_batch(self, name: str, kwargs: dict[str, Any], prompts: list[Any], completions: list[Any],
                  columns: dict[str, list[Any]]) -> list[Outcome] | Outcome:
        """A batch callable on one worker: its per-completion outcomes, or one Outcome for a failed call."""
        if self.closed:
            raise StageError("the reward pool is closed")
        self._job += 1
        job = self._job
        while True:
            now = time.monotonic()
            for w in list(self._workers):
                if w.ready and not w.proc.is_alive():  # died while idle
                    self._replace(w)
            idle = [w for w in self._workers if w.ready]
            if idle:
                break
            for w in self._workers:
                self._check_startup(w, now)
            wait([w.conn for w in self._workers], timeout=1.0)
            for w in self._workers:
                for msg in self._receive(w):
                    if msg[0] == "ready":
                        w.ready = True
        w = idle[0]
        w.conn.send(("run", job, name, kwargs, True, (prompts, completions, columns)))
        start = time.monotonic()
        while True:
            left = start + self.deadline - time.monotonic()
            if left <= 0 or not w.proc.is_alive():
                alive = w.proc.is_alive()
                exitcode = w.proc.exitcode
                self._replace(w)
                return (Outcome("timeout", message=f"no result within {self.deadline:g}s; worker killed") if alive
                        else Outcome("error", message=f"worker died (exit code {exitcode})"))
            wait([w.conn, w.proc.sentinel], timeout=left)
            for msg in self._receive(w):
                if msg[0] == "batch" and msg[1] == job:
                    return msg[2]
                if msg[0] == "fatal":
                    raise StageError(msg[2])
