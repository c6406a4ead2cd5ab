"""The server against strangers and broken clients (issue 20): API key, JSON only, Host / Origin, slow clients,
abandoned generations, and a 400 — never a 500 — for every malformed value."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from tests.helpers.server import STUB, live_guarded, serve_process, stub_model
from thinktune.formatting import DEFAULT_FORMAT
from thinktune.serve import Engine, ServeConfig, StreamSplitter

GOOD = {"model": STUB, "messages": [{"role": "user", "content": "what is 1 + 2?"}], "temperature": 0,
        "max_tokens": 4}


@pytest.fixture(scope="module")
def stub():
    return stub_model()


def engine(stub, **cfg) -> Engine:
    model, tok = stub
    return Engine(model, tok, ServeConfig(model_name=STUB, **cfg))


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            host: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


def post(port: int, payload, **headers):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(port, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json", **headers})


def test_api_key_is_required_when_set(stub):
    from thinktune.serve_guard import Policy

    with live_guarded(engine(stub), None) as port:
        assert post(port, GOOD)[0] == 200  # no key configured: open (on loopback)
    with live_guarded(engine(stub), Policy("127.0.0.1", 0, api_key="s3cret")) as port:
        status, headers, body = post(port, GOOD)
        assert status == 401 and "API key" in body["error"]["message"] and headers["www-authenticate"] == "Bearer"
        assert post(port, GOOD, Authorization="Bearer wrong")[0] == 401
        assert post(port, GOOD, Authorization="Bearer s3cret")[0] == 200
        assert request(port, "GET", "/v1/models")[0] == 401
        assert request(port, "GET", "/health")[0] == 200  # probes need no key


def test_a_web_page_cannot_make_the_local_server_generate(stub):
    """text/plain POST with a foreign Host / Origin was served: any page the user opened could use the server."""
    with live_guarded(engine(stub)) as port:
        body = json.dumps(GOOD).encode()
        status, _, got = request(port, "POST", "/v1/chat/completions", body, {"Content-Type": "text/plain"})
        assert status == 415 and "application/json" in got["error"]["message"]
        assert request(port, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"},
                       host=f"evil.example:{port}")[0] == 403  # DNS rebinding: a name that resolves to 127.0.0.1
        status, _, got = post(port, GOOD, Origin="http://evil.example")
        assert status == 403 and "--allow-origin" in got["error"]["message"]
        assert post(port, GOOD, Origin=f"http://localhost:{port}")[0] == 200  # the server's own origin
        assert post(port, GOOD, Origin="http://localhost:3000")[0] == 403  # another local app
        assert request(port, "GET", "/health", host=f"localhost:{port}")[0] == 200


def test_allowed_hosts_and_origins_by_flag(stub):
    from thinktune.serve_guard import Policy

    policy = Policy("127.0.0.1", 0, allow_hosts=["api.example.com"], allow_origins=["https://app.example.com"])
    with live_guarded(engine(stub), policy) as port:
        body = json.dumps(GOOD).encode()
        assert request(port, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"},
                       host="api.example.com")[0] == 200
        status, headers, _ = post(port, GOOD, Origin="https://app.example.com")
        assert status == 200 and headers["access-control-allow-origin"] == "https://app.example.com"
        status, headers, _ = request(port, "OPTIONS", "/v1/chat/completions", None, {
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://app.example.com"
        assert post(port, GOOD, Origin="https://other.example.com")[0] == 403


def test_a_wildcard_bind_accepts_addresses_but_not_unknown_names():
    from thinktune.serve_guard import Policy

    p = Policy("0.0.0.0", 8000)
    assert p.host_ok("10.1.2.3:8000") and p.host_ok("[fe80::1]:8000") and p.host_ok("localhost:8000")
    assert not p.host_ok("attacker.example:8000")
    assert Policy("0.0.0.0", 8000, allow_hosts=["*"]).host_ok("anything")
    assert not Policy("10.0.0.5", 8000).host_ok("localhost:8000")


def test_slow_clients_are_disconnected_and_the_server_keeps_serving(stub):
    """No header/body read timeout: 500 connections sending a byte now and then were all held."""
    with live_guarded(engine(stub, header_timeout=1.0, body_timeout=1.0)) as port:
        socks = []
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        t0 = time.monotonic()
        for _ in range(6):  # keep trickling header lines for 3 s
            for s in socks:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            time.sleep(0.5)
        closed = 0
        for s in socks:
            s.settimeout(30)
            try:
                closed += s.recv(1024) == b""
            except OSError:
                closed += 1
            s.close()
        assert closed == 100, f"{100 - closed} slow connections still held after {time.monotonic() - t0:.1f}s"
        # a body that never completes: 408 after body_timeout
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"model\":")
        assert b" 408 " in s.recv(4096).split(b"\r\n")[0]
        s.close()
        assert post(port, GOOD)[0] == 200


class CountingEngine(Engine):
    """Records how many tokens each finished row generated."""

    def __init__(self, *a, **k):
        self.generated: list[int] = []
        super().__init__(*a, **k)

    def _generate(self, batch):
        super()._generate(batch)
        self.generated += [len(j.tokens) for j in batch]


def test_a_non_streaming_client_that_disconnects_stops_its_generation(stub):
    """The generation kept running for nobody (the next request waited 10.7 s)."""
    model, tok = stub
    eng = CountingEngine(model, tok, ServeConfig(model_name=STUB, max_tokens_cap=20_000))
    long = {**GOOD, "max_tokens": 20_000, "stop": ["never-appears"],
            "tip": {"words": [tok.eos_token], "alpha": 1000.0, "beta": 50_000}}  # never ends early
    with live_guarded(eng) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        body = json.dumps(long).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(1.0)
        s.close()
        assert post(port, GOOD)[0] == 200  # served after the abandoned row, which must have stopped early
    assert eng.generated[0] < 20_000, "the abandoned row ran to its limit"


@pytest.mark.parametrize("payload, fragment", [
    ({**GOOD, "temperature": 1, "seed": 2**70}, "seed"),
    ({**GOOD, "temperature": 1, "seed": -(2**70)}, "seed"),
    (json.dumps({**GOOD, "messages": [{"role": "user", "content": "x"}]}).replace('"x"', '"\\ud800"').encode(),
     "lone surrogate"),
    (json.dumps({**GOOD, "stop": "x"}).replace('"x"', '"a\\udfff"').encode(), "lone surrogate"),
    (b'{"model": "stub", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    (b'{"model": "stub", "stream_options": ' + b'{"a": ' * 150 + b"1" + b"}" * 150 + b"}", "nested"),
    (json.dumps(GOOD).replace('"max_tokens": 4', '"max_tokens": ' + "9" * 5000).encode(), "more than"),
    (json.dumps(GOOD).replace('"temperature": 0', '"temperature": 1e999').encode(), "not a finite number"),
    (json.dumps(GOOD).replace('"temperature": 0', '"temperature": NaN').encode(), "NaN is not valid JSON"),
    ({**GOOD, "temperature": 1e-300}, "temperature"),
    ({**GOOD, "steer": {"strength": 1e308}}, "steer.strength"),
    ({**GOOD, "tip": {"alpha": 1e308, "beta": 2**70}}, None),  # huge but finite: allowed, must not 500
    ({**GOOD, "messages": [{"role": "assistant", "content": "hi"}] * 3}, None),
])
def test_every_malformed_value_is_a_400(stub, payload, fragment):
    with live_guarded(engine(stub, max_body_bytes=1_000_000)) as port:
        status, _, body = post(port, payload)
        assert status < 500, body
        if fragment is not None:
            assert status == 400 and fragment in body["error"]["message"], body
        assert post(port, GOOD)[0] == 200


def test_the_streaming_splitter_is_not_cubic_in_a_run_of_answer_tags():
    """1,024 tokens of '<answer>' took 21.8 s on the event loop."""
    splitter = StreamSplitter(DEFAULT_FORMAT, False, [DEFAULT_FORMAT.stop])
    t0 = time.process_time()
    text = ""
    for _ in range(2048):
        text += "<answer>"
        splitter.feed(text)
    splitter.finish(text)
    assert time.process_time() - t0 < 3.0  # CPU seconds (each feed is linear in the text so far)


@pytest.mark.slow
def test_thinktune_serve_takes_its_api_key_from_the_environment(stub, tmp_path):
    """The command line end to end: THINKTUNE_API_KEY, the default Host check, a clean SIGTERM."""
    import signal

    from thinktune.models import save_model

    model, tok = stub
    save_model(model, tok, tmp_path / STUB)
    with serve_process(tmp_path / STUB, env={"THINKTUNE_API_KEY": "from-env"}) as (proc, port):
        assert request(port, "GET", "/v1/models")[0] == 401
        assert request(port, "GET", "/v1/models", None, {"Authorization": "Bearer from-env"})[0] == 200
        assert request(port, "GET", "/v1/models", None, {"Authorization": "Bearer from-env"},
                       host="rebound.example")[0] == 403
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
