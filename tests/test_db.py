"""db.connect: the one SQLite opener of the agent's store and the sync's store."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from trayagent.db import connect
from trayagent.errors import StoreError, TrayagentError
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


# ---------------------------------------------------------------- one error hierarchy (issue 11.4)


def _one_line_store_error(exc: BaseException, path: Path, *needles: str) -> None:
    assert isinstance(exc, StoreError) and isinstance(exc, TrayagentError)
    text = str(exc)
    assert "\n" not in text and str(path) in text, text
    for needle in needles:
        assert needle in text, text


def test_a_file_that_is_not_a_database_is_a_store_error_for_both_stores(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"a shopping list, not a database\n" * 200)
    for store in (Store, SyncStore):
        with pytest.raises(StoreError) as caught:
            store(path)
        _one_line_store_error(caught.value, path, "damaged", "move it aside")


def test_an_unopenable_place_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "state.sqlite3"  # its "directory" is a file
    with pytest.raises(StoreError) as caught:
        connect(path)
    _one_line_store_error(caught.value, path, "cannot open")


def test_sync_tables_from_a_newer_trayagent_are_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    SyncStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)  # autocommit
    db.execute("UPDATE sync_meta SET v='99' WHERE k='schema'")
    db.close()
    with pytest.raises(StoreError) as caught:
        SyncStore(path)
    _one_line_store_error(caught.value, path, "newer trayagent")


def test_a_sync_write_that_fails_is_a_store_error_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SyncStore(path)
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        store.set_meta("before", "1")
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        store._db.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(StoreError) as caught:
            store.set_meta("during", "2")
        _one_line_store_error(caught.value, path, "another program holds a lock")
        holder.execute("ROLLBACK")
        assert store.meta("before") == "1" and store.meta("during") is None
        store.set_meta("after", "3")  # the store is usable again once the lock is gone
        assert store.meta("after") == "3"
    finally:
        holder.close()
        store.close()
