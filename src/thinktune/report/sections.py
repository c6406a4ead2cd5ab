"""Report sections about the run itself: warnings, summary, data, training curves, reward-hack probes.

Each function takes the report context (markup.Ctx) and returns the section's HTML, or '' when no run has the
data for it (the section is then omitted). The audit comparison lives in auditview.py, the sample browser in
samples.py.
"""

from __future__ import annotations

import json
from typing import Any

from thinktune.report.charts import (
    PALETTE,
    Series,
    bar_rows,
    fmt_num,
    histogram,
    line_chart,
)
from thinktune.report.diagnose import Finding, get
from thinktune.report.load import TRAINING_STAGES, RunData
from thinktune.report.markup import (
    Ctx,
    esc,
    fmt,
    kpis,
    kv_table,
    num,
    pct,
    section,
    table,
)

STATS_ROWS = 20_000  # records read to compute data statistics a run did not store


# --------------------------------------------------------------------------------------------------------------
# Warnings


def warnings_section(ctx: Ctx, findings: list[Finding]) -> str:
    warn = [f for f in findings if f.level == "warn"]
    info = [f for f in findings if f.level != "warn"]
    parts = []
    for f in warn + info:
        who = f"{esc(f.run)}: " if ctx.multi else ""
        parts.append(f'<div class="alert {"info" if f.level != "warn" else "warn"}" data-kind="{esc(f.kind)}">'
                     f"<b>{who}{esc(f.title)}</b>{esc(f.detail)}</div>")
    if not warn:
        parts.insert(0, '<div class="alert ok" data-kind="none"><b>No known failure pattern found</b>Checked: accuracy '
                        "up while faithfulness or information gain fell; abstention recall fell; training reward up "
                        "while held-out accuracy was not; zero-variance GRPO groups; failing reward functions."
                        "</div>")
    return f'<div class="warnings" id="warnings">{"".join(parts)}</div>'


# --------------------------------------------------------------------------------------------------------------
# Summary


def _accuracy(run: RunData) -> dict[str, float | None]:
    if run.audits:
        return {s: num(a.agg.get("accuracy")) for s, a in run.audits.items()}
    models = get(run.results, "models") or {}
    return {s: num(m.get("accuracy")) for s, m in models.items() if isinstance(m, dict)}


def _result_text(result: Any) -> str:
    """A stage's manifest result on one line: ``steps=160; train_loss=1.77; sft (accuracy=0.5, aoc=0.49)``."""
    def short(v: Any) -> str:
        if isinstance(v, dict):
            return "(" + ", ".join(f"{a}={short(b)}" for a, b in v.items() if b is not None) + ")"
        return fmt_num(v) if isinstance(v, float) else str(v)

    if not isinstance(result, dict):
        return ""
    return esc("; ".join(f"{k} {short(v)}" if isinstance(v, dict) else f"{k}={short(v)}"
                         for k, v in result.items() if v is not None))


def summary_section(ctx: Ctx) -> str:
    out = []
    for i, run in enumerate(ctx.runs):
        m = run.manifest
        stages = {s: r for s, r in m.get("stages", {}).items()  # not the report stage writing this very file
                  if s != "report" or r.get("status") == "complete"}
        acc = _accuracy(run)
        best = max(((s, a) for s, a in acc.items() if a is not None), key=lambda t: t[1], default=None)
        total = sum(num(r.get("seconds")) or 0 for r in stages.values())
        items = [("run", esc(ctx.names[i])),
                 ("best held-out accuracy", f"{pct(best[1])} <small>({esc(best[0])})</small>" if best else "–"),
                 ("held-out items", fmt(get(run.results, "eval_items"))),
                 ("stages complete", f"{sum(r.get('status') == 'complete' for r in stages.values())}/{len(stages)}"),
                 ("stage time", f"{total:,.0f} s")]
        if ctx.multi:
            out.append(f"<h3>{esc(ctx.names[i])}</h3>")
        out.append(kpis(items))
        rows = [[esc(s), _status(r.get("status")), fmt(r.get("seconds")), _result_text(r.get("result"))]
                for s, r in stages.items()]
        out.append(table(["stage", "status", "seconds", "result"], rows, numeric=[2], cls="wrap"))
        hw = m.get("hardware") or {}
        versions = m.get("versions") or {}
        facts = [("recipe hash", esc(m.get("recipe_hash", "–"))), ("created", esc(m.get("created", "–"))),
                 ("directory", f"<code>{esc(run.root)}</code>")]
        facts += [(k, esc(v)) for k, v in hw.items() if v is not None]
        facts += [(k, esc(v)) for k, v in versions.items()]
        out.append(f"<details><summary>hardware and versions</summary>{kv_table(facts)}</details>")
        if run.recipe is not None:
            import yaml

            from thinktune.config import resolved_dict

            text = yaml.safe_dump(resolved_dict(run.recipe), sort_keys=False)
            out.append(f"<details><summary>resolved recipe</summary><pre>{esc(text)}</pre></details>")
    if ctx.models:
        rows = [(mo.label, num(mo.agg.get("accuracy")), _ci(mo.agg.get("accuracy_ci95")), mo.color)
                for mo in ctx.models]
        out.append(f'<div class="grid">{bar_rows(rows, "held-out accuracy (greedy, 95% Wilson interval)")}</div>')
    return section("summary", "Run summary" if not ctx.multi else "Runs", "".join(out))


def _status(status: Any) -> str:
    cls = {"complete": "b-ok", "running": "b-unguarded", "failed": "b-viol"}.get(str(status), "b-none")
    return f'<span class="badge {cls}">{esc(status or "?")}</span>'


def _ci(v: Any) -> tuple[float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(num(x) is not None for x in v):
        return float(v[0]), float(v[1])
    return None


# --------------------------------------------------------------------------------------------------------------
# Data


def data_section(ctx: Ctx) -> str:
    out = []
    for i, run in enumerate(ctx.runs):
        stats = run.stats
        if not stats:
            continue
        if ctx.multi:
            out.append(f"<h3>{esc(ctx.names[i])}</h3>")
        scalars = [(k, v) for k, v in stats.items() if not isinstance(v, (dict, list))]
        out.append(kpis([(k.replace("_", " "), fmt(v) if not isinstance(v, str) else esc(v)) for k, v in scalars]))
        by_task = stats.get("train_by_task")
        if isinstance(by_task, dict) and len(by_task) > 1:
            out.append(table(["task", "training records"], [[esc(k), fmt(v)] for k, v in by_task.items()], [1]))
        cur = stats.get("curate")
        if isinstance(cur, dict) and cur.get("removed"):
            rows = [[esc(k), fmt(v.get("removed")),
                     esc(", ".join(f"{a}: {b}" for a, b in (v.get("reasons") or {}).items()))]
                    for k, v in cur["removed"].items()]
            out.append(f"<h4>curation: {fmt(cur.get('seen'))} seen, {fmt(cur.get('kept'))} kept</h4>")
            out.append(table(["filter", "removed", "reasons"], rows, [1]))
        mix = stats.get("mix")
        if isinstance(mix, dict):
            out.append(f"<details><summary>mix</summary><pre>{esc(json.dumps(mix, indent=1))}</pre></details>")
        train_stats = stats.get("train_stats") or _computed_stats(run)
        if train_stats:
            unit = train_stats.get("length_unit", "")
            charts = []
            for key, title in (("question_length", "question length"), ("completion_length", "completion length"),
                               ("reasoning_steps", "reasoning steps")):
                h = train_stats.get(key) or {}
                if h.get("bins"):
                    label = f"{title} ({unit})" if key != "reasoning_steps" else title
                    charts.append(histogram(list(h["bins"].items()), f"training {label}: mean {fmt(h.get('mean'))}, "
                                            f"p90 {fmt(h.get('p90'))}", PALETTE[i % len(PALETTE)], "records"))
            formats = train_stats.get("answer_formats") or {}
            if formats:
                charts.append(histogram(list(formats.items()), "gold answer formats", PALETTE[(i + 2) % len(PALETTE)],
                                        "records"))
            if train_stats.get("computed_by_report"):
                out.append(f'<p class="note">Distributions computed by the report from the first '
                           f"{fmt(train_stats['count'])} training records (the run did not store them).</p>")
            out.append(f'<div class="grid">{"".join(charts)}</div>')
    return section("data", "Data", "".join(out))


def _computed_stats(run: RunData) -> dict[str, Any] | None:
    path = run.root / "data" / "train.jsonl"
    if not path.is_file():
        return None
    from thinktune.data.records import Record
    from thinktune.data.stats import compute_stats
    from thinktune.report.load import read_jsonl

    records = []
    for row in read_jsonl(path, run.problems, limit=STATS_ROWS):
        try:
            records.append(Record.model_validate(row))
        except ValueError:
            continue
    if not records:
        return None
    return {**compute_stats(records), "computed_by_report": True}


# --------------------------------------------------------------------------------------------------------------
# Training curves

CURVES: list[tuple[str, list[str], str, tuple[float | None, float | None]]] = [  # (title, keys, y label, y range)
    ("loss", ["loss", "eval_loss"], "", (None, None)),  # eval_loss: held-out completion loss (sft.eval_loss_every)
    ("reward (total and per function)", ["reward", "rewards/*/mean"], "mean over completions", (None, None)),
    ("held-out accuracy (periodic greedy eval)", ["eval_accuracy"], "accuracy", (0.0, 1.0)),
    ("KL to the reference", ["kl"], "", (None, None)),
    ("entropy", ["entropy"], "nats / token", (None, None)),
    ("completion length", ["completions/mean_length", "completions/mean_terminated_length"], "tokens", (0.0, None)),
    ("truncated completions", ["completions/clipped_ratio"], "share", (0.0, 1.0)),
    ("clip ratios", ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"], "share", (0.0, None)),
    ("zero-variance groups", ["frac_reward_zero_std"], "share of groups", (0.0, 1.0)),
    ("token accuracy", ["mean_token_accuracy"], "share", (0.0, 1.0)),
    ("gradient norm", ["grad_norm"], "", (0.0, None)),
    ("learning rate", ["learning_rate"], "", (0.0, None)),
]
EFFECTIVE_KEYS = ("learning_rate", "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps",
                  "num_generations", "loss_type", "scale_rewards", "beta", "epsilon", "epsilon_high", "temperature",
                  "max_completion_length", "max_length", "max_steps", "num_train_epochs", "warmup_steps", "seed",
                  "report_to")


def _expand(keys: list[str], rows: list[dict[str, Any]]) -> list[str]:
    present = {k for r in rows for k in r}
    out = []
    for k in keys:
        if "*" in k:
            a, b = k.split("*")
            out += sorted(p for p in present if p.startswith(a) and p.endswith(b) and "/" not in p[len(a):-len(b)])
        elif k in present:
            out.append(k)
    return out


def _short(key: str) -> str:
    if key.startswith("rewards/"):
        return key.split("/")[1]
    return key.split("/")[-1].replace("_mean", "").replace("mean_", "")


def training_section(ctx: Ctx) -> str:
    out = []
    for stage in TRAINING_STAGES:
        have = [(i, run) for i, run in enumerate(ctx.runs) if run.metrics.get(stage)]
        if not have:
            continue
        charts = []
        for title, keys, ylabel, yr in CURVES:
            series = []
            for i, run in have:
                rows = run.metrics[stage]
                for j, key in enumerate(_expand(keys, rows)):
                    pts = [(float(r["step"]), float(r[key])) for r in rows
                           if num(r.get(key)) is not None and num(r.get("step")) is not None]
                    name = (f"{ctx.names[i]} · " if ctx.multi else "") + _short(key)
                    color = ctx.run_color(i) if ctx.multi else PALETTE[j % len(PALETTE)]
                    series.append(Series(name, pts, color, dashed=ctx.multi and j > 0, markers=key.startswith("eval_")))
            if series:
                charts.append(line_chart(series, title, "step", ylabel, yr))
        out.append(f"<h3>{esc(stage)}</h3><div class=\"grid\">{''.join(c for c in charts if c)}</div>")
        rows = []
        for key in EFFECTIVE_KEYS:
            vals = [run.effective.get(stage, {}).get(key) for _, run in have]
            if any(v is not None for v in vals):
                rows.append([esc(key)] + [esc(json.dumps(v)) if isinstance(v, (list, dict)) else fmt(v) for v in vals])
        if rows:
            heads = ["effective TRL setting"] + [esc(ctx.names[i]) for i, _ in have]
            out.append(f"<details><summary>effective {esc(stage)} settings (TRL defaults included)</summary>"
                       f"{table(heads, rows)}</details>")
    return section("training", "Training", "".join(out))


# --------------------------------------------------------------------------------------------------------------
# Reward-hack probes


def probes_section(ctx: Ctx) -> str:
    out = []
    for i, run in enumerate(ctx.runs):
        rep = run.probes
        if not isinstance(rep, dict) or not rep.get("rows"):
            continue
        names = rep.get("rewards") or []
        weights = rep.get("weights") or []
        head = ", ".join(f"{n}×{fmt(w)}" for n, w in zip(names, weights))
        title = (f"{esc(ctx.names[i])}: " if ctx.multi else "") + f"rewards {esc(head)}; {fmt(rep.get('items'))} items"
        out.append(f"<h3>{title}</h3>")
        rows = [["honest correct", "", fmt(rep.get("honest_correct"))] + [""] * len(names) + ["reference"],
                ["honest wrong", "", fmt(rep.get("honest_wrong"))] + [""] * len(names) + ["reference"]]
        badge = {"ok": "b-ok", "VIOLATION": "b-viol", "error": "b-viol", "unguarded": "b-unguarded"}
        for r in rep["rows"]:
            status = str(r.get("status", "?"))
            rows.append([esc(r.get("probe")), esc(f"{r.get('rule')} ({r.get('tag')})"), fmt(r.get("mean_total"))]
                        + [fmt((r.get("per_reward") or {}).get(n)) for n in names]
                        + [f'<span class="badge {badge.get(status, "b-none")}">{esc(status)}</span>'])
        out.append(table(["probe", "rule", "total"] + [esc(n) for n in names] + ["status"], rows,
                         numeric=list(range(2, 3 + len(names)))))
        viol = rep.get("violations") or []
        if viol:
            out.append(f'<p class="down"><b>{len(viol)} violation(s)</b>: a probe out-earned the honest reference '
                       "— the policy can learn it.</p>")
        for note in (rep.get("notes") or [])[:8]:
            out.append(f'<p class="note">{esc(note)}</p>')
    if not out:
        return ""
    intro = ('<p class="note">Adversarial completions built from training items and scored with the run\'s GRPO '
             "rewards by the GRPO stage before it trained (rewards/probes.py). Rule A: a probe that does not name the "
             "gold uniquely earns no more than the honest wrong answer; rule B: a probe that breaks format or "
             "reasoning earns less than the honest correct one. <i>unguarded</i>: no reward defends that property.</p>")
    return section("probes", "Reward-hack probes", intro + "".join(out))
