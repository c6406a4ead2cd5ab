"""Which process am I, and wait for the others: the few collectives thinktune adds to a multi-process stage.

A training stage launched with ``thinktune run --processes N`` (stages/worker.py) runs in N processes that all
build the same trainer; TRL/accelerate handle the gradient all-reduce and the data split. thinktune adds only
*who writes run state*: rank 0 writes every file (``final/``, checkpoint commit markers, metrics.jsonl,
completions/, audits), the others wait at a barrier (docs/ARCHITECTURE.md, "Crash safety and exact resume": one writer).

Everything here is a no-op in a single process, so stage code calls it unconditionally.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in the process that writes run state (rank 0, or the only process)."""
    return rank() == 0


def _initialized() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


# Collective timeout. Long: rank 0 may work alone before training (DPO pair sampling) while the others wait at
# a barrier; a crashed rank does not wait for it, since torchrun tears the whole group down when one exits.
TIMEOUT_S = 4 * 3600


def init() -> None:
    """Join the process group early (gloo on CPU, NCCL on GPU), before any stage code needs a barrier.

    accelerate's ``PartialState`` is a singleton: the Trainer created later finds this one.
    """
    if world_size() > 1:
        from datetime import timedelta

        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=TIMEOUT_S))


def barrier() -> None:
    if _initialized():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it builds and writes a file), then the others (they read it)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (``None`` elsewhere); ``[obj]`` in a single process."""
    if not _initialized():
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * dist.get_world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out
