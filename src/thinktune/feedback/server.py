"""The labelling page's server: starlette + uvicorn, as ``thinktune serve``; plain HTML/CSS/JS, no build, no CDN.

Routes (every one needs the session token, as ``?token=`` or the ``X-Label-Token`` header; without it: 403)::

    GET  /                the page (page/index.html, label.js, label.css under /static/)
    GET  /api/session     guidelines, annotator names allowed, choices
    POST /api/next        {annotator} -> the item this annotator labels now (candidates under slots A, B, …)
    POST /api/reveal      {annotator, item} -> the verifier's verdict per slot (recorded as seen)
    POST /api/label       {label_id, annotator, item, choice, ranking?, reason?, verdict_seen?, seconds?}
    GET  /health

Design (numbered):
1. Security: binds 127.0.0.1 by default; a random token in the printed URL guards every route (compared in constant
   time); state changes are POST with the token in a header and a JSON body, which a cross-site form cannot send;
   responses carry a Content-Security-Policy without inline script, no-referrer (the token stays out of Referer
   headers) and no-store. The page writes model text with ``textContent`` only (completions are model output).
2. Durability: the store commits a label (WAL, synchronous=FULL) before the answer is sent, and the page moves on
   only after the answer; it retries with the same label id until the server answers, so a label is stored once
   even across a ``kill -9`` and restart (feedback/store.py).
3. The labels file is rewritten (atomically) from the store when the server starts, every ``export_every`` seconds
   while labels change, and when it stops; after a ``kill -9`` the next start rewrites it.
4. Model names never leave the server: the page gets the candidates' text in the annotator's shuffled order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from thinktune.data.labels import CHOICES
from thinktune.feedback.items import Item, Sampler
from thinktune.feedback.store import SLOTS, LabelStore, StoreError, shown_order
from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion

log = logging.getLogger(__name__)

ANNOTATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$")
MAX_BODY = 64_000  # bytes of a request body
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"label.js": "text/javascript; charset=utf-8", "label.css": "text/css; charset=utf-8"}


@dataclass
class LabelServerConfig:
    token: str
    out: Path  # the labels file kept up to date from the store
    guidelines: str = ""
    annotators: list[str] = field(default_factory=list)  # allowed names (empty: any valid name)
    export_every: float = 10.0  # seconds between exports while labels change (0: only at start and stop)
    fmt: CompletionFormat = DEFAULT_FORMAT


def _candidate_view(text: str, fmt: CompletionFormat) -> dict[str, Any]:
    parsed = parse_completion(text, fmt)
    if parsed.reasoning is None and parsed.answer is None:
        return {"reasoning": None, "answer": None, "raw": text, "well_formed": False}
    return {"reasoning": parsed.reasoning, "answer": parsed.answer, "raw": text, "well_formed": parsed.well_formed}


def item_view(store: LabelStore, item: Item, annotator: str, fmt: CompletionFormat) -> dict[str, Any]:
    """What the page gets: question and candidates under slots in this annotator's order — no sources, no verdicts."""
    by_id = {c.id: c for c in item.candidates}
    order = shown_order(store.settings.seed, item.id, annotator, len(item.candidates))
    return {"id": item.id, "question": item.question, "k": len(order),
            "has_verdict": any(c.correct is not None for c in item.candidates),
            "candidates": [{"slot": SLOTS[i], **_candidate_view(by_id[cid].text, fmt)} for i, cid in enumerate(order)]}


class LabelService:
    """The routes' logic, independent of HTTP (tests and the benchmark call it directly too)."""

    def __init__(self, store: LabelStore, cfg: LabelServerConfig, sampler: Sampler | None = None):
        self.store, self.cfg, self.sampler = store, cfg, sampler

    def annotator(self, payload: dict[str, Any]) -> str:
        name = payload.get("annotator")
        if not isinstance(name, str) or not ANNOTATOR.match(name):
            raise StoreError("annotator: a name of 1-40 letters, digits, spaces, '.', '_' or '-'")
        if self.cfg.annotators and name not in self.cfg.annotators:
            raise StoreError(f"annotator {name!r} is not on this session's list", 403)
        return name

    def session(self) -> dict[str, Any]:
        return {"guidelines": self.cfg.guidelines, "annotators": self.cfg.annotators, "choices": list(CHOICES),
                "source_kind": self.store.kind}

    def next(self, payload: dict[str, Any]) -> dict[str, Any]:
        who = self.annotator(payload)
        while True:
            item = self.store.next_item(who)
            if item is None or item.candidates:
                break
            if self.sampler is None:
                raise StoreError(f"item {item.id!r} has no candidates and no model to sample them", 500)
            item = self.store.set_candidates(item.id, self.sampler.fill(item))
            if len(item.candidates) >= 2:
                break
        return {"item": item_view(self.store, item, who, self.cfg.fmt) if item else None,
                "progress": self.store.progress(who)}

    def reveal(self, payload: dict[str, Any]) -> dict[str, Any]:
        who = self.annotator(payload)
        return {"verdicts": self.store.reveal(who, str(payload.get("item")))}

    def label(self, payload: dict[str, Any]) -> dict[str, Any]:
        who = self.annotator(payload)
        label_id, item_id, choice = payload.get("label_id"), payload.get("item"), payload.get("choice")
        if not isinstance(label_id, str) or not 8 <= len(label_id) <= 64:
            raise StoreError("label_id: a string of 8-64 characters made by the page")
        if not isinstance(item_id, str) or not isinstance(choice, str):
            raise StoreError("item and choice are required strings")
        reason = payload.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > 500 or "\n" in reason:
            raise StoreError("reason: one line of at most 500 characters")
        ranking = payload.get("ranking")
        if ranking is not None and (not isinstance(ranking, list) or not all(isinstance(s, str) for s in ranking)):
            raise StoreError("ranking: a list of slots, best first")
        seconds = payload.get("seconds")
        seconds = float(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else None
        stored = self.store.add_label(who, label_id, item_id, choice, ranking, reason.strip(),
                                      bool(payload.get("verdict_seen")), seconds)
        return {"ok": True, "duplicate": not stored, "progress": self.store.progress(who)}


def build_app(service: LabelService):
    """The Starlette app; its lifespan exports the labels file at start, while labels change, and at stop."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    cfg, store = service.cfg, service.store
    page = resources.files("thinktune.feedback").joinpath("page")
    headers = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}

    def authorised(request: Request) -> bool:
        given = request.headers.get("x-label-token") or request.query_params.get("token") or ""
        return hmac.compare_digest(given.encode(), cfg.token.encode())

    def error(e: StoreError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)

    async def payload(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise StoreError("send JSON (Content-Type: application/json)", 415)
        body = await request.body()
        if len(body) > MAX_BODY:
            raise StoreError(f"request body over {MAX_BODY} bytes", 413)
        import json

        try:
            obj = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StoreError("request body is not valid JSON") from None
        if not isinstance(obj, dict):
            raise StoreError("request body must be a JSON object")
        return obj

    def api(fn):
        async def endpoint(request: Request) -> Response:
            try:
                body = await payload(request) if request.method == "POST" else {}
                return JSONResponse(await run_in_threadpool(fn, body), headers=headers)
            except StoreError as e:
                return error(e)
        return endpoint

    async def index(request: Request) -> Response:
        html = page.joinpath("index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", cfg.token)
        return Response(html, media_type="text/html", headers=headers)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404, headers=headers)
        return Response(page.joinpath(name).read_text(encoding="utf-8"), media_type=STATIC[name], headers=headers)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", **store.progress()}, headers=headers)

    async def exporter() -> None:
        while True:
            await asyncio.sleep(cfg.export_every)
            if store.changed.is_set():
                await run_in_threadpool(store.export, cfg.out)

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        await run_in_threadpool(store.export, cfg.out)
        task = asyncio.create_task(exporter()) if cfg.export_every > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await run_in_threadpool(store.export, cfg.out)

    class TokenGate:
        """ASGI middleware: 403 for any HTTP request without the session token."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and not authorised(Request(scope)):
                response = PlainTextResponse("403 forbidden: this page needs the token in the URL thinktune printed",
                                             status_code=403, headers=headers)
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)

    from starlette.middleware import Middleware

    routes = [Route("/", index, methods=["GET"]), Route("/static/{name}", static, methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/api/session", api(lambda _: service.session()), methods=["GET"]),
              Route("/api/next", api(service.next), methods=["POST"]),
              Route("/api/reveal", api(service.reveal), methods=["POST"]),
              Route("/api/label", api(service.label), methods=["POST"])]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate)], lifespan=lifespan)


def serve_labels(service: LabelService, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> None:
    """Run the labelling server until SIGINT/SIGTERM (blocking); a requested stop returns normally."""
    from thinktune.httpserver import run_until_signalled

    run_until_signalled(build_app(service), host, port, log_level, graceful_timeout=5)

