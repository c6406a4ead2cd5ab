"""Canonical records and their on-disk form (JSONL).

One record per example (DESIGN.md, "Data model")::

    {"id": "...", "question": "...", "reasoning": "step 1\\nstep 2", "answer": "18",
     "answerable": true, "task": "gsm8k", "meta": {}}

Every loader produces :class:`Record`; every stage consumes it. Reading is validating: a bad row raises
:class:`DataError` naming the file, the line and the field, never a bare traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thinktune.errors import ThinktuneError
from thinktune.io import atomic_write_text


class DataError(ThinktuneError, ValueError):
    """A data problem located in a file: ``path:line: field: message``."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


class Record(BaseModel):
    """One canonical example. ``reasoning`` may be empty (GRPO and audit need only question + answer)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    reasoning: str = ""
    answer: str
    answerable: bool = True  # False: `answer` holds the abstain string, the original gold is meta.original_answer
    task: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


def _first_error(err: ValidationError) -> tuple[str, str]:
    e = err.errors()[0]
    field = ".".join(str(p) for p in e["loc"]) or None
    return field or "", e["msg"]


def parse_record(obj: Any, path: str | os.PathLike = "<memory>", line: int | None = None) -> Record:
    """Validate one decoded JSON object as a Record, raising DataError with its location."""
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
    try:
        return Record.model_validate(obj)
    except ValidationError as err:
        field, msg = _first_error(err)
        raise DataError(path, line, field, msg) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded object) for each non-blank line; DataError on bad UTF-8 or bad JSON."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, None, "file not found")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(p, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(p, lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None


def read_records(path: str | os.PathLike) -> list[Record]:
    """Read a canonical JSONL file, validating every row and rejecting duplicate ids."""
    records: list[Record] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        rec = parse_record(obj, path, lineno)
        if rec.id in seen:
            raise DataError(path, lineno, "id", f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = lineno
        records.append(rec)
    return records


def write_jsonl(path: str | os.PathLike, rows: Iterable[BaseModel | dict]) -> int:
    """Write rows as JSONL atomically (temp file + rename). Returns the number of rows."""
    lines = []
    for row in rows:
        obj = row.model_dump() if isinstance(row, BaseModel) else row
        lines.append(json.dumps(obj, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)
