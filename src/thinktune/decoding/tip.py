"""TIP, the thought-switching penalty: a ``transformers`` logits processor that discourages premature switches.

A *thought* starts at the first generated token and again at every switch token ("Alternatively", …). While the
current thought is younger than β tokens, the logits of every switch token are lowered by α:

    ẑ_{t,v} = z_{t,v} − α · 1[t < Ψ + β]   for v ∈ V̂ (switch-token ids),   ẑ_{t,v} = z_{t,v} otherwise

where t counts generated tokens (0-based) and Ψ is where the current thought started. Each row of a batch keeps
its own Ψ.

How to run::

    thinktune generate MODEL --data gsm8k_test.jsonl --tip --tip-alpha 3 --tip-beta 600
    thinktune tip compare MODEL --data gsm8k_test.jsonl --words Alternatively,Wait   # switch rate + accuracy, with/without

or in Python: ``generate_texts(model, tok, prompts, params, logits_processors=[ThoughtSwitchPenalty.from_words(tok)])``.

Paper: *Thoughts Are All Over the Place: On the Underthinking of o1-Like LLMs* (Wang et al.), arXiv 2501.18585
(docs/METHODS.md, "Underthinking and TIP").

Deviations and choices (numbered):
1. The switch-token set V̂ is the *first sub-token* of each configured word in four spellings (capitalised and
   lower-case, with and without a leading space); the paper's exact list is not published. A word
   whose first sub-token is shorter than the word (``"alternatively"`` → ``"altern"`` in SmolLM2's tokenizer) also
   hits other words that share the prefix; :func:`switch_token_ids` reports such words and a warning is logged.
   Two guards the paper does not need for its tokenizer: a leading space that the tokenizer splits off as its own
   token is skipped (the word starts at its first visible sub-token), and a spelling whose first sub-token is a
   single character (``"a"`` of ``"a|ltern|atively"``) is left out with a warning — penalising it would hit most
   words.
2. Default α = 3, β = 600 (the paper's best grid point, unverified) and the word "alternatively" (the audit's
   default switch word, so the audit counts exactly what TIP penalises).
3. The processor resets itself at the start of every ``generate`` call: it recognises a continuation by the
   previous call's ids being a prefix of the new ones, so one instance can be reused across batches
   (``generate_texts`` calls ``generate`` once per batch with the same processor list).
4. With left padding every row of a batch has the same padded prompt length, so t is shared by the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt

log = logging.getLogger(__name__)

DEFAULT_SWITCH_WORDS = ("alternatively",)


class TipConfig(BaseModel):
    """Settings of the thought-switching penalty (arXiv 2501.18585)."""

    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(default_factory=lambda: list(DEFAULT_SWITCH_WORDS))  # switch words (4 spellings each)
    alpha: NonNegativeFloat = 3.0  # penalty subtracted from each switch-token logit inside the window
    beta: PositiveInt = 600  # window length in generated tokens, counted from the start of the current thought


@dataclass(frozen=True)
class SwitchTokens:
    ids: tuple[int, ...]  # sorted distinct token ids that open a thought switch
    ambiguous: tuple[tuple[str, str], ...]  # (spelling, first sub-token) where the sub-token is only a prefix
    skipped: tuple[tuple[str, str], ...] = ()  # (spelling, sub-token) left out: a one-character prefix


def spellings(word: str) -> list[str]:
    """The four spellings of a switch word: Capitalised / lower-case, each with and without a leading space."""
    w = word.strip()
    forms = dict.fromkeys([w[:1].upper() + w[1:], w[:1].lower() + w[1:]])
    return [p + f for f in forms for p in ("", " ")]


def switch_token_ids(tokenizer, words: Iterable[str] = DEFAULT_SWITCH_WORDS) -> SwitchTokens:
    """Token ids of the first sub-token of every spelling of ``words`` in this tokenizer (deviation 1)."""
    ids: set[int] = set()
    ambiguous: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for word in words:
        if not word.strip():
            raise ValueError("a switch word must not be blank")
        for form in spellings(word):
            toks = tokenizer.encode(form, add_special_tokens=False)
            # a leading space may be its own token: the word starts at the first token with a visible character
            toks = [t for i, t in enumerate(toks) if any(tokenizer.decode([x]).strip() for x in toks[: i + 1])]
            if not toks:
                continue
            first = tokenizer.decode([toks[0]])
            if len(toks) > 1 and len(first.strip()) < 2:  # "a", "w": penalising it would hit most words
                skipped.append((form, first))
                continue
            ids.add(toks[0])
            if len(toks) > 1 and first.strip() != form.strip():
                ambiguous.append((form, first))
    for form, first in ambiguous:
        log.warning("switch word %r starts with sub-token %r, which other words share: TIP penalises those too",
                    form, first)
    for form, first in skipped:
        log.warning("switch word %r starts with the one-character sub-token %r: that spelling is not penalised",
                    form, first)
    if words and not ids:
        raise ValueError(f"none of the switch words {list(words)} has a usable first sub-token in this tokenizer")
    return SwitchTokens(tuple(sorted(ids)), tuple(ambiguous), tuple(skipped))


class ThoughtSwitchPenalty:
    """A ``transformers`` logits processor implementing TIP (module docstring). ``scores`` are not modified in place."""

    def __init__(self, switch_ids: Sequence[int], alpha: float = 3.0, beta: int = 600):
        if not switch_ids:
            raise ValueError("TIP needs at least one switch-token id")
        self.ids = torch.as_tensor(sorted(set(int(i) for i in switch_ids)), dtype=torch.long)
        self.alpha, self.beta = float(alpha), int(beta)
        self.reset()

    @classmethod
    def from_config(cls, tokenizer, cfg: TipConfig) -> ThoughtSwitchPenalty:
        return cls(switch_token_ids(tokenizer, cfg.words).ids, cfg.alpha, cfg.beta)

    def reset(self) -> None:
        self._prev: torch.Tensor | None = None  # ids seen at the previous call
        self.prompt_len = 0
        self.start: torch.Tensor | None = None  # (B,) generated-token index where the current thought began

    def _continues(self, input_ids: torch.Tensor) -> bool:
        prev = self._prev
        return (prev is not None and prev.shape[0] == input_ids.shape[0] and prev.shape[1] + 1 == input_ids.shape[1]
                and torch.equal(prev, input_ids[:, :-1]))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # input_ids: (B, prompt_len + t); scores: (B, V)
        if not self._continues(input_ids):  # a new generate call: the first thought starts at t = 0
            self.prompt_len = input_ids.shape[1]
            self.start = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        self._prev = input_ids
        t = input_ids.shape[1] - self.prompt_len  # tokens generated so far
        ids = self.ids.to(input_ids.device)
        if t > 0:
            switched = torch.isin(input_ids[:, -1], ids)  # the switch token (generated at t − 1) opens a thought
            self.start = torch.where(switched, torch.full_like(self.start, t - 1), self.start)
        active = t < self.start + self.beta  # (B,)
        if self.alpha == 0 or not bool(active.any()):
            return scores
        scores = scores.clone()
        rows = active.nonzero(as_tuple=True)[0].unsqueeze(1)  # (b, 1)
        scores[rows, ids.unsqueeze(0)] -= self.alpha
        return scores
