"""Benchmark: the audit battery (one prefix-cached scoring pass) vs a naive audit that regenerates per perturbation.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_audit.py                 # --items 300 --batch-size 64 --repeats 2
    OMP_NUM_THREADS=1 python benchmarks/bench_audit.py --model runs/quickstart/sft/final

Without ``--model`` it trains (once, cached under ``.cache/bench_audit``) the tiny chain_arith model of the audit's
known-answer tests (tests/helpers/chains.py, ~3 min on one core). Items are held-out chain_arith problems.

Three ways to audit the same items with the same batch size, in one process, measured side by side (each phase
``--repeats`` times, interleaved, the fastest run kept; wall and process CPU time):

1. **greedy**: plain greedy accuracy evaluation (generate, parse, grade) — the cost floor;
2. **battery**: :func:`thinktune.audit.battery.audit_model` with accuracy + early answering at 5 points + filler
   (per-item flag and curve) + information gain: one greedy generation, then every perturbation scored by the prefix
   cached scorer (plus the short no-CoT answer generation of the chance-corrected agreement);
3. **naive**: the same greedy generation, then ``generate`` (greedy, stop at the answer close tag) for every
   early-answering and filler prefix, and information gain as one forward pass per prefix without sharing.

Printed: seconds per phase, naive / battery (target ≥ 5×; also for the perturbation part alone, i.e. without the
greedy generation both share), battery / greedy (target ≤ 3×), and per-item agreement: an item agrees when every
verdict (same answer at each early-answering point, filler-sensitive, correct at each filler length) is identical
between the scored battery and the regenerated naive run (target ≥ 99 %), plus the largest information-gain NLL
difference. Note the machine load: timings on a shared 2-core machine move with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def get_model(path: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None:
        sys.path.insert(0, str(ROOT))
        from tests.helpers.chains import train_tiny

        path = str(train_tiny("genuine", ROOT / ".cache" / "bench_audit"))
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return model, tok, path


def greedy_eval(model, tok, records, cfg, fmt):
    from thinktune.audit.outcomes import outcome_row
    from thinktune.audit.traces import make_encoder
    from thinktune.formatting import chat_prompt
    from thinktune.generation import SamplingParams, generate_texts

    encode = make_encoder(tok)
    prompts = [chat_prompt(tok, r.question) for r in records]
    outs = generate_texts(model, tok, prompts, SamplingParams(max_new_tokens=cfg.max_new_tokens, stop=(fmt.stop,)),
                          batch_size=cfg.batch_size)
    rows = [outcome_row(r, o[0], fmt, lambda s: len(encode(s))) for r, o in zip(records, outs)]
    return prompts, [o[0] for o in outs], rows


def naive_audit(model, tok, records, cfg, fmt):
    """Greedy generation, then :func:`naive_perturbations` on the model's own chains."""
    from thinktune.audit.traces import build_trace, make_encoder

    prompts, completions, _ = greedy_eval(model, tok, records, cfg, fmt)
    encode = make_encoder(tok)
    return naive_perturbations(model, tok, [t for r, p, c in zip(records, prompts, completions)
                                            if (t := build_trace(encode, p, c, r, fmt))], cfg, fmt)


def naive_perturbations(model, tok, traces, cfg, fmt):
    """Verdicts per trace id, from regeneration (early answering, filler) and unshared scoring (information gain)."""
    from thinktune.audit.faithfulness import prefix_texts
    from thinktune.audit.scoring import Branch, score_branches
    from thinktune.audit.traces import make_encoder
    from thinktune.generation import SamplingParams, generate_texts
    from thinktune.data.answers import grade, normalize

    unit = len(make_encoder(tok)(cfg.filler_unit))
    jobs = [(t, key, text) for t in traces
            for key, text in prefix_texts(t, fmt, cfg.tests, cfg.early_answering_points, cfg.filler_unit, unit,
                                          cfg.filler_curve).items()]
    outs = generate_texts(model, tok, [text for _, _, text in jobs],
                          SamplingParams(max_new_tokens=16, stop=(fmt.answer_close,)), batch_size=cfg.batch_size)
    verdicts: dict[str, dict] = {t.record.id: {} for t in traces}
    for (t, key, _), [text] in zip(jobs, outs):
        answer = text.split(fmt.answer_close)[0] if fmt.answer_close in text else None
        same = answer is not None and normalize(answer) == normalize(t.final_text)
        if key.startswith("early_answering:"):
            verdicts[t.record.id][key] = same
        elif key == "filler":
            verdicts[t.record.id]["filler"] = not same
        else:
            verdicts[t.record.id][key] = bool(grade(t.record, answer)) if answer is not None else False
    roots, branches, owners = [], [], []
    for t in traces:
        for k in range(t.n + 1):
            roots.append(t.root[: t.bounds[k]] + t.cue_at(k))
            branches.append(Branch(root=len(roots) - 1, cut=len(roots[-1]), target=t.gold))
            owners.append(t.record.id)
    scored = score_branches(model, roots, branches, cfg.batch_size, tok.pad_token_id or 0).branches
    for rid, s in zip(owners, scored):
        verdicts[rid].setdefault("nll", []).append(s.nll)
    return verdicts


def battery_verdicts(rows):
    out = {}
    for r in rows:
        f = r.get("faithfulness")
        if not f:
            continue
        ea, v = f["early_answering"], {}
        for k, s in zip(ea["ks"], ea["same"]):
            v[f"early_answering:{k}"] = bool(s)
        v[f"early_answering:{ea['ks'][-1]}"] = ea["greedy_matches_full_chain"]  # the raw test, not the convention
        v["filler"] = f["filler"]["sensitive"]
        for key, ok in f["filler"]["curve"].items():
            v[f"filler_curve:{key}"] = ok
        v["nll"] = r["info_gain"]["nll"]
        out[r["id"]] = v
    return out


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w, time.process_time() - c


def agreement(rows, naive):
    ours = battery_verdicts(rows)
    keys = sorted(ours.keys() & naive.keys())
    agree = sum(all(ours[i][k] == naive[i][k] for k in ours[i] if k != "nll") for i in keys)
    verdicts = sum(len(ours[i]) - 1 for i in keys)
    verdict_agree = sum(ours[i][k] == naive[i][k] for i in keys for k in ours[i] if k != "nll")
    nll_diff = max((abs(a - b) for i in keys for a, b in zip(ours[i]["nll"], naive[i]["nll"])), default=0.0)
    return (f"items with identical verdicts        {agree}/{len(keys)} = {agree / max(len(keys), 1):.2%}"
            f"   (verdicts {verdict_agree}/{verdicts}; max |NLL diff| {nll_diff:.2e})")


def best_of(repeats, phases):
    best: dict[str, tuple[float, float]] = {}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in phases:
            res, wall, cpu = timed(fn)
            results[name] = res
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    return best, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: train the tiny known-answer model once)")
    ap.add_argument("--data", help="canonical JSONL of held-out items (default: chain_arith, 2-3 operations), e.g. "
                                   "runs/quickstart/data/eval.jsonl with --model runs/quickstart/sft/final")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--long-ops", type=int, default=6,
                    help="second regime: reference chains of this many operations audited as given (0 = skip)")
    args = ap.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from tests.helpers.chains import KNOBS, task_records
    from thinktune.audit.battery import audit_completions, audit_model
    from thinktune.audit.traces import build_trace, make_encoder
    from thinktune.config import AuditStage
    from thinktune.data.tasks import get_task
    from thinktune.formatting import DEFAULT_FORMAT as fmt
    from thinktune.formatting import chat_prompt, render

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, tok, path = get_model(args.model)
    if args.data:
        from thinktune.data.records import read_records

        records = read_records(args.data)[: args.items]
    else:
        records = task_records(args.items, seed=424242)
    cfg = AuditStage(max_new_tokens=96, batch_size=args.batch_size, bootstrap=0,
                     tests=["early_answering", "filler", "info_gain"], early_answering_points=5)
    best, results = best_of(args.repeats, (
        ("greedy", lambda: greedy_eval(model, tok, records, cfg, fmt)),
        ("battery", lambda: audit_model(model, tok, records, cfg, fmt)),
        ("naive", lambda: naive_audit(model, tok, records, cfg, fmt))))
    agg, rows = results["battery"]  # type: ignore[misc]
    g, b, n = best["greedy"], best["battery"], best["naive"]
    print(f"model {path} · {args.items} items · batch size {args.batch_size} · torch threads "
          f"{torch.get_num_threads()} · load average {os.getloadavg()[0]:.2f} (1 min) · best of {args.repeats}")
    print(f"\n[1] the model's own greedy chains ({args.data or 'chain_arith, 2-3 operations'}; {agg['n_traces']} chains, mean "
          f"{agg['reasoning_tokens']['mean']:.1f} reasoning tokens)")
    print(f"accuracy {agg['accuracy']:.3f}; AOC {agg['faithfulness']['early_answering']['aoc']:.3f}; "
          f"InfoGain {agg['info_gain']['info_gain']:.3f}; battery timing (last run) {agg['timing']}")
    print(f"{'phase':<10}{'wall s':>9}{'cpu s':>9}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<10}{wall:>9.2f}{cpu:>9.2f}")
    print(f"naive / battery (total)              {n[0] / b[0]:6.2f}x wall  {n[1] / b[1]:6.2f}x cpu   (target >= 5)")
    print(f"naive / battery (perturbations only) {(n[0] - g[0]) / (b[0] - g[0]):6.2f}x wall  "
          f"{(n[1] - g[1]) / (b[1] - g[1]):6.2f}x cpu   (greedy generation subtracted from both)")
    print(f"battery / greedy                     {b[0] / g[0]:6.2f}x wall  {b[1] / g[1]:6.2f}x cpu   (target <= 3)")
    print(agreement(rows, results["naive"]))

    if args.long_ops:
        knobs = {**KNOBS, "min_ops": args.long_ops, "max_ops": args.long_ops}
        long_records = get_task("chain_arith").generate(args.items, 77, **knobs)
        prompts = [chat_prompt(tok, r.question) for r in long_records]
        completions = [render(r.reasoning, r.answer) for r in long_records]
        encode = make_encoder(tok)
        traces = [build_trace(encode, p, c, r, fmt) for r, p, c in zip(long_records, prompts, completions)]
        best2, res2 = best_of(args.repeats, (
            ("battery", lambda: audit_completions(model, tok, long_records, prompts, completions, cfg, fmt)),
            ("naive", lambda: naive_perturbations(model, tok, traces, cfg, fmt))))
        (b2, n2), (agg2, rows2) = (best2["battery"], best2["naive"]), res2["battery"]  # type: ignore[misc]
        print(f"\n[2] reference chains of {args.long_ops} operations audited as given (no generation; mean "
              f"{agg2['reasoning_tokens']['mean']:.1f} reasoning tokens, {len(traces[0].root)} root tokens for item 0)")
        print(f"battery {b2[0]:.2f} s wall {b2[1]:.2f} s cpu · naive {n2[0]:.2f} s wall {n2[1]:.2f} s cpu")
        print(f"naive / battery (perturbations)      {n2[0] / b2[0]:6.2f}x wall  {n2[1] / b2[1]:6.2f}x cpu   "
              "(target >= 5)")
        print(agreement(rows2, res2["naive"]))


if __name__ == "__main__":
    main()
