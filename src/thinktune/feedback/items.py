"""What people label: items (a question and the candidate completions shown for it), from one of three sources.

- a **run** directory: each audited model's held-out completion (``audit/<model>/examples.jsonl``), one item per
  held-out question, the models' distinct completions as candidates, the audit's verdict as the verifier's;
- a **JSONL of candidates**: rows ``{"id"?, "question" | "prompt", "completions": [text | {"text", "source"?,
  "correct"?}], "answer"?, "task"?}``; with ``answer`` the verdict of a candidate without ``correct`` is the
  ``correct`` reward's (the task's verifier and a well-formed completion);
- a **model** (a stage's ``final/``, a model directory or ``smollm2``) with a prompts file (canonical records):
  the items start without candidates and the model samples k of them when an item is first shown (:class:`Sampler`).

An item with more than k candidates shows k of them, chosen with the seed; an item with fewer than two distinct
completions cannot be compared and is left out (counted in :class:`ItemSet`). Model names stay on the server: the
page gets the candidates in a shuffled order under the letters A, B, C…, never their sources.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thinktune.data.records import DataError, Record, iter_jsonl, read_records
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat


@dataclass
class Candidate:
    id: str  # "0", "1", … within its item
    text: str
    source: str | None = None  # the model (or models) that wrote it; never sent to the page
    correct: bool | None = None  # the verifier's verdict; sent only when the annotator reveals it


@dataclass
class Item:
    id: str
    question: str
    candidates: list[Candidate] = field(default_factory=list)  # empty until a Sampler fills it
    answer: str | None = None  # the gold answer, when known (for verdicts of sampled candidates)
    task: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Item:
        obj = json.loads(text)
        obj["candidates"] = [Candidate(**c) for c in obj.get("candidates", [])]
        return cls(**obj)


@dataclass
class ItemSet:
    items: list[Item]
    source: str  # what the items came from, in words
    kind: str  # "run", "candidates" or "model"
    dropped: int = 0  # items with fewer than two distinct completions


def pick(cands: list[Candidate], k: int, seed: int, item_id: str) -> list[Candidate]:
    """At most ``k`` candidates of an item (a seeded sample in their own order), renumbered "0", "1", …"""
    if len(cands) > k:
        keep = sorted(random.Random(f"{seed}:{item_id}").sample(range(len(cands)), k))
        cands = [cands[i] for i in keep]
    return [Candidate(str(i), c.text, c.source, c.correct) for i, c in enumerate(cands)]


def _merge(cands: list[Candidate]) -> list[Candidate]:
    """Identical completions become one candidate whose source names every model that wrote it."""
    out: dict[str, Candidate] = {}
    for c in cands:
        if c.text in out:
            prev = out[c.text]
            prev.source = ",".join(s for s in (prev.source, c.source) if s)
        else:
            out[c.text] = Candidate(c.id, c.text, c.source, c.correct)
    return list(out.values())


def from_run(run_dir: str | Path, models: Sequence[str] | None, k: int, seed: int) -> ItemSet:
    """Items from a run's audited held-out completions (module docstring)."""
    root = Path(run_dir)
    audit = root / "audit"
    found = sorted(p.parent.name for p in audit.glob("*/examples.jsonl"))
    if not found:
        raise DataError(root, None, None, "no audited completions (audit/<model>/examples.jsonl); run the audit first")
    names = list(models) if models else found
    missing = [m for m in names if m not in found]
    if missing:
        raise DataError(root, None, None, f"no audit of model {missing[0]!r} (audited: {', '.join(found)})")
    questions: dict[str, tuple[str, str, str]] = {}
    cands: dict[str, list[Candidate]] = {}
    for name in names:
        for line, row in iter_jsonl(audit / name / "examples.jsonl"):
            if not isinstance(row, dict) or not isinstance(row.get("completion"), str) or "id" not in row:
                raise DataError(audit / name / "examples.jsonl", line, "completion", "not an audit row")
            questions.setdefault(row["id"], (row.get("question", ""), str(row.get("gold") or ""),
                                             str(row.get("task") or "")))
            correct = row.get("correct")
            cands.setdefault(row["id"], []).append(Candidate("", row["completion"], name,
                                                             correct if isinstance(correct, bool) else None))
    return _assemble([(i, *questions[i], cands[i]) for i in questions], f"run {root} ({', '.join(names)})", "run",
                     k, seed)


def _assemble(rows: list[tuple[str, str, str, str, list[Candidate]]], source: str, kind: str, k: int,
              seed: int) -> ItemSet:
    items, dropped = [], 0
    for item_id, question, answer, task, cands in rows:
        distinct = _merge(cands)
        if len(distinct) < 2:
            dropped += 1
            continue
        items.append(Item(item_id, question, pick(distinct, k, seed, item_id), answer or None, task))
    return ItemSet(items, source, kind, dropped)


def from_candidates_file(path: str | Path, k: int, seed: int, fmt: CompletionFormat = DEFAULT_FORMAT) -> ItemSet:
    """Items from a JSONL of prompts with candidate completions (module docstring); DataError names file:line."""
    from thinktune.rewards.library import correct

    rows, seen = [], set()
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - {"id", "question", "prompt", "completions", "answer", "task"})
        if unknown:
            raise DataError(path, line, unknown[0], "unknown field (expected id, question or prompt, completions, "
                                                    "answer, task)")
        q_key = "question" if "question" in obj else "prompt"
        question = obj.get(q_key)
        if not isinstance(question, str) or not question.strip():
            raise DataError(path, line, "question", "required, a non-empty string (or give prompt)")
        item_id = obj.get("id", f"line-{line}")
        if not isinstance(item_id, str) or not item_id:
            raise DataError(path, line, "id", "must be a non-empty string")
        if item_id in seen:
            raise DataError(path, line, "id", f"duplicate id {item_id!r}")
        seen.add(item_id)
        answer = obj.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise DataError(path, line, "answer", "must be a string")
        record = Record(id=item_id, question=question, answer=answer, task=str(obj.get("task") or "")) \
            if answer is not None else None
        comps = obj.get("completions")
        if not isinstance(comps, list) or not comps:
            raise DataError(path, line, "completions", "required, a non-empty list of strings or {text} objects")
        cands = []
        for i, c in enumerate(comps):
            c = {"text": c} if isinstance(c, str) else c
            if not isinstance(c, dict) or not isinstance(c.get("text"), str) or set(c) - {"text", "source", "correct"}:
                raise DataError(path, line, f"completions.{i}", "must be a string or {text, source?, correct?}")
            verdict = c.get("correct")
            if verdict is None and record is not None:
                score = correct(c["text"], record, fmt)
                verdict = None if score is None else score == 1.0
            cands.append(Candidate("", c["text"], c.get("source"), verdict if isinstance(verdict, bool) else None))
        rows.append((item_id, question, answer or "", str(obj.get("task") or ""), cands))
    if not rows:
        raise DataError(path, None, None, "no prompts (the file is empty)")
    return _assemble(rows, f"candidates {path}", "candidates", k, seed)


def from_prompts(model: str, prompts_file: str | Path) -> ItemSet:
    """Items without candidates (a :class:`Sampler` fills them on demand) from a canonical records file."""
    records = read_records(prompts_file)
    if not records:
        raise DataError(prompts_file, None, None, "no prompts (the file is empty)")
    items = [Item(r.id, r.question, [], r.answer, r.task) for r in records]
    return ItemSet(items, f"model {model} on {prompts_file}", "model")


class Sampler:
    """Samples k completions of a question with a loaded model, one item at a time (thread-safe)."""

    def __init__(self, model: Any, tokenizer: Any, k: int, temperature: float, max_new_tokens: int,
                 instruction: str | None, seed: int, fmt: CompletionFormat = DEFAULT_FORMAT):
        self.model, self.tokenizer, self.k = model, tokenizer, k
        self.temperature, self.max_new_tokens, self.instruction, self.seed, self.fmt = (
            temperature, max_new_tokens, instruction, seed, fmt)
        self._lock = threading.Lock()

    def fill(self, item: Item) -> list[Candidate]:
        """k sampled candidates for ``item`` (seeded by the item's id), with the verifier's verdicts when the gold
        answer is known; fewer when samples coincide (the page then shows what is distinct)."""
        import torch

        from thinktune.formatting import chat_prompt
        from thinktune.generation import SamplingParams, generate_texts
        from thinktune.rewards.library import correct

        params = SamplingParams(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                n=self.k, stop=(self.fmt.stop,))
        prompt = chat_prompt(self.tokenizer, item.question, self.instruction)
        with self._lock, torch.random.fork_rng():
            torch.manual_seed(int(hashlib.sha256(f"{self.seed}:{item.id}".encode()).hexdigest()[:8], 16))
            texts = generate_texts(self.model, self.tokenizer, [prompt], params, batch_size=1)[0]
        record = Record(id=item.id, question=item.question, answer=item.answer, task=item.task) \
            if item.answer else None
        cands = []
        for t in texts:
            score = correct(t, record, self.fmt) if record is not None else None
            cands.append(Candidate("", t, "sampled", None if score is None else score == 1.0))
        return [Candidate(str(i), c.text, c.source, c.correct) for i, c in enumerate(_merge(cands))]


def open_source(source: str, k: int = 2, seed: int = 0, *, models: Sequence[str] | None = None,
                prompts: str | Path | None = None, temperature: float = 1.0, max_new_tokens: int = 256,
                instruction: str = "auto") -> tuple[ItemSet, Sampler | None]:
    """The items of ``thinktune label SOURCE``: a run directory, a candidates JSONL, or a model (with ``prompts``)
    whose :class:`Sampler` fills items on demand. Raises :class:`DataError` / ``ModelError`` with what to fix."""
    from thinktune.errors import ModelError

    if k < 2:
        raise DataError(source, None, "k", "compare at least two candidates")
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "audit").is_dir() or (path / "manifest.json").is_file()):
        if prompts is not None:
            raise DataError(source, None, None, "a run's items are its held-out questions; --prompts is for a model")
        return from_run(path, models, k, seed), None
    if path.is_file():
        return from_candidates_file(path, k, seed), None
    if prompts is None:
        raise ModelError(f"{source}: not a run directory or a candidates file; to sample candidates from a model, "
                         "give the questions with --prompts FILE (canonical records JSONL)")
    from thinktune.formatting import resolve_instruction
    from thinktune.named_model import resolve_model

    named = resolve_model(source)
    model, tokenizer = named.load()
    sampler = Sampler(model, tokenizer, k, temperature, max_new_tokens, resolve_instruction(instruction, named.prompt),
                      seed)
    return from_prompts(source, prompts), sampler
