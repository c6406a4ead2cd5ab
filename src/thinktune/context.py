"""The run directory's layout, and the context a stage runs in.

Layout (docs/ARCHITECTURE.md)::

    runs/<name>/
      recipe.yaml      resolved recipe (all defaults filled in)
      manifest.json    versions, recipe hash, per-stage status, fingerprint, timings, results
      data/            train.jsonl, eval.jsonl, stats.json
      base/ sft/ grpo/ dpo/   checkpoint-*/ (resumable, COMMITTED marker), final/, metrics.jsonl, completions/
      reward_model/    final/ (a scorer, not a policy), pairs_stats.json, held_out.json
      audit/<model>/   audit.json, examples.jsonl
      results.json     held-out accuracy of every model
      report.html

A stage is a function ``fn(ctx: StageContext) -> dict`` (the stage table in config.py names it); the context
gives it the recipe, its own directory, the paths of earlier stages' outputs and whether it resumes. Stages never
see the run's manifest: run.py owns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinktune.config import STAGES, Recipe, stage_row
from thinktune.errors import RunStateError
from thinktune.formatting import CompletionFormat, PromptContract
from thinktune.safe_yaml import YamlError, load_yaml_file

RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.json"


class RunDir:
    """Paths inside one run directory for one recipe (nothing is read or written here)."""

    def __init__(self, root: str | Path, recipe: Recipe):
        self.root = Path(root)
        self.recipe = recipe

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def output_path(self, stage: str) -> Path:
        """What a complete stage leaves behind (its presence plus the manifest marks the stage complete)."""
        return self.root / stage_row(stage).output

    @property
    def prompt(self) -> PromptContract:
        """How every model of this run is prompted (written into each ``final/``; read by generate, audit, serve)."""
        m = self.recipe.model
        return PromptContract(m.instruction, m.system, self.recipe.format.completion_format())

    def model_stages(self) -> list[str]:
        """The recipe's stages that make a model, in pipeline order."""
        return [s.name for s in STAGES if s.makes_model and s.name in self.recipe.stages()]

    def grpo_rewards(self) -> list[Any]:
        """The recipe's GRPO rewards, a ``reward_model`` reward without a ``path`` pointed at this run's reward model
        (``reward_model/final``, when the recipe has that stage): what GRPO trains on and the audit scores with."""
        specs = list(self.recipe.grpo.rewards) if self.recipe.grpo else []
        if "reward_model" not in self.recipe.stages():
            return specs
        path = str(self.output_path("reward_model") / "final")
        return [s.model_copy(update={"kwargs": {**s.kwargs, "path": path}})
                if s.fn == "reward_model" and "path" not in s.kwargs else s for s in specs]

    def input_model_stage(self, stage: str) -> str:
        """The stage whose output model ``stage`` starts from (the previous model stage)."""
        order = [s.name for s in STAGES]
        prev = [s for s in self.model_stages() if order.index(s) < order.index(stage)]
        if not prev:
            raise RunStateError(f"stage {stage!r} has no input model stage")
        return prev[-1]


class StageContext(RunDir):
    """What one stage gets: the recipe, its own directory, earlier outputs, and whether it resumes."""

    def __init__(self, root: str | Path, recipe: Recipe, stage: str, resume: bool = False):
        super().__init__(root, recipe)
        self.stage, self.resume = stage, resume

    @property
    def dir(self) -> Path:
        """This stage's directory, ``runs/<name>/<stage>/``."""
        return self.stage_dir(self.stage)

    @property
    def config(self) -> Any:
        """This stage's block of the recipe (``recipe.sft`` for sft, ``recipe.data`` for data, …)."""
        return getattr(self.recipe, stage_row(self.stage).field)

    @property
    def fmt(self) -> CompletionFormat:
        return self.recipe.format.completion_format()

    def input_model(self) -> Path:
        """The ``final/`` this stage starts from (the previous model stage's output)."""
        return self.output_path(self.input_model_stage(self.stage))

    def data_file(self, split: str) -> Path:
        """``data/train.jsonl`` or ``data/eval.jsonl``, written by the data stage."""
        return self.output_path("data") / f"{split}.jsonl"


def read_run_recipe(root: str | Path) -> Recipe:
    """The resolved recipe a run directory was made with (``recipe.yaml``), validated again."""
    from pydantic import ValidationError

    from thinktune.config import format_validation_error, from_first_released

    path = Path(root) / RECIPE_FILE
    if not path.is_file():
        raise RunStateError(f"{Path(root)}: not a thinktune run directory (no {RECIPE_FILE})")
    try:
        raw = load_yaml_file(path, "run recipe")
    except YamlError as e:
        raise RunStateError(str(e)) from None
    try:
        return Recipe.model_validate(from_first_released(raw) if isinstance(raw, dict) else raw)
    except ValidationError as err:
        raise format_validation_error(err, str(path)) from None
