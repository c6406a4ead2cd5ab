"""Scores from a learned reward model: a sequence classifier with one output, trained on preference pairs by the
``reward_model`` stage (stages/reward_model.py) and read by the ``reward_model`` reward (rewards/library.py).

A completion is scored exactly as TRL's ``RewardTrainer`` saw its training pairs: the prompt (the question through
the model's chat template, with the instruction and system message the stage recorded in ``reward_model.json``),
then the completion, then EOS, tokenized by the tokenizer's own call, right-padded, the score read at the last
non-pad token. The stage measures its held-out accuracy with this same code, so the accuracy it reports is the
accuracy of the reward GRPO trains against.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thinktune.formatting import chat_prompt

REWARD_MODEL_META = "reward_model.json"  # in the reward model's directory: {"instruction", "system", "held_out"}
HELD_OUT_FILE = "held_out.json"  # the reward_model stage's measurement, beside its final/ directory


def recorded_accuracy(path: str | Path) -> dict[str, Any] | None:
    """The held-out pairwise accuracy the ``reward_model`` stage measured for the reward model at ``path``:
    ``{"accuracy", "accuracy_ci95", "pairs"}`` from its ``reward_model.json`` (or the stage's ``held_out.json``
    beside ``final/``); None when nothing was recorded (a reward model trained elsewhere)."""
    path = Path(path)
    for candidate, key in ((path / REWARD_MODEL_META, "held_out"), (path.parent / HELD_OUT_FILE, None)):
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if key and isinstance(data, dict):
            data = data.get(key)
        if isinstance(data, dict) and "accuracy" in data and "accuracy_ci95" in data:
            return {"accuracy": data["accuracy"], "accuracy_ci95": data["accuracy_ci95"],
                    "pairs": data.get("pairs", data.get("n"))}
    return None


def weak_reward_model(path: str | Path, minimum: float) -> str | None:
    """Why GRPO should not train against the reward model at ``path`` — its held-out pairwise accuracy is not shown
    above ``minimum`` (the lower end of the 95 % interval is at or below it) — or None when it is, or when no
    accuracy was recorded (nothing to judge by)."""
    rec = recorded_accuracy(path)
    if rec is None or rec["accuracy"] is None:
        return None
    low, high = rec["accuracy_ci95"]
    if low > minimum:
        return None
    return (f"the reward model at {path} is not shown better than {minimum:.0%} on its held-out pairs: pairwise "
            f"accuracy {rec['accuracy']:.1%}, 95 % interval {low:.1%}…{high:.1%} on {rec['pairs']} pairs. GRPO "
            f"against a weak reward model optimises its errors (on the quickstart, reward models at 54.8 % and 61.0 % "
            f"took accuracy from 72 % to 16 % and 4.6 %, docs/RESULTS.md). Label more pairs or train the reward model "
            f"longer; grpo.min_reward_model_accuracy=null trains anyway")


class RewardModelScorer:
    """Batched scores of (question, completion) pairs under a saved reward model (CPU or the first GPU)."""

    def __init__(self, path: str | Path, threads: int | None = None, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a reward model directory (no config.json)")
        if threads:
            torch.set_num_threads(threads)
        meta_path = self.path / REWARD_MODEL_META
        meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.instruction, self.system = meta.get("instruction"), meta.get("system")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size

    def prompt(self, question: str) -> str:
        return chat_prompt(self.tokenizer, question, self.instruction, self.system)

    def score_texts(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Scores of ``prompt + completion + EOS`` (prompts already templated)."""
        import torch

        eos = self.tokenizer.eos_token or ""
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            ids = [self.tokenizer(p + (c if c.endswith(eos) else c + eos))["input_ids"]
                   for p, c in zip(prompts[start:start + self.batch_size], completions[start:start + self.batch_size])]
            width = max(len(x) for x in ids)
            batch = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):
                batch[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=batch.to(self.device), attention_mask=mask.to(self.device)).logits
            out.extend(float(v) for v in logits[:, 0].float().cpu())
        return out

    def score(self, questions: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Scores of completions to questions (the questions go through the chat template)."""
        return self.score_texts([self.prompt(q) for q in questions], completions)


@functools.lru_cache(maxsize=2)
def scorer(path: str, threads: int | None = None) -> RewardModelScorer:
    """One loaded reward model per path and process (reward workers load it on their first call)."""
    return RewardModelScorer(path, threads)
