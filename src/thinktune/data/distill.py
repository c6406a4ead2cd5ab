"""Distillation with rejection sampling: a teacher writes k traces per question, only verified ones are kept.

Run: ``thinktune data distill questions.jsonl -o traces.jsonl --base-url http://host/v1 --model NAME -k 4``
(any OpenAI-compatible chat-completions endpoint; the key is read from the environment variable named by
``--api-key-env``, never from the command line), or ``--local PATH`` for a local transformers model.

Follows DeepSeek-R1's rejection-sampling step (arXiv 2501.12948 §2.3.3; docs/METHODS.md, "Curation and distillation"):
sample several completions per prompt and keep only those whose final answer the verifier accepts (here the task's
grader, ``data.answers.grade``). Each kept trace becomes a canonical record ``<question id>-t<j>`` whose ``answer`` is
the gold answer and whose ``meta`` records the teacher, the sample index and the teacher's own answer string.

Reliability:

1. Resumable: finished questions are appended (one JSON line each, flushed) to ``<out>.partial``; a rerun reads it,
   skips those ids and asks the teacher only for the rest. The final ``<out>`` is written atomically once every
   question is done, and the journal is removed; a crash never leaves a half-written ``<out>``.
2. Bounded concurrency (``concurrency`` requests in flight) and retries with exponential backoff plus jitter on
   429 / 5xx / connection errors / timeouts, honouring ``Retry-After``; other HTTP errors (400, 401, 404) stop the
   run at once with the server's message.
3. A question whose requests still fail after the retries is not journaled, so the next run retries it.

Deviations: R1 also judged some prompts with a generative reward model (DeepSeek-V3); thinktune keeps rule-based
verification only. Teacher replies are parsed with the one completion parser (formatting.py); a reply with a
separate ``reasoning_content`` field (DeepSeek / vLLM reasoning parsers) uses it as the trace.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinktune.data.records import JsonlWriter, Record
from thinktune.errors import ThinktuneError
from thinktune.formatting import (
    DEFAULT_FORMAT,
    DEFAULT_INSTRUCTION,
    CompletionFormat,
    parse_completion,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class DistillError(ThinktuneError):
    """The teacher cannot be used (bad URL, rejected key, unknown model) or questions failed after retries."""


@dataclass(frozen=True)
class Sample:
    text: str  # the reply's content
    reasoning: str | None = None  # a separate reasoning channel (reasoning_content), when the server has one


@dataclass
class TeacherSettings:
    max_tokens: int = 1024  # completion tokens per sample
    temperature: float = 0.7
    top_p: float = 0.95
    instruction: str | None = DEFAULT_INSTRUCTION  # prepended to each question (None: the bare question)
    system: str | None = None


class OpenAITeacher:
    """Any OpenAI-compatible ``/chat/completions`` endpoint, called with the standard library (no SDK)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, settings: TeacherSettings | None = None,
                 timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 concurrency: int = 8, seed: int = 0):
        if not base_url.startswith(("http://", "https://")):
            raise DistillError(f"teacher base URL must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.settings = settings or TeacherSettings()
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.concurrency = max(1, concurrency)
        self._rng = random.Random(seed)
        self.retries = 0  # retried requests, for the report
        self.name = f"{model}@{base_url}"

    def _messages(self, question: str) -> list[dict[str, str]]:
        s = self.settings
        content = f"{s.instruction}\n\n{question}" if s.instruction else question
        return ([{"role": "system", "content": s.system}] if s.system else []) + [{"role": "user", "content": content}]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + self._rng.random() / 2)
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace") if e.fp else ""
                if e.code not in RETRYABLE_STATUS:
                    raise DistillError(f"teacher {self.url} answered HTTP {e.code}: {detail or e.reason}") from None
                last = f"HTTP {e.code}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.strip().replace(".", "", 1).isdigit():
                    wait = min(self.max_backoff_s, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                last = f"unreadable reply ({e})"
            if attempt < self.max_retries:
                self.retries += 1
                log.info("teacher request failed (%s); retry %d in %.1fs", last, attempt + 1, wait)
                time.sleep(wait)
        raise TeacherUnavailable(f"teacher request failed after {self.max_retries + 1} attempts: {last}")

    def sample(self, question: str, k: int) -> list[Sample]:
        """k samples for one question (further requests when the server returns fewer choices than asked)."""
        out: list[Sample] = []
        for _ in range(k):  # at most k requests: one per missing sample in the worst case
            need = k - len(out)
            if need <= 0:
                break
            s = self.settings
            reply = self._post({"model": self.model, "messages": self._messages(question), "n": need,
                                "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p})
            choices = reply.get("choices") if isinstance(reply, dict) else None
            if not isinstance(choices, list) or not choices:
                raise TeacherUnavailable(f"teacher reply has no choices: {str(reply)[:200]}")
            for ch in choices[:need]:
                msg = ch.get("message") or {}
                text = msg.get("content") or ch.get("text") or ""
                out.append(Sample(text=str(text), reasoning=msg.get("reasoning_content") or msg.get("reasoning")))
        return out


class TeacherUnavailable(Exception):
    """Transient failure that survived the retries (the question is retried on the next run)."""


class LocalTeacher:
    """A transformers model sampled with thinktune's generation (prompts through its chat template)."""

    def __init__(self, model, tokenizer, settings: TeacherSettings | None = None, batch_size: int = 8,
                 name: str = "local"):
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or TeacherSettings()
        self.batch_size, self.name = batch_size, name
        self.concurrency = 1
        self.retries = 0

    def sample_many(self, questions: Sequence[str], k: int) -> list[list[Sample]]:
        from thinktune.formatting import chat_prompt
        from thinktune.generation import SamplingParams, generate_texts

        s = self.settings
        prompts = [chat_prompt(self.tokenizer, q, s.instruction, s.system) for q in questions]
        params = SamplingParams(max_new_tokens=s.max_tokens, do_sample=True, temperature=s.temperature,
                                top_p=s.top_p, n=k)
        texts = generate_texts(self.model, self.tokenizer, prompts, params, batch_size=self.batch_size)
        return [[Sample(text=t) for t in row] for row in texts]


# --------------------------------------------------------------------------------------------------------------
# Verification


def judge(record: Record, sample: Sample, fmt: CompletionFormat = DEFAULT_FORMAT) -> tuple[str | None, str | None, str]:
    """(reasoning, teacher answer, verdict) with verdict one of: verified, wrong, no_answer, no_reasoning, ungradable."""
    from thinktune.data.answers import extract_answer, grade

    parsed = parse_completion(sample.text, fmt)
    answer = parsed.answer if parsed.answer is not None else extract_answer(sample.text, fmt, extractor="auto")
    reasoning = (sample.reasoning or parsed.reasoning or "").strip()
    if not reasoning:  # no think block: the text before the answer block is the trace
        cut = sample.text.find(fmt.answer_open)
        reasoning = (sample.text[:cut] if cut >= 0 else sample.text).strip()
    if answer is None or not answer.strip():
        return reasoning, None, "no_answer"
    if not reasoning:
        return reasoning, answer, "no_reasoning"
    verdict = grade(record, answer)
    if verdict is None:
        return reasoning, answer, "ungradable"
    return reasoning, answer, "verified" if verdict else "wrong"


@dataclass
class DistillReport:
    questions: int = 0
    resumed: int = 0  # questions already done in the journal
    asked: int = 0  # questions sent to the teacher in this run
    failed: list[str] = field(default_factory=list)  # ids still failing after retries
    samples: int = 0
    verdicts: Counter = field(default_factory=Counter)
    kept: int = 0
    questions_with_a_trace: int = 0
    retries: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"questions": self.questions, "resumed": self.resumed, "asked": self.asked,
                "failed": len(self.failed), "failed_ids": self.failed[:50], "samples": self.samples,
                "verdicts": dict(self.verdicts), "kept": self.kept,
                "questions_with_a_trace": self.questions_with_a_trace,
                "keep_rate": round(self.kept / self.samples, 4) if self.samples else None,
                "retries": self.retries, "seconds": round(self.seconds, 2)}


def journal_path(out: str | os.PathLike) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".partial")


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # a line torn by a crash: that question is simply asked again
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                done[entry["id"]] = entry
    return done


def _keep(record: Record, samples: list[Sample], teacher_name: str, keep_per_question: int | None,
          fmt: CompletionFormat) -> tuple[list[dict[str, Any]], Counter]:
    kept, verdicts, seen = [], Counter(), set()
    for j, s in enumerate(samples):
        reasoning, answer, verdict = judge(record, s, fmt)
        verdicts[verdict] += 1
        if verdict != "verified" or reasoning in seen:
            continue
        if keep_per_question is not None and len(kept) >= keep_per_question:
            continue
        seen.add(reasoning)
        kept.append(Record(id=f"{record.id}-t{j}", question=record.question, reasoning=reasoning,
                           answer=record.answer, answerable=record.answerable, task=record.task,
                           meta={**record.meta, "source_id": record.id, "teacher": teacher_name, "sample": j,
                                 "teacher_answer": answer}).model_dump())
    return kept, verdicts


def distill(records: Sequence[Record], teacher, out: str | os.PathLike, k: int = 4,
            keep_per_question: int | None = None, fmt: CompletionFormat = DEFAULT_FORMAT,
            on_question: Callable[[int], None] | None = None, allow_failures: bool = False) -> DistillReport:
    """Sample ``k`` traces per record from ``teacher`` and write the verified ones to ``out`` (see module doc)."""
    t0 = time.perf_counter()
    if k < 1:
        raise DistillError(f"k must be >= 1, got {k}")
    jpath = journal_path(out)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    done = _read_journal(jpath)
    rep = DistillReport(questions=len(records))
    todo = [r for r in records if r.id not in done]
    rep.resumed = len(records) - len(todo)
    rep.asked = len(todo)
    with open(jpath, "a", encoding="utf-8") as journal:

        def record_result(rec: Record, samples: list[Sample]) -> None:
            kept, verdicts = _keep(rec, samples, teacher.name, keep_per_question, fmt)
            entry = {"id": rec.id, "samples": len(samples), "verdicts": dict(verdicts), "kept": kept}
            journal.write(json.dumps(entry, ensure_ascii=False) + "\n")
            journal.flush()
            done[rec.id] = entry
            if on_question:
                on_question(1)

        if isinstance(teacher, LocalTeacher):
            for i in range(0, len(todo), teacher.batch_size):
                batch = todo[i : i + teacher.batch_size]
                for rec, samples in zip(batch, teacher.sample_many([r.question for r in batch], k)):
                    record_result(rec, samples)
        else:
            with ThreadPoolExecutor(max_workers=teacher.concurrency) as pool:
                futures = {}
                pending = iter(todo)
                try:
                    for rec in pending:  # keep at most 2 × concurrency questions in flight
                        futures[pool.submit(teacher.sample, rec.question, k)] = rec
                        if len(futures) >= 2 * teacher.concurrency:
                            _drain(futures, record_result, rep, wait_one=True)
                    _drain(futures, record_result, rep, wait_one=False)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        os.fsync(journal.fileno())
    rep.retries = teacher.retries
    for rec in records:
        entry = done.get(rec.id)
        if entry is None:
            continue
        rep.samples += entry["samples"]
        rep.verdicts.update(entry["verdicts"])
        rep.kept += len(entry["kept"])
        rep.questions_with_a_trace += bool(entry["kept"])
    rep.seconds = time.perf_counter() - t0
    if rep.failed and not allow_failures:
        raise DistillError(f"{len(rep.failed)} question(s) still failed after retries (first: {rep.failed[0]}); "
                           f"{len(done)} are saved in {jpath} — run the same command again to finish")
    with JsonlWriter(out) as w:
        for rec in records:
            for row in (done.get(rec.id) or {}).get("kept", []):
                w.write(row)
    jpath.unlink(missing_ok=True)
    return rep


def _drain(futures: dict, record_result, rep: DistillReport, wait_one: bool) -> None:
    for fut in as_completed(list(futures)):
        rec = futures.pop(fut)
        try:
            samples = fut.result()
        except TeacherUnavailable as e:
            log.warning("question %s: %s", rec.id, e)
            rep.failed.append(rec.id)
        else:
            record_result(rec, samples)
        if wait_one:
            return
