"""Export a run's model as a standalone checkpoint that plain ``transformers`` loads.

``thinktune export RUN -o DIR`` takes the last model stage of the run (or ``--stage``) and writes safetensors
weights, the tokenizer and its chat template. Adapter chains (base → sft adapter → grpo adapter) are merged in
order with peft's ``merge_and_unload``; ``--no-merge`` copies the last adapter as a standard PEFT adapter instead
(its ``thinktune_model.json`` says which model it applies to). The output directory is written atomically.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from thinktune.config import MODEL_STAGES
from thinktune.context import MANIFEST_FILE, RECIPE_FILE, RunDir, read_run_recipe
from thinktune.errors import RunStateError
from thinktune.io import commit_dir, staging_dir
from thinktune.models import MODEL_META


def export_model(run_dir: str | Path, output: str | Path, stage: str | None = None, merge: bool = True) -> dict[str, Any]:
    from thinktune.models import load_stage_output

    root = Path(run_dir)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists() or not (root / RECIPE_FILE).exists():
        raise RunStateError(f"{root}: not a thinktune run directory (no {MANIFEST_FILE} / {RECIPE_FILE})")
    manifest = json.loads(manifest_path.read_text())
    layout = RunDir(root, read_run_recipe(root))
    recipe = layout.recipe
    done = [s for s in MODEL_STAGES if manifest.get("stages", {}).get(s, {}).get("status") == "complete"
            and layout.output_path(s).exists()]
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
    commit_dir(tmp, output)
    return {"stage": stage, "path": str(output), "kind": kind}
