"""The OpenAI-compatible server, driven on loopback by the official ``openai`` client and by raw HTTP.

Every server here binds 127.0.0.1 on a free port, serves a bounded number of requests and stops by itself.
The model is a tiny Qwen2 trained for a few seconds to answer "what is a + b?" in thinktune's format.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.helpers.server import serve_process, uvicorn_thread
from thinktune.formatting import DEFAULT_FORMAT, render
from thinktune.serve import Engine, ServeConfig, StreamSplitter, build_app, split_response

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

NAME = "tiny-adder"


def _question(a: int, b: int) -> str:
    return f"what is {a} + {b}?"


@pytest.fixture(scope="module")
def adder():
    """A tiny model that answers a + b in the completion format (≈ 10 s of CPU training, no TRL)."""
    from thinktune.config import TinyModelConfig
    from thinktune.models import build_tiny

    pairs = [(_question(a, b), render(f"{a} + {b} = {a + b}", str(a + b))) for a in range(1, 5) for b in range(1, 4)]
    torch.manual_seed(0)
    model, tok = build_tiny(TinyModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2,
                                            num_heads=4, max_positions=128), [t for p in pairs for t in p], seed=0)
    rows = []
    for q, c in pairs:
        p = tok.encode(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                               add_generation_prompt=True), add_special_tokens=False)
        rows.append((p, tok.encode(c, add_special_tokens=False) + [tok.eos_token_id]))
    T = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), T), tok.pad_token_id)
    labels = torch.full((len(rows), T), -100)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
        mask[i, : len(p) + len(c)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 200)
    model.train()
    for _ in range(200):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    assert loss.item() < 0.2
    return model, tok


@contextlib.contextmanager
def live(engine: Engine, graceful: int = 5):
    """Serve ``engine`` (no guard) on 127.0.0.1:<free port> in a thread; stops (and closes the engine) on exit."""
    with uvicorn_thread(lambda port: uvicorn.Config(build_app(engine), log_level="warning",
                                                    timeout_graceful_shutdown=graceful)) as port:
        yield port


def _client(port: int):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)


def _raw(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _engine(adder, **cfg) -> Engine:
    model, tok = adder
    return Engine(model, tok, ServeConfig(model_name=NAME, **cfg))


def _ask(client, a: int, b: int, **kw):
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": _question(a, b)}],
                                          temperature=0, max_tokens=kw.pop("max_tokens", 24), **kw)


# ---------------------------------------------------------------------------------------------------------------
# The reasoning / content split, without a server


SPLIT_CASES = [
    ("<think>\nstep 1\nstep 2\n</think>\n<answer>42</answer>", False, ("step 1\nstep 2", "42")),
    ("step 1\n</think>\n<answer>42</answer>", True, ("step 1", "42")),
    ("Just text, no tags.", False, (None, "Just text, no tags.")),
    ("<think>\ncut off while thin", False, ("cut off while thin", "")),
    ("Sure! <think>a</think> So <answer>7</answer>", False, ("a", "Sure!  So 7")),
    ("<think>  \n </think>\n<answer> 5 </answer>", False, ("", "5")),
    ("a < b and c <th > d", False, (None, "a < b and c <th > d")),
    ("<think>é ü 中文</think><answer>ok</answer>", False, ("é ü 中文", "ok")),
]


@pytest.mark.parametrize("text, prefilled, expected", SPLIT_CASES)
def test_split_and_stream_agree(text, prefilled, expected):
    assert split_response(text, DEFAULT_FORMAT, prefilled) == expected
    for step in (1, 2, 3, 7):  # whatever the chunking, the streamed deltas concatenate to the final split
        splitter = StreamSplitter(DEFAULT_FORMAT, prefilled, ["</answer>"])
        got = {"reasoning_content": "", "content": ""}
        for i in range(step, len(text) + step, step):
            for key, delta in splitter.feed(text[:i]):
                got[key] += delta
        for key, delta in splitter.finish(text):
            got[key] += delta
        assert (got["reasoning_content"], got["content"]) == (expected[0] or "", expected[1])


def test_well_formed_split_is_the_parser_answer():
    from thinktune.formatting import parse_completion

    text = render("3 + 4 = 7", "7")
    parsed = parse_completion(text)
    assert split_response(text) == (parsed.reasoning, parsed.answer)


# ---------------------------------------------------------------------------------------------------------------
# Live server


def test_openai_client_non_streaming_and_streaming(adder):
    with live(_engine(adder)) as port:
        client = _client(port)
        assert [m.id for m in client.models.list().data] == [NAME]
        r = _ask(client, 2, 3)
        msg = r.choices[0].message
        assert msg.reasoning_content == "2 + 3 = 5" and msg.content == "5"
        assert r.choices[0].finish_reason == "stop" and r.model == NAME
        assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24

        chunks = list(_ask(client, 2, 3, stream=True, stream_options={"include_usage": True}))
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert (reasoning, content) == (msg.reasoning_content, msg.content)
        assert sum(bool(c.choices and (c.choices[0].delta.content or getattr(c.choices[0].delta, "reasoning_content", None)))
                   for c in chunks) >= 3, "the answer arrives in several chunks"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens

        short = _ask(client, 2, 3, max_tokens=3)
        assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_bad_requests_get_4xx_and_the_server_keeps_serving(adder):
    good = {"model": NAME, "messages": [{"role": "user", "content": _question(1, 2)}], "temperature": 0,
            "max_tokens": 32}
    with live(_engine(adder, max_body_bytes=4096, max_tokens_cap=64)) as port:
        post = lambda body, **h: _raw(port, "POST", "/v1/chat/completions", body,
                                      {"Content-Type": "application/json", **h})
        cases = [
            (post(b"{not json"), 400, "not valid JSON"),
            (post(b"\xff\xfe"), 400, "not valid JSON"),
            (post(b"[1, 2]"), 400, "JSON object"),
            (post(json.dumps({"model": NAME}).encode()), 400, "messages"),
            (post(json.dumps({**good, "messages": []}).encode()), 400, "messages"),
            (post(json.dumps({**good, "messages": [{"role": "wizard", "content": "x"}]}).encode()), 400, "role"),
            (post(json.dumps({**good, "tools": []}).encode()), 400, "unsupported field 'tools'"),
            (post(json.dumps({**good, "n": 2}).encode()), 400, "n = 1"),
            (post(json.dumps({**good, "temperature": 7}).encode()), 400, "temperature"),
            (post(json.dumps({**good, "max_tokens": 65}).encode()), 400, "exceeds this server's limit of 64"),
            (post(json.dumps({**good, "max_tokens": 0}).encode()), 400, "max_tokens"),
            (post(json.dumps({**good, "model": "gpt-9"}).encode()), 404, "does not exist"),
            (post(json.dumps({**good, "steer": {"vector": "x", "strength": 1}}).encode()), 400, "unknown steering"),
            (post(json.dumps({**good, "tip": {"alpha": -1}}).encode()), 400, "tip"),
            (post(json.dumps({**good, "stop": ["a", "b", "c", "d", "e"]}).encode()), 400, "stop"),
            (post(json.dumps({**good, "messages": [{"role": "user", "content": "x" * 5000}]}).encode()), 413,
             "exceeds the limit"),
            (post(b"{}", **{"Content-Length": "10000000"}), 413, "exceeds the limit"),
            (_raw(port, "GET", "/v1/chat/completions"), 405, "Method Not Allowed"),
            (_raw(port, "GET", "/v2/nothing"), 404, "Not Found"),
        ]
        for (status, body), want_status, want_text in cases:
            assert status == want_status, (want_text, body)
            assert want_text in body["error"]["message"], body
        chunked = _chunked_post(port, b"x" * 10_000)
        assert chunked[0] == 413
        status, body = post(json.dumps(good).encode())
        assert status == 200 and body["choices"][0]["message"]["content"] == "3"
        with pytest.raises(openai.BadRequestError, match="exceeds this server's limit"):
            _ask(_client(port), 1, 2, max_tokens=1000)


def _chunked_post(port: int, payload: bytes):
    """A body without Content-Length (chunked transfer): the limit must hold while reading."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        for i in range(0, len(payload), 1000):
            part = payload[i : i + 1000]
            conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_fifty_concurrent_greedy_requests_match_their_solo_responses(adder, record_property):
    questions = [(a, b) for a in range(10) for b in range(5)]  # 50 distinct prompts
    engine = _engine(adder, max_batch=8)
    with live(engine) as port:
        client = _client(port)
        solo = {q: _ask(client, *q).choices[0].message for q in questions}  # one at a time
        assert max(engine.batches) == 1
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=50) as pool:
            together = dict(zip(questions, pool.map(lambda q: _ask(client, *q).choices[0].message, questions)))
        elapsed = time.perf_counter() - t0
    assert max(engine.batches) > 1, "concurrent requests were batched"
    for q in questions:
        assert (together[q].reasoning_content, together[q].content) == (solo[q].reasoning_content, solo[q].content), q
    assert len({solo[q].reasoning_content for q in questions}) > 10, "responses depend on their prompts"
    rps = len(questions) / elapsed
    record_property("requests_per_second", round(rps, 2))
    print(f"\n50 concurrent greedy requests: {rps:.1f} requests/s (batches up to {max(engine.batches)})")


def test_per_request_interventions(adder):
    from thinktune.decoding.steering import SteeringVector

    model, tok = adder
    vector = SteeringVector(torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 5, 1,
                            {"model": NAME})
    engine = Engine(model, tok, ServeConfig(model_name=NAME), vectors={"push": vector})
    with live(engine) as port:
        client = _client(port)
        plain = _ask(client, 2, 3)
        assert plain.model_extra["thinktune"]["interventions"] == {"tip": None, "steer": None}
        # TIP with "+" as the switch word and a huge α: the chain can no longer write "a + b"
        tipped = _ask(client, 2, 3, extra_body={"tip": {"words": ["+"], "alpha": 100.0, "beta": 50}})
        assert "+" not in (tipped.choices[0].message.reasoning_content or "") + tipped.choices[0].message.content
        assert tipped.model_extra["thinktune"]["interventions"]["tip"]["alpha"] == 100.0
        steered = _ask(client, 2, 3, extra_body={"steer": {"vector": "push", "strength": 4.0}})
        assert steered.choices[0].message != plain.choices[0].message
        assert steered.model_extra["thinktune"]["interventions"]["steer"] == {"vector": "push", "strength": 4.0}
        zero = _ask(client, 2, 3, extra_body={"steer": {"strength": 0.0}, "tip": {"words": ["+"], "alpha": 0.0}})
        assert zero.choices[0].message == plain.choices[0].message  # neutral settings are neutral
        again = _ask(client, 2, 3)
        assert again.choices[0].message == plain.choices[0].message  # nothing leaked into later requests


def test_client_that_disconnects_mid_stream_frees_its_row(adder):
    engine = _engine(adder, max_tokens_cap=4000)
    with live(engine) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = {"model": NAME, "messages": [{"role": "user", "content": "what is 9 + 9?"}], "temperature": 0,
                "max_tokens": 4000, "stream": True, "stop": ["never-appears"]}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline().startswith(b"data: ")
        conn.close()  # gone after the first event
        t0 = time.perf_counter()
        r = _ask(_client(port), 1, 1)  # queued behind the abandoned stream, which must stop early
        assert r.choices[0].message.content == "2"
        assert time.perf_counter() - t0 < 30


@pytest.mark.slow
def test_sigterm_lets_a_running_stream_finish(adder, tmp_path):
    """``thinktune serve`` in a subprocess: SIGTERM mid-stream → the stream completes, the process exits 0."""
    from thinktune.models import save_model

    model, tok = adder
    save_model(model, tok, tmp_path / NAME)
    with serve_process(tmp_path / NAME, "--max-tokens-cap", "1500", start_timeout=120) as (proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        # TIP on the end-of-text token keeps the model talking until max_tokens, so the stream is still running
        body = {"model": NAME, "messages": [{"role": "user", "content": "what is 9 + 9?"}], "temperature": 0,
                "max_tokens": 1500, "stream": True, "stop": ["never-appears"],
                "tip": {"words": [tok.eos_token, "</answer>"], "alpha": 1000.0, "beta": 5000}}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.readline().startswith(b"data: ")
        proc.send_signal(signal.SIGTERM)
        rest = resp.read().decode()
        assert rest.rstrip().endswith("data: [DONE]") and '"finish_reason": "length"' in rest, rest[-3000:]
        assert rest.count("data: ") > 100, "the stream was still running when SIGTERM arrived"
        assert proc.wait(60) == 0
