"""The labelling page in a real browser: Debian's headless Chromium driven by Playwright (never a downloaded browser).

One annotator labels 10 items with the mouse and 10 with the keyboard, reloads in between (progress and place
kept), and the server is killed with SIGKILL between two clicks and started again (the page retries the label it
was saving; every label is stored exactly once). A second annotator labels at the same time in their own browser
context. Model text with ``<script>`` and ``<img onerror>`` is shown as text; requests without the token get 403;
the page fits a 390 px wide screen. A k = 3 session is ranked by dragging and by keys.
"""

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers.labelling import XSS_ANSWER, XSS_REASONING, LabelServer, write_candidates
from thinktune.data.labels import read_labels

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the driver only; the "
                                                               "browser is Debian's chromium)")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def question(page) -> str:
    return page.inner_text("#question")


def wait_for_new_item(page, old: str) -> str:
    page.wait_for_function("old => document.querySelector('#question').textContent !== old", arg=old,
                           timeout=30_000)
    return question(page)


def progress_mine(page) -> int:
    text = page.inner_text("#progress")
    return int(text.split("You: ")[1].split(" ")[0])


def test_label_twenty_by_mouse_and_keyboard_reload_kill9_two_annotators_xss_403(browser, tmp_path):
    write_candidates(tmp_path / "cands.jsonl", 60)
    server = LabelServer(tmp_path / "cands.jsonl", tmp_path / "labels.jsonl", "--overlap", "0.5",
                         "--export-every", "0.5").start()
    try:
        # --- no token, no page, no API ---------------------------------------------------------------------------
        for path in ("/", "/api/session", "/static/label.js", "/health", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.base() + path, timeout=10)
            assert err.value.code == 403, path
        assert server.post("/api/label", {"annotator": "ana"}, token=None)[0] == 403
        assert server.post("/api/next", {"annotator": "ana"}, token="wrong")[0] == 403
        status, body = server.get(f"/api/session?token={server.token}")  # GET never changes state
        assert status == 200 and json.loads(body)["choices"]

        ana_ctx = browser.new_context(viewport={"width": 1200, "height": 900})
        page = ana_ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append("dialog " + d.message))
        page.goto(server.url)
        page.fill("#name", "ana")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#work:not([hidden])")

        # --- model output is text: the first item carries <script> and <img onerror> -----------------------------
        assert question(page).startswith("Compute 1 + 1. (item 0)")
        for details in page.query_selector_all("details.reasoning"):
            details.click()
        shown = page.inner_text("#cands")
        assert XSS_REASONING in shown and XSS_ANSWER in shown
        assert page.evaluate("window.__xss") is None and page.title() == "thinktune · preference labels"
        assert page.evaluate("document.querySelectorAll('#cands img, #cands script').length") == 0

        seen: list[str] = []  # questions ana labelled, in order
        verdict_items: list[str] = []

        # --- 10 by mouse ------------------------------------------------------------------------------------------
        buttons = ["A", "B", "tie", "both_bad", "A", "B", "A", "B", "tie", "A"]
        for i, choice in enumerate(buttons):
            q = question(page)
            if i == 3:  # reveal the verifier's verdict by mouse once (recorded)
                page.click("#reveal")
                page.wait_for_selector(".verdict.right")
                verdict_items.append(q)
            if i == 4:
                page.fill("#reason", "shorter and right")
            page.click(f"#choices button[data-choice='{choice}']")
            seen.append(q)
            wait_for_new_item(page, q)
        assert progress_mine(page) == 10

        # --- a second annotator at the same time, in their own browser ----------------------------------------------
        ben_ctx = browser.new_context(viewport={"width": 390, "height": 800})
        ben = ben_ctx.new_page()
        ben.goto(server.url + "&annotator=ben")
        ben.wait_for_selector("#work:not([hidden])")
        ben_seen = []
        for _ in range(5):
            q = question(ben)
            assert q != question(page) or "(item" in q  # never the same single item at once (checked below too)
            ben.click("#choices button[data-choice='A']")
            ben_seen.append(q)
            wait_for_new_item(ben, q)

        # --- reload: progress and place kept -------------------------------------------------------------------------
        before = question(page)
        page.reload()
        page.wait_for_selector("#work:not([hidden])")
        assert question(page) == before and progress_mine(page) == 10

        # --- 10 by keyboard, with a kill -9 of the server between two of them -------------------------------------------
        keys = ["a", "b", "t", "x", "1", "2", "a", "b", "a", "s"]
        for i, key in enumerate(keys):
            q = question(page)
            if i == 2:
                page.keyboard.press("r")
                page.keyboard.type("both fine")
                page.keyboard.press("Escape")
            if i == 5:
                server.kill9()
                page.keyboard.press(key)  # the page keeps the label and retries while the server is down
                page.wait_for_selector(".status.warn", timeout=15_000)
                assert question(page) == q  # it did not move on
                server.start()
            else:
                page.keyboard.press(key)
            seen.append(q)
            wait_for_new_item(page, q)
            if i == 6:  # ben goes on after the restart too
                bq = question(ben)
                ben.keyboard.press("b")
                ben_seen.append(bq)
                wait_for_new_item(ben, bq)
        assert progress_mine(page) == 20
        page.reload()
        page.wait_for_selector("#work:not([hidden])")
        assert progress_mine(page) == 20

        # --- readable at 390 px (ben's page) and no script errors --------------------------------------------------------
        assert ben.evaluate("document.documentElement.scrollWidth") <= 390
        assert errors == []
        ana_ctx.close()
        ben_ctx.close()
    finally:
        server.stop()

    labels = read_labels(tmp_path / "labels.jsonl")  # written by the graceful stop
    ana = [lab for lab in labels if lab["annotator"] == "ana"]
    ben = [lab for lab in labels if lab["annotator"] == "ben"]
    assert [lab["question"] for lab in ana] == seen  # all 20, in order, each exactly once
    assert len({lab["label_id"] for lab in labels}) == len(labels) == 26
    assert [lab["question"] for lab in ben] == ben_seen
    assert [lab["choice"] for lab in ana] == buttons + ["A", "B", "tie", "both_bad", "A", "B", "A", "B", "A", "skip"]
    assert [lab["question"] for lab in ana if lab["verdict_seen"]] == verdict_items
    assert ana[4]["reason"] == "shorter and right" and ana[12]["reason"] == "both fine"
    for lab in ana:  # what was clicked is what is stored: A means the candidate shown first
        if lab["choice"] in ("A", "B"):
            first = lab["shown"][0] if lab["choice"] == "A" else lab["shown"][1]
            assert lab["ranking"][0] == first
    both = {lab["item"] for lab in ana} & {lab["item"] for lab in ben}
    stats = subprocess.run([sys.executable, "-m", "thinktune.cli", "label", "stats", str(tmp_path / "labels.jsonl"),
                            "--json"], capture_output=True, text=True)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["agreement"]["items"] == len(both)


def test_rank_three_by_drag_and_by_keys(browser, tmp_path):
    rows = write_candidates(tmp_path / "cands.jsonl", 4, k=3, xss=False)
    server = LabelServer(tmp_path / "cands.jsonl", tmp_path / "labels.jsonl", "--k", "3", "--overlap", "0").start()
    try:
        ctx = browser.new_context(viewport={"width": 390, "height": 900})
        page = ctx.new_page()
        page.goto(server.url + "&annotator=cy")
        page.wait_for_selector("#work:not([hidden])")
        assert page.is_visible("button[data-choice='rank']") and not page.is_visible("button[data-choice='A']")
        # drag: C to the top, then submit with the mouse
        q = question(page)
        page.drag_and_drop(".cand[data-slot='C']", ".cand[data-slot='A']")
        assert page.eval_on_selector_all(".cand", "cs => cs.map(c => c.dataset.slot)") == ["C", "A", "B"]
        page.click("button[data-choice='rank']")
        q = wait_for_new_item(page, q)
        # keys: B, then C (A is last), Enter
        page.keyboard.press("Enter")  # not ranked yet: refused, stays
        assert question(page) == q and "Rank the answers first" in page.inner_text("#status")
        for key in ("b", "c"):
            page.keyboard.press(key)
        assert page.eval_on_selector_all(".cand", "cs => cs.map(c => c.dataset.slot)") == ["B", "C", "A"]
        page.keyboard.press("Enter")
        wait_for_new_item(page, q)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        ctx.close()
    finally:
        server.stop()
    labels = read_labels(tmp_path / "labels.jsonl")
    assert [lab["choice"] for lab in labels] == ["rank", "rank"]
    for lab, slots in zip(labels, (["C", "A", "B"], ["B", "C", "A"])):
        assert lab["ranking"] == [lab["shown"]["ABC".index(s)] for s in slots]
    assert {lab["item"] for lab in labels} == {rows[0]["id"], rows[1]["id"]}
