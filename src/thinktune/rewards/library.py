"""Built-in reward functions: pure per-sample functions of one completion and its record (docs/ARCHITECTURE.md,
"Conventions").

Each returns a float, or ``None`` for "not applicable" (masked by TRL, counted by thinktune), never a silent 0.
Settings travel with the reward in the recipe (``grpo.rewards: [{fn: cosine_length, weight: 0.5, kwargs:
{max_len: 3000}}]``); custom rewards are ``module:function``. The batched TRL signature, length checks, deadlines
and process isolation are added by :mod:`thinktune.rewards.runner`; :func:`as_trl` gives a plain in-process TRL
callable for use outside thinktune::

    from thinktune.rewards.library import as_trl
    GRPOTrainer(..., reward_funcs=[as_trl("correct"), as_trl("format")])   # dataset needs an `answer` column

=================  =========================================================================================
name               what it pays, and its source
=================  =========================================================================================
``correct``        1.0 when the extracted answer is equivalent to the gold (data/answers.py), else 0.0; None
                   when the gold is unusable or the item is unanswerable. With the default answer-tag extractor
                   the completion must also be well formed (``require_format``), as in DeepSeek-R1's rule reward
                   ("the answer in a specified format", arXiv 2501.12948 §2.2.2) and Dr. GRPO's grader (arXiv
                   2503.20783), so skipping the reasoning never earns accuracy credit.
``format``         1.0 for exactly one non-empty think block, then exactly one non-empty answer block, nothing
                   before, between or after (formatting.parse_completion ``well_formed``). DeepSeek-R1 format
                   reward; the exactly-once rule closes huggingface/open-r1 PR #418's tag farming.
``tag_count``      0.25 per tag that occurs exactly once (open-r1 ``tag_count_reward``): a smooth partial-credit
                   format signal. Alone it pays an empty think block; use it next to ``format``.
``cosine_length``  Cosine length scaling (Yeo et al., *Demystifying Long Chain-of-Thought Reasoning in LLMs*,
                   arXiv 2502.03373; open-r1 ``get_cosine_scaled_reward``): correct answers earn
                   ``max_value_correct`` → ``min_value_correct`` as the reasoning grows to ``max_len``; wrong ones
                   earn ``min_value_wrong`` → ``max_value_wrong``; past ``max_len`` → ``exceed_penalty``.
``overlong``       DAPO soft overlong punishment (arXiv 2503.14476, eq. 13): 0 up to ``max_len - cache_len``,
                   then linearly down to -1 at ``max_len``, -1 beyond.
``repetition``     N-gram repetition penalty (Yeo et al. 2502.03373; open-r1 ``get_repetition_penalty_reward``):
                   ``max_penalty × (1 − unique n-grams / n-grams)`` of the reasoning.
``language``       Share of target-language words in the reasoning (DeepSeek-R1 language consistency,
                   arXiv 2501.12948 §2.3.3).
``abstain``        On an unanswerable record (``answerable: false``) an abstention ("I don't know") earns
                   ``reward``; on an answerable one it costs ``penalty`` (AbstentionBench, arXiv 2506.09038: reasoning
                   fine-tuning loses abstention; this is the counterweight). Answers earn 0 either way.
=================  =========================================================================================

Deviations, each deliberate (the hack probes in rewards/probes.py are what they defend against):

1. Lengths are counted in characters, not tokens (the per-sample contract has no tokenizer); ≈ 4 characters per
   English token. ``cosine_length`` measures the *reasoning* (the think block), so hedging inside the answer block
   cannot move it; ``overlong`` measures the whole completion, as DAPO does.
2. ``cosine_length``, ``repetition`` and ``language`` judge the reasoning of a well-formed completion. A completion
   that is not well formed gets the reward's floor (``min_value_wrong``, ``max_penalty``, 0.0): otherwise skipping
   the reasoning would earn the best length / repetition score (open-r1's repetition penalty returns 0, its best
   value, for an empty completion). ``cosine_length``'s exceed penalty defaults to ``min_value_wrong`` (the paper
   uses −10 with rewards in ±1; a smaller floor keeps the scale).
3. ``language`` decides a word's language by its script (Latin, Han, Kana, Hangul, Cyrillic, …), offline and without
   a model: it tells Chinese from English but not French from English. Numbers and LaTeX are not words; a reasoning
   with no words scores None (not applicable).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from thinktune.data.answers import extract_answer, grade, is_abstention
from thinktune.data.records import Record
from thinktune.errors import StageError
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion

RewardFn = Callable[..., float | None]


class RewardError(StageError):
    """A reward spec that cannot run: unknown name, bad settings, a batch reward that broke its contract."""


def _well_formed(completion: str, fmt: CompletionFormat, think_prefilled: bool, min_reasoning_chars: int = 1) -> bool:
    parsed = parse_completion(completion, fmt, think_prefilled)
    return parsed.well_formed and len(parsed.reasoning or "") >= min_reasoning_chars


def correct(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, extractor: str = "answer_tag",
            require_format: bool = True, think_prefilled: bool = False, rel_tol: float = 1e-9) -> float | None:
    """1.0 if the extracted answer matches the gold, 0.0 otherwise, None if the gold is unusable.

    ``require_format`` applies to the answer-tag extractor: the completion must be well formed to earn credit.
    """
    verdict = grade(record, extract_answer(completion, fmt, think_prefilled, extractor), rel_tol)
    if verdict is None:
        return None
    if verdict and require_format and extractor == "answer_tag" and not _well_formed(completion, fmt, think_prefilled):
        return 0.0
    return float(verdict)


def strict_format(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT,
                  think_prefilled: bool = False, min_reasoning_chars: int = 1) -> float | None:
    """1.0 for exactly one non-empty think block then exactly one answer block and nothing after."""
    return 1.0 if _well_formed(completion, fmt, think_prefilled, min_reasoning_chars) else 0.0


def tag_count(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT,
              think_prefilled: bool = False) -> float | None:
    """0.25 for each of the four tags that occurs exactly once (open-r1 ``tag_count_reward``)."""
    if think_prefilled and not completion.lstrip().startswith(fmt.think_open):
        completion = fmt.think_open + completion
    tags = (fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close)
    return sum(0.25 for t in tags if completion.count(t) == 1)


def cosine_length(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, max_len: int = 4000,
                  min_value_wrong: float = -1.0, max_value_wrong: float = -0.5, min_value_correct: float = 0.5,
                  max_value_correct: float = 1.0, exceed_penalty: float | None = None, extractor: str = "answer_tag",
                  think_prefilled: bool = False) -> float | None:
    """Correctness shaped by reasoning length (characters): short right answers earn most, long wrong ones least badly."""
    verdict = correct(completion, record, fmt, extractor, True, think_prefilled)
    if verdict is None:
        return None
    if not _well_formed(completion, fmt, think_prefilled):
        return min_value_wrong
    length = len(parse_completion(completion, fmt, think_prefilled).reasoning or "")
    if length > max_len:
        return min_value_wrong if exceed_penalty is None else exceed_penalty
    # at length 0 the reward is the first value, at max_len the second (cosine in between)
    start, end = (max_value_correct, min_value_correct) if verdict == 1.0 else (min_value_wrong, max_value_wrong)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * length / max_len))


def overlong(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, max_len: int = 16384,
             cache_len: int = 4096) -> float | None:
    """DAPO's soft overlong punishment on the completion length in characters."""
    if not 0 < cache_len <= max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    n, soft = len(completion), max_len - cache_len
    if n <= soft:
        return 0.0
    if n <= max_len:
        return (soft - n) / cache_len
    return -1.0


def repetition(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, ngram_size: int = 3,
               max_penalty: float = -1.0, think_prefilled: bool = False) -> float | None:
    """``max_penalty × (1 − unique n-grams / n-grams)`` over the reasoning's words; the floor when not well formed."""
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    if not _well_formed(completion, fmt, think_prefilled):
        return max_penalty
    words = (parse_completion(completion, fmt, think_prefilled).reasoning or "").lower().split()
    if len(words) < ngram_size:
        return 0.0
    ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    return max_penalty * (1.0 - len(set(ngrams)) / len(ngrams))


# --- language ------------------------------------------------------------------------------------------------------

_SCRIPT_RANGES = (  # (first, last, script); Latin-1/Extended ranges count as Latin
    (0x0041, 0x024F, "latin"), (0x1E00, 0x1EFF, "latin"), (0x0370, 0x03FF, "greek"), (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"), (0x0600, 0x06FF, "arabic"), (0x0900, 0x097F, "devanagari"), (0x0E00, 0x0E7F, "thai"),
    (0x1100, 0x11FF, "hangul"), (0x3040, 0x30FF, "kana"), (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"), (0xF900, 0xFAFF, "han"), (0x20000, 0x2FA1F, "han"),
)
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"latin"}) for code in ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl",
                                                 "cs", "ro", "hu", "tr", "id", "vi")},
    "zh": frozenset({"han"}), "ja": frozenset({"han", "kana"}), "ko": frozenset({"hangul"}),
    "ru": frozenset({"cyrillic"}), "uk": frozenset({"cyrillic"}), "bg": frozenset({"cyrillic"}),
    "el": frozenset({"greek"}), "ar": frozenset({"arabic"}), "he": frozenset({"hebrew"}),
    "hi": frozenset({"devanagari"}), "th": frozenset({"thai"}),
}
_MATH_TOKEN = re.compile(r"\$\$|\$|\\\(|\\\[|\\[A-Za-z]+")
_MATH_CLOSE = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_LETTER_RUN = re.compile(r"[^\W\d_]+")


def drop_math(text: str) -> str:
    """``text`` with LaTeX removed: ``$$…$$``, ``$…$``, ``\\(…\\)``, ``\\[…\\]`` spans and ``\\commands`` become a
    space. What ``re.sub(r"\\$\\$.*?\\$\\$|\\$[^$]*\\$|\\\\\\(.*?\\\\\\)|\\\\\\[.*?\\\\\\]|\\\\[A-Za-z]+", " ", text, flags=re.DOTALL)``
    does, in linear time: the regex scanned to the end of the text from every unclosed opener (quadratic in a run
    of them); here an opener whose closer does not occur later is skipped without a scan."""
    last = {c: text.rfind(c) for c in ("$$", "$", "\\)", "\\]")}
    out, keep, i = [], 0, 0
    while (m := _MATH_TOKEN.search(text, i)) is not None:
        tok, start = m.group(), m.start()
        if tok not in _MATH_CLOSE:  # a \command
            end = m.end()
        else:
            close = _MATH_CLOSE[tok]
            end = -1
            if last[close] >= m.end():
                found = text.find(close, m.end())
                end = found + len(close) if found >= 0 else -1
            if end < 0 and tok == "$$":  # no closing $$: the regex's next choice, the empty span "$$"
                end = m.end()
            if end < 0:  # an unclosed "$", "\(" or "\[": not math; the search resumes one character on
                i = start + 1
                continue
        out.append(text[keep:start])
        out.append(" ")
        keep = i = end
    out.append(text[keep:])
    return "".join(out)


def _script(ch: str) -> str:
    cp = ord(ch)
    for first, last, name in _SCRIPT_RANGES:
        if first <= cp <= last:
            return name if name != "latin" or ch.isalpha() else "other"
    return "other"


def split_words(text: str) -> list[tuple[str, str]]:
    """(word, script) pairs: letter runs of one script; each Han / Kana character is a word; LaTeX is dropped."""
    words: list[tuple[str, str]] = []
    for run in _LETTER_RUN.findall(drop_math(text)):
        current, script = "", None
        for ch in run:
            s = _script(ch)
            if s in ("han", "kana"):
                if current:
                    words.append((current, script))
                words.append((ch, s))
                current, script = "", None
            elif s == script:
                current += ch
            else:
                if current:
                    words.append((current, script))
                current, script = ch, s
        if current:
            words.append((current, script))
    return words


def language_share(text: str, target: str = "en") -> float | None:
    """Share of the words of ``text`` written in ``target``'s script; None when there are no words to judge."""
    if target not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unsupported language {target!r}; supported: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    words = split_words(text)
    if not words:
        return None
    scripts = LANGUAGE_SCRIPTS[target]
    return sum(s in scripts for _, s in words) / len(words)


def language(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, target: str = "en",
             think_prefilled: bool = False) -> float | None:
    """Language consistency of the reasoning (share of target-language words); 0.0 when not well formed."""
    if target not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unsupported language {target!r}; supported: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    if not _well_formed(completion, fmt, think_prefilled):
        return 0.0
    return language_share(parse_completion(completion, fmt, think_prefilled).reasoning or "", target)


def abstain(completion: str, record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, reward: float = 1.0,
            penalty: float = 0.5, think_prefilled: bool = False) -> float | None:
    """+``reward`` for abstaining on an unanswerable record, −``penalty`` for abstaining on an answerable one."""
    answer = parse_completion(completion, fmt, think_prefilled).answer
    abstained = is_abstention(answer, None if record.answerable else record.answer)
    if not record.answerable:
        return reward if abstained else 0.0
    return -penalty if abstained else 0.0


# --- registry ------------------------------------------------------------------------------------------------------

# Probe tags each built-in strictly defends (rewards/probes.py): a probe with the right answer that breaks this
# property earns strictly less than the honest correct completion under this reward alone.
correct.guards = frozenset({"format", "reasoning"})  # type: ignore[attr-defined]
strict_format.guards = frozenset({"format", "reasoning"})  # type: ignore[attr-defined]
tag_count.guards = frozenset()  # type: ignore[attr-defined]
cosine_length.guards = frozenset({"format", "reasoning", "length", "repetition"})  # type: ignore[attr-defined]
overlong.guards = frozenset({"length"})  # type: ignore[attr-defined]
repetition.guards = frozenset({"length", "repetition"})  # type: ignore[attr-defined]
language.guards = frozenset({"language"})  # type: ignore[attr-defined]
abstain.guards = frozenset()  # type: ignore[attr-defined]

REWARDS: dict[str, RewardFn] = {
    "correct": correct,
    "format": strict_format,
    "tag_count": tag_count,
    "cosine_length": cosine_length,
    "overlong": overlong,
    "repetition": repetition,
    "language": language,
    "abstain": abstain,
}


def resolve(name: str) -> RewardFn:
    """A registered reward name, or ``module:function`` for a user's reward."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
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


def is_batch_reward(fn: Callable[..., Any]) -> bool:
    """TRL-style batch callables take ``completions`` (plural); per-sample ones take ``(completion, record)``."""
    try:
        return "completions" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def call_kwargs(name: str, fn: Callable[..., Any], kwargs: dict[str, Any], fmt: CompletionFormat) -> dict[str, Any]:
    """The keyword arguments a per-sample reward is called with: its settings, plus ``fmt`` when it takes one.

    Unknown settings are an error naming the closest valid one (a typo must never be silently ignored).
    """
    params = inspect.signature(fn).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not open_kwargs:
        valid = [p for p in params if p not in ("completion", "record", "fmt")]
        for key in kwargs:
            if key not in params or key in ("completion", "record"):
                import difflib

                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RewardError(f"reward {name!r} has no setting {key!r}{hint} (settings: {', '.join(valid) or 'none'})")
    out = dict(kwargs)
    if open_kwargs or "fmt" in params:
        out.setdefault("fmt", fmt)
    return out


def records_from_columns(n: int, prompts: Sequence[Any] | None, columns: dict[str, Any]) -> list[Record]:
    """One Record per completion from TRL's dataset columns.

    thinktune datasets carry the canonical record as JSON in ``record``; other datasets need an ``answer`` column
    (or ``solution``, whose ``\\boxed{}`` / ``####`` answer is the gold), and may carry ``task``, ``answerable``, ``id``.
    """
    if columns.get("record") is not None:
        return [r if isinstance(r, Record) else Record.model_validate_json(r) if isinstance(r, str)
                else Record.model_validate(r) for r in columns["record"]]
    if columns.get("answer") is not None:
        golds = [str(a) for a in columns["answer"]]
    elif columns.get("solution") is not None:
        golds = [extract_answer(str(s), extractor="auto") or "" for s in columns["solution"]]
    else:
        raise RewardError("rewards need a 'record' column (thinktune datasets) or an 'answer' / 'solution' column; "
                          "with TRL set remove_unused_columns=False")
    out = []
    for i in range(n):
        prompt = prompts[i] if prompts is not None else ""
        question = prompt if isinstance(prompt, str) else json.dumps(prompt)
        out.append(Record(
            id=str(columns["id"][i]) if columns.get("id") is not None else str(i),
            question=question or "?",
            answer=golds[i],
            answerable=bool(columns["answerable"][i]) if columns.get("answerable") is not None else True,
            task=str(columns["task"][i]) if columns.get("task") is not None else "",
        ))
    return out


def completion_text(completion: Any) -> str:
    """TRL passes strings (standard datasets) or message lists (conversational datasets)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def as_trl(reward: str | RewardFn, fmt: CompletionFormat = DEFAULT_FORMAT, **settings: Any) -> Callable[..., list]:
    """A plain in-process TRL reward (``fn(prompts, completions, **columns) -> list[float | None]``).

    No isolation or deadline: inside thinktune use :class:`thinktune.rewards.runner.RewardRunner` instead.
    """
    name = reward if isinstance(reward, str) else f"{reward.__module__}:{reward.__qualname__}"
    fn = resolve(reward) if isinstance(reward, str) else reward
    kwargs = call_kwargs(name, fn, settings, fmt)

    def trl_reward(prompts=None, completions=None, **columns: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        records = records_from_columns(len(texts), prompts, columns)
        return [fn(t, r, **kwargs) for t, r in zip(texts, records, strict=True)]

    trl_reward.__name__ = name.replace(":", ".")
    return trl_reward
