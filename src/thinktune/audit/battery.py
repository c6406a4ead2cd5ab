"""The audit battery: every configured test for one model (the recipe's ``audit`` stage, audit/stage.py, runs it
on every model of a run; ``thinktune audit``, audit/compare.py, on models named on the command line).

Per model (:func:`audit_model`):
1. greedy generation (HF ``generate``, or the optional vLLM backend) → outcome metrics (audit/outcomes.py);
   optional sampling → pass@k, maj@k; :func:`audit_completions` runs steps 2–4 on completions given to it;
2. each answerable item's greedy chain becomes a trace (audit/traces.py); early answering, filler, paraphrase,
   information gain and calibration add branches to one :class:`~thinktune.audit.scoring.BranchSet` and are scored in
   one prefix-cached pass (audit/scoring.py) — no regeneration;
3. the answer without CoT (for the chance-corrected no-CoT agreement, only where it differs) and inserted mistakes
   regenerate;
4. abstention metrics on the unanswerable variants; aggregates with bootstrap 95 % intervals.

Outputs: ``audit.json`` (aggregates), ``examples.jsonl`` (one row per item, every test), and for several models
``comparison.json`` (paired differences against the first model on the same items, audit/compare.py). The stage
writes them under ``runs/<name>/audit/<model>/`` plus ``results.json`` at the run root; ``thinktune audit MODEL…
--data FILE`` writes them under ``--out``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thinktune.audit import faithfulness, infogain, metrics
from thinktune.audit.abstention import (
    abstention_metrics,
    appropriate_behavior,
    make_unanswerable,
)
from thinktune.audit.calibration import brier, calibration_summary, ece
from thinktune.audit.outcomes import (
    aggregate,
    bootstrap_ci,
    outcome_row,
    reasoning_text,
    sampled_metrics,
    switch_pattern,
)
from thinktune.audit.scoring import BranchSet
from thinktune.audit.traces import (
    Trace,
    build_trace,
    make_encoder,
    space_token_ids,
    think_prefilled,
)
from thinktune.config import AuditStage
from thinktune.data.answers import extract_answer, normalize
from thinktune.data.records import Record, write_jsonl
from thinktune.errors import ThinktuneError
from thinktune.formatting import CompletionFormat, PromptContract, chat_prompt
from thinktune.generation import SamplingParams, generate_texts
from thinktune.io import atomic_write_json
from thinktune.progress import reporter

SCORED_TESTS = ("early_answering", "filler", "paraphrase")


class AuditError(ThinktuneError):
    """The audit cannot run on these inputs (empty data, a model without a chat template, …)."""


def check_records(records: Sequence[Record], source: str = "the data") -> None:
    if not records:
        raise AuditError(f"{source}: no records to audit (the file is empty or every row was filtered out)")


def check_tokenizer(tokenizer, label: str, allow_plain_prompt: bool = False) -> None:
    if not getattr(tokenizer, "chat_template", None) and not allow_plain_prompt:
        raise AuditError(f"model {label!r} has no chat template; pass --plain-prompt to use a plain "
                         "'Question: … Answer:' prompt instead")


def _generate(model, tokenizer, prompts: Sequence[str], params: SamplingParams, cfg: AuditStage, batch_size: int,
              model_path: str | None, seed: int, on_batch, logits_processors: Sequence = ()) -> list[list[str]]:
    """HF ``generate`` (default) or the optional vLLM backend, which loads the model from ``model_path``."""
    if cfg.backend == "vllm":
        from thinktune.generation import generate_texts_vllm

        if logits_processors:
            raise AuditError("decoding interventions (TIP) run with the hf backend only")

        if model_path is None:
            raise AuditError("backend vllm needs the model's directory (vLLM loads the weights itself)")
        try:
            outs = generate_texts_vllm(model_path, prompts, params, seed)
        except ImportError as e:
            raise AuditError(str(e)) from None
        on_batch(len(prompts))
        return outs
    return generate_texts(model, tokenizer, prompts, params, batch_size=batch_size, on_batch=on_batch,
                          logits_processors=logits_processors)


def audit_model(model, tokenizer, records: Sequence[Record], cfg: AuditStage, fmt: CompletionFormat,
                instruction: str | None = None, system: str | None = None, label: str = "model",
                seed: int = 0, model_path: str | None = None,
                logits_processors: Sequence = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(aggregate, one row per record) for every test in ``cfg``: greedy generation, then :func:`audit_completions`.

    ``model_path`` is needed only by the vLLM backend. ``logits_processors`` (e.g. decoding.tip's
    ThoughtSwitchPenalty) apply to the greedy generation, so an intervention is audited as a variant of the model;
    activation steering needs no argument: run this inside ``decoding.steering.steered(model, …)``."""
    prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in records]
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, stop=(fmt.stop,))
    t0 = time.perf_counter()
    with reporter().task(f"audit {label}: greedy", total=len(prompts)) as bar:
        completions = [o[0] for o in _generate(model, tokenizer, prompts, params, cfg, cfg.batch_size, model_path,
                                               seed, bar.advance, logits_processors)]
    seconds = time.perf_counter() - t0
    agg, rows = audit_completions(model, tokenizer, records, prompts, completions, cfg, fmt, label, seed, model_path,
                                  logits_processors)
    agg["timing"] = {"generate_greedy_s": round(seconds, 3), **agg["timing"]}
    # the prompt this audit used: the contract's parts and the first item's prompt as the chat template rendered it
    agg["prompt"] = {**PromptContract(instruction, system, fmt).to_dict(), "extractor": cfg.extractor,
                     "example": prompts[0] if prompts else None}
    return agg, rows


def audit_completions(model, tokenizer, records: Sequence[Record], prompts: Sequence[str], completions: Sequence[str],
                      cfg: AuditStage, fmt: CompletionFormat, label: str = "model", seed: int = 0,
                      model_path: str | None = None,
                      logits_processors: Sequence = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every test in ``cfg`` on given greedy ``completions`` of ``prompts`` (the model's own, or any chains to audit
    as if the model had written them); ``logits_processors`` apply to the sampled completions (``cfg.samples``)."""
    import torch

    timing: dict[str, float] = {}
    prefilled = [think_prefilled(p, fmt) for p in prompts]
    encode = make_encoder(tokenizer)
    switch_re = switch_pattern(cfg.switch_words) if cfg.switch_words else None
    rows = [outcome_row(r, c, fmt, lambda s: len(encode(s)), pf, cfg.extractor, switch_re)
            for r, c, pf in zip(records, completions, prefilled)]

    if cfg.samples:
        t0 = time.perf_counter()
        torch.manual_seed(cfg.sampling_seed)
        sp = SamplingParams(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                            top_p=cfg.top_p, n=cfg.samples, stop=(fmt.stop,))
        answerable = [i for i, r in enumerate(records) if r.answerable]
        with reporter().task(f"audit {label}: {cfg.samples} samples", total=len(answerable)) as bar:
            outs = _generate(model, tokenizer, [prompts[i] for i in answerable], sp, cfg,
                             max(1, cfg.batch_size // cfg.samples), model_path, cfg.sampling_seed, bar.advance,
                             logits_processors)
        for i, texts in zip(answerable, outs):
            answers = [extract_answer(t, fmt, prefilled[i], extractor=cfg.extractor) for t in texts]
            chains = [reasoning_text(t, fmt, prefilled[i], cfg.extractor) for t in texts]
            switches = [len(switch_re.findall(c or t)) for c, t in zip(chains, texts)] if switch_re else None
            rows[i]["sampled"] = sampled_metrics(records[i], answers, cfg.pass_k, switches,
                                                 [len(encode(c)) if c else 0 for c in chains])
        timing["generate_samples_s"] = time.perf_counter() - t0

    if cfg.judge and any(not r.answerable for r in records):
        t0 = time.perf_counter()
        _judge(rows, records, cfg)
        timing["judge_s"] = time.perf_counter() - t0
    traces: list[tuple[int, Trace]] = []
    untagged = cfg.extractor if cfg.untagged_chains else None
    for i, (r, c) in enumerate(zip(records, completions)):
        if r.answerable and (t := build_trace(encode, prompts[i], c, r, fmt, untagged)) is not None:
            traces.append((i, t))
    t0 = time.perf_counter()
    _scored_tests(model, tokenizer, traces, rows, cfg, encode, fmt, label)
    timing["score_s"] = time.perf_counter() - t0
    if "early_answering" in cfg.tests and cfg.chance_corrected and traces:
        t0 = time.perf_counter()
        same0 = [rows[i]["faithfulness"]["early_answering"]["same"][0] == 1 for i, _ in traces]
        without = faithfulness.answers_without_cot(model, tokenizer, [t for _, t in traces], same0, fmt,
                                                   cfg.batch_size)
        for (i, t), a in zip(traces, without):
            ea = rows[i]["faithfulness"]["early_answering"]
            ea["answer_with_cot"], ea["answer_without_cot"] = normalize(t.final_text), a
        timing["generate_without_cot_s"] = time.perf_counter() - t0
    if "mistakes" in cfg.tests and traces:
        t0 = time.perf_counter()
        with reporter().task(f"audit {label}: inserted mistakes", total=None):
            res = faithfulness.run_mistakes(model, tokenizer, [t for _, t in traces], fmt, cfg.mistake_points, seed,
                                            cfg.batch_size, cfg.max_new_tokens)
        for (i, _), m in zip(traces, res):
            rows[i].setdefault("faithfulness", {})["mistakes"] = m
        timing["generate_mistakes_s"] = time.perf_counter() - t0
    agg = summarize(rows, cfg, seed)
    if cfg.metrics:  # metrics added by name (audit/metrics.py)
        added = [metrics.resolve(spec) for spec in cfg.metrics]
        metrics.compute(added, rows, records)
        agg["metrics"] = metrics.summarize(added, rows, cfg.bootstrap, seed)
    agg["model"] = label
    agg["n_traces"] = len(traces)
    agg["timing"] = {k: round(v, 3) for k, v in timing.items()}
    return agg, rows


def _scored_tests(model, tokenizer, traces, rows, cfg: AuditStage, encode, fmt, label) -> None:
    """Plan every scorer-based test of every trace into one BranchSet, score once, read back into the rows."""
    bset = BranchSet()
    plans = []
    reworded: list[list[str] | None] = [None] * len(traces)
    if "paraphrase" in cfg.tests and cfg.paraphraser and traces:
        para_model, para_tok = _load_helper_model(cfg.paraphraser)
        reworded = faithfulness.model_paraphrases(para_model, para_tok, [t for _, t in traces], cfg.batch_size)
        del para_model
    for (_, t), words in zip(traces, reworded):
        p: dict[str, Any] = {"faith": faithfulness.plan_item(bset, t, encode, cfg.tests, cfg.early_answering_points,
                                                             cfg.filler_unit, cfg.filler_curve, words)}
        if "info_gain" in cfg.tests and cfg.info_gain_mode == "answer_only" and t.n >= cfg.info_gain_min_steps:
            p["info_gain"] = infogain.plan(bset, t)
        if "calibration" in cfg.tests:
            p["confidence"] = bset.add(bset.root(t.root), t.bounds[t.n], t.cue, t.final_target, len(t.final))
        plans.append(p)
    if len(bset):
        with reporter().task(f"audit {label}: scoring", total=len(bset.roots)) as bar:
            bset.score(model, cfg.batch_size, tokenizer.pad_token_id or 0, on_batch=bar.advance,
                       space_ids=space_token_ids(tokenizer))
    whole = None
    if "info_gain" in cfg.tests and cfg.info_gain_mode == "whole_sequence":
        eligible = [t for _, t in traces if t.n >= cfg.info_gain_min_steps]
        nlls = infogain.whole_sequence_nll(model, eligible, cfg.batch_size, tokenizer.pad_token_id or 0)
        whole = {id(t): v for t, v in zip(eligible, nlls)}
    for (i, t), p in zip(traces, plans):
        rows[i]["faithfulness"] = faithfulness.read_item(bset, t, p["faith"])
        if "info_gain" in cfg.tests:
            if "info_gain" in p:
                rows[i]["info_gain"] = infogain.read_answer_only(bset, p["info_gain"])
            elif whole is not None and id(t) in whole:
                rows[i]["info_gain"] = infogain.read(whole[id(t)])
            else:
                rows[i]["info_gain"] = {"info_gain": None, "skipped": f"fewer than {cfg.info_gain_min_steps} steps"}
        if "confidence" in p:
            rows[i]["confidence"] = math.exp(bset.result(p["confidence"]).logprob)


def _load_helper_model(spec: str):
    """A paraphraser or judge model: a directory, a cached hub id, or 'smollm2'."""
    from thinktune.config import ModelConfig
    from thinktune.models import load_model

    try:
        return load_model(ModelConfig(path=spec))
    except (OSError, ValueError) as e:
        raise AuditError(f"cannot load helper model {spec!r}: {str(e).splitlines()[0]}") from None


def _judge(rows: list[dict[str, Any]], records: Sequence[Record], cfg: AuditStage) -> None:
    """Replace keyword verdicts by an LLM judge's where it gives one (``judge_verdict``; None is kept and counted)."""
    from thinktune.audit.abstention import judge_abstentions

    model, tok = _load_helper_model(cfg.judge)  # type: ignore[arg-type]
    verdicts = judge_abstentions(
        model, tok, [r.question for r in records],
        [[r.meta.get("original_answer", r.answer)] if not r.answerable else [r.answer] for r in records],
        [not r.answerable for r in records],
        [row["answer"] if row["answer"] is not None else row["completion"][-200:] for row in rows], cfg.batch_size)
    for row, v in zip(rows, verdicts):
        row["judge_verdict"] = v
        if v is not None:
            row["abstained"] = v


def summarize(rows: Sequence[dict[str, Any]], cfg: AuditStage, seed: int = 0) -> dict[str, Any]:
    """Aggregates of every test, each with bootstrap 95 % intervals over items."""
    B = cfg.bootstrap
    agg = aggregate(rows)
    faith_items = [r["faithfulness"] for r in rows if r.get("faithfulness")]
    faith = faithfulness.summarize(faith_items)
    ci: dict[str, Any] = {}
    if "early_answering" in faith:
        ea = [f["early_answering"] for f in faith_items if "early_answering" in f]
        ci["aoc"] = bootstrap_ci([e["aoc"] for e in ea], B, seed)
        ci["truncation_sensitive"] = bootstrap_ci([float(e["truncation_sensitive"]) for e in ea], B, seed)
        pairs = [(e["answer_with_cot"], e["answer_without_cot"]) for e in ea if "answer_without_cot" in e]
        if pairs:
            _, norm = faithfulness.chance_corrected_agreement([a for a, _ in pairs], [b for _, b in pairs])
            faith["early_answering"]["no_cot_agreement_chance_corrected"] = norm
    if "filler" in faith:
        ci["filler_sensitive"] = bootstrap_ci([float(f["filler"]["sensitive"]) for f in faith_items if "filler" in f],
                                              B, seed)
    if "mistakes" in faith:
        ci["mistakes_aoc"] = bootstrap_ci([f["mistakes"]["aoc"] for f in faith_items if f.get("mistakes")], B, seed)
    if faith:
        faith["ci95"] = ci
        agg["faithfulness"] = faith
    ig_items = [r["info_gain"] for r in rows if "info_gain" in r]
    ig = infogain.summarize(ig_items) if ig_items else None
    if ig:
        ig["mode"] = cfg.info_gain_mode
        ig["ci95"] = {"info_gain": bootstrap_ci([it["info_gain"] for it in ig_items if it.get("info_gain") is not None],
                                                B, seed)}
        agg["info_gain"] = ig
    cal = [(r["confidence"], int(bool(r["correct"]))) for r in rows if "confidence" in r and r["correct"] is not None]
    if cal:
        conf, z = [c for c, _ in cal], [v for _, v in cal]
        summary = calibration_summary(conf, z, cfg.calibration_bins)
        assert summary is not None
        summary["source"] = "probability of the forced answer after the full chain"
        summary["ci95"] = {"ece": bootstrap_ci(cal, B, seed, stat=lambda s: ece([c for c, _ in s], [v for _, v in s],
                                                                                 cfg.calibration_bins)),
                           "brier": bootstrap_ci([(c - v) ** 2 for c, v in cal], B, seed)}
        agg["calibration"] = summary
    votes = [(r["sampled"]["vote_share"], int(r["sampled"]["majority_correct"])) for r in rows if r.get("sampled")]
    if votes:
        agg.setdefault("sampling_calibration", {
            "source": "majority vote share", "ece": ece([c for c, _ in votes], [v for _, v in votes],
                                                        cfg.calibration_bins),
            "brier": brier([c for c, _ in votes], [v for _, v in votes])})
    if any(not r["answerable"] for r in rows):
        y_true = [not r["answerable"] for r in rows]
        y_pred = [bool(r["abstained"]) for r in rows]
        ab = abstention_metrics(y_true, y_pred)
        ab["appropriate_behavior"] = appropriate_behavior(y_true, y_pred, [r["correct"] for r in rows])
        ab["detector"] = f"judge: {cfg.judge}" if cfg.judge else "keywords (data.answers.is_abstention)"
        if cfg.judge:
            ab["judge_unparsed"] = sum(r.get("judge_verdict") is None for r in rows)
        pairs = list(zip(y_true, y_pred))
        ab["ci95"] = {k: bootstrap_ci(pairs, B, seed, stat=lambda s, k=k: abstention_metrics(
            [t for t, _ in s], [p for _, p in s])[k]) for k in ("recall", "f1")}
        agg["abstention"] = ab
    return agg


HEADLINE = (  # (label, path in audit.json, format)
    ("accuracy", ("accuracy",), "pct"),
    ("format", ("format_rate",), "pct"),
    ("reasoning tokens", ("reasoning_tokens", "mean"), "num"),
    ("answer w/o reasoning", ("answer_without_reasoning_rate",), "pct"),
    ("pass@1 (sampled)", ("sampling", "pass@k", "1"), "pct"),
    ("maj@n", ("sampling", "maj@n"), "pct"),
    ("early-answering AOC", ("faithfulness", "early_answering", "aoc"), "num"),
    ("truncation-sensitive", ("faithfulness", "early_answering", "truncation_sensitive"), "pct"),
    ("no-CoT agreement", ("faithfulness", "early_answering", "no_cot_agreement"), "pct"),
    ("no-CoT agreement (chance-corrected)", ("faithfulness", "early_answering", "no_cot_agreement_chance_corrected"),
     "num"),
    ("filler-sensitive", ("faithfulness", "filler", "sensitive"), "pct"),
    ("paraphrase-invariant", ("faithfulness", "paraphrase", "invariant"), "pct"),
    ("mistakes AOC", ("faithfulness", "mistakes", "aoc"), "num"),
    ("InfoGain (nats)", ("info_gain", "info_gain"), "num"),
    ("steps with IG ≤ 0", ("info_gain", "frac_steps_nonpositive"), "pct"),
    ("ECE", ("calibration", "ece"), "num"),
    ("Brier", ("calibration", "brier"), "num"),
    ("abstention recall", ("abstention", "recall"), "pct"),
    ("abstention F1", ("abstention", "f1"), "pct"),
    ("repetition", ("repetition",), "num"),
    ("underthinking ξ", ("underthinking",), "num"),
)


def lookup(agg: dict[str, Any], path: Sequence[str]) -> Any:
    cur: Any = agg
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def headline(agg: dict[str, Any]) -> dict[str, Any]:
    """The one-line summary of a model's audit (CLI tables, results.json), metrics added by name last."""
    return {**{name: lookup(agg, path) for name, path, _ in HEADLINE},
            **{m["label"]: m["mean"] for m in (agg.get("metrics") or {}).values()}}


def headline_rows(agg: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """(label, path in audit.json, kind) of the headline, metrics added by name included."""
    return [*HEADLINE, *((m["label"], ("metrics", name, "mean"), m["kind"])
                         for name, m in (agg.get("metrics") or {}).items())]


def write_audit(target: Path, agg: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / "audit.json", agg)
    write_jsonl(target / "examples.jsonl", rows)


def with_unanswerable(records: list[Record], cfg: AuditStage) -> tuple[list[Record], dict[str, int] | None]:
    """The records plus their unanswerable variants when ``cfg.unanswerable`` asks for them."""
    if cfg.unanswerable == "none":
        return records, None
    variants, counts = make_unanswerable(records, cfg.unanswerable)
    return records + variants, counts
