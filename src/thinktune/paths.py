"""The one validation layer for names and paths that thinktune turns into directories it writes and deletes.

A run lives in ``<output_dir>/<name>/``, and starting a stage over deletes that stage's directory inside it
(``data/``, ``sft/``, …). So:

1. a run name is one plain path component: letters, digits, ``_ . -``, not starting with ``.`` (so never ``.`` or
   ``..``, never hidden), at most :data:`MAX_NAME` characters (``name: '..'`` used to make the working directory
   the run directory, and committing the data stage replaced the user's own ``./data``);
2. ``output_dir`` and the run directory must be directories if they exist (a file there is a clear error);
3. a run directory that exists must be a thinktune run directory (a ``manifest.json``, or nothing but what
   :meth:`thinktune.run.Run.begin` writes first), and may not be the working directory or one of its parents:
   thinktune never deletes inside a directory it did not create.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_NAME = 100
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
RUN_MARKERS = ("manifest.json", "recipe.yaml")  # what a run directory holds from its first moment


def name_problem(value: str, what: str = "name") -> str | None:
    """Why ``value`` cannot be a directory name we create, or None when it can."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > MAX_NAME:
        return f"{what} has {len(value)} characters; at most {MAX_NAME}"
    if not _NAME.match(value):
        return (f"{what} {value!r} must be one plain directory name: letters, digits, '_', '.', '-', not starting "
                f"with '.' (no '/', no '..')")
    return None


def check_name(value: str, what: str = "name") -> str:
    """``value`` if it is a valid name (pydantic validators call this), else ValueError with the reason."""
    problem = name_problem(value, what)
    if problem:
        raise ValueError(problem)
    return value


def output_dir_problems(output_dir: str | os.PathLike, name: str) -> list[str]:
    """File-system problems of ``<output_dir>/<name>`` (``recipe check`` and ``run`` report them before any write)."""
    out = Path(output_dir)
    problems = []
    for p in (*reversed(out.parents), out):
        if p.exists() and not p.is_dir():
            problems.append(f"output_dir: {output_dir} cannot be used: {p} is a file, not a directory")
            return problems
    run_dir = out / name
    if run_dir.exists() and not run_dir.is_dir():
        problems.append(f"name: the run directory {run_dir} exists and is a file, not a directory")
    return problems


def run_dir_problem(root: str | os.PathLike) -> str | None:
    """Why thinktune must not use ``root`` as a run directory (it would delete or replace files there)."""
    root = Path(root)
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root} exists and is not a directory"
    here, target = Path.cwd().resolve(), root.resolve()
    if target == here or target in here.parents:
        return f"{root} is the working directory or contains it; a run directory must be a directory of its own"
    entries = [e for e in os.listdir(root) if e not in RUN_MARKERS and not e.startswith(".")]
    if entries and not (root / "manifest.json").is_file():
        shown = ", ".join(sorted(entries)[:5]) + (" …" if len(entries) > 5 else "")
        return (f"{root} exists but is not a thinktune run directory (no manifest.json; it holds {shown}); "
                f"choose another name or output_dir")
    return None
