"""A model named on the command line, resolved to what loads it and the prompt it was trained with.

``generate``, ``audit``, ``serve`` (and ``tip`` / ``steer``) take any of:

- a stage's ``final/`` inside a run (``runs/x/sft/final``), its stage directory (``runs/x/sft``) or the run
  directory itself (``runs/x``: its last completed model stage) — the base model and adapter chain are resolved
  from the run's ``recipe.yaml``, so nothing has to be exported first;
- an export (``thinktune export``) or any saved transformers model directory;
- a hub id already in the local cache, or ``smollm2`` (the offline SmolLM2-135M-Instruct).

A thinktune model carries its prompt contract (formatting.PromptContract: instruction, system message, completion
format) in ``thinktune_model.json``; a ``final/`` written before the contract existed gets it from its run's recipe.
The contract is what ``--instruction auto`` and the default system message and format resolve to, so a standalone
audit prompts the model exactly as the run's audit did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from thinktune.config import MODEL_STAGES, ModelConfig
from thinktune.context import MANIFEST_FILE, RECIPE_FILE, RunDir, read_run_recipe
from thinktune.errors import ModelError, ThinktuneError
from thinktune.formatting import PromptContract
from thinktune.models import MODEL_META, load_model, load_stage_output


@dataclass(frozen=True)
class NamedModel:
    """A resolved model name: ``final`` (a thinktune model's directory) or ``path`` (hub id / plain directory)."""

    spec: str
    final: Path | None = None  # a directory holding thinktune_model.json (a stage's final/ or an export)
    path: str | None = None  # otherwise: what transformers loads (a directory, a hub id) or "smollm2"
    recipe_model: ModelConfig | None = None  # the run's model block (a base pointer, an adapter chain's root)
    prompt: PromptContract | None = None  # how the model was trained to be prompted; None: not a thinktune model

    def load(self):
        """``(model, tokenizer)``; raises :class:`ModelError` with one line on failure."""
        try:
            if self.final is not None:
                return load_stage_output(self.final, self.recipe_model)
            return load_model(ModelConfig(path=self.path))
        except (OSError, ValueError, FileNotFoundError) as e:
            raise ModelError(f"cannot load model {self.spec!r}: {str(e).splitlines()[0]}") from None


def completed_model_stages(root: Path, layout: RunDir) -> list[str]:
    """The run's model stages the manifest marks complete and whose ``final/`` exists, in pipeline order."""
    manifest_path = root / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return [s for s in MODEL_STAGES if manifest.get("stages", {}).get(s, {}).get("status") == "complete"
            and layout.output_path(s).exists()]


def _from_final(spec: str, final: Path) -> NamedModel:
    meta = json.loads((final / MODEL_META).read_text())
    root = final.parent.parent
    recipe = read_run_recipe(root) if (root / RECIPE_FILE).is_file() else None
    if "prompt" in meta:
        prompt = PromptContract.from_dict(meta["prompt"])
    elif recipe is not None:
        prompt = RunDir(root, recipe).prompt
    else:
        prompt = PromptContract()
    if meta.get("kind") == "recipe_model" and recipe is None:
        raise ModelError(f"{spec}: points at its run's model, but {root / RECIPE_FILE} is missing")
    return NamedModel(spec, final=final, recipe_model=recipe.model if recipe else None, prompt=prompt)


def resolve_model(spec: str) -> NamedModel:
    """What ``spec`` names (see the module docstring); raises :class:`ModelError` naming what was expected."""
    if spec == "smollm2":
        return NamedModel(spec, path="smollm2")
    path = Path(spec).expanduser()
    if not path.exists():
        if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
            raise ModelError(f"{spec}: model path does not exist (give a model directory, a run directory, a hub id, "
                             "or 'smollm2')")
        return NamedModel(spec, path=spec)
    if (path / MODEL_META).is_file():
        return _from_final(spec, path)
    if (path / "final" / MODEL_META).is_file():  # a stage directory: runs/x/sft
        return _from_final(spec, path / "final")
    if (path / RECIPE_FILE).is_file():  # a run directory: its last completed model stage
        try:
            layout = RunDir(path, read_run_recipe(path))
        except ThinktuneError as e:
            raise ModelError(str(e)) from None
        done = completed_model_stages(path, layout)
        if not done:
            raise ModelError(f"{spec}: the run has no completed model stage yet")
        return _from_final(spec, layout.output_path(done[-1]))
    if not (path / "config.json").exists():
        raise ModelError(f"{spec}: not a model directory (no config.json) and not a thinktune run or stage "
                         "(no recipe.yaml, no final/)")
    return NamedModel(spec, path=str(path))


def model_labels(specs: list[str]) -> list[str]:
    """A short distinct name per model spec: the directory name (its parent for a ``final/``), numbered on clashes."""
    labels: list[str] = []
    for spec in specs:
        p = Path(spec.rstrip("/"))
        name = p.name if p.name not in ("final", "") else (p.parent.name or spec)
        base, i = name, 2
        while name in labels:
            name, i = f"{base}-{i}", i + 1
        labels.append(name)
    return labels
