"""Preference labels made by people (``thinktune label``): their file, the pairs they give, and agreement.

A labels file is JSONL, one row per judgement — one annotator's verdict on one item (a prompt and the k
completions shown for it)::

    {"label_id": "3f2a…", "item": "chain_arith-eval-7", "annotator": "ana", "question": "Compute 4 - 2 + 8.",
     "candidates": [{"id": "0", "text": "<think>…", "source": "sft", "correct": true}, {"id": "1", …}],
     "shown": ["1", "0"], "choice": "B", "ranking": ["0", "1"], "reason": "", "verdict_seen": false,
     "seconds": 6.4, "time": "2025-05-01T10:00:00Z"}

``shown`` is the order the annotator saw (slot A = ``shown[0]``); ``choice`` is what they clicked: ``A`` / ``B``
(k = 2), ``rank`` (k > 2, ``ranking`` best first), ``tie``, ``both_bad`` (all bad for k > 2) or ``skip``.
``ranking`` holds candidate ids best first for ``A``, ``B`` and ``rank``, and is empty otherwise. ``source`` (which
model wrote it) and ``correct`` (the verifier's verdict) are never shown unless the annotator reveals the verdict,
which ``verdict_seen`` records.

Pairs (:func:`preference_pairs`): every (x, y) of an item is judged by the labels that order it; a pair
``(chosen=x, rejected=y)`` is made when every non-skip label of the item says x > y. The other cases give no pair
and are counted (``PairCounts``):

- ``tie``: the annotators judged x and y equally good — a preference loss (Bradley–Terry, DPO) has nothing to learn;
- ``both_bad``: x and y are both bad — which of two wrong answers is "better" is not the lesson; a both-bad item
  is evidence for the task's data, not a pair;
- ``disagreement``: two annotators ordered the pair differently (or one said tie / both bad): dropped rather than
  trained on a coin flip;
- ``identical``: the two completions have the same text.

Agreement (:func:`agreement`): Cohen's κ (Cohen 1960) over the items that two annotators labelled (the first two
non-skip labels, in the order they were made: rater 1 is whoever labelled first). A label's category is stated in
the candidates' own order, never the shown one: for k = 2 ``first`` / ``second`` / ``tie`` / ``both_bad``; for k > 2
the id ranked first, ``tie`` or ``both_bad``. κ = (p_o − p_e) / (1 − p_e), with p_e from each rater position's
marginals. Deviation: with more than two annotators the rater pairs differ from item to item; κ pools them by
position (the per-pair agreement is reported beside it).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from thinktune.data.records import DataError, iter_jsonl

CHOICES = ("A", "B", "rank", "tie", "both_bad", "skip")
RANKED = ("A", "B", "rank")  # choices that order the candidates
LABEL_FIELDS = {"label_id", "item", "annotator", "question", "candidates", "shown", "choice", "ranking", "reason",
                "verdict_seen", "seconds", "time", "answer"}


def is_label_row(obj: Any) -> bool:
    """Does this JSON row look like a label (rather than a ``{question, chosen, rejected}`` pair)?"""
    return isinstance(obj, dict) and "label_id" in obj and "choice" in obj


def check_label(obj: Any, path: str | os.PathLike, line: int | None) -> dict[str, Any]:
    """Validate one label row; :class:`DataError` naming ``file:line: field`` on the first problem."""
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - LABEL_FIELDS)
    if unknown:
        raise DataError(path, line, unknown[0], f"unknown field (a label has {', '.join(sorted(LABEL_FIELDS))})")
    for key in ("label_id", "item", "annotator", "question", "choice"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise DataError(path, line, key, "required, a non-empty string")
    if obj["choice"] not in CHOICES:
        raise DataError(path, line, "choice", f"{obj['choice']!r} is not one of {', '.join(CHOICES)}")
    cands = obj.get("candidates")
    if not isinstance(cands, list) or len(cands) < 2:
        raise DataError(path, line, "candidates", "required, a list of at least two {id, text} objects")
    ids = []
    for i, c in enumerate(cands):
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("text"), str):
            raise DataError(path, line, f"candidates.{i}", "must be an object with string id and text")
        ids.append(c["id"])
    if len(set(ids)) != len(ids):
        raise DataError(path, line, "candidates", "candidate ids must be distinct")
    for key in ("shown", "ranking"):
        value = obj.get(key, [])
        if not isinstance(value, list) or any(v not in ids for v in value) or len(set(value)) != len(value):
            raise DataError(path, line, key, "must list distinct candidate ids")
    ranking = obj.get("ranking", [])
    if obj["choice"] in RANKED and len(ranking) != len(ids):
        raise DataError(path, line, "ranking", f"choice {obj['choice']} needs every candidate ranked, best first")
    if obj["choice"] not in RANKED and ranking:
        raise DataError(path, line, "ranking", f"must be empty for choice {obj['choice']}")
    if obj["choice"] in ("A", "B") and len(ids) != 2:
        raise DataError(path, line, "choice", "A / B need exactly two candidates (use rank)")
    return obj


def read_labels(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every label of a labels file, validated; :class:`DataError` on a bad row or an empty file."""
    rows = [check_label(obj, path, line) for line, obj in iter_jsonl(path)]
    if not rows:
        raise DataError(path, None, None, "no labels (the file is empty)")
    return rows


# --------------------------------------------------------------------------------------------------------------
# Labels -> preference pairs


@dataclass
class PairCounts:
    """What a labels file gave: its labels by choice, and the candidate pairs by what became of them."""

    labels: int = 0
    items: int = 0  # items with at least one non-skip label
    annotators: int = 0
    choices: dict[str, int] = field(default_factory=dict)  # labels per choice (A, B, rank, tie, both_bad, skip)
    pairs: int = 0  # (chosen, rejected) pairs made
    tie: int = 0  # candidate pairs judged equally good: no pair
    both_bad: int = 0  # candidate pairs judged both bad: no pair
    disagreement: int = 0  # candidate pairs the annotators ordered differently: no pair
    identical: int = 0  # candidate pairs with the same text: no pair

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _verdicts(labels: Sequence[dict[str, Any]], x: str, y: str) -> list[str]:
    """Each non-skip label's verdict on the candidate pair (x, y): ``x``, ``y``, ``tie`` or ``both_bad``."""
    out = []
    for lab in labels:
        if lab["choice"] in RANKED:
            order = lab["ranking"]
            out.append("x" if order.index(x) < order.index(y) else "y")
        elif lab["choice"] in ("tie", "both_bad"):
            out.append(lab["choice"])
    return out


def preference_pairs(labels: Iterable[dict[str, Any]]) -> tuple[list[dict[str, str]], PairCounts]:
    """``{id, question, chosen, rejected}`` pairs from validated labels (module docstring), and their counts.

    Pairs come out in the order the items were first labelled, candidates in their own order within an item."""
    counts = PairCounts()
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    choices: Counter = Counter()
    annotators = set()
    for lab in labels:
        counts.labels += 1
        choices[lab["choice"]] += 1
        annotators.add(lab["annotator"])
        if lab["choice"] != "skip":
            by_item[lab["item"]].append(lab)
    counts.choices = {c: choices[c] for c in CHOICES if choices[c]}
    counts.annotators = len(annotators)
    counts.items = len(by_item)
    pairs: list[dict[str, str]] = []
    for item, labs in by_item.items():
        texts = {c["id"]: c["text"] for c in labs[0]["candidates"]}
        for x, y in itertools.combinations(texts, 2):
            verdicts = _verdicts(labs, x, y)
            if texts[x] == texts[y]:
                counts.identical += 1
            elif len(set(verdicts)) > 1:
                counts.disagreement += 1
            elif verdicts[0] in ("tie", "both_bad"):
                setattr(counts, verdicts[0], getattr(counts, verdicts[0]) + 1)
            else:
                chosen, rejected = (x, y) if verdicts[0] == "x" else (y, x)
                pairs.append({"id": f"{item}:{chosen}>{rejected}", "question": labs[0]["question"],
                              "chosen": texts[chosen], "rejected": texts[rejected]})
    counts.pairs = len(pairs)
    return pairs, counts


# --------------------------------------------------------------------------------------------------------------
# Agreement


def category(label: dict[str, Any]) -> str:
    """A label's verdict in the candidates' own order (the shown order differs between annotators)."""
    if label["choice"] not in RANKED:
        return label["choice"]
    first = label["ranking"][0]
    ids = [c["id"] for c in label["candidates"]]
    if len(ids) == 2:
        return "first" if first == ids[0] else "second"
    return first


def cohens_kappa(pairs: Sequence[tuple[str, str]]) -> tuple[float | None, float | None, float | None]:
    """(observed agreement, chance agreement, κ) of (rater 1, rater 2) category pairs; Nones when undefined."""
    n = len(pairs)
    if not n:
        return None, None, None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return observed, expected, kappa


def agreement(labels: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Cohen's κ over the items two annotators labelled (module docstring), overall and per annotator pair.

    ``labels`` must be in the order they were made (a labels file is)."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        if lab["choice"] != "skip" and all(lab["annotator"] != o["annotator"] for o in by_item[lab["item"]]):
            by_item[lab["item"]].append(lab)
    doubles = [(labs[0], labs[1]) for labs in by_item.values() if len(labs) >= 2]
    observed, expected, kappa = cohens_kappa([(category(a), category(b)) for a, b in doubles])
    per_pair: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for a, b in doubles:
        names = tuple(sorted((a["annotator"], b["annotator"])))
        per_pair[names].append((category(a), category(b)))  # type: ignore[index]
    by_pair = []
    for names, cats in sorted(per_pair.items()):
        o, _, k = cohens_kappa(cats)
        by_pair.append({"annotators": list(names), "items": len(cats), "observed": o, "kappa": k})
    return {"items": len(doubles), "observed": observed, "expected": expected, "kappa": kappa, "by_pair": by_pair}


def label_summary(labels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Everything ``thinktune label stats`` and the report show: counts, per annotator, pairs, agreement."""
    _, counts = preference_pairs(labels)
    per_annotator: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, list[float]] = defaultdict(list)
    for lab in labels:
        per_annotator[lab["annotator"]][lab["choice"]] += 1
        if isinstance(lab.get("seconds"), (int, float)):
            seconds[lab["annotator"]].append(float(lab["seconds"]))
    annotators = {}
    for name in sorted(per_annotator):
        c = per_annotator[name]
        secs = sorted(seconds[name])
        annotators[name] = {"labels": sum(c.values()), **{k: c[k] for k in CHOICES if c[k]},
                            "median_seconds": secs[len(secs) // 2] if secs else None}
    verdict_seen = sum(bool(lab.get("verdict_seen")) for lab in labels)
    return {**counts.to_dict(), "verdict_seen": verdict_seen, "per_annotator": annotators,
            "agreement": agreement(labels)}


def trl_preference_rows(pairs: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Pairs in TRL's conversational preference format: ``prompt`` a user turn, ``chosen`` / ``rejected`` the
    assistant's turn (TRL's trainers apply the chat template; ``prompt`` rows pass through as given)."""
    out = []
    for p in pairs:
        prompt = p["prompt"] if "prompt" in p else [{"role": "user", "content": p["question"]}]
        out.append({"id": p["id"], "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": p["chosen"]}],
                    "rejected": [{"role": "assistant", "content": p["rejected"]}]})
    return out
