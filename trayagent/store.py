"""SQLite persistence of the tracker's queues, the history, and an outbox of events.

One reconcile is committed in one transaction together with the events it produced
(the outbox). Events are handed to consumers (notifiers) only after that commit, and each
consumer's progress through the outbox is recorded as it takes each event; an event leaves
the outbox once every consumer of the running agent has taken it. So a crash at any point
neither loses an end nor repeats one, beyond the one event a consumer was handed in the
instant before its progress was written (`seq` lets a JSON consumer drop that duplicate).

Every failure is a StoreError whose message says what happened to which file, in words.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from trayagent.paths import legacy_state_path, make_private_dir
from trayagent.db import BUSY_TIMEOUT, connect, describe
from trayagent.errors import StoreError
from trayagent.core.model import Event, Finished, Kind, iso, parse_time
from trayagent.core.tracker import Changes, Rules, Tracked, Tracker

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
CREATE TABLE IF NOT EXISTS consumers (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
""" + _ISSUED_TABLE + ";\n"


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path))}?mode={mode}"


class Store:
    """The agent's memory. Thread-safe; one writer process at a time (see lock.py)."""

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        try:
            if readonly:
                self._db = sqlite3.connect(_uri(self.path, "ro"), uri=True, check_same_thread=False,
                                           timeout=BUSY_TIMEOUT)
                self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            else:
                self._db = connect(self.path, timeout=BUSY_TIMEOUT)
                self._check_version()
                self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if self._db is not None:
                self._db.close()
            raise StoreError(describe(exc, self.path, "open")) from exc
        except StoreError:
            if self._db is not None:
                self._db.close()
            raise

    def _check_version(self) -> None:
        assert self._db is not None
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() if has_meta else None
        if row is None:
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            return
        version = str(row[0]).strip()
        if not version.isdigit():
            raise StoreError(f"the state database {self.path} has an unknown schema version {version[:20]!r}: "
                             "it is not trayagent's, or damaged; move it aside and trayagent starts afresh")
        if int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"the state database {self.path} was written by a newer trayagent (schema {version}, "
                f"this one knows {SCHEMA_VERSION}): upgrade trayagent"
            )
        if int(version) < SCHEMA_VERSION:
            # Older files lack only tables (version 2 added `issued`), which _SCHEMA creates next.
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; any failure (or damaged content) as a StoreError."""
        with self._lock:
            try:
                assert self._db is not None
                yield self._db
            except StoreError:
                raise
            except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
                raise StoreError(describe(exc, self.path, "read")) from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any failure a rollback, if SQLite has not rolled back already.

        SQLite ends the transaction itself on some errors (a full disk, an I/O error); a ROLLBACK
        then fails with "no transaction is active" and would hide the real error.
        """
        with self._lock:
            assert self._db is not None
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error as rollback_exc:
                        log.debug("rollback after a failed %s: %s", doing, rollback_exc)
                if isinstance(exc, (sqlite3.Error, OSError, ValueError, TypeError)):
                    raise StoreError(describe(exc, self.path, doing)) from exc
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    # ------------------------------------------------------------------ reading

    def initialized(self) -> bool:
        with self._reading() as db:
            row = db.execute("SELECT v FROM meta WHERE k='initialized'").fetchone()
        return row is not None and row[0] == "1"

    def load_tracker(self, rules: Rules, recent_limit: int = 100) -> Tracker:
        """The tracker exactly as last committed (the agent reloads it after a failed commit)."""
        with self._reading() as db:
            tracked = [_tracked_from_json(r[0]) for r in db.execute("SELECT data FROM tracked")]
            ended = {_text(r[0]): Kind(r[1]) for r in db.execute("SELECT id, outcome FROM ended")}
        return Tracker(
            rules, tracked=tracked, ended=ended, initialized=self.initialized(),
            recent=self.recent(recent_limit), recent_limit=recent_limit,
        )

    def recent(self, limit: int = 10) -> list[Finished]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT transfer_id, username, filename, size, outcome, reason, state, error,"
                " first_seen, finished_at FROM history ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return [
                Finished(
                    transfer_id=_text(r[0]), username=_text(r[1]), filename=_text(r[2]), size=r[3],
                    outcome=Kind(r[4]), reason=r[5], state=_text(r[6]), error=_opt_text(r[7]),
                    first_seen=_dt(r[8]), finished_at=_dt(r[9]),
                )
                for r in rows
            ]

    def ended_ids(self) -> dict[str, Kind]:
        with self._reading() as db:
            return {_text(r[0]): Kind(r[1]) for r in db.execute("SELECT id, outcome FROM ended")}

    def pending_events(self, after: int = 0, limit: int = -1) -> list[Event]:
        """Committed events past `after` (a consumer's progress), oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                              (after, limit)).fetchall()
            out = []
            for seq, text in rows:
                obj = json.loads(text)
                obj["seq"] = seq
                out.append(Event.from_json(obj))
            return out

    def consumer_progress(self) -> dict[str, int]:
        """Each consumer's last taken `seq` (consumers of earlier runs included)."""
        with self._reading() as db:
            return {_text(name): int(seq) for name, seq in db.execute("SELECT name, seq FROM consumers")}

    # ------------------------------------------------------------------ writing

    def commit(self, changes: Changes) -> list[Event]:
        """Write one reconcile atomically; returns its events numbered with their `seq`.

        Raises StoreError with nothing written; the caller's tracker is then ahead of the
        store and must be reloaded (Agent does) so the next poll redoes the work.
        """
        if changes.empty:
            return []
        with self._transaction("save to") as db:
            if changes.upserts:
                db.executemany(
                    "INSERT OR REPLACE INTO tracked (key, data) VALUES (?, ?)",
                    [(_sql_text(k), _tracked_to_json(d)) for k, d in changes.upserts.items()],
                )
            if changes.deletes:
                db.executemany("DELETE FROM tracked WHERE key = ?", [(_sql_text(k),) for k in changes.deletes])
            if changes.ended:
                db.executemany(
                    "INSERT OR REPLACE INTO ended (id, outcome) VALUES (?, ?)",
                    [(_sql_text(tid), kind.value) for tid, kind in changes.ended.items()],
                )
            if changes.forgotten:
                db.executemany("DELETE FROM ended WHERE id = ?", [(_sql_text(t),) for t in changes.forgotten])
            if changes.finished:
                db.executemany(
                    "INSERT INTO history (transfer_id, username, filename, size, outcome,"
                    " reason, state, error, first_seen, finished_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (_sql_text(f.transfer_id), _sql_text(f.username), _sql_text(f.filename), f.size,
                         f.outcome.value, f.reason, _sql_text(f.state), _sql_text(f.error),
                         iso(f.first_seen), iso(f.finished_at))
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
                cur = db.execute("INSERT INTO outbox (event) VALUES (?)", (_event_json(ev),))
                numbered.append(_with_seq(ev, cur.lastrowid))
        return numbered

    def ack_consumer(self, name: str, seq: int, floor: int) -> None:
        """Record that consumer `name` took every event up to `seq`; forget events up to `floor`.

        `floor` is the lowest progress among the running agent's consumers: what all of them took.
        """
        with self._transaction("record delivery in") as db:
            db.execute("INSERT OR REPLACE INTO consumers (name, seq) VALUES (?, ?)", (_sql_text(name), seq))
            if floor > 0:
                db.execute("DELETE FROM outbox WHERE seq <= ?", (floor,))

    def note_issued(self, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
        """Remember that trayagent retried or cancelled these downloads (survives restarts)."""
        with self._transaction("record actions in") as db:
            _insert_issued(db, action, transfer_ids, at)

    def issued(self, after: int = 0) -> tuple[list[tuple[str, str]], int]:
        """(action, transfer id) noted after row `after`, also by other processes; and the last row.

        Rows only grow, so a caller keeps the last row and asks for what is new on each poll.
        """
        with self._reading() as db:
            rows = db.execute(
                "SELECT rowid, action, transfer_id FROM issued WHERE rowid > ? ORDER BY rowid", (after,)
            ).fetchall()
        return [(r[1], _text(r[2])) for r in rows], (rows[-1][0] if rows else after)

    def ack(self, events: Iterable[Event]) -> None:
        """Forget these events for every consumer."""
        seqs = [(e.seq,) for e in events if e.seq is not None]
        if not seqs:
            return
        with self._transaction("record delivery in") as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", seqs)


def existing_state(path: Path) -> Path | None:
    """The state database at `path`, or the one of an older version not yet taken over; None if neither."""
    for found in (path, legacy_state_path()):
        if found.exists():
            return found
    return None


def open_store(path: Path, legacy: Path | None = None) -> Store:
    """The state database at `path`, taking over `legacy` (the pre-instance single file) if it is new."""
    if legacy is not None and legacy != path:
        adopt_legacy(legacy, path)
    return Store(path)


def adopt_legacy(legacy: Path, target: Path) -> bool:
    """Move the one state database of older versions to its per-instance name, losing nothing.

    The first agent started after an upgrade takes it over (its WAL folded in first), so the
    downloads it was following and the events it had not delivered carry on. Safe against a
    second process doing the same at once: the file is hard-linked to the new name, which
    fails if that exists, and the old name is removed only after.
    """
    if target.exists() or not legacy.exists():
        return False
    try:
        db = sqlite3.connect(_uri(legacy, "rw"), uri=True, timeout=BUSY_TIMEOUT)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        if not legacy.exists():
            return False
        raise StoreError(describe(exc, legacy, "take over")) from exc
    make_private_dir(target.parent)
    try:
        os.link(legacy, target)
    except (FileExistsError, FileNotFoundError):
        return False  # another process took it over (or started afresh) just now
    except OSError:
        if target.exists():
            return False
        os.replace(legacy, target)  # no hard links here: a plain rename
    for old in (legacy, legacy.with_name(legacy.name + "-wal"), legacy.with_name(legacy.name + "-shm")):
        try:
            old.unlink()
        except FileNotFoundError:
            pass
    log.info("state moved from %s to %s (state is now kept per slskd instance)", legacy, target)
    return True


def _sql_text(text: str | None) -> str | bytes | None:
    """A remote string as SQLite can store it.

    slskd's strings are .NET (UTF-16) strings, so a file name may hold a lone surrogate, which
    no UTF-8 text can; such a string is stored as its surrogatepass bytes (a BLOB) and
    `_text` turns it back, so one odd name never fails a commit.
    """
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _opt_text(value: str | bytes | None) -> str | None:
    return None if value is None else _text(value)


def _event_json(ev: Event) -> str:
    # ASCII JSON: escapes keep any string (a lone surrogate too) storable and exact.
    return json.dumps(ev.to_json())


def note_issued_elsewhere(path: Path | str, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
    """Note an action in an agent's state file from another process (e.g. `trayagent sync`).

    Does nothing when the state file does not exist: no agent has run, so none can misreport.
    """
    if not Path(path).is_file():
        return
    db = connect(Path(path), timeout=10.0)
    try:
        db.execute(_ISSUED_TABLE)
        db.execute("BEGIN IMMEDIATE")
        _insert_issued(db, action, transfer_ids, at)
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(describe(exc, Path(path), "record actions in")) from exc
    finally:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the error above (or none) is the one to report; closing undoes the rest
        db.close()


def _insert_issued(db: sqlite3.Connection, action: str, transfer_ids: Iterable[str], at: datetime) -> None:
    """Within the caller's transaction: note the ids, forgetting the oldest beyond ISSUED_LIMIT."""
    rows = [(_sql_text(tid), action, iso(at)) for tid in transfer_ids]
    if not rows:
        return
    db.executemany("INSERT OR IGNORE INTO issued (transfer_id, action, at) VALUES (?, ?, ?)", rows)
    db.execute("DELETE FROM issued WHERE rowid <= (SELECT MAX(rowid) FROM issued) - ?", (ISSUED_LIMIT,))


def _with_seq(ev: Event, seq: int | None) -> Event:
    obj = ev.to_json()
    obj["seq"] = seq
    return Event.from_json(obj)


def _dt(text: str | None) -> datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise ValueError(f"bad timestamp {text!r}")
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
    )  # ASCII JSON: see _event_json


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
