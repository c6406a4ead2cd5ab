"""``thinktune generate``, ``thinktune tip compare``, ``thinktune steer pairs|extract|sweep``, ``thinktune serve``.

Routing and rendering only; the work lives in :mod:`thinktune.decoding` and :mod:`thinktune.serve`::

    thinktune generate smollm2 --data ../shared/data/gsm8k_test.jsonl --n 20 --tip --tip-words wait -o out.jsonl
    thinktune tip compare smollm2 --data ../shared/data/gsm8k_test.jsonl --n 400 --words wait,however -o tip.json
    thinktune steer pairs smollm2 --data ../shared/data/gsm8k_train.jsonl --n 64 -o pairs.jsonl
    thinktune steer extract smollm2 --pairs pairs.jsonl -o concise.steer
    thinktune steer sweep smollm2 concise.steer --data ../shared/data/gsm8k_test.jsonl --n 100 -o sweep.json
    thinktune serve runs/quickstart/grpo/final --port 8000 --steer concise.steer:0.4

Models are named as for ``thinktune audit``: a directory, a cached hub id, or ``smollm2``. ``--instruction auto``
gives thinktune-trained models no instruction and any other model thinktune's format instruction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from thinktune.cli.console import RichReporter, command_group, console, out, setup_logging, user_errors

tip_app = command_group("The thought-switching penalty (TIP): compare switch rate and accuracy.")
steer_app = command_group("Activation steering (ASC): build pairs, extract a vector, sweep strengths.")

ModelArg = Annotated[str, typer.Argument(help="A model directory, a cached hub id, or 'smollm2'.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Items (.jsonl/.json/.csv/.parquet; canonical or GSM8K/MATH).")]
NOpt = Annotated[int | None, typer.Option("--n", help="Use the first N items.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", help="Token cap per completion.")]
InstrOpt = Annotated[str, typer.Option("--instruction", help="auto | none | default | any text prepended to questions.")]
ExtractorOpt = Annotated[str, typer.Option("--extractor", help="Answer extractor: auto, answer_tag, boxed, gsm8k, "
                                                              "last_number … (default: by --instruction auto).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Prompts decoded together.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write the result here (JSON / JSONL).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")]
WordsOpt = Annotated[str, typer.Option("--words", "--tip-words", help="Comma-separated switch words.")]
AlphaOpt = Annotated[float, typer.Option("--alpha", "--tip-alpha", help="TIP penalty α (logits).")]
BetaOpt = Annotated[int, typer.Option("--beta", "--tip-beta", help="TIP window β (generated tokens).")]
SteerOpt = Annotated[str | None, typer.Option("--steer", help="FILE:STRENGTH — a steering vector and its strength.")]


def _start(verbose: bool):
    from thinktune.progress import set_reporter

    setup_logging(verbose)
    return set_reporter(RichReporter(console))


def _model(spec: str, instruction: str, extractor: str | None):
    """(model, tokenizer, instruction, extractor, prompt contract) with the audit's loading and --instruction auto
    rule (thinktune.named_model)."""
    from thinktune.formatting import resolve_instruction
    from thinktune.named_model import resolve_model

    named = resolve_model(spec)
    model, tok = named.load()
    trained = named.prompt is not None
    return (model, tok, resolve_instruction(instruction, named.prompt),
            extractor or ("answer_tag" if trained else "auto"), named.prompt)


def _records(path: Path, n: int | None, strip_calculator: bool = True, offset: int = 0):
    from thinktune.data.sources import SourceSpec, load_records

    limit = None if n is None else n + offset
    records, _ = load_records(SourceSpec(path=str(path), format="auto", limit=limit, strip_calculator=strip_calculator))
    records = records[offset:]
    if not records:
        from thinktune.errors import ThinktuneError

        raise ThinktuneError(f"{path}: no items")
    return records


def _write_json(path: Path | None, obj) -> None:
    if path is None:
        return
    from thinktune.io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=float) + "\n")
    out.print(f"written: {path}")


def _steer(spec: str | None, model):
    if not spec:
        return None
    from thinktune.decoding.steering import SteeringVector, parse_steer_spec

    path, strength = parse_steer_spec(spec)
    vector = SteeringVector.load(path)
    vector.check(model)
    return vector, strength


def _variant_table(title: str, named: dict[str, dict]):
    from rich.table import Table

    t = Table(title=title)
    for col in ("variant", "n", "accuracy", "95% CI", "mean tokens", "at cap", "switches/resp", "switching"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for name, s in named.items():
        if not s.get("n"):
            t.add_row(name, "0", *["–"] * 6)
            continue
        lo, hi = s["accuracy_ci95"]
        acc = "–" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
        t.add_row(name, str(s["n"]), acc, f"{lo:.1%}–{hi:.1%}", f"{s['mean_tokens']:.1f}", f"{s['at_cap_rate']:.0%}",
                  f"{s['switches_per_response']:.2f}", f"{s['switching_responses']:.0%}")
    return t


# ---------------------------------------------------------------------------------------------------------------


def generate_cmd(
    model: ModelArg,
    data: Annotated[Path | None, typer.Option("--data", help="Items to answer (else --prompt).")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="A question (repeatable).")] = None,
    n: NOpt = None,
    max_new_tokens: MaxNewOpt = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (sampling only).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    tip: Annotated[bool, typer.Option("--tip", help="Apply the thought-switching penalty.")] = False,
    tip_words: Annotated[str, typer.Option("--tip-words", help="Comma-separated switch words.")] = "alternatively",
    tip_alpha: Annotated[float, typer.Option("--tip-alpha", help="TIP penalty α.")] = 3.0,
    tip_beta: Annotated[int, typer.Option("--tip-beta", help="TIP window β.")] = 600,
    steer: SteerOpt = None,
    instruction: InstrOpt = "auto",
    extractor: ExtractorOpt = None,
    batch_size: BatchOpt = 16,
    output: OutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Answer items (or --prompt questions) with optional TIP and steering; grade items that have answers."""

    prev = _start(verbose)
    from thinktune.progress import set_reporter

    try:
        with user_errors():
            import torch

            from thinktune.data.records import Record
            from thinktune.decoding.evaluate import EvalSet, run_variant, summarize
            from thinktune.decoding.tip import ThoughtSwitchPenalty, TipConfig
            from thinktune.errors import ThinktuneError
            from thinktune.formatting import DEFAULT_FORMAT
            from thinktune.generation import SamplingParams

            if (data is None) == (not prompt):
                raise ThinktuneError("give either --data FILE or one or more --prompt TEXT")
            m, tok, instr, extr, contract = _model(model, instruction, extractor)
            records = _records(data, n) if data else [Record(id=f"prompt-{i}", question=q, answer="")
                                                      for i, q in enumerate(prompt or [])]
            cfg = TipConfig(words=[w.strip() for w in tip_words.split(",") if w.strip()], alpha=tip_alpha, beta=tip_beta)
            procs = [ThoughtSwitchPenalty.from_config(tok, cfg)] if tip else []
            params = SamplingParams(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                    temperature=temperature or 1.0, top_p=top_p)
            torch.manual_seed(seed)
            fmt = contract.fmt if contract else DEFAULT_FORMAT
            es = EvalSet.build(tok, records, instr, contract.system if contract else None, fmt)
            rows = run_variant(m, tok, es, params, cfg.words, processors=procs, steer=_steer(steer, m), fmt=fmt,
                               extractor=extr, batch_size=batch_size, label="generate")
    finally:
        set_reporter(prev)
    if data:
        out.print(_variant_table(f"{model}: {len(rows)} items", {"tip" if tip else "plain": summarize(rows)}))
    else:
        for r in rows:
            out.print(f"[bold]{r['question']}[/]\n{r['completion']}\n", highlight=False)
    if output:
        from thinktune.io import atomic_write_text

        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        out.print(f"written: {output}")


@tip_app.command("compare")
def tip_compare_cmd(
    model: ModelArg,
    data: DataOpt,
    n: NOpt = 400,
    offset: Annotated[int, typer.Option(help="Skip the first OFFSET items (to extend an earlier run).")] = 0,
    words: WordsOpt = "alternatively",
    alpha: AlphaOpt = 3.0,
    beta: BetaOpt = 600,
    max_new_tokens: MaxNewOpt = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy; > 0 samples (plain and TIP re-drawn from one "
                                                    "seed on the selected items).")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (sampling only).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    instruction: InstrOpt = "auto",
    extractor: ExtractorOpt = None,
    batch_size: BatchOpt = 16,
    output: OutOpt = None,
    rows: Annotated[bool, typer.Option("--rows/--no-rows", help="Keep per-item rows in the JSON.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Decoding with and without TIP on the items where the plain model switches thoughts."""
    import time

    from thinktune.progress import set_reporter

    prev = _start(verbose)
    t0 = time.perf_counter()
    try:
        with user_errors():
            from thinktune.decoding.evaluate import EvalSet, compare_tip
            from thinktune.decoding.tip import TipConfig
            from thinktune.formatting import DEFAULT_FORMAT
            from thinktune.generation import SamplingParams

            m, tok, instr, extr, contract = _model(model, instruction, extractor)
            cfg = TipConfig(words=[w.strip() for w in words.split(",") if w.strip()], alpha=alpha, beta=beta)
            fmt = contract.fmt if contract else DEFAULT_FORMAT
            es = EvalSet.build(tok, _records(data, n, offset=offset), instr, contract.system if contract else None, fmt)
            params = SamplingParams(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                    temperature=temperature or 1.0, top_p=top_p)
            res = compare_tip(m, tok, es, cfg, params, fmt=fmt, extractor=extr, batch_size=batch_size, seed=seed)
    finally:
        set_reporter(prev)
    res.update(model=model, data=str(data), offset=offset, instruction=instr, extractor=extr,
               seconds=round(time.perf_counter() - t0, 1))
    out.print(_variant_table(f"TIP α={alpha} β={beta} on the {res['n_items_with_switch']} of {res['n_items']} items "
                             f"that switch ({', '.join(cfg.words)})",
                             {"selection run, all items": res["selection_run"]["all_items"],
                              "selection run, switching items": res["selection_run"]["switching_items"],
                              "switching items, plain": res["plain"], "switching items, TIP": res["with_tip"]}))
    if res["paired"]:
        p = res["paired"]
        ci = p["accuracy_change_ci95"]
        out.print(f"accuracy change {p['accuracy_change']:+.1%}" + (f" (95% CI {ci[0]:+.1%} … {ci[1]:+.1%})" if ci else "")
                  + f"; {p['changed_completions']} completions changed")
    if not rows:
        res.pop("rows")
    _write_json(output, res)


@steer_app.command("pairs")
def steer_pairs_cmd(
    model: ModelArg,
    data: DataOpt,
    output: Annotated[Path, typer.Option("--out", "-o", help="Pairs JSONL to write.")],
    n: NOpt = 64,
    max_new_tokens: MaxNewOpt = 256,
    instruction: InstrOpt = "auto",
    batch_size: BatchOpt = 16,
    concise: Annotated[str, typer.Option(help="Concise chain: calculator (GSM8K's <<a*b=c>> annotations) or "
                                              "reasoning (the item's own reasoning field).")] = "calculator",
    verbose: VerboseOpt = False,
) -> None:
    """Items → {question, concise chain, verbose (the model's own chain)} JSONL."""
    from thinktune.progress import set_reporter

    prev = _start(verbose)
    try:
        with user_errors():
            from thinktune.decoding.evaluate import CONCISE, steering_pairs
            from thinktune.errors import ThinktuneError
            from thinktune.generation import SamplingParams
            from thinktune.io import atomic_write_text

            if concise not in CONCISE:
                raise ThinktuneError(f"--concise: {concise!r} is not one of {', '.join(CONCISE)}")
            m, tok, instr, _, _ = _model(model, instruction, None)
            pairs = steering_pairs(m, tok, _records(data, n, strip_calculator=False),
                                   SamplingParams(max_new_tokens=max_new_tokens), instr, batch_size=batch_size,
                                   concise=concise)
            if not pairs:
                need = ("GSM8K solutions with calculator annotations (<<a*b=c>>)" if concise == "calculator"
                        else "a non-empty reasoning field")
                raise ThinktuneError(f"{data}: no pairs — the items need {need} and the model a non-empty chain "
                                     "for them")
            atomic_write_text(output, "".join(json.dumps(p.__dict__, ensure_ascii=False) + "\n" for p in pairs))
    finally:
        set_reporter(prev)
    out.print(f"written: {output} ({len(pairs)} pairs)")


@steer_app.command("extract")
def steer_extract_cmd(
    model: ModelArg,
    pairs: Annotated[Path, typer.Option("--pairs", help='JSONL of {"question", "concise", "verbose"}.')],
    output: Annotated[Path, typer.Option("--out", "-o", help="Vector file to write (safetensors).")],
    layer: Annotated[int | None, typer.Option(help="Index into hidden_states (default 0.7 × depth).")] = None,
    instruction: InstrOpt = "auto",
    batch_size: BatchOpt = 8,
    verbose: VerboseOpt = False,
) -> None:
    """v = mean last-token residual (concise − verbose) at LAYER, saved with its metadata."""
    from thinktune.progress import set_reporter

    prev = _start(verbose)
    try:
        with user_errors():
            from thinktune.decoding.steering import extract_steering_vector, read_pairs

            m, tok, instr, _, _ = _model(model, instruction, None)
            vec = extract_steering_vector(m, tok, read_pairs(pairs), layer, instr, batch_size=batch_size,
                                          meta={"model": model, "pairs_file": str(pairs)})
            vec.save(output)
    finally:
        set_reporter(prev)
    out.print(f"written: {output} (layer {vec.layer}, {vec.meta['n_pairs']} pairs, |v| = {vec.vector.norm():.3g}, "
              f"pair agreement {vec.meta['pair_cosine_mean']:.2f})")


@steer_app.command("sweep")
def steer_sweep_cmd(
    model: ModelArg,
    vector: Annotated[Path, typer.Argument(help="A vector written by `thinktune steer extract`.")],
    data: DataOpt,
    n: NOpt = 100,
    strengths: Annotated[str | None, typer.Option(help="Comma-separated strengths (default: from the calibrated "
                                                       "γ for δ: −γ, γ, 2γ).")] = None,
    delta: Annotated[float, typer.Option(help="KL bound δ (nats, mean next-token KL to the unsteered model).")] = 0.1,
    calib: Annotated[int, typer.Option(help="Baseline completions used for the KL calibration.")] = 16,
    max_new_tokens: MaxNewOpt = 256,
    instruction: InstrOpt = "auto",
    extractor: ExtractorOpt = None,
    batch_size: BatchOpt = 16,
    output: OutOpt = None,
    rows: Annotated[bool, typer.Option("--rows/--no-rows", help="Keep per-item rows in the JSON.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Reasoning length, accuracy and next-token KL per steering strength; checks the sign."""
    from rich.table import Table

    from thinktune.progress import set_reporter

    prev = _start(verbose)
    try:
        with user_errors():
            from thinktune.decoding.evaluate import EvalSet, steer_sweep
            from thinktune.decoding.steering import SteeringError, SteeringVector
            from thinktune.formatting import DEFAULT_FORMAT
            from thinktune.generation import SamplingParams

            vec = SteeringVector.load(vector)
            m, tok, instr, extr, contract = _model(model, instruction, extractor)
            vec.check(m)
            try:
                grid = [float(s) for s in strengths.split(",")] if strengths else None
            except ValueError:
                raise SteeringError(f"--strengths expects numbers separated by commas, got {strengths!r}") from None
            fmt = contract.fmt if contract else DEFAULT_FORMAT
            res = steer_sweep(m, tok, EvalSet.build(tok, _records(data, n), instr,
                                                    contract.system if contract else None, fmt), vec,
                              SamplingParams(max_new_tokens=max_new_tokens), grid, delta, calib, fmt=fmt,
                              extractor=extr, batch_size=batch_size)
    finally:
        set_reporter(prev)
    res["model"], res["data"] = model, str(data)
    t = Table(title=f"steering sweep: {vector} (layer {res['layer']}), {res['n_items']} items, δ = {delta}")
    for col in ("strength", "mean KL", "≤ δ", "mean tokens", "ratio", "at cap", "accuracy", "Δacc 95% CI"):
        t.add_column(col, justify="right")
    for r in res["sweep"]:
        ci = r.get("accuracy_change_ci95")
        t.add_row(f"{r['strength']:.4g}", f"{r['kl']:.4f}", "yes" if r["within_kl_bound"] else "no",
                  f"{r['mean_tokens']:.1f}", f"{r.get('length_ratio_of_means', 1.0):.2f}", f"{r['at_cap_rate']:.0%}",
                  "–" if r["accuracy"] is None else f"{r['accuracy']:.1%}",
                  f"{ci[0]:+.1%} … {ci[1]:+.1%}" if ci else "–")
    out.print(t)
    out.print(f"sign: {res['sign']}\n{res['verdict']}")
    if not rows:
        res.pop("rows")
    _write_json(output, res)


def serve_cmd(
    model: ModelArg,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    name: Annotated[str | None, typer.Option(help="Model id served (default: the directory name).")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests decoded together.")] = 8,
    max_tokens_cap: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = 2048,
    default_max_tokens: Annotated[int, typer.Option(help="max_tokens when a request sets none.")] = 512,
    max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt accepted, in tokens.")] = 4096,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1_000_000,
    max_queue: Annotated[int, typer.Option(help="Waiting requests before 503.")] = 256,
    instruction: Annotated[str, typer.Option("--instruction", help="auto (a thinktune model's prompt contract, "
                                                                   "else none) | none | default | text prepended to "
                                                                   "the first user message.")] = "auto",
    system: Annotated[str | None, typer.Option(help="System message when a request has none (default: the "
                                                    "model's prompt contract).")] = None,
    tip: Annotated[bool, typer.Option("--tip", help="TIP on by default (requests may turn it off).")] = False,
    tip_words: Annotated[str, typer.Option("--tip-words", help="Comma-separated switch words.")] = "alternatively",
    tip_alpha: Annotated[float, typer.Option("--tip-alpha", help="TIP penalty α.")] = 3.0,
    tip_beta: Annotated[int, typer.Option("--tip-beta", help="TIP window β.")] = 600,
    steer: Annotated[str | None, typer.Option("--steer", help="FILE:STRENGTH applied by default.")] = None,
    vectors: Annotated[list[Path] | None, typer.Option("--vector", help="Steering vectors requests may name "
                                                                        "(by file stem; repeatable).")] = None,
    graceful_timeout: Annotated[int, typer.Option(help="Seconds running requests get on shutdown.")] = 30,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="THINKTUNE_API_KEY", show_envvar=True,
        help="Require 'Authorization: Bearer KEY' on every request but GET /health (401 without).")] = None,
    allow_hosts: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="Also accept this Host header name (e.g. the DNS name of a public bind; '*' = any). "
                             "Repeatable.")] = None,
    allow_origins: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="Accept browser requests from this origin (e.g. https://app.example.com; '*' = any) "
                               "and send it CORS headers. Repeatable.")] = None,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client has to send its request headers.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client has to send its request body.")] = 30.0,
    max_connections: Annotated[int, typer.Option(help="Open connections before 503.")] = 1024,
    verbose: VerboseOpt = False,
) -> None:
    """Serve MODEL behind an OpenAI-compatible API (/v1/chat/completions, /v1/models) until Ctrl-C / SIGTERM.

    Only requests addressed to the bound address are served (Host / Origin checks); see docs/SECURITY.md before
    exposing it beyond this machine."""

    setup_logging(verbose)
    with user_errors():
        from thinktune.decoding.steering import SteeringVector, parse_steer_spec
        from thinktune.decoding.tip import TipConfig
        from thinktune.formatting import DEFAULT_FORMAT
        from thinktune.named_model import model_labels
        from thinktune.serve import ServeConfig, check_port, serve
        from thinktune.serve_guard import Policy

        check_port(host, port)  # before the model loads: a busy port is one line, at once
        m, tok, instr, _, contract = _model(model, instruction, None)
        if instruction == "auto" and contract is None:
            instr = None  # a model without a contract is served as it is
        loaded = {Path(v).stem: SteeringVector.load(v) for v in vectors or []}
        default_steer = None
        if steer:
            path, strength = parse_steer_spec(steer)
            loaded.setdefault(Path(path).stem, SteeringVector.load(path))
            default_steer = (Path(path).stem, strength)
        cfg = ServeConfig(
            model_name=name or model_labels([model])[0], max_tokens_cap=max_tokens_cap,
            default_max_tokens=min(default_max_tokens, max_tokens_cap), max_prompt_tokens=max_prompt_tokens,
            max_body_bytes=max_body_bytes, max_batch=max_batch, max_queue=max_queue,
            instruction=instr, system=system if system is not None else (contract.system if contract else None),
            fmt=contract.fmt if contract else DEFAULT_FORMAT,
            tip=TipConfig(words=[w.strip() for w in tip_words.split(",") if w.strip()], alpha=tip_alpha,
                          beta=tip_beta) if tip else None,
            steer=default_steer, header_timeout=header_timeout, body_timeout=body_timeout,
            max_connections=max_connections)
        policy = Policy(host, port, allow_hosts or (), allow_origins or (), api_key)
        console.print(f"serving [bold]{cfg.model_name}[/] on http://{host}:{port}/v1 "
                      f"(batch ≤ {max_batch}, max_tokens ≤ {max_tokens_cap}); Ctrl-C to stop", highlight=False)
        if not api_key and not policy.hosts <= {"localhost", "127.0.0.1", "::1"}:
            console.print("[bold yellow]warning[/] serving beyond this machine without --api-key: anyone who can "
                          "reach the port can generate (docs/SECURITY.md)", highlight=False)
        serve(m, tok, cfg, host, port, loaded, graceful_timeout, "info" if verbose else "warning", policy)
    console.print("server stopped")
