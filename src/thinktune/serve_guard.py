"""Who may use ``thinktune serve``: the checks in front of the OpenAI-compatible app (serve.py).

A server on 127.0.0.1 is reachable by every web page the user opens: a page can POST ``text/plain`` (a "simple"
request needs no CORS pre-flight) or point a DNS name it controls at 127.0.0.1 ("DNS rebinding"), and the server
would generate for it. And a server on a public address generates for anyone. So every request passes, in order:

1. **Host** (403): the ``Host`` header must name the bound address — for a loopback bind also ``localhost``,
   ``127.0.0.1``, ``::1``; for a wildcard bind (``0.0.0.0``, ``::``) any IP literal (clients that dial an address)
   — or a name given with ``--allow-host`` (``*`` allows any). A DNS name that is not allowed is what a
   rebinding page sends.
2. **Origin** (403): a browser request carries ``Origin``; it must be the server's own origin or one given with
   ``--allow-origin`` (``*`` allows any; allowed origins also get CORS headers, pre-flights included).
3. **API key** (401), when one is set (``--api-key`` or ``THINKTUNE_API_KEY``): ``Authorization: Bearer <key>``,
   compared in constant time. ``GET /health`` is exempt (load balancers probe it; it reveals only a queue length).
4. **Content type** (415): a POST must be ``application/json``.

Slow clients: :class:`HeaderTimeoutProtocol` closes a connection whose request headers are not complete within
``header_timeout`` seconds (uvicorn has a keep-alive timeout but none for headers, so 500 connections sending a
byte a second were all held); the body has its own deadline in :meth:`thinktune.serve.Server.read_json`.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc (``[::1]:8000`` → ``::1``), lower-cased."""
    v = value.strip().lower()
    if v.startswith("["):
        return v[1 : v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


class Policy:
    """Which hosts and origins a server bound to ``bind_host:port`` accepts, and its API key."""

    def __init__(self, bind_host: str, port: int, allow_hosts: Iterable[str] = (), allow_origins: Iterable[str] = (),
                 api_key: str | None = None):
        self.port = port
        bind = host_name(bind_host) if bind_host else ""
        self.wildcard = bind in WILDCARDS
        ip = _ip(bind)
        loopback = self.wildcard or bind == "localhost" or (ip is not None and ip.is_loopback)
        self.hosts = {bind} | (set(LOOPBACK_NAMES) if loopback else set())
        self.hosts -= {""}
        extra = [h.strip().lower() for h in allow_hosts if h.strip()]
        self.any_host = "*" in extra
        self.hosts |= {host_name(h) for h in extra if h != "*"}
        self.origins = {o.strip().rstrip("/").lower() for o in allow_origins if o.strip()}
        self.any_origin = "*" in self.origins
        self.api_key = api_key or None

    def host_ok(self, host: str | None) -> bool:
        if host is None or self.any_host:
            return True
        name = host_name(host)
        return name in self.hosts or (self.wildcard and _ip(name) is not None)

    def origin_ok(self, origin: str | None) -> bool:
        if origin is None or self.any_origin:
            return True
        o = origin.strip().rstrip("/").lower()
        if o in self.origins:
            return True
        parts = urlsplit(o)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        return parts.scheme == "http" and port == self.port and self.host_ok(parts.netloc)

    def key_ok(self, authorization: str | None) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


def _json_error(status: int, message: str, code: str, extra_headers: list[tuple[bytes, bytes]] = ()):
    import json

    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *extra_headers]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware applying :class:`Policy` to every HTTP request (see the module docstring)."""

    def __init__(self, app, policy: Policy):
        self.app, self.policy = app, policy

    def _refusal(self, scope) -> tuple | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        p = self.policy
        if not p.host_ok(headers.get("host")):
            return _json_error(403, f"Host {headers.get('host')!r} is not this server's address; start the "
                                    f"server with --allow-host to accept it", "host_not_allowed")
        if not p.origin_ok(headers.get("origin")):
            return _json_error(403, f"requests from the web origin {headers.get('origin')!r} are not allowed; "
                                    f"start the server with --allow-origin to accept them", "origin_not_allowed")
        exempt = scope["method"] == "GET" and scope["path"] == "/health"
        if not exempt and not p.key_ok(headers.get("authorization")):
            return _json_error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                               "invalid_api_key", [(b"www-authenticate", b"Bearer")])
        if scope["method"] == "POST":
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                return _json_error(415, f"Content-Type must be application/json, got {media or 'none'!r}",
                                   "unsupported_media_type")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                for message in refusal:
                    await send(message)
                return
        await self.app(scope, receive, send)


def guarded(app, policy: Policy):
    """``app`` behind :class:`Guard`, and behind CORS for the explicitly allowed origins."""
    wrapped = Guard(app, policy)
    if policy.origins:
        from starlette.middleware.cors import CORSMiddleware

        wrapped = CORSMiddleware(wrapped, allow_origins=["*"] if policy.any_origin else sorted(policy.origins),
                                 allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"])
    return wrapped


def header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, closing connections whose request headers take longer than ``seconds``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # headers still incomplete
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # the next request may start
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol
