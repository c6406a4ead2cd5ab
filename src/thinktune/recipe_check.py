"""What ``recipe check`` verifies beyond the schema, so that a recipe it passes does not fail hours later.

Resolution (each problem names its key):

- every reward ``fn`` (a registered name, or ``module:function`` — importing the module runs its code, by design)
  and its ``kwargs`` (unknown settings, and built-in rewards called once on a sample completion with them);
- ``audit.extractor``;
- ``data.task.name`` and its ``knobs`` (names and types against the task's ``generate`` signature, then a
  two-item dry run, so a bad value fails here, not in the data stage);
- reasoning-gym dataset names and configs of ``data.sources`` / ``data.eval_sources`` (a one-item dry run);
- ``sft.trl`` / ``grpo.trl`` / ``dpo.trl`` keys against the fields of TRL's ``SFTConfig`` / ``GRPOConfig`` /
  ``DPOConfig`` (TRL is imported only when a recipe has such keys).

Sizes (bounded by what this machine can hold; the estimates are deliberately generous, so only values that
cannot possibly fit are refused, each naming its key and the machine's figure):

- generated records (``data.task.n_train`` + ``2 × n_eval``, reasoning-gym ``size``) at :data:`RECORD_BYTES`
  each against the memory;
- a tiny model's parameters (``model.tiny``) at :data:`TRAIN_BYTES_PER_PARAM` (fp32 weights, gradients, two
  Adam moments, a reference copy) against the memory;
- ``threads`` against :data:`THREADS_PER_CORE` × the CPU cores this process may use;
- any other count over :data:`MAX_COUNT` (steps, batch sizes, lengths, items …) — no run on any machine uses one.
"""

from __future__ import annotations

import inspect
import os
import sys
import typing
from typing import Any

RECORD_BYTES = 4096  # one record in memory, in JSONL and tokenized (a generous upper estimate)
TRAIN_BYTES_PER_PARAM = 20  # fp32 weights + gradients + Adam m, v + a frozen reference copy
THREADS_PER_CORE = 4
MAX_COUNT = 1_000_000_000
FREE_FORM = ("knobs", "kwargs", "trl", "config", "fields")  # user dictionaries: not sizes of ours

_TRL_CONFIGS = {"sft": "SFTConfig", "grpo": "GRPOConfig", "dpo": "DPOConfig"}


def deep_problems(recipe) -> list[str]:
    """Every resolution and size problem of a schema-valid recipe (empty when it is fine)."""
    problems = size_problems(recipe)
    if problems:  # a dry run of an absurd size would be the MemoryError this check is there to prevent
        return problems
    return reward_problems(recipe) + task_problems(recipe) + trl_problems(recipe)


# ---------------------------------------------------------------------------------------------------------------
# names


def reward_problems(recipe) -> list[str]:
    from thinktune.data.answers import EXTRACTORS
    from thinktune.data.records import Record
    from thinktune.formatting import CompletionFormat, render
    from thinktune.rewards.library import (
        REWARDS,
        RewardError,
        call_kwargs,
        is_batch_reward,
        resolve,
    )

    problems = []
    if recipe.audit is not None and recipe.audit.extractor not in EXTRACTORS:
        problems.append(f"audit.extractor: unknown extractor {recipe.audit.extractor!r}; "
                        f"choose one of {', '.join(EXTRACTORS)}")
    if recipe.grpo is None:
        return problems
    fmt = CompletionFormat(**recipe.format.model_dump())
    sample = render("1 + 1 = 2", "2", fmt)
    record = Record(id="recipe-check", question="What is 1 + 1?", answer="2")
    for i, spec in enumerate(recipe.grpo.rewards):
        key = f"grpo.rewards.{i}"
        try:
            fn = resolve(spec.fn)
        except KeyError as e:
            problems.append(f"{key}.fn: {e.args[0]}")
            continue
        except Exception as e:  # noqa: BLE001 - importing a user's module can raise anything
            problems.append(f"{key}.fn: importing {spec.fn!r} failed: {type(e).__name__}: {e}")
            continue
        if is_batch_reward(fn):
            continue
        try:
            kwargs = call_kwargs(spec.fn, fn, dict(spec.kwargs), fmt)
        except RewardError as e:
            problems.append(f"{key}.kwargs: {e}")
            continue
        if spec.fn in REWARDS:  # built-ins are pure and fast: one call shows a bad setting's value now
            try:
                fn(sample, record, **kwargs)
            except Exception as e:  # noqa: BLE001 - any failure here would be a failure of every GRPO step
                problems.append(f"{key}.kwargs: reward {spec.fn!r} fails with these settings: "
                                f"{type(e).__name__}: {e}")
    return problems


def _type_ok(value: Any, annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True  # unannotated, or an annotation get_type_hints could not resolve: not checked
    args = typing.get_args(annotation)
    if args:  # Optional / Union / dict[...] / list[...]
        origin = typing.get_origin(annotation)
        if origin in (dict, list, tuple):
            return isinstance(value, origin)
        return any(_type_ok(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def knob_problems(task, knobs: dict[str, Any], where: str) -> list[str]:
    """Knob names and types against ``task.generate``'s keyword parameters."""
    import difflib

    params = {k: p for k, p in inspect.signature(task.generate).parameters.items()
              if k not in ("self", "n", "seed", "id_prefix") and p.kind is not inspect.Parameter.VAR_KEYWORD}
    problems = []
    try:
        hints = typing.get_type_hints(task.generate)
    except Exception:  # noqa: BLE001 - unresolvable annotations: names are still checked
        hints = {}
    for key, value in knobs.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; knobs: {', '.join(params) or 'none'}"
            problems.append(f"{where}.{key}: unknown knob of task {task.name!r}{hint}")
        elif not _type_ok(value, hints.get(key, params[key].annotation)):
            want = getattr(hints.get(key), "__name__", str(hints.get(key)))
            problems.append(f"{where}.{key}: expected {want}, got {type(value).__name__} ({value!r})")
    return problems


def task_problems(recipe) -> list[str]:
    from thinktune.data.tasks import ReasoningGym, get_task

    problems = []
    t = recipe.data.task
    if t is not None:
        try:
            task = get_task(t.name)
        except KeyError as e:
            return [f"data.task.name: {e.args[0]}"]
        problems += knob_problems(task, t.knobs, "data.task.knobs")
        if not problems:
            try:
                task.generate(2, seed=recipe.seed * 2, **t.knobs)
            except (TypeError, ValueError) as e:
                problems.append(f"data.task.knobs: {e}")
    for group in ("sources", "eval_sources"):
        for i, src in enumerate(getattr(recipe.data, group) or []):
            if src.reasoning_gym:
                try:
                    ReasoningGym().generate(1, src.seed, dataset=src.reasoning_gym, config=src.config)
                except (TypeError, ValueError) as e:
                    problems.append(f"data.{group}.{i}.reasoning_gym: {e}")
    return problems


def trl_problems(recipe) -> list[str]:
    import dataclasses
    import difflib

    problems = []
    for stage, cls_name in _TRL_CONFIGS.items():
        cfg = getattr(recipe, stage)
        if cfg is None or not cfg.trl:
            continue
        import trl

        valid = sorted(f.name for f in dataclasses.fields(getattr(trl, cls_name)))
        for key in cfg.trl:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(f"{stage}.trl.{key}: not a field of trl.{cls_name}{hint}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# sizes


def machine_memory() -> int:
    """Bytes this machine can hold a run in: physical memory, or the largest GPU's when that is larger.

    GPUs are asked only when torch is already loaded (``thinktune run``): ``recipe check`` does not load torch
    (30 s on a busy machine) for a bound that only ever refuses absurd sizes."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 2**40
    gpu = 0
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            gpu = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - no usable GPU
        pass
    return max(ram, gpu)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def tiny_params(vocab: int, hidden: int, inter: int, layers: int) -> int:
    """Parameters of build_tiny's Qwen2 (tied embeddings): embeddings + per layer attention, MLP and norms."""
    return vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden) + hidden


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def size_problems(recipe) -> list[str]:
    problems = _huge_counts(recipe.model_dump(mode="python"), "")
    mem = machine_memory()
    t = recipe.data.task
    if t is not None:
        need = (t.n_train + 2 * t.n_eval) * RECORD_BYTES
        if need > mem:
            problems.append(f"data.task.n_train: {t.n_train:,} training + {t.n_eval:,} held-out records need about "
                            f"{_gb(need)}; this machine has {_gb(mem)}")
    for group in ("sources", "eval_sources"):
        for i, src in enumerate(getattr(recipe.data, group) or []):
            if src.reasoning_gym and src.size * RECORD_BYTES > mem:
                problems.append(f"data.{group}.{i}.size: {src.size:,} records need about "
                                f"{_gb(src.size * RECORD_BYTES)}; this machine has {_gb(mem)}")
    m = recipe.model.tiny
    if m is not None:
        params = tiny_params(m.vocab_size, m.hidden_size, m.intermediate_size, m.num_layers)
        need = params * TRAIN_BYTES_PER_PARAM
        if need > mem:
            problems.append(f"model.tiny: hidden_size {m.hidden_size:,}, intermediate_size {m.intermediate_size:,}, "
                            f"num_layers {m.num_layers:,}, vocab_size {m.vocab_size:,} make {params:,} parameters, "
                            f"about {_gb(need)} to train; this machine has {_gb(mem)}")
    if recipe.threads is not None and recipe.threads > THREADS_PER_CORE * cpu_cores():
        problems.append(f"threads: {recipe.threads:,} is more than {THREADS_PER_CORE} × the {cpu_cores()} CPU "
                        f"core(s) this process may use")
    return problems


def _huge_counts(obj: Any, prefix: str) -> list[str]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in FREE_FORM:
                out += _huge_counts(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += _huge_counts(v, f"{prefix}{i}.")
    elif isinstance(obj, int) and not isinstance(obj, bool) and obj > MAX_COUNT:
        key = prefix.rstrip(".")
        if key.rsplit(".", 1)[-1] not in ("seed", "sampling_seed"):
            out.append(f"{key}: {obj:,} is larger than any run can use (at most {MAX_COUNT:,})")
    return out
