"""Small HTML helpers shared by the report's sections: safe text, number formats, tables, the model context.

Text from a run (questions, completions of an untrained model, file paths) is escaped here and only here; control
characters become their visible Unicode pictures (U+2400…) so a garbage completion cannot break the document, and
lone surrogates are replaced so the file always encodes as UTF-8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from thinktune.report.charts import PALETTE, fmt_num
from thinktune.report.load import RunData

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def esc(value: Any) -> str:
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    text = _CTRL.sub(lambda m: chr(0x2400 + ord(m.group())) if m.group() != "\x7f" else "\u2421", text)
    return escape(text)


def clip(text: str | None, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a note of how much was left out."""
    text = text or ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters not included in the report)"


def num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def pct(v: Any, digits: int = 1) -> str:
    x = num(v)
    return "–" if x is None else f"{x:.{digits}%}"


def fmt(v: Any, kind: str = "num") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "pct":
        return pct(v)
    x = num(v)
    if x is None:
        return "–" if v is None else esc(v)
    if kind == "int" or (float(x).is_integer() and abs(x) >= 1):
        return f"{int(x):,}"
    return fmt_num(x)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table wrapped for horizontal scrolling on narrow screens; cells are HTML (escape them before)."""
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in rows)
    c = f' class="{cls}"' if cls else ""
    return f'<div class="tw"><table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def kv_table(pairs: Sequence[tuple[str, str]]) -> str:
    return table(["", ""], [[esc(k), v] for k, v in pairs]).replace("<thead><tr><th></th><th></th></tr></thead>", "")


def kpis(items: Sequence[tuple[str, str]]) -> str:
    """Key numbers as tiles; ``v`` is HTML. Long values (names, sources) get a smaller font."""
    def tile(k: str, v: str) -> str:
        small = " s" if len(re.sub(r"<[^>]+>", "", v)) > 9 else ""
        return f'<div class="kpi"><div class="v{small}">{v}</div><div class="k">{esc(k)}</div></div>'

    return '<div class="kpis">' + "".join(tile(k, v) for k, v in items) + "</div>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section class="card" id="{anchor}"><h2>{esc(title)}</h2>{body}</section>' if body else ""


@dataclass
class Model:
    run_index: int
    run: RunData
    stage: str
    label: str
    color: str
    agg: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass
class Ctx:
    """The runs of one report, with a unique display name per run and a label and colour per audited model."""

    runs: list[RunData]
    names: list[str] = field(default_factory=list)  # unique run names
    models: list[Model] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    def run_color(self, i: int) -> str:
        return PALETTE[i % len(PALETTE)]

    def models_of(self, i: int) -> list[Model]:
        return [m for m in self.models if m.run_index == i]


def make_ctx(runs: list[RunData]) -> Ctx:
    ctx = Ctx(runs)
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        ctx.names.append(run.name if seen[run.name] == 1 else f"{run.name}#{seen[run.name]}")
    k = 0
    for i, run in enumerate(runs):
        for stage, audit in run.audits.items():
            label = f"{ctx.names[i]}/{stage}" if len(runs) > 1 else stage
            ctx.models.append(Model(i, run, stage, label, PALETTE[k % len(PALETTE)], audit.agg, audit.rows))
            k += 1
    return ctx
