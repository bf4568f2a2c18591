"""db.connect: the one SQLite opener of the agent's store and the sync's store."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from trayagent.db import connect
from trayagent.store import Store
from trayagent.sync.store import SyncStore


def test_a_new_database_is_private_in_wal_mode_and_shared_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "state" / "new.sqlite3"
    db = connect(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.isolation_level is None  # autocommit: the stores say BEGIN IMMEDIATE themselves
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(db.execute("SELECT 1").fetchone()[0]))
        worker.start()
        worker.join()
        assert seen == [1]
    finally:
        db.close()


def test_both_stores_open_through_it(tmp_path: Path) -> None:
    """The agent's and the sync's tables in one file, each store private and in WAL mode."""
    path = tmp_path / "fresh" / "slskd-x.sqlite3"
    SyncStore(path).close()
    Store(path).close()
    db = connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"sync_tracks", "tracked"} <= tables
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # the sync's store made the directory
