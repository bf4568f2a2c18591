"""The sync's memory in SQLite: each wanted track's state, every peer+file tried, the search clock.

Every decision is written here *before* the request that acts on it, so a crash between the
two is reconciled on the next start instead of repeated (see sync.py).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from trayagent.db import connect, describe
from trayagent.errors import StoreError, TrayagentError
from trayagent.sync.playlist import WantedTrack
from trayagent.sync.ranking import Candidate
from trayagent.sync.titles import normalise

# Track statuses. Terminal ones end a run for that track.
PENDING = "pending"  # needs a search (maybe after next_at)
SEARCHING = "searching"  # a search with a known id is running on slskd
READY = "ready"  # a ranked pool is waiting for a free download slot
ENQUEUING = "enqueuing"  # the enqueue POST was (maybe) sent; reconcile before anything else
ACTIVE = "active"  # a transfer is being followed
COMPLETED = "completed"
PRESENT = "present"  # already in the music folder
NOT_FOUND = "not_found"
FAILED = "failed"
PICKED = "picked"  # dry run only: a file was chosen and nothing enqueued
TERMINAL = frozenset({COMPLETED, PRESENT, NOT_FOUND, FAILED, PICKED})
OBTAINED = frozenset({COMPLETED, PRESENT})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_tracks (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_attempts (
    key TEXT NOT NULL,
    username TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    transfer_id TEXT,
    outcome TEXT NOT NULL,          -- enqueuing / active / succeeded / failed
    reason TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (key, username, filename)
);
CREATE INDEX IF NOT EXISTS sync_attempts_file ON sync_attempts (username, filename);
"""
SCHEMA_VERSION = 1
#: The sync writes beside a running agent (the same file), whose commits it may wait for.
BUSY_TIMEOUT = 10.0


# Keys before issue 10 cut the artist at "&" and "," and kept version words: read once so a
# track obtained under its old key is not searched (and downloaded) again after an upgrade.
_OLD_DECORATION_RE = re.compile(
    r"\s*[(\[][^)\]]*\b(remaster(ed)?|explicit|clean|mono|stereo|album version|single version|"
    r"original mix|bonus track|deluxe)\b[^)\]]*[)\]]"
    r"|\s+-\s+(\d{4}\s+)?(remaster(ed)?|digital remaster|explicit|mono|stereo)(\s+\d{4})?(\s+version)?\s*$",
    re.IGNORECASE,
)
_OLD_FEAT_RE = re.compile(r"\s*[(\[]?\b(feat\.?|ft\.?|featuring)\s+[^)\]]*[)\]]?", re.IGNORECASE)
_OLD_ARTIST_SPLIT_RE = re.compile(
    r"\s*(?:,|;|\s/\s|\s&\s|\sx\s|\bfeat\.?\s|\bft\.?\s|\bfeaturing\s)\s*", re.IGNORECASE)


def legacy_key(artist: str, title: str) -> str:
    """The key an earlier trayagent stored this track under (first artist, old title rules)."""
    parts = [p.strip() for p in _OLD_ARTIST_SPLIT_RE.split(artist or "") if p and p.strip()]
    first = parts[0] if parts else (artist or "").strip()
    core = _OLD_DECORATION_RE.sub("", _OLD_FEAT_RE.sub("", title)).strip() or title.strip()
    return f"{normalise(first.replace('+', ' '))}|{normalise(core.replace('+', ' '))}"


class SyncBusy(TrayagentError):
    """Another sync (CLI or tray) is already running against the same state file."""


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class Attempt:
    """The download currently followed for a track."""

    username: str
    filename: str
    size: int
    transfer_id: str | None = None
    enqueued_at: float = 0.0
    queued_since: float | None = None  # first poll seen queued (reset when it starts)
    terminal_since: float | None = None  # first poll seen failed but possibly retried
    restart_since: float | None = None  # first poll seen errored by slskd's own restart
    missing_polls: int = 0  # polls in a row slskd no longer had it
    state: str = ""
    bytes_transferred: int = 0
    progress_at: float | None = None  # last poll that saw bytes move (or the start): stall clock


@dataclass(slots=True)
class TrackState:
    """Everything the engine knows about one wanted track; stored as JSON per track.

    `key` is the key the state is stored under: `wanted.key`, or an earlier version's key for a
    track obtained before an upgrade (see `legacy_key`).
    """

    key: str
    wanted: WantedTrack
    status: str = PENDING
    reason: str | None = None
    rounds: int = 0  # searches with the first query form started
    form: int = 0  # which query form (queries.query_forms) the next or running search uses
    searches: int = 0
    search_id: str | None = None
    search_text: str | None = None
    search_started: float | None = None
    pool: list[dict[str, object]] = field(default_factory=list)
    found: bool = False  # some search found an acceptable candidate
    results: str | None = None  # the last search's verdict when nothing matched
    near_misses: list[dict[str, str]] = field(default_factory=list)
    pick: dict[str, object] | None = None  # dry run: the file that would be enqueued
    peer_base: int = 0  # peers tried before the latest retry round (max_attempts counts anew)
    current: Attempt | None = None
    next_at: float = 0.0
    finished_at: float | None = None
    skipped: bool = False  # obtained before this run began (set per run, not stored)

    @property
    def artist(self) -> str:
        return self.wanted.artist

    @property
    def title(self) -> str:
        return self.wanted.title

    @property
    def label(self) -> str:
        return f"{self.artist} - {self.title}"

    def forget_search(self) -> None:
        """Back to the first query form with no pool: for a fresh round of searching."""
        self.rounds, self.form, self.pool, self.next_at = 0, 0, [], 0.0
        self.results, self.near_misses = None, []

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("skipped", None)
        data.update(data.pop("wanted"))  # stored flat, as it always was
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TrackState:
        data = json.loads(text)
        cur = data.pop("current", None)
        data.pop("skipped", None)
        wanted = {k: data.pop(k) for k in WantedTrack.__dataclass_fields__ if k in data}
        wanted["featured"] = tuple(wanted.get("featured") or ())
        known = set(cls.__dataclass_fields__) - {"wanted"}
        state = cls(wanted=WantedTrack(**wanted), **{k: v for k, v in data.items() if k in known})
        if isinstance(cur, dict):
            akeys = set(Attempt.__dataclass_fields__)
            state.current = Attempt(**{k: v for k, v in cur.items() if k in akeys})
        return state

    @classmethod
    def new(cls, track: WantedTrack) -> TrackState:
        return cls(track.key, track)


class SyncStore:
    """The sync's memory: tracks, every peer+file ever tried, and the search clock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = connect(self.path, timeout=BUSY_TIMEOUT)
        try:
            with self._read("open"):
                self._db.executescript(_SCHEMA)
                row = self._db.execute("SELECT v FROM sync_meta WHERE k='schema'").fetchone()
                if row is None:
                    self._db.execute("INSERT OR IGNORE INTO sync_meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except StoreError:
            self._db.close()
            raise
        version = None if row is None else str(row[0])
        if version is not None and not (version.isdigit() and int(version) <= SCHEMA_VERSION):
            self._db.close()
            raise StoreError(f"cannot open the state database {self.path}: its playlist sync tables have version "
                             f"{version[:20]!r}, from a newer trayagent; update trayagent, or move the file aside")

    @contextmanager
    def _read(self, doing: str = "read") -> Iterator[None]:
        """Hold the lock; a failure of the database becomes a StoreError naming the file."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise StoreError(describe(exc, self.path, doing)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: all of it or, on any failure, none of it."""
        with self._read("write"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self, key: str) -> TrackState | None:
        with self._read():
            row = self._db.execute("SELECT data FROM sync_tracks WHERE key=?", (key,)).fetchone()
        return TrackState.from_json(row[0]) if row else None

    def save(self, state: TrackState, now: float) -> None:
        with self._tx() as db:
            self._save(db, state, now)

    @staticmethod
    def _save(db: sqlite3.Connection, state: TrackState, now: float) -> None:
        db.execute(
            "INSERT INTO sync_tracks (key, status, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET status=excluded.status, data=excluded.data, "
            "updated_at=excluded.updated_at",
            (state.key, state.status, state.to_json(), now),
        )

    def tried(self, key: str) -> list[tuple[str, str, str]]:
        """(username, filename, outcome) of every attempt for a track, oldest first."""
        with self._read():
            return self._db.execute(
                "SELECT username, filename, outcome FROM sync_attempts WHERE key=? ORDER BY at, rowid", (key,)
            ).fetchall()

    def file_claimed(self, username: str, filename: str) -> bool:
        """Whether any track has this peer+file enqueued, active or done (never ask twice)."""
        with self._read():
            row = self._db.execute(
                "SELECT 1 FROM sync_attempts WHERE username=? AND filename=? AND outcome != 'failed'",
                (username, filename),
            ).fetchone()
        return row is not None

    def begin_attempt(self, state: TrackState, cand: Candidate, now: float) -> None:
        """Record the intent to enqueue together with the track's new status, atomically."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO sync_attempts (key, username, filename, size, transfer_id, outcome, reason, at) "
                "VALUES (?, ?, ?, ?, NULL, 'enqueuing', NULL, ?)",
                (state.key, cand.username, cand.filename, cand.size, now),
            )
            self._save(db, state, now)

    def drop_attempt(self, state: TrackState, username: str, filename: str, now: float) -> None:
        """Forget an intent that provably never reached slskd (429, or absent on reconcile)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM sync_attempts WHERE key=? AND username=? AND filename=? AND outcome='enqueuing'",
                (state.key, username, filename),
            )
            self._save(db, state, now)

    def set_attempt(
        self, state: TrackState, username: str, filename: str, outcome: str, now: float,
        transfer_id: str | None = None, reason: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sync_attempts SET outcome=?, reason=COALESCE(?, reason), "
                "transfer_id=COALESCE(?, transfer_id) WHERE key=? AND username=? AND filename=?",
                (outcome, reason, transfer_id, state.key, username, filename),
            )
            self._save(db, state, now)

    def copy_to(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent snapshot of the whole store to `path` (a dry run works on one)."""
        with self._read("copy"):
            dest = sqlite3.connect(path)
            try:
                self._db.backup(dest)
            finally:
                dest.close()

    @classmethod
    def scratch_copy(cls, real: Path, path: Path) -> SyncStore:
        """A store at `path` that starts as a copy of the one at `real` (if any): a dry run's."""
        if real.exists():
            store = cls(real)
            try:
                store.copy_to(path)
            finally:
                store.close()
        return cls(path)

    def carry_search_clock(self, real: Path) -> None:
        """Write this (scratch) store's search clock into the store at `real`."""
        last = self.meta("last_search_at")
        if last is None:
            return
        store = SyncStore(real)
        try:
            store.set_meta("last_search_at", last)
        finally:
            store.close()

    def meta(self, key: str) -> str | None:
        with self._read():
            row = self._db.execute("SELECT v FROM sync_meta WHERE k=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO sync_meta VALUES (?, ?)", (key, value))


__all__ = [
    "ACTIVE", "COMPLETED", "ENQUEUING", "FAILED", "NOT_FOUND", "OBTAINED", "PENDING", "PICKED",
    "PRESENT", "READY", "SEARCHING", "TERMINAL", "Attempt", "SyncBusy", "SyncStore", "TrackState", "legacy_key",
]
