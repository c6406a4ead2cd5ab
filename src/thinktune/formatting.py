"""The completion template and the one parser.

Every part of thinktune that reads a model's output (rewards, curation, the audit, the server) goes through
:func:`parse_completion`; every part that writes a training target goes through :func:`render`. Keeping both in
one module is what stops "the reward parses differently from the evaluation" bugs.

Default completion format (docs/ARCHITECTURE.md, "Data model")::

    <think>
    {reasoning}
    </think>
    <answer>{answer}</answer>

Deliberate choices, each covered by tests:

1. The tags are ordinary text, never special tokens: decoding with ``skip_special_tokens=True`` would otherwise
   erase them and every format / answer reward would silently read 0 (a pitfall seen with TRL).
2. The parser is *lenient about whitespace* between ``</think>`` and ``<answer>`` (the official Dr. GRPO grader,
   arXiv 2503.20783, requires exactly ``"</think> <answer>"``); the strict format reward is what judges layout.
3. A completion whose prompt pre-filled ``<think>`` (R1-style chat templates) starts inside the think block; pass
   ``think_prefilled=True`` and the missing opening tag is not held against it.
4. ``answer`` is ``None`` unless there is exactly one closed answer block: several answer blocks are a known
   reward hack (huggingface/open-r1 PR #418), so the parser never picks one of them.
5. Parsing is linear in the length of the completion, whatever it holds (runs of unclosed tags included): a
   policy's sample must never stall a reward (benchmarks/bench_reward_worst_case.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CompletionFormat:
    """The four tags of the completion template. Configurable per recipe (``format:`` block)."""

    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"

    @property
    def stop(self) -> str:
        """Generation may stop once this string has been produced."""
        return self.answer_close


DEFAULT_FORMAT = CompletionFormat()

# Instruction prepended to the question for models that were not trained on thinktune's format
# (base / instruct models). The tiny quickstart model is trained without it.
DEFAULT_INSTRUCTION = (
    "Think step by step inside <think> </think>, then give only the final answer inside <answer> </answer>."
)



@dataclass(frozen=True)
class PromptContract:
    """How a model was prompted in training: the instruction before each question, the system message and the
    completion format. A run writes it into every ``final/thinktune_model.json`` (and an export keeps it), so
    ``generate``, ``audit`` and ``serve`` prompt the model exactly as its run did; the chat template itself travels
    with the saved tokenizer."""

    instruction: str | None = None
    system: str | None = None
    fmt: CompletionFormat = DEFAULT_FORMAT

    def to_dict(self) -> dict:
        return {"instruction": self.instruction, "system": self.system, "format": self.fmt.__dict__.copy()}

    @classmethod
    def from_dict(cls, d: dict) -> PromptContract:
        return cls(d.get("instruction"), d.get("system"), CompletionFormat(**d.get("format", {})))


def resolve_instruction(choice: str, contract: PromptContract | None) -> str | None:
    """The instruction for ``--instruction CHOICE``: ``auto`` (the model's own prompt contract when it has one,
    thinktune's format instruction for any other model), ``none``, ``default``, or the text itself."""
    if choice == "auto":
        return contract.instruction if contract is not None else DEFAULT_INSTRUCTION
    return {"none": None, "default": DEFAULT_INSTRUCTION}.get(choice, choice)

@dataclass(frozen=True)
class Parsed:
    """A completion split back into its parts.

    ``well_formed`` is the strict layout test: exactly one non-empty think block, then exactly one answer block,
    nothing but whitespace before, between and after.
    """

    reasoning: str | None  # text inside the (first) think block, stripped; None when there is none
    steps: list[str] = field(default_factory=list)  # non-empty lines of the reasoning (steps are lines)
    answer: str | None = None  # text inside the answer block when there is exactly one, stripped
    well_formed: bool = False
    n_think_blocks: int = 0  # closed think blocks
    n_answer_blocks: int = 0  # closed answer blocks
    trailing: str = ""  # non-whitespace text after the last closing tag


def render(reasoning: str, answer: str, fmt: CompletionFormat = DEFAULT_FORMAT) -> str:
    """The training target for one record: reasoning in the think block, answer in the answer block."""
    return f"{fmt.think_open}\n{reasoning.strip()}\n{fmt.think_close}\n{fmt.answer_open}{answer.strip()}{fmt.answer_close}"


def split_steps(reasoning: str) -> list[str]:
    """Steps of a trace are its non-empty lines (docs/ARCHITECTURE.md, "Data model")."""
    return [line.strip() for line in reasoning.splitlines() if line.strip()]


@dataclass(frozen=True)
class _Block:
    start: int  # index of the opening tag
    end: int  # index just after the closing tag
    inner: str  # the text between the tags


def _blocks(text: str, open_tag: str, close_tag: str) -> list[_Block]:
    """Non-overlapping ``open … close`` blocks, left to right, each closed by the first close tag after it — what
    ``re.finditer(open(.*?)close)`` finds, in linear time: the regex retried the lazy scan from every unclosed
    opening tag, quadratic in a run of them (200k unclosed ``<answer>`` tags took 53 s per reward)."""
    out, pos = [], 0
    while (start := text.find(open_tag, pos)) >= 0:
        close = text.find(close_tag, start + len(open_tag))
        if close < 0:  # no later opening tag can be closed either
            break
        pos = close + len(close_tag)
        out.append(_Block(start, pos, text[start + len(open_tag) : close]))
    return out


def parse_completion(text: str, fmt: CompletionFormat = DEFAULT_FORMAT, think_prefilled: bool = False) -> Parsed:
    """Parse a completion into (reasoning, steps, answer, well_formed).

    ``think_prefilled``: the prompt already ended with the think-open tag, so the completion starts inside it.
    """
    if think_prefilled and not text.lstrip().startswith(fmt.think_open):
        text = fmt.think_open + text
    thinks = _blocks(text, fmt.think_open, fmt.think_close)
    answers = _blocks(text, fmt.answer_open, fmt.answer_close)
    reasoning = thinks[0].inner.strip() if thinks else None
    answer = answers[0].inner.strip() if len(answers) == 1 else None

    last_end = max([m.end for m in thinks + answers], default=0)
    trailing = text[last_end:].strip()

    well_formed = False
    if len(thinks) == 1 and len(answers) == 1 and reasoning:
        think, ans = thinks[0], answers[0]
        before = text[: think.start].strip()
        between = text[think.end : ans.start].strip()
        n_tags = sum(text.count(t) for t in (fmt.think_open, fmt.think_close, fmt.answer_open, fmt.answer_close))
        well_formed = (
            think.end <= ans.start
            and not before
            and not between
            and not trailing
            and n_tags == 4  # no stray or nested tags anywhere
            and bool(answer)
        )
    return Parsed(
        reasoning=reasoning,
        steps=split_steps(reasoning or ""),
        answer=answer,
        well_formed=well_formed,
        n_think_blocks=len(thinks),
        n_answer_blocks=len(answers),
        trailing=trailing,
    )


def chat_prompt(tokenizer, question: str, instruction: str | None = None, system: str | None = None) -> str:
    """The prompt text for one question, through the tokenizer's chat template (generation prompt added).

    ``instruction`` is prepended to the question for models not trained on thinktune's format.
    Falls back to a plain "Question/Answer" layout when the tokenizer has no chat template.
    """
    content = f"{instruction}\n\n{question}" if instruction else question
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (f"{system}\n\n" if system else "") + f"Question: {content}\nAnswer: "
