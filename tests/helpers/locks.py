"""A run directory's lock held by another process (flock conflicts only between processes, run_lock.py)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_HOLD = ("import sys, pathlib; from thinktune.run_lock import run_lock\n"
         "with run_lock(pathlib.Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()")


@contextlib.contextmanager
def lock_held_elsewhere(root: Path) -> Iterator[subprocess.Popen]:
    """A child process holds ``root``'s run lock for the block; killed with SIGKILL at its end (as a crash would)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
