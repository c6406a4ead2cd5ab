"""Trainer callbacks shared by the training stages: committed checkpoints, metrics.jsonl, progress.

Committed checkpoints (docs/ARCHITECTURE.md, "Crash safety and exact resume"): the Trainer writes ``checkpoint-N/`` in
place; after it returns, rank 0 writes ``checkpoint-N/COMMITTED`` (fsync) and atomically replaces the stage's ``LATEST``
pointer. Only committed checkpoints are ever resumed from, so a kill during a save leaves a directory that is ignored
(and deleted on the next start). Retention happens after the commit, never inside the save (the Trainer's own rotation
is turned off with ``save_total_limit=None``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from thinktune.io import atomic_write_text
from thinktune.progress import reporter

MARKER = "COMMITTED"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _checkpoints(stage_dir: Path) -> list[tuple[int, Path]]:
    out = []
    if stage_dir.exists():
        for p in stage_dir.iterdir():
            m = _CKPT.match(p.name)
            if m and p.is_dir():
                out.append((int(m.group(1)), p))
    return sorted(out)


def latest_committed(stage_dir: str | os.PathLike) -> Path | None:
    """The checkpoint named by LATEST if it is committed, else the newest committed one, else None."""
    d = Path(stage_dir)
    pointer = d / "LATEST"
    if pointer.exists():
        cand = d / pointer.read_text().strip()
        if (cand / MARKER).exists():
            return cand
    committed = [p for _, p in _checkpoints(d) if (p / MARKER).exists()]
    return committed[-1] if committed else None


def remove_uncommitted(stage_dir: str | os.PathLike) -> list[Path]:
    """Delete checkpoint directories without a commit marker (torn writes). Returns what was removed."""
    removed = []
    for _, p in _checkpoints(Path(stage_dir)):
        if not (p / MARKER).exists():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


class CommitCheckpoints(TrainerCallback):
    """After each save: marker, LATEST pointer, then retention of the newest ``keep`` committed checkpoints."""

    def __init__(self, stage_dir: str | os.PathLike, keep: int = 2):
        self.stage_dir = Path(stage_dir)
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        from thinktune.distributed import barrier

        barrier()  # every process has written its part (rng_state_{rank}.pth, shards) before the marker
        if not state.is_world_process_zero:
            return
        ckpt = self.stage_dir / f"checkpoint-{state.global_step}"
        if not ckpt.is_dir():
            return
        atomic_write_text(ckpt / MARKER, json.dumps({"step": state.global_step}) + "\n")
        atomic_write_text(self.stage_dir / "LATEST", ckpt.name + "\n")
        committed = [p for _, p in _checkpoints(self.stage_dir) if (p / MARKER).exists()]
        for old in committed[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


class MetricsLog(TrainerCallback):
    """Append every Trainer log record (loss, rewards, KL, lr, …) to ``metrics.jsonl`` with its step."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step}
        for k, v in logs.items():
            row[k] = v if not isinstance(v, float) or math.isfinite(v) else None
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class ProgressBar(TrainerCallback):
    """Drive the reporter's progress bar from Trainer steps (resumed runs start at the checkpoint's step)."""

    def __init__(self, description: str):
        self.description = description
        self._cm = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._cm = reporter().task(self.description, total=state.max_steps)
            self._task = self._cm.__enter__()
            self._task.update(completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._task is not None:
            self._task.update(completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._task is not None and logs:
            shown = {k: logs[k] for k in ("loss", "reward") if isinstance(logs.get(k), (int, float))}
            if shown:
                extra = " ".join(f"{k}={v:.3g}" for k, v in shown.items())
                self._task.update(description=f"{self.description} {extra}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._task = None


class HeldOutAccuracy(TrainerCallback):
    """Greedy accuracy on a small held-out set every ``every`` steps (and at the end), logged to metrics.jsonl.

    Uses the same generation and grader as the audit (generation.py, data/answers.py), so the curve is
    comparable with the final audit numbers.
    """

    key = "eval"  # metrics.jsonl fields: eval_accuracy, eval_items

    def __init__(self, records, tokenizer, fmt, path, every: int, max_new_tokens: int, instruction=None,
                 system=None):
        from thinktune.formatting import chat_prompt

        self.records, self.tokenizer, self.fmt, self.path, self.every = records, tokenizer, fmt, Path(path), every
        self.max_new_tokens = max_new_tokens
        self.prompts = [chat_prompt(tokenizer, r.question, instruction, system) for r in records]
        self._last = -1
        self.last_accuracy: float | None = None

    def _evaluate(self, model, step: int) -> None:
        import torch

        from thinktune.data.answers import grade
        from thinktune.formatting import parse_completion
        from thinktune.generation import SamplingParams, generate_texts

        if step == self._last:
            return
        self._last = step
        with torch.random.fork_rng():  # never perturb the training RNG stream (resume must stay exact)
            outs = generate_texts(model, self.tokenizer, self.prompts,
                                  SamplingParams(max_new_tokens=self.max_new_tokens, stop=(self.fmt.stop,)),
                                  batch_size=len(self.prompts))
        verdicts = [grade(r, parse_completion(o[0], self.fmt).answer) for r, o in zip(self.records, outs)]
        scored = [v for v in verdicts if v is not None]
        acc = sum(scored) / len(scored) if scored else 0.0
        self.last_accuracy = acc
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, f"{self.key}_accuracy": acc, f"{self.key}_items": len(scored)}) + "\n")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None and state.global_step % self.every == 0:
            self._evaluate(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            self._evaluate(model, state.global_step)


class StopAtAccuracy(HeldOutAccuracy):
    """``sft.stop_at``: greedy accuracy on validation items every ``every`` steps (``valid_accuracy`` in
    metrics.jsonl); training stops at the first check that reaches ``threshold``. Deterministic (the generation runs
    under a forked RNG), so a resumed run stops at the same step."""

    key = "valid"

    def __init__(self, *args, threshold: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.threshold = threshold
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step % self.every == 0:
            if state.is_world_process_zero:
                self._evaluate(model, state.global_step)
            reached = self._reached()
            if reached:
                self.stopped_at = state.global_step
                control.should_training_stop = True

    def _reached(self) -> bool:
        """Rank 0's verdict, shared with every rank (all must stop at the same step)."""
        import torch.distributed as dist

        verdict = self.last_accuracy is not None and self.last_accuracy >= self.threshold
        if dist.is_available() and dist.is_initialized():
            import torch

            flag = torch.tensor([1 if verdict else 0])
            dist.broadcast(flag, src=0)
            verdict = bool(flag.item())
        return verdict

    def on_train_end(self, args, state, control, model=None, **kwargs):
        pass  # no extra evaluation at the end: the last check is the stopping one (or max_steps was reached)


class NonFiniteGuard(TrainerCallback):
    """Skip the optimizer step when any gradient is NaN/inf; stop after ``max_consecutive`` such steps in a row.

    transformers only hides NaN losses in the logs, and zeroing the gradients is not enough
    (AdamW's moment updates and decoupled weight decay would still move the weights), so the whole
    ``optimizer.step()`` is skipped. The LR scheduler still advances (the step counts as taken), which keeps a
    resumed run's schedule identical. The count is logged as ``nonfinite_skipped``.
    """

    def __init__(self, max_consecutive: int = 3):
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def on_train_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        if optimizer is None or getattr(optimizer, "_thinktune_guarded", False):
            return
        original = optimizer.step
        params = [p for group in optimizer.param_groups for p in group["params"]]

        def guarded_step(*a, **k):
            import torch

            if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
                self.consecutive = 0
                return original(*a, **k)
            self.skipped += 1
            self.consecutive += 1
            optimizer.zero_grad(set_to_none=True)
            if self.consecutive >= self.max_consecutive:
                from thinktune.errors import StageError

                raise StageError(f"{self.consecutive} consecutive optimizer steps had NaN/inf gradients "
                                 f"(at step {state.global_step + 1}); stopping. Lower the learning rate or check "
                                 f"the data; the last committed checkpoint is intact.")
            return None

        optimizer.step = guarded_step
        optimizer._thinktune_guarded = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            logs["nonfinite_skipped"] = self.skipped


class GRPOAlerts(TrainerCallback):
    """Warn (log + progress note, once each) when GRPO is silently learning nothing.

    - ``frac_reward_zero_std`` ≥ ``zero_std`` for ``patience`` consecutive log records: most groups have identical
      rewards, so their advantages are 0 (huggingface/trl#3857); consider dynamic sampling or harder/easier prompts.
    - ``completions/clipped_ratio`` ≥ ``clipped`` for ``patience`` records: completions hit max_new_tokens
      (huggingface/trl#5697).
    The warnings are also written into the log record (``alert_zero_std`` / ``alert_clipped`` = 1) so that
    metrics.jsonl and the report can show them.
    """

    def __init__(self, zero_std: float = 0.9, clipped: float = 0.5, patience: int = 3):
        self.limits = {"frac_reward_zero_std": zero_std, "completions/clipped_ratio": clipped}
        self.patience = patience
        self.streak = {k: 0 for k in self.limits}
        self.fired: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        for key, limit in self.limits.items():
            value = logs.get(key)
            if not isinstance(value, (int, float)):
                continue
            self.streak[key] = self.streak[key] + 1 if value >= limit else 0
            if self.streak[key] >= self.patience:
                logs["alert_zero_std" if key == "frac_reward_zero_std" else "alert_clipped"] = 1
                if key not in self.fired:
                    self.fired.add(key)
                    what = ("of prompt groups have identical rewards (zero advantage: nothing to learn from them)"
                            if key == "frac_reward_zero_std" else "of completions hit max_new_tokens")
                    message = (f"[grpo] alert at step {state.global_step}: ≥ {limit:.0%} {what} for "
                               f"{self.patience} log records in a row")
                    logging.getLogger("thinktune").warning(message)
                    reporter().note(message)
