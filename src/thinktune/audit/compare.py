"""Several models side by side on the same items: paired differences, and the audit of named models.

- :func:`compare`: paired differences of every model against the first one, on the items both have a value for,
  with bootstrap 95 % intervals (written as ``comparison.json`` by the audit stage and ``thinktune audit``).
- :func:`audit_models`: the reasoning audit (audit/battery.py) of models named on the command line — stage
  directories, saved transformers models, cached hub ids or ``smollm2`` — on one data file, optionally with decoding
  variants (TIP, steering) audited next to each model. Writes ``OUT/<label>/audit.json`` + ``examples.jsonl`` per
  model (and variant) and ``OUT/comparison.json`` for several.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from thinktune.audit.battery import (
    AuditError,
    audit_model,
    check_records,
    check_tokenizer,
    headline,
    lookup,
    with_unanswerable,
    write_audit,
)
from thinktune.audit.outcomes import bootstrap_ci
from thinktune.config import AuditStage
from thinktune.io import atomic_write_json

_PAIRED = (  # (name, per-row value)
    ("accuracy", lambda r: None if r["correct"] is None else float(r["correct"])),
    ("aoc", lambda r: lookup(r, ("faithfulness", "early_answering", "aoc"))),
    ("filler_sensitive", lambda r: _f(lookup(r, ("faithfulness", "filler", "sensitive")))),
    ("info_gain", lambda r: lookup(r, ("info_gain", "info_gain"))),
    ("abstained", lambda r: None if r["answerable"] else float(r["abstained"])),
)


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def compare(audits: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], n_boot: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """Paired differences of every model against the first one, on the items both have a value for."""
    names = list(audits)
    base_rows = {r["id"]: r for r in audits[names[0]][1]}
    out: dict[str, Any] = {"reference": names[0], "models": {n: headline(a) for n, (a, _) in audits.items()},
                           "paired": {}}
    for name in names[1:]:
        rows = {r["id"]: r for r in audits[name][1]}
        diffs = {}
        for metric, get in _PAIRED:
            d = [get(rows[i]) - get(base_rows[i]) for i in base_rows if i in rows
                 if get(rows[i]) is not None and get(base_rows[i]) is not None]
            if d:
                diffs[metric] = {"n": len(d), "delta": sum(d) / len(d), "ci95": bootstrap_ci(d, n_boot, seed)}
        out["paired"][name] = diffs
    return out


class Variant(Protocol):
    """A decoding intervention audited next to each model (thinktune.decoding.variants.Variant)."""

    suffix: str

    def describe(self) -> dict[str, str]: ...

    def applied(self, model, tokenizer): ...


def audit_models(models: Sequence[str], data: Path, out: Path, cfg: AuditStage, *, instruction: str = "auto",
                 system: str | None = None, extractor: str | None = None, plain_prompt: bool = False, seed: int = 0,
                 max_items: int | None = None,
                 variants: Sequence[Variant] = ()) -> tuple[dict[str, tuple[dict, list]], dict | None]:
    """Audit each named model (and each variant of it) on the records of ``data``; returns (audits, comparison).

    ``instruction``: ``auto`` (a thinktune model's own prompt contract, thinktune's format instruction for any
    other model), ``none``, ``default`` or the text itself; ``system`` defaults to the contract's system message and
    the completion format is the contract's. ``extractor`` defaults to ``answer_tag`` for a thinktune model or a
    model prompted without an instruction and ``auto`` otherwise. The sampling seed is ``seed`` for every model.
    """
    import torch

    from thinktune.data.records import read_records
    from thinktune.formatting import DEFAULT_FORMAT, resolve_instruction
    from thinktune.named_model import model_labels, resolve_model

    if not data.is_file():
        raise AuditError(f"--data {data}: file not found")
    records = read_records(data)
    if max_items:
        records = records[:max_items]
    records, variant_counts = with_unanswerable(records, cfg)
    check_records(records, str(data))
    audits: dict[str, tuple[dict, list]] = {}
    for spec, label in zip(models, model_labels(list(models))):
        named = resolve_model(spec)
        model, tok = named.load()
        check_tokenizer(tok, label, plain_prompt)
        contract = named.prompt
        instr = resolve_instruction(instruction, contract)
        sys_msg = system if system is not None else (contract.system if contract else None)
        fmt = contract.fmt if contract else DEFAULT_FORMAT
        default_extractor = "answer_tag" if contract is not None or instr is None else "auto"
        model_cfg = cfg.model_copy(update={"extractor": extractor or default_extractor, "sampling_seed": seed})

        def audit(processors, label=label, model=model, tok=tok, instr=instr, model_cfg=model_cfg, spec=spec,
                  sys_msg=sys_msg, fmt=fmt):
            torch.manual_seed(seed)
            return audit_model(model, tok, records, model_cfg, fmt, instr, sys_msg, label=label, seed=seed,
                               model_path=None if spec == "smollm2" else spec, logits_processors=processors)

        results = [("", audit(()), None)]
        for variant in variants:
            with variant.applied(model, tok) as processors:
                results.append((variant.suffix, audit(processors), variant.describe()))
        for suffix, (agg, rows), intervention in results:
            agg["source"] = {"model": spec, "data": str(data), "instruction": instr, "extractor": model_cfg.extractor,
                             "intervention": intervention}
            if variant_counts:
                agg["unanswerable_variants"] = variant_counts
            write_audit(out / (label + suffix), agg, rows)
            audits[label + suffix] = (agg, rows)
        del model
    comparison = compare(audits, cfg.bootstrap, seed) if len(audits) > 1 else None
    if comparison:
        atomic_write_json(out / "comparison.json", comparison)
    return audits, comparison


def audit_config(**settings: Any) -> AuditStage:
    """An :class:`AuditStage` from command-line settings; invalid values raise :class:`AuditError` naming them."""
    from pydantic import ValidationError

    try:
        return AuditStage(**settings)
    except ValidationError as e:
        raise AuditError("invalid audit options: " + "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
