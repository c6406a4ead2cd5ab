"""A tiny experiment in a temporary directory: its own base recipe (no training needed by the fast tests)."""

from pathlib import Path

import yaml

RECIPE = {
    "name": "x", "seed": 0,
    "model": {"tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "vocab_size": 300}},
    "data": {"task": {"name": "chain_arith", "n_train": 50, "n_eval": 10, "knobs": {"max_ops": 3, "max_operand": 9}}},
    "sft": {"max_steps": 2, "examples_per_step": 8, "micro_batch_size": 8},
    "grpo": {"max_steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "micro_batch_size": 4},
    "audit": {},
}

EXPERIMENT = {
    "claim": "A beats B.",
    "source": "A test paper, arXiv 0000.00000",
    "recipe": "recipes/base.yaml",
    "arms": {"a": {}, "b": {"grpo.kl_coef": 0.1}},
    "seeds": [0, 1, 2],
    "metrics": [{"name": "accuracy", "path": "accuracy", "scale": 100, "fmt": ".1f"},
                {"name": "aoc", "path": "faithfulness.early_answering.aoc"}],
    "criteria": [{"metric": "accuracy", "a": "a", "b": "b", "test": "greater", "min_diff": 0.05, "separated": True}],
    "if_not_reproduced": "Too small to show it.",
}


def write_experiment(root: Path, name: str = "01_test", **changes) -> Path:
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    (root / "experiments").mkdir(exist_ok=True)
    (root / "recipes" / "base.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    spec = {**EXPERIMENT, **changes}
    path = root / "experiments" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path
