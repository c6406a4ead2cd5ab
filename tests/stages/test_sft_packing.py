"""SFT packing, held-out eval loss and QLoRA's refusal without CUDA.

The packing tests pin TRL's semantics that sft.py relies on: with ``packing=True`` (best-fit decreasing, padding-free)
the labels still cover exactly the completion tokens of every packed example, and the packed loss equals the
unpacked one (no attention across example boundaries on CPU attention kernels).
"""

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.pipeline import thinktune
from tests.helpers.tiny_chain import CORPUS
from thinktune.config import TinyModelConfig
from thinktune.formatting import chat_prompt, render
from thinktune.models import build_tiny


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                      vocab_size=280), CORPUS, seed=0)


def _rows(tok, n=12):
    rows = []
    for i in range(n):
        a, b = i, 2 * i + 1
        reasoning = " ".join(f"{a} + {k} = {a + k}." for k in range(i % 4 + 1))  # varied lengths: real packing
        rows.append({"prompt": chat_prompt(tok, f"Compute {a} + {b}."), "completion": render(reasoning, str(a + b))})
    return rows


def _trainer(tmp_path, model, tok, rows, packing):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / ("packed" if packing else "plain")), packing=packing, max_length=128,
                     per_device_train_batch_size=len(rows), completion_only_loss=True, use_cpu=True, report_to=[],
                     disable_tqdm=True, seed=0)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)


def _first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def test_packing_labels_cover_exactly_the_completion_tokens(tmp_path, tiny):
    model, tok = tiny
    rows = _rows(tok)
    batch = _first_batch(_trainer(tmp_path, model, tok, rows, packing=True))
    assert "attention_mask" not in batch  # padding-free: example boundaries come from position_ids
    ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [len(pos)]
    segments = [(s, e) for s, e in zip(starts, starts[1:])]
    assert len(segments) == len(rows) and batch["input_ids"].shape[0] == 1  # every example packed into one row

    expected = {}
    for r in rows:
        p = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        c = tok(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"][len(p):] + [tok.eos_token_id]
        expected[tuple(p)] = c
    for s, e in segments:
        seg_ids, seg_labels = ids[s:e].tolist(), labels[s:e].tolist()
        trained = [t for t, lab in zip(seg_ids, seg_labels) if lab != -100]
        prompt_len = seg_labels.index(next(lab for lab in seg_labels if lab != -100))
        assert all(lab == -100 for lab in seg_labels[:prompt_len])  # no loss on the prompt
        assert tuple(seg_ids[:prompt_len]) in expected, "a segment is not one whole example"
        assert trained == expected[tuple(seg_ids[:prompt_len])]  # loss on every completion token, EOS included
        assert [lab for lab in seg_labels if lab != -100] == trained  # labels are the tokens themselves


def test_packed_loss_equals_unpacked_loss(tmp_path, tiny):
    model, tok = tiny
    rows = _rows(tok)
    packed = _first_batch(_trainer(tmp_path, model, tok, rows, packing=True))
    plain = _first_batch(_trainer(tmp_path, model, tok, rows, packing=False))
    assert plain["input_ids"].shape[0] == len(rows)
    assert int((packed["labels"] != -100).sum()) == int((plain["labels"] != -100).sum())

    def token_nll_sum(batch):  # summed over completion tokens, so batching does not change it
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
        with torch.no_grad():
            logits = model(**inputs).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100, reduction="sum")

    model.eval()
    assert torch.allclose(token_nll_sum(packed), token_nll_sum(plain), rtol=1e-4)
    # and the block-diagonal mask matters: without position_ids the packed row attends across examples
    crossed = dict(packed)
    crossed.pop("position_ids")
    assert not torch.allclose(token_nll_sum(crossed), token_nll_sum(plain), rtol=1e-4)


def _sft_only_recipe(tmp_path, name, **sft):
    from tests.helpers.pipeline import reduced_recipe

    path = reduced_recipe(tmp_path, name, sft={"max_steps": 4, "save_steps": 4, "logging_steps": 2,
                                               "eval_every": None, **sft})
    raw = yaml.safe_load(path.read_text())
    for stage in ("grpo", "audit", "report"):
        raw.pop(stage)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_sft_packing_and_eval_loss_through_the_stage(tmp_path):
    recipe = _sft_only_recipe(tmp_path, "pack", packing=True, eval_loss_every=2, eval_items=8)
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "runs" / "pack"
    effective = json.loads((root / "sft" / "effective_config.json").read_text())
    assert effective["packing"] is True and effective["eval_strategy"] == "steps" and effective["eval_steps"] == 2
    result = json.loads((root / "manifest.json").read_text())["stages"]["sft"]["result"]
    assert result["eval_loss_items"] == 8
    assert 0 < result["packed_rows"] < result["examples"]  # several examples per row
    rows = [json.loads(line) for line in (root / "sft" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval_loss"] > 0 for r in evals)
    assert "eval_loss_every" not in json.loads((root / "manifest.json").read_text())["stages"]["sft"]["inputs"]["sft"]


def test_quantization_config_refuses_without_bitsandbytes_or_cuda(monkeypatch):
    from thinktune.errors import StageError
    from thinktune.models import quantization_config

    assert quantization_config(None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StageError, match=r"model.lora.quantize: '4bit' \(QLoRA\) needs bitsandbytes and a CUDA GPU.*"
                                         r"no CUDA GPU is visible"):
        quantization_config("4bit")


@pytest.mark.slow
def test_qlora_without_cuda_fails_the_run_with_a_clear_message(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: QLoRA may run here")
    recipe = _sft_only_recipe(tmp_path, "qlora")
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["lora"] = {"r": 4, "alpha": 8, "quantize": "4bit"}
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = thinktune("run", str(recipe))
    assert proc.returncode != 0
    assert "model.lora.quantize" in proc.stderr + proc.stdout
    assert "needs bitsandbytes and a CUDA GPU" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_new_sft_fields_leave_existing_fingerprints_alone():
    from thinktune.config import load_recipe, resolved_dict

    quickstart = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    plain = resolved_dict(load_recipe(quickstart))
    assert "packing" not in plain["sft"] and "eval_loss_every" not in plain["sft"]
    lora = resolved_dict(load_recipe(quickstart, ["model.lora.r=8"]))
    assert "quantize" not in lora["model"]["lora"]
    packed = resolved_dict(load_recipe(quickstart, ["sft.packing=true", "model.lora.quantize=4bit"]))
    assert packed["sft"]["packing"] is True and packed["model"]["lora"]["quantize"] == "4bit"
    with pytest.raises(Exception, match="model.lora.quantize"):
        load_recipe(quickstart, ["model.lora.quantize=2bit"])


@pytest.mark.slow
def test_qlora_loading_passes_the_quantization_config_for_every_kind_of_input(tmp_path, monkeypatch):
    """Without a GPU the bitsandbytes path cannot run; this pins the wiring: full weights and adapter chains alike
    reach ``from_pretrained`` with the quantization config (an adapter chain is merged first, then reloaded)."""
    from transformers import AutoModelForCausalLM

    import thinktune.models as models
    from tests.helpers.tiny_chain import base_and_adapter

    base, sft, _ = base_and_adapter(tmp_path)
    marker = object()
    monkeypatch.setattr(models, "quantization_config", lambda q: marker if q else None)
    seen = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def recording(cls, path, *args, **kwargs):
        seen.append((Path(path), kwargs.pop("quantization_config", None)))
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(recording))
    models.load_stage_output(base, quantize="4bit")
    assert seen == [(base, marker)]
    seen.clear()
    merged, _ = models.load_stage_output(sft, quantize="4bit")
    assert seen[0] == (base, None)  # the chain is merged in full precision …
    assert seen[-1][1] is marker and seen[-1][0] != base  # … then the merged weights are reloaded quantised
    expected, _ = models.load_stage_output(sft)
    assert all(torch.equal(a, b) for a, b in zip(merged.state_dict().values(), expected.state_dict().values()))
