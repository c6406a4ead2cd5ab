"""``thinktune label`` over HTTP, as a scripted client sees it (the real browser is in test_browser.py): the token
gate, the page's security headers, kill -9 between labels with a retried label stored once, the labels file the
server keeps, ``label stats`` / ``label pairs`` / ``label export``, and one-line errors for bad input."""

import json
import uuid

import pytest

from tests.helpers.labelling import LabelServer, label_all, write_candidates
from tests.helpers.pipeline import thinktune
from thinktune.data.labels import read_labels


def test_token_gate_headers_kill9_retry_and_the_labels_file(tmp_path):
    write_candidates(tmp_path / "cands.jsonl", 12)
    out = tmp_path / "labels.jsonl"
    server = LabelServer(tmp_path / "cands.jsonl", out, "--export-every", "0.2", "--overlap", "0").start()
    try:
        for path in ("/", "/static/label.js", "/api/session", f"/?token={server.token[:-1]}"):
            with pytest.raises(Exception) as err:
                server.get(path)
            assert getattr(err.value, "code", None) == 403, path
        assert server.post("/api/next", {"annotator": "ana"}, token=None)[0] == 403
        assert server.post("/api/next", {"annotator": "ana"}, token="x" * 32)[0] == 403
        status, html = server.get(f"/?token={server.token}")
        assert status == 200 and "<script src=\"/static/label.js" in html
        import urllib.request

        with urllib.request.urlopen(f"{server.base()}/?token={server.token}") as r:
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
        assert server.post("/api/next", {"annotator": "<b>"})[0] == 400  # names are checked

        assert label_all(server, "ana", limit=5) == 5
        _, nxt = server.post("/api/next", {"annotator": "ana"})
        label = {"label_id": uuid.uuid4().hex, "annotator": "ana", "item": nxt["item"]["id"], "choice": "A"}
        assert server.post("/api/label", label)[1]["duplicate"] is False
        server.kill9()  # the answer may never have reached the page: it sends the label again after the restart
        server.start()
        status, again = server.post("/api/label", label)
        assert status == 200 and again["duplicate"] is True and again["progress"]["mine"] == 6
        assert label_all(server, "ana", limit=3) == 3
    finally:
        server.stop()
    labels = read_labels(out)
    assert len(labels) == 9 and len({lab["label_id"] for lab in labels}) == 9
    assert len({lab["item"] for lab in labels}) == 9
    scripted = [lab for lab in labels if lab["choice"] in ("A", "B")]
    assert scripted and all(  # the scripted annotator picks the verifier's answer
        next(c for c in lab["candidates"] if c["id"] == lab["ranking"][0])["correct"] for lab in labels[:5])

    stats = thinktune("label", "stats", str(out), "--json")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["labels"] == 9 and summary["per_annotator"]["ana"]["labels"] == 9
    pairs = thinktune("label", "pairs", str(out), "--out", str(tmp_path / "pairs.jsonl"))
    assert pairs.returncode == 0, pairs.stderr
    rows = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == summary["pairs"] and rows[0]["prompt"][0]["role"] == "user"
    export = thinktune("label", "export", str(tmp_path / "labels.sqlite"), "--out", str(tmp_path / "again.jsonl"))
    assert export.returncode == 0, export.stderr
    assert read_labels(tmp_path / "again.jsonl") == labels


@pytest.mark.parametrize("args, message", [
    (["label", "{tmp}/missing.jsonl", "--out", "{tmp}/l.jsonl"], "not a run directory or a candidates file"),
    (["label", "{tmp}/bad.jsonl", "--out", "{tmp}/l.jsonl"], "bad.jsonl:2: completions: required"),
    (["label", "{tmp}/good.jsonl", "--out", "{tmp}/mine.jsonl"], "mine.jsonl exists and was not written by this"),
    (["label", "stats", "{tmp}/bad.jsonl"], "bad.jsonl:1: completions: unknown field (a label has"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, args, message):
    write_candidates(tmp_path / "good.jsonl", 2, xss=False)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "Q", "completions": ["a", "b"]}) + "\n"
                                        + json.dumps({"question": "Q2"}) + "\n")
    (tmp_path / "mine.jsonl").write_text("a user's file\n")
    proc = thinktune(*(a.format(tmp=tmp_path) for a in args))
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "mine.jsonl").read_text() == "a user's file\n"
    assert not (tmp_path / "l.jsonl").exists()
