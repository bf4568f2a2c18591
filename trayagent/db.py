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

from trayagent.paths import make_private_dir

#: How long a write waits for another process's lock on the database before giving up.
BUSY_TIMEOUT = 5.0


def connect(path: Path, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open the database at `path` for reading and writing, creating it (private) if need be.

    Raises OSError or sqlite3.Error as they come: each store says in its own words which file
    failed and what to do.
    """
    make_private_dir(path.parent)
    if not path.exists():  # create it private: it holds the user's download history
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


__all__ = ["BUSY_TIMEOUT", "connect"]
