"""Every shipped recipe validates (`thinktune recipe check`, plus its `trl:` keys against TRL's dataclasses), and
every shipped accelerate config parses with accelerate's own loader. Neither needs a model download or a GPU."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinktune.cli import app

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "recipes" / "accelerate"  # accelerate launcher configs, not recipes
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if ACCELERATE not in p.parents)


def test_the_gpu_recipe_is_shipped():
    assert ROOT / "recipes" / "gpu" / "qwen2.5-1.5b-math-grpo.yaml" in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_checks(path, monkeypatch):
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from thinktune.config import load_recipe
    from thinktune.stages.setup import trl_passthrough

    monkeypatch.chdir(ROOT)  # recipes name data files relative to the repository root
    if "../shared/data" in path.read_text() and not (ROOT / ".." / "shared" / "data").is_dir():
        pytest.skip("the recipe reads ../shared/data, which is not beside this checkout")  # `recipe check` would fail
    result = CliRunner().invoke(app, ["recipe", "check", str(path)])
    assert result.exit_code == 0, result.output
    recipe = load_recipe(path)
    for stage, cls in (("sft", SFTConfig), ("dpo", DPOConfig), ("grpo", GRPOConfig)):
        cfg = getattr(recipe, stage)
        if cfg is not None:
            trl_passthrough(cls, cfg.trl, {}, stage)  # raises RecipeError on a name TRL does not have


def test_gpu_recipe_uses_vllm_colocate_lora():
    from thinktune.config import load_recipe

    r = load_recipe(ROOT / "recipes" / "gpu" / "qwen2.5-1.5b-math-grpo.yaml")
    assert r.model.path == "Qwen/Qwen2.5-1.5B-Instruct" and r.model.lora is not None
    assert r.grpo.trl["use_vllm"] is True and r.grpo.trl["vllm_mode"] == "colocate"
    assert r.sft.examples_per_step % (8 * r.sft.micro_batch_size) == 0  # splits over 1, 2, 4 and 8 GPUs
    g = r.grpo
    assert (g.prompts_per_step * g.samples_per_prompt) % (8 * g.micro_batch_size) == 0


@pytest.mark.parametrize("name, kind, zero_stage", [
    ("ddp", "MULTI_GPU", None),
    ("deepspeed_zero2", "DEEPSPEED", 2),
    ("deepspeed_zero3", "DEEPSPEED", 3),
    ("fsdp", "FSDP", None),
])
def test_accelerate_configs_parse(name, kind, zero_stage):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))  # rejects unknown keys and bad values
    assert str(cfg.distributed_type).split(".")[-1] == kind
    assert cfg.mixed_precision == "bf16" and not cfg.use_cpu
    if zero_stage is not None:
        assert cfg.deepspeed_config["zero_stage"] == zero_stage
        assert "gradient_accumulation_steps" not in cfg.deepspeed_config  # "auto": thinktune derives it per step
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"

