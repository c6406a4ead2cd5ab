"""Deliberately broken reward functions for the isolation tests (docs/ARCHITECTURE.md, "Reward isolation").

They are importable by name (``tests.helpers.faulty_rewards:sleep_forever``) because the runner's spawned workers
resolve rewards by name; the repository root is on ``sys.path`` (pytest ``pythonpath = ["."]``) and spawn passes it on.
"""

from __future__ import annotations

import os
import time


def sleep_forever(completion, record, **_):
    while True:
        time.sleep(60)


def sleep_on_marker(completion, record, **_):
    """Hangs only on completions containing HANG; 1.0 otherwise."""
    if "HANG" in completion:
        while True:
            time.sleep(60)
    return 1.0


def busy_loop_in_c(completion, record, **_):
    """A C-level busy loop holding the GIL (signals cannot interrupt it; only killing the process can)."""
    if "HANG" in completion:
        return float(10 ** 10 ** 10 % 7)
    return 1.0


def raises(completion, record, **_):
    raise ZeroDivisionError("boom")


def raises_on_marker(completion, record, **_):
    if "BOOM" in completion:
        raise RuntimeError("boom on marker")
    return 0.5


def exits_on_marker(completion, record, **_):
    if "EXIT" in completion:
        os._exit(3)
    return 1.0


def returns_nan(completion, record, **_):
    return float("nan")


def returns_none(completion, record, **_):
    return None


def returns_text(completion, record, **_):
    return "1.0"


def wrong_length(prompts, completions, **_):
    """A TRL-style batch reward that returns one value too few."""
    return [1.0] * (len(completions) - 1)


def batch_length(prompts, completions, answer, **_):
    """A correct TRL-style batch reward: 1.0 when the gold appears anywhere (deliberately hackable)."""
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]


def substring_match(completion, record, **_):
    """The Visual-RFT#176 hack: 'gold in answer or answer in gold' — an empty answer gets full credit."""
    from thinktune.formatting import parse_completion

    answer = parse_completion(completion).answer
    if answer is None:
        return 0.0
    return 1.0 if (record.answer in answer or answer in record.answer) else 0.0


def pid(completion, record, **_):
    return float(os.getpid())


def slow(completion, record, **_):
    """0.3 s per call: a batch of them takes longer than the deadline, each call does not."""
    time.sleep(0.3)
    return 1.0


def main_thread(completion, record, **_):
    """1.0 when called in the worker's main thread (Math-Verify's SIGALRM timeout needs it)."""
    import threading

    return 1.0 if threading.current_thread() is threading.main_thread() else 0.0


def hang_once(completion, record, marker: str = "", **_):
    """Hangs on the first call across all processes (the one that creates ``marker``); 1.0 afterwards."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return 1.0
    os.close(fd)
    while True:
        time.sleep(60)
