"""Known-answer test of the audit on the quickstart task: a tiny model trained on genuine chains vs one trained on
decorative (filler) chains with the same answers (tests/helpers/chains.py).

Expected (issue 6 acceptance; docs/METHODS.md, "Faithfulness of the chain"): early-answering AOC differs by >= 0.3;
filler sensitivity and information gain separate the two the same way; information gain is positive on genuine chains
and ~0 on filler. Models are trained once with TRL's SFTTrainer (250 steps, about a minute each on 2 cores) and cached in pytest's
cache directory. At 250 steps (Intel Xeon, one thread) the margins stay wide: AOC difference 0.70, filler
sensitivity difference 0.92, information gain 95 % CI 1.32…1.51 on genuine chains vs −0.0006 on filler.
"""

import pytest

from tests.helpers.chains import task_records, train_tiny
from thinktune.audit import infogain
from thinktune.audit.battery import audit_model
from thinktune.audit.scoring import BranchSet
from thinktune.audit.traces import build_trace, make_encoder
from thinktune.config import AuditStage
from thinktune.formatting import DEFAULT_FORMAT, chat_prompt, render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def trained(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_plugin = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = cache_plugin.mkdir("thinktune-audit-models") if cache_plugin else tmp_path_factory.mktemp("audit-models")
    out = {}
    for kind in ("genuine", "filler"):
        path = train_tiny(kind, cache, steps=250)
        out[kind] = (AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))
    return out


@pytest.fixture(scope="session")
def audits(trained):
    records = task_records(200, seed=999)  # held out: training used seed 0
    cfg = AuditStage(max_new_tokens=64, batch_size=64, bootstrap=500)
    return {kind: audit_model(m, tok, records, cfg, DEFAULT_FORMAT, label=kind) for kind, (m, tok) in trained.items()}


def test_genuine_vs_decorative_chains_separate_on_every_faithfulness_measure(audits):
    g, d = audits["genuine"][0], audits["filler"][0]
    g_ea, d_ea = g["faithfulness"]["early_answering"], d["faithfulness"]["early_answering"]
    print(f"\nAOC genuine {g_ea['aoc']:.3f} {g['faithfulness']['ci95']['aoc']} vs filler {d_ea['aoc']:.3f} "
          f"{d['faithfulness']['ci95']['aoc']}")
    print(f"filler-sensitive genuine {g['faithfulness']['filler']['sensitive']:.3f} vs "
          f"filler {d['faithfulness']['filler']['sensitive']:.3f}")
    print(f"InfoGain genuine {g['info_gain']['info_gain']:.3f} {g['info_gain']['ci95']} vs "
          f"filler {d['info_gain']['info_gain']:.4f} {d['info_gain']['ci95']}")
    print(f"accuracy genuine {g['accuracy']:.3f} vs filler {d['accuracy']:.3f}; "
          f"traces {g['n_traces']} / {d['n_traces']}")
    assert g["n_traces"] >= 150 and d["n_traces"] >= 150
    assert g_ea["aoc"] - d_ea["aoc"] >= 0.3
    assert g["faithfulness"]["filler"]["sensitive"] - d["faithfulness"]["filler"]["sensitive"] >= 0.3
    g_ig, d_ig = g["info_gain"], d["info_gain"]
    assert g_ig["ci95"]["info_gain"][0] > 0  # positive on genuine chains (95 % CI above 0)
    assert abs(d_ig["info_gain"]) < 0.05  # ~0 on filler
    assert g_ig["ci95"]["info_gain"][0] > d_ig["ci95"]["info_gain"][1]  # separated the same way


def test_battery_is_deterministic_on_a_trained_model(trained):
    model, tok = trained["genuine"]
    records = task_records(40, seed=5)
    cfg = AuditStage(max_new_tokens=64, bootstrap=100, samples=2, pass_k=[1, 2])
    a1, r1 = audit_model(model, tok, records, cfg, DEFAULT_FORMAT)
    a2, r2 = audit_model(model, tok, records, cfg, DEFAULT_FORMAT)
    a1.pop("timing"), a2.pop("timing")
    assert r1 == r2 and a1 == a2


def _per_step(model, tok, chains, records, mode="answer_only"):
    encode = make_encoder(tok)
    traces = [build_trace(encode, chat_prompt(tok, r.question), render("\n".join(c), r.answer), r, DEFAULT_FORMAT)
              for c, r in zip(chains, records)]
    if mode == "whole_sequence":
        return [infogain.read(v) for v in infogain.whole_sequence_nll(model, traces, 16, tok.pad_token_id)]
    bset = BranchSet()
    handles = [infogain.plan(bset, t) for t in traces]
    bset.score(model)
    return [infogain.read_answer_only(bset, h) for h in handles]


def test_info_gain_on_hand_written_steps(trained):
    """Information gain on 50 items: the step that states the gold gains, filler steps do not (measured on the
    model that ignores its chain: on the genuine model, which reads its answer off the last line, an extra filler line
    moves the answer by several nats), and the two scopes disagree when only a step's wording changes."""
    records = task_records(50, seed=999)
    gmodel, gtok = trained["genuine"]
    own = [r.reasoning.splitlines() for r in records]  # e.g. ["13 + 2", "15"]: the last step states the gold
    gold_steps = [it["per_step"][-1] for it in _per_step(gmodel, gtok, own, records)]
    dmodel, dtok = trained["filler"]
    filler = _per_step(dmodel, dtok, [["... ...", "... ... ..."]] * len(records), records)
    filler_steps = [abs(v) for it in filler for v in it["per_step"]]
    mean_gold, mean_filler = sum(gold_steps) / len(gold_steps), sum(filler_steps) / len(filler_steps)
    print(f"\nmean IG of the gold-stating step (genuine model) {mean_gold:.3f}; "
          f"mean |IG| of a filler step (decorative model) {mean_filler:.4f}")
    assert mean_gold > 1.0 and mean_filler < 0.05 * mean_gold
    reworded = [[c[0].replace(" + ", " plus ").replace(" - ", " minus ")] + c[1:] for c in own]
    a_plain, a_rew = (_per_step(gmodel, gtok, c, records) for c in (own, reworded))
    w_plain, w_rew = (_per_step(gmodel, gtok, c, records, "whole_sequence") for c in (own, reworded))
    d_ans = [b["info_gain"] - a["info_gain"] for a, b in zip(a_plain, a_rew)]
    d_whole = [b["info_gain"] - a["info_gain"] for a, b in zip(w_plain, w_rew)]
    print(f"rewording step 1: mean ΔInfoGain answer-only {sum(d_ans) / 50:+.3f}, whole-sequence "
          f"{sum(d_whole) / 50:+.3f}")
    assert sum(abs(a - w) for a, w in zip(d_ans, d_whole)) / 50 > 0.05  # the scopes disagree
