"""The labelling session's state in one SQLite file: items, who is labelling what, and every label.

Durability: WAL journal with ``synchronous=FULL``, one transaction per click, committed (and so fsynced) before
the server answers — a label the page saw acknowledged survives ``kill -9`` of the server and a power cut. Handing
out an item (an assignment) commits with ``synchronous=NORMAL``: it survives ``kill -9`` too (it is in the WAL),
a power cut may lose the latest ones, which are then handed out again; the next label's fsync makes them durable. Every
label carries an id the page generated; submitting the same id again (a retry after a lost answer) stores nothing
and answers as the first time did, so each label is stored exactly once.

Assignment: items are served in their order; each needs one annotator, or two for the ``overlap`` share (chosen by
a hash of the item id and the seed) whose pairs of labels measure agreement. An annotator is given the first item
they have not seen that still needs someone, and it stays theirs (a reload, a restart of the server or a new day
gives it back) until they label or skip it. An item someone holds for longer than ``lease_seconds`` without a
label may be given to another annotator; a skip sends the item on to someone else. The order in which an
annotator sees the candidates is a hash of the seed, the item and the annotator: random, but the same on every
reload.

Labels leave the store through :meth:`LabelStore.export` as a labels file (data/labels.py). The session's access
token lives here too (the file is created readable by its owner only), so a restarted server keeps the URL that
open pages use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinktune.data.labels import CHOICES
from thinktune.data.records import write_jsonl
from thinktune.errors import ThinktuneError
from thinktune.feedback.items import Candidate, Item, ItemSet

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, data TEXT NOT NULL,
                                 needed INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS items_open ON items(pos) WHERE done < needed;
CREATE INDEX IF NOT EXISTS items_progress ON items(needed, done);
CREATE TABLE IF NOT EXISTS assignments(item_id TEXT NOT NULL, annotator TEXT NOT NULL, assigned REAL NOT NULL,
                                       state TEXT NOT NULL DEFAULT 'open', verdict_seen INTEGER NOT NULL DEFAULT 0,
                                       PRIMARY KEY(item_id, annotator));
CREATE INDEX IF NOT EXISTS assignments_by_annotator ON assignments(annotator, state);
CREATE TABLE IF NOT EXISTS labels(seq INTEGER PRIMARY KEY AUTOINCREMENT, label_id TEXT NOT NULL UNIQUE,
                                  item_id TEXT NOT NULL, annotator TEXT NOT NULL, choice TEXT NOT NULL,
                                  ranking TEXT NOT NULL, shown TEXT NOT NULL, reason TEXT NOT NULL,
                                  verdict_seen INTEGER NOT NULL, seconds REAL, created REAL NOT NULL,
                                  UNIQUE(item_id, annotator));
CREATE INDEX IF NOT EXISTS labels_by_annotator ON labels(annotator);
"""
SLOTS = "ABCDEFGHIJ"  # the letters candidates are shown under (k ≤ 10)


class StoreError(ThinktuneError):
    """A labelling database that does not match the command, or a request the store refuses."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status  # the HTTP status the server answers with


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    overlap: float = 0.0  # share of items labelled by two annotators
    lease_seconds: float = 1800.0  # an unlabelled item held longer than this may go to someone else


def items_hash(item_set: ItemSet) -> str:
    h = hashlib.sha256(item_set.kind.encode())
    for it in item_set.items:
        h.update(json.dumps([it.id, it.question, [c.text for c in it.candidates]]).encode())
    return h.hexdigest()[:16]


def shown_order(seed: int, item_id: str, annotator: str, n: int) -> list[str]:
    """Candidate ids in the order this annotator sees them (slot A first)."""
    order = [str(i) for i in range(n)]
    random.Random(f"{seed}:show:{item_id}:{annotator}").shuffle(order)
    return order


class LabelStore:
    """One labelling session's SQLite database (module docstring). Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path, item_set: ItemSet | None = None, settings: Settings | None = None):
        self.path = Path(path)
        new = not self.path.exists()
        if new and item_set is None:
            raise StoreError(f"{self.path}: no such labelling database")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            with self._lock:
                self._db.executescript(SCHEMA)
            meta = self._meta()
            if "items_hash" not in meta:
                self._create(item_set, settings or Settings())  # type: ignore[arg-type]
            elif item_set is not None and meta["items_hash"] != items_hash(item_set):
                raise StoreError(f"{self.path} holds the labels of {meta['source']}; the items given now differ. "
                                 "Use another --out (or --db) for a new session")
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"{self.path}: not a labelling database ({e})") from None
        except BaseException:
            self._db.close()
            raise
        if new:
            os.chmod(self.path, 0o600)  # it holds the session's token
        meta = self._meta()
        self.settings = Settings(int(meta["seed"]), float(meta["overlap"]), float(meta["lease_seconds"]))
        self.source, self.kind, self.token = meta["source"], meta["kind"], meta["token"]
        self.changed = threading.Event()  # set by every write, cleared by the exporter

    # -- set-up -------------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _create(self, item_set: ItemSet, settings: Settings) -> None:
        if not item_set.items:
            raise StoreError(f"{item_set.source}: no items to label ({item_set.dropped} with fewer than two distinct "
                             "completions)")
        rows = []
        for pos, it in enumerate(item_set.items):
            double = random.Random(f"{settings.seed}:double:{it.id}").random() < settings.overlap
            rows.append((pos, it.id, it.to_json(), 2 if double else 1))
        meta = {"items_hash": items_hash(item_set), "source": item_set.source, "kind": item_set.kind,
                "token": secrets.token_urlsafe(24),
                "seed": str(settings.seed), "overlap": str(settings.overlap),
                "lease_seconds": str(settings.lease_seconds), "created": str(time.time())}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO items(pos, id, data, needed) VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
            self._db.execute("COMMIT")

    def new_token(self) -> str:
        """Replace the session's token (old links stop working)."""
        self.token = secrets.token_urlsafe(24)
        with self._lock:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'token'", (self.token,))
        return self.token

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reads --------------------------------------------------------------------------------------------------
    def item(self, item_id: str) -> tuple[Item, int, int]:
        """(item, labels it needs, non-skip labels it has)."""
        with self._lock:
            row = self._db.execute("SELECT data, needed, done FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown item {item_id!r}", 404)
        return Item.from_json(row[0]), row[1], row[2]

    def progress(self, annotator: str | None = None) -> dict[str, Any]:
        with self._lock:
            needed, done, items = self._db.execute(
                "SELECT COALESCE(SUM(needed), 0), COALESCE(SUM(MIN(done, needed)), 0), COUNT(*) FROM items"
                " WHERE needed > 0").fetchone()
            labels = self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
            mine = self._db.execute("SELECT COUNT(*) FROM labels WHERE annotator = ?", (annotator,)).fetchone()[0] \
                if annotator else None
        return {"items": items, "judgements_needed": needed, "judgements_done": done, "labels": labels,
                "mine": mine}

    # -- writes -------------------------------------------------------------------------------------------------
    def next_item(self, annotator: str) -> Item | None:
        """The item this annotator should label now: the one they hold, else a new one (None: nothing left)."""
        now = time.time()
        with self._lock, self._unsynced():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                held = self._db.execute(
                    "SELECT a.item_id, i.data, i.needed, i.done FROM assignments a JOIN items i ON i.id = a.item_id"
                    " WHERE a.annotator = ? AND a.state = 'open' ORDER BY a.assigned", (annotator,)).fetchall()
                for item_id, data, needed, done in held:
                    if done < needed:
                        self._db.execute("COMMIT")
                        return Item.from_json(data)
                    self._db.execute("UPDATE assignments SET state = 'released' WHERE item_id = ? AND annotator = ?",
                                     (item_id, annotator))
                row = self._db.execute(
                    "SELECT i.id, i.data FROM items i WHERE i.done < i.needed"
                    " AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.annotator = :who)"
                    " AND i.done + (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.state = 'open'"
                    "               AND a.assigned > :cutoff) < i.needed"
                    " ORDER BY i.pos LIMIT 1",
                    {"who": annotator, "cutoff": now - self.settings.lease_seconds}).fetchone()
                if row is not None:
                    self._db.execute("INSERT INTO assignments(item_id, annotator, assigned) VALUES (?, ?, ?)",
                                     (row[0], annotator, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Item.from_json(row[1]) if row is not None else None

    @contextlib.contextmanager
    def _unsynced(self) -> Iterator[None]:
        """Commit without waiting for fsync (an assignment: module docstring); labels keep synchronous=FULL."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def set_candidates(self, item_id: str, candidates: list[Candidate]) -> Item:
        """Store sampled candidates of an item that had none (the first sample wins); an item with fewer than two
        distinct candidates is retired (it needs no labels). Returns the stored item."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            data = self._db.execute("SELECT data FROM items WHERE id = ?", (item_id,)).fetchone()[0]
            item = Item.from_json(data)
            if not item.candidates:
                item.candidates = candidates
                self._db.execute("UPDATE items SET data = ? WHERE id = ?", (item.to_json(), item_id))
                if len(candidates) < 2:
                    self._db.execute("UPDATE items SET needed = 0 WHERE id = ?", (item_id,))
                    self._db.execute("UPDATE assignments SET state = 'released' WHERE item_id = ?", (item_id,))
            self._db.execute("COMMIT")
        return item

    def reveal(self, annotator: str, item_id: str) -> dict[str, bool | None]:
        """The verifier's verdict per slot of the item this annotator holds; recorded as seen."""
        item, _, _ = self.item(item_id)
        with self._lock:
            cur = self._db.execute("UPDATE assignments SET verdict_seen = 1 WHERE item_id = ? AND annotator = ?",
                                   (item_id, annotator))
        if cur.rowcount == 0:
            raise StoreError(f"item {item_id!r} is not assigned to {annotator!r}", 409)
        self.changed.set()
        by_id = {c.id: c.correct for c in item.candidates}
        order = shown_order(self.settings.seed, item_id, annotator, len(item.candidates))
        return {SLOTS[i]: by_id[cid] for i, cid in enumerate(order)}

    def add_label(self, annotator: str, label_id: str, item_id: str, choice: str, ranking: list[str] | None = None,
                  reason: str = "", verdict_seen: bool = False, seconds: float | None = None) -> bool:
        """Store one label (module docstring); ``ranking``: slots best first, for ``rank``. Returns False when this
        ``label_id`` was already stored (nothing changes). :class:`StoreError` (409) for an item the annotator does
        not hold or already labelled, (400) for a choice that does not fit the item."""
        if choice not in CHOICES:
            raise StoreError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        item, _, _ = self.item(item_id)
        k = len(item.candidates)
        shown = shown_order(self.settings.seed, item_id, annotator, k)
        slots = {SLOTS[i]: cid for i, cid in enumerate(shown)}
        if choice in ("A", "B"):
            if k != 2:
                raise StoreError(f"choice {choice} needs two candidates; this item has {k} (send rank)")
            order = [slots[choice], slots["B" if choice == "A" else "A"]]
        elif choice == "rank":
            if sorted(ranking or []) != sorted(slots):
                raise StoreError(f"rank needs every slot once ({', '.join(slots)}), got {ranking!r}")
            order = [slots[s] for s in ranking or []]
        else:
            order = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                known = self._db.execute("SELECT item_id, annotator FROM labels WHERE label_id = ?",
                                         (label_id,)).fetchone()
                if known is not None:
                    self._db.execute("COMMIT")
                    if tuple(known) != (item_id, annotator):
                        raise StoreError(f"label id {label_id!r} was already used for another label", 409)
                    return False
                held = self._db.execute("SELECT state, verdict_seen FROM assignments WHERE item_id = ? AND "
                                        "annotator = ?", (item_id, annotator)).fetchone()
                if held is None or held[0] == "done":
                    raise StoreError(f"item {item_id!r} is not waiting for a label from {annotator!r}", 409)
                self._db.execute(
                    "INSERT INTO labels(label_id, item_id, annotator, choice, ranking, shown, reason, verdict_seen,"
                    " seconds, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (label_id, item_id, annotator, choice, json.dumps(order), json.dumps(shown), reason,
                     int(bool(verdict_seen) or bool(held[1])), seconds, time.time()))
                self._db.execute("UPDATE assignments SET state = 'done' WHERE item_id = ? AND annotator = ?",
                                 (item_id, annotator))
                if choice != "skip":
                    self._db.execute("UPDATE items SET done = done + 1 WHERE id = ?", (item_id,))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        self.changed.set()
        return True

    # -- export -------------------------------------------------------------------------------------------------
    def labels(self) -> list[dict[str, Any]]:
        """Every label as a labels-file row (data/labels.py), in the order they were made."""
        with self._lock:
            rows = self._db.execute(
                "SELECT l.label_id, l.item_id, l.annotator, l.choice, l.ranking, l.shown, l.reason, l.verdict_seen,"
                " l.seconds, l.created, i.data FROM labels l JOIN items i ON i.id = l.item_id ORDER BY l.seq"
            ).fetchall()
        out = []
        for label_id, item_id, annotator, choice, ranking, shown, reason, seen, seconds, created, data in rows:
            item = Item.from_json(data)
            row: dict[str, Any] = {
                "label_id": label_id, "item": item_id, "annotator": annotator, "question": item.question,
                "candidates": [{k: v for k, v in vars(c).items() if v is not None} for c in item.candidates],
                "shown": json.loads(shown), "choice": choice, "ranking": json.loads(ranking), "reason": reason,
                "verdict_seen": bool(seen), "seconds": seconds,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))}
            if item.answer:
                row["answer"] = item.answer
            out.append(row)
        return out

    def export(self, path: str | Path) -> int:
        """Write every label to ``path`` atomically (a labels file). Refuses to replace a file this store did not
        write (nothing a user owns is overwritten). Returns the number of labels."""
        target = Path(path)
        self.check_export_target(target)
        self.changed.clear()
        rows = self.labels()
        write_jsonl(target, rows)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             (f"export:{target.resolve()}", digest))
        return len(rows)

    def check_export_target(self, path: str | Path) -> None:
        target = Path(path)
        if not target.exists():
            return
        written = self._meta().get(f"export:{target.resolve()}")
        if written is None or hashlib.sha256(target.read_bytes()).hexdigest() != written:
            raise StoreError(f"{target} exists and was not written by this labelling session ({self.path}); "
                             "choose another --out or move the file")
