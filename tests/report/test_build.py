"""The report without a browser: sections present or omitted, comparisons, self-containment, escaping, size, stage,
CLI, and the small pure functions behind the charts."""

import json
import re

import pytest
from typer.testing import CliRunner

from tests.helpers.report_runs import audit_agg, example_rows, grpo_rows, make_run
from thinktune.cli import app
from thinktune.config import Recipe, RewardSpec
from thinktune.context import StageContext
from thinktune.report import stage
from thinktune.report.auditview import GRID, mean_curve
from thinktune.report.build import MAX_BYTES, ReportOptions, build_report
from thinktune.report.charts import Series, line_chart, nice_ticks, thin
from thinktune.report.load import ReportError
from thinktune.report.template import SCRIPT, script_hash

DEFAULT = ReportOptions()


def sections(html: str) -> list[str]:
    return re.findall(r'<section class="card" id="([a-z]+)"', html)


def test_a_run_with_missing_stages_renders_the_sections_it_has(tmp_path):
    base_only = make_run(tmp_path, "base-only", audits={"base": audit_agg(0.0, aoc=None, info_gain=None)}, grpo=False)
    html, info = build_report([base_only], DEFAULT)
    assert sections(html) == ["summary", "data", "audit", "samples"]  # no training curves, no probes
    assert 'href="#training"' not in html

    data_only = make_run(tmp_path, "data-only", stages={"data": {"status": "complete", "seconds": 0.1}}, grpo=False)
    html, info = build_report([data_only], DEFAULT)
    assert sections(html) == ["summary", "data"] and info.models == []


def test_a_comparison_of_two_runs_renders_model_by_model(tmp_path):
    a = make_run(tmp_path, "run-a", audits={"base": audit_agg(0.1), "sft": audit_agg(0.4)},
                 grpo_metrics=grpo_rows([0.1, 0.2, 0.3]))
    b = make_run(tmp_path, "run-b", audits={"base": audit_agg(0.1), "sft": audit_agg(0.6)},
                 grpo_metrics=grpo_rows([0.2, 0.2, 0.4]))
    html, info = build_report([a, b], DEFAULT)
    assert info.runs == ["run-a", "run-b"]
    assert info.models == ["run-a/base", "run-a/sft", "run-b/base", "run-b/sft"]
    assert sections(html) == ["summary", "data", "training", "audit", "samples"]
    assert "thinktune comparison — run-a vs run-b" in html
    assert "60.0%" in html and "40.0%" in html  # both runs' accuracies side by side
    assert "run-a · reward" in html and "run-b · reward" in html  # one curve per run on the same chart
    assert html.count('class="sb-panel"') == 4

    same_name = make_run(tmp_path / "other", "run-a", audits={"base": audit_agg(0.2)})
    _, info = build_report([a, same_name], DEFAULT)
    assert info.runs == ["run-a", "run-a#2"]


def test_the_report_is_self_contained(tmp_path):
    run = make_run(tmp_path, audits={"sft": audit_agg(0.5)}, grpo_metrics=grpo_rows([0.1, 0.2]))
    html, _ = build_report([run], DEFAULT)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and f"script-src '{script_hash(SCRIPT)}'" in csp
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
    assert html.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in html


def test_run_text_is_escaped(tmp_path):
    evil = ("<think>\n</script><script>alert(1)</script>\n<img src=http://x.test/a.png>\x01\x1b\n</think>\n"
            "<answer>0</answer>")
    run = make_run(tmp_path, audits={"sft": audit_agg(0.5)}, rows={"sft": example_rows(2, completion=evil)})
    html, _ = build_report([run], DEFAULT)
    assert "alert(1)" in html and "<script>alert(1)" not in html and "&lt;/script&gt;&lt;script&gt;alert(1)" in html
    assert "<img" not in html and "\x01" not in html and "\u2401\u241b" in html
    html.encode("utf-8")


def test_a_lone_surrogate_or_torn_line_does_not_break_the_report(tmp_path):
    run = make_run(tmp_path, audits={"sft": audit_agg(0.5)}, rows={"sft": example_rows(2, completion="\ud800 x")},
                   grpo_metrics=grpo_rows([0.1, 0.2]))
    with open(run / "grpo" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss"')  # a crash mid-write
    html, info = build_report([run], DEFAULT)
    html.encode("utf-8")
    assert "1 unreadable line(s) skipped" in html and 'data-kind="unreadable"' in html
    assert info.warnings == []  # an unreadable file is a note, not a failure pattern


def test_the_sample_browser_is_subsampled_to_fit_the_size_budget(tmp_path):
    big = "<think>\n" + "step with many words\n" * 400 + "</think>\n<answer>1</answer>"
    rows = example_rows(300, completion=big)
    run = make_run(tmp_path, audits={m: audit_agg(0.5, n=300) for m in ("base", "sft", "grpo")},
                   rows={m: rows for m in ("base", "sft", "grpo")})
    html, info = build_report([run], ReportOptions(max_bytes=600_000))
    assert info.bytes == len(html.encode()) <= 600_000
    assert 1 <= info.samples_per_model < 200
    assert "more characters not included in the report" in html  # 8 kB reasoning clipped
    shown = {m: re.findall(rf'data-model="{m}".*?(?=<div class="sb-panel"|</section>)', html, re.S)[0]
             for m in ("base", "sft")}
    assert re.findall(r'class="id">([^<]+)<', shown["base"]) == re.findall(r'class="id">([^<]+)<', shown["sft"])
    assert ReportOptions().max_bytes == MAX_BYTES == 10_000_000


def test_samples_show_the_stored_rewards_and_probes_and_the_report_scores_nothing(tmp_path, monkeypatch):
    from thinktune.data.records import read_records
    from thinktune.rewards import runner
    from thinktune.rewards.probes import PROBES_FILE, probe_rewards

    rows = example_rows()
    for r in rows:  # what the audit stage stores with each held-out sample
        r["rewards"] = {"correct": 1.0 if r["correct"] else 0.0, "format": 1.0}
    run = make_run(tmp_path, audits={"sft": audit_agg(0.5)}, rows={"sft": rows})
    specs = [RewardSpec(fn="correct"), RewardSpec(fn="format", weight=0.1)]
    probes = probe_rewards(specs, read_records(run / "data" / "train.jsonl"), workers=0, max_items=4)
    (run / "grpo").mkdir()
    (run / "grpo" / PROBES_FILE).write_text(json.dumps(probes.to_dict()))  # what the GRPO stage stores

    def no_scoring(*args, **kwargs):
        raise AssertionError("the report must not score rewards")

    monkeypatch.setattr(runner.RewardRunner, "__init__", no_scoring)
    html, info = build_report([run], DEFAULT)
    assert "probes" in info.sections and "honest correct" in html and "empty_answer" in html
    assert '<span class="chip">correct 1</span>' in html and '<span class="chip">correct 0</span>' in html
    assert '<span class="chip">format 1</span>' in html


def test_report_stage_writes_report_html(tmp_path):
    root = make_run(tmp_path, audits={"base": audit_agg(0.0), "sft": audit_agg(0.5)})
    recipe = Recipe.model_validate({"name": "made", "model": {"tiny": {}}, "data": {"task": {}},
                                    "report": {"samples_per_model": 3}})
    result = stage.run_stage(StageContext(root, recipe, "report"))
    out = root / "report.html"
    assert out.is_file() and result["bytes"] == out.stat().st_size and result["samples_per_model"] == 3
    assert "audit" in result["sections"] and not list(root.glob(".report.html.*"))
    json.dumps(result)  # goes into manifest.json


def test_cli_report(tmp_path):
    a = make_run(tmp_path, "a", audits={"sft": audit_agg(0.5)})
    b = make_run(tmp_path, "b", audits={"sft": audit_agg(0.2, aoc=0.1)})
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(a)])
    assert res.exit_code == 0, res.output
    assert (a / "report.html").is_file() and "report:" in res.output
    out = tmp_path / "cmp.html"
    res = runner.invoke(app, ["report", str(a), str(b), "-o", str(out), "--samples", "2"])
    assert res.exit_code == 0, res.output
    assert "a/sft" in out.read_text() and "b/sft" in out.read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not a directory" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "not a run directory" in res.output


def test_build_report_needs_a_run():
    with pytest.raises(ReportError):
        build_report([])


def test_mean_curve_keeps_the_mean_aoc():
    # item A: answer fixed after half the chain (AOC 0.25); item B: fixed from the start (AOC 0)
    curve = mean_curve([([0.0, 0.5, 1.0], [0.0, 1.0, 1.0]), ([0.0, 1.0], [1.0, 1.0])])
    assert [x for x, _ in curve] == GRID
    area = sum((curve[j + 1][0] - curve[j][0]) * (curve[j][1] + curve[j + 1][1]) / 2 for j in range(len(curve) - 1))
    assert 1 - area == pytest.approx(0.125)
    assert mean_curve([]) == []


def test_chart_helpers():
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0.00015)[-1] >= 0.00015
    pts = [(float(i), float(i)) for i in range(1001)]
    thinned = thin(pts, 400)
    assert len(thinned) <= 401 and thinned[-1] == pts[-1] and thinned[0] == pts[0]
    assert line_chart([Series("x", [])], "empty") == ""
    svg = line_chart([Series("a<b", [(0, 1), (1, float("nan")), (2, 3)])], "t")
    assert "a&lt;b" in svg and "nan" not in svg.lower()
