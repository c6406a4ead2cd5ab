"""The audit section: every audited model of every run side by side (docs/METHODS.md, "What the audit reports").

A table of the headline numbers (with bootstrap / Wilson 95 % intervals where the audit computed them, and the
change from the run's previous model), then charts: pass@k, the early-answering curve with its AOC, the filler
curve, the inserted-mistakes curve, the answer NLL through the chain (information gain), the reliability diagram,
sensitivity and abstention bars, reasoning length, underthinking and accuracy by difficulty; finally the audit's
paired comparisons (audit/comparison.json).

Dataset curves are means of per-item curves read from examples.jsonl, each item's curve linearly interpolated on a
fixed grid of chain fractions (0, 0.1, …, 1). With linear interpolation the area over the mean curve equals the mean
of the per-item AOCs (the number in the table) up to the grid's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thinktune.report.charts import Series, bar_rows, fmt_num, line_chart
from thinktune.report.diagnose import get
from thinktune.report.markup import Ctx, Model, esc, fmt, num, section, table

GRID = [i / 10 for i in range(11)]

# (label, path in audit.json, kind, direction that is better (+1 up, -1 down, 0 neither), path of its 95 % interval)
METRICS: list[tuple[str, tuple[str, ...], str, int, tuple[str, ...] | None]] = [
    ("accuracy", ("accuracy",), "pct", 1, ("accuracy_ci95",)),
    ("format compliance", ("format_rate",), "pct", 1, None),
    ("no answer", ("no_answer_rate",), "pct", -1, None),
    ("answer without reasoning", ("answer_without_reasoning_rate",), "pct", -1, None),
    ("maj@n (sampled)", ("sampling", "maj@n"), "pct", 1, None),
    ("early-answering AOC", ("faithfulness", "early_answering", "aoc"), "num", 1, ("faithfulness", "ci95", "aoc")),
    ("AOC, continuous", ("faithfulness", "early_answering", "aoc_continuous"), "num", 1, None),
    ("truncation-sensitive", ("faithfulness", "early_answering", "truncation_sensitive"), "pct", 1,
     ("faithfulness", "ci95", "truncation_sensitive")),
    ("answer decided at (chain fraction)", ("faithfulness", "early_answering", "decided_at"), "num", 0, None),
    ("no-CoT agreement (chance-corrected)", ("faithfulness", "early_answering", "no_cot_agreement_chance_corrected"),
     "num", -1, None),
    ("filler-sensitive", ("faithfulness", "filler", "sensitive"), "pct", 1,
     ("faithfulness", "ci95", "filler_sensitive")),
    ("paraphrase-invariant", ("faithfulness", "paraphrase", "invariant"), "pct", 1, None),
    ("inserted-mistakes AOC", ("faithfulness", "mistakes", "aoc"), "num", 1, ("faithfulness", "ci95", "mistakes_aoc")),
    ("InfoGain per step (nats)", ("info_gain", "info_gain"), "num", 1, ("info_gain", "ci95", "info_gain")),
    ("steps with IG ≤ 0", ("info_gain", "frac_steps_nonpositive"), "pct", -1, None),
    ("ECE", ("calibration", "ece"), "num", -1, ("calibration", "ci95", "ece")),
    ("Brier", ("calibration", "brier"), "num", -1, ("calibration", "ci95", "brier")),
    ("abstention recall", ("abstention", "recall"), "pct", 1, ("abstention", "ci95", "recall")),
    ("abstention precision", ("abstention", "precision"), "pct", 1, None),
    ("abstention F1", ("abstention", "f1"), "pct", 1, ("abstention", "ci95", "f1")),
    ("reasoning tokens (mean)", ("reasoning_tokens", "mean"), "num", 0, None),
    ("completion tokens (mean)", ("mean_completion_tokens",), "num", 0, None),
    ("repetition", ("repetition",), "num", -1, None),
    ("language mixing", ("language_mix",), "pct", -1, None),
    ("thought switches (wrong answers)", ("thought_switches", "incorrect"), "num", 0, None),
    ("underthinking ξ", ("underthinking",), "num", -1, None),
]


def interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation, constant beyond the ends; xs ascending."""
    if x <= xs[0]:
        return ys[0]
    for j in range(1, len(xs)):
        if x <= xs[j]:
            x0, x1 = xs[j - 1], xs[j]
            return ys[j] if x1 == x0 else ys[j - 1] + (ys[j] - ys[j - 1]) * (x - x0) / (x1 - x0)
    return ys[-1]


def mean_curve(curves: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[tuple[float, float]]:
    """Mean over items of per-item curves (xs, ys), each interpolated on GRID; [] without curves."""
    curves = [(xs, ys) for xs, ys in curves if len(xs) == len(ys) and xs]
    if not curves:
        return []
    return [(g, sum(interp(xs, ys, g) for xs, ys in curves) / len(curves)) for g in GRID]


def _metric_rows(ctx: Ctx) -> list[list[str]]:
    rows = []
    ks = sorted({k for m in ctx.models for k in (get(m.agg, "sampling", "pass@k") or {})}, key=lambda k: int(k))
    added = {name: spec for m in ctx.models for name, spec in (m.agg.get("metrics") or {}).items()}
    extra = [(s["label"], ("metrics", n, "mean"), s["kind"], s["better"], ("metrics", n, "ci95"))
             for n, s in added.items()]  # metrics added by name (audit/metrics.py), last
    for label, path, kind, better, ci_path in METRICS + extra:
        if path == ("sampling", "maj@n"):  # pass@k for every k any model has, before maj@n
            rows += [[f"pass@{esc(k)} (sampled)"] + [fmt(get(m.agg, "sampling", "pass@k", k), "pct")
                                                      for m in ctx.models] for k in ks]
        vals = [get(m.agg, *path) for m in ctx.models]
        if all(num(v) is None for v in vals):
            continue
        cells = [esc(label)]
        for j, m in enumerate(ctx.models):
            v = num(vals[j])
            cell = fmt(v, kind)
            ci = get(m.agg, *ci_path) if ci_path else None
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(num(x) is not None for x in ci):
                cell += f'<span class="ci">[{fmt(ci[0], kind)}, {fmt(ci[1], kind)}]</span>'
            prev = _previous(ctx, m)
            pv = num(get(prev.agg, *path)) if prev else None
            if v is not None and pv is not None and abs(v - pv) > 1e-12:
                d = v - pv
                cls = "" if better == 0 else ("up" if d * better > 0 else "down")
                shown = f"{d * 100:+.1f} pt" if kind == "pct" else f"{d:+.3g}"
                cell += f'<span class="ci {cls}" title="change from {esc(prev.stage)}">{shown}</span>'
            cells.append(cell)
        rows.append(cells)
    return rows


def _previous(ctx: Ctx, m: Model) -> Model | None:
    same = ctx.models_of(m.run_index)
    i = same.index(m)
    return same[i - 1] if i > 0 else None


def audit_section(ctx: Ctx) -> str:
    if not ctx.models:
        return ""
    out = []
    n_items = {m.label: get(m.agg, "n") for m in ctx.models}
    out.append('<p class="note">Each model answers the same held-out items greedily; brackets are 95% intervals '
               "(Wilson for accuracy, bootstrap over items elsewhere); the small line under a value is its change "
               "from the run's previous model (green = better). Items per model: "
               + esc(", ".join(f"{k} {fmt(v)}" for k, v in n_items.items())) + ".</p>")
    heads = ["metric"] + [esc(m.label) for m in ctx.models]
    out.append(table(heads, _metric_rows(ctx), numeric=list(range(1, len(ctx.models) + 1)), cls="metrics"))
    charts = [c for c in (_pass_at_k(ctx), _early_answering(ctx), _filler_curve(ctx), _mistakes(ctx), _nll(ctx),
                          _reliability(ctx), *_bars(ctx), _lengths(ctx), _difficulty(ctx)) if c]
    if charts:
        out.append(f'<div class="grid">{"".join(charts)}</div>')
    out.append(_paired(ctx))
    return section("audit", "Reasoning audit", "".join(out))


def _series(ctx: Ctx, points_of, **kw) -> list[Series]:
    out = []
    for m in ctx.models:
        pts, name = points_of(m)
        if pts:
            out.append(Series(name or m.label, pts, m.color, **kw))
    return out


def _pass_at_k(ctx: Ctx) -> str:
    def pts(m: Model):
        pk = get(m.agg, "sampling", "pass@k") or {}
        return sorted((float(k), float(v)) for k, v in pk.items() if num(v) is not None), None

    s = _series(ctx, pts, markers=True)
    if not s or all(len(x.points) < 2 for x in s):
        return ""
    return line_chart(s, "pass@k (unbiased, sampled)", "k", "pass@k", (0.0, 1.0))


def _early_answering(ctx: Ctx) -> str:
    def pts(m: Model):
        curves = []
        for r in m.rows:
            ea = get(r, "faithfulness", "early_answering")
            if isinstance(ea, dict) and ea.get("ks") and ea["ks"][-1]:
                n = ea["ks"][-1]
                curves.append(([k / n for k in ea["ks"]], [float(v) for v in ea["same"]]))
        aoc = get(m.agg, "faithfulness", "early_answering", "aoc")
        return mean_curve(curves), f"{m.label} (AOC {fmt_num(num(aoc))})"

    s = _series(ctx, pts, markers=True)
    return line_chart(s, "early answering: final answer kept after a prefix of the chain", "fraction of the chain "
                      "shown", "share = final answer", (0.0, 1.0), (0.0, 1.0),
                      note="Lanham et al. test A. A curve that is high from the start means the answer did not need "
                           "the reasoning (low AOC).") if s else ""


def _filler_curve(ctx: Ctx) -> str:
    def pts(m: Model):
        by = get(m.agg, "faithfulness", "filler", "accuracy_by_length") or {}
        return sorted((float(k), float(v)) for k, v in by.items() if num(v) is not None and _isnum(k)), None

    s = _series(ctx, pts, markers=True)
    if not s or all(len(x.points) < 2 for x in s):
        return ""
    return line_chart(s, "filler instead of reasoning: accuracy", "filler length / chain length", "accuracy",
                      (0.0, 1.0), note="Lanham et al. test D: accuracy when the chain is replaced by filler tokens.")


def _mistakes(ctx: Ctx) -> str:
    def pts(m: Model):
        curves = []
        for r in m.rows:
            mi = get(r, "faithfulness", "mistakes")
            ea = get(r, "faithfulness", "early_answering")
            n = ea["ks"][-1] if isinstance(ea, dict) and ea.get("ks") else None
            if isinstance(mi, dict) and mi.get("js") and n:
                curves.append(([j / n for j in mi["js"]] + [1.0], [float(v) for v in mi["same"]] + [1.0]))
        return mean_curve(curves), f"{m.label} (AOC {fmt_num(num(get(m.agg, 'faithfulness', 'mistakes', 'aoc')))})"

    s = _series(ctx, pts)
    return line_chart(s, "inserted mistakes: final answer kept", "position of the corrupted step", "share = final",
                      (0.0, 1.0), (0.0, 1.0), note="Lanham et al. test B: a step's number is changed and the model "
                      "continues; a faithful chain changes its answer.") if s else ""


def _nll(ctx: Ctx) -> str:
    def pts(m: Model):
        curves = []
        for r in m.rows:
            nll = get(r, "info_gain", "nll")
            if isinstance(nll, list) and len(nll) >= 2 and all(num(v) is not None for v in nll):
                n = len(nll) - 1
                curves.append(([k / n for k in range(n + 1)], [float(v) for v in nll]))
        ig = num(get(m.agg, "info_gain", "info_gain"))
        return mean_curve(curves), f"{m.label} (InfoGain {fmt_num(ig)})"

    s = _series(ctx, pts)
    return line_chart(s, "information gain: gold-answer NLL through the chain", "fraction of the chain shown",
                      "nats / answer token", (0.0, None), (0.0, 1.0),
                      note="InfoGain (arXiv 2506.02126): each step should lower the NLL of the gold answer; a flat "
                           "curve means the steps carry no information.") if s else ""


def _reliability(ctx: Ctx) -> str:
    def pts(m: Model):
        bins = [b for b in get(m.agg, "calibration", "reliability") or [] if b.get("n")]
        return ([(float(b["confidence"]), float(b["accuracy"])) for b in bins],
                f"{m.label} (ECE {fmt_num(num(get(m.agg, 'calibration', 'ece')))})")

    series = []
    for m in ctx.models:
        p, name = pts(m)
        if p:
            sizes = [float(b["n"]) for b in get(m.agg, "calibration", "reliability") if b.get("n")]
            series.append(Series(name, p, m.color, markers=True, sizes=sizes))
    return line_chart(series, "reliability diagram", "confidence (answer probability)", "accuracy", (0.0, 1.0),
                      (0.0, 1.0), diagonal=True, note="Dot size = items in the bin; the dashed diagonal is perfect "
                      "calibration.") if series else ""


def _bars(ctx: Ctx) -> list[str]:
    out = []
    for title, path, pct_ in (("filler-sensitive", ("faithfulness", "filler", "sensitive"), True),
                              ("paraphrase-invariant", ("faithfulness", "paraphrase", "invariant"), True),
                              ("abstention recall", ("abstention", "recall"), True),
                              ("abstention F1", ("abstention", "f1"), True),
                              ("underthinking ξ", ("underthinking",), False)):
        rows = [(m.label, num(get(m.agg, *path)), None, m.color) for m in ctx.models]
        if sum(v is not None for _, v, _, _ in rows) and any(v for _, v, _, _ in rows):
            out.append(bar_rows(rows, title, (0.0, 1.0), as_percent=pct_))
    return out


def _lengths(ctx: Ctx) -> str:
    def pts(m: Model):
        vals = sorted(float(r["reasoning_tokens"]) for r in m.rows if num(r.get("reasoning_tokens")) is not None
                      and r.get("answerable", True))
        if not vals or vals[-1] == 0:
            return [], None
        n = len(vals)
        return [(v, (i + 1) / n) for i, v in enumerate(vals)], None

    s = _series(ctx, pts)
    return line_chart(s, "reasoning length (cumulative)", "reasoning tokens", "share of items ≤ x", (0.0, 1.0)) \
        if s else ""


def _difficulty(ctx: Ctx) -> str:
    def pts(m: Model):
        by = m.agg.get("accuracy_by_difficulty") or {}
        return sorted((float(k), float(v)) for k, v in by.items() if _isnum(k) and num(v) is not None), None

    s = _series(ctx, pts, markers=True)
    if not s or all(len(x.points) < 2 for x in s):
        return ""
    return line_chart(s, "accuracy by difficulty", "difficulty (task's own scale)", "accuracy", (0.0, 1.0))


def _paired(ctx: Ctx) -> str:
    out = []
    for i, run in enumerate(ctx.runs):
        comp = run.comparison
        if not isinstance(comp, dict) or not comp.get("paired"):
            continue
        rows = []
        for model, diffs in comp["paired"].items():
            for metric, d in (diffs or {}).items():
                ci = d.get("ci95")
                ci_txt = f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else "–"
                sig = isinstance(ci, list) and len(ci) == 2 and (ci[0] > 0 or ci[1] < 0)
                rows.append([esc(model), esc(metric), fmt(d.get("delta")), esc(ci_txt) + (" *" if sig else ""),
                             fmt(d.get("n"))])
        who = f"{esc(ctx.names[i])}: " if ctx.multi else ""
        out.append(f"<h3>{who}paired differences against {esc(comp.get('reference'))}</h3>"
                   + table(["model", "metric", "mean difference", "95% CI", "items"], rows, numeric=[2, 4])
                   + '<p class="note">Per-item differences on the items both models have a value for; * = the '
                     "interval excludes 0.</p>")
    return "".join(out)


def _isnum(k: Any) -> bool:
    try:
        float(k)
        return True
    except (TypeError, ValueError):
        return False
