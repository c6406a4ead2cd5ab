"""The answer layer: extract the final answer from a completion and decide whether it matches the gold.

Used by rewards, data curation and the audit alike (one grader per task; docs/METHODS.md, "Grading answers"), so
training and evaluation cannot drift apart::

    from thinktune.data.answers import extract_answer, grade
    grade(record, extract_answer(completion, extractor="boxed"))   # True / False / None

Extraction (:func:`extract_answer`, ``extractor=``):

=============  ===============================================================================================
answer_tag     the single answer block of the completion template (formatting.parse_completion); a ``\\boxed{}``
               inside it is unwrapped. Default.
boxed          the ``\\boxed{…}`` / ``\\fbox{…}`` contents of the text (MATH, Qwen/DeepSeek CoT prompts)
gsm8k          the text after the last ``#### `` (GSM8K solutions)
a_colon        the last line ``A: …`` / ``Answer: …`` (GSM8K ``example_model_solutions``)
last_number    the last number in the text (thousands separators, signs, decimals, ``a/b``)
choice         a multiple-choice letter: ``answer is (B)``, ``Answer: B``, ``\\boxed{B}``, a final ``(B)``
auto           answer_tag if there is exactly one answer block, else boxed, gsm8k, a_colon, last_number
=============  ===============================================================================================

Several *different* boxed answers are returned joined with ``", "`` so that :func:`grade` sees several candidates.

Equivalence (:func:`grade`), in order:

1. ``record.answerable is False`` → None (abstention is judged by the ``abstain`` reward, not here); an empty
   gold → None. An unparseable gold is excluded, never rewarded (huggingface/open-r1#215, #293).
2. **Several candidates earn no credit** unless every one of them is the gold: ``18 or 17``, ``17, 18``,
   ``\\boxed{17} \\boxed{18}`` are all wrong for gold 18 (Math-Verify's ``verify`` accepts *any* matching pair,
   a known reward hack; Liuziyu77/Visual-RFT#79). A gold that is itself a list (``1, 2``) is compared as a
   set, one-to-one.
3. A task's own verifier: built-in tasks (``thinktune.data.tasks.TASKS``) and reasoning-gym tasks — records whose
   ``task`` is ``rg:<dataset>`` (or ``reasoning_gym:<dataset>``) with the dataset entry's metadata in
   ``meta["metadata"]``; the entry passes when ``score_answer`` returns 1.0.
4. Multiple-choice letters when the gold is a single letter A–J.
5. Integers and integer fractions (``14/3``, ``\\dfrac{14}{3}``) compare exactly; other numbers (after dropping
   thousands separators ``1,000`` / ``1{,}000`` / ``1,\\!000``, ``\\$``, degrees) with a relative tolerance;
   normalised strings (``\\text{}`` unwrapped, case and spaces folded) compare equal when the gold is well
   delimited (balanced brackets, some letter or digit).
6. Math-Verify (LaTeX, fractions, percentages, sets, intervals, equations), called with its own signal-based
   timeout when on the main thread. A Math-Verify timeout raises :class:`GradingTimeout` — an infrastructure
   failure the reward runner counts, never a silent 0. A gold that Math-Verify cannot parse and that is not plain
   text is None.

Deviations from Math-Verify's defaults: single-answer extraction instead of any-match (rule 2); cheap exact paths
before it (rules 4–5; they agree with it on the 800 labelled samples in tests/rewards/test_real_data.py).
Tests: ``pytest tests/data/test_answers.py tests/rewards/test_real_data.py``.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion

EXTRACTORS = ("answer_tag", "boxed", "gsm8k", "a_colon", "last_number", "choice", "auto")
# Per-process memo of (gold, answer) judgements and of parsed golds: rewards that share a judgement (correct,
# cosine_length) pay for it once. THINKTUNE_GRADE_MEMO=0 turns it off (the benchmark does, to time distinct judgements).
GRADE_MEMO = os.environ.get("THINKTUNE_GRADE_MEMO", "1") != "0"
MATH_VERIFY_TIMEOUT_S = 5  # Math-Verify's own SIGALRM timeout (main thread only); the runner's deadline is the backstop

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$")
_LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_LETTER = re.compile(r"^\(?([A-J])\)?[.)]?$")


class GradingTimeout(Exception):
    """Math-Verify ran out of time on a gold or prediction; the runner counts it as a failure (never a 0)."""


# ---------------------------------------------------------------------------------------------------------------
# extraction


def _closing_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` → index of the ``}`` that balances it (unbalanced ones absent), in one pass."""
    match, stack = {}, []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
    return match


def boxed_contents(text: str) -> list[str]:
    """Every ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed 5``) in order, stripped; empty and ``\\phantom`` boxes skipped.

    Linear in the text: the braces are matched once (one scan per box was quadratic in a run of unclosed boxes),
    and a box inside another box's braces is part of that box's content, not a box of its own (k nested boxes
    were k copies of nearly the whole text)."""
    out: list[str] = []
    closing: dict[int, int] | None = None
    inside_until = -1
    for m in re.finditer(r"\\(?:boxed|fbox)\b", text):
        if m.start() < inside_until:
            continue
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if closing is None:
                closing = _closing_braces(text)
            end = closing.get(i)
            if end is None:
                continue
            inside_until = end
            inner = text[i + 1 : end].strip()
        else:  # "\boxed 5" form
            word = re.compile(r"[^\s$]+").match(text, i)
            inner = word.group(0) if word else ""
        visible = re.sub(r"\\phantom\{[^{}]*\}|\\[,;! ]|\s", "", inner)
        if visible:
            out.append(inner)
    return out


def _join_distinct(candidates: Sequence[str]) -> str | None:
    distinct = list(dict.fromkeys(c.strip() for c in candidates if c.strip()))
    return ", ".join(distinct) if distinct else None


def _last_line_match(pattern: str, text: str) -> str | None:
    """The last match's group, stripped. Patterns end in a greedy ``(.+)$`` (stripped here), not ``(.+?)\\s*$``:
    the lazy form retried the trailing-space test at every character, quadratic in a long line."""
    found = re.findall(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
    return found[-1].strip().rstrip(".").strip() if found else None


MAX_CHOICES = 26  # distinct parts of a multiple-choice answer (letters A-J, in a few spellings) worth reading


def _choice(text: str) -> str | None:
    """A multiple-choice letter: "answer is (B)" / "Answer: B", else a boxed letter, else a final "(B)" line."""
    # possessive quantifiers: "[:\s]*" then "\s*" could split a whitespace run every way (quadratic per match)
    found = re.findall(r"answer\s*+(?:is|:)[:\s]*+\(?\s*+([A-J])\s*+\)?(?![A-Za-z])", text, flags=re.IGNORECASE)
    if found:
        return found[-1].upper()
    boxed = list(dict.fromkeys(b.strip() for b in boxed_contents(text)))
    if boxed:
        if len(boxed) > MAX_CHOICES:  # no multiple-choice answer has that many parts: not read as letters
            return _join_distinct(boxed)
        return _join_distinct([_as_letter(b) or b for b in boxed])
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines:
        letters = []
        for part in dict.fromkeys(split_candidates(_strip_text_wrappers(lines[-1]))):
            letter = _as_letter(part)
            if not letter or len(letters) >= MAX_CHOICES:  # every part must be a letter
                return None
            letters.append(letter)
        return _join_distinct(letters)
    return None


def extract_answer(completion: str, fmt: CompletionFormat = DEFAULT_FORMAT, think_prefilled: bool = False,
                   extractor: str = "answer_tag") -> str | None:
    """The final answer of ``completion`` by ``extractor`` (table above), or None when there is none."""
    if extractor == "answer_tag" or (extractor == "auto" and parse_completion(completion, fmt, think_prefilled).answer):
        answer = parse_completion(completion, fmt, think_prefilled).answer
        if not answer:
            return None
        boxed = boxed_contents(answer)
        return _join_distinct(boxed) if boxed else answer
    if extractor in ("boxed", "auto"):
        boxed = boxed_contents(completion)
        if boxed or extractor == "boxed":
            return _join_distinct(boxed)
    if extractor in ("gsm8k", "auto"):
        got = _last_line_match(r"####\s*(.+)$", completion)
        if got or extractor == "gsm8k":
            return got or None
    if extractor in ("a_colon", "auto"):
        got = _last_line_match(r"^[ \t]*+(?:A|Answer)\s*+:\s*(.+)$", completion)
        if got or extractor == "a_colon":
            return got or None
    if extractor in ("last_number", "auto"):
        found = _LAST_NUMBER.findall(completion)
        return found[-1] if found else None
    if extractor == "choice":
        return _choice(completion)
    raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")


# ---------------------------------------------------------------------------------------------------------------
# normalisation and candidates


def _strip_text_wrappers(text: str) -> str:
    t = text.strip()
    for _ in range(3):  # nested wrappers: $\text{(B)}$
        t = t.strip("$").strip()  # (the regex ^\$+|\$+$ was quadratic in a run of dollars)
        t = re.sub(r"^\\\(|\\\)$", "", t).strip()
        t = re.sub(r"^\\\[|\\\]$", "", t).strip()
        m = re.fullmatch(r"\\(?:text|textbf|mathrm|mathbf|boxed)\s*\{(.*)\}", t, flags=re.DOTALL)
        if m and _closing_braces(t).get(t.index("{")) == len(t) - 1:  # the first brace closes at the end
            t = m.group(1).strip()
    return t


def clean_latex(text: str) -> str:
    """Light, value-preserving LaTeX cleanup shared by the string and number paths."""
    t = _strip_text_wrappers(text)
    t = re.sub(r"\\[dt]frac", r"\\frac", t)
    t = t.replace("{,}", ",")
    t = re.sub(r"(?<!\\),\\!", ",", t)  # 1,\!000 -> 1,000 (a matrix row break "\\" is left alone)
    t = re.sub(r"(?<!\\)\\!", "", t)
    t = re.sub(r"(?<!\\)\\[,;: ]", " ", t)
    t = t.replace("\\$", "")
    t = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", t)  # \left( -> (, but \rightarrow stays
    t = re.sub(r"\^\s*\{?\\circ\}?|°", "", t)
    t = re.sub(r"\\text\{\s*\}", "", t)
    t = re.sub(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])", r"\\pi", t)  # "7pi" (plain-text model output) -> "7\pi"
    t = re.sub(r"(?<!\\)sqrt\(([^()]*)\)", r"\\sqrt{\1}", t)  # "sqrt(3)" -> "\sqrt{3}"
    return t.strip()


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, drop thousands separators and a trailing period."""
    t = " ".join(text.strip().lower().split())
    t = t.rstrip(".")
    if _THOUSANDS.match(t):
        t = t.replace(",", "")
    return t


def as_number(text: str) -> float | None:
    """The value of a plain number (``1,000``, ``\\$5``, ``48^\\circ``, ``37.50``), else None."""
    t = normalize(clean_latex(text)).replace(" ", "")
    if _THOUSANDS.match(t):
        t = t.replace(",", "")
    return float(t) if _NUMBER.match(t) else None


def _as_letter(text: str) -> str | None:
    t = clean_latex(text).strip()
    t = re.sub(r"^(?:answer|option|choice)\s*[:\s]\s*", "", t, flags=re.IGNORECASE).strip()
    m = _LETTER.match(t)
    if m:
        return m.group(1)
    m = re.match(r"^\(([A-J])\)\s", t)  # "(C) 5"
    return m.group(1) if m else None


_HEDGE_WORDS = r"(?<!\s)\s+(?:or|and/or|and|vs\.?)\s+|\\text\{\s*(?:or|and)\s*\}|\\lor|\\vee|;"
# (?<!\s): a hedge word is tried where a whitespace run starts, not again inside it (that was quadratic)
_SPLIT_TOKEN = re.compile(rf"(?P<open>[(\[{{])|(?P<close>[)\]}}])|(?P<comma>,)|(?P<hedge>{_HEDGE_WORDS})", re.IGNORECASE)


def split_candidates(text: str) -> list[str]:
    """Top-level candidates of an answer: ``"18 or 17"`` → ``["18", "17"]``; ``"(1, 2)"`` and ``"3,250"`` stay whole.

    Splits on commas, semicolons and the words or/and/vs outside brackets and braces; thousands separators
    (``1,000``, ``1{,}000``, ``1,\\!000``) are not commas. Duplicates are kept (the caller decides).
    """
    t = text.strip()
    t = re.sub(r"^either\s+", "", t, flags=re.IGNORECASE)
    t = t.replace("{,}", "\x01").replace(",\\!", "\x02")
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "\x00", t)
    # top-level separators; the regex skips ordinary characters in C (a per-character loop took 0.5 s per MB)
    depth, pieces, start = 0, [], 0
    for m in _SPLIT_TOKEN.finditer(t):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth = max(0, depth - 1)
        elif depth == 0:  # a comma or a hedge word
            pieces.append(t[start : m.start()])
            start = m.end()
    pieces.append(t[start:])
    out = [p.replace("\x00", ",").replace("\x01", "{,}").replace("\x02", ",\\!").strip() for p in pieces]
    return [p for p in out if p] or [text.strip()]


# ---------------------------------------------------------------------------------------------------------------
# equivalence


def _math_verify_parse(text: str) -> list[Any]:
    from math_verify import parse
    from math_verify.errors import TimeoutException

    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    for candidate in (f"${text}$", text):
        try:
            parsed = parse(candidate, parsing_timeout=timeout, raise_on_error=True)
        except TimeoutException:
            raise GradingTimeout(f"math-verify parse timed out on {text[:80]!r}") from None
        except Exception:  # malformed LaTeX: unparseable, not an infrastructure failure
            parsed = []
        if parsed:
            return parsed
    return []


def _parse_gold(text: str) -> list[Any]:
    """Golds repeat across a group's samples: their parse is memoised with the judgements (GRADE_MEMO)."""
    return _parse_gold_memo(text) if GRADE_MEMO else _math_verify_parse(text)


@functools.lru_cache(maxsize=1024)
def _parse_gold_memo(text: str) -> list[Any]:
    return _math_verify_parse(text)


_PLAIN_TEXT = re.compile(r"[\w\s.,:;'’%$°+\-/()]+")


def _interpretable(cleaned_gold: str, parsed: list[Any]) -> bool:
    """A gold is usable when Math-Verify parses it (it falls back to the raw string when LaTeX parsing fails) or
    when it is plain text without LaTeX (``Evelyn``, ``north``, ``4:30 p.m.``), judged by normalised string."""
    return any(not isinstance(p, str) for p in parsed) or bool(_PLAIN_TEXT.fullmatch(cleaned_gold))


def _math_verify_equal(gold: list[Any], pred: list[Any]) -> bool:
    from math_verify import verify
    from math_verify.errors import TimeoutException

    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        return bool(verify(gold, pred, timeout_seconds=timeout, raise_on_error=True))
    except TimeoutException:
        raise GradingTimeout("math-verify verify timed out") from None
    except Exception:
        return False


def equivalent(gold: str, predicted: str, rel_tol: float = 1e-9) -> bool | None:
    """Are two single answers the same value? None when ``gold`` cannot be interpreted at all."""
    g_letter, p_letter = _as_letter(gold), _as_letter(predicted)
    if g_letter and len(clean_latex(gold)) <= 4:  # "B", "(B)": a choice letter
        return p_letter == g_letter
    if max(len(gold), len(predicted)) > MAX_INT_DIGITS:  # past int()'s limit: only integers compare, as digits
        g_int, p_int = _canonical_integer(gold), _canonical_integer(predicted)
        if g_int is not None or p_int is not None:  # (a 5,000-digit answer scores 0; it is not an error)
            return g_int == p_int
    g_exact, p_exact = _as_rational(gold), _as_rational(predicted)
    if g_exact is not None and p_exact is not None:  # integers and integer fractions: exact
        return g_exact == p_exact
    g_num, p_num = as_number(gold), as_number(predicted)
    if g_num is not None and p_num is not None:
        if abs(g_num - p_num) <= rel_tol * max(1.0, abs(g_num)):
            return True
        if "%" not in gold + predicted:
            return False
    g_clean = clean_latex(gold)
    if normalize(g_clean).replace(" ", "") == normalize(clean_latex(predicted)).replace(" ", ""):
        if _well_delimited(g_clean):
            return True
        return True if _interpretable(g_clean, _parse_gold(g_clean)) else None
    g = _parse_gold(g_clean)
    if not _interpretable(g_clean, g):  # an uninterpretable gold is excluded, never rewarded
        return None
    p = _math_verify_parse(clean_latex(predicted))
    return bool(p) and _math_verify_equal(g, p)


def _well_delimited(text: str) -> bool:
    """Balanced (), [], {}, no dangling backslash, and some letter or digit: safe to judge by string equality."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in closing:
            if not stack or stack.pop() != closing[ch]:
                return False
    return not stack and not text.endswith("\\") and bool(re.search(r"[A-Za-z0-9]", text))


def _as_rational(text: str) -> Fraction | None:
    """Integers and integer fractions (``12``, ``-3/4``, ``\\frac{14}{3}``, ``-\\dfrac{1}{9}``) as exact values;
    None for numbers past Python's 4,300-digit int conversion limit (:func:`_canonical_integer` compares those)."""
    t = normalize(clean_latex(text)).replace(" ", "")
    if _THOUSANDS.match(t):
        t = t.replace(",", "")
    if len(t) > MAX_INT_DIGITS:
        return None
    if re.fullmatch(r"[-+]?\d+", t):
        return Fraction(int(t))
    m = re.fullmatch(r"([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}", t) or re.fullmatch(r"([-+]?)(\d+)/(\d+)", t)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return -value if m.group(1) == "-" else value
    return None


MAX_INT_DIGITS = 4000  # below Python's int-from-string limit (4,300 digits)
_INTEGER = re.compile(r"[-+]?\d+")


def _canonical_integer(text: str) -> str | None:
    """A plain integer (thousands separators allowed) in canonical form (sign, no leading zeros), as a string, so
    that integers of any length compare exactly without ``int()``; None for anything else."""
    t = text.strip()
    t = t.replace(",", "") if _THOUSANDS.match(t) else t
    if not _INTEGER.fullmatch(t):
        return None
    sign = "-" if t.startswith("-") else ""
    digits = t.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits


def _equivalent_sets(golds: list[str], preds: list[str], rel_tol: float) -> bool | None:
    """One-to-one matching of two candidate lists (order-free)."""
    if len(golds) != len(preds):
        return False
    remaining = list(preds)
    for g in golds:
        for j, p in enumerate(remaining):
            verdict = equivalent(g, p, rel_tol)
            if verdict is None:
                return None
            if verdict:
                del remaining[j]
                break
        else:
            return False
    return True


MAX_ANSWER_CHARS = 1000  # longer predictions are only judged by an exact integer comparison (see grade)


def grade(record: Record, predicted: str | None, rel_tol: float = 1e-9) -> bool | None:
    """Is ``predicted`` equivalent to ``record.answer``? None when the gold is unusable (see module docstring).

    A prediction longer than ``max(MAX_ANSWER_CHARS, 10 × the gold)`` characters is never parsed (LaTeX parsing of a
    megabyte would take minutes): it is correct only as an integer equal to an integer gold, else wrong."""
    gold = record.answer
    if not record.answerable or gold is None or not gold.strip():
        return None
    if predicted is None or not predicted.strip():
        return False
    if len(predicted) > max(MAX_ANSWER_CHARS, 10 * len(gold)):
        g = _canonical_integer(gold)
        return g is not None and g == _canonical_integer(predicted)
    golds, preds = split_candidates(gold), split_candidates(predicted)
    if len(preds) > 1 and len(golds) == 1:  # a hedge: credit only if every candidate is the gold
        for p in dict.fromkeys(preds):
            verdict = grade(record, p, rel_tol)
            if not verdict:
                return verdict
        return True

    from thinktune.data.tasks import TASKS, reasoning_gym_dataset, reasoning_gym_score

    if record.task in TASKS:
        return TASKS[record.task]().verify(record, predicted)
    dataset = reasoning_gym_dataset(record)
    if dataset is not None:
        return reasoning_gym_score(record, dataset, predicted)
    if GRADE_MEMO:
        return _grade_math(gold, predicted, rel_tol)
    return _grade_math.__wrapped__(gold, predicted, rel_tol)


@functools.lru_cache(maxsize=4096)
def _grade_math(gold: str, predicted: str, rel_tol: float) -> bool | None:
    golds, preds = split_candidates(gold), split_candidates(predicted)
    if len(golds) > 1:
        whole = equivalent(gold, predicted, rel_tol)
        return True if whole else _equivalent_sets(golds, preds, rel_tol)
    return equivalent(gold, predicted, rel_tol)


# Typical LaTeX answer shapes, graded once by every reward worker at start-up: Math-Verify's LaTeX parser (ANTLR)
# builds its prediction cache on first use, which makes the first calls of a fresh process several times slower.
WARM_UP_PAIRS = (
    ("\\frac{1}{2}", "0.5"), ("\\sqrt{2}", "\\frac{2}{\\sqrt{2}}"), ("2\\pi", "6.283185"), ("(1, 2)", "\\left(1,2\\right)"),
    ("[0, \\infty)", "[0,\\infty)"), ("x^2 + 1", "1 + x^{2}"), ("25\\%", "0.25"), ("\\{1, 2\\}", "\\{2,1\\}"),
    ("y = 2x + 3", "2x+3"), ("\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)"), ("3\\sqrt{2}", "\\sqrt{18}"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"), ("a^{2}b", "b a^2"),
    ("-\\frac{\\pi}{6}", "-\\pi/6"), ("10\\sqrt{5}", "\\sqrt{500}"),
)


def warm_up() -> None:
    """Pay Math-Verify's and sympy's first-call costs now (a reward worker calls this before reporting ready)."""
    for gold, predicted in WARM_UP_PAIRS:
        try:
            grade(Record(id="warm-up", question="?", answer=gold), predicted)
        except GradingTimeout:
            pass


# ---------------------------------------------------------------------------------------------------------------
# abstention

ABSTAIN_PHRASES = (
    "i don't know", "i do not know", "i dont know", "don't know", "not sure", "i'm unsure", "i am unsure",
    "cannot be determined", "can't be determined", "cannot determine", "can't determine", "not possible to determine",
    "impossible to determine", "cannot be answered", "can't be answered", "cannot answer", "can't answer",
    "unanswerable", "not answerable", "not enough information", "insufficient information",
    "missing information", "information is missing", "not specified", "unknown",
)  # keyword detector (AbstentionBench's keyword baseline, the offline default); the audit's LLM judge is pluggable


def is_abstention(answer: str | None, abstain_string: str | None = None) -> bool:
    """Does this final answer decline to answer? A phrase from :data:`ABSTAIN_PHRASES` and no number in it.

    ``"I don't know."`` → True; ``"I know: it is 5"`` → False; ``"unknown, maybe 5"`` → False (a hedge, not an
    abstention). ``abstain_string`` (an unanswerable record's ``answer``) also counts when matched exactly.
    """
    if answer is None:
        return False
    t = normalize(clean_latex(answer)).replace("’", "'")
    if abstain_string and t == normalize(abstain_string).replace("’", "'"):
        return True
    return any(p in t for p in ABSTAIN_PHRASES) and not re.search(r"\d", t)
