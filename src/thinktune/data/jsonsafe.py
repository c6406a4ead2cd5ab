"""Strict JSON decoding for data files: what Python's ``json`` accepts but a dataset must not hold.

Every data loader (JSONL, JSON, CSV, Parquet, ``datasets``) ends in :func:`thinktune.data.records.check_record`,
and every JSON text goes through :func:`loads`, so ``data validate``, ``convert``, ``curate``, ``stats`` and a
recipe's ``train_file`` agree on what a bad row is. Policy (each a located problem, never a silent change):

1. ``NaN`` / ``Infinity`` / ``-Infinity`` are not JSON (RFC 8259); Python reads them as floats and pydantic writes
   them back as ``null``, silently changing the data. A row with one, or with a non-finite float from Parquet /
   ``datasets``, is reported (``bad_json`` / ``invalid_field``).
2. Integers longer than Python's 4,300-digit conversion limit raise ``ValueError`` in ``json.loads``; such a row is
   reported (``bad_json``), not a traceback.
3. Values nested deeper than :data:`MAX_DEPTH` are reported: pydantic parses JSON up to ~200 levels and writes up to
   ~250, so deeper rows would validate and then crash ``convert`` (``invalid_field``).
4. A string with a lone surrogate (``"\\ud800"`` is valid JSON but not Unicode) is reported: it cannot be written
   as UTF-8, so it would crash the writer of ``convert`` / ``curate`` (``invalid_field``).
5. A UTF-16 / UTF-32 file (byte-order mark) is named as such instead of as hundreds of bad-UTF-8 lines; a UTF-8
   byte-order mark is skipped.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 100  # object / array levels in one row (a record's meta is usually 1-3 deep)

_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))


class JsonProblem(ValueError):
    """Why a JSON text was refused; ``column`` when known."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.message, self.column = message, column


def reject_constant(name: str) -> Any:
    """``parse_constant`` hook of :class:`json.JSONDecoder`: NaN / Infinity are an error."""
    raise JsonProblem(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity); write null or a string")


DECODER = json.JSONDecoder(parse_constant=reject_constant)


def describe(e: Exception) -> str:
    """The message for an exception raised while decoding JSON with :data:`DECODER`."""
    if isinstance(e, JsonProblem):
        return e.message
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} (column {e.colno})"
    if isinstance(e, RecursionError):
        return "invalid JSON: nested too deeply"
    if "digits" in str(e):  # "Exceeds the limit (4300 digits) for integer string conversion: ..."
        return f"invalid JSON: an integer has more than {sys.get_int_max_str_digits():,} digits"
    return f"invalid JSON: {e}"


def loads(text: str | bytes) -> Any:
    """``json.loads`` with the policy above; raises :class:`JsonProblem` with a readable message."""
    try:
        obj = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and JsonProblem are ValueErrors
        raise JsonProblem(describe(e), getattr(e, "colno", None)) from None
    problem = value_problem(obj)
    if problem:
        raise JsonProblem(f"{problem[0] + ': ' if problem[0] else ''}{problem[1]}")
    return obj


def value_problem(obj: Any, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """(dotted field, message) of the first value that breaks the policy, or None. Iterative: any depth is safe."""
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return where, "contains a lone surrogate (\\ud800-\\udfff escape), which is not valid Unicode"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return where, f"{value} is not a finite number (JSON has no NaN or Infinity)"
        elif isinstance(value, (dict, list)):
            if depth >= max_depth:
                return where, f"nested deeper than {max_depth} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k):
                    return where, f"the key {ascii(k)} contains a lone surrogate, which is not valid Unicode"
                path = f"{where}.{k}" if where else str(k)
                if isinstance(v, (dict, list, float, str)):
                    stack.append((v, path, depth + 1))
    return None


def encoding_problem(head: bytes) -> str | None:
    """A byte-order mark of an encoding other than UTF-8 at the start of a file, named."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"the file is {name}-encoded; save it as UTF-8"
    return None


def strip_utf8_bom(raw: bytes) -> bytes:
    return raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
