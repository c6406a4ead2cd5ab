"""CI: the reduced versions of experiments 1 and 2 end to end through the CLI (real training at toy size).

Checks that every arm writes its summary, that arms share trained stages across experiments (2's `genuine` arm
reuses 1's `cot` run), that a re-run skips finished runs, and that the evidence page is generated.
(~20 s of CPU; experiment 7 needs SmolLM2 and is left to `thinktune experiments run 07 --reduced`.)
"""

import json

import pytest

from tests.helpers.pipeline import ROOT, thinktune

pytestmark = pytest.mark.slow


def test_reduced_experiments_end_to_end(tmp_path):
    out = tmp_path / "exp"
    res = thinktune("experiments", "run", "01", "02", "--reduced", "--out", str(out), cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    results = out / "results"
    summaries = {p.relative_to(results).as_posix(): json.loads(p.read_text()) for p in results.glob("*/*.json")}
    assert sorted(summaries) == ["01_cot_vs_answer_only/answer_only-s0.json", "01_cot_vs_answer_only/cot-s0.json",
                                 "02_decorative_chains/decorative-s0.json", "02_decorative_chains/genuine-s0.json"]
    cot = summaries["01_cot_vs_answer_only/cot-s0.json"]
    assert cot["reduced"] and cot["shared_stages"] == [] and set(cot["stages"]) == {"data", "base", "sft", "audit"}
    assert 0.0 <= cot["metrics"]["accuracy"]["value"] <= 1.0 and cot["metrics"]["accuracy"]["ci95"] is not None
    # the same recipe as 01's cot arm: everything, the audit included, comes from there
    assert summaries["02_decorative_chains/genuine-s0.json"]["shared_stages"] == ["data", "base", "sft", "audit"]
    assert summaries["02_decorative_chains/decorative-s0.json"]["shared_stages"] == []  # its data differ
    genuine = summaries["02_decorative_chains/genuine-s0.json"]
    assert genuine["stages"]["sft"]["finished"] == cot["stages"]["sft"]["finished"]
    assert genuine["stages"]["sft"]["shared_from"] == "../../01_cot_vs_answer_only/cot-s0"
    assert genuine["compute_seconds"] == 0 and genuine["metrics"]["accuracy"] == cot["metrics"]["accuracy"]
    page = (results / "EVIDENCE.md").read_text()
    for name in ("01_cot_vs_answer_only", "02_decorative_chains"):
        assert f"## {name}" in page
    assert "Reduced (CI) runs" in page and "`01_cot_vs_answer_only/cot-s0.json`" in page
    verdict = res.stdout.split("01_cot_vs_answer_only: ")[1].split("\n")[0]
    assert verdict in ("reproduced", "not reproduced")  # one seed each: a verdict, not pending

    again = thinktune("experiments", "run", "01", "--reduced", "--seeds", "0", "--out", str(out), "--no-table",
                      cwd=ROOT)
    assert again.returncode == 0 and again.stderr.count("skipped") == 2
