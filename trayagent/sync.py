"""Playlist sync: wanted tracks -> searches -> ranked candidates -> downloads, with retries.

The engine is a single-threaded loop of short ticks so it can be stopped at any moment and
picked up again: every decision is written to SQLite (tables `sync_*` in the file it is
given) *before* the request that acts on it, so a crash between the two is reconciled on
the next start instead of repeated.

Being a good Soulseek citizen drives the shape:
- one search per track (a looser one only when the first finds nothing), rate-limited
  across runs, and deleted from slskd as soon as its responses are read;
- a failed, rejected or timed-out download moves to the next candidate of the *same*
  search; a peer+file that failed for a track is never asked again; a new search only
  when the pool is exhausted, after a backoff;
- a track is obtained only when slskd says `Completed, Succeeded` with every byte.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Sequence

from trayagent.model import Kind, Transfer
from trayagent.playlist import PlaylistError, WantedTrack, load_playlists, split_artist_title
from trayagent.ranking import (
    AUDIO_EXTENSIONS,
    Candidate,
    RankPrefs,
    key_of,
    loose_query,
    rank,
    search_query,
    split_artists,
)
from trayagent.slskd import (
    SlskdBadResponse,
    SlskdBusy,
    SlskdError,
    SlskdNotFound,
    SlskdUnauthorized,
    SlskdUnreachable,
)

log = logging.getLogger(__name__)

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
TERMINAL = frozenset({COMPLETED, PRESENT, NOT_FOUND, FAILED})
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


class SyncBusy(Exception):
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
    state: str = ""
    bytes_transferred: int = 0


@dataclass(slots=True)
class TrackState:
    """Everything the engine knows about one wanted track; stored as JSON per track."""

    key: str
    artist: str
    title: str
    album: str | None = None
    duration: float | None = None
    source: str = ""
    status: str = PENDING
    reason: str | None = None
    rounds: int = 0  # strict searches started
    loose_next: bool = False  # the next search uses the looser text
    searches: int = 0
    search_id: str | None = None
    search_text: str | None = None
    search_started: float | None = None
    pool: list[dict[str, Any]] = field(default_factory=list)
    found: bool = False  # some search found an acceptable candidate
    peer_base: int = 0  # peers tried before the latest retry round (max_attempts counts anew)
    current: Attempt | None = None
    next_at: float = 0.0
    finished_at: float | None = None
    skipped: bool = False  # obtained before this run began (set per run, not stored)

    @property
    def wanted(self) -> WantedTrack:
        return WantedTrack(self.artist, self.title, self.album, self.duration, self.source)

    @property
    def label(self) -> str:
        return f"{self.artist} - {self.title}"

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("skipped", None)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TrackState:
        data = json.loads(text)
        cur = data.pop("current", None)
        data.pop("skipped", None)
        known = set(cls.__dataclass_fields__)
        state = cls(**{k: v for k, v in data.items() if k in known})
        if isinstance(cur, dict):
            akeys = set(Attempt.__dataclass_fields__)
            state.current = Attempt(**{k: v for k, v in cur.items() if k in akeys})
        return state

    @classmethod
    def new(cls, track: WantedTrack) -> TrackState:
        return cls(track.key, track.artist, track.title, track.album, track.duration, track.source)


class SyncStore:
    """The sync's memory: tracks, every peer+file ever tried, and the search clock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # private: it lists what the user downloads
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT v FROM sync_meta WHERE k='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO sync_meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"sync tables in {self.path} are from a newer trayagent")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> "_Tx":
        return _Tx(self._db, self._lock)

    def load(self, key: str) -> TrackState | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM sync_tracks WHERE key=?", (key,)).fetchone()
        return TrackState.from_json(row[0]) if row else None

    def all_tracks(self) -> list[TrackState]:
        with self._lock:
            rows = self._db.execute("SELECT data FROM sync_tracks ORDER BY rowid").fetchall()
        return [TrackState.from_json(r[0]) for r in rows]

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
        with self._lock:
            return self._db.execute(
                "SELECT username, filename, outcome FROM sync_attempts WHERE key=? ORDER BY at, rowid", (key,)
            ).fetchall()

    def file_claimed(self, username: str, filename: str) -> bool:
        """Whether any track has this peer+file enqueued, active or done (never ask twice)."""
        with self._lock:
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

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM sync_meta WHERE k=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO sync_meta VALUES (?, ?)", (key, value))


class _Tx:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


# --------------------------------------------------------------------------- music folder


class LocalLibrary:
    """Normalised (artist, title) keys of the audio files already in the music folder.

    Tags first (mutagen), the file name ("Artist - Title", or "Artist/Album/01 Title") when
    a file has no usable tags or mutagen is missing.
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root).expanduser() if root else None
        self._keys: set[str] | None = None

    def keys(self) -> set[str]:
        if self._keys is None:
            self._keys = self._scan()
        return self._keys

    def contains(self, track: WantedTrack) -> bool:
        return track.key in self.keys()

    def _scan(self) -> set[str]:
        keys: set[str] = set()
        if self.root is None or not self.root.is_dir():
            if self.root is not None:
                log.warning("music folder %s does not exist; nothing counts as present", self.root)
            return keys
        try:
            import mutagen  # noqa: F401
            have_mutagen = True
        except ImportError:  # pragma: no cover - mutagen is a dependency
            have_mutagen = False
            log.warning("mutagen is not installed; matching the music folder by file names only")
        count = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                if ext not in AUDIO_EXTENSIONS:
                    continue
                path = Path(dirpath) / name
                count += 1
                pairs = _tag_pairs(path) if have_mutagen else []
                if not pairs:
                    pairs = _name_pairs(path, self.root)
                for artist, title in pairs:
                    for one in split_artists(artist):
                        keys.add(key_of(one, title))
        log.info("music folder %s: %d audio files, %d known tracks", self.root, count, len(keys))
        return keys


def _tag_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        import mutagen

        audio = mutagen.File(path, easy=True)
    except Exception as exc:  # mutagen raises many types on broken files; never fatal
        log.debug("cannot read tags of %s: %s", path, exc)
        return []
    if audio is None or not getattr(audio, "tags", None):
        return []
    titles = audio.tags.get("title") or []
    artists = (audio.tags.get("artist") or []) + (audio.tags.get("albumartist") or [])
    return [(a, t) for t in titles[:1] for a in artists if a and t]


def _name_pairs(path: Path, root: Path) -> list[tuple[str, str]]:
    stem = re.sub(r"^\s*\d{1,3}(?:\s*[-._)]\s*|\s+)", "", path.stem)
    pair = split_artist_title(stem)
    if pair:
        artist, title = pair
        rest = split_artist_title(title)
        if rest and rest[0].isdigit():
            title = rest[1]
        return [(artist, title)]
    rel = path.relative_to(root).parts
    if len(rel) >= 3:  # Artist/Album/Title.ext
        return [(rel[-3], stem)]
    return []


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class TrackResult:
    key: str
    artist: str
    title: str
    status: str  # completed / skipped / queued / pending / failed / not_found
    reason: str | None = None
    username: str | None = None
    filename: str | None = None
    attempts: int = 0
    searches: int = 0
    found: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a run achieved, per track and in totals."""

    tracks: tuple[TrackResult, ...] = ()
    stopped: bool = False  # stop_event ended the run before every track was settled
    error: str | None = None  # why the run gave up (slskd unreachable, refused...)

    def count(self, status: str) -> int:
        return sum(1 for t in self.tracks if t.status == status)

    @property
    def total(self) -> int:
        return len(self.tracks)

    @property
    def found(self) -> int:
        """Tracks a search found a candidate for (whatever happened to the download)."""
        return sum(1 for t in self.tracks if t.found)

    @property
    def ok(self) -> bool:
        """Every track is on disk or downloaded, and nothing went wrong."""
        return self.error is None and all(t.status in ("completed", "skipped") for t in self.tracks)

    def totals(self) -> dict[str, int]:
        return {
            "total": self.total,
            "skipped": self.count("skipped"),
            "found": self.found,
            "queued": self.count("queued"),
            "pending": self.count("pending"),
            "completed": self.count("completed"),
            "failed": self.count("failed"),
            "not_found": self.count("not_found"),
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.totals())
        out["stopped"] = self.stopped
        if self.error:
            out["error"] = self.error
        out["tracks"] = [t.to_json() for t in self.tracks]
        return out

    def summary(self) -> str:
        """One line for a notification or the end of the CLI output."""
        t = self.totals()
        parts = [f"{t['completed']} downloaded"]
        if t["skipped"]:
            parts.append(f"{t['skipped']} already had")
        if t["queued"] or t["pending"]:
            parts.append(f"{t['queued'] + t['pending']} still queued")
        if t["failed"]:
            parts.append(f"{t['failed']} failed")
        if t["not_found"]:
            parts.append(f"{t['not_found']} not found")
        text = f"Sync of {t['total']} track{'' if t['total'] == 1 else 's'}: " + ", ".join(parts)
        if self.error:
            text += f" (stopped: {self.error})"
        elif self.stopped:
            text += " (stopped)"
        return text


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """A snapshot for a progress bar or the tray tooltip."""

    total: int
    done: int
    active: int
    searching: int
    completed: int
    failed: int
    not_found: int
    current: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def text(self) -> str:
        extra = []
        if self.active:
            extra.append(f"{self.active} downloading")
        if self.searching:
            extra.append("searching")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"Sync {self.done}/{self.total}{tail}"


# --------------------------------------------------------------------------- engine


@dataclass(slots=True)
class EngineTimings:
    """Seconds unless named otherwise. Defaults suit a real slskd; tests shrink them."""

    poll_interval: float = 2.0
    max_active: int = 3  # downloads followed at once (and ranked pools waiting)
    search_timeout_ms: int = 15000
    search_guard: float = 180.0  # give up on a search that never completes
    settle: float = 65.0  # a retryable failure must stay failed this long (slskd retries)
    casualty_wait: float = 600.0  # slskd restarted: it re-enqueues after logging in again
    busy_backoff: float = 2.0  # after a 429
    search_backoff: float = 300.0  # before searching again for an exhausted pool, doubling
    max_search_rounds: int = 3
    retry_after: float = 24 * 3600.0  # not-found / failed tracks are tried again after this
    give_up_after: float = 120.0  # slskd unreachable this long ends the run


class SyncEngine:
    """Runs a sync over wanted tracks. Not thread-safe: one `run` at a time per instance."""

    def __init__(
        self,
        client: Any,
        config: Any,
        store_path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        timings: EngineTimings | None = None,
        library: LocalLibrary | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.prefs = RankPrefs.from_config(config)
        self.max_attempts = max(1, int(getattr(config, "max_attempts", 5) or 5))
        self.queue_timeout = max(0.0, float(getattr(config, "queue_timeout", 30.0))) * 60.0
        spm = float(getattr(config, "searches_per_minute", 6.0) or 0.0)
        self.search_interval = 60.0 / spm if spm > 0 else 0.0
        self.store_path = Path(store_path)
        self.clock = clock
        self._sleep = sleep
        self.t = timings or EngineTimings()
        self.library = library if library is not None else LocalLibrary(getattr(config, "music_dir", "") or None)
        self._store: SyncStore | None = None
        self._down_since: float | None = None
        self._error: str | None = None

    # ------------------------------------------------------------- public

    def run(
        self,
        tracks: Iterable[WantedTrack],
        progress_cb: Callable[[SyncProgress], None] | None = None,
        stop_event: threading.Event | None = None,
    ) -> SyncReport:
        """Sync until every track is settled, `stop_event` is set, or slskd gives up on us.

        Safe to call again after a stop or a crash: it resumes from the store.
        """
        stop = stop_event or threading.Event()
        lock = _RunLock(self.store_path.with_name(self.store_path.name + ".sync.lock"))
        lock.acquire()
        try:
            self._store = SyncStore(self.store_path)
            self._error = None
            self._down_since = None
            states = self._prepare(list(tracks))
            self._emit(states, progress_cb)
            while not stop.is_set():
                self._tick(states)
                self._emit(states, progress_cb)
                if self._error or all(s.status in TERMINAL for s in states):
                    break
                self._wait(self.t.poll_interval, stop)
            return self._report(states, stopped=stop.is_set() and not all(s.status in TERMINAL for s in states))
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None
            lock.release()

    # ------------------------------------------------------------- setup

    @property
    def store(self) -> SyncStore:
        assert self._store is not None, "only inside run()"
        return self._store

    def _prepare(self, tracks: list[WantedTrack]) -> list[TrackState]:
        now = self.clock()
        states: list[TrackState] = []
        seen: set[str] = set()
        for track in tracks:
            if track.key in seen:
                continue
            seen.add(track.key)
            state = self.store.load(track.key)
            if state is None:
                state = TrackState.new(track)
                if self.library.contains(track):
                    state.status, state.reason, state.finished_at = PRESENT, "in music folder", now
                    state.skipped = True
                self.store.save(state, now)
            elif state.status in OBTAINED:
                state.skipped = True
            elif state.status in (NOT_FOUND, FAILED):
                if self.library.contains(track):
                    state.status, state.reason, state.skipped = PRESENT, "in music folder", True
                    self.store.save(state, now)
                elif state.finished_at is None or now - state.finished_at >= self.t.retry_after:
                    log.info("%s: trying again (last: %s)", state.label, state.reason)
                    state.status, state.reason, state.finished_at = PENDING, None, None
                    state.rounds, state.loose_next, state.pool, state.next_at = 0, False, [], 0.0
                    state.peer_base = len({u for u, _f, _o in self.store.tried(state.key)})
                    self.store.save(state, now)
            elif state.status in (PENDING, READY) and self.library.contains(track):
                state.status, state.reason, state.skipped = PRESENT, "in music folder", True
                self.store.save(state, now)
            states.append(state)
        for state in states:  # a crash between intent and answer: find out what happened
            if state.status == ENQUEUING:
                self._reconcile_enqueue(state)
        return states

    # ------------------------------------------------------------- loop

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            stop.wait(seconds)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call slskd; track how long it has been unreachable; unauthorised ends the run."""
        try:
            result = fn(*args, **kwargs)
        except SlskdUnreachable as exc:
            self._note_down(f"slskd unreachable: {exc}")
            raise
        except SlskdUnauthorized as exc:
            self._error = str(exc)
            raise
        except SlskdError as exc:
            if exc.status == 409:  # slskd is up but not logged in to Soulseek: count as down
                self._note_down(f"slskd is not logged in to the Soulseek network ({exc})")
            raise
        if self._down_since is not None:
            log.info("slskd reachable again")
            self._down_since = None
        return result

    def _note_down(self, why: str) -> None:
        now = self.clock()
        if self._down_since is None:
            self._down_since = now
            log.warning("%s", why)
        if now - self._down_since >= self.t.give_up_after:
            self._error = why

    def _tick(self, states: list[TrackState]) -> None:
        try:
            for state in states:
                if state.status == ENQUEUING:
                    self._reconcile_enqueue(state)
                elif state.status == ACTIVE:
                    self._poll_transfer(state)
            for state in states:
                if state.status == SEARCHING:
                    self._poll_search(state)
            now = self.clock()
            busy = sum(1 for s in states if s.status in (ACTIVE, ENQUEUING))
            for state in states:
                if busy >= self.t.max_active:
                    break
                if state.status == READY and state.next_at <= now:
                    self._enqueue_next(state)
                    if state.status in (ACTIVE, ENQUEUING):
                        busy += 1
            waiting = busy + sum(1 for s in states if s.status == READY)
            if waiting < self.t.max_active and not any(s.status == SEARCHING for s in states):
                for state in states:
                    if state.status == PENDING and state.next_at <= now:
                        self._start_search(state)
                        break
        except (SlskdUnreachable, SlskdUnauthorized):
            pass  # already recorded by _call; the next tick tries again (or the run ends)

    # ------------------------------------------------------------- searching

    def _start_search(self, state: TrackState) -> None:
        now = self.clock()
        last = float(self.store.meta("last_search_at") or 0.0)
        if last > now:  # the wall clock went back: don't wait for ever
            last = now
        if now - last < self.search_interval:
            return
        loose = state.loose_next
        text = loose_query(state.artist, state.title) if loose else search_query(state.artist, state.title)
        if not text.strip():
            self._finish(state, NOT_FOUND, "nothing to search for")
            return
        state.search_id = str(uuid.uuid4())
        state.search_text = text
        state.search_started = now
        state.status = SEARCHING
        self.store.save(state, now)  # the id first: a restart finds (and deletes) the search
        try:
            self._call(self.client.start_search, text, search_id=state.search_id,
                       timeout_ms=self.t.search_timeout_ms)
        except SlskdBusy:
            self._back_to_pending(state, self.t.busy_backoff)
            return
        except SlskdUnreachable:
            raise  # unknown whether it started: SEARCHING stays, the poll finds out
        except SlskdError as exc:  # 409 not logged in, 400, 500: try later
            log.warning("search for %s refused: %s", state.label, exc)
            self._back_to_pending(state, max(self.t.busy_backoff, self.search_interval))
            return
        self.store.set_meta("last_search_at", repr(now))
        state.searches += 1
        if not loose:
            state.rounds += 1
        self.store.save(state, now)
        log.info("searching %r for %s", text, state.label)

    def _back_to_pending(self, state: TrackState, delay: float) -> None:
        now = self.clock()
        state.status, state.search_id, state.search_started = PENDING, None, None
        state.next_at = now + delay
        self.store.save(state, now)

    def _poll_search(self, state: TrackState) -> None:
        assert state.search_id
        now = self.clock()
        info: dict[str, Any]
        try:
            info = self._call(self.client.get_search, state.search_id)
        except SlskdNotFound:
            log.info("search for %s is gone from slskd; searching again", state.label)
            self._back_to_pending(state, 0.0)
            return
        except SlskdBadResponse as exc:
            log.warning("search for %s: %s", state.label, exc)
            info = {}
        done = info.get("isComplete") is True or "Completed" in str(info.get("state", ""))
        if not done:
            if state.search_started and now - state.search_started > self.t.search_guard:
                log.warning("search %r never completed; deleting it", state.search_text)
                self._delete_search(state.search_id)
                self._searched(state, [])  # must not block every other track's search
            return
        try:
            responses = self._call(self.client.search_responses, state.search_id)
        except SlskdNotFound:
            responses = []
        self._delete_search(state.search_id)
        self._searched(state, responses)

    def _delete_search(self, search_id: str) -> None:
        try:
            self._call(self.client.delete_search, search_id)
        except SlskdNotFound:
            pass
        except SlskdError as exc:
            if isinstance(exc, SlskdUnreachable):
                raise
            log.warning("could not delete search %s: %s", search_id, exc)

    def _searched(self, state: TrackState, responses: Sequence[dict[str, Any]]) -> None:
        now = self.clock()
        exclude = {(u, f) for u, f, _o in self.store.tried(state.key)}
        acceptable = rank(state.wanted, responses, self.prefs)
        pool = [c for c in acceptable if c.key not in exclude]
        log.info("search %r: %d responses, %d acceptable files, %d not tried yet",
                 state.search_text, len(responses), len(acceptable), len(pool))
        was_loose = state.loose_next
        state.search_id = state.search_started = None
        state.loose_next = False
        state.pool = [c.to_json() for c in pool]
        if self._pick(state) is not None:
            state.found = True
            state.status, state.next_at = READY, 0.0
            self.store.save(state, now)
            return
        # A looser text only when this search found nothing acceptable at all (not merely
        # nothing new): the polite minimum of extra searches.
        if not acceptable and not was_loose and loose_query(state.artist, state.title) != state.search_text:
            state.loose_next, state.status, state.next_at = True, PENDING, 0.0
            self.store.save(state, now)
            return
        if state.found or acceptable:
            self._exhausted(state)
        else:
            self._finish(state, NOT_FOUND, "no results")

    # ------------------------------------------------------------- choosing and enqueueing

    def _pick(self, state: TrackState) -> Candidate | None:
        """The best candidate not yet tried for this track, from a peer not yet tried."""
        tried = self.store.tried(state.key)
        files = {(u, f) for u, f, _o in tried}
        peers = {u for u, _f, _o in tried}
        for raw in state.pool:
            cand = Candidate.from_json(raw)
            if cand.key in files or cand.username in peers:
                continue
            if self.store.file_claimed(cand.username, cand.filename):
                continue  # another wanted track already has this very file
            return cand
        return None

    def _enqueue_next(self, state: TrackState) -> None:
        cand = self._pick(state)
        if cand is None:
            self._exhausted(state)
            return
        now = self.clock()
        state.current = Attempt(cand.username, cand.filename, cand.size, enqueued_at=now)
        state.status = ENQUEUING
        self.store.begin_attempt(state, cand, now)
        try:
            result = self._call(self.client.enqueue, cand.username, [(cand.filename, cand.size)])
        except SlskdBusy:
            log.info("slskd busy (429) enqueueing %s; retrying shortly", state.label)
            state.current, state.status, state.next_at = None, READY, now + self.t.busy_backoff
            self.store.drop_attempt(state, cand.username, cand.filename, now)
            return
        except SlskdUnreachable:
            raise  # stays ENQUEUING: reconciled against slskd's list once it answers
        except SlskdError as exc:  # e.g. 500 "User X appears to be offline"
            self._attempt_failed(state, f"enqueue refused: {exc}")
            return
        transfer = next((t for t in result.enqueued if t.filename == cand.filename), None)
        if transfer is None:  # old slskd (no ids), or "Skipped: already in progress"
            transfer = self._find_download(cand.username, cand.filename)
        if transfer is None:
            self._attempt_failed(state, "slskd did not enqueue the file")
            return
        self._adopt(state, transfer)
        log.info("enqueued %s from %s: %s", state.label, cand.username, cand.filename)

    def _find_download(self, username: str, filename: str) -> Transfer | None:
        matches = [t for t in self._call(self.client.list_downloads)
                   if t.username == username and t.filename == filename]
        live = [t for t in matches if not t.status.terminal]
        pool = live or matches
        return max(pool, key=lambda t: t.requested_at_raw or "") if pool else None

    def _adopt(self, state: TrackState, transfer: Transfer) -> None:
        now = self.clock()
        assert state.current is not None
        state.current.transfer_id = transfer.id
        state.current.state = transfer.state
        state.status = ACTIVE
        self.store.set_attempt(state, state.current.username, state.current.filename, "active", now,
                               transfer_id=transfer.id)

    def _reconcile_enqueue(self, state: TrackState) -> None:
        cur = state.current
        now = self.clock()
        if cur is None:
            state.status = READY
            self.store.save(state, now)
            return
        try:
            transfer = self._find_download(cur.username, cur.filename)
        except SlskdUnreachable:
            return
        except SlskdError as exc:
            log.warning("cannot check slskd's downloads: %s", exc)
            return
        if transfer is not None:
            log.info("%s: enqueue from an earlier run found in slskd", state.label)
            self._adopt(state, transfer)
        else:  # the POST never took effect: the same candidate may be asked for once
            state.current, state.status = None, READY
            self.store.drop_attempt(state, cur.username, cur.filename, now)

    # ------------------------------------------------------------- following a download

    def _poll_transfer(self, state: TrackState) -> None:
        cur = state.current
        assert cur is not None and cur.transfer_id
        now = self.clock()
        try:
            transfer: Transfer = self._call(self.client.get_download, cur.username, cur.transfer_id)
        except SlskdNotFound:
            self._attempt_failed(state, "download vanished from slskd")
            return
        except SlskdBadResponse as exc:
            log.warning("polling %s: %s", state.label, exc)
            return
        status = transfer.status
        cur.state, cur.bytes_transferred = transfer.state, transfer.bytes_transferred
        size = transfer.size or cur.size
        if status.kind is Kind.SUCCEEDED:
            if size > 0 and transfer.bytes_transferred >= size:
                self._succeeded(state)
            else:
                self._attempt_failed(state, f"incomplete ({transfer.bytes_transferred}/{size} bytes)")
            return
        if status.kind is Kind.CANCELLED:
            self._attempt_failed(state, "cancelled")
            return
        if status.kind is Kind.FAILED:
            settle = self.t.settle
            if transfer.is_shutdown_casualty:  # slskd restarted; it re-enqueues under a new id
                settle = max(settle, self.t.casualty_wait)
                newer = self._find_download(cur.username, cur.filename)
                if newer is not None and newer.id != cur.transfer_id and not newer.status.terminal:
                    log.info("%s: slskd re-enqueued it after a restart; following %s", state.label, newer.id)
                    cur.transfer_id, cur.terminal_since = newer.id, None
                    self.store.set_attempt(state, cur.username, cur.filename, "active", now, transfer_id=newer.id)
                    return
            if status.retryable:  # slskd may retry it under the same id: let it settle
                if cur.terminal_since is None:
                    cur.terminal_since = now
                    self.store.save(state, now)
                if now - cur.terminal_since < settle:
                    return
                self._cancel(cur)  # a retry slskd schedules later must not run behind our back
            self._attempt_failed(state, status.reason or "failed")
            return
        cur.terminal_since = None
        if status.kind is Kind.QUEUED:
            if cur.queued_since is None:
                cur.queued_since = now
                self.store.save(state, now)
            if now - cur.queued_since >= self.queue_timeout:
                log.info("%s: queued at %s for %.0f min; trying another peer",
                         state.label, cur.username, (now - cur.queued_since) / 60)
                self._cancel(cur)
                self._attempt_failed(state, "queue timeout")
            return
        if cur.queued_since is not None:  # IN_PROGRESS
            cur.queued_since = None
            self.store.save(state, now)

    def _cancel(self, cur: Attempt) -> None:
        cancel = getattr(self.client, "cancel_download", None)
        if cancel is None or not cur.transfer_id:
            return
        try:
            self._call(cancel, cur.username, cur.transfer_id)
        except SlskdUnreachable:
            raise
        except SlskdError as exc:
            log.warning("could not cancel %s from %s: %s", cur.filename, cur.username, exc)

    def _succeeded(self, state: TrackState) -> None:
        cur = state.current
        assert cur is not None
        now = self.clock()
        state.status, state.reason, state.finished_at = COMPLETED, None, now
        self.store.set_attempt(state, cur.username, cur.filename, "succeeded", now)
        log.info("%s: downloaded from %s", state.label, cur.username)

    def _attempt_failed(self, state: TrackState, reason: str) -> None:
        cur = state.current
        assert cur is not None
        now = self.clock()
        log.info("%s: %s from %s (%s)", state.label, cur.filename, cur.username, reason)
        state.reason = reason
        state.status, state.next_at = READY, now
        state.current = None
        self.store.set_attempt(state, cur.username, cur.filename, "failed", now, reason=reason)
        peers = len({u for u, _f, _o in self.store.tried(state.key)}) - state.peer_base
        if peers >= self.max_attempts:
            self._finish(state, FAILED, f"{peers} peers tried; last: {reason}")
            return
        if self._pick(state) is None:
            self._exhausted(state)

    def _exhausted(self, state: TrackState) -> None:
        """No candidate left in the pool: search again after a backoff, or give up."""
        now = self.clock()
        if state.rounds >= self.t.max_search_rounds:
            self._finish(state, NOT_FOUND, f"candidates exhausted after {state.rounds} searches")
            return
        delay = self.t.search_backoff * (2 ** max(state.rounds - 1, 0))
        state.status, state.pool, state.loose_next, state.next_at = PENDING, [], False, now + delay
        state.current = None
        self.store.save(state, now)
        log.info("%s: every candidate tried; searching again in %.0f s", state.label, delay)

    def _finish(self, state: TrackState, status: str, reason: str | None) -> None:
        now = self.clock()
        state.status, state.reason, state.finished_at = status, reason, now
        state.search_id = None
        self.store.save(state, now)
        log.info("%s: %s (%s)", state.label, status.replace("_", " "), reason)

    # ------------------------------------------------------------- reporting

    def _emit(self, states: list[TrackState], cb: Callable[[SyncProgress], None] | None) -> None:
        if cb is None:
            return
        current = next((s.label for s in states if s.status == SEARCHING), "")
        progress = SyncProgress(
            total=len(states),
            done=sum(1 for s in states if s.status in TERMINAL),
            active=sum(1 for s in states if s.status in (ACTIVE, ENQUEUING)),
            searching=sum(1 for s in states if s.status == SEARCHING),
            completed=sum(1 for s in states if s.status == COMPLETED and not s.skipped),
            failed=sum(1 for s in states if s.status == FAILED),
            not_found=sum(1 for s in states if s.status == NOT_FOUND),
            current=current,
        )
        try:
            cb(progress)
        except Exception:  # a broken progress display must not stop the sync
            log.exception("progress callback failed")

    def _report(self, states: list[TrackState], stopped: bool) -> SyncReport:
        results = []
        for s in states:
            if s.skipped:
                status = "skipped"
            elif s.status == COMPLETED:
                status = "completed"
            elif s.status in (ACTIVE, ENQUEUING):
                status = "queued"
            elif s.status in (PENDING, SEARCHING, READY):
                status = "pending"
            else:
                status = s.status
            tried = self.store.tried(s.key) if self._store else []
            last = tried[-1] if tried else None
            results.append(TrackResult(
                key=s.key, artist=s.artist, title=s.title, status=status, reason=s.reason,
                username=last[0] if last else None, filename=last[1] if last else None,
                attempts=len({u for u, _f, _o in tried}), searches=s.searches, found=s.found,
            ))
        return SyncReport(tuple(results), stopped=stopped, error=self._error)


class _RunLock:
    """One sync per state file across processes (CLI and tray): an flock'd side file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":  # pragma: no cover
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SyncBusy("another sync is already running") from None
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the lock


# --------------------------------------------------------------------------- entry points


def run_configured_sync(
    config: Any,
    paths: Sequence[str | os.PathLike[str]] = (),
    progress_cb: Callable[[SyncProgress], None] | None = None,
    stop_event: threading.Event | None = None,
    client: Any = None,
) -> SyncReport:
    """The tray's "Sync playlists": the given (or configured) playlists, state in state_path.

    Raises PlaylistError for an unreadable playlist, SyncBusy when a sync already runs and
    ValueError when no playlist is given or configured. Meant for a background thread.
    """
    chosen = list(paths) or list(getattr(config.sync, "playlists", ()) or ())
    if not chosen:
        raise ValueError("no playlists configured in [sync] playlists")
    tracks = load_playlists(chosen)
    own_client = client is None
    if client is None:
        from trayagent.slskd import SlskdClient

        client = SlskdClient(config.slskd)
    try:
        engine = SyncEngine(client, config.sync, config.state_path)
        return engine.run(tracks, progress_cb=progress_cb, stop_event=stop_event)
    finally:
        if own_client:
            client.close()


# --------------------------------------------------------------------------- CLI


def _bar(progress: SyncProgress, width: int = 30) -> str:
    filled = int(round(progress.fraction * width))
    bar = "#" * filled + "-" * (width - filled)
    text = f"[{bar}] {progress.done}/{progress.total}"
    if progress.active:
        text += f"  {progress.active} downloading"
    if progress.current:
        text += f"  searching: {progress.current[:40]}"
    return text


def run_sync_command(
    config: Any,
    paths: Sequence[str | os.PathLike[str]],
    json_out: bool,
    out: IO[str],
    err: IO[str],
    *,
    client: Any = None,
    engine_factory: Callable[..., SyncEngine] | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """`trayagent sync [PATH...] [--json]`: 0 all obtained, 1 otherwise, 2 bad input.

    Without PATHs the playlists of `[sync] playlists` are used. A progress bar goes to `err`
    when it is a terminal; the report goes to `out` (JSON with --json). Ctrl-C stops
    cleanly: the state is saved and the next run resumes.
    """
    chosen = list(paths) or list(getattr(config.sync, "playlists", ()) or ())
    if not chosen:
        err.write("trayagent sync: no playlists given and none configured in [sync] playlists\n")
        return 2
    try:
        tracks = load_playlists(chosen)
    except PlaylistError as exc:
        err.write(f"trayagent sync: {exc}\n")
        return 2
    own_client = client is None
    if client is None:
        from trayagent.slskd import SlskdClient

        client = SlskdClient(config.slskd)
    factory = engine_factory or SyncEngine
    engine = factory(client, config.sync, config.state_path)
    tty = bool(getattr(err, "isatty", lambda: False)())
    stop = stop_event or threading.Event()

    def show(progress: SyncProgress) -> None:
        if tty:  # a bar only where a human watches; logs and pipes stay clean
            err.write("\r\x1b[2K" + _bar(progress))
            err.flush()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        report = engine.run(tracks, progress_cb=show, stop_event=stop)
    except SyncBusy as exc:
        err.write(f"trayagent sync: {exc}\n")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if own_client:
            client.close()
        if tty:
            err.write("\n")
            err.flush()
    if json_out:
        out.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        for t in report.tracks:
            if t.status not in ("completed", "skipped"):
                why = f" ({t.reason})" if t.reason else ""
                out.write(f"{t.status.replace('_', ' ')}: {t.artist} - {t.title}{why}\n")
        out.write(report.summary() + "\n")
    out.flush()
    return 0 if report.ok else 1


__all__ = [
    "EngineTimings", "LocalLibrary", "SyncBusy", "SyncEngine", "SyncProgress", "SyncReport",
    "SyncStore", "TrackResult", "run_configured_sync", "run_sync_command",
]
