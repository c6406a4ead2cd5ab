"""LoRA through the whole chain: SFT trains an adapter on base, GRPO merges it and trains a new adapter,
and the audit replays base → sft adapter → grpo adapter."""

import json

import pytest
import yaml

from tests.helpers.pipeline import thinktune

pytestmark = pytest.mark.slow


def test_lora_sft_then_grpo_chain(recipe_factory):
    recipe = recipe_factory("lora", sft={"max_steps": 6, "save_steps": 3}, grpo={"max_steps": 2, "save_steps": 1})
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    recipe.write_text(yaml.safe_dump(raw))
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = recipe.parent / "runs" / "lora"
    sft_meta = json.loads((root / "sft" / "final" / "thinktune_model.json").read_text())
    grpo_meta = json.loads((root / "grpo" / "final" / "thinktune_model.json").read_text())
    assert {k: sft_meta[k] for k in ("kind", "base")} == {"kind": "adapter", "base": "../../base/final"}
    assert {k: grpo_meta[k] for k in ("kind", "base")} == {"kind": "adapter", "base": "../../sft/final"}
    assert sft_meta["prompt"] == grpo_meta["prompt"]  # the prompt contract travels with every model (issue 21)
    assert (root / "grpo" / "final" / "adapter_config.json").exists()
    assert set(json.loads((root / "results.json").read_text())["models"]) == {"base", "sft", "grpo"}
