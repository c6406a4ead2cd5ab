"""The labelling session's store (feedback/store.py) and the items it serves (feedback/items.py), without HTTP:
exactly-once labels, who gets which item (overlap, skip, lease, resume after a restart), the export that never
overwrites a user's file, and the three sources of items."""

import json
import time

import pytest

from tests.helpers.labelling import write_candidates
from thinktune.data.labels import read_labels
from thinktune.data.records import DataError
from thinktune.feedback.items import from_candidates_file, open_source
from thinktune.feedback.store import LabelStore, Settings, StoreError, shown_order
from thinktune.formatting import render


@pytest.fixture
def items(tmp_path):
    write_candidates(tmp_path / "cands.jsonl", 6, xss=False)
    return from_candidates_file(tmp_path / "cands.jsonl", k=2, seed=0)


def test_a_label_is_stored_once_whatever_is_resent(tmp_path, items):
    store = LabelStore(tmp_path / "s.sqlite", items)
    item = store.next_item("ana")
    assert store.add_label("ana", "label-0001", item.id, "A") is True
    assert store.add_label("ana", "label-0001", item.id, "A") is False  # a retry after a lost answer
    with pytest.raises(StoreError) as err:  # the item is done: a second label with a new id is refused
        store.add_label("ana", "label-0002", item.id, "B")
    assert err.value.status == 409
    with pytest.raises(StoreError) as err:  # nobody gave ben this item
        store.add_label("ben", "label-0003", store.item("q3")[0].id, "A")
    assert err.value.status == 409
    with pytest.raises(StoreError, match="already used for another label"):
        store.add_label("ben", "label-0001", item.id, "A")
    with pytest.raises(StoreError, match="choice 'C' is not one of"):
        store.add_label("ana", "label-0004", "q1", "C")
    rows = store.labels()
    assert [(r["label_id"], r["item"], r["choice"]) for r in rows] == [("label-0001", item.id, "A")]
    shown = shown_order(0, item.id, "ana", 2)
    assert rows[0]["shown"] == shown and rows[0]["ranking"] == shown  # A = the candidate shown first, ranked first


def test_overlap_skip_and_a_restart_resume_where_each_annotator_stopped(tmp_path, items):
    path = tmp_path / "s.sqlite"
    store = LabelStore(path, items, Settings(seed=0, overlap=1.0))  # every item wants two annotators
    a1, b1 = store.next_item("ana"), store.next_item("ben")
    assert a1.id == b1.id == "q0"  # the doubled item goes to both
    assert store.next_item("ana").id == "q0"  # until labelled, the same item comes back
    store.add_label("ana", "ana-label-1", "q0", "A")
    a2 = store.next_item("ana")
    assert a2.id == "q1"
    store.add_label("ana", "ana-label-2", "q1", "skip")  # skipping does not count as a judgement
    assert store.item("q1")[2] == 0
    assert store.next_item("ana").id == "q2"
    store.close()

    store = LabelStore(path, items)  # a restarted server
    assert store.settings.overlap == 1.0
    assert store.next_item("ana").id == "q2" and store.next_item("ben").id == "q0"
    assert store.progress("ana") == {"items": 6, "judgements_needed": 12, "judgements_done": 1, "labels": 2,
                                     "mine": 2}
    store.add_label("ben", "ben-label-1", "q0", "tie")
    assert store.next_item("ben").id == "q1"  # ana's skip left q1 open; ben may take it
    store.close()


def test_a_held_item_passes_on_after_its_lease(tmp_path, items):
    store = LabelStore(tmp_path / "s.sqlite", items, Settings(lease_seconds=0.2))
    assert store.next_item("ana").id == "q0"
    assert store.next_item("ben").id == "q1"  # q0 is ana's while her lease runs
    time.sleep(0.3)
    assert store.next_item("cy").id == "q0"  # lease over: cy may take it
    store.add_label("cy", "cy-label-01", "q0", "B")
    assert store.next_item("ana").id == "q1"  # ana's q0 is done: she moves on, to q1 (ben's lease is over too)
    assert store.next_item("ben").id == "q1"  # ben still holds it: whoever labels first gives the one label
    # a page left open past its lease still saves: ana's late click on q0 is her judgement, kept beside cy's
    assert store.add_label("ana", "ana-label-01", "q0", "A") is True
    assert [(r["item"], r["annotator"]) for r in store.labels()] == [("q0", "cy"), ("q0", "ana")]
    with pytest.raises(StoreError):  # but only once
        store.add_label("ana", "ana-label-02", "q0", "B")


def test_reveal_is_recorded_and_gives_the_verdict_per_shown_slot(tmp_path, items):
    store = LabelStore(tmp_path / "s.sqlite", items)
    item = store.next_item("ana")
    verdicts = store.reveal("ana", item.id)
    by_id = {c.id: c.correct for c in item.candidates}
    assert verdicts == {s: by_id[c] for s, c in zip("AB", shown_order(0, item.id, "ana", 2))}
    assert sorted(verdicts.values()) == [False, True]  # write_candidates: the first right, the second wrong
    store.add_label("ana", "ana-label-1", item.id, "tie")  # the page forgot to say: the store remembers
    assert store.labels()[0]["verdict_seen"] is True
    with pytest.raises(StoreError):
        store.reveal("ben", item.id)


def test_the_session_refuses_other_items_and_keeps_its_token(tmp_path, items):
    path = tmp_path / "s.sqlite"
    token = LabelStore(path, items).token
    assert LabelStore(path, items).token == token  # a restart keeps the URL open pages use
    assert (path.stat().st_mode & 0o777) == 0o600
    write_candidates(tmp_path / "other.jsonl", 7, xss=False)
    with pytest.raises(StoreError, match="the items given now differ"):
        LabelStore(path, from_candidates_file(tmp_path / "other.jsonl", k=2, seed=0))
    with pytest.raises(StoreError, match="no such labelling database"):
        LabelStore(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    with pytest.raises(StoreError, match="not a labelling database"):
        LabelStore(tmp_path / "junk.sqlite", items)


def test_export_writes_a_labels_file_and_never_overwrites_a_users_file(tmp_path, items):
    store = LabelStore(tmp_path / "s.sqlite", items)
    out = tmp_path / "labels.jsonl"
    assert store.export(out) == 0
    item = store.next_item("ana")
    store.add_label("ana", "ana-label-1", item.id, "B", reason="shorter")
    assert store.export(out) == 1  # its own file: rewritten
    assert read_labels(out)[0]["reason"] == "shorter"
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my notes\n")
    with pytest.raises(StoreError, match="was not written by this labelling session"):
        store.export(mine)
    assert mine.read_text() == "my notes\n"
    out.write_text(out.read_text() + "\n")  # edited by hand since: no longer ours
    with pytest.raises(StoreError):
        store.export(out)


def test_sources_candidates_file_run_and_their_errors(tmp_path):
    rows = write_candidates(tmp_path / "cands.jsonl", 3, k=4, xss=False)
    rows[2]["completions"] = [rows[2]["completions"][0]] * 2  # only one distinct completion: left out
    (tmp_path / "cands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    item_set, sampler = open_source(str(tmp_path / "cands.jsonl"), k=3, seed=0)
    assert sampler is None and item_set.kind == "candidates" and item_set.dropped == 1
    assert [len(it.candidates) for it in item_set.items] == [3, 3]  # 4 candidates, 3 shown (seeded pick)
    assert all(c.correct == (c.text == rows[0]["completions"][0]) for c in item_set.items[0].candidates)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Q", "completions": ["a", 3]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: completions.1: must be a string"):
        open_source(str(bad))
    with pytest.raises(DataError, match="compare at least two"):
        open_source(str(tmp_path / "cands.jsonl"), k=1)

    run = tmp_path / "run"
    for model, answers in (("sft", ["5", "7"]), ("grpo", ["5", "8"])):
        (run / "audit" / model).mkdir(parents=True)
        audit_rows = [{"id": f"e{i}", "question": f"Q{i}", "gold": "5", "completion": render("r", a),
                       "correct": a == "5"} for i, a in enumerate(answers)]
        (run / "audit" / model / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in audit_rows))
    item_set, _ = open_source(str(run))
    assert item_set.kind == "run" and item_set.dropped == 1  # e0: both models wrote the same completion
    (item,) = item_set.items
    assert item.id == "e1" and {c.source for c in item.candidates} == {"sft", "grpo"}
    with pytest.raises(DataError, match="no audit of model 'dpo'"):
        open_source(str(run), models=["dpo"])
