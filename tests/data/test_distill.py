"""distill: a real HTTP server on loopback (OpenAI-compatible), rejection sampling, retries, resume."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from thinktune.data.distill import DistillError, LocalTeacher, OpenAITeacher, TeacherSettings, distill, journal_path
from thinktune.data.records import read_records
from thinktune.data.tasks import get_task


class FakeTeacher:
    """chat/completions on 127.0.0.1: for "Compute ..." questions, choice j is right when j is even, wrong when odd.
    The first request for each question answers 429 (with Retry-After: 0), and every 7th request answers 500."""

    def __init__(self, fail_question: str | None = None):
        self.requests: list[str] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.fail_question = fail_question
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                q = body["messages"][-1]["content"].split("\n\n")[-1]
                with outer.lock:
                    outer.requests.append(q)
                    first = q not in outer.seen
                    outer.seen.add(q)
                    nth = len(outer.requests)
                if self.headers.get("Authorization") != "Bearer sk-test":
                    return self._send(401, {"error": "bad key"})
                if first:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                if nth % 7 == 0 or q == outer.fail_question:
                    return self._send(500, {"error": "boom"})
                value = eval(q.removeprefix("Compute ").rstrip("."))  # the test's own questions only
                choices = []
                for j in range(body.get("n", 1)):
                    ans = value if j % 2 == 0 else value + 1
                    text = f"<think>\nTry {j}: I compute {q}\nIt is {ans}\n</think>\n<answer>{ans}</answer>"
                    choices.append({"index": j, "message": {"role": "assistant", "content": text}})
                self._send(200, {"choices": choices})

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _teacher(url, **kw):
    return OpenAITeacher(url, "fake", api_key="sk-test", settings=TeacherSettings(max_tokens=64), timeout_s=5,
                         backoff_s=0.01, max_backoff_s=0.05, concurrency=4, **kw)


def test_rejection_sampling_retries_and_atomic_output(tmp_path):
    recs = get_task("chain_arith").generate(12, seed=5)
    out = tmp_path / "traces.jsonl"
    with FakeTeacher() as srv:
        teacher = _teacher(srv.url)
        rep = distill(recs, teacher, out, k=4)
    kept = read_records(out)
    assert rep.samples == 48 and rep.verdicts == {"verified": 24, "wrong": 24}
    assert len(kept) == 24 and rep.questions_with_a_trace == 12
    assert all(r.meta["source_id"] in {x.id for x in recs} and r.answer == r.meta["teacher_answer"] for r in kept)
    assert rep.retries >= 12  # every question's first request was answered 429
    assert not journal_path(out).exists()


def test_resume_after_crash_skips_done_ids(tmp_path):
    recs = get_task("chain_arith").generate(10, seed=6)
    out = tmp_path / "traces.jsonl"
    done = []

    def crash_after_four(n):
        done.append(n)
        if len(done) == 4:
            raise KeyboardInterrupt

    with FakeTeacher() as srv:
        with pytest.raises(KeyboardInterrupt):
            distill(recs, _teacher(srv.url), out, k=2, on_question=crash_after_four)
        assert not out.exists()  # no half-written output
        journaled = [json.loads(x)["id"] for x in journal_path(out).read_text().splitlines()]
        assert len(journaled) >= 4
        with open(journal_path(out), "a") as fh:
            fh.write('{"id": "torn')  # a line torn by the crash is ignored
        srv.requests.clear()
        rep = distill(recs, _teacher(srv.url), out, k=2)
        asked = set(srv.requests)
    by_q = {r.question: r.id for r in recs}
    assert rep.resumed == len(journaled) and not ({by_q[q] for q in asked} & set(journaled))
    assert len(read_records(out)) == 10  # one verified trace (sample 0) per question


def test_failures_keep_journal_and_bad_key_fails_fast(tmp_path):
    recs = get_task("chain_arith").generate(3, seed=7)
    out = tmp_path / "t.jsonl"
    with FakeTeacher(fail_question=recs[1].question) as srv:
        with pytest.raises(DistillError, match="run the same command again"):
            distill(recs, _teacher(srv.url, max_retries=2), out, k=2)
        assert not out.exists() and journal_path(out).exists()
        bad = OpenAITeacher(srv.url, "fake", api_key="wrong", timeout_s=5, max_retries=3, backoff_s=0.01)
        with pytest.raises(DistillError, match="HTTP 401"):
            distill(recs, bad, tmp_path / "u.jsonl", k=1)
    with pytest.raises(DistillError, match="http"):
        OpenAITeacher("localhost:1234", "m")


def test_unreachable_endpoint_is_a_clean_error(tmp_path):
    recs = get_task("chain_arith").generate(1, seed=8)
    t = OpenAITeacher("http://127.0.0.1:9/v1", "m", timeout_s=1, max_retries=1, backoff_s=0.01)
    with pytest.raises(DistillError, match="failed after retries"):
        distill(recs, t, tmp_path / "o.jsonl", k=1)


def test_local_teacher_tiny_model(tmp_path):
    from thinktune.config import TinyModelConfig
    from thinktune.models import build_tiny

    recs = get_task("chain_arith").generate(3, seed=9)
    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                            vocab_size=300), [r.question + r.reasoning for r in recs] * 5, seed=0)
    teacher = LocalTeacher(model, tok, TeacherSettings(max_tokens=8, instruction=None), batch_size=2)
    rep = distill(recs, teacher, tmp_path / "local.jsonl", k=2)
    assert rep.samples == 6 and sum(rep.verdicts.values()) == 6  # an untrained model: judged, mostly rejected
    assert (tmp_path / "local.jsonl").exists()
