"""The experiment file format (``experiments/NN_name.yaml``), pydantic-validated like recipes.

An experiment reproduces one published effect at small scale: a base recipe, arms that override it, seeds, the
metrics read from each run, and a reproduction criterion evaluated over the seeds::

    claim: Chain-of-thought SFT beats answer-only SFT on multi-step chains, more so on longer chains.
    source: Wei et al. 2022, arXiv 2201.11903
    recipe: recipes/quickstart.yaml          # path relative to the repository root
    overrides: {grpo: null}                  # applied to every arm
    arms:
      cot: {}
      answer_only: {sft.answer_only: true}
    seeds: [0, 1, 2]
    metrics:
      - {name: accuracy, path: accuracy, ci: accuracy_ci95}
      - {name: acc_7ops, path: accuracy_by_difficulty.7}
    criteria:
      - {metric: accuracy, a: cot, b: answer_only, test: greater, separated: true}
    reduced: {sft.max_steps: 10}             # CI: overrides on top of every arm
    cost: "measured …"                        # hand-written cost estimate
    if_not_reproduced: "…"                    # the likely reason at this scale, shown when the verdict says so

Arm overrides are dotted keys exactly as on the ``thinktune run`` command line (``grpo: null`` drops a stage).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from thinktune.config import (
    Recipe,
    apply_overrides,
    as_first_released,
    check_inputs,
    fingerprint,
    format_validation_error,
    resolved_dict,
)
from thinktune.errors import RecipeError
from thinktune.safe_yaml import load_yaml_file

EXPERIMENTS_DIR = "experiments"
RESULTS_DIR = "experiments/results"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MetricSpec(_Strict):
    """One number read from each finished run.

    ``source: audit`` reads ``audit/<model>/audit.json`` (``audit-tip/<model>/`` in an arm with ``tip``);
    ``source: result`` reads ``manifest.json`` → ``stages.<stage>.result``; ``source: metrics`` averages ``path``
    over the last ``last`` records of ``<stage>/metrics.jsonl`` that have it (e.g. GRPO's ``kl``).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")  # column name in EVIDENCE.md
    source: Literal["audit", "result", "metrics"] = "audit"
    path: str = Field(min_length=1)  # dotted path into the source, e.g. faithfulness.early_answering.aoc
    model: str = "last"  # audited model (base, sft, dpo, grpo) or "last" = the arm's last model stage
    ci: str | None = None  # dotted path of the per-run [lo, hi] 95 % interval in the same file (kept in the summary)
    stage: str | None = None  # result / metrics: which stage (default: the arm's last model stage)
    last: PositiveInt = 5  # metrics: average over this many of the last records
    scale: float = 1.0  # multiply before display (e.g. 100 for percentages)
    fmt: str = ".3f"  # display format of means and intervals


class Criterion(_Strict):
    """``a`` vs ``b`` on ``metric``, over seeds: greater (mean_a − mean_b > min_diff), less (mean_a − mean_b <
    −min_diff) or similar (|mean_a − mean_b| ≤ tolerance). ``separated`` additionally requires the two seed
    intervals not to overlap (greater / less only)."""

    metric: str
    a: str  # arm name
    b: str  # arm name
    test: Literal["greater", "less", "similar"]
    min_diff: float = 0.0
    tolerance: float = 0.05  # similar only
    separated: bool = False

    def describe(self, scale: float = 1.0) -> str:
        """The criterion in the units the table shows (``scale`` of its metric)."""
        if self.test == "similar":
            return f"|{self.metric}({self.a}) − {self.metric}({self.b})| ≤ {self.tolerance * scale:g}"
        op = ">" if self.test == "greater" else "<"
        sign = "" if self.test == "greater" else "−"
        diff = f" {sign}{self.min_diff * scale:g}" if self.min_diff else ""
        sep = ", intervals over seeds not overlapping" if self.separated else ""
        return f"{self.metric}({self.a}) − {self.metric}({self.b}) {op}{diff or ' 0'}{sep}"


class TipSpec(_Strict):
    """Audit the arm's last model again with the thought-switching penalty (decoding/tip.py) into ``audit-tip/``."""

    alpha: float = Field(3.0, ge=0.0)
    beta: PositiveInt = 600
    words: list[str] | None = None


class SteerSpec(_Strict):
    """Audit the arm's last model again with an activation-steering vector (decoding/steering.py, ASC) into
    ``audit-steer/``. ``vector`` is a file written by ``thinktune steer extract``, relative to the repository root;
    its sha256 is part of the arm's hash, so a new vector makes the arm's old summaries stale."""

    vector: str = Field(min_length=1)
    strength: float


class ArmSpec(_Strict):
    """One arm: overrides of the base recipe, plus at most one decoding-time variant audited after the run."""

    overrides: dict[str, Any] = Field(default_factory=dict)
    tip: TipSpec | None = None
    steer: SteerSpec | None = None

    @model_validator(mode="after")
    def _one_variant(self) -> ArmSpec:
        if self.tip is not None and self.steer is not None:
            raise ValueError("an arm has at most one decoding variant (tip or steer); make two arms")
        return self

    @property
    def variant(self) -> str | None:
        """``"tip"``, ``"steer"`` or None: the variant audited into ``audit-<variant>/``."""
        return "tip" if self.tip is not None else "steer" if self.steer is not None else None


class Experiment(_Strict):
    claim: str = Field(min_length=1)
    source: str = Field(min_length=1)  # the paper (arXiv id) and the docs/METHODS.md section
    recipe: str  # base recipe path, relative to the repository root (or absolute)
    overrides: dict[str, Any] = Field(default_factory=dict)  # applied to every arm
    arms: dict[str, ArmSpec | dict[str, Any]]
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    metrics: list[MetricSpec] = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=1)  # all must hold for "reproduced"
    reduced: dict[str, Any] = Field(default_factory=dict)  # CI overrides on top of every arm
    reduced_seeds: list[NonNegativeInt] | None = None  # default: the first seed
    cost: str = ""  # measured / estimated cost, shown in EVIDENCE.md
    if_not_reproduced: str = ""  # the likely reason at this scale (shown when not reproduced)
    requires: list[str] = Field(default_factory=list)  # recipe fields it needs (dpo, data.x); missing → pending
    requires_note: str = ""  # why, shown while pending

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        arms = {}
        for name, arm in self.arms.items():
            if not name or not all(c.isalnum() or c in "_-." for c in name):
                raise ValueError(f"arm name {name!r}: use letters, digits, _, - and .")
            if isinstance(arm, dict) and set(arm) & {"overrides", "tip", "steer"}:  # meant as an ArmSpec
                try:
                    arm = ArmSpec.model_validate(arm)
                except ValidationError as e:
                    first = e.errors()[0]
                    where = ".".join(str(x) for x in first["loc"])
                    raise ValueError(f"arms.{name}{'.' + where if where else ''}: "
                                     f"{first['msg'].removeprefix('Value error, ')}") from None
            arms[name] = arm if isinstance(arm, ArmSpec) else ArmSpec(overrides=arm)
        self.arms = arms
        if len(self.arms) < 2:
            raise ValueError("arms: an experiment compares at least two arms")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics: duplicate names {sorted({n for n in names if names.count(n) > 1})}")
        for i, c in enumerate(self.criteria):
            for key in ("a", "b"):
                arm = getattr(c, key)
                if arm not in self.arms:
                    close = difflib.get_close_matches(arm, list(self.arms), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; arms are {', '.join(self.arms)}"
                    raise ValueError(f"criteria.{i}.{key}: unknown arm {arm!r}{hint}")
            if c.metric not in names:
                raise ValueError(f"criteria.{i}.metric: unknown metric {c.metric!r}; metrics are {', '.join(names)}")
        return self


def _overrides(mapping: dict[str, Any]) -> list[str]:
    """Dotted-key mapping → ``key=value`` override strings (values as JSON, which is YAML)."""
    return [f"{k}={json.dumps(v)}" for k, v in mapping.items()]


class LoadedExperiment:
    """A validated experiment with its name (file stem), path and repository root."""

    def __init__(self, path: Path, spec: Experiment, root: Path):
        self.path, self.spec, self.root = path, spec, root
        self.name = path.stem

    def resolve(self, path: str) -> Path:
        """A path of the experiment file (recipe, steering vector): absolute, or relative to the repository root."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def recipe_path(self) -> Path:
        return self.resolve(self.spec.recipe)

    def runs(self, reduced: bool = False, only_seeds: list[int] | None = None) -> list[tuple[str, int]]:
        """(arm, seed) of every run, seed-major; ``only_seeds`` keeps those seeds (each must be one of the file's)."""
        seeds = (self.spec.reduced_seeds or self.spec.seeds[:1]) if reduced else self.spec.seeds
        if only_seeds is not None:
            if unknown := [s for s in only_seeds if s not in seeds]:
                raise RecipeError(f"{self.path}: seed(s) {', '.join(map(str, unknown))} not among its "
                                  f"{'reduced ' if reduced else ''}seeds {', '.join(map(str, seeds))}")
            seeds = [s for s in seeds if s in only_seeds]
        return [(arm, seed) for seed in seeds for arm in self.spec.arms]

    def arm_recipe(self, arm: str, seed: int, reduced: bool = False, output_dir: str | Path = "runs") -> Recipe:
        """The arm's recipe: base ← experiment overrides ← arm overrides ← name/seed/output_dir ← reduced."""
        src = self.recipe_path()
        if not src.is_file():
            raise RecipeError(f"{self.path}: recipe: {self.spec.recipe} not found")
        raw = load_yaml_file(src, "recipe file") or {}
        where = f"{self.path} (arm {arm})"
        over = _overrides(self.spec.overrides) + _overrides(self.spec.arms[arm].overrides)  # type: ignore[union-attr]
        over += [f"name={arm}-s{seed}", f"seed={seed}", f"output_dir={json.dumps(str(output_dir))}"]
        try:
            raw = apply_overrides(raw, over)
            if reduced:  # sizes only: a key under a stage this arm drops (grpo: null) must not bring the stage back
                kept = {k: v for k, v in self.spec.reduced.items()
                        if not (k.split(".")[0] in raw and raw[k.split(".")[0]] is None and "." in k)}
                raw = apply_overrides(raw, _overrides(kept))
        except RecipeError as e:
            raise RecipeError(f"{where}: {e}") from None
        try:
            recipe = Recipe.model_validate(raw)
        except ValidationError as err:
            raise format_validation_error(err, where) from None
        check_inputs(recipe, where)
        return recipe

    def missing_requirements(self) -> list[str]:
        """Recipe fields (dotted, e.g. ``dpo`` or ``data.unanswerable``) this experiment needs but the installed
        thinktune lacks: the experiment stays pending instead of running something that cannot show the effect."""
        from thinktune.config import _submodel

        missing = []
        for req in self.spec.requires:
            cur: Any = Recipe
            for part in req.split("."):
                fields = getattr(cur, "model_fields", {})
                if part not in fields:
                    missing.append(req)
                    break
                cur = _submodel(fields[part].annotation)
        return missing


def recipe_hash(recipe: Recipe) -> str:
    """Hash of what a run computes: the resolved recipe without where it is written or how many threads it uses, and
    without absent stages (``dpo: null``), so a stage added to thinktune later leaves existing summaries valid."""
    full = {k: v for k, v in as_first_released(resolved_dict(recipe)).items() if v is not None}
    for key in ("output_dir", "threads", "name"):
        full.pop(key, None)
    return fingerprint(full)


def arm_hash(exp: LoadedExperiment, arm: str, seed: int, reduced: bool = False) -> str:
    """What a summary of (arm, seed) must match to count: the recipe hash, extended for an arm with a decoding variant
    by the variant's settings (and the steering vector's content), so that changing a variant stales its summaries."""
    h = recipe_hash(exp.arm_recipe(arm, seed, reduced))
    spec = exp.spec.arms[arm]  # type: ignore[index]
    if spec.variant is None:  # type: ignore[union-attr]
        return h
    settings = getattr(spec, spec.variant).model_dump()  # type: ignore[union-attr]
    if spec.variant == "steer":  # type: ignore[union-attr]
        settings["vector_sha256"] = file_hash(exp.resolve(settings["vector"]))
    return fingerprint({"recipe": h, spec.variant: settings})  # type: ignore[union-attr]


def file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_experiment(path: str | Path, root: str | Path | None = None) -> LoadedExperiment:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{p}: experiment file not found")
    raw = load_yaml_file(p, "experiment file")
    if not isinstance(raw, dict):
        raise RecipeError(f"{p}: an experiment must be a mapping of keys to values")
    try:
        spec = Experiment.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-")) or "(experiment)"
            if e["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(e["loc"][-1]), list(_fields_at(e["loc"][:-1])), n=1)
                lines.append(f"{key}: unknown key" + (f"; did you mean {close[0]!r}?" if close else ""))
            elif e["type"] == "missing":
                lines.append(f"{key}: required field is missing")
            else:
                got = e.get("input")
                shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
                lines.append(f"{key}: {e['msg'].removeprefix('Value error, ')}{shown}")
        raise RecipeError(f"{p}: invalid experiment\n  " + "\n  ".join(lines)) from None
    exp = LoadedExperiment(p, spec, Path(root) if root else _repo_root(p))
    for name, arm in spec.arms.items():
        steer = arm.steer  # type: ignore[union-attr]
        if steer is not None and not exp.resolve(steer.vector).is_file():
            raise RecipeError(f"{p}: arms.{name}.steer.vector: {steer.vector} not found")
    return exp


def _fields_at(loc: tuple) -> list[str]:
    models: dict[str, type[BaseModel]] = {"metrics": MetricSpec, "criteria": Criterion, "arms": ArmSpec}
    cur: type[BaseModel] = Experiment
    for part in loc:
        if isinstance(part, str) and part in models:
            cur = models[part]
    if cur is ArmSpec and "tip" in loc:
        cur = TipSpec
    return list(cur.model_fields)


def _repo_root(path: Path) -> Path:
    """The directory that holds ``experiments/`` (recipe paths are relative to it), for a file anywhere below it
    (``experiments/planned/`` included); a file outside any ``experiments/`` directory: its own directory."""
    p = path.resolve().parent
    return next((d.parent for d in (p, *p.parents) if d.name == EXPERIMENTS_DIR), p)


def discover(directory: str | Path = EXPERIMENTS_DIR) -> list[Path]:
    d = Path(directory)
    return sorted(p for p in d.glob("*.yaml") if p.is_file())


def select(names: list[str], directory: str | Path = EXPERIMENTS_DIR, all_: bool = False) -> list[LoadedExperiment]:
    """Experiments by name (``01_cot_vs_answer_only``, ``01`` or the file path), or all of them."""
    files = discover(directory)
    if all_ or not names:
        if not all_:
            raise RecipeError("name experiments to run (e.g. 01 or 01_cot_vs_answer_only) or pass --all")
        return [load_experiment(f) for f in files]
    out = []
    for n in names:
        if Path(n).is_file():
            out.append(load_experiment(n))
            continue
        hits = [f for f in files if f.stem == n or f.stem.split("_", 1)[0] == n]
        if len(hits) != 1:
            known = ", ".join(f.stem for f in files) or f"none in {directory}/"
            raise RecipeError(f"experiment {n!r}: {'ambiguous' if hits else 'not found'}; experiments: {known}")
        out.append(load_experiment(hits[0]))
    return out
