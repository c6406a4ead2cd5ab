"""Atomic file writes: a temp file in the same directory, fsync, then ``os.replace``.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a torn write
(docs/ARCHITECTURE.md, "Crash safety and exact resume"). Directories are committed the same way: build ``.name.tmp``
next to the target, then rename.

Choices:

1. Files are created with the mode the umask gives (``0666 & ~umask``, like ``open()``), not the ``0600`` that
   ``tempfile.mkstemp`` uses: a report written for others to read must be readable by them.
2. Temp files are named ``.<target>.tt<host>-<pid>.<random>.tmp``. A process killed with SIGKILL cannot remove its
   temp file, so every later write to the same target first removes the temps of that target whose writer is gone
   (same host, process no longer alive); :func:`sweep_temps` does the same for a whole directory tree. Temps of a
   live process, of another host, or not of this naming are never touched.
3. :func:`commit_dir` replaces a directory by two renames (old → ``.name.old``, new → name); a kill between them
   leaves only ``.name.old``, which :func:`recover_dir` (called by :func:`staging_dir` and :func:`sweep_temps`)
   moves back, so the old output stays in place until the new one is complete.
4. :class:`FileGroup` commits several files that describe each other (an output and its stats): the old
   "last" file (the stats) is removed before any new file is renamed into place and the new one is renamed
   last, so a kill at any point never leaves a new output next to a stale stats file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<target>.+)\.tt(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[^.]+\.tmp$")


def file_mode() -> int:
    """``0666 & ~umask``: the mode ``open()`` would give a new file."""
    with _UMASK_LOCK:  # reading the umask means setting it; no other thread may create files in between
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """A temp file of our naming whose writer (on this host) is no longer running."""
    m = _TEMP.match(path.name)
    return bool(m) and m["host"] == _HOST and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))


def clean_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove the temps that killed writers left next to ``target``. Returns what was removed."""
    p = Path(target)
    removed = []
    if not p.parent.is_dir():
        return removed
    prefix = f".{p.name}.tt"
    with contextlib.suppress(OSError), os.scandir(p.parent) as it:
        for entry in it:
            if entry.name.startswith(prefix) and is_stale_temp(Path(entry.path)):
                with contextlib.suppress(OSError):
                    _remove(Path(entry.path))
                    removed.append(Path(entry.path))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def sweep_temps(root: str | os.PathLike) -> list[Path]:
    """Remove stale temps (see :func:`is_stale_temp`) anywhere under ``root`` and put back directories a killed
    :func:`commit_dir` left as ``.name.old``. Returns what was removed or restored."""
    done = []
    root = Path(root)
    if not root.is_dir():
        return done
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in filenames + dirnames:
            if name.endswith(".tmp") and is_stale_temp(here / name):
                with contextlib.suppress(OSError):
                    _remove(here / name)
                    done.append(here / name)
        for name in list(dirnames):
            if name.startswith(".") and name.endswith(".old"):
                target = here / name[1:-4]
                if recover_dir(target):
                    done.append(here / name)
        dirnames[:] = [d for d in dirnames if (here / d).is_dir()]
    return done


@contextlib.contextmanager
def temp_file(target: str | os.PathLike, mode: str = "w") -> Iterator[tuple[IO[Any], str]]:
    """An open temp file next to ``target`` (created with the umask's mode); removed if the block raises.

    The caller renames it into place (``os.replace(tmp, target)``) inside the block.
    """
    p = Path(target)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(p)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.tt{_HOST}-{os.getpid()}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh, tmp
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    p = Path(path)
    with temp_file(p) as (fh, tmp):
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
        os.replace(tmp, p)
    _fsync_dir(p.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class FileGroup:
    """Write several files that belong together; commit them so that ``last`` never describes a stale sibling.

    ``with FileGroup([out, stats_path], last=stats_path) as g: g.write_text(stats_path, …); os.replace(…)`` —
    or get a temp path with :meth:`path_for` and fill it yourself. On a clean exit the old ``last`` is removed,
    the others are renamed into place, then ``last``; on an exception every temp is removed and the old files
    stay as they were.
    """

    def __init__(self, targets: Sequence[str | os.PathLike], last: str | os.PathLike):
        self.targets = [Path(t) for t in targets]
        self.last = Path(last)
        if self.last not in self.targets:
            self.targets.append(self.last)
        self._stack = contextlib.ExitStack()
        self._temps: dict[Path, str] = {}

    def __enter__(self) -> FileGroup:
        for t in self.targets:
            fh, tmp = self._stack.enter_context(temp_file(t))
            fh.close()
            self._temps[t] = tmp
        return self

    def path_for(self, target: str | os.PathLike) -> str:
        return self._temps[Path(target)]

    def write_text(self, target: str | os.PathLike, text: str) -> None:
        with open(self.path_for(target), "w", encoding="utf-8") as fh:
            fh.write(text)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for tmp in self._temps.values():
                    with open(tmp, "rb") as fh:
                        os.fsync(fh.fileno())
                self.last.unlink(missing_ok=True)
                for t in [*[t for t in self.targets if t != self.last], self.last]:
                    os.replace(self._temps[t], t)
                for parent in {t.parent for t in self.targets}:
                    _fsync_dir(parent)
        finally:
            self._stack.close()


def recover_dir(target: str | os.PathLike) -> bool:
    """Undo a :func:`commit_dir` killed between its two renames: ``.name.old`` is moved back to ``name`` when
    ``name`` is missing, and removed when ``name`` is there. Returns whether there was anything to do."""
    dst = Path(target)
    old = dst.with_name(f".{dst.name}.old")
    if not old.exists():
        return False
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, dst)
    return True


def commit_dir(tmp_dir: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a fully written directory into place, replacing an existing target (same step saved twice)."""
    tmp, dst = Path(tmp_dir), Path(target)
    recover_dir(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty staging directory next to ``target`` (same filesystem, so the rename is atomic)."""
    dst = Path(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp
