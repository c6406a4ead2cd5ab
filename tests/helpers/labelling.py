"""The labelling server as the user runs it (``thinktune label`` in its own process group), candidate files, and
the scripted annotator of experiments/human_feedback.py, who prefers the verifier's answer (a stand-in for a person)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from thinktune.formatting import render


def _load_experiment(name: str):
    """``experiments/<name>.py`` as a module (experiments/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "experiments"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HUMAN_FEEDBACK = _load_experiment("human_feedback")  # its scripted annotator is the tests' stand-in for a person
scripted_choice = HUMAN_FEEDBACK.scripted_choice

XSS_REASONING = "<script>window.__xss = 1; document.title = 'pwned'</script> 2 + 3 = 5"
XSS_ANSWER = "<img src=x onerror=\"window.__xss = 2\">5"


def write_candidates(path: Path, n: int, k: int = 2, xss: bool = True) -> list[dict]:
    """n prompts "Compute a + b." with k candidate completions: the first right, the others wrong by 1, 2, …; the
    first item's wrong candidate carries a <script> and an <img onerror> (model output is never markup)."""
    rows = []
    for i in range(n):
        a, b = i % 9 + 1, (i * 7) % 9 + 1
        comps = [render(f"{a} + {b} = {a + b}", str(a + b))]
        comps += [render(f"{a} + {b} = {a + b + j}", str(a + b + j)) for j in range(1, k)]
        rows.append({"id": f"q{i}", "question": f"Compute {a} + {b}. (item {i})", "completions": comps,
                     "answer": str(a + b), "task": "chain_arith"})
    if xss:
        rows[0]["completions"][1] = render(XSS_REASONING, XSS_ANSWER)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class LabelServer:
    """``thinktune label SOURCE --out OUT …`` in a subprocess; ``kill9()`` and ``start()`` again to crash and resume."""

    def __init__(self, source: Path, out: Path, *args: str, port: int | None = None):
        self.source, self.out, self.args = source, out, list(args)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.url = self.token = None

    def start(self, timeout: float = 60) -> "LabelServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="400")
        cmd = [sys.executable, "-m", "thinktune.cli", "label", str(self.source), "--out", str(self.out),
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        t0 = time.time()
        for line in self.proc.stdout:
            if line.startswith("open http"):
                self.url = line.split()[1]
                self.token = self.url.split("token=")[1]
                break
            if time.time() - t0 > timeout:
                break
        if self.url is None:
            raise AssertionError(f"server did not start: {self.proc.stdout.read() if self.proc.poll() else ''}")
        while True:  # the URL is printed just before uvicorn binds
            try:
                self.get(f"/health?token={self.token}")
                return self
            except (urllib.error.URLError, ConnectionError):
                if time.time() - t0 > timeout or self.proc.poll() is not None:
                    raise AssertionError("server did not answer /health") from None
                time.sleep(0.05)

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.base() + path, timeout=10) as r:
            return r.status, r.read().decode()

    def post(self, path: str, body: dict, token: str | None = "default") -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Label-Token"] = self.token if token == "default" else token
        req = urllib.request.Request(self.base() + path, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                return e.code, json.loads(text)
            except json.JSONDecodeError:
                return e.code, {"text": text}

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        """SIGTERM (a graceful stop, which exports the labels file); returns the server's remaining output."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        return self.proc.stdout.read() if self.proc else ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_all(server: LabelServer, annotator: str, limit: int | None = None) -> int:
    """Label items over HTTP as the scripted annotator (reveal the verdict, choose by it); returns the count."""
    n = 0
    while limit is None or n < limit:
        _, nxt = server.post("/api/next", {"annotator": annotator})
        if nxt["item"] is None:
            break
        item = nxt["item"]["id"]
        _, rev = server.post("/api/reveal", {"annotator": annotator, "item": item})
        status, _ = server.post("/api/label", {"label_id": uuid.uuid4().hex, "annotator": annotator, "item": item,
                                               "choice": scripted_choice(rev["verdicts"]), "verdict_seen": True})
        assert status == 200
        n += 1
    return n



def label_file_by_script(candidates: Path, out: Path, annotators: tuple[str, ...] = ("ana",), overlap: float = 0.0,
                         k: int = 2, seed: int = 0) -> int:
    """A labels file as a session of careful scripted annotators leaves it (the store, without HTTP; the
    experiment's :func:`label_by_script`). Returns the label count."""
    from thinktune.feedback.items import from_candidates_file
    from thinktune.feedback.store import LabelStore, Settings

    store = LabelStore(out.with_suffix(".sqlite"), from_candidates_file(candidates, k, seed), Settings(seed, overlap))
    try:
        HUMAN_FEEDBACK.label_by_script(store, dict.fromkeys(annotators, 0.0), seed)
        return store.export(out)
    finally:
        store.close()
