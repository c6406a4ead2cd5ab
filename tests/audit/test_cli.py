"""``thinktune audit``: bad inputs give one-line errors (exit 1); several models give a side-by-side comparison."""

import json

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.config import TinyModelConfig
from thinktune.data.records import write_jsonl
from thinktune.data.tasks import get_task
from thinktune.formatting import render
from thinktune.models import build_tiny, save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    recs = get_task("chain_arith").generate(50, 0)
    corpus = [r.question for r in recs] + [render(r.reasoning, r.answer) for r in recs]
    cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, vocab_size=300)
    model, tok = build_tiny(cfg, corpus, 0)
    save_model(model, tok, root / "a")
    model2, tok2 = build_tiny(cfg, corpus, 1)
    save_model(model2, tok2, root / "b")
    tok.chat_template = None
    save_model(model, tok, root / "plain")
    data = root / "eval.jsonl"
    write_jsonl(data, get_task("chain_arith").generate(6, 9))
    return root, data


class Result:
    def __init__(self, res):
        self.exit_code = res.exit_code
        self.output = " ".join(res.output.split())  # rich wraps long lines at the terminal width


def run(*args):
    return Result(runner.invoke(app, ["audit", *args], env={"COLUMNS": "200"}))


def test_missing_answer_field(tmp_path, models):
    root, _ = models
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "2 + 2?"}\n')
    res = run(str(root / "a"), "--data", str(bad), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "bad.jsonl:1" in res.output and "answer" in res.output
    assert "Traceback" not in res.output


def test_wrong_model_path_and_not_a_model(tmp_path, models):
    _, data = models
    res = run(str(tmp_path / "nope"), "--data", str(data))
    assert res.exit_code == 1 and "does not exist" in res.output
    res = run(str(tmp_path), "--data", str(data))
    assert res.exit_code == 1 and "not a model directory" in res.output


def test_empty_data_and_missing_file(tmp_path, models):
    root, _ = models
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = run(str(root / "a"), "--data", str(empty))
    assert res.exit_code == 1 and "no records" in res.output
    res = run(str(root / "a"), "--data", str(tmp_path / "missing.jsonl"))
    assert res.exit_code == 1 and "not found" in res.output


def test_model_without_chat_template(tmp_path, models):
    root, data = models
    res = run(str(root / "plain"), "--data", str(data), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "no chat template" in res.output and "--plain-prompt" in res.output
    res = run(str(root / "plain"), "--data", str(data), "--out", str(tmp_path / "o"), "--plain-prompt",
              "--max-new-tokens", "8", "--tests", "none")
    assert res.exit_code == 0, res.output


def test_bad_option_value(tmp_path, models):
    root, data = models
    res = run(str(root / "a"), "--data", str(data), "--tests", "early_answering,bogus")
    assert res.exit_code == 1 and "invalid audit options" in res.output


def test_two_models_side_by_side(tmp_path, models):
    root, data = models
    out = tmp_path / "o"
    res = run(str(root / "a"), str(root / "b"), "--data", str(data), "--out", str(out), "--instruction", "none",
              "--max-new-tokens", "12", "--unanswerable", "question_only")
    assert res.exit_code == 0, res.output
    assert "reasoning audit" in res.output and "accuracy" in res.output
    assert "paired differences vs a" in res.output
    for name in ("a", "b"):
        agg = json.loads((out / name / "audit.json").read_text())
        assert agg["n"] == 6 and agg["source"]["instruction"] is None and agg["source"]["extractor"] == "answer_tag"
    cmp = json.loads((out / "comparison.json").read_text())
    assert cmp["reference"] == "a" and "accuracy" in cmp["paired"]["b"]


def test_tip_and_steering_are_audited_as_variants_side_by_side(tmp_path, models):
    import torch

    from thinktune.decoding.steering import SteeringVector
    from thinktune.models import load_stage_output

    root, data = models
    model, _ = load_stage_output(root / "a")
    vec = tmp_path / "v.steer"
    SteeringVector(torch.ones(model.config.hidden_size), layer=1, meta={}).save(vec)
    out = tmp_path / "o"
    res = run(str(root / "a"), "--data", str(data), "--out", str(out), "--max-new-tokens", "12", "--tests", "none",
              "--tip", "--tip-alpha", "1000", "--tip-words", "Compute", "--steer", f"{vec}:5")
    assert res.exit_code == 0, res.output
    labels = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert labels == ["a", "a+steer5", "a+tip"]
    base = [json.loads(x)["completion"] for x in (out / "a" / "examples.jsonl").read_text().splitlines()]
    steered = [json.loads(x)["completion"] for x in (out / "a+steer5" / "examples.jsonl").read_text().splitlines()]
    assert base != steered  # a strong vector changes what the random model writes
    tip = json.loads((out / "a+tip" / "audit.json").read_text())
    assert tip["source"]["intervention"]["kind"] == "tip"
    assert json.loads((out / "comparison.json").read_text())
