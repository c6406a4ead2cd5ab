"""Integration: a full audit of the real SmolLM2-135M-Instruct (offline wheel) on 10 GSM8K test items and their
AbstentionBench-style unanswerable variants (final question only), through the CLI.

SmolLM2 was not trained on thinktune's format: it gets the format instruction and the ``auto`` answer extractor, and
the scorer-based tests find no chain to score when it ignores the tags (reported as ``n_traces``).
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinktune.cli import app

pytestmark = pytest.mark.slow

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k_test.jsonl"


def test_smollm2_full_audit_with_abstention(tmp_path):
    pytest.importorskip("gguf")
    if not GSM8K.exists():
        pytest.skip(f"real data not found at {GSM8K} (the shared data directory next to the repository)")
    from thinktune.audit.abstention import question_only
    from thinktune.models import smollm2_gguf

    try:
        smollm2_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    kept = [(i, r) for i, r in enumerate(rows) if question_only(r["question"])][:10]
    data = tmp_path / "gsm8k10.jsonl"
    data.write_text("".join(json.dumps({"id": f"gsm8k-test-{i}", "question": r["question"],
                                        "reasoning": r["answer"].split("####")[0].strip(),
                                        "answer": r["answer"].split("####")[1].strip(), "task": "gsm8k"}) + "\n"
                            for i, r in kept))
    out = tmp_path / "audit"
    res = CliRunner().invoke(app, ["audit", "smollm2", "--data", str(data), "--out", str(out), "--unanswerable",
                                   "question_only", "--max-new-tokens", "128", "--batch-size", "10"],
                             env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    agg = json.loads((out / "smollm2" / "audit.json").read_text())
    ab = agg["abstention"]
    print(f"\n{res.output}\nabstention: {json.dumps({k: v for k, v in ab.items() if k != 'ci95'})}"
          f"\naccuracy {agg['accuracy']:.3f}, no-answer rate {agg['no_answer_rate']:.3f}, "
          f"format {agg['format_rate']:.3f}, traces {agg['n_traces']}, timing {agg['timing']}")
    assert agg["n"] == 10 and agg["unanswerable_variants"] == {"kept": 10, "dropped": 0}
    assert ab["n_unanswerable"] == 10 and ab["n_answerable"] == 10
    assert isinstance(ab["recall"], float) and "f1" in ab and "precision" in ab and "appropriate_behavior" in ab
    assert agg["source"]["extractor"] == "auto" and agg["source"]["instruction"]
    assert len((out / "smollm2" / "examples.jsonl").read_text().splitlines()) == 20
    assert "abstention recall" in " ".join(res.output.split())
