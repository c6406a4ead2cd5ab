"""Export a run's model as a standalone checkpoint that plain ``transformers`` loads.

``thinktune export RUN -o DIR`` takes the last model stage of the run (or ``--stage``) and writes safetensors
weights, the tokenizer and its chat template. Adapter chains (base → sft adapter → grpo adapter) are merged in
order with peft's ``merge_and_unload``; ``--no-merge`` copies the last adapter as a standard PEFT adapter instead
(its ``thinktune_model.json`` says which model it applies to). The output directory is written atomically.

A merged export keeps the run's prompt contract (instruction, system message, completion format) in its
``thinktune_model.json``, so ``thinktune generate|audit|serve`` prompt it as the run did; plain transformers
ignores the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from thinktune.context import MANIFEST_FILE, RECIPE_FILE, RunDir, read_run_recipe
from thinktune.errors import RunStateError
from thinktune.io import atomic_write_text, commit_dir, staging_dir
from thinktune.models import MODEL_META
from thinktune.named_model import completed_model_stages


def export_model(run_dir: str | Path, output: str | Path, stage: str | None = None, merge: bool = True) -> dict[str, Any]:
    from thinktune.models import load_stage_output

    root = Path(run_dir)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists() or not (root / RECIPE_FILE).exists():
        raise RunStateError(f"{root}: not a thinktune run directory (no {MANIFEST_FILE} / {RECIPE_FILE})")
    layout = RunDir(root, read_run_recipe(root))
    recipe = layout.recipe
    done = completed_model_stages(root, layout)
    if not done:
        raise RunStateError(f"{root}: no completed model stage to export")
    stage = stage or done[-1]
    if stage not in done:
        raise RunStateError(f"{root}: stage {stage!r} has no completed model (completed: {', '.join(done)})")
    final = layout.output_path(stage)
    kind = json.loads((final / MODEL_META).read_text()).get("kind", "full")
    if kind == "recipe_model":
        raise RunStateError(f"{root}: stage {stage!r} is the recipe's own model ({recipe.model.path}); nothing to export")
    tmp = staging_dir(output)
    if kind == "adapter" and not merge:
        shutil.copytree(final, tmp, dirs_exist_ok=True)
    else:
        model, tokenizer = load_stage_output(final, recipe.model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        kind = "merged" if kind == "adapter" else "full"
        atomic_write_text(tmp / MODEL_META, json.dumps({"kind": "full", "prompt": layout.prompt.to_dict(),
                                                        "exported_from": {"run": recipe.name, "stage": stage}}) + "\n")
    commit_dir(tmp, output)
    return {"stage": stage, "path": str(output), "kind": kind}
