"""Benchmark: requests/s of ``thinktune serve`` — one at a time vs concurrent, queued (batch 1) vs batched.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py            # --requests 50 --max-tokens 32 --out FILE

A tiny random Qwen2 model (no download, built in a second, its matrices re-drawn with a large standard deviation
so that every prompt gets its own greedy response) is served on 127.0.0.1 through the real HTTP stack (uvicorn,
the official ``openai`` client). Four measurements on the same ``--requests`` distinct greedy prompts:

1. sequential: one request at a time (the "served alone" responses);
2. concurrent, ``max_batch=1``: all requests at once, queued and decoded one by one;
3. concurrent, ``max_batch=8``: all at once, compatible requests decoded together;
4. streaming, concurrent, ``max_batch=8``.

Printed: requests/s of each, the ratios (3)/(2) and (3)/(1), and whether every concurrent response equals its
sequential one (it must). ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def tiny_model():
    import torch

    from thinktune.config import TinyModelConfig
    from thinktune.models import build_tiny

    corpus = [f"what is {a} + {b}? The answer is {a + b}." for a in range(20) for b in range(20)]
    model, tok = build_tiny(TinyModelConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_layers=3,
                                            num_heads=4, max_positions=256), corpus, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    return model.eval(), tok


class Live:
    """The app on a free loopback port in a thread; stops by itself on exit."""

    def __init__(self, engine):
        import uvicorn

        from thinktune.serve import build_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(build_app(engine), log_level="warning", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import openai
    import torch

    from thinktune.serve import Engine, ServeConfig

    model, tok = tiny_model()
    prompts = [f"what is {a} + {b}?" for a in range(20) for b in range(20)][: args.requests]

    def run(max_batch: int, mode: str):
        engine = Engine(model, tok, ServeConfig(model_name="tiny", max_batch=max_batch))
        with Live(engine) as live:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{live.port}/v1", api_key="-", max_retries=0,
                                   timeout=120)

            def ask(p):
                kw = dict(model="tiny", messages=[{"role": "user", "content": p}], temperature=0,
                          max_tokens=args.max_tokens)
                if mode == "stream":
                    return "".join(c.choices[0].delta.content or "" for c in
                                   client.chat.completions.create(stream=True, **kw) if c.choices)
                return client.chat.completions.create(**kw).choices[0].message.content

            ask(prompts[0])  # warm-up
            t0 = time.perf_counter()
            if mode == "sequential":
                texts = [ask(p) for p in prompts]
            else:
                with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
                    texts = list(pool.map(ask, prompts))
            seconds = time.perf_counter() - t0
        return texts, len(prompts) / seconds, max(engine.batches)

    solo, rps_seq, _ = run(8, "sequential")
    queued, rps_queued, _ = run(1, "concurrent")
    batched, rps_batched, biggest = run(8, "concurrent")
    streamed, rps_stream, _ = run(8, "stream")
    identical = queued == solo and batched == solo and streamed == solo
    result = {
        "requests": len(prompts), "max_tokens": args.max_tokens, "torch_threads": torch.get_num_threads(),
        "requests_per_s": {"sequential": round(rps_seq, 2), "concurrent_batch1": round(rps_queued, 2),
                           "concurrent_batch8": round(rps_batched, 2), "streaming_batch8": round(rps_stream, 2)},
        "batched_over_queued": round(rps_batched / rps_queued, 2),
        "batched_over_sequential": round(rps_batched / rps_seq, 2),
        "largest_batch": biggest,
        "identical_to_solo": identical,
        "machine": f"{platform.machine()} {platform.python_version()}",
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
