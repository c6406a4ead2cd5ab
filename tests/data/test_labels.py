"""Labels made by people -> preference pairs and agreement (data/labels.py), and labels files read as DPO /
reward-model pairs (data/pairs.py)."""

import json

import pytest

from thinktune.data.labels import (
    agreement,
    check_label,
    cohens_kappa,
    label_summary,
    preference_pairs,
    read_labels,
    trl_preference_rows,
)
from thinktune.data.pairs import load_pairs, read_pairs_file
from thinktune.data.records import DataError


def lab(item, who, choice, texts=("right", "wrong"), ranking=None, n=[0]):
    """A label row on ``item`` whose candidates are ``texts`` (ids "0", "1", …); ranking = candidate ids best first."""
    n[0] += 1
    ids = [str(i) for i in range(len(texts))]
    if ranking is None and choice in ("A", "B"):
        ranking = ["0", "1"] if choice == "A" else ["1", "0"]  # shown in the candidates' own order
    return {"label_id": f"lab{n[0]:06d}", "item": item, "annotator": who, "question": f"question {item}",
            "candidates": [{"id": i, "text": t} for i, t in zip(ids, texts)], "shown": ids, "choice": choice,
            "ranking": ranking or [], "reason": "", "verdict_seen": False}


def test_pairs_from_agreeing_labels_and_every_non_pair_counted():
    labels = [
        lab("q1", "ana", "A"),                       # one label: right > wrong
        lab("q2", "ana", "B"), lab("q2", "ben", "B"),  # two agreeing labels: one pair
        lab("q3", "ana", "A"), lab("q3", "ben", "B"),  # disagreement: no pair
        lab("q4", "ana", "tie"),
        lab("q5", "ana", "both_bad"),
        lab("q6", "ana", "skip"), lab("q6", "ben", "A"),  # a skip is no verdict: ben's label decides
        lab("q7", "ana", "skip"),                    # only a skip: the item is not judged
        lab("q8", "ana", "A", texts=("same", "same")),
        lab("q9", "ana", "rank", texts=("a", "b", "c"), ranking=["2", "0", "1"]),  # k = 3: 3 pairs
    ]
    pairs, counts = preference_pairs(labels)
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("q1:0>1", "right", "wrong"), ("q2:1>0", "wrong", "right"), ("q6:0>1", "right", "wrong"),
        ("q9:0>1", "a", "b"), ("q9:2>0", "c", "a"), ("q9:2>1", "c", "b")]  # pairs (0,1), (0,2), (1,2)
    assert all(p["question"] == f"question {p['id'].split(':')[0]}" for p in pairs)
    assert (counts.pairs, counts.tie, counts.both_bad, counts.disagreement, counts.identical) == (6, 1, 1, 1, 1)
    assert counts.labels == 12 and counts.items == 8 and counts.annotators == 2
    assert counts.choices == {"A": 4, "B": 3, "rank": 1, "tie": 1, "both_bad": 1, "skip": 2}


def test_cohens_kappa_by_hand_and_its_undefined_cases():
    pairs = [("first", "first")] * 4 + [("second", "second")] * 3 + [("first", "second")] * 2 + [("second", "first")]
    observed, expected, kappa = cohens_kappa(pairs)
    # p_o = 0.7; marginals 6/4 and 5/5 -> p_e = (6*5 + 4*5) / 100 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert (observed, expected) == pytest.approx((0.7, 0.5)) and kappa == pytest.approx(0.4)
    assert cohens_kappa([]) == (None, None, None)
    assert cohens_kappa([("tie", "tie")] * 3) == (1.0, 1.0, None)  # chance agreement 1: kappa undefined


def test_agreement_uses_each_items_first_two_annotators_in_the_candidates_own_order():
    labels = []
    for i, (a, b) in enumerate([("A", "A"), ("A", "A"), ("B", "B"), ("A", "B"), ("tie", "tie")]):
        labels += [lab(f"q{i}", "ana", a), lab(f"q{i}", "ben", b)]
    # ben saw q0 in the other order: his "B" is the same candidate as ana's "A"
    labels[1] = {**labels[1], "shown": ["1", "0"], "choice": "B", "ranking": ["0", "1"]}
    labels.append(lab("q0", "cy", "B"))  # a third label on q0 is not part of the pair
    labels.append(lab("q9", "ana", "A"))  # labelled once: no agreement item
    result = agreement(labels)
    assert result["items"] == 5 and result["observed"] == pytest.approx(0.8)
    # categories ana: first x3 (q0, q1, q3), second (q2), tie; ben: first x2, second x2, tie
    p_e = (3 * 2 + 1 * 2 + 1 * 1) / 25
    assert result["kappa"] == pytest.approx((0.8 - p_e) / (1 - p_e))
    assert result["by_pair"] == [{"annotators": ["ana", "ben"], "items": 5, "observed": pytest.approx(0.8),
                                  "kappa": pytest.approx((0.8 - p_e) / (1 - p_e))}]
    summary = label_summary(labels)
    assert summary["per_annotator"]["ana"]["labels"] == 6 and summary["agreement"]["items"] == 5


@pytest.mark.parametrize("change, field, message", [
    ({"choice": "C"}, "choice", "'C' is not one of"),
    ({"annotator": ""}, "annotator", "required"),
    ({"candidates": [{"id": "0", "text": "x"}]}, "candidates", "at least two"),
    ({"ranking": ["0"]}, "ranking", "needs every candidate ranked"),
    ({"ranking": ["0", "7"]}, "ranking", "distinct candidate ids"),
    ({"choice": "tie"}, "ranking", "must be empty for choice tie"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_a_bad_label_row_names_file_line_and_field(tmp_path, change, field, message):
    path = tmp_path / "labels.jsonl"
    rows = [lab("q1", "ana", "A"), {**lab("q2", "ana", "A"), **change}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        read_labels(path)
    assert str(err.value).startswith(f"{path}:2: {field}: ") and message in str(err.value)


def test_a_labels_file_reads_as_pairs_for_dpo_and_the_reward_model(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [lab("q1", "ana", "A"), lab("q2", "ana", "tie"), lab("q3", "ana", "B")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, stats = load_pairs(path)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("right", "wrong"), ("wrong", "right")]
    assert stats["source"] == "labels" and stats["labels"] == 3 and stats["tie"] == 1
    assert read_pairs_file(path) == pairs
    only_ties = tmp_path / "ties.jsonl"
    only_ties.write_text(json.dumps(lab("q1", "ana", "tie")) + "\n")
    with pytest.raises(DataError, match=r"no preference pairs in 1 labels \(1 tie, 0 both bad, 0 disagreeing\)"):
        load_pairs(only_ties)


def test_trl_preference_rows_are_conversational():
    rows = trl_preference_rows([{"id": "q1:0>1", "question": "Compute 1 + 1.", "chosen": "2", "rejected": "3"}])
    assert rows == [{"id": "q1:0>1", "prompt": [{"role": "user", "content": "Compute 1 + 1."}],
                     "chosen": [{"role": "assistant", "content": "2"}],
                     "rejected": [{"role": "assistant", "content": "3"}]}]
    check_label(lab("q1", "ana", "A"), "x", 1)  # the helper's rows are valid labels
