"""Loaders: any supported source → a stream of canonical records (data/records.py), with located problems.

Sources (``thinktune data convert SOURCE --format gsm8k -o out.jsonl``, or a recipe's ``data.sources``):

- files: ``.jsonl`` / ``.ndjson``, ``.json`` (an array of objects, or an object holding one under ``data`` /
  ``rows`` / ``examples`` / ``train``), ``.csv`` / ``.tsv``, ``.parquet``;
- a Hugging Face ``datasets`` dataset: a directory written by ``save_to_disk``, or any name / local directory
  ``datasets.load_dataset`` accepts (``hf: openai/gsm8k``; offline unless the user's cache has it);
- a reasoning-gym dataset by name with size / seed / config (data/tasks.py ``ReasoningGym``; its scorer verifies).

Formats (``format:``):

- ``canonical``: the record fields themselves (after ``fields`` renaming); ``id`` is required unless ``id_prefix`` is set.
- ``gsm8k``: ``{question, answer}`` where ``answer`` is a worked solution ending in ``#### N`` (openai/
  grade-school-math). The ``#### N`` line becomes ``answer`` (thousands separators removed: ``1,000`` → ``1000``);
  the lines before it become ``reasoning``, with the ``<<48/2=24>>`` calculator annotations stripped by default
  (``strip_calculator``), since they are tool-call markup, not reasoning.
- ``math``: ``{problem, solution}`` (Hendrycks et al., MATH, arXiv 2103.03874): ``answer`` is the content of the
  last ``\\boxed{}`` / ``\\fbox{}`` in the solution and ``reasoning`` is the solution; ``unique_id`` becomes ``id``.
- ``auto`` (default): decided once from the first row's keys.

``fields`` maps canonical names to source columns (``{question: prompt, answer: gold}``; dotted names reach into
nested objects). Columns that are not mapped are kept in ``meta``. Rows without an id get ``<id_prefix>-<row>``
(row = 0-based position in the source), which is stable when rows are appended.

Every loader yields ``(line, Record)`` or ``(line, Problem)`` and never raises on a bad row; "line" is the text line
for JSONL / JSON / CSV and the 1-based row number for Parquet and ``datasets``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinktune.data.jsonsafe import DECODER, describe, encoding_problem, strip_utf8_bom
from thinktune.data.records import (
    MAX_ROW_BYTES,
    DataError,
    Problem,
    Record,
    check_record,
    scan_lines,
)

FORMATS = ("auto", "canonical", "gsm8k", "math")
FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_CALC = re.compile(r"<<[^<>]*>>")
_CANONICAL = {"id", "question", "reasoning", "answer", "answerable", "task", "meta"}


@dataclass
class SourceSpec:
    """Where records come from and how to read them (the recipe's ``data.sources`` items map onto this)."""

    path: str | None = None  # a file, or a directory written by datasets' save_to_disk
    hf: str | None = None  # a datasets name or local dataset directory for datasets.load_dataset
    hf_config: str | None = None  # datasets configuration name ("main" for openai/gsm8k)
    split: str = "train"  # datasets split
    reasoning_gym: str | None = None  # a reasoning-gym dataset name
    size: int = 1000  # reasoning-gym: how many items
    seed: int = 0  # reasoning-gym: generator seed
    config: dict[str, Any] = field(default_factory=dict)  # reasoning-gym dataset config (difficulty knobs)
    format: str = "auto"  # auto | canonical | gsm8k | math
    fields: dict[str, str] = field(default_factory=dict)  # canonical name -> source column
    task: str | None = None  # task tag for every record (default: the record's own, else gsm8k / math / source name)
    id_prefix: str | None = None  # ids for rows without one: <id_prefix>-<row>; default: the source's name
    strip_calculator: bool = True  # gsm8k: remove <<a*b=c>> calculator annotations from the reasoning
    limit: int | None = None  # read only the first N rows
    max_row_bytes: int = MAX_ROW_BYTES  # JSONL rows longer than this are reported, not parsed

    def name(self) -> str:
        if self.reasoning_gym:
            return f"rg-{self.reasoning_gym}"
        if self.path:
            p = Path(self.path)
            return (p.stem if p.is_file() else p.name).replace("_", "-")
        return (self.hf or "source").rstrip("/").split("/")[-1].replace("_", "-")

    def describe(self) -> str:
        return self.path or (f"hf:{self.hf}" if self.hf else f"reasoning_gym:{self.reasoning_gym}")


# --------------------------------------------------------------------------------------------------------------
# Raw rows: (line, dict | Problem)


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array (or of the array under a well-known key), each with the line it starts on."""
    sp = str(path)
    raw = path.read_bytes()
    if problem := encoding_problem(raw[:4]):
        yield 0, Problem(sp, None, None, problem, "bad_encoding")
        return
    try:
        text = strip_utf8_bom(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        yield 1, Problem(sp, 1, None, f"not valid UTF-8 ({e.reason} at byte {e.start})", "bad_utf8")
        return
    dec = DECODER

    def bad(e: Exception, at: int) -> tuple[int, Problem]:
        line = e.lineno if isinstance(e, json.JSONDecodeError) else text.count("\n", 0, at) + 1
        return line, Problem(sp, line, None, describe(e), "bad_json")

    i = len(text) - len(text.lstrip())
    if not text.strip():
        yield 0, Problem(sp, None, None, "the file is empty", "empty_file")
        return
    if text[i : i + 1] == "{":
        try:
            obj, _ = dec.raw_decode(text, i)
        except (ValueError, RecursionError) as e:
            yield bad(e, i)
            return
        key = next((k for k in ("data", "rows", "examples", "train") if isinstance(obj.get(k), list)), None)
        if key is None:  # one object = one row
            yield text.count("\n", 0, i) + 1, obj
            return
        i = _member_value_at(text, i, key, dec)  # re-scan the array to get line numbers per element
    if text[i : i + 1] != "[":
        yield 1, Problem(sp, 1, None, "expected a JSON array of objects (or JSONL: use a .jsonl name)", "bad_json")
        return
    i += 1
    line, pos = 1, 0
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text):
            yield text.count("\n") + 1, Problem(sp, text.count("\n") + 1, None, "invalid JSON: unterminated array",
                                                "bad_json")
            return
        line += text.count("\n", pos, i)
        pos = i
        if text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except (ValueError, RecursionError) as e:
            yield bad(e, i)
            return
        yield line, obj


def _member_value_at(text: str, i: int, key: str, dec: json.JSONDecoder) -> int:
    """Where the value of top-level member ``key`` of the object starting at ``i`` begins (the last one, as
    ``json.loads`` keeps the last of duplicate keys). Walks the members themselves: a string value that happens to be
    ``"data"`` (``{"kind": "data", "data": [...]}``) is not mistaken for the key."""
    ws = " \t\r\n"
    i += 1
    found = None
    while True:
        while text[i] in ws:
            i += 1
        if text[i] == "}":
            break
        name, i = dec.raw_decode(text, i)
        while text[i] in ws:
            i += 1
        i += 1  # ':'
        while text[i] in ws:
            i += 1
        if name == key:
            found = i
        _, i = dec.raw_decode(text, i)
        while text[i] in ws:
            i += 1
        if text[i] == ",":
            i += 1
    assert found is not None  # the object was decoded already and holds the key
    return found


def _csv_rows(path: Path, delimiter: str, max_field_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Any]]:
    """Rows of a CSV / TSV file. A field may be as long as ``max_field_bytes`` (Python's csv default is 128 KB); a
    longer one, or malformed CSV, is reported at its line and ends the file (the parser cannot resync)."""
    sp = str(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if problem := encoding_problem(head):
        yield 0, Problem(sp, None, None, problem, "bad_encoding")
        return
    if csv.field_size_limit() < max_field_bytes:
        csv.field_size_limit(max_field_bytes)  # process-wide; only ever raised
    reader, start = None, 2
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            for row in reader:
                if None in row:  # more cells than header columns
                    yield start, Problem(sp, start, None, f"{len(row[None])} more cells than the header has columns",
                                         "bad_csv")
                else:
                    yield start, {k: v for k, v in row.items() if v is not None}
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        yield 0, Problem(sp, None, None, f"not valid UTF-8 ({e.reason}); re-save the file as UTF-8", "bad_utf8")
    except csv.Error as e:
        line = start if reader is not None else None  # the line the failing record starts on
        if "field larger than field limit" in str(e):
            msg = f"a field is longer than {csv.field_size_limit():,} characters (max_row_bytes); the rest of the file is not read"
        else:
            msg = f"invalid CSV: {e}; the rest of the file is not read"
        yield line or 0, Problem(sp, line, None, msg, "bad_csv")


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        yield 0, Problem(str(path), None, None, f"cannot read Parquet: {e}", "bad_parquet")
        return
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _hf_rows(spec: SourceSpec) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError(spec.describe(), None, None, "the datasets package is not installed") from None
    target = spec.path or spec.hf
    local = Path(target)
    saved = local.is_dir() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists())
    try:
        if spec.path or saved:
            ds = datasets.load_from_disk(str(target))
            if isinstance(ds, datasets.DatasetDict):
                if spec.split not in ds:
                    raise DataError(target, None, None, f"no split {spec.split!r}; splits: {', '.join(ds)}")
                ds = ds[spec.split]
        else:
            ds = datasets.load_dataset(spec.hf, spec.hf_config, split=spec.split)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types (missing, offline, bad config)
        raise DataError(target, None, None, f"cannot load dataset: {type(e).__name__}: {e}") from None
    for n, row in enumerate(ds, start=1):
        yield n, row


def raw_rows(spec: SourceSpec) -> Iterator[tuple[int, Any]]:
    """The source's rows as decoded objects (or Problems), before format conversion."""
    if spec.path:
        p = Path(spec.path)
        if p.is_dir():
            yield from _hf_rows(spec)
            return
        if not p.is_file():
            raise DataError(p, None, None, "file not found")
        suffix = p.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            yield from scan_lines(p, spec.max_row_bytes)
        elif suffix == ".json":
            yield from _json_rows(p)
        elif suffix in (".csv", ".tsv"):
            yield from _csv_rows(p, "\t" if suffix == ".tsv" else ",", spec.max_row_bytes)
        elif suffix == ".parquet":
            yield from _parquet_rows(p)
        else:
            raise DataError(p, None, None, f"unknown file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")
    elif spec.hf:
        yield from _hf_rows(spec)
    else:
        raise DataError("<source>", None, None, "a source needs one of path, hf or reasoning_gym")


# --------------------------------------------------------------------------------------------------------------
# Formats


def strip_calculator(text: str) -> str:
    """Remove GSM8K calculator annotations: ``48/2 = <<48/2=24>>24`` → ``48/2 = 24``."""
    return _CALC.sub("", text)


def split_gsm8k(solution: str, strip_calc: bool = True) -> tuple[str, str] | None:
    """(reasoning, answer) of a GSM8K solution, or None when it has no ``#### N`` line."""
    head, sep, tail = solution.rpartition("####")
    if not sep or not tail.strip():
        return None
    answer = tail.strip()
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", answer):
        answer = answer.replace(",", "")
    reasoning = strip_calculator(head) if strip_calc else head
    return reasoning.strip(), answer


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (the answer layer's extractor); None if there is none."""
    from thinktune.data.answers import boxed_contents

    found = boxed_contents(text)
    return found[-1] if found else None


def _lookup(obj: dict[str, Any], key: str) -> Any:
    cur: Any = obj
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def detect_format(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "canonical"
    if "problem" in obj and "solution" in obj and "question" not in obj:
        return "math"
    ans = obj.get("answer")
    if "question" in obj and isinstance(ans, str) and "####" in ans and "reasoning" not in obj:
        return "gsm8k"
    return "canonical"


def convert_row(obj: Any, fmt: str, spec: SourceSpec, path: str, line: int, row: int) -> tuple[Record | None, list[Problem]]:
    """One raw row → a validated Record (or the problems that stop it)."""
    if not isinstance(obj, dict):
        return None, [Problem(path, line, None, f"expected an object, got {type(obj).__name__}", "not_an_object")]
    mapped = {k: _lookup(obj, v) for k, v in spec.fields.items()}
    used = set(spec.fields.values())
    rest = {k: v for k, v in obj.items() if k not in used and k not in mapped}
    src = {**rest, **{k: v for k, v in mapped.items() if v is not None}}
    out: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    if fmt == "gsm8k":
        sol = src.pop("answer", None)
        out["question"] = src.pop("question", None)
        if isinstance(sol, str):
            parts = split_gsm8k(sol, spec.strip_calculator)
            if parts is None:
                return None, [Problem(path, line, "answer", "GSM8K solution has no '#### <answer>' line",
                                      "no_final_answer")]
            out["reasoning"], out["answer"] = parts
        else:
            out["answer"] = sol
    elif fmt == "math":
        sol = src.pop("solution", None)
        out["question"] = src.pop("problem", src.pop("question", None))
        given = src.pop("answer", None)
        if isinstance(sol, str):
            boxed = last_boxed(sol)
            if boxed is None:
                return None, [Problem(path, line, "solution", "MATH solution has no \\boxed{} answer",
                                      "no_final_answer")]
            out["reasoning"], out["answer"] = sol.strip(), boxed
            if given is not None and str(given).strip() != boxed:
                meta["answer_field"] = given
        else:
            out["reasoning"], out["answer"] = sol, given
        if "id" not in src and "unique_id" in src:
            out["id"] = str(src.pop("unique_id"))
    for key in _CANONICAL:
        if key in src and key not in out:
            out[key] = src.pop(key)
    if isinstance(out.get("meta"), dict):
        meta = {**out["meta"], **meta}
    elif "meta" in out:
        return None, [Problem(path, line, "meta", f"must be an object, got {type(out['meta']).__name__}",
                              "wrong_type")]
    meta.update({k: v for k, v in src.items() if _is_jsonable(v)})
    out["meta"] = meta
    if out.get("id") is None and (fmt != "canonical" or spec.id_prefix or "id" in spec.fields):
        out["id"] = f"{spec.id_prefix or spec.name()}-{row}"  # canonical rows must carry their own id
    elif isinstance(out.get("id"), int) and not isinstance(out["id"], bool) and fmt != "canonical":
        out["id"] = str(out["id"])
    if out.get("reasoning") is None:
        out.pop("reasoning", None)
    if spec.task:
        out["task"] = spec.task
    elif not out.get("task"):
        out["task"] = fmt if fmt in ("gsm8k", "math") else spec.name()
    if fmt != "canonical" and isinstance(out.get("answer"), (int, float)) and not isinstance(out["answer"], bool):
        out["answer"] = str(out["answer"])  # numeric gold columns in CSV / Parquet / datasets
    return check_record(out, path, line)


def _is_jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def iter_source(spec: SourceSpec) -> Iterator[tuple[int, Record | Problem]]:
    """Stream one source as canonical records: ``(line, Record)`` or ``(line, Problem)``. Duplicate ids are
    reported as problems on the later line. Raises DataError only for a source that cannot be opened at all."""
    if spec.format not in FORMATS:
        raise DataError(spec.describe(), None, "format", f"unknown format {spec.format!r}; use one of {', '.join(FORMATS)}")
    if spec.reasoning_gym:
        from thinktune.data.tasks import ReasoningGym

        try:
            recs = ReasoningGym().generate(spec.size, spec.seed, dataset=spec.reasoning_gym, config=spec.config,
                                           id_prefix=spec.id_prefix)
        except ValueError as e:
            raise DataError(spec.describe(), None, None, str(e)) from None
        for i, r in enumerate(recs, start=1):
            yield i, r
        return
    path = spec.describe()
    fmt = None if spec.format == "auto" else spec.format
    first_line: dict[str, int] = {}
    row = 0
    for line, obj in raw_rows(spec):
        if spec.limit is not None and row >= spec.limit:
            break
        if isinstance(obj, Problem):
            yield line, obj
            row += 1
            continue
        if fmt is None and isinstance(obj, dict):  # decided by the first object; other rows are problems below
            fmt = detect_format({**obj, **{k: _lookup(obj, v) for k, v in spec.fields.items()}})
        rec, problems = convert_row(obj, fmt or "canonical", spec, path, line, row)
        row += 1
        if rec is None:
            for pr in problems:
                yield line, pr
            continue
        first = first_line.setdefault(rec.id, line)
        if first != line:
            yield line, Problem(path, line, "id", f"duplicate id {rec.id!r} (first on line {first})", "duplicate_id")
            continue
        yield line, rec


def load_records(spec: SourceSpec, strict: bool = True) -> tuple[list[Record], list[Problem]]:
    """All records of a source in memory. ``strict``: raise the first problem as a DataError."""
    records, problems = [], []
    for _, item in iter_source(spec):
        if isinstance(item, Problem):
            if strict:
                raise item.to_error()
            problems.append(item)
        else:
            records.append(item)
    return records, problems

