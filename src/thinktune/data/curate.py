"""Trace curation: filters that decide which records train a model, each counting what it removed and why.

Run it from the CLI (``thinktune data curate in.jsonl -o out.jsonl --against test.jsonl``, :func:`curate_files`) or
as part of the recipe's ``data`` stage (``data.curate``); both go through the one pipeline :func:`curate_records`.
Filters never mutate a record; a removed record is counted under its filter with a reason and listed with its id and
why (``stats.json``: every removal, up to 10,000 per filter).

Streaming filters (one chunk of rows in memory at a time), in this order:

1. ``exact_dedupe``: the chosen fields, case-folded and whitespace-collapsed, hashed (8 bytes per kept row).
2. ``trace_quality``: code blocks or over-long paragraphs inside the reasoning (DeepSeek-R1 filtered both from its
   CoT data, arXiv 2501.12948 §2.3.3).
3. ``answer_consistency``: the trace read *alone* must arrive at ``answer`` (the task's grader, data/answers.py
   ``grade``). "Arrives at" = the task's own ``answer_from_reasoning`` when it has one (countdown, ordering), else
   the last ``\\boxed{}``, verifies; otherwise the final computed number (the value after the last ``=``, else the
   last number) verifies, or the trace's final line concludes with the answer (a number from its last computed
   result on, or any of its numbers when it computes nothing). Rows without reasoning are not judged.
4. ``length``: token counts with the model's tokenizer (prompt = question, completion = the rendered training
   target). A row whose UTF-8 byte count cannot exceed the limit skips the tokenizer: every token of a byte-level
   or byte-fallback tokenizer covers at least one byte, so ``tokens <= bytes + 2`` (prefix space, one special);
   and no token decodes to more bytes than the vocabulary's widest token, so a row longer than limit × that width
   is over the limit. The filter stays exact while tokenising only the rows near the limit.
5. ``decontaminate``: word n-gram overlap with evaluation sets (GPT-3's 13-gram rule, arXiv 2005.14165 App. C,
   loosened: the score is the fraction of an eval item's n-grams found in the training row, so a copy with a few
   words changed still matches). Every match names the eval item.

Then, over the survivors, ``near_dedupe``: MinHash over word 3-gram shingles with LSH banding (Broder 1997;
Lee et al., "Deduplicating Training Data Makes Language Models Better", arXiv 2107.06499), a candidate pair
confirmed when the estimated Jaccard similarity reaches the threshold; the first row of a cluster is kept.

Mixing and splitting (:func:`mix`, :func:`split_by_id`) are deterministic functions of the ids.

Deviations / choices:

1. Near-dedupe keeps signatures in memory (64 × 4 bytes per row) and needs the whole set before it decides, so it
   is a second pass; exact dedupe and the other filters stream. In memory (the data stage) candidate pairs near
   the threshold are confirmed with the exact Jaccard; spilled to disk (the CLI, for files larger than memory) they
   are confirmed with the MinHash estimate.
2. Decontamination compares word n-grams after lower-casing and dropping punctuation, with n = 6 by default and
   a row flagged when it contains ≥ 30 % of an eval item's n-grams (tuned on GSM8K: see tests/data/test_curate.py).
3. The final-computed-number extractor (the value after the last ``=``) is local to curation: the answer layer's
   ``last_number`` keeps only 97.3 % of GSM8K test traces (units and restatements follow the result), the value
   after the last ``=`` keeps 98.9 %. Alone it rejected 85 of GSM8K's 7,473 training rows (1.1 %), 71 of them
   correct: the last ``=`` is often an intermediate value that the final line turns into the answer ("100/5 =
   5A/5 or 20 = A", "… because 50 < 52", "= 3.75, so 4 days", "$0.25" for 25 cents). Reading the final line as
   well leaves 14 rejections (0.19 %): 13 traces whose last result is another number than the label (train-3263
   computes 4 cavities where the label says 16) and one (train-3409) that ends on a wrong computation
   ("He spends $5 because 10 x .5 = 10"); tests/data/test_consistency.py measures it. Boxed extraction and
   grading are the answer layer's (``boxed_contents``, ``grade``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, render
from thinktune.io import FileGroup, temp_file

ROWS_LISTED = 10_000  # removed rows listed per filter in the report (id, kind, reason), beyond it only counted


# --------------------------------------------------------------------------------------------------------------
# Report


@dataclass
class FilterReport:
    removed: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, rec_id: str, kind: str, detail: str) -> None:
        self.removed += 1
        self.reasons[kind] += 1
        if len(self.examples) < ROWS_LISTED:
            self.examples.append({"id": rec_id, "kind": kind, "reason": detail})


@dataclass
class CurateReport:
    """Counts per filter; ``to_dict()`` is what stats.json holds."""

    seen: int = 0
    kept: int = 0
    filters: dict[str, FilterReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    contamination: list[dict[str, Any]] = field(default_factory=list)  # every decontamination match (capped)

    def filter(self, name: str) -> FilterReport:
        return self.filters.setdefault(name, FilterReport())

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "removed": {k: {"removed": v.removed, "reasons": dict(v.reasons), "examples": v.examples}
                        for k, v in self.filters.items()},
            "notes": self.notes,
            "contamination_matches": self.contamination,
        }


# --------------------------------------------------------------------------------------------------------------
# Text normalisation and hashing

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-folded, whitespace-collapsed text (the exact-dedupe key)."""
    return " ".join(text.casefold().split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped, NFKC-normalised (n-gram and shingle input)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _key(rec: Record, fields: Sequence[str]) -> int:
    joined = "\0".join([str(getattr(rec, f)) for f in fields])  # NUL is not whitespace, so it survives split()
    return xxhash.xxh3_64_intdigest(" ".join(joined.casefold().split()).encode())


# --------------------------------------------------------------------------------------------------------------
# Answer consistency


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+(?!\d)|\d+)(?:\.\d+)?"
_LAST_EQ = re.compile(r"=\s*\$?\s*(" + _NUM + r")")
_ANY_NUM = re.compile(_NUM)


def _own_answer(rec: Record) -> tuple[str | None, bool]:
    """(the answer a trace arrives at by the task's own reader or a ``\\boxed{}``, whether one of those applied)."""
    from thinktune.data.sources import last_boxed
    from thinktune.data.tasks import TASKS

    task = TASKS.get(rec.task)
    if task is not None:
        own = getattr(task(), "answer_from_reasoning", None)
        if own is not None:
            return own(rec), True
    if _BOXED.search(rec.reasoning):
        return last_boxed(rec.reasoning), True
    return None, False


def final_answer_from_reasoning(rec: Record) -> str | None:
    """The answer a trace arrives at, read from ``reasoning`` alone (see module docstring for the order)."""
    own, applied = _own_answer(rec)
    if applied:
        return own
    for pattern in (_LAST_EQ, _ANY_NUM):
        found = pattern.findall(rec.reasoning)
        if found:
            return found[-1].replace(",", "").replace(" ", "").rstrip(".")
    return None


_LINE_NUM = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_HUNDREDTHS = re.compile(r"[$%¢]|\bcents?\b|\bpercent", re.IGNORECASE)


def final_line(reasoning: str) -> str:
    """The last non-empty line of a trace: where a worked solution states its result (GSM8K's "So he has 300 cents
    left.", "Thus 6:07 AM is 7 minutes after 6:00 AM.", "… because 50 < 52")."""
    lines = [line.strip() for line in reasoning.splitlines() if line.strip()]
    return lines[-1] if lines else ""


_LINE_RESULT = re.compile(r"=\s*\$?\s*(" + _LINE_NUM.pattern + r")")


def states_answer(rec: Record, line: str) -> bool:
    """Does ``line`` conclude with the gold answer: a number from its last computed result on (``… = 15.36, which
    rounds down to 15``, ``100/5 = 5A/5 or 20 = A``), or any of its numbers when it computes nothing (``… because
    50 < 52``) — also as dollars or a fraction for cents or percent (``$0.25`` for 25 cents)? The operands of the
    last computation and what comes before it do not count (``year 13 because 12 + 1 = 13.5`` ends at 13.5)."""
    from thinktune.data.answers import grade

    results = list(_LINE_RESULT.finditer(line))
    tail = line[results[-1].start(1):] if results else line
    numbers = list(dict.fromkeys(m.group().replace(",", "") for m in _LINE_NUM.finditer(tail)))
    if any(grade(rec, n) for n in numbers):
        return True
    if _HUNDREDTHS.search(line):  # "$0.25 more per can" for 25 cents, ".8 of the girls" for 80 %
        return any(grade(rec, f"{float(n) * 100:.6g}") for n in numbers)
    return False


def check_consistency(rec: Record) -> tuple[str, str] | None:
    """None when the trace arrives at ``answer``; else (kind, detail).

    The trace arrives at the answer when its final answer (:func:`final_answer_from_reasoning`) verifies, or — when
    that answer was read as a number, not by the task's own reader or a ``\\boxed{}`` — when its final line states the
    answer among its numbers (:func:`states_answer`): the value after the last ``=`` is often an intermediate result
    that the final line turns into the answer (rounding, a comparison, a unit, an equation solved for a variable).
    """
    from thinktune.data.answers import grade

    if not rec.reasoning.strip() or not rec.answerable:
        return None
    got = final_answer_from_reasoning(rec)
    if got is None:
        return "no_final_answer", "no final answer can be read from the reasoning"
    verdict = grade(rec, got)
    if verdict is None:
        return "ungradable_gold", f"the gold answer {rec.answer!r} cannot be graded"
    if verdict:
        return None
    if _own_answer(rec)[1]:
        return "mismatch", f"reasoning ends at {got!r}, answer is {rec.answer!r}"
    line = final_line(rec.reasoning)
    if states_answer(rec, line):
        return None
    shown = line if len(line) <= 160 else line[:157] + "..."
    return "mismatch", f"reasoning ends at {got!r} and its final line does not state {rec.answer!r}: {shown!r}"


# --------------------------------------------------------------------------------------------------------------
# Trace quality (DeepSeek-R1's CoT filters)


def check_trace_quality(rec: Record, reject_code_blocks: bool, max_paragraph_chars: int | None) -> tuple[str, str] | None:
    if reject_code_blocks and "```" in rec.reasoning:
        return "code_block", "reasoning contains a ``` code block"
    if max_paragraph_chars:
        longest = max((len(p) for p in re.split(r"\n\s*\n", rec.reasoning)), default=0)
        if longest > max_paragraph_chars:
            return "long_paragraph", f"a {longest}-character paragraph (limit {max_paragraph_chars})"
    return None


# --------------------------------------------------------------------------------------------------------------
# Token length


class LengthChecker:
    """Prompt / completion token limits with a tokenizer, skipping it for rows that cannot reach a limit.

    ``tokenizer=None`` counts UTF-8 bytes instead (used when the recipe's model is built from scratch and has no
    tokenizer yet; said so in the report).
    """

    SLACK = 2  # tokens a tokenizer may add beyond one per byte (SentencePiece prefix space, one special token)

    def __init__(self, tokenizer=None, min_prompt: int | None = None, max_prompt: int | None = None,
                 min_completion: int | None = None, max_completion: int | None = None,
                 fmt: CompletionFormat = DEFAULT_FORMAT):
        self.tok = tokenizer
        self.limits = {"prompt": (min_prompt, max_prompt), "completion": (min_completion, max_completion)}
        self.fmt = fmt
        self.tokenized = 0  # texts that needed the tokenizer (the rest were decided by their byte count)
        self._widest: int | None = None

    def max_token_bytes(self) -> int:
        """The most UTF-8 bytes one token of the vocabulary decodes to (a row longer than limit × this is surely
        over the limit). Computed once per tokenizer; a partial UTF-8 token decodes to U+FFFD (3 bytes), which
        only makes the bound more conservative."""
        if self._widest is None:
            if self.tok is None:
                self._widest = 1
            else:
                ids = [[i] for i in range(len(self.tok))]
                decoded = self.tok.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
                self._widest = max(1, max(len(d.encode("utf-8")) for d in decoded))
        return self._widest

    def active(self) -> bool:
        return any(v is not None for pair in self.limits.values() for v in pair)

    def _count(self, texts: list[str]) -> list[int]:
        if self.tok is None:
            return [len(t.encode("utf-8")) for t in texts]
        self.tokenized += len(texts)
        backend = getattr(self.tok, "_tokenizer", None)
        if backend is not None:  # a fast tokenizer: the Rust batch encoder, no Python objects per token
            return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def check_batch(self, recs: list[Record]) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = [None] * len(recs)
        for part, (lo, hi) in self.limits.items():
            if lo is None and hi is None:
                continue
            texts = [r.question if part == "prompt" else render(r.reasoning, r.answer, self.fmt) for r in recs]
            need = []
            unit = "tokens" if self.tok is not None else "bytes"
            widest = self.max_token_bytes()
            for i, t in enumerate(texts):
                if out[i] is not None:
                    continue
                n_bytes = len(t.encode("utf-8"))
                if self.tok is not None and lo is None and n_bytes + self.SLACK <= hi:
                    continue  # cannot exceed the maximum: decided without the tokenizer
                if self.tok is not None and hi is not None and n_bytes > hi * widest:
                    at_least = -(-n_bytes // widest)  # no token covers more than `widest` bytes
                    out[i] = (f"{part}_too_long", f"{part} has at least {at_least} tokens (max {hi})")
                    continue
                need.append(i)
            counts = self._count([texts[i] for i in need]) if need else []
            for i, n in zip(need, counts):
                if hi is not None and n > hi:
                    out[i] = (f"{part}_too_long", f"{part} has {n} {unit} (max {hi})")
                elif lo is not None and n < lo:
                    out[i] = (f"{part}_too_short", f"{part} has {n} {unit} (min {lo})")
        return out


# --------------------------------------------------------------------------------------------------------------
# Decontamination


class ContaminationIndex:
    """Word n-grams of evaluation items; a training text is contaminated by an eval item when it contains at least
    ``threshold`` of that item's n-grams. Items shorter than n words use one n-gram of their full length."""

    def __init__(self, eval_records: Iterable[Record], n: int = 6, threshold: float = 0.3,
                 fields: Sequence[str] = ("question",)):
        self.n, self.threshold = n, threshold
        self.ids: list[str] = []
        self.sizes: list[int] = []
        self.index: dict[int, list[int]] = {}
        self.short_lengths: set[int] = set()
        for rec in eval_records:
            grams = self._grams(" ".join(str(getattr(rec, f)) for f in fields), n)
            if not grams:
                continue
            k = len(self.ids)
            self.ids.append(rec.id)
            self.sizes.append(len(grams))
            for g in grams:
                self.index.setdefault(g, []).append(k)
            w = len(words(" ".join(str(getattr(rec, f)) for f in fields)))
            if w < n:
                self.short_lengths.add(w)

    @staticmethod
    def _grams(text: str, n: int, lengths: Iterable[int] = ()) -> set[int]:
        ws = words(text)
        sizes = {n, *lengths}
        out: set[int] = set()
        for m in sizes:
            if len(ws) < m:
                continue
            out.update(xxhash.xxh3_64_intdigest(" ".join(ws[i : i + m]).encode()) for i in range(len(ws) - m + 1))
        if len(ws) < n and ws and not lengths:
            out.add(xxhash.xxh3_64_intdigest(" ".join(ws).encode()))
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def matches(self, text: str) -> list[tuple[str, float]]:
        """[(eval id, fraction of its n-grams found in ``text``)] for every eval item at or over the threshold."""
        hits: Counter = Counter()
        for g in self._grams(text, self.n, self.short_lengths):
            for k in self.index.get(g, ()):
                hits[k] += 1
        found = [(self.ids[k], c / self.sizes[k]) for k, c in hits.items() if c / self.sizes[k] >= self.threshold]
        return sorted(found, key=lambda x: -x[1])


# --------------------------------------------------------------------------------------------------------------
# Near duplicates: MinHash + LSH


class MinHasher:
    """MinHash signatures of word-shingle sets, computed a chunk at a time with numpy.

    Hash family: multiply-shift, ``((a * x + b) mod 2^64) >> 32`` with random odd 64-bit ``a`` (Dietzfelbinger et
    al. 1997), over shingle hashes folded to 32 bits.
    """

    def __init__(self, num_perm: int = 64, ngram: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 2**63, num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
        self.num_perm, self.ngram = num_perm, ngram
        self._word_ids: dict[str, int] = {}

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(N, num_perm) uint32 signatures of the word-n-gram sets of ``texts``.

        Words are hashed once (cached); the n-grams of the whole chunk are combined in numpy: text d contributes
        the n-grams at its positions ``s_d .. s_d + L_d - n`` of the concatenated word-id array (texts shorter than
        n words are padded, so every text has at least one n-gram).
        """
        n, cache = self.ngram, self._word_ids
        if len(cache) > 2_000_000:  # bound memory on huge vocabularies
            cache.clear()
        flat: list[str] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        for i, t in enumerate(texts):
            ws = words(t)
            if len(ws) < n:
                ws = ws + [""] * (n - len(ws))
            flat.extend(ws)
            lengths[i] = len(ws)
        for w in set(flat).difference(cache):
            cache[w] = xxhash.xxh64_intdigest(w.encode())
        ids = np.fromiter(map(cache.__getitem__, flat), dtype=np.uint64, count=len(flat))
        counts = lengths - n + 1  # n-grams per text
        starts = np.cumsum(lengths) - lengths
        first = np.cumsum(counts) - counts  # index of each text's first n-gram
        pos = np.repeat(starts, counts) + (np.arange(counts.sum()) - np.repeat(first, counts))
        with np.errstate(over="ignore"):
            h = np.zeros(len(pos), dtype=np.uint64)
            for j in range(n):  # a polynomial combination of the n word hashes, wrapping mod 2^64
                h = h * np.uint64(0x100000001B3) + ids[pos + j]
            x = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
            hv = (x[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)
        return np.minimum.reduceat(hv, first, axis=0).astype(np.uint32)


def shingle_jaccard(a: str, b: str, n: int = 3) -> float:
    """Exact Jaccard similarity of the word n-gram sets of two texts."""
    def grams(t: str) -> set[tuple[str, ...]]:
        w = words(t)
        return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / max(len(x | y), 1)


def near_duplicates(sigs: np.ndarray, threshold: float = 0.7, bands: int = 16,
                    exact: Callable[[int, int], float] | None = None) -> dict[int, tuple[int, float]]:
    """Rows to drop: ``{row: (kept row it duplicates, estimated Jaccard)}``; the lowest row of a cluster is kept.

    LSH: ``bands`` bands of ``num_perm / bands`` rows; rows sharing any band are candidates, confirmed when the
    fraction of equal signature entries (the Jaccard estimate, ± ~0.06 with 64 permutations) reaches ``threshold``;
    with ``exact(i, j)`` (the true Jaccard) candidates within 0.15 of the threshold are confirmed exactly instead.
    """
    n, k = sigs.shape
    if n < 2:
        return {}
    r = k // bands
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    est: dict[int, float] = {}
    mults = np.array([0x9E3779B97F4A7C15 ^ (i * 0x100000001B3) for i in range(r)], dtype=np.uint64)
    for band in range(bands):
        block = sigs[:, band * r : (band + 1) * r].astype(np.uint64)
        with np.errstate(over="ignore"):
            keys = (block * mults[None, :]).sum(axis=1, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        same = np.nonzero(sk[1:] == sk[:-1])[0]
        if not len(same):
            continue
        a_idx, b_idx = order[same], order[same + 1]
        sim = (sigs[a_idx] == sigs[b_idx]).mean(axis=1)
        for a, b, s in zip(a_idx.tolist(), b_idx.tolist(), sim.tolist()):
            if exact is not None and s >= threshold - 0.15:
                s = exact(a, b)
            if s >= threshold:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                hi = max(a, b)
                est[hi] = max(est.get(hi, 0.0), s)
    drop: dict[int, tuple[int, float]] = {}
    for i in range(n):
        root = find(i)
        if root != i:
            drop[i] = (root, est.get(i, threshold))
    return drop


# --------------------------------------------------------------------------------------------------------------
# The streaming pipeline


@dataclass
class CurateOptions:
    """What :func:`curate_stream` does (the recipe's ``data.curate`` block maps onto this)."""

    dedupe: bool = True
    dedupe_fields: tuple[str, ...] = ("question", "reasoning", "answer")
    near_dedupe: bool = False
    near_threshold: float = 0.7
    near_fields: tuple[str, ...] = ("question", "reasoning")
    answer_consistency: bool = True
    require_reasoning: bool = False
    reject_code_blocks: bool = False
    max_paragraph_chars: int | None = None
    length: LengthChecker | None = None
    contamination: ContaminationIndex | None = None
    decontam_fields: tuple[str, ...] = ("question",)
    max_contamination_listed: int = 10_000

    def filters(self) -> list[str]:
        """The filters these options turn on, in pipeline order (each is reported, a filter that removed nothing
        with 0)."""
        on = {"exact_dedupe": self.dedupe, "require_reasoning": self.require_reasoning,
              "trace_quality": self.reject_code_blocks or self.max_paragraph_chars is not None,
              "answer_consistency": self.answer_consistency,
              "length": self.length is not None and self.length.active(),
              "decontaminate": self.contamination is not None and len(self.contamination) > 0,
              "near_dedupe": self.near_dedupe}
        return [name for name, enabled in on.items() if enabled]


def curate_stream(records: Iterable[Record], opts: CurateOptions, report: CurateReport,
                  chunk_size: int = 2048, on_chunk: Callable[[int], None] | None = None) -> Iterator[Record]:
    """Yield the records that pass every streaming filter, in input order; counts go into ``report``."""
    seen_keys: set[int] = set()
    buf: list[Record] = []
    for rec in records:
        buf.append(rec)
        if len(buf) >= chunk_size:
            yield from _chunk(buf, opts, report, seen_keys)
            if on_chunk:
                on_chunk(len(buf))
            buf = []
    if buf:
        yield from _chunk(buf, opts, report, seen_keys)
        if on_chunk:
            on_chunk(len(buf))


def _chunk(recs: list[Record], opts: CurateOptions, report: CurateReport, seen_keys: set[int]) -> list[Record]:
    report.seen += len(recs)
    alive: list[Record] = []
    for rec in recs:
        if opts.dedupe:
            k = _key(rec, opts.dedupe_fields)
            if k in seen_keys:
                report.filter("exact_dedupe").add(rec.id, "duplicate", "same normalised "
                                                  + "+".join(opts.dedupe_fields) + " as an earlier row")
                continue
            seen_keys.add(k)
        if opts.require_reasoning and not rec.reasoning.strip():
            report.filter("require_reasoning").add(rec.id, "empty_reasoning", "reasoning is empty")
            continue
        bad = check_trace_quality(rec, opts.reject_code_blocks, opts.max_paragraph_chars)
        if bad:
            report.filter("trace_quality").add(rec.id, *bad)
            continue
        if opts.answer_consistency:
            bad = check_consistency(rec)
            if bad:
                report.filter("answer_consistency").add(rec.id, *bad)
                continue
        alive.append(rec)
    if opts.length is not None and opts.length.active() and alive:
        verdicts = opts.length.check_batch(alive)
        kept = []
        for rec, bad in zip(alive, verdicts):
            if bad:
                report.filter("length").add(rec.id, *bad)
            else:
                kept.append(rec)
        alive = kept
    if opts.contamination is not None and len(opts.contamination):
        kept = []
        for rec in alive:
            found = opts.contamination.matches(" ".join(str(getattr(rec, f)) for f in opts.decontam_fields))
            if found:
                eval_id, score = found[0]
                report.filter("decontaminate").add(rec.id, "eval_overlap",
                                                   f"matches eval item {eval_id} ({score:.0%} of its n-grams)")
                if len(report.contamination) < opts.max_contamination_listed:
                    report.contamination.append({"id": rec.id, "eval_ids": [e for e, _ in found],
                                                 "overlap": round(score, 3)})
            else:
                kept.append(rec)
        alive = kept
    report.kept += len(alive)
    return alive


def near_dedupe(records: Sequence[Record], report: CurateReport, threshold: float = 0.7,
                fields: Sequence[str] = ("question", "reasoning"), hasher: MinHasher | None = None) -> list[Record]:
    """Drop near-duplicates from an in-memory list (first of each cluster kept)."""
    hasher = hasher or MinHasher()
    sigs = np.concatenate([hasher.signatures([" ".join(str(getattr(r, f)) for f in fields) for r in records[i : i + 2048]])
                           for i in range(0, len(records), 2048)]) if records else np.zeros((0, hasher.num_perm))
    texts = [" ".join(str(getattr(r, f)) for f in fields) for r in records]
    drop = near_duplicates(sigs, threshold, exact=lambda i, j: shingle_jaccard(texts[i], texts[j], hasher.ngram))
    fr = report.filter("near_dedupe")
    for i, (kept, sim) in sorted(drop.items()):
        fr.add(records[i].id, "near_duplicate", f"near-duplicate of {records[kept].id} (Jaccard ≈ {sim:.2f})")
    report.kept -= len(drop)
    return [r for i, r in enumerate(records) if i not in drop]


def curate_records(records: Iterable[Record], opts: CurateOptions, report: CurateReport, *,
                   spill: Path | None = None, on_chunk: Callable[[int], None] | None = None) -> Iterator[Record]:
    """The curation pipeline: the streaming filters (:func:`curate_stream`), then near-dedupe over the survivors.

    In memory (``spill=None``) the survivors are held in a list and near-duplicate candidates are confirmed with the
    exact Jaccard similarity. With ``spill`` (a file path) they are written there instead (and the file removed at
    the end), only their MinHash signatures stay in memory, and candidates are confirmed with the MinHash estimate.
    Yields the kept records in input order.
    """
    from thinktune.data.records import scan_lines

    for name in opts.filters():  # listed in pipeline order, with 0 when nothing was removed
        report.filter(name)
    survivors = curate_stream(records, opts, report, on_chunk=on_chunk)
    if not opts.near_dedupe:
        yield from survivors
        return
    if spill is None:
        yield from near_dedupe(list(survivors), report, threshold=opts.near_threshold, fields=opts.near_fields)
        return
    hasher, sigs, buf = MinHasher(), [], []
    try:
        with open(spill, "w", encoding="utf-8") as fh:  # scratch: the caller owns the path (a temp, see curate_files)
            for rec in survivors:
                fh.write(rec.model_dump_json() + "\n")
                buf.append(" ".join(str(getattr(rec, f)) for f in opts.near_fields))
                if len(buf) >= 4096:
                    sigs.append(hasher.signatures(buf))
                    buf = []
        if buf:
            sigs.append(hasher.signatures(buf))
        drop = near_duplicates(np.concatenate(sigs), opts.near_threshold) if sigs else {}
        ids: list[str] = []
        for i, (_, obj) in enumerate(scan_lines(spill)):
            rec = Record.model_validate(obj)
            ids.append(rec.id)
            if i not in drop:
                yield rec
        fr = report.filter("near_dedupe")
        for i, (k, sim) in sorted(drop.items()):
            fr.add(ids[i], "near_duplicate", f"near-duplicate of {ids[k]} (Jaccard ≈ {sim:.2f})")
        report.kept -= len(drop)
    finally:
        spill.unlink(missing_ok=True)


@dataclass
class CurateResult:
    report: CurateReport
    train: int  # rows written to the output
    eval: int | None  # rows split off to the eval output (None without a split)
    kept_sample: list[Record]  # the first 200,000 kept training rows (for statistics)


def curate_files(records: Iterable[Record], output: Path, opts: CurateOptions, report: CurateReport, *,
                 eval_output: Path | None = None, eval_fraction: float | None = None,
                 on_chunk: Callable[[int], None] | None = None, group: FileGroup | None = None) -> CurateResult:
    """Curate a stream of records into canonical JSONL files (``thinktune data curate``).

    Kept rows go to ``output``, or, with ``eval_fraction``, those whose id hash falls under it to ``eval_output``.
    The survivors are spilled to a temp file next to ``output`` (one a later write cleans up if this process is
    killed) so that files larger than memory can be near-deduplicated. Every file is written atomically; with
    ``group`` (an :class:`thinktune.io.FileGroup` holding both outputs) the files are only filled, and the group
    commits them together with their stats.
    """
    from thinktune.data.records import JsonlWriter

    kept: list[Record] = []
    train_w = JsonlWriter(output, group)
    eval_w = JsonlWriter(eval_output, group) if eval_output is not None else None
    with temp_file(output.with_name(output.name + ".stage1")) as (spill_fh, spill):
        spill_fh.close()
        with train_w, (eval_w or _NoWriter()):
            for rec in curate_records(records, opts, report, spill=Path(spill), on_chunk=on_chunk):
                if eval_w is not None and id_bucket(rec.id, "split") < eval_fraction:
                    eval_w.write(rec)
                else:
                    train_w.write(rec)
                    if len(kept) < 200_000:
                        kept.append(rec)
    return CurateResult(report, train_w.count, eval_w.count if eval_w is not None else None, kept)


class _NoWriter:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


# --------------------------------------------------------------------------------------------------------------
# Split and mix


def id_bucket(rec_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) that depends only on the id (and salt): adding rows never moves an id."""
    return xxhash.xxh3_64_intdigest(f"{salt}\x1f{rec_id}".encode()) / 2**64


def split_by_id(records: Iterable[Record], eval_fraction: float, salt: str = "split") -> tuple[list[Record], list[Record]]:
    """Deterministic train / eval split by id hash (never by position)."""
    train, held = [], []
    for r in records:
        (held if id_bucket(r.id, salt) < eval_fraction else train).append(r)
    return train, held


def mix(groups: dict[str, list[Record]], ratio: dict[str, float], total: int | None = None,
        salt: str = "mix") -> tuple[list[Record], dict[str, Any]]:
    """Combine groups (e.g. reasoning / non-reasoning) at ``ratio`` (DeepSeek-R1: 600k : 200k = 3 : 1).

    Each group is cut to the largest size the ratio allows (or to ``total`` overall); which rows are kept is
    decided by id hash, so the choice is reproducible and stable when rows are added.
    """
    names = [g for g in ratio if ratio[g] > 0]
    unknown = set(groups) - set(ratio)
    if unknown:
        raise ValueError(f"mix: groups without a ratio: {', '.join(sorted(unknown))}")
    weight = sum(ratio[g] for g in names)
    scale = min(len(groups.get(g, [])) / (ratio[g] / weight) for g in names) if names else 0
    if total is not None:
        scale = min(scale, total)
    out, info = [], {"ratio": ratio, "available": {g: len(groups.get(g, [])) for g in ratio}, "kept": {}}
    for g in names:
        want = int(round(scale * ratio[g] / weight))
        rows = sorted(groups.get(g, []), key=lambda r: id_bucket(r.id, salt))[:want]
        info["kept"][g] = len(rows)
        out.extend(rows)
    out.sort(key=lambda r: id_bucket(r.id, salt + ":order"))
    return out, info
