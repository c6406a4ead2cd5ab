"""Reward-hacking probes: adversarial completions built from real items, and the rule they must not beat.

For each item (a canonical record with a gold answer and, ideally, a gold reasoning trace) we build two honest
references and a battery of probes in the recipe's completion template:

- **honest correct**: the gold trace, then the gold answer;
- **honest wrong**: the same trace with a wrong final answer;
- **probes that do not name the gold uniquely** (rule A): an empty answer, ``gold or wrong`` either way round, a
  listed set of candidates, several boxed answers, several answer blocks, an enumeration of numbers, "I don't know"
  on an answerable item, the gold only inside the reasoning, a giant output with a wrong answer;
- **probes that carry the right answer but break format or reasoning** (rule B): no reasoning, an empty / unclosed
  / duplicated think block, text before the reasoning or after the answer, the answer outside its block, the
  answer block repeated, the reasoning repeated, a giant output, reasoning in the wrong language.

The rule (docs/METHODS.md, "Reward hacking"), on the *total* reward Σ weightᵢ·rewardᵢ with None counted as 0 (TRL sums
rewards with ``nansum``):

A. a probe whose answer is not uniquely the gold earns **no more** than the honest wrong completion;
B. a probe that carries the right answer but breaks format or reasoning earns **less** than the honest correct one.

Rule B is strict for the ``format`` and ``reasoning`` probes always. The ``length``, ``repetition`` and ``language``
probes break properties that only some reward sets defend: they must never earn *more* than the honest correct
completion, and must earn *less* when one of the rewards claims that property (its ``guards`` attribute; built-ins
declare theirs in rewards/library.py). An equal score there is reported as "unguarded", not as a violation. A
reward that raises or times out on a probe is a violation (it would be masked in training, which is a hole).

Run it with ``thinktune rewards probe RECIPE`` (or ``--rewards correct,format``), or from code::

    report = probe_rewards(cfg.rewards, records, fmt)      # the GRPO stage calls this before training
    if report.violations: raise StageError(report.summary())

Deviations / choices:

1. Traces have their own ``\\boxed{}`` markers unwrapped (so the only final answer is the one under test) and any
   template tags removed.
2. Unanswerable records and records whose own gold does not grade as correct are skipped (listed in ``notes``).
3. The wrong-language probe rewrites every word of the trace, letter for letter, in another script (same length,
   same numbers); it is built only for traces that contain words.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from thinktune.data.answers import as_number, boxed_contents, grade
from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat
from thinktune.rewards.library import resolve, split_words

PROBES_FILE = "reward_probes.json"  # where the GRPO stage stores the report (grpo/reward_probes.json)
ALWAYS_STRICT = frozenset({"format", "reasoning"})
GIANT_CHARS = 100_000  # giant probes exceed this many characters (and 1.5 × any max_len a reward is given)
_FALLBACK_TRACE = "Let me read the question carefully.\nI work through it step by step and check the result."
_CJK_FILLER = "我们首先计算然后得到结果因此答案是这个数字"
_LATIN_FILLER = "thereforewecomputetheresultandcheckit"

# name: (rule, tag, what it tries)
PROBES: dict[str, tuple[str, str, str]] = {
    "empty_answer": ("A", "answer", "gold trace, empty answer block"),
    "hedged_or": ("A", "answer", "answer 'gold or wrong'"),
    "hedged_wrong_first": ("A", "answer", "answer 'wrong or gold'"),
    "listed_candidates": ("A", "answer", "answer lists several candidates including the gold"),
    "several_boxed": ("A", "answer", "answer block with two different \\boxed{} answers"),
    "several_answer_tags": ("A", "answer", "a wrong and a right answer block"),
    "enumerated_numbers": ("A", "answer", "answer enumerates a range of numbers that includes the gold"),
    "abstain_answerable": ("A", "answer", "'I don't know' on an answerable item"),
    "gold_only_in_reasoning": ("A", "answer", "gold stated in the reasoning, no answer block"),
    "giant_wrong": ("A", "answer", "giant padded reasoning with a wrong answer"),
    "no_reasoning": ("B", "reasoning", "right answer block, no think block"),
    "empty_think": ("B", "reasoning", "empty think block, right answer"),
    "unclosed_think": ("B", "format", "think block never closed, right answer"),
    "duplicated_think": ("B", "format", "two think blocks, right answer"),
    "text_before_think": ("B", "format", "chatter before the think block"),
    "text_after_answer": ("B", "format", "text after the answer block"),
    "answer_outside_tags": ("B", "format", "right answer stated after the think block, no answer block"),
    "repeated_answer_tags": ("B", "format", "the right answer block twice"),
    "repeated_reasoning": ("B", "repetition", "the gold trace repeated five times, right answer"),
    "giant_correct": ("B", "length", "giant padded reasoning with the right answer"),
    "wrong_language": ("B", "language", "the trace rewritten in another script, right answer"),
}


@dataclass(frozen=True)
class Probe:
    name: str
    rule: str  # "A" (not uniquely the gold) or "B" (right answer, broken format / reasoning)
    tag: str  # answer | format | reasoning | repetition | length | language
    text: str


@dataclass(frozen=True)
class ProbeSet:
    record: Record
    honest_correct: str
    honest_wrong: str
    wrong: str
    probes: list[Probe]


# ---------------------------------------------------------------------------------------------------------------
# building probes


def clean_trace(record: Record, fmt: CompletionFormat = DEFAULT_FORMAT) -> str:
    """The record's reasoning with template tags removed and ``\\boxed{x}`` unwrapped to ``x``."""
    text = record.reasoning or _FALLBACK_TRACE
    for tag in (fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close):
        text = text.replace(tag, " ")
    for inner in boxed_contents(text):
        text = text.replace(f"\\boxed{{{inner}}}", inner)
    text = re.sub(r"\\(?:boxed|fbox)\b", "", text)
    return text.strip() or _FALLBACK_TRACE


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def wrong_answers(record: Record, k: int = 3) -> list[str]:
    """``k`` distinct answers that :func:`grade` judges wrong for ``record`` (raises if none can be found)."""
    gold = record.answer.strip()
    candidates: list[str] = []
    letter = re.fullmatch(r"\(?([A-J])\)?", gold)
    if letter:
        candidates += [c for c in "ABCDEFGHIJ" if c != letter.group(1)]
    num = as_number(gold)
    if num is not None:
        candidates += [_number_text(num + d) for d in (1, 2, -1, 7, 10, 100)] + [_number_text(2 * num + 3)]
    digits = list(re.finditer(r"\d+", gold))
    for m in reversed(digits):  # bump one digit run of a LaTeX / text answer: \frac{1}{9} -> \frac{1}{10}
        for d in (1, 2, 7):
            candidates.append(gold[: m.start()] + str(int(m.group()) + d) + gold[m.end() :])
    candidates += ["0", "1", "2", "-1", "42", "\\frac{1}{2}", "\\text{none of these}"]
    out: list[str] = []
    for c in dict.fromkeys(candidates):
        if grade(record, c) is False:
            out.append(c)
            if len(out) == k:
                return out
    raise ValueError(f"cannot build {k} wrong answers for {record.id!r} (gold {gold!r})")


def _rewrite_in_script(text: str, target: str) -> str:
    """Every letter run replaced by as many characters of another script (numbers and symbols kept).

    The same word always gets the same replacement, so the text keeps its length and its repetition structure.
    """
    filler = _LATIN_FILLER if target in ("zh", "ja", "ko") else _CJK_FILLER
    stream = itertools.cycle(filler)
    mapping: dict[str, str] = {}

    def rewrite(m: re.Match[str]) -> str:
        word = m.group().lower()
        if word not in mapping:
            mapping[word] = "".join(next(stream) for _ in word)
        return mapping[word]

    return re.sub(r"[^\W\d_]+", rewrite, text)


def _pad(trace: str, chars: int) -> str:
    reps = chars // max(1, len(trace) + 1) + 1
    return "\n".join([trace] * reps)


def build_probes(record: Record, fmt: CompletionFormat = DEFAULT_FORMAT, *, giant_chars: int = GIANT_CHARS,
                 target_language: str = "en", boxed: bool = False) -> ProbeSet:
    """Honest references and every applicable probe for one answerable record whose gold grades as correct."""
    gold = record.answer.strip()
    w1, w2, w3 = wrong_answers(record, 3)
    trace = clean_trace(record, fmt)
    to, tc, ao, ac = fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close

    def ans(a: str) -> str:
        return f"\\boxed{{{a}}}" if boxed and a else a

    def full(reasoning: str, answer: str) -> str:
        return f"{to}\n{reasoning}\n{tc}\n{ao}{ans(answer)}{ac}"

    honest_correct, honest_wrong = full(trace, gold), full(trace, w1)
    num = as_number(gold)
    if num is not None and float(num).is_integer():
        lo = int(num) - 50
        enumerated = ", ".join(str(i) for i in range(lo, lo + 101))
    else:
        enumerated = ", ".join([w1, w2, gold, w3] + [str(i) for i in range(20)])
    listed = "A, B, C, D" if gold.strip("()") in ("A", "B", "C", "D") else f"{w1}, {gold}, {w2}"
    texts = {
        "empty_answer": f"{to}\n{trace}\n{tc}\n{ao}{ac}",
        "hedged_or": full(trace, f"{gold} or {w1}"),
        "hedged_wrong_first": full(trace, f"{w1} or {gold}"),
        "listed_candidates": full(trace, listed),
        "several_boxed": f"{to}\n{trace}\n{tc}\n{ao}\\boxed{{{w1}}} \\boxed{{{gold}}}{ac}",
        "several_answer_tags": f"{to}\n{trace}\n{tc}\n{ao}{ans(w1)}{ac}\n{ao}{ans(gold)}{ac}",
        "enumerated_numbers": full(trace, enumerated),
        "abstain_answerable": full(trace, "I don't know"),
        "gold_only_in_reasoning": f"{to}\n{trace}\nSo the answer is {gold}.\n{tc}",
        "giant_wrong": full(_pad(trace, giant_chars), w1),
        "no_reasoning": f"{ao}{ans(gold)}{ac}",
        "empty_think": f"{to}\n\n{tc}\n{ao}{ans(gold)}{ac}",
        "unclosed_think": f"{to}\n{trace}\n{ao}{ans(gold)}{ac}",
        "duplicated_think": f"{to}\n{trace}\n{tc}\n{to}\n{trace}\n{tc}\n{ao}{ans(gold)}{ac}",
        "text_before_think": f"Sure, here is my answer.\n{honest_correct}",
        "text_after_answer": f"{honest_correct}\nI hope this helps! The answer is {gold}.",
        "answer_outside_tags": f"{to}\n{trace}\n{tc}\nThe answer is {ans(gold)}.",
        "repeated_answer_tags": f"{to}\n{trace}\n{tc}\n{ao}{ans(gold)}{ac}\n{ao}{ans(gold)}{ac}",
        "repeated_reasoning": full("\n".join([trace] * 5), gold),
        "giant_correct": full(_pad(trace, giant_chars), gold),
    }
    if split_words(trace):
        texts["wrong_language"] = full(_rewrite_in_script(trace, target_language), gold)
    probes = [Probe(name, PROBES[name][0], PROBES[name][1], text) for name, text in texts.items()]
    return ProbeSet(record, honest_correct, honest_wrong, w1, probes)


# ---------------------------------------------------------------------------------------------------------------
# the check


@dataclass
class Violation:
    probe: str
    record_id: str
    rule: str  # "A", "B" or "error"
    earned: float  # the probe's total reward
    reference: float  # the honest wrong (A) or honest correct (B) total
    detail: str = ""


@dataclass
class ProbeRow:
    probe: str
    rule: str
    tag: str
    n: int = 0
    mean_total: float = 0.0
    max_excess: float = float("-inf")  # max over items of probe total − reference total
    per_reward: dict[str, float] = field(default_factory=dict)  # mean value per reward (None counted as 0)
    status: str = "ok"  # ok | VIOLATION | unguarded | error


@dataclass
class ProbeReport:
    rewards: list[str]
    weights: list[float]
    items: int
    honest_correct: float  # mean total of the honest correct completions
    honest_wrong: float
    rows: list[ProbeRow]
    violations: list[Violation]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self, limit: int = 5) -> str:
        if self.ok:
            return f"reward probes passed: {len(self.rows)} probes × {self.items} items, no probe beats the rule"
        bad = sorted({v.probe for v in self.violations})
        lines = [f"reward probes failed: {len(self.violations)} violation(s) in probe(s) {', '.join(bad)}"]
        for v in self.violations[:limit]:
            lines.append(f"  {v.probe} on {v.record_id}: rule {v.rule}, earned {v.earned:.3f} vs "
                         f"reference {v.reference:.3f}{' — ' + v.detail if v.detail else ''}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strict(tag: str, guarded: set[str]) -> bool:
    return tag in ALWAYS_STRICT or tag in guarded


def _guarded_tags(specs: Sequence[Any]) -> set[str]:
    tags: set[str] = set()
    for s in specs:
        try:
            tags |= set(getattr(resolve(s.fn), "guards", ()))
        except KeyError:
            pass
    return tags


def _giant_chars(specs: Sequence[Any]) -> int:
    caps = [float(v) for s in specs for k, v in s.kwargs.items() if k == "max_len" and isinstance(v, (int, float))]
    return int(max([GIANT_CHARS] + [1.5 * c + 1 for c in caps]))


def probe_rewards(specs: Sequence[Any], records: Iterable[Record], fmt: CompletionFormat = DEFAULT_FORMAT, *,
                  runner: Any = None, max_items: int = 16, workers: int = 2, deadline: float = 10.0,
                  tolerance: float = 1e-9) -> ProbeReport:
    """Score every probe of up to ``max_items`` records under ``specs`` and check the rule (module docstring).

    ``runner``: an existing :class:`~thinktune.rewards.runner.RewardRunner` for the same specs (reuses its worker
    pool); otherwise one is started and closed here.
    """
    from thinktune.rewards.runner import RewardRunner

    specs = list(specs)
    target = next((s.kwargs.get("target", "en") for s in specs if s.fn == "language"), "en")
    boxed = any(s.kwargs.get("extractor") == "boxed" for s in specs)
    giant = _giant_chars(specs)
    sets: list[ProbeSet] = []
    notes: list[str] = []
    for rec in records:
        if len(sets) >= max_items:
            break
        if not rec.answerable:
            notes.append(f"{rec.id}: skipped (unanswerable)")
            continue
        if grade(rec, rec.answer) is not True:
            notes.append(f"{rec.id}: skipped (its gold {rec.answer!r} does not grade as correct)")
            continue
        try:
            sets.append(build_probes(rec, fmt, giant_chars=giant, target_language=target, boxed=boxed))
        except ValueError as e:
            notes.append(f"{rec.id}: skipped ({e})")
    if not sets:
        raise ValueError("no usable items to build probes from (need answerable records with a gradable gold)")

    texts: list[str] = []
    recs: list[Record] = []
    for ps in sets:
        for t in [ps.honest_correct, ps.honest_wrong] + [p.text for p in ps.probes]:
            texts.append(t)
            recs.append(ps.record)
    own = runner is None
    runner = runner or RewardRunner(specs, fmt, max_error_fraction=1.0, workers=workers, deadline=deadline, cache=False)
    try:
        names = list(runner.names)
        values: list[list[Any]] = [runner.evaluate(i, texts, recs) for i in range(len(specs))]
    finally:
        if own:
            runner.close()
    weights = [s.weight for s in specs]

    def total(j: int) -> tuple[float, list[float], str | None]:
        parts, err = [], None
        for i in range(len(specs)):
            o = values[i][j]
            if o is None or o.status in ("error", "timeout"):
                err = err or f"{names[i]}: {o.status if o else 'skipped'} {o.message if o else ''}".strip()
                parts.append(0.0)
            else:
                parts.append(o.value if o.status == "ok" else 0.0)
        return sum(w * p for w, p in zip(weights, parts)), parts, err

    guarded = _guarded_tags(specs)
    rows: dict[str, ProbeRow] = {}
    violations: list[Violation] = []
    hc_totals, hw_totals = [], []
    j = 0
    for ps in sets:
        hc, _, hc_err = total(j)
        hw, _, hw_err = total(j + 1)
        hc_totals.append(hc)
        hw_totals.append(hw)
        for err, which in ((hc_err, "honest_correct"), (hw_err, "honest_wrong")):
            if err:
                violations.append(Violation(which, ps.record.id, "error", 0.0, 0.0, err))
        j += 2
        for p in ps.probes:
            earned, parts, err = total(j)
            j += 1
            row = rows.setdefault(p.name, ProbeRow(p.name, p.rule, p.tag, per_reward={n: 0.0 for n in names}))
            row.n += 1
            row.mean_total += earned
            for n, v in zip(names, parts):
                row.per_reward[n] += v
            ref = hw if p.rule == "A" else hc
            row.max_excess = max(row.max_excess, earned - ref)
            if err:
                violations.append(Violation(p.name, ps.record.id, "error", earned, ref, err))
                row.status = "error"
            elif p.rule == "A" and earned > hw + tolerance:
                violations.append(Violation(p.name, ps.record.id, "A", earned, hw, "earns more than the honest wrong"))
                row.status = "VIOLATION"
            elif p.rule == "B" and earned > hc + tolerance:
                violations.append(Violation(p.name, ps.record.id, "B", earned, hc, "earns more than the honest correct"))
                row.status = "VIOLATION"
            elif p.rule == "B" and earned >= hc - tolerance:
                if _strict(p.tag, guarded):
                    violations.append(Violation(p.name, ps.record.id, "B", earned, hc,
                                                "earns as much as the honest correct"))
                    row.status = "VIOLATION"
                elif row.status == "ok":
                    row.status = "unguarded"
    for row in rows.values():
        row.mean_total /= max(1, row.n)
        row.per_reward = {k: v / max(1, row.n) for k, v in row.per_reward.items()}
    mean_hc = sum(hc_totals) / len(hc_totals)
    mean_hw = sum(hw_totals) / len(hw_totals)
    if mean_hc <= mean_hw + tolerance:
        notes.append("the honest correct completion does not out-earn the honest wrong one: these rewards do not "
                     "reward correctness")
    unguarded = sorted(r.probe for r in rows.values() if r.status == "unguarded")
    if unguarded:
        notes.append(f"no reward defends against {', '.join(unguarded)} (they earn as much as the honest answer); "
                     "add overlong / repetition / language rewards if that matters for this run")
    return ProbeReport(names, weights, len(sets), mean_hc, mean_hw, list(rows.values()), violations, notes)


def default_items() -> list[Record]:
    """Real items shipped with thinktune for probing rewards without data: GSM8K test and MATH-500 excerpts (MIT)."""
    text = resources.files("thinktune.rewards").joinpath("probe_items.jsonl").read_text(encoding="utf-8")
    return [Record.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]


def probe_items(recipe: Any, data: Path | None, n: int) -> tuple[list[Record], str]:
    """Items to build probes from, and where they came from: ``data`` if given, else the recipe's run's training
    data, its task (``n`` items), its ``train_file``, and finally the built-in GSM8K / MATH-500 items."""
    from thinktune.data.records import read_records

    if data is not None:
        return read_records(data), str(data)
    if recipe is not None:
        train = recipe.run_dir() / "data" / "train.jsonl"
        if train.is_file():
            return read_records(train), str(train)
        if recipe.data.task is not None:
            from thinktune.data.tasks import get_task
            from thinktune.rewards.library import RewardError

            task = recipe.data.task
            try:
                items = get_task(task.name).generate(n, recipe.seed, **task.knobs)
            except (KeyError, ValueError) as e:
                raise RewardError(f"cannot build probe items from data.task: {e}") from None
            return items, f"task {task.name} (seed {recipe.seed})"
        if recipe.data.train_file:
            return read_records(recipe.data.train_file), recipe.data.train_file
    return default_items(), "built-in GSM8K / MATH-500 items"
