"""Progress reporting without printing from library code.

Library code asks the current :class:`Reporter` for a task (``with reporter().task("SFT", total=400) as t:
t.advance()``); the CLI installs a rich-backed reporter, tests and library users get a silent one. Messages
that a user should see (resuming, skipping) go through ``reporter().note(...)`` and are also logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger("thinktune")


class TaskHandle:
    def advance(self, n: float = 1) -> None:  # noqa: D401 - trivial
        pass

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        pass


class Reporter:
    """Silent default: notes go to logging only."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[TaskHandle]:
        yield TaskHandle()

    def note(self, message: str) -> None:
        log.info(message)


_current: Reporter = Reporter()


def reporter() -> Reporter:
    return _current


def set_reporter(r: Reporter) -> Reporter:
    """Install ``r``; returns the previous reporter."""
    global _current
    prev, _current = _current, r
    return prev
