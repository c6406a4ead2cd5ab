"""An OpenAI-compatible server for any model thinktune loads, with TIP and steering selectable per request.

Endpoints: ``POST /v1/chat/completions`` (streaming with server-sent events, and not), ``GET /v1/models``,
``GET /health``. The reasoning comes back apart from the answer, as ``message.reasoning_content`` (streamed as
``delta.reasoning_content``), split by the one parser (:func:`thinktune.formatting.parse_completion`).

How to run::

    thinktune serve runs/quickstart/grpo/final --port 8000 --max-batch 8 --steer concise.steer:0.4
    # then, with the official client:
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")
    client.chat.completions.create(model="final", messages=[...], extra_body={"tip": {"alpha": 3, "beta": 600}})

Per-request interventions (``extra_body``): ``"tip": true | false | {"alpha", "beta", "words"}`` and
``"steer": false | {"vector": NAME, "strength": S}`` with NAME one of the vectors loaded at start-up.

Design (numbered):
1. One worker thread owns the model. Requests wait in a queue; the worker takes the oldest and batches with it up
   to ``max_batch - 1`` waiting requests that decode the same way (greedy/sampling settings, stop strings, TIP,
   steering; a request with a ``seed`` always runs alone so that its random stream is its own). Rows never mix:
   each has its own prompt, token limit and stream. A batch is left-padded; greedy decoding of a padded row gives
   the tokens it gets alone (tested on 50 concurrent requests), which holds as long as padding changes no argmax.
2. Limits: request bodies over ``max_body_bytes`` get 413, ``max_tokens`` over the server's cap 400, prompts that
   do not fit 400, a full queue 503; every error is an OpenAI-style ``{"error": {"message", "type", "param"}}``.
3. Graceful shutdown (SIGINT/SIGTERM): uvicorn stops accepting connections and lets running requests finish
   (``timeout_graceful_shutdown``); then the worker is stopped and jobs still waiting are cancelled.
4. ``content`` is the text after the think block with the answer tags removed, stripped — exactly the parsed
   answer for a well-formed completion; text without a think block is all ``content``. Streamed deltas
   concatenate to the same two strings (tags and stop strings that are still incomplete are held back).
5. No ``n > 1``, tools, logprobs or response formats: such requests are refused with 400, never ignored.
6. Sampling follows OpenAI's defaults: a request without ``temperature`` samples at T = 1; ``temperature: 0`` is
   greedy. A sampled request with a ``seed`` is reproducible (it runs alone, after ``torch.manual_seed``).
7. Who may call, and how slowly (serve_guard.py, applied by :func:`serve`): Host / Origin checked against the bound
   address (403), an optional API key (401), JSON only (415), request headers within ``header_timeout`` seconds
   and the body within ``body_timeout`` (408), at most ``max_connections`` connections (503 beyond).
8. Every malformed value is a 400 naming its field, never a 500: the body is decoded by the data layer's strict
   JSON policy (no NaN / Infinity, no integer over 4,300 digits, at most 100 levels deep, no lone surrogates),
   numbers are bounded (``seed`` to torch's 64-bit range, ``temperature`` 0 or ≥ 1e-6, steering strength ≤ 1000).
9. A request whose client goes away stops generating at the next token, streaming or not: the non-streaming
   handler watches the connection while it waits, and a stopped row leaves the batch at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thinktune.decoding.steering import SteeringVector, steered
from thinktune.decoding.tip import ThoughtSwitchPenalty, TipConfig, switch_token_ids
from thinktune.errors import ThinktuneError
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion
from thinktune.data.jsonsafe import JsonProblem, loads
from thinktune.generation import SamplingParams, hf_generate_kwargs, trim_at_stop
from thinktune.serve_guard import Policy, guarded, header_timeout_protocol

log = logging.getLogger(__name__)


class ServeConfig(BaseModel):
    """Server settings (``thinktune serve`` options)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model_name: str = "thinktune"  # the id listed by /v1/models and required in requests
    max_tokens_cap: int = Field(2048, ge=1)  # largest max_tokens a request may ask for
    default_max_tokens: int = Field(512, ge=1)  # used when a request sets none
    max_prompt_tokens: int = Field(4096, ge=1)  # longest prompt after the chat template
    max_body_bytes: int = Field(1_000_000, ge=1)  # larger request bodies get 413
    max_batch: int = Field(8, ge=1)  # requests decoded together
    max_queue: int = Field(256, ge=1)  # waiting requests beyond this get 503
    instruction: str | None = None  # prepended to the first user message (the model's prompt contract)
    system: str | None = None  # the system message of a request that has none (the model's prompt contract)
    tip: TipConfig | None = None  # TIP applied when a request does not say
    steer: tuple[str, float] | None = None  # (vector name, strength) applied when a request does not say
    fmt: CompletionFormat = DEFAULT_FORMAT
    header_timeout: float = Field(10.0, gt=0)  # seconds a client has to send its request headers
    body_timeout: float = Field(30.0, gt=0)  # seconds a client has to send its request body
    max_connections: int = Field(1024, ge=1)  # open connections + running requests beyond this get 503


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


# ---------------------------------------------------------------------------------------------------------------
# Request schema


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients add fields such as "name"

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text_only(cls, v):
        if isinstance(v, list):
            if any(not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str) for p in v):
                raise ValueError("only text content parts are supported")
            return "".join(p["text"] for p in v)
        return v


MAX_STEER_STRENGTH = 1000.0  # beyond this the hidden states overflow and sampling fails
MIN_TEMPERATURE = 1e-6  # below this (but above 0) logits / T overflows to inf and sampling fails


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    vector: str | None = None  # a vector loaded at start-up (default: the only / default one)
    strength: float = Field(ge=-MAX_STEER_STRENGTH, le=MAX_STEER_STRENGTH)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: Literal[1] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # torch.manual_seed's range
    user: str | None = None
    tip: bool | TipConfig | None = None  # thinktune extension
    steer: Literal[False] | SteerRequest | None = None  # thinktune extension

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v):
        if v is not None and 0 < v < MIN_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops


_UNION_TAGS = {"bool", "str", "int", "float", "list", "dict", "none"}


def _loc(loc: tuple) -> list:
    """A pydantic location without its union-branch tags (``steer.SteerRequest.strength`` → ``steer.strength``)."""
    return [p for p in loc if not (isinstance(p, str) and ("[" in p or p[:1].isupper() or p in _UNION_TAGS
                                                            or p.startswith("function-")))]


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    e = max(err.errors(), key=lambda x: len(_loc(x["loc"])))  # the most specific: a union's matching branch
    param = ".".join(str(p) for p in _loc(e["loc"])) or None
    if e["type"] == "extra_forbidden":
        return f"unsupported field {param!r} (supported: {', '.join(ChatRequest.model_fields)})", param
    if param == "n":
        return "only n = 1 is supported", param
    return f"{param}: {e['msg']}", param


# ---------------------------------------------------------------------------------------------------------------
# Reasoning / content split (design 4)


def split_response(text: str, fmt: CompletionFormat = DEFAULT_FORMAT, think_prefilled: bool = False,
                   holdback: Sequence[str] = ()) -> tuple[str | None, str]:
    """(reasoning_content, content) of a completion; ``holdback``: strings an unfinished text may end inside of."""
    if think_prefilled and not text.lstrip().startswith(fmt.think_open):
        text = fmt.think_open + text
    for tag in holdback:  # drop a trailing proper prefix of a tag or stop string ("</thi")
        for k in range(min(len(tag) - 1, len(text)), 0, -1):
            if text.endswith(tag[:k]):
                text = text[:-k]
                break
    parsed = parse_completion(text, fmt)
    start = text.find(fmt.think_open)
    if start < 0:
        return None, _answer_text(text, fmt)
    end = text.find(fmt.think_close, start)
    if end < 0:  # still thinking (or cut off while thinking)
        return text[start + len(fmt.think_open):].strip(), _answer_text(text[:start], fmt)
    reasoning = parsed.reasoning if parsed.reasoning is not None else text[start + len(fmt.think_open) : end].strip()
    return reasoning, _answer_text(text[:start] + text[end + len(fmt.think_close):], fmt)


def _answer_text(text: str, fmt: CompletionFormat) -> str:
    return text.replace(fmt.answer_open, "").replace(fmt.answer_close, "").strip()


class StreamSplitter:
    """Turns the growing completion text into (field, delta) pairs whose concatenation is :func:`split_response`."""

    def __init__(self, fmt: CompletionFormat, think_prefilled: bool, stops: Sequence[str]):
        self.fmt, self.prefilled, self.stops = fmt, think_prefilled, list(stops)
        self.holdback = [fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close, *self.stops]
        self.sent = {"reasoning_content": "", "content": ""}

    def _deltas(self, reasoning: str | None, content: str) -> list[tuple[str, str]]:
        out = []
        for key, value in (("reasoning_content", reasoning or ""), ("content", content)):
            if value.startswith(self.sent[key]) and len(value) > len(self.sent[key]):
                out.append((key, value[len(self.sent[key]):]))
                self.sent[key] = value
        return out

    def feed(self, text: str) -> list[tuple[str, str]]:
        text = trim_at_stop(text, self.stops)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character
            text = text.rstrip("\ufffd")
        return self._deltas(*split_response(text, self.fmt, self.prefilled, self.holdback))

    def finish(self, final_text: str) -> list[tuple[str, str]]:
        reasoning, content = split_response(final_text, self.fmt, self.prefilled)
        out = self._deltas(reasoning, content)
        for key, value in (("reasoning_content", reasoning or ""), ("content", content)):
            if self.sent[key] != value:
                log.warning("streamed %s diverged from the final text", key)
        return out


# ---------------------------------------------------------------------------------------------------------------
# Engine: one worker thread, a queue, batches of compatible requests (design 1)


@dataclass
class Job:
    prompt_ids: list[int]
    max_new_tokens: int
    params: SamplingParams  # max_new_tokens unused: each row has its own
    seed: int | None
    tip: TipConfig | None
    steer: tuple[str, float] | None
    emit: Callable[[tuple], None]  # called from the worker thread; must be thread-safe
    stream: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)  # generated so far (streaming)

    def key(self) -> tuple:
        lone = id(self) if self.seed is not None else None
        tip = None if self.tip is None else self.tip.model_dump_json()
        return (self.params.do_sample, self.params.temperature, self.params.top_p, self.params.stop, tip,
                self.steer, lone)


class _RowStops:
    """StoppingCriteria: a row is done at its own token limit or when its client went away."""

    def __init__(self, jobs: Sequence[Job], prompt_len: int):
        self.jobs, self.prompt_len = jobs, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        n = input_ids.shape[1] - self.prompt_len
        return torch.tensor([n >= j.max_new_tokens or j.cancelled.is_set() for j in self.jobs],
                            device=input_ids.device)


class _RowStreamer:
    """A ``generate`` streamer for a batch: collects each row's tokens (up to EOS or its limit) and hands
    streaming rows their growing text. Rows that HF has finished receive pad tokens, which end them here too."""

    def __init__(self, tokenizer, jobs: Sequence[Job]):
        self.tokenizer, self.jobs = tokenizer, jobs
        self.enders = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        self.done = [False] * len(jobs)
        self.ended_by_eos = [False] * len(jobs)
        self.first = True

    def put(self, value: torch.Tensor) -> None:
        if self.first:  # the prompt
            self.first = False
            return
        for i, (job, tok) in enumerate(zip(self.jobs, value.view(-1).tolist())):
            if self.done[i]:
                continue
            if tok in self.enders or len(job.tokens) >= job.max_new_tokens:
                self.done[i] = True
                self.ended_by_eos[i] = tok == self.tokenizer.eos_token_id and len(job.tokens) < job.max_new_tokens
                continue
            job.tokens.append(tok)
            if job.stream:
                job.emit(("text", self.tokenizer.decode(job.tokens, skip_special_tokens=True)))

    def end(self) -> None:
        pass


class Engine:
    def __init__(self, model, tokenizer, cfg: ServeConfig, vectors: dict[str, SteeringVector] | None = None):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.vectors = vectors or {}
        for v in self.vectors.values():
            v.check(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self._pending: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._switch_ids: dict[tuple[str, ...], tuple[int, ...]] = {}
        self.batches: list[int] = []  # batch sizes served (for tests and benchmarks)
        model.eval()
        self._thread = threading.Thread(target=self._run, name="thinktune-serve-worker", daemon=True)
        self._thread.start()

    # -- queue
    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise ApiError(503, "the server is shutting down", kind="server_error")
            if len(self._pending) >= self.cfg.max_queue:
                raise ApiError(503, f"too many waiting requests ({self.cfg.max_queue}); retry later", kind="server_error")
            self._pending.append(job)
            self._cv.notify()

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closing = True
            while self._pending:
                job = self._pending.popleft()
                job.cancelled.set()
                job.emit(("error", ApiError(503, "the server shut down before this request ran", kind="server_error")))
            self._cv.notify_all()
        self._thread.join(timeout)

    def _take_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._pending and not self._closing:
                self._cv.wait()
            if self._closing and not self._pending:
                return None
            first = self._pending.popleft()
            batch, key, keep = [first], first.key(), deque()
            while self._pending and len(batch) < self.cfg.max_batch:
                job = self._pending.popleft()
                (batch if job.key() == key else keep).append(job)
            keep.extend(self._pending)
            self._pending = keep
            return [j for j in batch if not j.cancelled.is_set()]

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            if not batch:
                continue
            try:
                self._generate(batch)
            except Exception as e:  # the server keeps serving; the clients of this batch get a 500
                log.exception("generation failed")
                for job in batch:
                    job.emit(("error", ApiError(500, f"generation failed: {type(e).__name__}: {e}", kind="server_error")))

    # -- generation
    def _tip(self, cfg: TipConfig) -> ThoughtSwitchPenalty:
        key = tuple(cfg.words)
        if key not in self._switch_ids:
            self._switch_ids[key] = switch_token_ids(self.tokenizer, cfg.words).ids
        return ThoughtSwitchPenalty(self._switch_ids[key], cfg.alpha, cfg.beta)

    @torch.no_grad()
    def _generate(self, batch: list[Job]) -> None:
        from transformers import StoppingCriteriaList

        self.batches.append(len(batch))
        head = batch[0]
        enc = self.tokenizer.pad({"input_ids": [j.prompt_ids for j in batch]}, padding=True, return_tensors="pt")
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        P = enc["input_ids"].shape[1]
        params = SamplingParams(max_new_tokens=max(j.max_new_tokens for j in batch), do_sample=head.params.do_sample,
                                temperature=head.params.temperature, top_p=head.params.top_p, stop=head.params.stop)
        kwargs = hf_generate_kwargs(self.tokenizer, params, [self._tip(head.tip)] if head.tip else ())
        kwargs["stopping_criteria"] = StoppingCriteriaList([_RowStops(batch, P)])
        kwargs["streamer"] = _RowStreamer(self.tokenizer, batch)
        vector, strength = (self.vectors[head.steer[0]], head.steer[1]) if head.steer else (None, 0.0)
        if head.seed is not None:
            torch.manual_seed(head.seed)
        streamer = kwargs["streamer"]
        with steered(self.model, vector, strength):
            self.model.generate(**enc, **kwargs)
        for i, job in enumerate(batch):
            raw = self.tokenizer.decode(job.tokens, skip_special_tokens=True)
            text = trim_at_stop(raw, params.stop)
            stopped = (streamer.ended_by_eos[i] or len(job.tokens) < job.max_new_tokens
                       or any(stop in raw for stop in params.stop))
            n_tokens = len(job.tokens) + streamer.ended_by_eos[i]
            job.emit(("done", text, "stop" if stopped else "length", len(job.prompt_ids), n_tokens))


# ---------------------------------------------------------------------------------------------------------------
# HTTP layer


class Server:
    """Request parsing, limits and response shapes around an :class:`Engine`."""

    def __init__(self, engine: Engine):
        self.engine, self.cfg, self.tok = engine, engine.cfg, engine.tokenizer

    def prompt_text(self, messages: list[Message]) -> str:
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]
        if self.cfg.system and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.cfg.system})
        if self.cfg.instruction:
            first_user = next((m for m in msgs if m["role"] == "user"), None)
            if first_user is not None:
                first_user["content"] = f"{self.cfg.instruction}\n\n{first_user['content']}"
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: "

    def interventions(self, req: ChatRequest) -> tuple[TipConfig | None, tuple[str, float] | None]:
        tip = self.cfg.tip if req.tip is None else (TipConfig() if req.tip is True else req.tip or None)
        if isinstance(tip, TipConfig):
            try:
                self.engine._tip(tip)
            except ValueError as e:
                raise ApiError(400, f"tip.words: {e}", "tip.words") from None
        steer = self.cfg.steer
        if req.steer is False:
            steer = None
        elif req.steer is not None:
            name = req.steer.vector or (steer[0] if steer else next(iter(self.engine.vectors), None))
            if name not in self.engine.vectors:
                known = ", ".join(self.engine.vectors) or "none (start the server with --vector FILE)"
                raise ApiError(400, f"unknown steering vector {name!r}; loaded: {known}", "steer.vector")
            steer = (name, req.steer.strength)
        return tip, steer

    async def read_json(self, request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise ApiError(400, "bad Content-Length header") from None
            if size > self.cfg.max_body_bytes:
                raise ApiError(413, f"request body of {size} bytes exceeds the limit of {self.cfg.max_body_bytes}")
        body = bytearray()
        try:
            async with asyncio.timeout(self.cfg.body_timeout):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > self.cfg.max_body_bytes:
                        raise ApiError(413, f"request body exceeds the limit of {self.cfg.max_body_bytes} bytes")
        except TimeoutError:
            raise ApiError(408, f"the request body took longer than {self.cfg.body_timeout:g} s") from None
        try:
            return loads(bytes(body).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ApiError(400, f"request body is not valid JSON: not UTF-8 ({e.reason} at byte {e.start})") from None
        except JsonProblem as e:
            if e.message.startswith("invalid JSON: "):
                raise ApiError(400, f"request body is not valid JSON: {e.message.removeprefix('invalid JSON: ')}") \
                    from None
            raise ApiError(400, f"request body: {e.message}") from None

    def job(self, req: ChatRequest, emit) -> tuple[Job, bool]:
        if req.model != self.cfg.model_name:
            raise ApiError(404, f"model {req.model!r} does not exist; this server serves {self.cfg.model_name!r}",
                           "model", "not_found_error")
        max_tokens = req.max_completion_tokens or req.max_tokens or min(self.cfg.default_max_tokens,
                                                                         self.cfg.max_tokens_cap)
        if max_tokens > self.cfg.max_tokens_cap:
            raise ApiError(400, f"max_tokens {max_tokens} exceeds this server's limit of {self.cfg.max_tokens_cap}",
                           "max_tokens")
        try:
            prompt = self.prompt_text(req.messages)
        except Exception as e:  # noqa: BLE001 - jinja's TemplateError and whatever a template raises on bad input
            raise ApiError(400, f"the model's chat template refused these messages: {type(e).__name__}: {e}",
                           "messages") from None
        ids = self.tok.encode(prompt, add_special_tokens=False)
        if len(ids) > self.cfg.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; this server accepts at most "
                                f"{self.cfg.max_prompt_tokens}", "messages")
        temperature = 1.0 if req.temperature is None else req.temperature  # OpenAI's default: sample at T = 1
        do_sample = temperature > 0
        stops = tuple(dict.fromkeys([self.cfg.fmt.stop, *(req.stop or [])]))
        params = SamplingParams(do_sample=do_sample, temperature=temperature if do_sample else 1.0,
                                top_p=(req.top_p or 1.0) if do_sample else 1.0, stop=stops)
        tip, steer = self.interventions(req)
        prefilled = prompt.rstrip().endswith(self.cfg.fmt.think_open)
        job = Job(ids, max_tokens, params, req.seed if do_sample else None, tip, steer, emit, stream=req.stream)
        return job, prefilled

    def completion_body(self, rid: str, created: int, text: str, reason: str, usage: dict, prefilled: bool,
                        job: Job) -> dict[str, Any]:
        reasoning, content = split_response(text, self.cfg.fmt, prefilled)
        return {"id": rid, "object": "chat.completion", "created": created, "model": self.cfg.model_name,
                "choices": [{"index": 0, "finish_reason": reason, "logprobs": None,
                             "message": {"role": "assistant", "content": content, "reasoning_content": reasoning}}],
                "usage": usage, "thinktune": {"interventions": _describe(job)}}


def _describe(job: Job) -> dict[str, Any]:
    return {"tip": job.tip.model_dump() if job.tip else None,
            "steer": {"vector": job.steer[0], "strength": job.steer[1]} if job.steer else None}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def build_app(engine: Engine, policy: Policy | None = None):
    """The Starlette app; its lifespan stops the engine on shutdown. With a ``policy`` (what :func:`serve` passes)
    the app sits behind serve_guard.py's Host / Origin / API-key / content-type checks."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    server = Server(engine)

    def error(e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": engine.cfg.model_name, "object": "model",
                                                         "created": 0, "owned_by": "thinktune"}]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "waiting": len(engine._pending)})

    async def chat(request: Request):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: tuple) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        try:
            payload = await server.read_json(request)
            if not isinstance(payload, dict):
                raise ApiError(400, "request body must be a JSON object")
            try:
                req = ChatRequest.model_validate(payload)
            except ValidationError as err:
                message, param = _validation_message(err)
                raise ApiError(400, message, param) from None
            job, prefilled = server.job(req, emit)
            engine.submit(job)
        except ApiError as e:
            return error(e)
        except Exception as e:  # a bug, not the client's fault: say so, keep serving
            log.exception("request failed")
            return error(ApiError(500, f"internal error: {type(e).__name__}: {e}", kind="server_error"))
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not req.stream:
            watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
            try:
                while (event := await events.get())[0] == "text":
                    pass
            except asyncio.CancelledError:
                job.cancelled.set()
                raise
            finally:
                watcher.cancel()
            if event[0] == "error":
                return error(event[1])
            _, text, reason, n_prompt, n_completion = event
            return JSONResponse(server.completion_body(rid, created, text, reason, _usage(n_prompt, n_completion),
                                                       prefilled, job))
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        return StreamingResponse(_sse(server, job, events, rid, created, prefilled, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}"))

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.close)

    routes = [Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models, methods=["GET"]),
              Route("/health", health, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    return app if policy is None else guarded(app, policy)


async def _cancel_on_disconnect(request, job: Job) -> None:
    """Mark ``job`` cancelled when its client disconnects (the worker drops the row at its next step). Starlette
    does not cancel a non-streaming handler whose client went away: a 2,000-token generation ran on for nobody."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancelled.set()
            return


async def _sse(server: Server, job: Job, events: asyncio.Queue, rid: str, created: int, prefilled: bool,
               include_usage: bool) -> AsyncIterator[str]:
    name = server.cfg.model_name

    def chunk(delta: dict[str, Any], reason: str | None = None, **extra) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    splitter = StreamSplitter(server.cfg.fmt, prefilled, job.params.stop)
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            event = await events.get()
            if event[0] == "text":
                for key, delta in splitter.feed(event[1]):
                    yield chunk({key: delta})
                continue
            if event[0] == "error":
                yield f"data: {json.dumps(event[1].body())}\n\n"
                break
            _, text, reason, n_prompt, n_completion = event
            for key, delta in splitter.finish(text):
                yield chunk({key: delta})
            yield chunk({}, reason, thinktune={"interventions": _describe(job)})
            if include_usage:
                body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name,
                        "choices": [], "usage": _usage(n_prompt, n_completion)}
                yield f"data: {json.dumps(body)}\n\n"
            break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a client that went away stops its row; a finished row is unaffected


def check_port(host: str, port: int) -> None:
    """Raise a one-line :class:`ThinktuneError` when ``host:port`` cannot be bound (in use, no permission, no such
    address) — checked before the model loads, so a busy port costs no loading time."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ThinktuneError(f"port {port} on {host} is already in use: stop the server using it or choose "
                                     "another with --port") from None
            if e.errno == errno.EACCES:
                raise ThinktuneError(f"no permission to bind port {port} on {host}: ports below 1024 need root; "
                                     "choose another with --port") from None
            raise ThinktuneError(f"cannot bind {host}:{port} ({e.strerror}): check --host and --port") from None
        except (socket.gaierror, OverflowError) as e:
            raise ThinktuneError(f"cannot bind {host}:{port} ({e}): check --host and --port") from None


def uvicorn_config(engine: Engine, host: str, port: int, policy: Policy, graceful_timeout: int = 30,
                   log_level: str = "warning"):
    """The uvicorn settings of :func:`serve` (design 7): the guarded app, header timeout, connection limit."""
    import uvicorn

    cfg = engine.cfg
    return uvicorn.Config(build_app(engine, policy), host=host, port=port, log_level=log_level,
                          timeout_graceful_shutdown=graceful_timeout, timeout_keep_alive=5,
                          limit_concurrency=cfg.max_connections, http=header_timeout_protocol(cfg.header_timeout))


def serve(model, tokenizer, cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000,
          vectors: dict[str, SteeringVector] | None = None, graceful_timeout: int = 30,
          log_level: str = "warning", policy: Policy | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (blocking); a signalled, graceful stop returns normally.

    ``policy`` defaults to accepting the bound address only, with no API key (serve_guard.py)."""
    from thinktune.httpserver import run_config_until_signalled

    engine = Engine(model, tokenizer, cfg, vectors)
    run_config_until_signalled(uvicorn_config(engine, host, port, policy or Policy(host, port), graceful_timeout,
                                              log_level))
