"""One command per run directory: ``thinktune run`` holds an exclusive lock on ``<run>/.thinktune.lock``.

Two runs of one recipe at once (a second terminal, a scheduler retrying a job that is still alive) would interleave
checkpoints and manifest writes, and each one's start-up sweep (run.RunState.sweep) deletes the other's in-flight
temporary files. The lock is an advisory ``flock`` on an open file, so the kernel releases it when the process ends
however it ends — ``kill -9`` included — and a stale lock file can never block a later run. The file holds the
holder's pid, shown in the refusal. Where ``fcntl`` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from thinktune.errors import RunStateError

LOCK_FILE = ".thinktune.lock"


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block (creating ``root``); :class:`RunStateError` if another process
    holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise RunStateError(
                f"{root}: another `thinktune run` is working in this run directory"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish or stop it, then run "
                f"again (it resumes where it stopped)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
