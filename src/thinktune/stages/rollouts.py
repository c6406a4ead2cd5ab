"""GRPO rollouts through thinktune's batched decoder (rollout_engine.py) instead of HF ``generate``.

A thin mixin for ``trl.GRPOTrainer`` that overrides one TRL method, ``_generate_single_turn``, on its plain
``transformers`` path: the same prompts (TRL has already repeated each one ``num_generations`` times), the same
sampling settings (read from the trainer's own ``generation_config``, so TRL's defaults and ``grpo.trl`` overrides
apply), the same unwrapping context as TRL (DDP, DeepSpeed ZeRO-3 parameter gathering, FSDP), and the same result:
completion token ids cut after the first EOS. Everything else — vLLM, transformers' paged generation, images, tool
calls, or a ``generation_kwargs`` setting the engine does not implement — goes to TRL's own method unchanged.
``grpo.rollout_engine: trl`` turns the mixin off.
"""

from __future__ import annotations

import logging

from thinktune.rollout_engine import DecodeSettings, decode

log = logging.getLogger(__name__)

#: generation_config fields the engine implements; any other non-default field sends the call to TRL's generate
SUPPORTED = {"max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
             "pad_token_id", "bos_token_id", "eos_token_id", "cache_implementation", "disable_compile"}


def decode_settings(generation_kwargs: dict) -> DecodeSettings | None:
    """The engine's settings for TRL's generation kwargs, or None when they ask for something it does not do."""
    unsupported = {k for k, v in generation_kwargs.items() if k not in SUPPORTED and v is not None}
    if unsupported or generation_kwargs.get("cache_implementation") not in (None, "dynamic"):
        return None
    return DecodeSettings(
        max_new_tokens=int(generation_kwargs["max_new_tokens"]),
        do_sample=bool(generation_kwargs.get("do_sample", True)),
        temperature=float(generation_kwargs.get("temperature") or 1.0),
        top_k=generation_kwargs.get("top_k"),
        top_p=generation_kwargs.get("top_p"),
        min_p=generation_kwargs.get("min_p"),
        repetition_penalty=float(generation_kwargs.get("repetition_penalty") or 1.0),
    )


class BatchedRolloutsMixin:
    """Mixed in before ``trl.GRPOTrainer`` (stages/grpo.py builds the class)."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        import torch
        from trl.extras.profiling import profiling_context
        from trl.models import unwrap_model_for_generation

        settings = decode_settings(getattr(self, "generation_kwargs", None) or {})
        plain = not (self.use_vllm or getattr(self, "use_transformers_continuous_batching", False) or images
                     or multimodal_fields or has_tool_images)
        if settings is None or not plain:
            if settings is None and not getattr(self, "_rollouts_fallback_logged", False):
                log.info("grpo: generation_kwargs the batched decoder does not implement; using TRL's generate")
                self._rollouts_fallback_logged = True
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        with (
            profiling_context(self, "thinktune.decode"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            completion_ids = decode(unwrapped_model, prompt_ids, settings, self.eos_token_ids,
                                    self._tokenizer.pad_token_id)
        return completion_ids, None
