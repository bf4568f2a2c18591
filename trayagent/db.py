"""Opening trayagent's SQLite files, the one way both stores need (the agent's and the sync's).

Both live in the user's state directory and hold what the user downloads, so a new file is
created private (0600, in a 0700 directory) before SQLite touches it. Both are written from
more than one thread and by more than one process (the agent, `trayagent sync`, `clear`), so
the connection is shared across threads (callers hold their own lock), runs in autocommit
mode (callers say BEGIN IMMEDIATE themselves), waits `timeout` seconds for another process's
lock, and uses WAL, so readers never block the one writer.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from trayagent.errors import StoreError
from trayagent.paths import make_private_dir

#: How long a write waits for another process's lock on the database before giving up.
BUSY_TIMEOUT = 5.0


def connect(path: Path, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open the database at `path` for reading and writing, creating it (private) if need be.

    Raises StoreError, whose message names the file, says why in words and what to do.
    """
    try:
        make_private_dir(path.parent)
        if not path.exists():  # create it private: it holds the user's download history
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(describe(exc, path, "open")) from exc
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(describe(exc, path, "open")) from exc
    return db


def describe(exc: BaseException, path: Path, doing: str) -> str:
    """One line for the user about a failed database operation (sqlite's own words are terse)."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if "locked" in low or "busy" in low:
        why = "another program holds a lock on it"
    elif "full" in low:
        why = "the disk is full; free some space (nothing is lost meanwhile)"
    elif "i/o" in low:
        why = "the disk refused the write (full, over a size limit, or failing); nothing is lost meanwhile"
    elif "readonly" in low or "read-only" in low or "unable to open" in low or isinstance(exc, PermissionError):
        why = f"it cannot be written ({text}): check that {path.parent} is writable"
    elif "not a database" in low or "malformed" in low or "corrupt" in low or "no such table" in low \
            or isinstance(exc, (ValueError, KeyError, TypeError)):
        why = f"it is damaged ({text}): move it aside and trayagent starts afresh"
    else:
        why = text
    return f"cannot {doing} the state database {path}: {why}"


__all__ = ["BUSY_TIMEOUT", "connect", "describe"]
