"""Benchmark: labels per minute a scripted client sustains against ``thinktune label``, and the save latency.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_labels.py              # --labels 2000 --clients 1 --out FILE

The server is the real command (``thinktune label CANDIDATES --out …``, its own process, uvicorn on 127.0.0.1)
on ``--labels`` items of two candidates each. Each client is an annotator on one keep-alive HTTP connection that
does what the page does per label: ``POST /api/next`` (the item to label), then ``POST /api/label`` (the save:
committed to SQLite in WAL mode with ``synchronous=FULL`` — fsynced — before the answer). Measured:

- labels/min: labels saved divided by the wall time of the whole loop (next + label, all clients together);
- save latency: the round trip of each ``/api/label`` request as the client sees it (p50, p99, max);
- every label stored once: the server's count equals the labels sent.

The target (issue 22): at least 1,000 labels/min with p99 save latency under 50 ms, one client. ``--clients N``
runs N annotators at once (each on its own connection and thread) for the concurrent case.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path


def write_candidates(path: Path, n: int) -> None:
    rows = []
    for i in range(n):
        a, b = i % 9 + 1, (i * 7) % 9 + 1
        rows.append({"id": f"q{i}", "question": f"Compute {a} + {b}. (item {i})", "answer": str(a + b),
                     "completions": [f"<think>\n{a} + {b} = {a + b}\n</think>\n<answer>{a + b}</answer>",
                                     f"<think>\n{a} + {b} = {a + b + 1}\n</think>\n<answer>{a + b + 1}</answer>"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def start_server(cands: Path, out: Path) -> tuple[subprocess.Popen, int, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "thinktune.cli", "label", str(cands), "--out", str(out),
                             "--port", str(port), "--overlap", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="400"))
    token = None
    for line in proc.stdout:
        if line.startswith("open http"):
            token = line.split("token=")[1].split()[0]
            break
    if token is None:
        raise SystemExit(f"the server did not start: {proc.stdout.read()}")
    t0 = time.time()
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/health?token={token}")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port, token
        except OSError:
            pass
        if time.time() - t0 > 120 or proc.poll() is not None:
            raise SystemExit("the server did not answer /health")
        time.sleep(0.05)


class Client:
    """One annotator on one keep-alive connection."""

    def __init__(self, port: int, token: str, name: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json", "X-Label-Token": token}
        self.name = name
        self.save_ms: list[float] = []
        self.labels = 0

    def post(self, path: str, body: dict) -> dict:
        self.conn.request("POST", path, json.dumps(body), self.headers)
        r = self.conn.getresponse()
        data = json.loads(r.read())
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data}")
        return data

    def run(self, limit: int) -> None:
        while self.labels < limit:
            item = self.post("/api/next", {"annotator": self.name})["item"]
            if item is None:
                return
            body = {"label_id": uuid.uuid4().hex, "annotator": self.name, "item": item["id"],
                    "choice": "A" if self.labels % 3 else "B", "seconds": 1.0}
            t = time.perf_counter()
            self.post("/api/label", body)
            self.save_ms.append((time.perf_counter() - t) * 1000)
            self.labels += 1


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(n_labels: int, clients: int, warmup: int = 50) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cands, out = Path(tmp) / "cands.jsonl", Path(tmp) / "labels.jsonl"
        write_candidates(cands, n_labels + warmup * clients)
        proc, port, token = start_server(cands, out)
        try:
            for i in range(clients):  # connection set-up, first requests: not measured
                Client(port, token, f"warm{i}").run(warmup)
            workers = [Client(port, token, f"annotator{i}") for i in range(clients)]
            per = n_labels // clients
            threads = [threading.Thread(target=w.run, args=(per,)) for w in workers]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            check = Client(port, token, "check")
            check.conn.request("GET", f"/health?token={token}")
            stored = json.loads(check.conn.getresponse().read())["labels"]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        lat = [x for w in workers for x in w.save_ms]
        sent = sum(w.labels for w in workers)
        return {"clients": clients, "labels": sent, "wall_s": round(wall, 4),
                "labels_per_min": round(sent / wall * 60), "save_ms_p50": round(statistics.median(lat), 2),
                "save_ms_p99": round(percentile(lat, 0.99), 2), "save_ms_max": round(max(lat), 2),
                "stored_once": stored == sent + warmup * clients}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = measure(args.labels, args.clients)
    result.update(target_labels_per_min=1000, target_p99_ms=50,
                  met=result["labels_per_min"] >= 1000 and result["save_ms_p99"] < 50 and result["stored_once"],
                  machine=f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
                  python=platform.python_version())
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
