"""Base stage: the run's starting model in ``base/final/``.

- ``model.tiny``: build a small Qwen2 model from the recipe seed, with a tokenizer trained on the run's
  training texts (questions + rendered completions + the prompt template), and save it.
- ``model.path``: nothing is copied; ``final/`` holds a pointer to the recipe's model (the GGUF conversion, if
  any, is cached by :func:`thinktune.models.load_model`). The model is loaded once to fail early if it cannot be.
"""

from __future__ import annotations

import json
from typing import Any

from thinktune.context import StageContext
from thinktune.data.records import read_records
from thinktune.formatting import render
from thinktune.io import atomic_write_text, commit_dir, staging_dir
from thinktune.models import MODEL_META, build_tiny, count_parameters, load_model
from thinktune.stages.setup import save_final


def run_stage(ctx: StageContext) -> dict[str, Any]:
    recipe = ctx.recipe
    target = ctx.output_path("base")
    if recipe.model.tiny is not None:
        fmt = ctx.fmt
        records = read_records(ctx.data_file("train"))
        corpus = ["<|user|>\n<|assistant|>\n<|system|>\n", recipe.model.instruction or ""]
        corpus += [r.question + "\n" + render(r.reasoning, r.answer, fmt) for r in records[:5000]]
        model, tokenizer = build_tiny(recipe.model.tiny, corpus, seed=recipe.seed)
        save_final(model, tokenizer, ctx.dir, input_final=None, prompt=ctx.prompt)
        return {"parameters": count_parameters(model), "vocab": len(tokenizer), "built": "tiny"}
    model, tokenizer = load_model(recipe.model)
    tmp = staging_dir(target)
    atomic_write_text(tmp / MODEL_META, json.dumps({"kind": "recipe_model", "prompt": ctx.prompt.to_dict()}) + "\n")
    commit_dir(tmp, target)
    return {"parameters": count_parameters(model), "vocab": len(tokenizer), "built": recipe.model.path}
