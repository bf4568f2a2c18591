"""The store keeps what the tracker decided, atomically, and nothing more."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from trayagent.core.model import Kind, Transfer
from trayagent.errors import StoreError
from trayagent.store import CANCEL, RETRY, Store, note_issued_elsewhere
from trayagent.core.tracker import Changes, Rules

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
RULES = Rules(grace_polls=2, failure_settle=10, restart_window=30)


def tr(tid: str, state: str, name: str = "f", **kw) -> Transfer:
    return Transfer(id=tid, username="u", filename=name, state=state, size=10, **kw)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_state_file_is_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "state" / "s.sqlite3")
    assert os.stat(tmp_path / "state" / "s.sqlite3").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "state").st_mode & 0o777 == 0o700
    store.close()


def test_round_trip_through_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    tracker = store.load_tracker(RULES)
    assert not tracker.initialized
    ch = tracker.reconcile([tr("old", "Completed, Succeeded", "o"), tr("a", "InProgress", "x"),
                            tr("b", "Queued, Remotely", "y")], at(0))
    events = store.commit(ch)
    assert [e.event.value for e in events if e.id == "a"] == ["added", "started"]
    assert [e.event.value for e in events if e.id == "b"] == ["added"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    store.ack(events)
    ch = tracker.reconcile([tr("a", "Completed, Errored", "x"), tr("b", "Queued, Remotely", "y")], at(1))
    store.ack(store.commit(ch))
    store.close()

    store = Store(path)
    again = store.load_tracker(RULES)
    assert again.initialized and again.is_recorded("old")
    failing = {d.key: d for d in again.active}
    assert failing["a"].failing_since == at(1) and failing["b"].state == "Queued, Remotely"
    ch = again.reconcile([tr("a", "Completed, Errored", "x"), tr("b", "Queued, Remotely", "y")], at(11))
    events = store.commit(ch)
    assert [(e.event.value, e.id, e.reason) for e in events] == [("failed", "a", "errored")]
    assert store.recent(5)[0].transfer_id == "a" and store.recent(5)[0].outcome is Kind.FAILED
    store.close()


def test_undelivered_events_survive_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    tracker.reconcile([tr("a", "InProgress")], at(0))
    events = store.commit(tracker.reconcile([tr("a", "Completed, Succeeded")], at(1)))
    store.close()  # "crash" before ack

    store = Store(path)
    pending = store.pending_events()
    assert [(e.event.value, e.id, e.seq) for e in pending] == [(e.event.value, e.id, e.seq) for e in events]
    store.ack(pending)
    assert store.pending_events() == []
    store.close()


def test_empty_changes_write_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    before = store._db.total_changes
    assert store.commit(Changes()) == []
    assert store._db.total_changes == before
    store.close()


def test_failed_commit_rolls_back_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    ch = tracker.reconcile([tr("a", "Completed, Succeeded")], at(0))
    ch.upserts["bad"] = object()  # type: ignore[assignment]  # makes serialising fail mid-way
    with pytest.raises(Exception):
        store.commit(ch)
    assert store.ended_ids() == {} and store.pending_events() == [] and store.recent() == []
    store.close()


def test_history_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trayagent.store.HISTORY_LIMIT", 5)
    store = Store(tmp_path / "s.sqlite3")
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    for i in range(12):
        store.commit(tracker.reconcile([tr(f"id{i}", "Completed, Succeeded", f"n{i}")], at(i)))
    assert len(store.recent(100)) == 5 and store.recent(1)[0].transfer_id == "id11"
    assert len(store.ended_ids()) == 12  # the ended set is not capped: it prevents repeats
    store.close()


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the state database .*: it is damaged"):
        Store(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET v='99' WHERE k='schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer trayagent"):
        Store(path)


DISK_FULL = """
import resource, sys
from datetime import datetime, timezone
from trayagent.core.model import Transfer
from trayagent.errors import StoreError
from trayagent.store import Store
from trayagent.core.tracker import Rules

store = Store(sys.argv[1])
tracker = store.load_tracker(Rules())
now = datetime.now(timezone.utc)
store.commit(tracker.reconcile([Transfer("a", "u", "f", "InProgress")], now))
wal = sys.argv[1] + "-wal"
import os
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(wal), resource.RLIM_INFINITY))
try:
    store.commit(tracker.reconcile([Transfer("a", "u", "f", "Completed, Succeeded")], now))
except StoreError as exc:
    print("StoreError:", exc, "| cause:", repr(exc.__cause__))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("ended after:", store.ended_ids())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_a_write_sqlite_rolled_back_itself_reports_the_real_error(tmp_path: Path) -> None:
    """Issue 14.1: ROLLBACK after SQLite already rolled back raised 'no transaction is active'."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path / "s.sqlite3")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first.startswith("StoreError: cannot save to the state database") and "disk I/O error" in first, first
    assert "rollback" not in first.lower()
    assert second == "ended after: {}"


def test_lone_surrogates_are_stored_and_read_back_exactly(tmp_path: Path) -> None:
    """Issue 14.6: a .NET string with a lone surrogate failed every commit."""
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    bad = "bad \ud800 name.flac"
    store.commit(tracker.reconcile([Transfer("id\udc80", "us\ud800er", bad, "InProgress", size=10)], at(0)))
    events = store.commit(tracker.reconcile([Transfer("id\udc80", "us\ud800er", bad, "Completed, Succeeded",
                                                      size=10)], at(1)))
    assert [e.filename for e in events] == [bad]
    store.close()
    store = Store(path)
    assert [e.filename for e in store.pending_events()] == [bad, bad, bad]  # added, started, completed
    assert store.recent(1)[0].filename == bad and store.recent(1)[0].username == "us\ud800er"
    assert store.ended_ids() == {"id\udc80": Kind.SUCCEEDED}
    assert store.load_tracker(RULES).is_recorded("id\udc80")
    store.close()


def test_consumer_progress_forgets_only_what_every_consumer_took(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    events = store.commit(tracker.reconcile([tr("a", "InProgress", "x"), tr("b", "InProgress", "y")], at(0)))
    seqs = [e.seq for e in events]
    assert len(seqs) == 4
    store.ack_consumer("json", seqs[3], floor=0)  # another consumer has taken nothing yet
    store.ack_consumer("desktop", seqs[1], floor=seqs[1])
    assert store.consumer_progress() == {"json": seqs[3], "desktop": seqs[1]}
    assert [e.seq for e in store.pending_events()] == seqs[2:]
    assert [e.seq for e in store.pending_events(after=seqs[2])] == seqs[3:]
    store.close()


def test_legacy_state_is_taken_over_once(tmp_path: Path) -> None:
    from trayagent.store import adopt_legacy

    legacy, target = tmp_path / "trayagent.sqlite3", tmp_path / "slskd-x.sqlite3"
    store = Store(legacy)
    tracker = store.load_tracker(RULES)
    tracker.initialized = True
    store.commit(tracker.reconcile([tr("a", "InProgress")], at(0)))
    # left open with its WAL, as by an agent that was killed
    assert adopt_legacy(legacy, target) is True
    store.close()
    assert not legacy.exists() and adopt_legacy(legacy, target) is False
    again = Store(target)
    assert [d.key for d in again.load_tracker(RULES).active] == ["a"]
    assert len(again.pending_events()) == 2
    again.close()


# ----------------------------------------------------------------------------- issued actions


def _version_1_file(path: Path) -> None:
    """A state file as trayagent wrote it before the `issued` table existed."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE tracked (key TEXT PRIMARY KEY, data TEXT NOT NULL);"
        "CREATE TABLE ended (id TEXT PRIMARY KEY, outcome TEXT NOT NULL);"
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1'); INSERT INTO ended VALUES ('gone', 'failed');"
    )
    db.commit()
    db.close()


def test_a_version_1_state_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    _version_1_file(path)
    store = Store(path)
    assert store.ended_ids() == {"gone": Kind.FAILED}
    store.note_issued(RETRY, ["a"], T0)
    assert store.issued()[0] == [(RETRY, "a")]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT v FROM meta WHERE k='schema'").fetchone() == ("2",)
    db.close()
    Store(path).close()  # opening a current file again changes nothing


def test_issued_actions_survive_restarts_and_are_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.note_issued(RETRY, ["r1", "r2"], T0)
    store.note_issued(RETRY, ["r1"], at(1))  # already noted: not a new row
    rows, last = store.issued()
    assert rows == [(RETRY, "r1"), (RETRY, "r2")]
    note_issued_elsewhere(path, CANCEL, ["c1"], at(2))  # another process (`trayagent sync`)
    rows, last = store.issued(last)
    assert rows == [(CANCEL, "c1")]
    assert store.issued(last) == ([], last)
    store.close()
    again = Store(path)
    assert again.issued()[0] == [(RETRY, "r1"), (RETRY, "r2"), (CANCEL, "c1")]
    again.close()


def test_issued_actions_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trayagent.store as store_module

    monkeypatch.setattr(store_module, "ISSUED_LIMIT", 3)
    store = Store(tmp_path / "s.sqlite3")
    for i in range(6):
        store.note_issued(CANCEL, [f"c{i}"], at(i))
    assert [tid for _a, tid in store.issued()[0]] == ["c3", "c4", "c5"]
    store.close()


def test_noting_elsewhere_needs_an_existing_state_file(tmp_path: Path) -> None:
    note_issued_elsewhere(tmp_path / "none.sqlite3", CANCEL, ["x"], T0)
    assert not (tmp_path / "none.sqlite3").exists()
