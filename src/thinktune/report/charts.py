"""Inline SVG charts for the HTML report: line charts, horizontal bars with intervals, vertical histograms.

Pure functions from numbers to markup (no plotting library, nothing fetched at view time). Every chart is an
``<svg viewBox=…>`` that scales to its container's width, so it never overflows a 390 px screen; legends are
HTML lists under the chart so they wrap instead of shrinking. Points carry ``<title>`` tooltips.

Used by :mod:`thinktune.report.build`; run through ``thinktune report RUN_DIR``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4d7c0f", "#64748b",
           "#b45309")
MAX_POINTS = 400  # per series; longer series are thinned by stride (keeps the file small for long runs)

W, H = 560, 240  # viewBox of a line chart
PAD_L, PAD_R, PAD_T, PAD_B = 58, 12, 10, 36


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    dashed: bool = False
    markers: bool = False  # draw a dot at every point (sparse series: held-out accuracy, curves on a grid)
    sizes: list[float] = field(default_factory=list)  # optional relative dot sizes (reliability bins: counts)


def fmt_num(v: float | None, digits: int = 3) -> str:
    """Short human number: 0.123, 12.3, 1.2e-05, 3.4k."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5:
        return f"{v:.3g}"
    if a >= 1000:
        return f"{v / 1000:.3g}k"
    if a < 1e-3:  # 8e-5, 1.5e-5: short enough for an axis
        mantissa, exponent = f"{v:.1e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{v:.{digits}g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points, evenly strided, always keeping the last."""
    pts = list(points)
    if len(pts) <= limit:
        return pts
    stride = math.ceil(len(pts) / limit)
    out = pts[::stride]
    if out[-1] != pts[-1]:
        out.append(pts[-1])
    return out


def legend(series: Sequence[Series], extra: str = "") -> str:
    items = "".join(
        f'<li><span class="sw{" dash" if s.dashed else ""}" style="--c:{s.color}"></span>{escape(s.name)}</li>'
        for s in series)
    return f'<ul class="legend">{items}{extra}</ul>'


def line_chart(series: Sequence[Series], title: str, x_label: str = "step", y_label: str = "",
               y_range: tuple[float | None, float | None] = (None, None), x_range: tuple[float, float] | None = None,
               diagonal: bool = False, note: str = "") -> str:
    """A line chart with axes, ticks and a legend; empty series are dropped; '' when nothing is left."""
    series = [Series(s.name, thin([(x, y) for x, y in s.points if _finite(x) and _finite(y)]), s.color, s.dashed,
                     s.markers, s.sizes) for s in series]
    series = [s for s in series if s.points]
    if not series:
        return ""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x0, x1 = x_range or (min(xs), max(xs))
    if x1 <= x0:
        x1 = x0 + 1
    y0 = y_range[0] if y_range[0] is not None else min(ys)
    y1 = y_range[1] if y_range[1] is not None else max(ys)
    if y1 <= y0:  # a flat series: open the range upwards when the bottom is fixed, else around the value
        pad = abs(y0) * 0.1 or 0.5
        y0, y1 = (y0, y0 + 2 * pad) if y_range[0] is not None else (y0 - pad, y1 + pad)
    yt = nice_ticks(y0, y1)
    y0, y1 = min(y0, yt[0]), max(y1, yt[-1])
    xt = [t for t in nice_ticks(x0, x1, 6) if x0 - 1e-9 <= t <= x1 + 1e-9]
    if all(float(x).is_integer() for x in xs):  # steps, k: no fractional ticks
        xt = [t for t in xt if float(t).is_integer()] or xt
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (y - y0) / (y1 - y0) * ph

    parts = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" class="plot"/>']
    for t in yt:
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
                     f'<text x="{PAD_L - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{fmt_num(t)}</text>')
    for t in xt:
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{PAD_T + ph}" y2="{PAD_T + ph + 4}" class="axis"/>'
                     f'<text x="{sx(t):.1f}" y="{PAD_T + ph + 16}" class="tick" text-anchor="middle">'
                     f"{fmt_num(t)}</text>")
    parts.append(f'<text x="{PAD_L + pw / 2:.1f}" y="{H - 2}" class="label" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    if diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        parts.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" class="diag"/>')
    for s in series:
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        if len(s.points) > 1:
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        if s.markers or len(s.points) == 1:
            biggest = max(s.sizes) if s.sizes else 1
            for j, (x, y) in enumerate(s.points):
                r = 2 + 4 * math.sqrt(s.sizes[j] / biggest) if s.sizes and biggest else 3
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r:.1f}" fill="{s.color}">'
                             f'<title>{escape(s.name)}: {fmt_num(x)}, {fmt_num(y)}</title></circle>')
    aria = escape(f"{title}: {y_label} by {x_label}")
    svg = f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{aria}">{"".join(parts)}</svg>'
    yl = f'<span class="ylabel">{escape(y_label)}</span>' if y_label else ""
    caption = f'<p class="note">{escape(note)}</p>' if note else ""
    return (f'<figure class="chart"><figcaption>{escape(title)}{yl}</figcaption>{svg}{legend(series)}'
            f"{caption}</figure>")


def bar_rows(rows: Sequence[tuple[str, float | None, tuple[float, float] | None, str]], title: str,
             x_range: tuple[float, float] = (0.0, 1.0), as_percent: bool = True, note: str = "") -> str:
    """Horizontal bars (label, value, optional 95 % interval, colour), one per row; '' when no value is known."""
    rows = [r for r in rows if r[1] is not None and _finite(r[1])]
    if not rows:
        return ""
    lo = min([x_range[0]] + [r[1] for r in rows])
    hi = max([x_range[1]] + [r[1] for r in rows] + [r[2][1] for r in rows if r[2]])
    if hi <= lo:
        hi = lo + 1
    row_h, label_w, val_w = 26, 150, 62
    width = W
    pw = width - label_w - val_w
    height = row_h * len(rows) + 8

    def sx(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) / (hi - lo) * pw

    parts = []
    for i, (label, value, ci, color) in enumerate(rows):
        y = 4 + i * row_h
        shown = f"{value:.1%}" if as_percent else fmt_num(value)
        ci_txt = f" (95% CI {ci[0]:.1%}–{ci[1]:.1%})" if ci and as_percent else (
            f" (95% CI {fmt_num(ci[0])}–{fmt_num(ci[1])})" if ci else "")
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" class="tick" text-anchor="end">{escape(short)}</text>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{pw}" height="{row_h - 8}" class="track"/>'
                     f'<rect x="{sx(lo):.1f}" y="{y + 4}" width="{max(0.0, sx(value) - sx(lo)):.1f}" '
                     f'height="{row_h - 8}" fill="{color}"><title>{escape(label)}: {shown}{ci_txt}</title></rect>')
        if ci:
            a, b = sx(ci[0]), sx(ci[1])
            parts.append(f'<path d="M{a:.1f} {y + 13}H{b:.1f}M{a:.1f} {y + 8}V{y + 18}M{b:.1f} {y + 8}V{y + 18}" '
                         f'class="whisker"/>')
        parts.append(f'<text x="{width - 4}" y="{y + 16}" class="val" text-anchor="end">{shown}</text>')
    svg = (f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>')
    caption = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{svg}{caption}</figure>'


def histogram(bins: Sequence[tuple[str, float]], title: str, color: str = PALETTE[0], unit: str = "") -> str:
    """Vertical bars over labelled bins (length histograms); '' when empty."""
    bins = [(k, v) for k, v in bins if v is not None]
    if not bins:
        return ""
    top = max(v for _, v in bins) or 1
    height = 190
    pw, ph = W - PAD_L - PAD_R, height - PAD_T - 44
    bw = pw / len(bins)
    parts = [f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{PAD_T + ph}" y2="{PAD_T + ph}" class="axis"/>']
    for t in nice_ticks(0, top, 3):
        y = PAD_T + ph - t / top * ph
        if t <= top:
            parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{fmt_num(t)}</text>')
    for i, (label, v) in enumerate(bins):
        h = v / top * ph
        x = PAD_L + i * bw
        parts.append(f'<rect x="{x + 2:.1f}" y="{PAD_T + ph - h:.1f}" width="{max(1.0, bw - 4):.1f}" height="{h:.1f}" '
                     f'fill="{color}"><title>{escape(label)}: {fmt_num(v)}</title></rect>')
        if len(bins) <= 14:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{PAD_T + ph + 14}" class="tick small" text-anchor="end" '
                         f'transform="rotate(-30 {x + bw / 2:.1f} {PAD_T + ph + 14})">{escape(label)}</text>')
    svg = f'<svg viewBox="0 0 {W} {height}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>'
    u = f'<span class="ylabel">{escape(unit)}</span>' if unit else ""
    return f'<figure class="chart"><figcaption>{escape(title)}{u}</figcaption>{svg}</figure>'


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
