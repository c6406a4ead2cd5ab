"""Canonical records and their on-disk form (JSONL).

One record per example (docs/ARCHITECTURE.md, "Data model")::

    {"id": "...", "question": "...", "reasoning": "step 1\\nstep 2", "answer": "18",
     "answerable": true, "task": "gsm8k", "meta": {}}

Every loader produces :class:`Record`; every stage consumes it. Reading is validating: a bad row raises
:class:`DataError` naming the file, the line and the field, never a bare traceback.

Two ways to read:

- :func:`read_records` raises on the first bad row (recipes: a broken input file stops the run).
- :func:`scan_records` never raises on bad rows: it yields ``(line, Record)`` for good rows and
  ``(line, Problem)`` for every problem (bad UTF-8, bad JSON, not an object, missing / empty / non-string fields,
  duplicate ids, over-long rows), so ``thinktune data validate`` can report them all with file:line and field.
  It streams (one row in memory at a time, plus one small int per id for the duplicate check).

What counts as bad JSON beyond Python's own parser (NaN / Infinity, over-long integers, nesting deeper than 100
levels, UTF-16 files) is data/jsonsafe.py's policy, applied by every reader here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thinktune.data.jsonsafe import MAX_DEPTH, JsonProblem, encoding_problem, loads, strip_utf8_bom, value_problem
from thinktune.errors import ThinktuneError
from thinktune.io import FileGroup, atomic_write_text, temp_file


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
    if problem := value_problem(obj):
        raise DataError(path, line, problem[0] or None, problem[1])
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
            if lineno == 1:
                if problem := encoding_problem(raw):
                    raise DataError(p, None, None, problem)
                raw = strip_utf8_bom(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(p, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not text.strip():
                continue
            try:
                yield lineno, loads(text)
            except JsonProblem as e:
                raise DataError(p, lineno, None, e.message) from None


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


# --------------------------------------------------------------------------------------------------------------
# Non-raising validation (thinktune data validate, the data stage's curate pass)

MAX_ROW_BYTES = 1_000_000  # default limit for one JSONL line; longer rows are reported, not parsed
REQUIRED_TEXT = ("id", "question", "answer")  # must be present, strings, and not blank


@dataclass(frozen=True)
class Problem:
    """One problem found in a data file. ``kind`` is a stable short name used for counting (stats.json)."""

    path: str
    line: int | None
    field: str | None
    message: str
    kind: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"

    def to_error(self) -> DataError:
        return DataError(self.path, self.line, self.field, self.message)


_KIND_BY_PYDANTIC = {"missing": "missing_field", "string_type": "not_a_string", "extra_forbidden": "unknown_field",
                     "string_too_short": "empty_field", "value_error": "empty_field", "bool_type": "wrong_type",
                     "bool_parsing": "wrong_type", "dict_type": "wrong_type"}


def check_record(obj: Any, path: str, line: int | None) -> tuple[Record | None, list[Problem]]:
    """Validate one decoded object; every problem is returned (not just the first), nothing raises."""
    if not isinstance(obj, dict):
        return None, [Problem(path, line, None, f"expected a JSON object, got {type(obj).__name__}", "not_an_object")]
    problems = []
    for key in REQUIRED_TEXT:  # readable messages for the common cases, before pydantic's
        v = obj.get(key)
        if key not in obj or v is None:
            problems.append(Problem(path, line, key, "required field is missing", "missing_field"))
        elif not isinstance(v, str):
            problems.append(Problem(path, line, key, f"must be a string, got {type(v).__name__}", "not_a_string"))
        elif not v.strip():
            problems.append(Problem(path, line, key, "must not be empty", "empty_field"))
    if problems:
        return None, problems
    if problem := value_problem(obj):
        return None, [Problem(path, line, problem[0] or None, problem[1], "invalid_field")]
    try:
        return Record.model_validate(obj), []
    except ValidationError as err:
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or None
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(Problem(path, line, field, msg, _KIND_BY_PYDANTIC.get(e["type"], "invalid_field")))
        return None, problems


def scan_lines(path: str | os.PathLike, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, decoded object)`` or ``(line, Problem)`` per non-blank line; raises only if the file is missing."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, None, "file not found" if not p.exists() else "not a regular file")
    sp = str(p)
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1:
                if problem := encoding_problem(raw):
                    yield 1, Problem(sp, None, None, problem, "bad_encoding")
                    return
                raw = strip_utf8_bom(raw)
            if not raw.strip():
                continue
            yield lineno, _decode_line(raw, sp, lineno, max_row_bytes)


def _decode_line(raw: bytes, sp: str, lineno: int, max_row_bytes: int) -> Any:
    """One JSONL line → decoded object, or the Problem that stops it (over-long, bad UTF-8, bad JSON)."""
    if len(raw) > max_row_bytes:
        return Problem(sp, lineno, None, f"row is {len(raw):,} bytes, over the {max_row_bytes:,}-byte limit "
                       "(max_row_bytes)", "row_too_long")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Problem(sp, lineno, None, f"not valid UTF-8 ({e.reason} at byte {e.start})", "bad_utf8")
    try:
        return loads(text)
    except JsonProblem as e:
        return Problem(sp, lineno, None, e.message, "bad_json")


def scan_records(path: str | os.PathLike, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Record | Problem]]:
    """Stream a canonical JSONL file: ``(line, Record)`` for good rows, ``(line, Problem)`` for each problem.

    A duplicate id is a problem on the later line (the first occurrence is kept). Never raises on bad rows.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, None, "file not found" if not p.exists() else "not a regular file")
    sp = str(p)
    first_line: dict[str, int] = {}
    fast = Record.model_validate_json
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1:
                if problem := encoding_problem(raw):
                    yield 1, Problem(sp, None, None, problem, "bad_encoding")
                    return
                raw = strip_utf8_bom(raw)
            try:  # fast path: parse + validate in pydantic-core; any doubt goes through the located slow path
                rec = fast(raw) if len(raw) <= max_row_bytes else None
                if rec is not None and (not rec.id.strip() or not rec.answer.strip()
                                        or (rec.meta and value_problem(rec.meta, MAX_DEPTH - 1))):
                    rec = None  # pydantic-core reads NaN / Infinity as floats: the slow path reports them
            except ValidationError:
                rec = None
            if rec is None:
                if not raw.strip():
                    continue
                obj = _decode_line(raw, sp, lineno, max_row_bytes)
                if isinstance(obj, Problem):
                    yield lineno, obj
                    continue
                rec, problems = check_record(obj, sp, lineno)
                if rec is None:
                    for pr in problems:
                        yield lineno, pr
                    continue
            first = first_line.setdefault(rec.id, lineno)
            if first != lineno:
                yield lineno, Problem(sp, lineno, "id", f"duplicate id {rec.id!r} (first on line {first})",
                                      "duplicate_id")
                continue
            yield lineno, rec


def write_jsonl(path: str | os.PathLike, rows: Iterable[BaseModel | dict]) -> int:
    """Write rows as JSONL atomically (temp file + rename). Returns the number of rows."""
    lines = []
    for row in rows:
        obj = row.model_dump() if isinstance(row, BaseModel) else row
        lines.append(json.dumps(obj, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


class JsonlWriter:
    """Stream rows to ``path`` atomically: a temp file beside it, renamed into place only on a clean exit.

    ``with JsonlWriter(out) as w: w.write(record)`` — an exception inside the block removes the temp file, so a
    failed command never leaves half-written output (the old file, if any, is untouched).
    """

    def __init__(self, path: str | os.PathLike, group: FileGroup | None = None):
        self.path = Path(path)
        self.group = group  # write into the group's temp for `path`; the group commits it with its siblings
        self.count = 0
        self._fh = None
        self._tmp: str | None = None
        self._cm = None

    def __enter__(self) -> JsonlWriter:
        if self.group is not None:
            self._tmp = self.group.path_for(self.path)
            self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
            self._cm = contextlib.nullcontext()
            return self
        self._cm = temp_file(self.path)
        self._fh, self._tmp = self._cm.__enter__()
        return self

    def write(self, row: BaseModel | dict) -> None:
        if isinstance(row, BaseModel):
            self._fh.write(row.model_dump_json() + "\n")  # pydantic-core: UTF-8 kept as is, like ensure_ascii=False
        else:
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None and self.group is None:
                os.replace(self._tmp, self.path)
        finally:
            self._cm.__exit__(exc_type, exc, tb)
