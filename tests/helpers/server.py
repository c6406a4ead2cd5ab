"""Shared by the server tests: a stub model (random init, built in about a second), a uvicorn server in a thread,
and ``thinktune serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

STUB = "stub"


def stub_model():
    """An untrained 1-layer Qwen2 with a BPE tokenizer and chat template: the server needs tokens, not sense."""
    import torch

    from thinktune.config import TinyModelConfig
    from thinktune.formatting import render
    from thinktune.models import build_tiny

    corpus = [f"what is {a} + {b}?" for a in range(9) for b in range(9)] + [render("1 + 1 = 2", "2")] * 5
    torch.manual_seed(0)
    model, tok = build_tiny(TinyModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1,
                                            num_heads=2, max_positions=128), corpus, seed=0)
    model.eval()
    return model, tok


@contextlib.contextmanager
def uvicorn_thread(make_config):
    """A uvicorn server from ``make_config(port)`` on 127.0.0.1:<free port> in a thread; stops on exit. Yields
    the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(make_config(port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive()


@contextlib.contextmanager
def live_guarded(engine, policy=None):
    """``engine`` served with :func:`thinktune.serve.uvicorn_config` — the settings ``thinktune serve`` uses
    (guard, header timeout, connection limit). Yields the port."""
    from thinktune.serve import uvicorn_config
    from thinktune.serve_guard import Policy

    with uvicorn_thread(lambda port: uvicorn_config(engine, "127.0.0.1", port, policy or Policy("127.0.0.1", port),
                                                    5)) as port:
        yield port


@contextlib.contextmanager
def serve_process(model_dir, *args: str, env: dict | None = None, start_timeout: float = 300.0):
    """``thinktune serve MODEL_DIR --port <free port> ARGS`` in a subprocess, answering ``GET /health`` before this
    yields ``(proc, port)``; killed on exit if it is still running."""
    import http.client
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "thinktune", "serve", str(model_dir), "--port", str(port), *args],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
