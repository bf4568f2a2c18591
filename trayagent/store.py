"""SQLite persistence of the tracker's queues, the history, and an outbox of events.

One reconcile is committed in one transaction together with the events it produced
(the outbox). Events are handed to notifiers only after that commit and deleted from the
outbox once delivered, so a crash at any point neither loses an end nor repeats one
(beyond the instant between writing an event out and deleting it; `seq` lets a JSON
consumer drop that duplicate).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Iterable

from trayagent.model import Event, Finished, Kind, iso, parse_time
from trayagent.tracker import Changes, Rules, Tracked, Tracker

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
HISTORY_LIMIT = 1000
#: How many issued actions (retries, cancels) are remembered; the oldest are forgotten first.
ISSUED_LIMIT = 5000

#: Actions trayagent took on slskd downloads that later reconciles must know about: a retried
#: failure is not offered again; a download it cancelled ends as cancelled, whatever slskd shows.
RETRY, CANCEL = "retry", "cancel"
_ISSUED_TABLE = """CREATE TABLE IF NOT EXISTS issued (
    transfer_id TEXT NOT NULL, action TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (transfer_id, action))"""

#: Schema changes, by the version they lead to; applied in order to an older state file.
_MIGRATIONS: dict[int, str] = {2: _ISSUED_TABLE}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracked (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ended (id TEXT PRIMARY KEY, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL, username TEXT NOT NULL, filename TEXT NOT NULL,
    size INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT, state TEXT NOT NULL,
    error TEXT, first_seen TEXT NOT NULL, finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
"""


class StoreError(Exception):
    """The state file cannot be opened or is not ours."""


class Store:
    """The agent's memory. Thread-safe; one writer process at a time (see lock.py)."""

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        try:
            if readonly:
                uri = f"file:{self.path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fresh = not self.path.exists()
                if fresh:  # create it private: it holds the user's download history
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                self._check_version()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc

    def _check_version(self) -> None:
        row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"state file {self.path} was written by a newer trayagent (schema {row[0]})"
            )
        found = int(row[0]) if row is not None else 1  # _SCHEMA holds the version-1 tables
        if found == SCHEMA_VERSION and row is not None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for version in range(found + 1, SCHEMA_VERSION + 1):
                self._db.execute(_MIGRATIONS[version])
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reading

    def initialized(self) -> bool:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k='initialized'").fetchone()
        return row is not None and row[0] == "1"

    def load_tracker(self, rules: Rules, recent_limit: int = 100) -> Tracker:
        with self._lock:
            tracked = [_tracked_from_json(r[0]) for r in self._db.execute("SELECT data FROM tracked")]
            ended = {r[0]: Kind(r[1]) for r in self._db.execute("SELECT id, outcome FROM ended")}
        return Tracker(
            rules, tracked=tracked, ended=ended, initialized=self.initialized(),
            recent=self.recent(recent_limit), recent_limit=recent_limit,
        )

    def recent(self, limit: int = 10) -> list[Finished]:
        with self._lock:
            rows = self._db.execute(
                "SELECT transfer_id, username, filename, size, outcome, reason, state, error,"
                " first_seen, finished_at FROM history ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            Finished(
                transfer_id=r[0], username=r[1], filename=r[2], size=r[3], outcome=Kind(r[4]),
                reason=r[5], state=r[6], error=r[7], first_seen=_dt(r[8]), finished_at=_dt(r[9]),
            )
            for r in rows
        ]

    def ended_ids(self) -> dict[str, Kind]:
        with self._lock:
            return {r[0]: Kind(r[1]) for r in self._db.execute("SELECT id, outcome FROM ended")}

    def pending_events(self) -> list[Event]:
        """Events committed but not yet delivered (the agent died in between)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, event FROM outbox ORDER BY seq").fetchall()
        out = []
        for seq, text in rows:
            obj = json.loads(text)
            obj["seq"] = seq
            out.append(Event.from_json(obj))
        return out

    # ------------------------------------------------------------------ writing

    def commit(self, changes: Changes) -> list[Event]:
        """Write one reconcile atomically; returns its events numbered with their `seq`."""
        if changes.empty:
            return []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if changes.upserts:
                    db.executemany(
                        "INSERT OR REPLACE INTO tracked (key, data) VALUES (?, ?)",
                        [(k, _tracked_to_json(d)) for k, d in changes.upserts.items()],
                    )
                if changes.deletes:
                    db.executemany("DELETE FROM tracked WHERE key = ?", [(k,) for k in changes.deletes])
                if changes.ended:
                    db.executemany(
                        "INSERT OR REPLACE INTO ended (id, outcome) VALUES (?, ?)",
                        [(tid, kind.value) for tid, kind in changes.ended.items()],
                    )
                if changes.forgotten:
                    db.executemany("DELETE FROM ended WHERE id = ?", [(t,) for t in changes.forgotten])
                if changes.finished:
                    db.executemany(
                        "INSERT INTO history (transfer_id, username, filename, size, outcome,"
                        " reason, state, error, first_seen, finished_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (f.transfer_id, f.username, f.filename, f.size, f.outcome.value,
                             f.reason, f.state, f.error, iso(f.first_seen), iso(f.finished_at))
                            for f in changes.finished
                        ],
                    )
                    db.execute(
                        "DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?",
                        (HISTORY_LIMIT,),
                    )
                if changes.initialized:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('initialized', '1')")
                numbered = []
                for ev in changes.events:
                    cur = db.execute(
                        "INSERT INTO outbox (event) VALUES (?)",
                        (json.dumps(ev.to_json(), ensure_ascii=False),),
                    )
                    numbered.append(_with_seq(ev, cur.lastrowid))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return numbered

    def note_issued(self, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
        """Remember that trayagent retried or cancelled these downloads (survives restarts)."""
        with self._lock:
            _insert_issued(self._db, action, transfer_ids, at)

    def issued(self, after: int = 0) -> tuple[list[tuple[str, str]], int]:
        """(action, transfer id) noted after row `after`, also by other processes; and the last row.

        Rows only grow, so a caller keeps the last row and asks for what is new on each poll.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, action, transfer_id FROM issued WHERE rowid > ? ORDER BY rowid", (after,)
            ).fetchall()
        return [(r[1], r[2]) for r in rows], (rows[-1][0] if rows else after)

    def ack(self, events: Iterable[Event]) -> None:
        """Forget delivered events."""
        seqs = [(e.seq,) for e in events if e.seq is not None]
        if not seqs:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", seqs)


def note_issued_elsewhere(path: Path | str, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
    """Note an action in an agent's state file from another process (e.g. `trayagent sync`).

    Does nothing when the state file does not exist: no agent has run, so none can misreport.
    """
    if not Path(path).is_file():
        return
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        db.execute(_ISSUED_TABLE)
        _insert_issued(db, action, transfer_ids, at)
    finally:
        db.close()


def _insert_issued(db: sqlite3.Connection, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
    rows = [(tid, action, iso(at)) for tid in transfer_ids]
    if not rows:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR IGNORE INTO issued (transfer_id, action, at) VALUES (?, ?, ?)", rows)
        db.execute("DELETE FROM issued WHERE rowid <= (SELECT MAX(rowid) FROM issued) - ?", (ISSUED_LIMIT,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _with_seq(ev: Event, seq: int | None) -> Event:
    obj = ev.to_json()
    obj["seq"] = seq
    return Event.from_json(obj)


def _dt(text: str | None) -> datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise StoreError(f"corrupt timestamp in state file: {text!r}")
    return parsed


def _opt_dt(text: str | None) -> datetime | None:
    return parse_time(text) if text else None


def _tracked_to_json(d: Tracked) -> str:
    return json.dumps(
        {
            "key": d.key, "transfer_id": d.transfer_id, "username": d.username,
            "filename": d.filename, "size": d.size, "state": d.state,
            "first_seen": iso(d.first_seen), "bytes": d.bytes_transferred,
            "aliases": sorted(d.aliases), "started": d.started, "missing": d.missing_polls,
            "failing_since": iso(d.failing_since) if d.failing_since else None,
            "restart_since": iso(d.restart_since) if d.restart_since else None,
            "error": d.error,
        },
        ensure_ascii=False,
    )


def _tracked_from_json(text: str) -> Tracked:
    o = json.loads(text)
    return Tracked(
        key=o["key"], transfer_id=o["transfer_id"], username=o["username"],
        filename=o["filename"], size=o["size"], state=o["state"],
        first_seen=_dt(o["first_seen"]), bytes_transferred=o.get("bytes", 0),
        aliases=set(o.get("aliases", ())), started=o.get("started", False),
        missing_polls=o.get("missing", 0), failing_since=_opt_dt(o.get("failing_since")),
        restart_since=_opt_dt(o.get("restart_since")), error=o.get("error"),
    )
