"""Abstention: unanswerable variants of answerable items, an offline abstention detector, recall / precision / F1.

Paper: *AbstentionBench: Reasoning LLMs Fail on Unanswerable Questions* (Kirichenko, Ibrahim, Chaudhuri, Bell),
arXiv 2506.09038; code facebookresearch/AbstentionBench (``recipe/abstention_datasets/gsm8k.py``). Variant templates
beyond "question only": UMWP, arXiv 2403.03558 ("missing key information"). Definitions: docs/METHODS.md, "Abstention
and calibration". Run: ``thinktune audit MODEL --data FILE --unanswerable question_only``.

A variant is a :class:`Record` with ``answerable=False``: ``answer`` holds :data:`ABSTAIN_ANSWER` and the original
gold moves to ``meta.original_answer`` (docs/ARCHITECTURE.md, "Data model").

Deviations (numbered):
1. The detector is offline: the keyword / rule detector of the answer layer (``data.answers.is_abstention``,
   AbstentionBench's keyword baseline, not its Llama-3.1-8B judge, since no hub model can be downloaded at run
   time). An LLM judge is pluggable (``judge``: any local model, :func:`judge_abstentions`): :func:`judge_prompt`
   builds its question and :func:`parse_judge` reads its "Yes" / "No" verdicts.
2. ``question_only`` follows the official GSM8K filter (final sentence ends in "?", follows ". ", contains no other
   ".", "?" or "!"), written as one regular expression. ``drop_quantity`` (ours, after UMWP's "missing key
   information") drops the first context sentence that states a number; items without such a sentence are dropped.
   ``unknown_number`` (ours, for questions without context sentences, e.g. "Compute 8 - 6 - 1 + 3.") replaces one
   number of the question, chosen by a hash of the item id, with the unknown ``x``; items without a number are
   dropped. It is also what ``data.unanswerable_fraction`` mixes into training data (stages/data.py).
3. Items are judged on the final answer (the answer block, or the completion's last 200 characters when there is no
   answer block); AbstentionBench's variant that also judges the reasoning is not implemented.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

from thinktune.data.answers import (
    is_abstention,  # the one keyword detector, shared with the abstain reward
)
from thinktune.data.records import Record

__all__ = ["ABSTAIN_ANSWER", "abstention_metrics", "appropriate_behavior", "is_abstention", "judge_prompt",
           "make_unanswerable", "parse_judge", "question_only", "drop_quantity",
           "unknown_number", "VARIANTS"]

ABSTAIN_ANSWER = "I don't know"

Variant = Literal["question_only", "drop_quantity", "unknown_number"]
UNKNOWN = "x"
ABSTAIN_REASONING = "The question does not give every number it needs, so it cannot be answered."

# context ". " final question (no other . ? !) — the official GSM8K filter as one regex
_FINAL_QUESTION = re.compile(r"^(?P<context>.*\S\.)\s+(?P<question>[^.?!]*\?)\s*$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!])\s+(?=[A-Z$0-9])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")


def question_only(question: str) -> str | None:
    """The final question alone, or None when the item fails the filter."""
    m = _FINAL_QUESTION.match(question.strip())
    return m.group("question").strip() if m else None


def drop_quantity(question: str) -> str | None:
    """The question without its first context sentence that contains a number; None when there is none."""
    m = _FINAL_QUESTION.match(question.strip())
    if not m:
        return None
    sentences = [s for s in _SENTENCE_END.split(m.group("context")) if s.strip()]
    for i, s in enumerate(sentences):
        if re.search(r"\d", s):
            kept = sentences[:i] + sentences[i + 1 :]
            return " ".join(kept + [m.group("question").strip()])
    return None


def unknown_number(question: str, key: str = "") -> str | None:
    """The question with one of its numbers replaced by :data:`UNKNOWN`; None when it states no number.

    Which number is a stable function of ``key`` (the item id), so the same item always gets the same variant.
    """
    numbers = list(_NUMBER.finditer(question))
    if not numbers:
        return None
    m = numbers[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(numbers)]
    return question[: m.start()] + UNKNOWN + question[m.end() :]


VARIANTS = {"question_only": lambda q, key: question_only(q), "drop_quantity": lambda q, key: drop_quantity(q),
            "unknown_number": unknown_number}


def make_unanswerable(records: Sequence[Record], variant: Variant = "question_only",
                      reasoning: str = "") -> tuple[list[Record], dict[str, int]]:
    """(unanswerable variants, counts kept / dropped). The caller keeps the answerable originals alongside.

    ``reasoning`` is the variant's trace (empty for evaluation; :data:`ABSTAIN_REASONING` for SFT targets).
    """
    build = VARIANTS[variant]
    out = []
    for r in records:
        if not r.answerable:
            continue
        q = build(r.question, r.id)
        if q is None:
            continue
        out.append(Record(id=f"{r.id}-unanswerable", question=q, answer=ABSTAIN_ANSWER, answerable=False, task="",
                          reasoning=reasoning,
                          meta={**r.meta, "original_answer": r.answer, "source_id": r.id, "variant": variant,
                                "task": r.task}))
    return out, {"kept": len(out), "dropped": sum(r.answerable for r in records) - len(out)}


def parse_judge(text: str | None) -> bool | None:
    """An LLM judge's verdict: "Yes" → True, "No" → False (case and trailing punctuation ignored); else None."""
    if text is None:
        return None
    t = text.strip().lower().rstrip(".!?,;: ").strip()
    return {"yes": True, "no": False}.get(t)


def judge_prompt(question: str, references: Sequence[str], should_abstain: bool, answer: str) -> str:
    """The question an LLM judge answers with Yes / No (after AbstentionBench's detector prompt, abridged)."""
    return (
        "Does the model's answer abstain, i.e. say that the question cannot be answered, that information is "
        "missing, or that it does not know?\n"
        f"Question: {question}\nReference answers: {'; '.join(references)}\n"
        f"Should the model abstain (label may be noisy): {'yes' if should_abstain else 'no'}\n"
        f"Model's answer: {answer}\nAnswer Yes or No."
    )


def judge_abstentions(model, tokenizer, questions: Sequence[str], references: Sequence[Sequence[str]],
                      should_abstain: Sequence[bool], answers: Sequence[str], batch_size: int) -> list[bool | None]:
    """An LLM judge's verdicts (greedy, at most 8 new tokens); None where it answers neither Yes nor No."""
    from thinktune.formatting import chat_prompt
    from thinktune.generation import SamplingParams, generate_texts

    prompts = [chat_prompt(tokenizer, judge_prompt(q, refs, s, a))
               for q, refs, s, a in zip(questions, references, should_abstain, answers)]
    outs = generate_texts(model, tokenizer, prompts, SamplingParams(max_new_tokens=8, stop=()), batch_size=batch_size)
    return [parse_judge(o[0].strip().split()[0] if o[0].strip() else None) for o in outs]


def abstention_metrics(y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict[str, Any]:
    """Recall, precision, F1 of abstaining (positive class = should abstain); None where undefined, never 0."""
    tp = sum(t and p for t, p in zip(y_true, y_pred))
    fn = sum(t and not p for t, p in zip(y_true, y_pred))
    fp = sum(p and not t for t, p in zip(y_true, y_pred))
    recall = tp / (tp + fn) if tp + fn else None
    precision = tp / (tp + fp) if tp + fp else None
    f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
          and precision + recall > 0 else (0.0 if precision is not None and recall is not None else None))
    return {"tp": tp, "fn": fn, "fp": fp, "recall": recall, "precision": precision, "f1": f1,
            "n_unanswerable": tp + fn, "n_answerable": len(y_true) - tp - fn,
            "abstain_rate_answerable": fp / (len(y_true) - tp - fn) if len(y_true) - tp - fn else None}


def appropriate_behavior(y_true: Sequence[bool], y_pred: Sequence[bool],
                         correct: Sequence[bool | None]) -> float | None:
    """mean( abstention decision correct AND (answer correct, or not applicable) ) (AbstentionBench)."""
    if not y_true:
        return None
    ok = [(t == p) and (t or bool(c)) for t, p, c in zip(y_true, y_pred, correct)]
    return sum(ok) / len(ok)
