"""A model's own chain of thought, cut into token segments that the scorer can truncate and rebuild.

For one item the audit keeps the prompt and the greedy completion's steps (non-empty lines of the think block,
docs/ARCHITECTURE.md, "Data model") as separately tokenized segments::

    root   = prompt | head | step_1 + "\\n" | … | step_n + "\\n"       head = think-open + "\\n" ("" if prefilled)
    cue    = think-close + "\\n" + answer-open                           the forced-answer cue after k >= 1 steps
    cue0   = "\\n" + cue                                                 after 0 steps (= render("") of formatting.py)
    final  = the model's own answer text | answer-close                  what greedy decoding wrote after the full chain

so that "the chain truncated after k steps, then the answer" is ``root[:cut(k)] + cue + final`` with no
re-tokenization. The text of the same prefix (``prefix_text(k)``) is what a naive evaluator would feed to
``generate``; segment boundaries are newlines and tag edges, where byte-level BPE pre-tokenizers split anyway, so the
two agree (benchmarks/bench_audit.py reports the per-item agreement).

The chain is re-rendered from its steps (lines stripped, one newline each), so whitespace the model wrote between
lines is normalised; the answer keeps its raw inner text (a leading space included) so that the greedy test matches
what the model actually writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from thinktune.data.answers import extract_answer, grade
from thinktune.data.records import Record
from thinktune.formatting import CompletionFormat, parse_completion, split_steps

Encode = Callable[[str], tuple[int, ...]]


def space_token_ids(tokenizer) -> frozenset[int]:
    """Tokens that decode to whitespace only (a model may write one before the answer's close tag)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, t in enumerate(texts) if t and not t.strip())


def make_encoder(tokenizer) -> Encode:
    """Tokenize a text segment without special tokens (memoised: cues and filler units repeat)."""
    cache: dict[str, tuple[int, ...]] = {}

    def encode(text: str) -> tuple[int, ...]:
        if text not in cache:
            cache[text] = tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()
        return cache[text]

    return encode


def think_prefilled(prompt: str, fmt: CompletionFormat) -> bool:
    """Does the chat template already open the think block (R1-style templates; huggingface/trl#6966)?"""
    return prompt.rstrip().endswith(fmt.think_open)


def head_text(prompt: str, fmt: CompletionFormat) -> str:
    if not think_prefilled(prompt, fmt):
        return fmt.think_open + "\n"
    return "" if prompt.endswith("\n") else "\n"


def cue_text(fmt: CompletionFormat) -> str:
    return f"{fmt.think_close}\n{fmt.answer_open}"


@dataclass(frozen=True)
class Trace:
    """One item's chain, tokenized in segments. ``bounds[k]`` = root tokens kept after k steps (k = 0..n)."""

    record: Record
    prompt: str
    head: str
    steps: tuple[str, ...]
    root: tuple[int, ...]
    bounds: tuple[int, ...]  # (n + 1,)
    cue: tuple[int, ...]
    cue0: tuple[int, ...]  # the cue after an empty chain: render() writes an empty think block as open, \n, \n, close
    final_text: str  # the model's answer, raw inner text of the answer block
    final: tuple[int, ...]  # final_text tokens
    close: tuple[int, ...]  # answer-close tokens
    gold: tuple[int, ...]  # gold answer tokens
    final_correct: bool | None  # grade(record, answer)

    @property
    def n(self) -> int:
        return len(self.steps)

    @property
    def final_target(self) -> tuple[int, ...]:
        """Greedy-matching this means 'the forced answer is the original answer'."""
        return self.final + self.close

    @property
    def correct_target(self) -> tuple[int, ...]:
        """Greedy-matching this means 'the forced answer is correct' (the model's own spelling when it was)."""
        return self.final_target if self.final_correct else self.gold + self.close

    @property
    def correct_space_at(self) -> int:
        """Where the close tag starts in :attr:`correct_target` (whitespace before it is tolerated)."""
        return len(self.final) if self.final_correct else len(self.gold)

    def cue_at(self, k: int) -> tuple[int, ...]:
        return self.cue0 if k == 0 else self.cue

    def prefix_text(self, k: int, fmt: CompletionFormat) -> str:
        """Prompt + the chain truncated after k steps + the answer cue, as text."""
        return self.prompt + self.head + "".join(s + "\n" for s in self.steps[:k]) + ("" if k else "\n") + cue_text(fmt)


def raw_answer(completion: str, fmt: CompletionFormat) -> str | None:
    """Inner text of the single answer block, unstripped (None when the one parser finds no single answer)."""
    blocks = re.findall(re.escape(fmt.answer_open) + r"(.*?)" + re.escape(fmt.answer_close), completion, re.DOTALL)
    return blocks[0] if len(blocks) == 1 else None


def build_trace(encode: Encode, prompt: str, completion: str, record: Record, fmt: CompletionFormat,
                untagged_extractor: str | None = None) -> Trace | None:
    """The scorer's view of one greedy completion; None when it has no steps or no single answer.

    ``untagged_extractor`` (``audit.untagged_chains``): a completion without a think block is read as a free-text
    chain — its non-empty lines before any answer-open tag are the steps (an opened, never closed think tag is not
    one), the extractor's answer is its answer — and
    scored as if it had been written inside the format's tags (the same cue as a trained model's chain, so the two
    compare). Without it such a completion has no trace."""
    prefilled = think_prefilled(prompt, fmt)
    parsed = parse_completion(completion, fmt, prefilled)
    steps, answer, raw = parsed.steps, parsed.answer, raw_answer(completion, fmt)
    if untagged_extractor and untagged_extractor != "answer_tag" and parsed.reasoning is None and not prefilled:
        answer = extract_answer(completion, fmt, prefilled, extractor=untagged_extractor)
        free = completion.split(fmt.answer_open)[0].replace(fmt.think_open, "\n")  # an unclosed <think> is no step
        steps, raw = split_steps(free), answer
    if not steps or answer is None or raw is None or not record.answer.strip():
        return None
    head = head_text(prompt, fmt)
    root = list(encode(prompt) + encode(head))
    bounds = [len(root)]
    for step in steps:
        root.extend(encode(step + "\n"))
        bounds.append(len(root))
    return Trace(
        record=record, prompt=prompt, head=head, steps=tuple(steps), root=tuple(root), bounds=tuple(bounds),
        cue=encode(cue_text(fmt)), cue0=encode("\n" + cue_text(fmt)), final_text=raw, final=encode(raw),
        close=encode(fmt.answer_close),
        gold=encode(record.answer.strip()), final_correct=grade(record, answer),
    )
