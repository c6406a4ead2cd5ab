"""The answer-consistency filter on GSM8K's own final lines (issue 21, point 7): correct rows whose last ``=`` is an
intermediate value are kept, traces that end at another number are still removed, and on GSM8K train the filter
removes at most 0.2 % of the rows, each listed with its reason in the curation stats."""

import pytest

from thinktune.data.curate import CurateOptions, CurateReport, check_consistency, curate_records
from thinktune.data.records import Record
from thinktune.data.sources import SourceSpec, load_records


def R(reasoning, answer):
    return Record(id="r", question="q", reasoning=reasoning, answer=answer, task="gsm8k")


@pytest.mark.parametrize("reasoning, answer", [
    # gsm8k train-109 and train-303, as the issue reported them ("reasoning ends at '5'", "… at '52'")
    ("Then we will divide each side by 5 to figure out how many nuggets Alyssa ate, 100/5 = 5A/5 or 20 = A.", "20"),
    ("He would spend $52 on the 12-pound bags because 4 x 13 = 52\n"
     "He spends $50 if he buys the cheapest flour because 50 < 52", "50"),
    ("120 ounces/16 ounces = 7.5 cans of chickpeas.\nSince Thomas cannot buy half a can, he needs to buy 8 cans.", "8"),
    ("15 trucks / 90 vehicles * 100% = 16.66...%, which rounds up to 17%.", "17"),
    ("The grocery store is .50-.25 = $0.25 more expensive per can", "25"),  # dollars for a cents answer
    ("There are 15 girls in the class because 25-10=15\n80% of the girls like basketball because 12/15=.8", "80"),
    ("Subtracting x from both sides we get 7 = x, so David is 7 years old.", "7"),
    ("And 16 minutes after 5:51 AM is 6:07 AM.\nThus, 6:07 AM is 7 minutes after 6:00 AM.", "7"),
])
def test_correct_gsm8k_traces_are_kept(reasoning, answer):
    assert check_consistency(R(reasoning, answer)) is None


@pytest.mark.parametrize("reasoning, answer", [
    ("There are 5*20 = 100 tanks in the yard.\nAltogether, there are 100+20 = 120 trucks and tanks in the yard.", "140"),
    # the label's number stands only among the operands of the last computation (gsm8k train-3263)
    ("Find the number of cavities Andy gets: 16 canes / 4 canes/cavity = 4 cavities", "16"),
    # the answer stated before a computation that ends elsewhere
    ("He will make money in year 13 because 12 + 1 = 13.5", "13"),
    ("So he played 14*20=140 minutes", "280"),
])
def test_traces_that_end_elsewhere_are_removed(reasoning, answer):
    kind, detail = check_consistency(R(reasoning, answer))
    assert kind == "mismatch" and f"does not state {answer!r}" in detail


def test_false_rejection_rate_on_gsm8k_train(shared_data):
    records, _ = load_records(SourceSpec(path=str(shared_data / "gsm8k_train.jsonl"), format="gsm8k"))
    report = CurateReport()
    opts = CurateOptions(dedupe=False, near_dedupe=False, answer_consistency=True)
    kept = list(curate_records(records, opts, report))
    removed = report.to_dict()["removed"]["answer_consistency"]
    assert len(records) == 7473 and len(kept) + removed["removed"] == len(records)
    assert removed["removed"] <= 0.002 * len(records)  # 14 (0.19 %) at the time of writing; was 85 (1.1 %)
    listed = removed["examples"]  # every rejection, with its reason
    assert len(listed) == removed["removed"] and all(e["kind"] == "mismatch" and e["reason"] for e in listed)
    assert removed["reasons"] == {"mismatch": removed["removed"]}
    assert not {"gsm8k-train-109", "gsm8k-train-303"} & {e["id"] for e in listed}
