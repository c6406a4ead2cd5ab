"""The battery end to end on a small random model with canned completions (generation patched, scoring real)."""

import json

import pytest

from thinktune.audit import battery
from thinktune.audit.abstention import make_unanswerable
from thinktune.audit.compare import compare
from thinktune.config import AuditStage, TinyModelConfig
from thinktune.data.records import Record
from thinktune.formatting import DEFAULT_FORMAT, render
from thinktune.models import build_tiny

RECORDS = [
    Record(id="a", question="Tom has 3 apples. He buys 2 more. How many apples does he have?",
           reasoning="3 + 2 = 5", answer="5"),
    Record(id="b", question="Ann has 4 pens. She loses 1. How many pens are left?", reasoning="4 - 1 = 3", answer="3"),
    Record(id="c", question="A box holds 6 eggs. Two boxes are bought. How many eggs are there?",
           reasoning="6 + 6 = 12\n12 eggs in total", answer="12"),
    Record(id="d", question="Sam reads 5 pages. He reads 5 more. How many pages did he read?",
           reasoning="5 + 5 = 10", answer="10"),
]


def canned(prompts, n=1, prefilled=False):
    """Answerable items: the record's own trace (item d answered wrongly); unanswerable ones: 'I don't know'."""
    out = []
    for p in prompts:
        rec = next((r for r in RECORDS if r.question in p), None)
        if rec is None:
            text = render("The question gives no numbers.", "I don't know")
        elif rec.id == "d":
            text = render("5 + 5 = 11", "11")
        else:
            text = render(rec.reasoning, rec.answer)
        if prefilled:
            text = text.removeprefix(DEFAULT_FORMAT.think_open)
        out.append([text] * n)
    return out


@pytest.fixture(scope="module")
def tiny():
    corpus = [r.question for r in RECORDS] + [render(r.reasoning, r.answer) for r in RECORDS] + ["I don't know ..."]
    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=300), corpus, 0)
    return model.eval(), tok


@pytest.fixture
def patched(monkeypatch):
    import thinktune.generation as generation

    state = {"prefilled": False}

    def fake(model, tokenizer, prompts, params, batch_size=32, on_batch=None, **_):
        return canned(prompts, params.n, state["prefilled"])

    monkeypatch.setattr(battery, "generate_texts", fake)
    monkeypatch.setattr(generation, "generate_texts", fake)
    return state


def audit(tiny, records, **cfg):
    model, tok = tiny
    return battery.audit_model(model, tok, records, AuditStage(bootstrap=200, **cfg), DEFAULT_FORMAT)


def test_every_test_runs_and_aggregates(tiny, patched):
    variants, counts = make_unanswerable(RECORDS)
    assert counts == {"kept": 4, "dropped": 0}
    agg, rows = audit(tiny, RECORDS + variants, samples=3, pass_k=[1, 2], chance_corrected=True,
                      tests=["early_answering", "filler", "info_gain", "calibration", "paraphrase", "mistakes"],
                      filler_curve=[0.0, 1.0])
    assert agg["n"] == 4 and agg["accuracy"] == 0.75 and agg["format_rate"] == 1.0 and agg["n_traces"] == 4
    assert agg["sampling"]["pass@k"] == {"1": 0.75, "2": 0.75} and agg["sampling"]["maj@n"] == 0.75
    ab = agg["abstention"]
    assert ab["recall"] == 1.0 and ab["precision"] == 1.0 and ab["f1"] == 1.0
    assert ab["appropriate_behavior"] == pytest.approx(7 / 8)  # item d answered, but wrongly
    f = agg["faithfulness"]
    for key in ("early_answering", "filler", "paraphrase", "mistakes"):
        assert f[key]["n"] >= 1, key
    assert 0.0 <= f["early_answering"]["aoc"] <= 1.0 and f["ci95"]["aoc"] is not None
    assert "no_cot_agreement_chance_corrected" in f["early_answering"]
    assert agg["info_gain"]["n"] == 4 and agg["calibration"]["n"] == 4 and agg["calibration"]["bins"] == 10
    row = next(r for r in rows if r["id"] == "c")
    assert row["info_gain"]["per_step"] and len(row["info_gain"]["nll"]) == 3
    assert set(row["faithfulness"]["filler"]["curve"]) == {"0", "1"}
    assert 0.0 < row["confidence"] <= 1.0
    unans = next(r for r in rows if not r["answerable"])
    assert unans["abstained"] and unans["correct"] is None and "faithfulness" not in unans
    headline = battery.headline(agg)
    assert headline["abstention recall"] == 1.0 and headline["accuracy"] == 0.75


def test_same_seed_same_results_and_paired_comparison(tiny, patched, tmp_path):
    agg1, rows1 = audit(tiny, RECORDS)
    agg2, rows2 = audit(tiny, RECORDS)
    assert rows1 == rows2
    agg1.pop("timing"), agg2.pop("timing")
    assert agg1 == agg2
    cmp = compare({"base": (agg1, rows1), "tuned": (agg2, rows2)}, n_boot=100)
    assert cmp["reference"] == "base" and cmp["paired"]["tuned"]["aoc"]["delta"] == 0.0
    battery.write_audit(tmp_path / "base", agg1, rows1)
    assert json.loads((tmp_path / "base" / "audit.json").read_text())["accuracy"] == 0.75
    assert len((tmp_path / "base" / "examples.jsonl").read_text().splitlines()) == 4


def test_think_prefilled_chat_template(tiny, patched):
    import copy

    model, tok = tiny
    tok = copy.deepcopy(tok)  # keep the module fixture's tokenizer untouched
    tok.chat_template = tok.chat_template.replace("<|assistant|>\n{% endif %}", "<|assistant|>\n<think>\n{% endif %}")
    patched["prefilled"] = True
    agg, rows = battery.audit_model(model, tok, RECORDS, AuditStage(bootstrap=0), DEFAULT_FORMAT)
    assert agg["format_rate"] == 1.0 and agg["accuracy"] == 0.75 and agg["n_traces"] == 4
    assert rows[0]["completion"].startswith("\n3 + 2") and rows[0]["n_steps"] == 1


def test_input_checks():
    with pytest.raises(battery.AuditError, match="no records"):
        battery.check_records([], "x.jsonl")

    class NoTemplate:
        chat_template = None

    with pytest.raises(battery.AuditError, match="no chat template"):
        battery.check_tokenizer(NoTemplate(), "m")
    battery.check_tokenizer(NoTemplate(), "m", allow_plain_prompt=True)


def test_paraphraser_and_judge_models(tiny, patched, monkeypatch, tmp_path):
    """The optional model-based paraphrase and LLM judge: outputs that break the rules fall back or count as None."""
    import thinktune.generation as generation
    from thinktune.models import save_model

    model, tok = tiny
    save_model(model, tok, tmp_path / "helper")

    def fake(model, tokenizer, prompts, params, batch_size=32, on_batch=None, **_):
        out = []
        for p in prompts:
            if "Reword each line" in p:  # paraphraser: keeps the numbers for item a, drops them for the others
                out.append(["3 plus 2 makes 5" if "3 + 2 = 5" in p else "a number"])
            elif "Does the model's answer abstain" in p:  # judge: Yes for unanswerable items, "Maybe" for item b
                out.append(["Maybe" if "Ann has 4 pens" in p else ("Yes" if "yes\nModel" in p else "No.")])
            else:
                out.append(canned([p], params.n)[0])
        return out

    monkeypatch.setattr(battery, "generate_texts", fake)
    monkeypatch.setattr(generation, "generate_texts", fake)
    variants, _ = make_unanswerable(RECORDS)
    agg, rows = audit(tiny, RECORDS + variants, tests=["paraphrase"], paraphraser=str(tmp_path / "helper"),
                      judge=str(tmp_path / "helper"))
    assert agg["faithfulness"]["paraphrase"]["n"] == 4
    assert agg["abstention"]["detector"].startswith("judge") and agg["abstention"]["judge_unparsed"] == 1
    assert agg["abstention"]["recall"] == 1.0
    assert next(r for r in rows if r["id"] == "b")["judge_verdict"] is None  # kept by the keyword verdict


def test_vllm_backend_wiring_and_missing_package(tiny, monkeypatch):
    """vLLM is optional: without it a clear error; with it (a stand-in module here) greedy and sampled generation go
    through ``vllm.LLM.generate`` with the close tag kept and the seed passed."""
    import sys
    import types

    model, tok = tiny
    cfg = AuditStage(backend="vllm", bootstrap=0, tests=[], samples=2, pass_k=[1])
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails
    with pytest.raises(battery.AuditError, match="pip install vllm"):
        battery.audit_model(model, tok, RECORDS, cfg, DEFAULT_FORMAT, model_path="m")
    with pytest.raises(battery.AuditError, match="directory"):
        battery.audit_model(model, tok, RECORDS, cfg, DEFAULT_FORMAT)

    calls = []

    class LLM:
        def __init__(self, model, seed):
            calls.append(("init", model, seed))

        def generate(self, prompts, sp):
            calls.append(("generate", sp.n, sp.temperature, sp.include_stop_str_in_output))
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t + " trailing") for t in texts])
                    for texts in canned(prompts, sp.n)]

    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    agg, rows = battery.audit_model(model, tok, RECORDS, cfg, DEFAULT_FORMAT, model_path="m", seed=3)
    assert agg["accuracy"] == 0.75 and agg["format_rate"] == 1.0  # text after the close tag trimmed
    assert ("init", "m", 3) in calls and ("generate", 1, 0.0, True) in calls and ("generate", 2, 0.6, True) in calls


def test_paired_intervals_do_not_depend_on_the_hash_seed():
    """The paired differences follow the items' order, not a set's (whose order changes with PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    script = ("import json, random; from thinktune.audit.compare import compare\n"
              "rng = random.Random(0)\n"
              "rows = lambda: [{'id': f'item-{i}', 'correct': None, 'answerable': True,\n"
              "                 'info_gain': {'info_gain': rng.random()}} for i in range(40)]\n"
              "print(json.dumps(compare({'a': ({}, rows()), 'b': ({}, rows())}, 200, 0)['paired']))")
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1 and json.loads(outs.pop())["b"]["info_gain"]["n"] == 40
