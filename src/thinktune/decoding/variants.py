"""One decoding-time intervention applied to a model for the duration of a block (audits of a model "as served").

``with intervention("tip", TipConfig(...), model, tok) as processors: generate(..., logits_processors=processors)``
— TIP (decoding/tip.py) is a logits processor to pass to every generation; activation steering (decoding/steering.py)
is a residual-stream hook that is active inside the block (and removed on exit), with no processor to pass.
Used by ``thinktune audit --tip/--steer`` and by experiment arms with a ``tip`` or ``steer`` variant.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Variant:
    """A decoding intervention audited next to the plain model: "tip" (a TipConfig) or "steer" (file, strength)."""

    kind: str
    setting: Any

    @property
    def suffix(self) -> str:
        """Appended to the model's label: ``+tip``, ``+steer0.4``."""
        return "+tip" if self.kind == "tip" else f"+steer{self.setting[1]:g}"

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "setting": str(self.setting)}

    def applied(self, model, tokenizer):
        """``with variant.applied(model, tok) as processors:`` (see :func:`intervention`)."""
        return intervention(self.kind, self.setting, model, tokenizer)


def build_variants(tip: bool = False, alpha: float = 3.0, beta: int = 600, words: Sequence[str] | None = None,
                   steer: Sequence[str] = ()) -> list[Variant]:
    """The TIP variant (when ``tip``) and one steering variant per ``FILE:STRENGTH`` spec."""
    from thinktune.decoding.steering import parse_steer_spec
    from thinktune.decoding.tip import TipConfig

    out: list[Variant] = []
    if tip:
        kw: dict[str, Any] = {"alpha": alpha, "beta": beta}
        if words:
            kw["words"] = list(words)
        out.append(Variant("tip", TipConfig(**kw)))
    out += [Variant("steer", parse_steer_spec(spec)) for spec in steer]
    return out
