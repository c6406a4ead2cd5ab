"""recipes/data/chain_arith_paraphrases.jsonl: hand-written chain_arith problems worded unlike the training template.

Each row's answer and step trace must follow from its expression (left to right), the operands must obey the task's
limits, every operand must be named in the question (digits or number words) and no question may use the training
template ("Compute a op b ...").
"""

import re
from collections import Counter
from pathlib import Path

from thinktune.data.records import read_records
from thinktune.data.tasks import get_task

PATH = Path(__file__).resolve().parents[2] / "recipes" / "data" / "chain_arith_paraphrases.jsonl"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMBER = re.compile(r"\d+|\b(?:" + "|".join(WORDS) + r")\b", re.IGNORECASE)


def value(token: str) -> int:
    return int(token) if token.isdigit() else WORDS.index(token.lower())


def test_every_row_is_consistent_with_its_expression():
    rows = read_records(PATH)
    assert len(rows) >= 100 and len({r.id for r in rows}) == len(rows) == len({r.question for r in rows})
    task = get_task("chain_arith")
    for r in rows:
        terms = r.meta["expression"].split()
        total, lines = int(terms[0]), []
        assert 2 <= total <= 9, r.id
        for op, b in zip(terms[1::2], map(int, terms[2::2])):
            assert op in "+-" and (2 <= b <= 9 if op == "+" else 1 <= b <= 9), r.id
            new = total + b if op == "+" else total - b
            assert 0 <= new <= 99, r.id
            lines.append(f"{total} {op} {b} = {new}")
            total = new
        assert r.meta["n_ops"] == len(lines) and 2 <= len(lines) <= 4, r.id
        assert r.reasoning == "\n".join(lines) and r.answer == str(total), r.id
        assert task.verify(r, r.answer), r.id
        # every operand is named in the question, and nothing else numeric is
        assert Counter(value(t) for t in NUMBER.findall(r.question)) == Counter(map(int, terms[0::2])), r.id


def test_no_question_uses_the_training_template_and_wordings_vary():
    rows = read_records(PATH)
    assert not [r.id for r in rows if re.match(r"\s*Compute\s+\d", r.question)]
    frames = {re.sub(r"\s+", " ", NUMBER.sub("#", r.question)).strip().lower() for r in rows}
    assert len(frames) >= 60
    assert Counter(r.meta["n_ops"] for r in rows) == {2: 48, 3: 48, 4: 48}
