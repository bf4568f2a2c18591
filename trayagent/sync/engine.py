"""Playlist sync: wanted tracks -> searches -> ranked candidates -> downloads, with retries.

The engine is a single-threaded loop of short ticks so it can be stopped at any moment and
picked up again: every decision is written to SQLite (sync/store.py) *before* the request that
acts on it, so a crash between the two is reconciled on the next start instead of repeated.

Being a good Soulseek citizen, and never stalling, drive the shape:
- searches go out at `searches_per_minute` (counted across runs) whatever the downloads do:
  waiting in a peer's queue costs nothing here, so queued transfers never hold up searching
  or enqueueing; only transfers that may be *in progress* are bounded (`max_in_progress`);
- one search per track, a different query form only when one finds nothing acceptable
  (sync/search.py, queries.py); every search deleted from slskd once read;
- a failed, rejected, timed-out, too-long-queued or stalled download moves to the next
  candidate of the *same* search; a peer+file that failed for a track is never asked again;
  a new search only when the pool is exhausted, after a backoff;
- a track is obtained only when slskd says `Completed, Succeeded` with every byte.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, ParamSpec, Protocol, Sequence, TypeVar

from trayagent.config import SyncConfig
from trayagent.sync.library import LocalLibrary
from trayagent.core.model import Transfer, parse_flags
from trayagent.core.rules import FollowRules
from trayagent.core.tracker import Rules
from trayagent.lock import AlreadyRunning, InstanceLock
from trayagent.sync.playlist import WantedTrack
from trayagent.sync.queries import query_forms, why_unsearchable
from trayagent.sync.ranking import Candidate, RankPrefs, rank_files
from trayagent.slskd.errors import SlskdBusy, SlskdError, SlskdUnauthorized, SlskdUnreachable
from trayagent.sync.report import SyncProgress, SyncReport, TrackResult, progress_of, track_result
from trayagent.sync.search import SearchClient, SearchRunner, SearchTimings
from trayagent.sync.store import (
    ACTIVE, COMPLETED, ENQUEUING, FAILED, NOT_FOUND, OBTAINED, PENDING, PICKED, PRESENT, READY, SEARCHING,
    TERMINAL, Attempt, SyncBusy, SyncStore, TrackState, legacy_key,
)
from trayagent.sync.transfers import TransferClient, TransferFollower

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")


class SyncClient(SearchClient, TransferClient, Protocol):
    """What the sync asks of slskd: SlskdClient, or a wrapper that notes its cancels."""


@dataclass(slots=True)
class EngineTimings:
    """Seconds unless named otherwise. Defaults suit a real slskd; tests shrink them."""

    poll_interval: float = 2.0
    max_searches: int = 4  # searches running at once (the rate still spaces their starts)
    search_timeout_ms: int | None = None  # slskd's searchTimeout; None: [sync] search_timeout
    search_guard: float = 180.0  # give up on a search that never completes
    rules: FollowRules = field(default_factory=Rules)  # the tracker's settle/restart/grace rules
    busy_backoff: float = 2.0  # after a 429
    search_backoff: float = 300.0  # before searching again for an exhausted pool, doubling
    max_search_rounds: int = 3
    retry_after: float = 24 * 3600.0  # not-found / failed tracks are tried again after this
    give_up_after: float = 120.0  # slskd unreachable (or logged out) this long ends the run
    login_check: float = 5.0  # slskd's "logged in" answer is trusted this long


class SyncEngine(TransferFollower):
    """Runs a sync over wanted tracks. Not thread-safe: one `run` at a time per instance."""

    t: EngineTimings

    def __init__(
        self,
        client: SyncClient,
        config: SyncConfig,
        store_path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        timings: EngineTimings | None = None,
        library: LocalLibrary | None = None,
        dry_run: bool = False,
    ) -> None:
        self.client = client
        self.config = config
        self.prefs = RankPrefs.from_config(config)
        self.max_attempts = max(1, config.max_attempts)
        self.max_in_progress = max(1, config.max_in_progress)
        self.queue_timeout = max(0.0, config.queue_timeout) * 60.0
        self.stall_timeout = max(0.0, config.stall_timeout) * 60.0
        spm = config.searches_per_minute
        self.store_path = Path(store_path)
        self.clock = clock
        self._sleep = sleep
        self.t = timings or EngineTimings()
        self.dry_run = dry_run
        self.library = library if library is not None else LocalLibrary(config.music_dir or None)
        timeout_ms = self.t.search_timeout_ms
        if timeout_ms is None:
            timeout_ms = int(config.search_timeout * 1000)
        self.searcher = SearchRunner(client, lambda: self.store, self._call, clock, SearchTimings(
            interval=60.0 / spm if spm > 0 else 0.0, timeout_ms=max(5, timeout_ms),
            guard=self.t.search_guard, busy_backoff=self.t.busy_backoff, login_check=self.t.login_check))
        self._store: SyncStore | None = None
        self._down_since: float | None = None
        self._logged_out_since: float | None = None
        self._error: str | None = None
        self._settled: list[str] = []
        self._listing: list[Transfer] | None = None  # slskd's downloads, fetched once per tick

    # ------------------------------------------------------------- public

    def run(
        self,
        tracks: Iterable[WantedTrack],
        progress_cb: Callable[[SyncProgress], None] | None = None,
        stop_event: threading.Event | None = None,
    ) -> SyncReport:
        """Sync until every track is settled, `stop_event` is set, or slskd gives up on us.

        Safe to call again after a stop or a crash: it resumes from the store. A dry run works
        on a copy of the store (so it changes nothing) but shares the search clock.
        """
        stop = stop_event or threading.Event()
        lock = InstanceLock.for_sync(self.store_path)
        try:
            lock.acquire()
        except AlreadyRunning as exc:
            who = f" (pid {exc.pid})" if exc.pid is not None else ""
            raise SyncBusy(f"another sync is already running{who}") from None
        scratch = tempfile.TemporaryDirectory(prefix="trayagent-dry-run-") if self.dry_run else None
        try:
            self._store = self._open_store(scratch)
            self._error, self._down_since, self._logged_out_since = None, None, None
            states = self._prepare(list(tracks))
            self._emit(states, progress_cb)
            while not stop.is_set():
                self._tick(states)
                self._emit(states, progress_cb)
                if self._error or all(self._settled_state(s) for s in states):
                    break
                self._wait(self._pause(states), stop)
            unsettled = not all(self._settled_state(s) for s in states)
            return self._report(states, stopped=stop.is_set() and unsettled)
        finally:
            self._close_store(scratch)
            lock.release()

    # ------------------------------------------------------------- setup

    @property
    def store(self) -> SyncStore:
        assert self._store is not None, "only inside run()"
        return self._store

    def _open_store(self, scratch: tempfile.TemporaryDirectory[str] | None) -> SyncStore:
        if scratch is None:
            return SyncStore(self.store_path)
        return SyncStore.scratch_copy(self.store_path, Path(scratch.name) / "dry-run.sqlite3")

    def _close_store(self, scratch: tempfile.TemporaryDirectory[str] | None) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        if scratch is not None:  # the dry run's searches count against the next run's rate
            store.carry_search_clock(self.store_path)
        store.close()
        if scratch is not None:
            scratch.cleanup()

    def _settled_state(self, state: TrackState) -> bool:
        return state.status in TERMINAL or (self.dry_run and state.status in (ACTIVE, ENQUEUING))

    def _prepare(self, tracks: list[WantedTrack]) -> list[TrackState]:
        now = self.clock()
        states: list[TrackState] = []
        seen: set[str] = set()
        for track in tracks:
            if track.key in seen:
                continue
            seen.add(track.key)
            state = self.store.load(track.key) or self._carried_over(track)
            if state is None:
                state = TrackState.new(track)
            elif state.status in OBTAINED:
                state.skipped = True
            elif state.status in (NOT_FOUND, FAILED, PICKED):
                if self.dry_run or state.finished_at is None or now - state.finished_at >= self.t.retry_after:
                    log.info("%s: trying again (last: %s)", state.label, state.reason)
                    state.status, state.reason, state.finished_at = PENDING, None, None
                    state.forget_search()
                    state.peer_base = len({u for u, _f, _o in self.store.tried(state.key)})
            elif self.dry_run and state.status in (READY, SEARCHING):
                state.status, state.search_id = PENDING, None
                state.forget_search()
            if state.status in (PENDING, READY, NOT_FOUND, FAILED) and self.library.contains(track):
                state.status, state.reason, state.skipped, state.finished_at = PRESENT, "in music folder", True, now
            self.store.save(state, now)
            states.append(state)
        if not self.dry_run:
            for state in states:  # a crash between intent and answer: find out what happened
                if state.status == ENQUEUING:
                    self._reconcile_enqueue(state)
        return states

    def _carried_over(self, track: WantedTrack) -> TrackState | None:
        """A track obtained under the key an earlier version used: obtained still, not re-downloaded."""
        old_key = legacy_key(track.artist, track.title)
        old = self.store.load(old_key) if old_key != track.key else None
        if old is None or old.status not in OBTAINED:
            return None
        state = TrackState.new(track)
        state.status, state.reason, state.finished_at, state.found = old.status, old.reason, old.finished_at, old.found
        log.info("%s: obtained by an earlier version of trayagent", state.label)
        return state

    # ------------------------------------------------------------- loop

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            stop.wait(seconds)

    def _pause(self, states: list[TrackState]) -> float:
        """Until the next tick: `poll_interval`, or less when the search clock allows a search sooner."""
        now = self.clock()
        due = any(s.status == PENDING and s.next_at <= now for s in states)
        if not due or sum(1 for s in states if s.status == SEARCHING) >= self.t.max_searches:
            return self.t.poll_interval
        return max(0.005, min(self.t.poll_interval, self.searcher.next_allowed(now)))

    def _call(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
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
            if exc.status == 409:  # slskd is up but not logged in to Soulseek
                self._note_logged_out()
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

    def _note_logged_out(self) -> None:
        """slskd says it is not logged in: no searching; the run ends if it lasts too long."""
        now = self.clock()
        if self._logged_out_since is None:
            self._logged_out_since = now
        if now - self._logged_out_since >= self.t.give_up_after:
            self._error = "slskd is not logged in to the Soulseek network"

    def _tick(self, states: list[TrackState]) -> None:
        self._listing = None
        try:
            if not self.dry_run:
                self.follow_transfers(states)
            for state in states:
                if state.status == SEARCHING:
                    self._poll_search(state)
            self._enqueue_ready(states)
            self._start_search(states)
        except (SlskdUnreachable, SlskdUnauthorized):
            pass  # already recorded by _call; the next tick tries again (or the run ends)

    def _enqueue_ready(self, states: list[TrackState]) -> None:
        """Enqueue ready tracks while fewer than `max_in_progress` transfers may be running.

        A transfer known to wait in a peer's queue ("Queued, Remotely") does not count: it
        costs nothing here, and counting it is what used to stall the whole sync.
        """
        busy = sum(1 for s in states if self._may_be_running(s))
        now = self.clock()
        for state in states:
            if busy >= self.max_in_progress:
                break
            if state.status == READY and state.next_at <= now:
                self._enqueue_next(state)
                if state.status in (ACTIVE, ENQUEUING):
                    busy += 1

    @staticmethod
    def _may_be_running(state: TrackState) -> bool:
        if state.status == ENQUEUING:
            return True
        if state.status != ACTIVE or state.current is None:
            return False
        return "Remotely" not in parse_flags(state.current.state)

    def _start_search(self, states: list[TrackState]) -> None:
        """Start the next due search, if the rate, slskd's login and `max_searches` allow."""
        if sum(1 for s in states if s.status == SEARCHING) >= self.t.max_searches:
            return
        now = self.clock()
        for state in states:
            if state.status != PENDING or state.next_at > now:
                continue
            if not query_forms(state.artist, state.title):  # nothing slskd would accept: no POST
                self._finish(state, NOT_FOUND, why_unsearchable(state.artist, state.title))
                continue
            if not self.searcher.rate_allows(now):
                return
            if not self.searcher.logged_in(now):
                self._note_logged_out()
                return
            self._logged_out_since = None
            why = self.searcher.start(state)
            if why:
                self._finish(state, NOT_FOUND, why)
            return

    # ------------------------------------------------------------- searching

    def _poll_search(self, state: TrackState) -> None:
        responses = self.searcher.poll(state)
        if responses is not None:
            self._searched(state, responses)

    def _searched(self, state: TrackState, responses: Sequence[Mapping[str, object]]) -> None:
        now = self.clock()
        exclude = {(u, f) for u, f, _o in self.store.tried(state.key)}
        ranking = rank_files(state.wanted, responses, self.prefs)
        pool = [c for c in ranking.candidates if c.key not in exclude]
        log.info("search %r: %d responses, %d files, %d acceptable, %d not tried yet",
                 state.search_text, len(responses), ranking.files, len(ranking.candidates), len(pool))
        state.search_id = state.search_started = None
        state.pool = [c.to_json() for c in pool]
        if not ranking.candidates:
            state.results, state.near_misses = ranking.verdict(), [m.to_json() for m in ranking.misses]
        cand = self._pick(state)
        if cand is not None:
            state.found = True
            if self.dry_run:
                self._picked(state, cand)
                return
            state.status, state.next_at = READY, 0.0
            self.store.save(state, now)
            return
        if not ranking.candidates:  # nothing acceptable at all: the next query form, if any
            if state.form + 1 < len(query_forms(state.artist, state.title)):
                state.form, state.status, state.next_at = state.form + 1, PENDING, 0.0
                self.store.save(state, now)
                return
            if not state.found:
                self._finish(state, NOT_FOUND, state.results or "no results")
                return
        self._exhausted(state)

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

    def _picked(self, state: TrackState, cand: Candidate) -> None:
        """Dry run: the choice is the result; nothing is enqueued."""
        state.pick = {**cand.to_json(), "why": cand.describe()}
        self._finish(state, PICKED, cand.describe())

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
        state.status, state.pool, state.form, state.next_at = PENDING, [], 0, now + delay
        state.current = None
        self.store.save(state, now)
        log.info("%s: every candidate tried; searching again in %.0f s", state.label, delay)

    def _succeeded(self, state: TrackState) -> None:
        cur = state.current
        assert cur is not None
        now = self.clock()
        state.status, state.reason, state.finished_at = COMPLETED, None, now
        self.store.set_attempt(state, cur.username, cur.filename, "succeeded", now)
        self._settle(state)

    def _finish(self, state: TrackState, status: str, reason: str | None) -> None:
        now = self.clock()
        state.status, state.reason, state.finished_at = status, reason, now
        state.search_id = None
        self.store.save(state, now)
        self._settle(state)

    def _settle(self, state: TrackState) -> None:
        """One line per settled track: in the log, and for a progress display that wants it."""
        line = self._result(state).line()
        log.info("track %s", line)
        self._settled.append(line)

    # ------------------------------------------------------------- reporting

    def _eta(self, states: list[TrackState]) -> float | None:
        """Seconds until every track has been searched, from the search rate."""
        waiting = sum(1 for s in states if s.status == PENDING)
        running = any(s.status == SEARCHING for s in states)
        if not waiting and not running:
            return None
        interval = self.searcher.t.interval
        wait = self.searcher.next_allowed(self.clock()) if waiting else 0.0
        return wait + max(waiting - 1, 0) * interval + self.searcher.t.timeout_ms / 1000.0

    def _emit(self, states: list[TrackState], cb: Callable[[SyncProgress], None] | None) -> None:
        settled, self._settled = tuple(self._settled), []
        if cb is None:
            return
        progress = progress_of(states, self._eta(states), settled)
        try:
            cb(progress)
        except Exception:  # a broken progress display must not stop the sync
            log.exception("progress callback failed")

    def _result(self, state: TrackState) -> TrackResult:
        return track_result(state, self.store.tried(state.key) if self._store else [])

    def _report(self, states: list[TrackState], stopped: bool) -> SyncReport:
        return SyncReport(tuple(self._result(s) for s in states), stopped=stopped, error=self._error,
                          dry_run=self.dry_run)


__all__ = ["EngineTimings", "SyncClient", "SyncEngine"]
