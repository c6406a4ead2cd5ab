"""``docs/EVIDENCE.md`` from the committed run summaries alone (no run directories needed).

Per experiment: the claim, its source, the experiment file and base recipe with their hashes, one row per arm with
every metric as mean ± 95 % interval over seeds (Student t with n − 1 degrees of freedom; docs/ARCHITECTURE.md,
"Determinism and seeds": seeds are the unit of replication for a training effect, items are already averaged inside each
run), the criteria with the numbers they were decided on, and the verdict:

- **reproduced**: every criterion holds;
- **not reproduced**: all runs are in and some criterion fails; the experiment's ``if_not_reproduced`` note follows;
- **pending**: a run is missing (or its summary was made from a different recipe), or the experiment needs a
  stage this thinktune does not have yet.

A summary counts only when its ``recipe_hash`` equals the hash of the arm's recipe as the experiment file and base
recipe resolve *now* (for an arm with a decoding variant, extended by the variant's settings: spec.arm_hash), so a
number on the page always belongs to the recipe in the repository. The page is deterministic: same summaries and
files → byte-identical output.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from thinktune.errors import ThinktuneError
from thinktune.experiments.spec import Criterion, LoadedExperiment, arm_hash, file_hash
from thinktune.io import atomic_write_text

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    """Two-sided 95 % Student t quantile (table; conservative between entries, 1.96 beyond 30)."""
    if df in _T975:
        return _T975[df]
    bigger = [k for k in _T975 if k < df]
    return _T975[max(bigger)] if df <= 30 else 1.96


@dataclass
class Stat:
    """Mean over seeds with its 95 % t-interval (None when n < 2)."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def half_width(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        sd = math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))  # type: ignore[operator]
        return t_quantile(self.n - 1) * sd / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.mean is None:
            return None
        h = self.half_width or 0.0
        return (self.mean - h, self.mean + h)


@dataclass
class CriterionResult:
    criterion: Criterion
    holds: bool | None  # None: not enough data
    diff: float | None
    detail: str


@dataclass
class ExperimentResult:
    exp: LoadedExperiment
    stats: dict[str, dict[str, Stat]]  # arm -> metric -> Stat
    runs: dict[str, list[str]]  # arm -> summary files used
    expected_seeds: list[int]
    stale: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # decoding variants that could not run
    criteria: list[CriterionResult] = field(default_factory=list)
    verdict: str = "pending"  # reproduced | not reproduced | pending
    why_pending: str = ""
    computed_seconds: float = 0.0  # stages these summaries computed themselves (shared ones counted where computed)


def load_summaries(exp: LoadedExperiment, results: Path, reduced: bool = False) -> ExperimentResult:
    seeds = (exp.spec.reduced_seeds or exp.spec.seeds[:1]) if reduced else exp.spec.seeds
    stats: dict[str, dict[str, Stat]] = {a: {m.name: Stat([]) for m in exp.spec.metrics} for a in exp.spec.arms}
    runs: dict[str, list[str]] = {a: [] for a in exp.spec.arms}
    res = ExperimentResult(exp, stats, runs, list(seeds))
    if not exp.recipe_path().is_file():
        res.why_pending = f"its base recipe {exp.spec.recipe} is not in this checkout"
        return res
    if missing := exp.missing_requirements():
        res.why_pending = (f"needs recipe field(s) {', '.join(missing)}, which this thinktune does not have yet"
                           + (f" — {exp.spec.requires_note.strip()}" if exp.spec.requires_note.strip() else ""))
        return res
    for arm in exp.spec.arms:
        for seed in seeds:
            path = results / exp.name / f"{arm}-s{seed}.json"
            if not path.exists():
                continue
            try:
                summary = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ThinktuneError(f"{path}: corrupt summary ({e}); delete it and re-run the arm") from None
            want = arm_hash(exp, arm, seed, reduced)
            if summary.get("recipe_hash") != want or bool(summary.get("reduced")) != reduced:
                res.stale.append(path.name)
                continue
            runs[arm].append(f"{exp.name}/{path.name}")
            res.computed_seconds += sum(float(st.get("seconds") or 0.0) for st in summary.get("stages", {}).values()
                                        if not st.get("shared_from"))
            if summary.get("variant_error"):
                res.errors.append(f"{arm}-s{seed}: {summary['variant_error']}")
            for m in exp.spec.metrics:
                v = (summary.get("metrics", {}).get(m.name) or {}).get("value")
                if isinstance(v, (int, float)):
                    stats[arm][m.name].values.append(float(v) * m.scale)
    return res


def evaluate(res: ExperimentResult) -> ExperimentResult:
    if res.why_pending:
        return res
    n_expected = len(res.expected_seeds)
    have = sum(len(v) for v in res.runs.values())
    total = n_expected * len(res.exp.spec.arms)
    if have < total:
        res.why_pending = f"{have} of {total} runs have a current summary"
        if res.stale:
            res.why_pending += f" ({len(res.stale)} made from an older recipe ignored)"
    scale = {m.name: m.scale for m in res.exp.spec.metrics}
    for c in res.exp.spec.criteria:
        a, b = res.stats[c.a][c.metric], res.stats[c.b][c.metric]
        if a.n < n_expected or b.n < n_expected:
            res.criteria.append(CriterionResult(c, None, None, f"values for {a.n} / {b.n} of {n_expected} seeds"))
            continue
        diff = a.mean - b.mean  # type: ignore[operator]
        min_diff, tol = c.min_diff * scale[c.metric], c.tolerance * scale[c.metric]
        ia, ib = a.interval, b.interval
        if c.test == "similar":
            holds = abs(diff) <= tol
        else:
            sign = 1 if c.test == "greater" else -1
            holds = sign * diff > min_diff
            if c.separated:
                holds = holds and (ia[0] > ib[1] if sign > 0 else ia[1] < ib[0])  # type: ignore[index]
        res.criteria.append(CriterionResult(c, holds, diff, f"difference {diff:+.4g}"))
    if res.why_pending or any(r.holds is None for r in res.criteria):
        res.verdict = "pending"
        res.why_pending = res.why_pending or "a metric is missing from some runs" + (
            f" ({'; '.join(sorted(set(e.split(': ', 1)[1] for e in res.errors)))})" if res.errors else "")
    else:
        res.verdict = "reproduced" if all(r.holds for r in res.criteria) else "not reproduced"
    return res


# ----------------------------------------------------------------------------------------------------------------
# Markdown


def _cell(s: Stat, fmt: str) -> str:
    if s.mean is None:
        return "–"
    h = s.half_width
    text = format(s.mean, fmt) + (f" ± {format(h, fmt)}" if h is not None else "")
    return text + (f" (n={s.n})" if s.n else "")


def _overrides_text(exp: LoadedExperiment, arm: str) -> str:
    spec = exp.spec.arms[arm]
    parts = [f"`{k}={json.dumps(v)}`" for k, v in spec.overrides.items()]  # type: ignore[union-attr]
    if spec.tip is not None:  # type: ignore[union-attr]
        parts.append(f"TIP α={spec.tip.alpha:g} β={spec.tip.beta}")  # type: ignore[union-attr]
    if spec.steer is not None:  # type: ignore[union-attr]
        parts.append(f"steering `{spec.steer.vector}` × {spec.steer.strength:g}")  # type: ignore[union-attr]
    return ", ".join(parts) or "(base)"


_BADGE = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced", "pending": "⏳ pending"}


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "–"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def render(results: list[ExperimentResult], results_dir: str, reduced: bool = False) -> str:
    lines = ["# Evidence: thinktune measured on known effects", "",
             "<!-- generated by `thinktune experiments table` from the summaries under "
             f"{results_dir}/ and the files under experiments/; do not edit by hand -->", "",
             "Each experiment reproduces one published effect at small scale on CPU (issue 9). Numbers are means over "
             "seeds ± the half-width of a 95 % Student-t interval (n = number of seeds with a value); every number "
             f"comes from a summary under `{results_dir}/<experiment>/<arm>-s<seed>.json` whose recipe hash matches "
             "the experiment file and base recipe in this repository. Regenerate with "
             "`thinktune experiments table`; run with `thinktune experiments run NAME` (or `--all`).", ""]
    if reduced:
        lines += ["> **Reduced (CI) runs**: tiny models and few steps; these numbers test the pipeline, not the "
                  "effect.", ""]
    lines += ["| experiment | verdict | runs | compute |", "|---|---|---|---|"]
    for r in results:
        n = sum(len(v) for v in r.runs.values())
        lines.append(f"| [{r.exp.name}](#{r.exp.name.lower()}) | {_BADGE[r.verdict]} | "
                     f"{n} / {len(r.expected_seeds) * len(r.exp.spec.arms)} | {_duration(r.computed_seconds)} |")
    total = sum(r.computed_seconds for r in results)
    lines += ["", f"Compute: every stage these summaries ran themselves, each counted once (a stage taken from an "
              f"earlier run counts where it was computed), adds up to **{_duration(total)}**, measured on the "
              "machines named in the summaries (one thread per run, timings under whatever load the machine had). "
              "A fresh `thinktune experiments run --all` computes the same stages once each: with `--jobs 1` this "
              "is its expected wall time, with `--jobs 2` on two cores about half.", ""]
    for r in results:
        e, spec = r.exp, r.exp.spec
        exp_file = f"experiments/{e.path.name}"
        lines += [f"## {e.name}", "", f"**Verdict: {_BADGE[r.verdict]}**"
                  + (f" — {r.why_pending}" if r.verdict == "pending" else ""), "",
                  f"**Claim.** {spec.claim.strip()}", "", f"**Source.** {spec.source.strip()}", "",
                  f"**Recipe.** `{exp_file}` (sha256 `{file_hash(e.path)}`) on `{spec.recipe}` "
                  f"(sha256 `{file_hash(e.recipe_path()) if e.recipe_path().is_file() else 'missing'}`); "
                  f"seeds {', '.join(map(str, r.expected_seeds))}.", ""]
        if spec.overrides:
            lines += ["Common overrides: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in spec.overrides.items()), ""]
        if spec.cost:
            lines += [f"**Cost.** {spec.cost.strip()}", ""]
        head = ["arm", "overrides", *[m.name for m in spec.metrics]]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm in spec.arms:
            cells = [f"`{arm}`", _overrides_text(e, arm)] + [_cell(r.stats[arm][m.name], m.fmt) for m in spec.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("**Criteria** (all must hold):")
        lines.append("")
        by_crit = {id(c.criterion): c for c in r.criteria}
        scales = {m.name: m.scale for m in spec.metrics}
        for c in spec.criteria:
            cr = by_crit.get(id(c))
            mark = "–" if cr is None or cr.holds is None else ("✓" if cr.holds else "✗")
            detail = f" — {cr.detail}" if cr is not None else ""
            lines.append(f"- {mark} {c.describe(scales[c.metric])}{detail}")
        lines.append("")
        if r.verdict == "not reproduced":
            reason = spec.if_not_reproduced.strip() or "(no note given in the experiment file)"
            lines += [f"**Likely reason at this scale.** {reason}", ""]
        if r.stale:
            lines += [f"Ignored (made from an older recipe): {', '.join(sorted(r.stale))}", ""]
        used = [f"`{x}`" for arm in spec.arms for x in r.runs[arm]]
        if used:
            lines += ["Summaries: " + ", ".join(used), ""]
    return "\n".join(lines).rstrip() + "\n"


def build_table(exps: list[LoadedExperiment], results: Path, output: Path | None, reduced: bool = False,
                results_label: str | None = None) -> tuple[str, list[ExperimentResult]]:
    evaluated = [evaluate(load_summaries(e, results, reduced)) for e in exps]
    text = render(evaluated, results_label or str(results), reduced)
    if output is not None:
        atomic_write_text(output, text)
    return text, evaluated
