"""The batch plan of a training stage: sizes named by what they count, and TRL's arguments derived from them.

A recipe says how many sequences one optimizer step sees over all processes (``examples_per_step`` for SFT, pairs
for DPO, ``prompts_per_step × samples_per_prompt`` completions for GRPO) and how many one forward/backward pass
holds on one process (``micro_batch_size``). TRL wants the per-device batch and the accumulation steps instead
(huggingface/trl#2858: GRPO's per-device batch counts completions, not prompts). One plan checks that the numbers
split evenly — when the recipe is loaded (one process), when ``thinktune run --processes N`` plans the launch, and
before a trainer is built — and derives TRL's two fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    stage: str  # recipe block, for messages
    per_step: int  # sequences per optimizer step, summed over processes
    per_step_name: str  # the recipe field(s) per_step comes from, e.g. "sft.examples_per_step"
    micro_batch_size: int  # sequences per forward/backward pass on one process
    processes: int = 1

    def with_processes(self, processes: int) -> BatchPlan:
        return BatchPlan(self.stage, self.per_step, self.per_step_name, self.micro_batch_size, processes)

    def problem(self) -> str | None:
        """Why these sizes cannot run (one line naming the fields), or None."""
        if self.per_step % (self.processes * self.micro_batch_size) == 0:
            return None
        micro = f"{self.stage}.micro_batch_size"
        if self.processes == 1:
            return f"{self.per_step_name} ({self.per_step}) must be a multiple of {micro} ({self.micro_batch_size})"
        return (f"{self.per_step_name} ({self.per_step}) must be a multiple of --processes × {micro} "
                f"({self.processes} × {self.micro_batch_size})")

    def trl_args(self) -> dict[str, int]:
        """``per_device_train_batch_size`` and ``gradient_accumulation_steps`` (ValueError when they do not split)."""
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        return {"per_device_train_batch_size": self.micro_batch_size,
                "gradient_accumulation_steps": self.per_step // (self.processes * self.micro_batch_size)}
