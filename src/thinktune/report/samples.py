"""The sample browser: question, reasoning, answer, rewards and verdict per model, as the run stored them.

- ``choose_ids``: at most ``per_model`` held-out items, evenly spread over the audit's item order; every model of
  a run shows the same items so they can be compared one by one.
- Rewards: a held-out sample shows the GRPO reward scores the audit stage stored with it (``examples.jsonl``
  ``rewards``); a GRPO training completion the scores the GRPO stage logged (``completions/step-N.jsonl``). The
  report scores nothing itself.
- ``samples_section``: server-rendered cards (readable and printable without JavaScript); the page's one script
  filters them by model, verdict and text.

Long texts are clipped (``TEXT_LIMIT``) so a run of giant completions still fits the report's size budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thinktune.report.markup import Ctx, clip, esc, fmt, section

TEXT_LIMIT = 4000  # characters of a reasoning / completion shown per sample
ROLLOUTS_PER_RUN = 48  # GRPO training completions shown per run
VERDICTS = ("correct", "wrong", "abstained", "none", "ungraded")


def choose_ids(rows: list[dict[str, Any]], per_model: int) -> list[str]:
    ids = [str(r.get("id")) for r in rows]
    if len(ids) <= per_model:
        return ids
    return [ids[round(j * (len(ids) - 1) / max(1, per_model - 1))] for j in range(per_model)]


def find_records(path: Path, wanted: set[str]) -> dict[str, Any]:
    """Records (canonical JSONL) whose id is in ``wanted``; stops reading once all are found."""
    from thinktune.data.records import Record

    found: dict[str, Any] = {}
    if not path.is_file() or not wanted:
        return found
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and str(row.get("id")) in wanted:
                try:
                    found[str(row["id"])] = Record.model_validate(row)
                except ValueError:
                    continue
                if len(found) == len(wanted):
                    break
    return found


def verdict(row: dict[str, Any]) -> str:
    if row.get("answerable") is False:
        return "abstained" if row.get("abstained") else "wrong"
    if row.get("answer") is None and row.get("correct") is not True:
        return "none"
    if row.get("correct") is True:
        return "correct"
    if row.get("abstained"):
        return "abstained"
    return "wrong" if row.get("correct") is False else "ungraded"


def _reasoning(row: dict[str, Any], fmt_cfg) -> str | None:
    from thinktune.formatting import parse_completion

    text = row.get("completion")
    if not isinstance(text, str) or fmt_cfg is None:
        return None
    parsed = parse_completion(text, fmt_cfg)
    return parsed.reasoning if parsed.well_formed else None


def _card(row: dict[str, Any], rewards: dict[str, Any] | None, fmt_cfg, extra: str = "", is_open: bool = False) -> str:
    v = verdict(row) if "correct" in row else _rollout_verdict(rewards)
    label = {"none": "no answer", "wrong": "wrong" if row.get("answerable", True) else "answered (should abstain)"
             }.get(v, v)
    q = str(row.get("question") or "")
    parts = [f"<dt>question</dt><dd>{esc(clip(q, TEXT_LIMIT))}</dd>"]
    if row.get("gold") is not None:
        parts.append(f"<dt>gold</dt><dd>{esc(row['gold'])}</dd>")
    reasoning = _reasoning(row, fmt_cfg)
    if reasoning is not None:
        parts.append(f"<dt>reasoning</dt><dd><pre>{esc(clip(reasoning, TEXT_LIMIT))}</pre></dd>")
    else:
        parts.append(f"<dt>completion</dt><dd><pre>{esc(clip(str(row.get('completion') or ''), TEXT_LIMIT))}</pre>"
                     "</dd>")
    if "answer" in row:
        parts.append(f"<dt>answer</dt><dd>{esc(row['answer']) if row['answer'] is not None else '<i>none</i>'}</dd>")
    if rewards:
        chips = "".join(f'<span class="chip">{esc(k)} {esc(fmt(v) if not isinstance(v, str) else v)}</span>'
                        for k, v in rewards.items())
        parts.append(f'<dt>rewards</dt><dd><div class="chips">{chips}</div></dd>')
    facts = [f"{fmt(row[k])} {k.replace('_', ' ')}" for k in ("completion_tokens", "n_steps") if k in row]
    if "well_formed" in row:
        facts.append("well-formed" if row["well_formed"] else "not well-formed")
    if extra:
        facts.insert(0, extra)
    if facts:
        parts.append(f"<dt>details</dt><dd>{esc(' · '.join(facts))}</dd>")
    ans = ""
    if row.get("answer") is not None or row.get("gold") is not None:
        ans = f'<span class="ans">{esc(str(row.get("answer"))[:40]) if row.get("answer") is not None else "–"}'
        ans += f" / gold {esc(str(row.get('gold'))[:40])}</span>" if row.get("gold") is not None else "</span>"
    return (f'<details class="sample" data-verdict="{v}"{" open" if is_open else ""}><summary>'
            f'<span class="badge b-{v}">{esc(label)}</span><span class="q">{esc(q[:300])}</span>{ans}'
            f'<span class="id">{esc(row.get("id", ""))}</span></summary><dl>{"".join(parts)}</dl></details>')


def _stored_rewards(row: dict[str, Any]) -> dict[str, Any] | None:
    rewards = row.get("rewards")
    return rewards if isinstance(rewards, dict) else None


def _rollout_verdict(rewards: dict[str, Any] | None) -> str:
    c = (rewards or {}).get("correct")
    if isinstance(c, (int, float)):
        return "correct" if c > 0 else "wrong"
    return "ungraded"


def _fmt_of(run) -> Any:
    return run.recipe.format.completion_format() if run.recipe is not None else None


def samples_section(ctx: Ctx, per_model: int, limit: int | None = None) -> str:
    """The browser over ``choose_ids(rows, per_model)`` of every model, thinned to ``limit`` per model if given."""
    limit = per_model if limit is None else min(limit, per_model)
    panels, options = [], []
    for i, run in enumerate(ctx.runs):
        fmt_cfg = _fmt_of(run)
        for m in ctx.models_of(i):
            ids = choose_ids([{"id": x} for x in choose_ids(m.rows, per_model)], limit)  # a subset of the scored
            by_id = {str(r.get("id")): r for r in m.rows}
            cards = [_card(by_id[x], _stored_rewards(by_id[x]), fmt_cfg, is_open=j == 0) for j, x in enumerate(ids)
                     if x in by_id]
            if not cards:
                continue
            options.append(m.label)
            panels.append(f'<div class="sb-panel" data-model="{esc(m.label)}"><h3>{esc(m.label)} — {len(cards)} of '
                          f"{len(m.rows)} held-out items</h3>{''.join(cards)}</div>")
        if run.rollouts:
            label = (f"{ctx.names[i]}/" if ctx.multi else "") + "grpo rollouts (training)"
            k = min(ROLLOUTS_PER_RUN, limit, len(run.rollouts))  # by position: ids repeat within a GRPO group
            chosen = [run.rollouts[round(j * (len(run.rollouts) - 1) / max(1, k - 1))] for j in range(k)]
            questions = find_records(run.root / "data" / "train.jsonl", {str(r.get("id")) for r in chosen})
            cards = []
            for r in chosen:
                rec = questions.get(str(r.get("id")))
                row = {"id": r.get("id"), "completion": r.get("completion"),
                       "question": rec.question if rec else "(question not found in data/train.jsonl)",
                       "gold": rec.answer if rec else None}
                cards.append(_card(row, r.get("rewards") if isinstance(r.get("rewards"), dict) else None, fmt_cfg,
                                   extra=f"step {r.get('step')}"))
            options.append(label)
            panels.append(f'<div class="sb-panel" data-model="{esc(label)}"><h3>{esc(label)} — {len(cards)} '
                          f"completions from steps {esc(_steps(chosen))}</h3>{''.join(cards)}</div>")
    if not panels:
        return ""
    default = ctx.models[-1].label if ctx.models else options[0]
    opts = '<option value="*">all models</option>' + "".join(
        f'<option value="{esc(o)}"{" selected" if o == default else ""}>{esc(o)}</option>' for o in options)
    vopts = '<option value="all">any verdict</option>' + "".join(
        f'<option value="{v}">{"no answer" if v == "none" else v}</option>' for v in VERDICTS)
    controls = (f'<div class="sb-controls"><select id="sb-model" aria-label="model">{opts}</select>'
                f'<select id="sb-verdict" aria-label="verdict">{vopts}</select>'
                '<input id="sb-q" type="search" placeholder="search question, reasoning, answer, id" '
                'aria-label="search"><span id="sb-count" class="muted"></span></div>')
    note = (f'<p class="note">Up to {limit} held-out items per model, evenly spread over the audit\'s items (the '
            "same items for every model of a run); rewards are the run's GRPO rewards, scored by the audit stage. "
            f"Texts longer than {TEXT_LIMIT:,} characters are clipped.</p>")
    return section("samples", "Samples", note + controls + "".join(panels))


def _steps(rows: list[dict[str, Any]]) -> str:
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    return ", ".join(str(s) for s in steps) or "?"
