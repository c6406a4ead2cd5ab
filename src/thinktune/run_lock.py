"""One command per run directory: whoever works in a run directory holds an exclusive lock on ``<run>/.thinktune.lock``.

Two runs of one recipe at once (a second terminal, a scheduler retrying a job that is still alive, two
``thinktune experiments run`` on one ``--out``) would interleave checkpoints and manifest writes, and each one's
start-up sweep (run.RunState.sweep) deletes the other's in-flight temporary files. The lock is an advisory ``flock``
on an open file, so the kernel releases it when the process ends however it ends — ``kill -9`` included — and a
stale lock file can never block a later run. The file holds the holder's pid, shown in the refusal.

The lock is re-entrant within a process: the experiment runner holds it around sharing stages, ``execute`` and the
summary write, and ``execute`` (which takes it for every caller) then enters it again instead of refusing itself.
Where ``fcntl`` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from thinktune.errors import RunStateError

LOCK_FILE = ".thinktune.lock"
_HELD: set[Path] = set()  # run directories (resolved) whose lock this process holds


@contextlib.contextmanager
def try_run_lock(root: Path) -> Iterator[bool]:
    """Hold the run directory's lock for the block (creating ``root``) and yield True; yield False, holding nothing,
    when another process holds it. Re-entrant: a block nested in one of this process's that holds it yields True."""
    root.mkdir(parents=True, exist_ok=True)
    key = root.resolve()
    if key in _HELD:  # a nested block: the outer one keeps the lock and releases it
        yield True
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield True
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # releases the lock


def lock_holder(root: Path) -> int | None:
    """The pid written by the lock's current (or last) holder, if any."""
    try:
        text = (root / LOCK_FILE).read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block (creating ``root``); :class:`RunStateError` naming the holder's
    pid if another process holds it."""
    with try_run_lock(root) as mine:
        if not mine:
            holder = lock_holder(root)
            raise RunStateError(
                f"{root}: another `thinktune run` is working in this run directory"
                f"{f' (pid {holder})' if holder else ''}; wait for it to finish or stop it, then run "
                f"again (it resumes where it stopped)")
        yield
