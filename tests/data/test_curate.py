"""Curation filters on real GSM8K data and hand-made tables: the acceptance numbers of issue 4 are asserted here."""

import random
import re

import pytest

from thinktune.data.curate import (
    _LAST_EQ,
    ContaminationIndex,
    CurateOptions,
    CurateReport,
    LengthChecker,
    MinHasher,
    check_consistency,
    curate_stream,
    final_line,
    mix,
    near_dedupe,
    near_duplicates,
    split_by_id,
    states_answer,
)
from thinktune.data.records import Record
from thinktune.data.sources import SourceSpec, load_records


def R(i, q="What is 2 + 3?", reasoning="2 + 3 = 5", answer="5", task=""):
    return Record(id=str(i), question=q, reasoning=reasoning, answer=answer, task=task)


@pytest.fixture(scope="module")
def gsm8k(request):
    from tests.helpers.pipeline import SHARED

    if not (SHARED / "gsm8k_test.jsonl").is_file():
        pytest.skip("real data ../shared/data not found")
    test, _ = load_records(SourceSpec(path=str(SHARED / "gsm8k_test.jsonl")))
    train, _ = load_records(SourceSpec(path=str(SHARED / "gsm8k_train.jsonl")))
    return test, train


# ---- answer consistency ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reasoning, answer, ok", [
    ("2 + 3 = 5", "5", True),
    ("2 + 3 = 6", "5", False),  # altered final computed number
    ("2 + 3 = 5\nSo she has 5 apples left after 2 days.", "5", True),  # units after the result do not matter
    ("It costs $1,200 in total.", "1200", True),
    ("We get $400 000 - $282 000 = $118 000.", "118000", True),
    ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", True),
    ("no numbers at all", "5", False),
    ("", "5", True),  # no reasoning: not judged
])
def test_consistency_table(reasoning, answer, ok):
    assert (check_consistency(R(1, reasoning=reasoning, answer=answer)) is None) is ok


def test_consistency_on_gsm8k_test_keeps_97_percent_and_catches_altered_numbers(gsm8k):
    test, _ = gsm8k
    rejected = [(r.id, check_consistency(r)) for r in test]
    rejected = [(i, why) for i, why in rejected if why]
    assert 1 - len(rejected) / len(test) >= 0.97, rejected
    assert all(why[0] and why[1] for _, why in rejected)  # each rejected row has a reason
    rng = random.Random(0)
    altered = caught = 0
    for r in test:
        m = list(_LAST_EQ.finditer(r.reasoning))
        if not m:
            continue
        last = m[-1]
        value = float(last.group(1).replace(",", "").replace(" ", ""))
        new = value + rng.choice([1, -1, 2, 10, 0.5])
        if abs(new - float(r.answer)) < 1e-9:
            new += 1
        shown = str(int(new)) if new == int(new) else str(new)
        text = r.reasoning[: last.start(1)] + shown + r.reasoning[last.end(1):]
        changed = r.model_copy(update={"reasoning": text})
        verdict = check_consistency(changed)
        # A final line that concludes in words with the right answer ("Mishka spent $243 on clothing.") is read as the
        # trace's answer, as GSM8K's own rows need (tests/data/test_consistency.py); every other change is caught.
        assert verdict is not None or states_answer(changed, final_line(text)), (r.id, text[-120:])
        altered += 1
        caught += verdict is not None
    assert altered > 1300 and caught / altered >= 0.96  # 1272 of 1314 at the time of writing


def test_consistency_uses_task_traces():
    from thinktune.data.tasks import get_task

    for name in ("countdown", "ordering", "chain_arith"):
        recs = get_task(name).generate(50, seed=2)
        assert all(check_consistency(r) is None for r in recs), name
        for r in recs[:10]:
            if name == "ordering":  # reverse the final order: the asked-for rank now names someone else
                head, _, chain = r.reasoning.rpartition(": ")
                if r.meta["position"] * 2 - 1 == r.meta["people"]:
                    continue  # the middle person stays in the middle
                broken = head + ": " + " > ".join(reversed(chain.split(" > ")))
            else:  # change the trace's last number
                m = list(re.finditer(r"\d+", r.reasoning))[-1]
                broken = r.reasoning[: m.start()] + str(int(m.group()) + 1) + r.reasoning[m.end():]
            assert check_consistency(r.model_copy(update={"reasoning": broken})) is not None, (name, broken)


# ---- decontamination --------------------------------------------------------------------------------------------

def _perturb(q: str, rng: random.Random) -> str:
    words = q.split()
    for _ in range(2):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            words[i] = rng.choice(["apple", "quickly", "seven", "blue", "market", "however"])
        else:
            words.insert(i, rng.choice(["really", "then", "also", "green"]))
    return " ".join(words)


def test_decontamination_recall_and_false_positive_rate(gsm8k):
    test, train = gsm8k
    rng = random.Random(0)
    index = ContaminationIndex(test)
    planted = [R(f"p{i}", q=_perturb(r.question, rng)) for i, r in enumerate(rng.sample(test, 200))]
    found = sum(bool(index.matches(p.question)) for p in planted)
    assert found / 200 >= 0.95, found
    flagged = [r.id for r in train if index.matches(r.question)]
    assert len(flagged) / len(train) < 0.01, flagged
    rep = CurateReport()
    kept = list(curate_stream(planted + train[:300], CurateOptions(contamination=index, answer_consistency=False), rep))
    assert rep.filter("decontaminate").removed >= 190 and len(kept) >= 290
    assert rep.contamination[0]["eval_ids"][0].startswith("gsm8k-test-")  # which eval item matched is reported


def test_decontamination_short_eval_items():
    index = ContaminationIndex([R("e1", q="Compute 3 + 4.")])
    assert index.matches("Please compute 3 + 4. Thanks")
    assert not index.matches("Compute 3 + 5.")


# ---- dedupe -------------------------------------------------------------------------------------------------------

def test_exact_dedupe_normalises_case_and_whitespace():
    rows = [R(1), R(2, q="what  is 2 + 3?"), R(3, q="What is 2 + 4?", reasoning="2 + 4 = 6", answer="6")]
    rep = CurateReport()
    kept = list(curate_stream(rows, CurateOptions(), rep))
    assert [r.id for r in kept] == ["1", "3"]
    assert rep.filter("exact_dedupe").examples[0]["id"] == "2"


def test_near_dedupe_precision_recall_on_planted(gsm8k):
    _, train = gsm8k
    rng = random.Random(1)
    base = train[:2000]
    planted = []
    for i, r in enumerate(rng.sample(base, 100)):
        planted.append(r.model_copy(update={"id": f"near-{i}", "question": _perturb(r.question, rng)}))
    rows = base + planted
    rep = CurateReport()
    rep.kept = len(rows)
    kept = near_dedupe(rows, rep)
    removed = {e["id"] for e in rep.filter("near_dedupe").examples}
    removed_all = {r.id for r in rows} - {r.id for r in kept}
    tp = len({p.id for p in planted} & removed_all)
    assert tp / 100 >= 0.9, tp  # recall
    assert tp / max(len(removed_all), 1) >= 0.9, removed_all - {p.id for p in planted}  # precision
    assert removed <= removed_all


def test_near_duplicates_hand_case():
    h = MinHasher()
    texts = ["the quick brown fox jumps over the lazy dog near the river bank today",
             "the quick brown fox jumps over the lazy dog near the river bank tonight",
             "completely different words about arithmetic chains and running totals here"]
    drop = near_duplicates(h.signatures(texts), threshold=0.7)
    assert list(drop) == [1] and drop[1][0] == 0


# ---- length -------------------------------------------------------------------------------------------------------

def test_length_filter_bytes_and_tokenizer():
    from thinktune.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer(["What is 2 + 3? 2 + 3 = 5"] * 10, vocab_size=300)
    long = R(2, reasoning="2 + 3 = 5\n" * 200)
    for t in (None, tok):
        lc = LengthChecker(t, max_completion=100)
        verdicts = lc.check_batch([R(1), long])
        assert verdicts[0] is None and verdicts[1][0] == "completion_too_long"
    lc = LengthChecker(tok, max_completion=1000)
    assert lc.check_batch([R(1)]) == [None] and lc.tokenized == 0  # short rows skip the tokenizer


# ---- split and mix --------------------------------------------------------------------------------------------

def test_split_is_stable_when_rows_are_added():
    rows = [R(f"id-{i}") for i in range(2000)]
    train, held = split_by_id(rows, 0.1)
    assert 150 < len(held) < 250
    more = rows + [R(f"new-{i}") for i in range(3000)]
    train2, held2 = split_by_id(list(reversed(more)), 0.1)
    assert {r.id for r in held} <= {r.id for r in held2}
    assert {r.id for r in train} <= {r.id for r in train2}


def test_mix_ratio():
    groups = {"reasoning": [R(f"r{i}") for i in range(900)], "non_reasoning": [R(f"n{i}") for i in range(200)]}
    rows, info = mix(groups, {"reasoning": 3, "non_reasoning": 1})
    assert info["kept"] == {"reasoning": 600, "non_reasoning": 200} and len(rows) == 800
    rows2, _ = mix(groups, {"reasoning": 3, "non_reasoning": 1})
    assert [r.id for r in rows] == [r.id for r in rows2]
    _, info = mix(groups, {"reasoning": 3, "non_reasoning": 1}, total=400)
    assert info["kept"] == {"reasoning": 300, "non_reasoning": 100}
