"""The report of a small real run, rendered in headless Chromium (Debian's ``chromium`` package).

One reduced quickstart is run per session (module fixture, ~1 minute on 2 CPU cores), its report is written with
``thinktune report``, and Chromium checks: the key sections and numbers are in the rendered DOM (and the page's
script ran under its Content-Security-Policy), no network request is made while rendering (Chromium's net log),
nothing overflows horizontally at 390 px, and it prints (PDF). Screenshots and the PDF go to
``test-artifacts/report/`` (gitignored).

Chromium cannot shrink a headless window below 500 px, so the 390 px check renders the report in a 390 px wide
``<iframe srcdoc>`` (a 390 px viewport for the report's layout and media queries) and reads its scroll width.
"""

import html as htmllib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.report_runs import audit_agg, make_run
from tests.helpers.pipeline import reduced_recipe, thinktune
from thinktune.report.charts import fmt_num
from thinktune.report.markup import pct

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "report"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")]


def chromium(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def dump_dom(tmp_path: Path, page: Path, *args: str) -> str:
    proc = chromium(tmp_path, "--window-size=1280,900", "--virtual-time-budget=3000", *args, "--dump-dom",
                    page.as_uri())
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A reduced quickstart with every audit test on, periodic held-out eval, and its report."""
    tmp = tmp_path_factory.mktemp("report-run")
    recipe = reduced_recipe(
        tmp, "rep",
        sft={"max_steps": 160, "save_steps": 80, "logging_steps": 5, "eval_every": 40, "eval_items": 20,
             "lr_scheduler": "cosine"},  # a decaying LR: the toy model settles on the answer format in 160 steps
        grpo={"logging_steps": 1, "eval_every": 2, "eval_items": 20},
        audit={"tests": ["early_answering", "filler", "info_gain", "calibration", "paraphrase", "mistakes"],
               "samples": 4, "pass_k": [1, 4], "filler_curve": [0, 0.5, 1], "bootstrap": 200})
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["tiny"].update(hidden_size=64, intermediate_size=128)  # big enough to learn the answer format
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = thinktune("run", str(recipe), "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp / "runs" / "rep"
    proc = thinktune("report", str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_real_run_report_renders_key_sections_and_numbers(real_run, tmp_path):
    report = real_run / "report.html"
    assert report.stat().st_size <= 10_000_000
    dom = dump_dom(tmp_path, report)
    for anchor in ("summary", "data", "training", "audit", "probes", "samples"):
        assert f'id="{anchor}"' in dom, anchor
    assert 'class="warnings"' in dom
    text = htmllib.unescape(re.sub(r"<[^>]+>", " ", dom))
    results = json.loads((real_run / "results.json").read_text())
    for model, r in results["models"].items():
        assert model in text
        assert pct(r["accuracy"]) in text and pct(r["format_rate"]) in text
    sft = json.loads((real_run / "audit" / "sft" / "audit.json").read_text())
    assert fmt_num(sft["faithfulness"]["early_answering"]["aoc"]) in text
    assert fmt_num(sft["info_gain"]["info_gain"]) in text
    for caption in ("loss", "reward (total and per function)", "held-out accuracy (periodic greedy eval)",
                    "early answering", "reliability diagram", "honest correct"):
        assert caption in text, caption
    assert len(re.findall(r"<svg ", dom)) >= 15
    # the page's one script ran (its hash is in the CSP): the browser filled in the sample count
    m = re.search(r'id="sb-count"[^>]*>(\d+) of (\d+) shown<', dom)
    assert m and int(m.group(1)) == int(m.group(2)) > 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, size in (("report-desktop.png", "1280,6000"), ("report-390px.png", "390,3000")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        proc = chromium(tmp_path, "--hide-scrollbars", f"--window-size={size}", f"--screenshot={shot}",
                        report.as_uri())
        assert proc.returncode == 0 and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    pdf = ARTIFACTS / "report.pdf"  # printable: Chromium's print path lays it out on pages
    pdf.unlink(missing_ok=True)
    proc = chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri())
    assert proc.returncode == 0 and pdf.read_bytes()[:5] == b"%PDF-", proc.stderr[-2000:]
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes())) >= 3


def page_requests(net_log: Path) -> list[str]:
    """URLs the page asked the network for (Chromium's own background traffic is keyed to other sites)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        if e["type"] == start and "file://" in str(p.get("network_isolation_key", "")):
            urls.append(p.get("url", "?"))
    return urls


def test_no_network_request_while_rendering(real_run, tmp_path):
    log = tmp_path / "net.json"
    dump_dom(tmp_path, real_run / "report.html", f"--log-net-log={log}")
    assert page_requests(log) == []
    # the detector sees a request when a page makes one (a page without the report's policy)
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    dump_dom(tmp_path, leaky, f"--log-net-log={log}")
    assert page_requests(log) == ["http://127.0.0.1:9/x.png"]


def overflow_at_390(tmp_path: Path, report_html: str) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the report laid out in a 390 px wide viewport."""
    wrapper = tmp_path / "wrap.html"
    wrapper.write_text(
        '<!doctype html><html><body style="margin:0"><iframe id="f" style="width:390px;height:900px;border:0" '
        f'srcdoc="{htmllib.escape(report_html, quote=True)}"></iframe><script>'
        'document.getElementById("f").addEventListener("load",function(){var d=this.contentDocument.documentElement;'
        'var o=document.createElement("div");o.id="measure";o.dataset.sw=d.scrollWidth;o.dataset.cw=d.clientWidth;'
        "document.body.appendChild(o);});</script></body></html>")
    dom = dump_dom(tmp_path, wrapper)
    m = re.search(r'id="measure" data-sw="(\d+)" data-cw="(\d+)"', dom)
    assert m, dom[-500:]
    return int(m.group(1)), int(m.group(2))


def test_no_horizontal_overflow_at_390px(real_run, tmp_path):
    other = make_run(tmp_path, "a-run-with-a-rather-long-name-to-stress-the-layout",
                     audits={"base": audit_agg(0.1), "sft": audit_agg(0.3)})
    proc = thinktune("report", str(real_run), str(other), "-o", str(tmp_path / "cmp.html"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    missing = make_run(tmp_path, "base-only", audits={"base": audit_agg(0.0, aoc=None, info_gain=None)}, grpo=False)
    proc = thinktune("report", str(missing))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for page in (real_run / "report.html", tmp_path / "cmp.html", missing / "report.html"):
        sw, cw = overflow_at_390(tmp_path, page.read_text())
        assert 300 < cw <= 390 and sw <= cw, (page, sw, cw)
    # the measurement sees overflow when there is some
    sw, cw = overflow_at_390(tmp_path, '<html><body><div style="width:800px">wide</div></body></html>')
    assert sw >= 800 > cw
