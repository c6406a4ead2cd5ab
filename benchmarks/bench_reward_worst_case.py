"""Benchmark: the worst time one built-in reward takes on one pathological completion of up to 1 MB.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_reward_worst_case.py              # --size 1000000 --timeout 30

Target (issue 20): every reward scores any completion of at most 1 MB in at most 1 s on a CPU core, so a hostile or
degenerate policy sample can neither stall a GRPO step nor turn into a reward error (errors above
``grpo.reward_max_error_fraction`` of a batch stop training). The inputs are the shapes that broke the parsers:
runs of unclosed tags (the answer-tag parser was quadratic: 200k unclosed ``<answer>`` tags took 53 s per reward),
huge numbers (a 5,000-digit answer raised instead of scoring 0), unbalanced braces, long whitespace runs after
the keywords the extractors look for, and plain large texts. ``unclosed_answer_tags_200k`` is 1.6 MB, the
issue's own case; every other input is ``--size`` characters.

Each reward runs in its own process (Math-Verify warmed up first, as a reward worker does), one call per input,
timed in CPU seconds of that process (``time.process_time``: the measure of the work, unaffected by other load on
a shared machine; Math-Verify's own wall-clock alarm is raised to match); a call over ``--timeout`` wall-clock
seconds is stopped and reported as such. Printed: per reward the worst input and its
time, then whether all are within ``--budget``; ``--json`` writes the full reward × input matrix.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _render(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n<answer>{answer}</answer>"


def cases(size: int) -> dict[str, Callable[[], str]]:
    """Pathological completions, each built lazily (about ``size`` characters unless named otherwise)."""
    n = size
    return {
        "unclosed_answer_tags_200k": lambda: "<answer>" * 200_000,
        "unclosed_answer_tags": lambda: "<answer>" * (n // 8),
        "unclosed_think_tags": lambda: "<think>" * (n // 7),
        "think_then_unclosed_answers": lambda: "<think>x</think>" + "<answer>" * (n // 8),
        "alternating_open_tags": lambda: "<think><answer>" * (n // 15),
        "closed_answer_blocks": lambda: "<answer>1</answer>" * (n // 18),
        "closed_think_blocks": lambda: "<think>a</think>" * (n // 16),
        "long_reasoning": lambda: _render("12 + 6 = 18\n" * (n // 12), "18"),
        "huge_number_answer": lambda: _render("r", "9" * (n - 40)),
        "5000_digit_answer": lambda: _render("9 * 9", "9" * 5000),
        "unclosed_boxed": lambda: _render("r", "\\boxed{" * (n // 7)),
        "boxed_everywhere": lambda: "\\boxed{1}" * (n // 9),
        "open_braces_answer": lambda: _render("r", "{" * (n - 40)),
        "latex_sum_answer": lambda: _render("r", "\\frac{1}{2}+" * (n // 12)),
        "hedged_answer": lambda: _render("r", "1 or " * (n // 5)),
        "comma_list_answer": lambda: _render("r", "1," * (n // 2)),
        "answer_is_then_spaces": lambda: "the answer is" + " " * (n - 20) + "!",
        "hashes_then_spaces": lambda: "#### 1" + " " * (n - 10) + "x",
        "a_colon_then_spaces": lambda: "Answer: 1" + " " * (n - 12) + "x",
        "many_numbers": lambda: "1 " * (n // 2),
        "one_long_word": lambda: "a" * n,
        "newlines": lambda: "\n" * n,
        "repeated_words": lambda: _render("the cat sat on the mat " * (n // 23), "18"),
        "mixed_scripts": lambda: _render("数 число number 数字 " * (n // 20), "18"),
        "idk_spam": lambda: _render("I don't know " * (n // 13), "I don't know"),
        "nested_boxed": lambda: _render("r", "\\boxed{" * (n // 8) + "1" + "}" * (n // 8)),
        "unclosed_math_spans": lambda: _render("\\( $$ " * (n // 7), "18"),
        "dollar_run_last_line": lambda: "answer: " + "$" * (n - 10) + "x",
        "spaces_in_answer": lambda: _render("r", "1" + " " * (n - 40) + "2"),
    }


REWARDS: list[tuple[str, str, dict]] = [
    ("correct", "correct", {}),
    ("correct[auto]", "correct", {"extractor": "auto"}),
    ("correct[boxed]", "correct", {"extractor": "boxed"}),
    ("correct[gsm8k]", "correct", {"extractor": "gsm8k"}),
    ("correct[a_colon]", "correct", {"extractor": "a_colon"}),
    ("correct[last_number]", "correct", {"extractor": "last_number"}),
    ("correct[choice]", "correct", {"extractor": "choice"}),
    ("format", "format", {}),
    ("tag_count", "tag_count", {}),
    ("cosine_length", "cosine_length", {}),
    ("overlong", "overlong", {"max_len": 4000, "cache_len": 1000}),
    ("repetition", "repetition", {}),
    ("language", "language", {}),
    ("abstain", "abstain", {}),
]


def _child(reward: str, kwargs: dict, size: int, names: list[str], conn) -> None:
    from thinktune.data.records import Record
    from thinktune.data import answers
    from thinktune.rewards.library import resolve

    answers.MATH_VERIFY_TIMEOUT_S = 600  # its SIGALRM is wall-clock: on a busy machine slow scheduling would error
    answers.warm_up()
    fn = resolve(reward)
    record = Record(id="bench", question="What is 12 + 6?", answer="18")
    built = cases(size)
    for name in names:
        text = built[name]()
        t0 = time.process_time()
        try:
            fn(text, record, **kwargs)
            error = None
        except Exception as e:  # noqa: BLE001 - an error is a result here (it would be a failed reward call)
            error = f"{type(e).__name__}: {str(e)[:80]}"
        conn.send((name, time.process_time() - t0, error))
    conn.close()


def measure_inline(size: int, names: list[str] | None = None, labels: list[str] | None = None,
                   repeats: int = 1) -> dict[str, dict[str, float]]:
    """{reward label: {input: best-of-``repeats`` CPU seconds}} in this process, no time-out (small sizes, tests)."""
    from thinktune.data.records import Record
    from thinktune.rewards.library import resolve

    record = Record(id="bench", question="What is 12 + 6?", answer="18")
    built = {n: make() for n, make in cases(size).items() if not names or n in names}
    out: dict[str, dict[str, float]] = {}
    for label, reward, kwargs in REWARDS:
        if labels and label not in labels:
            continue
        fn = resolve(reward)
        out[label] = {}
        for name, text in built.items():
            best = float("inf")
            for _ in range(repeats):
                t0 = time.process_time()
                fn(text, record, **kwargs)
                best = min(best, time.process_time() - t0)
            out[label][name] = best
    return out


def measure(size: int, timeout: float, only: list[str] | None = None, only_cases: list[str] | None = None,
            progress=None) -> dict[str, dict[str, dict]]:
    """{reward label: {input: {"seconds", "error", "timed_out"}}}, each reward in its own process; ``progress``
    is called with (label, row) after each reward."""
    ctx = mp.get_context("spawn")
    names = [n for n in cases(size) if not only_cases or n in only_cases]
    out: dict[str, dict[str, dict]] = {}
    for label, reward, kwargs in REWARDS:
        if only and label not in only:
            continue
        out[label] = {}
        todo = list(names)
        while todo:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(reward, kwargs, size, todo, child), daemon=True)
            proc.start()
            child.close()
            warmed = False
            while todo:
                if not parent.poll(timeout + (120 if not warmed else 0)):  # the first wait includes start-up
                    proc.kill()
                    out[label][todo.pop(0)] = {"seconds": timeout, "error": None, "timed_out": True}
                    break
                try:
                    name, seconds, error = parent.recv()
                except EOFError:  # the process died (e.g. MemoryError): that input is an error
                    out[label][todo.pop(0)] = {"seconds": None, "error": "process died", "timed_out": False}
                    break
                warmed = True
                out[label][name] = {"seconds": seconds, "error": error, "timed_out": False}
                todo.remove(name)
            proc.join(5)
        if progress is not None:
            progress(label, out[label])
    return out


def worst(matrix: dict[str, dict[str, dict]]) -> dict[str, tuple[str, float, str | None]]:
    """Per reward: (input, seconds, error) of its slowest input (errors and time-outs rank first)."""
    result = {}
    for label, row in matrix.items():
        name, cell = max(row.items(), key=lambda kv: (kv[1]["timed_out"], kv[1]["error"] is not None,
                                                      kv[1]["seconds"] or 0.0))
        shown = ">timeout" if cell["timed_out"] else cell["error"]
        result[label] = (name, cell["seconds"] or 0.0, shown)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="characters per input (default 1 MB)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a call is stopped")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds allowed per reward call")
    parser.add_argument("--rewards", nargs="*", help="only these reward labels")
    parser.add_argument("--cases", nargs="*", help="only these inputs")
    parser.add_argument("--json", type=Path, help="write the full matrix here (updated after each reward)")
    args = parser.parse_args(argv)
    partial: dict[str, dict] = {}

    def progress(label: str, row: dict) -> None:
        partial[label] = row
        name, cell = max(row.items(), key=lambda kv: (kv[1]["timed_out"], kv[1]["error"] is not None,
                                                      kv[1]["seconds"] or 0.0))
        print(f"  {label}: worst {name} {cell['seconds'] or 0:.3f}s"
              f"{' (timed out)' if cell['timed_out'] else ''}{' ' + cell['error'] if cell['error'] else ''}",
              file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps({"size": args.size, "partial": partial}, indent=1) + "\n")

    matrix = measure(args.size, args.timeout, args.rewards, args.cases, progress)
    table = worst(matrix)
    print(f"worst time per reward over {len(cases(args.size))} pathological inputs of {args.size:,} characters")
    print(f"{'reward':22s} {'worst input':30s} {'seconds':>9s}  note")
    over = []
    for label, (name, seconds, note) in table.items():
        print(f"{label:22s} {name:30s} {seconds:9.3f}  {note or ''}")
        if note or seconds > args.budget:
            over.append(label)
    print(f"budget {args.budget:.2f} s per call: " + ("all within" if not over else f"over: {', '.join(over)}"))
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "budget": args.budget, "matrix": matrix,
                                         "worst": table}, indent=1) + "\n")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
