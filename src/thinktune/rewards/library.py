"""Built-in reward functions: pure per-sample functions of one completion and its record (STYLE.md rule 4).

Each returns a float, or ``None`` for "not applicable" (masked by TRL, counted by thinktune), never a silent 0.
The batched TRL signature, length checks and isolation are added by :mod:`thinktune.rewards.runner`.

- ``correct``: 1.0 when the single answer block is equivalent to the gold (rewards/answers.py), else 0.0;
  None when the gold is unparseable. Source: DeepSeek-R1 accuracy reward (arXiv 2501.12948 §2.2.2).
- ``format``: 1.0 when the completion is exactly one non-empty think block, then exactly one answer block,
  nothing after (formatting.parse_completion ``well_formed``), else 0.0. Source: DeepSeek-R1 format reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion
from thinktune.rewards.answers import grade

RewardFn = Callable[..., float | None]


def correct(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, **_: Any) -> float | None:
    """1.0 if the answer block matches the gold, 0.0 otherwise, None if the gold is unusable."""
    verdict = grade(record, parse_completion(completion, fmt).answer)
    return None if verdict is None else float(verdict)


def strict_format(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, **_: Any) -> float | None:
    """1.0 for exactly one non-empty think block then exactly one answer block and nothing after."""
    return 1.0 if parse_completion(completion, fmt).well_formed else 0.0


REWARDS: dict[str, RewardFn] = {"correct": correct, "format": strict_format}


def resolve(name: str) -> RewardFn:
    """A registered reward name, or ``module:function`` for a user's reward."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"cannot import reward {name!r}: {e}") from None
        if not callable(fn):
            raise KeyError(f"reward {name!r} is not callable")
        return fn
    import difflib

    close = difflib.get_close_matches(name, list(REWARDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown reward {name!r}{hint} (built-ins: {', '.join(sorted(REWARDS))}; or module:function)")
