"""One decoding-time intervention applied to a model for the duration of a block (audits of a model "as served").

``with intervention("tip", TipConfig(...), model, tok) as processors: generate(..., logits_processors=processors)``
— TIP (decoding/tip.py) is a logits processor to pass to every generation; activation steering (decoding/steering.py)
is a residual-stream hook that is active inside the block (and removed on exit), with no processor to pass.
Used by ``thinktune audit --tip/--steer`` and by experiment arms with a ``tip`` or ``steer`` variant.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def intervention(kind: str, setting: Any, model, tokenizer) -> Iterator[list]:
    """``kind`` "tip" with a TipConfig, or "steer" with (vector file or SteeringVector, strength)."""
    if kind == "tip":
        from thinktune.decoding.tip import ThoughtSwitchPenalty

        yield [ThoughtSwitchPenalty.from_config(tokenizer, setting)]
        return
    if kind != "steer":
        raise ValueError(f"unknown decoding intervention {kind!r} (tip or steer)")
    from thinktune.decoding.steering import SteeringVector, steered

    vector, strength = setting
    if isinstance(vector, (str, os.PathLike)):
        vector = SteeringVector.load(vector)
    vector.check(model)
    with steered(model, vector, strength):
        yield []
