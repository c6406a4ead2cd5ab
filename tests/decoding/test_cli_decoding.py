"""``thinktune generate``, ``tip compare``, ``steer pairs|extract|sweep`` end to end on a saved tiny model."""

import json

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import Record
from thinktune.decoding.evaluate import concise_from_gsm8k, paired

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    from thinktune.models import save_model

    model, tok = tiny
    return save_model(model, tok, tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "gsm.jsonl"
    rows = [{"question": f"what is {a} + {b}?", "answer": f"{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
            for a in range(1, 4) for b in range(1, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_concise_chain_from_gsm8k_annotations():
    r = Record(id="x", question="q", answer="72", reasoning="She sold 48/2 = <<48/2=24>>24.\n48 + 24 = <<48+24=72>>72")
    assert concise_from_gsm8k(r) == "48/2=24\n48+24=72\n#### 72"
    assert concise_from_gsm8k(Record(id="y", question="q", answer="1", reasoning="no calculator")) is None


def test_paired_accuracy_and_length_ratios():
    base = [{"correct": True, "completion_tokens": 10, "completion": "a"},
            {"correct": False, "completion_tokens": 20, "completion": "b"}]
    other = [{"correct": True, "completion_tokens": 5, "completion": "a"},
             {"correct": True, "completion_tokens": 20, "completion": "c"}]
    p = paired(base, other)
    assert p["accuracy_change"] == 0.5 and p["changed_completions"] == 1
    assert p["length_ratio_of_means"] == pytest.approx(25 / 30) and p["length_mean_of_ratios"] == pytest.approx(0.75)


def test_generate_with_tip_and_steer(tiny_dir, items, tmp_path):
    out = tmp_path / "gen.jsonl"
    _ok(runner.invoke(app, ["generate", str(tiny_dir), "--data", str(items), "--n", "3", "--max-new-tokens", "8",
                            "--tip", "--tip-words", "Wait", "-o", str(out)]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {"completion", "correct", "thought_switches", "completion_tokens"} <= set(rows[0])
    res = runner.invoke(app, ["generate", str(tiny_dir), "--prompt", "hi", "--steer", "missing.steer:1"])
    assert res.exit_code == 1 and "no such file" in res.output
    res = runner.invoke(app, ["generate", str(tiny_dir)])
    assert res.exit_code == 1 and "--data FILE or one or more --prompt" in res.output


def test_tip_compare_writes_json(tiny_dir, items, tmp_path):
    out = tmp_path / "tip.json"
    # "Wait" never appears in this model's output, so no item qualifies: the report says so instead of failing
    _ok(runner.invoke(app, ["tip", "compare", str(tiny_dir), "--data", str(items), "--n", "4", "--words", "Wait",
                            "--max-new-tokens", "6", "-o", str(out)]))
    res = json.loads(out.read_text())
    assert res["n_items"] == 4 and res["n_items_with_switch"] == 0 and res["switch_tokens"] == ["Wait"]
    assert "rows" not in res


def test_steer_pairs_extract_sweep(tiny_dir, items, tmp_path):
    pairs, vec, sweep = tmp_path / "pairs.jsonl", tmp_path / "v.steer", tmp_path / "sweep.json"
    _ok(runner.invoke(app, ["steer", "pairs", str(tiny_dir), "--data", str(items), "--max-new-tokens", "8",
                            "-o", str(pairs)]))
    lines = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["concise"] == "1+1=2\n#### 2"
    _ok(runner.invoke(app, ["steer", "extract", str(tiny_dir), "--pairs", str(pairs), "--layer", "2", "-o", str(vec)]))
    _ok(runner.invoke(app, ["steer", "sweep", str(tiny_dir), str(vec), "--data", str(items), "--n", "4",
                            "--max-new-tokens", "6", "--calib", "2", "--strengths", "-1,1", "-o", str(sweep)]))
    res = json.loads(sweep.read_text())
    assert [r["strength"] for r in res["sweep"]] == [0.0, -1.0, 1.0]
    assert res["sweep"][0]["kl"] == 0.0 and all(r["kl"] > 0 for r in res["sweep"][1:])
    assert res["calibration"]["delta"] == 0.1 and "verdict" in res and res["layer"] == 2
    res = runner.invoke(app, ["steer", "sweep", str(tiny_dir), str(vec), "--data", str(items), "--strengths", "a,b"])
    assert res.exit_code == 1 and "--strengths expects numbers" in res.output


def test_steer_pairs_from_the_items_own_reasoning(tiny_dir, tmp_path):
    """--concise reasoning: a task's step trace (canonical records) is the concise chain, not GSM8K annotations."""
    data, pairs = tmp_path / "chain.jsonl", tmp_path / "pairs.jsonl"
    rows = [{"id": f"c{i}", "question": f"Compute {i} + 2 - 1.", "answer": str(i + 1),
             "reasoning": f"{i} + 2 = {i + 2}\n{i + 2} - 1 = {i + 1}"} for i in range(3)] + [{"id": "empty", "question": "Compute 1 + 1.", "answer": "2"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _ok(runner.invoke(app, ["steer", "pairs", str(tiny_dir), "--data", str(data), "--concise", "reasoning",
                            "--max-new-tokens", "6", "-o", str(pairs)]))
    got = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert [p["concise"] for p in got] == [r["reasoning"] for r in rows[:3]]  # the item without reasoning is skipped
    res = runner.invoke(app, ["steer", "pairs", str(tiny_dir), "--data", str(data), "--concise", "terse",
                              "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 1 and "--concise: 'terse' is not one of calculator, reasoning" in res.output
    assert not (tmp_path / "x.jsonl").exists()
    res = runner.invoke(app, ["steer", "pairs", str(tiny_dir), "--data", str(data), "-o", str(tmp_path / "y.jsonl")])
    assert res.exit_code == 1 and "calculator annotations" in res.output  # the default needs GSM8K solutions
