"""Preference-pair files for the DPO and reward-model stages: rows ``{"id", "question", "chosen", "rejected"}``
(docs/ARCHITECTURE.md, "Data model"), or a labels file written by ``thinktune label`` (data/labels.py), whose
labels become pairs with the ties, both-bad and disagreeing judgements counted and left out.

``question`` goes through the model's chat template; a row may give ``prompt`` instead (used verbatim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinktune.data.labels import check_label, is_label_row, label_summary, preference_pairs
from thinktune.data.records import DataError, iter_jsonl


def read_pairs_file(path: str | Path) -> list[dict[str, str]]:
    """The pairs of a pairs file or a labels file (:func:`load_pairs`)."""
    return load_pairs(path)[0]


def load_pairs(path: str | Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(pairs, what they came from). A labels file (its first row is a label) gives the pairs its labels agree on
    and the label counts and agreement (data/labels.py); a pairs file is validated row by row. Raises
    :class:`DataError` naming ``file:line: field``, also when a labels file yields no pair."""
    first = next(iter_jsonl(path), (None, None))[1]
    if is_label_row(first):
        labels = [check_label(obj, path, line) for line, obj in iter_jsonl(path)]
        pairs, _ = preference_pairs(labels)
        summary = label_summary(labels)
        if not pairs:
            raise DataError(path, None, None, f"no preference pairs in {summary['labels']} labels "
                                              f"({summary['tie']} tie, {summary['both_bad']} both bad, "
                                              f"{summary['disagreement']} disagreeing)")
        return pairs, {"source": "labels", "file": str(path), **summary}
    pairs = _read_pair_rows(path)
    return pairs, {"source": "file", "file": str(path), "pairs": len(pairs)}


def _read_pair_rows(path: str | Path) -> list[dict[str, str]]:
    """Validate a pairs JSONL: each row has exactly one of question/prompt, plus chosen and rejected (non-empty,
    different strings) and an optional string id. Raises :class:`DataError` naming ``file:line: field``."""
    rows: list[dict[str, str]] = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise DataError(path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - {"id", "question", "prompt", "chosen", "rejected"})
        if unknown:
            raise DataError(path, lineno, unknown[0], "unknown field (expected id, question or prompt, chosen, "
                                                      "rejected)")
        has = [k for k in ("question", "prompt") if k in obj]
        if len(has) != 1:
            raise DataError(path, lineno, "question", "set exactly one of question or prompt"
                            if has else "required field is missing (or give prompt)")
        for key in (has[0], "chosen", "rejected"):
            if key not in obj:
                raise DataError(path, lineno, key, "required field is missing")
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise DataError(path, lineno, key, "must be a non-empty string")
        if obj["chosen"] == obj["rejected"]:
            raise DataError(path, lineno, "rejected", "identical to chosen")
        if "id" in obj and not isinstance(obj["id"], str):
            raise DataError(path, lineno, "id", "must be a string")
        rows.append({"id": obj.get("id", f"line-{lineno}"), has[0]: obj[has[0]], "chosen": obj["chosen"],
                     "rejected": obj["rejected"]})
    if not rows:
        raise DataError(path, None, None, "no pairs (the file is empty)")
    return rows
