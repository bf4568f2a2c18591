"""The runtime: APScheduler jobs that poll slskd, reconcile, persist, notify and clean up.

This module owns the only mutable state of a running agent (tracker, store, connection
status). Polls, cleanups and actions are serialised by one lock; the UI reads immutable
``AgentState`` snapshots and never waits on that lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Collection, Iterable, Mapping, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from trayagent.actions import CancelNotingClient, new_records, plan_retry
from trayagent.config import Config
from trayagent.core.model import (
    AgentState,
    Event,
    EventType,
    Kind,
    Transfer,
    utcnow,
)
from trayagent.paths import legacy_state_path
from trayagent.delivery import Delivery
from trayagent.core.notifier import Notifier
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError, SlskdUnauthorized, SlskdUnreachable
from trayagent.slskd.memory import tune_allocator
from trayagent.slskd.parsing import Downloads
from trayagent.store import CANCEL, RETRY, Store, StoreError, open_store
from trayagent.core.tracker import Rules, Tracked, Tracker

log = logging.getLogger(__name__)

SERVER_STATE_INTERVAL = 30.0
#: After an enqueue POST timed out, how long to watch slskd's list for the files to appear.
ENQUEUE_CONFIRM_SECONDS = 10.0
ALL_OUTCOMES = frozenset({"succeeded", "cancelled", "failed"})

StateCallback = Callable[[AgentState], None]


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        client: SlskdClient | None = None,
        store: Store | None = None,
        clock: Callable[[], datetime] = utcnow,
        watch_server: bool = False,
    ) -> None:
        self.config = config
        self._client = client if client is not None else SlskdClient(config.slskd)
        self._store = store if store is not None else open_store(config.state_path, legacy_state_path())
        self._rules: Rules = config.tracking
        self._tracker: Tracker = self._store.load_tracker(self._rules)
        self._tracker_stale = False  # a commit failed and the tracker could not be reloaded yet
        self._compact_due = False  # the first start's history is compacted at the next poll
        self._store_failing = False
        self._unreadable_warned = False
        self._clock = clock
        self._watch_server = watch_server
        self._lock = threading.RLock()
        self._clear_lock = threading.Lock()
        self._notifiers: list[Notifier] = []
        self._delivery = Delivery(self._store)
        self._subscribers: list[StateCallback] = []
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._connected: bool | None = None  # None until the first poll
        self._failures = 0
        self._interval = config.poll.active_interval
        self._last_error: str | None = None
        self._logged_in: bool | None = None
        self._failed_unseen = 0
        self._full_due = True  # the next poll reads slskd's whole list (see _peers_to_poll)
        self._last_full = float("-inf")  # monotonic time of the last full poll
        self._issued: dict[str, set[str]] = {RETRY: set(), CANCEL: set()}  # retries/cancels made
        self._issued_row = 0
        self._sync_status: str | None = None
        self._download_dir_known = bool(config.slskd.download_dir)
        self._sync_stop = threading.Event()
        self._stopping = threading.Event()  # ends a long clear's removals at shutdown
        self._sync_lock = threading.Lock()
        self._running = False
        self.polls = 0
        #: When the last successful poll ran; notifiers compare it with now to tell downloads that
        #: ended while nobody watched (before the first poll, or after the machine slept).
        self.polled_at: datetime | None = None
        self._last_polled: datetime | None = None
        self._state = AgentState(web_url=config.slskd.ui_url, download_dir=config.slskd.download_dir or None)
        self._publish()

    # ------------------------------------------------------------ public API

    def add_notifier(self, notifier: Notifier, name: str | None = None) -> None:
        """Add a consumer of events; its progress through them is kept under `name`.

        The default name is the notifier's class name, so the same kind of sink in the next
        run carries on where this one stopped, without repeats.
        """
        self._notifiers.append(notifier)
        self._delivery.add(notifier, name)

    @property
    def notifiers(self) -> list[Notifier]:
        return list(self._notifiers)

    def subscribe(self, callback: StateCallback) -> None:
        self._subscribers.append(callback)

    def state(self) -> AgentState:
        return self._state

    def start(self) -> None:
        """Deliver what a previous run committed but never delivered, then start polling.

        A running agent always has a consumer: with no sink attached, the log (where each
        event is written as it is recorded) is where events are reported.
        """
        if not self._notifiers:
            self.add_notifier(_LogConsumer(), "log")
        self._delivery.start()
        tune_allocator()
        s = self._scheduler
        s.add_job(self._poll_job, "interval", seconds=self._interval, id="poll",
                  next_run_time=datetime.now(timezone.utc))
        c = self.config.cleanup
        if c.enabled:
            s.add_job(self._cleanup_job, "interval", seconds=c.interval, id="cleanup")
        if self._watch_server:
            s.add_job(self._server_job, "interval", seconds=SERVER_STATE_INTERVAL, id="server",
                      next_run_time=datetime.now(timezone.utc))
        s.start()
        self._running = True

    def stop(self) -> None:
        self._sync_stop.set()
        self._stopping.set()
        if self._running:
            self._running = False
            self._scheduler.shutdown(wait=True)
        self._delivery.stop()
        with self._lock:
            self._client.close()
            self._store.close()

    def poll_now(self) -> None:
        """Poll at once on the scheduler's pool; returns immediately."""
        if self._running:
            self._scheduler.modify_job("poll", next_run_time=datetime.now(timezone.utc))

    def submit(self, fn: Callable[[], object]) -> None:
        """Run a menu action on the worker pool, never on the UI thread."""
        def run() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - an action's failure is logged, not fatal
                log.exception("action failed")

        if self._running:
            self._scheduler.add_job(run)
        else:
            threading.Thread(target=run, daemon=True).start()

    def mark_failures_seen(self) -> None:
        if self._failed_unseen:
            self._failed_unseen = 0
            self._publish()

    # ----------------------------------------------------------------- polling

    def poll_once(self) -> bool:
        """One poll: fetch, reconcile, commit, deliver.

        False if slskd could not be read or the state could not be saved; either way the
        poll counts for nothing and the tracker is as it was before it (reloaded from the
        store after a failed commit), so the next poll redoes the work.
        """
        ok = self._poll() is not None
        self._compact_if_due()  # what the poll read is gone by now
        return ok

    def _compact_if_due(self) -> None:
        """After the first start's baseline, once nothing else of the body it read is alive."""
        if self._compact_due:
            with self._lock:
                self._compact_due = False
                self._tracker.compact()

    def _poll(self, *, build_all: bool = False) -> Sequence[Transfer] | None:
        """poll_once, returning what it read (None on failure).

        While a few peers' downloads are followed, only those peers' lists are read (see
        _peers_to_poll). `build_all` reads the whole list and builds every record, for clear().
        """
        with self._lock:
            if self._tracker_stale and not self._reload_tracker():
                return None
            self._compact_if_due()
            fetched = self._fetch(build_all)
            if fetched is None:
                return None
            transfers, covered = fetched
            now = self._clock()
            unreadable = transfers.skipped
            full = covered is None
            whole = full or transfers.by_id
            if unreadable or full:
                self._note_unreadable(unreadable)
            try:
                cancelled = self._issued_ids(CANCEL)
            except StoreError as exc:
                self._on_store_failure(exc)
                return None
            changes = self._tracker.reconcile(transfers, now, complete=not (full and unreadable), peers=covered,
                                              also_listed=transfers.recorded_ids, whole_list=whole,
                                              cancelled=cancelled)
            # Those ids are strings of the parsed body, spread through all its memory: dropped
            # before anything long-lived is allocated, so that memory can go back (see _trim_heap).
            transfers.recorded_ids = ()
            try:
                events = self._store.commit(changes)
            except StoreError as exc:
                self._on_store_failure(exc)
                return None
            if self._store_failing:
                self._store_failing = False
                log.warning("state saved again")
            self._after_poll(full, whole)
            if changes.initialized:
                # The history just recorded holds ids cut from the parsed body: compacted once nothing
                # else of the body is left (see Tracker.compact), its memory goes back.
                self._compact_due = True
            self.polls += 1
            self._on_success()
            if events:
                # While they are delivered the notifier must see the poll before this one, to tell
                # ends that happened while nobody watched. A running agent delivers on its delivery
                # thread after this returns, so polled_at moves on with the next poll.
                self.polled_at = self._last_polled
                self._recorded(events)
                self._delivery.committed()  # synchronous when the agent is not running
            if not (events and self._running):
                self.polled_at = now
            self._last_polled = now
            self._publish()
            return transfers

    def _fetch(self, build_all: bool) -> tuple[Downloads, frozenset[str] | None] | None:
        """Read slskd for one poll: the followed peers' lists, or the whole list (by id if it may).

        Returns what was read and the peers it covers (None: the whole list, built), or None
        when the poll failed (already handled).
        """
        peers = None if build_all else self._peers_to_poll()
        known = None if build_all else self._tracker.recorded
        if peers is not None:
            return self._fetch_peers(peers, known)
        return self._fetch_all(known, None if build_all else self._whole_list_by_id())

    def _peers_to_poll(self) -> frozenset[str] | None:
        """The peers whose own lists this poll reads, or None to read slskd's whole list.

        The whole list is read on the first poll, once per idle_interval (so downloads added
        elsewhere are noticed as soon as when idle), at once after a failed poll (a reconnect),
        a failed peer's list, a download gone missing from its peer's list, or an slskd restart,
        and whenever more than [poll] max_peers peers are followed.
        """
        p = self.config.poll
        tracker = self._tracker
        if self._full_due or p.max_peers <= 0 or not tracker.initialized or tracker.needs_full_poll():
            return None
        if time.monotonic() - self._last_full >= p.idle_interval - p.active_interval / 2:
            return None
        peers = tracker.peers()
        if not peers or len(peers) > p.max_peers or "" in peers:
            return None
        return peers

    def _whole_list_by_id(self) -> frozenset[str] | None:
        """The followed ids, when this poll may read slskd's whole list for its ids only.

        That is when the whole list is read because idle_interval has passed (or nothing is
        followed): if every id in it is recorded or followed, it holds nothing new, and the
        followed peers' own lists give their records (client.list_downloads, `followed`).
        None, and the whole list is built, whenever a reason in _peers_to_poll other than the
        interval holds, or the followed peers cannot all be read one by one.
        """
        p = self.config.poll
        tracker = self._tracker
        if self._full_due or p.max_peers <= 0 or not tracker.initialized or tracker.needs_full_poll():
            return None
        peers = tracker.peers()
        if len(peers) > p.max_peers or "" in peers or any(d.missing_polls for d in tracker.active):
            return None
        return tracker.followed_ids()

    def _after_poll(self, full: bool, whole: bool) -> None:
        """After a committed poll: when the next one must read the whole list."""
        if whole:
            self._last_full = time.monotonic()
        if full:
            self._full_due = False
        elif any(d.missing_polls for d in self._tracker.active):
            self._full_due = True  # absence is confirmed against the whole list, poll by poll

    def _fetch_all(
        self, known: Mapping[str, Kind] | None, followed: frozenset[str] | None = None,
    ) -> tuple[Downloads, frozenset[str] | None] | None:
        """Read slskd's whole list; by id only when `followed` is given and nothing in it is new.

        Read by id, the poll then reads the followed peers' lists and covers those peers.
        """
        # While downloads are followed, the memory a parse frees is used again within a second.
        trim = not self._tracker.active
        try:
            listed = self._client.list_downloads(known=known, followed=followed, trim=trim)
        except SlskdError as exc:
            self._on_failure(exc)
            return None
        if not listed.by_id:
            return listed, None
        peers = self._tracker.peers()
        if not peers:
            return listed, frozenset()
        fetched = self._fetch_peers(peers, known)
        if fetched is None or fetched[1] is None:
            return fetched  # failed, or no peer's list answered and the whole list was built
        got, covered = fetched
        got.recorded_ids.extend(listed.recorded_ids)  # type: ignore[union-attr] - a list from _fetch_peers
        got.by_id = True
        return got, covered

    def _fetch_peers(
        self, peers: frozenset[str], known: Mapping[str, Kind] | None,
    ) -> tuple[Downloads, frozenset[str]] | None:
        """Read each peer's list; the poll covers the peers whose lists were read whole.

        No answer, or credentials refused, fails the poll as a full one would. A peer whose
        list fails otherwise (a 5xx, a body that is not a group) is left out: its downloads
        are neither seen nor counted absent, and the next poll reads the whole list (this one
        does, when no peer's list answered).
        """
        out = Downloads()
        out.recorded_ids = []
        covered: set[str] = set()
        error: SlskdError | None = None
        for user in sorted(peers):
            try:
                got = self._client.list_user_downloads(user, known=known)
            except (SlskdUnreachable, SlskdUnauthorized) as exc:
                self._on_failure(exc)
                return None
            except SlskdError as exc:
                error = exc
                log.debug("download list of %r unavailable: %s", user, exc)
                continue
            out.extend(got)
            out.recorded_ids.extend(got.recorded_ids)
            out.skipped += got.skipped
            if not got.skipped:
                covered.add(user)
        if error is not None:
            if not covered and not out:
                return self._fetch_all(known)  # no peer's list answered: the whole list, now
            self._full_due = True
        return out, frozenset(covered)

    def _on_store_failure(self, exc: StoreError) -> None:
        """The commit failed: nothing of this poll happened. Put the tracker back as committed."""
        self._last_error = str(exc)
        if not self._store_failing:
            self._store_failing = True
            log.warning("%s; this poll is redone once the state can be saved", exc)
        else:
            log.debug("state still cannot be saved: %s", exc)
        self._tracker_stale = True
        self._full_due = True
        self._reload_tracker()
        self._publish()

    def _reload_tracker(self) -> bool:
        try:
            self._tracker = self._store.load_tracker(self._rules)
        except StoreError as exc:
            log.debug("tracker not reloaded yet: %s", exc)
            return False
        self._tracker_stale = False
        return True

    def _note_unreadable(self, count: int) -> None:
        """Say once per spell that slskd listed records without an id or a file name."""
        if count and not self._unreadable_warned:
            log.warning("slskd listed %d record(s) without an id or file name; they are ignored, and no "
                        "download counts as missing while such records are listed", count)
        self._unreadable_warned = bool(count)

    def _poll_job(self) -> None:
        ok = self.poll_once()
        p = self.config.poll
        if ok:
            busy = bool(self._tracker.active)
            interval = p.active_interval if busy else p.idle_interval
        else:
            interval = min(p.max_backoff, max(p.active_interval, 0.05) * 2 ** self._failures)
        if interval != self._interval and self._running:
            self._interval = interval
            log.debug("poll interval now %.2fs", interval)
            try:
                self._scheduler.reschedule_job("poll", trigger="interval", seconds=interval)
            except Exception:  # noqa: BLE001 - the scheduler may be shutting down
                log.debug("could not reschedule poll", exc_info=True)

    def _on_failure(self, exc: SlskdError) -> None:
        self._full_due = True  # after a reconnect, the whole list first
        self._failures += 1
        self._last_error = str(exc)
        if self._connected is not False:
            log.warning("slskd %s: %s", "unreachable" if isinstance(exc, SlskdUnreachable) else "cannot be read", exc)
            self._connected = False
            self._deliver([Event(EventType.CONNECTION, self._clock(), status="lost", error=str(exc))])
        else:
            log.debug("slskd still unreachable (%d failures): %s", self._failures, exc)
        self._publish()

    def _on_success(self) -> None:
        was = self._connected
        self._failures = 0
        self._last_error = None
        self._connected = True
        if was is False:
            log.warning("slskd reachable again")
            self._deliver([Event(EventType.CONNECTION, self._clock(), status="restored")])

    def _server_job(self) -> None:
        try:
            logged_in = self._client.server_state().logged_in
        except SlskdError as exc:
            log.debug("server state unavailable: %s", exc)
            return
        changed = logged_in != self._logged_in
        if logged_in and self._logged_in is False:
            with self._lock:
                self._full_due = True  # back on the Soulseek network: read the whole list at once
        self._logged_in = logged_in
        if not self._download_dir_known:
            changed |= self._learn_download_dir()
        if changed:
            self._publish()

    def _learn_download_dir(self) -> bool:
        """Ask slskd where downloads land, for the Recent menu; usable only if it is local.

        slskd often runs on another machine or in a container, so its path is taken only when
        that directory exists here. Asked once per run (again after an error).
        """
        try:
            remote = self._client.download_directory()
        except SlskdError as exc:
            log.debug("download directory unavailable: %s", exc)
            return False
        self._download_dir_known = True
        if remote and os.path.isdir(remote):
            log.info("slskd saves downloads in %s", remote)
            self._state = replace(self._state, download_dir=remote)
            return True
        log.info("slskd's download directory %r is not on this machine; set [slskd] download_dir", remote)
        return False

    # ---------------------------------------------------------------- delivery

    def _recorded(self, events: list[Event]) -> None:
        """Log each committed event once (redeliveries are not logged again)."""
        for ev in events:
            log.info("%s: %r from %r%s", ev.event.value, ev.filename, ev.username,
                     f" ({ev.reason})" if ev.reason else "")
            if ev.event is EventType.FAILED:
                self._failed_unseen += 1

    def _deliver(self, events: list[Event]) -> None:
        """Offer transient events (connection, sync): not kept, not repeated."""
        self._delivery.transient(events)

    def _publish(self) -> None:
        tracker = self._tracker
        active = tuple(d.last if d.last is not None else _as_transfer(d) for d in tracker.active)
        self._state = replace(
            self._state,
            connected=bool(self._connected),
            polled=self._connected is not None,
            logged_in=self._logged_in,
            active=active,
            progress=tracker.progress(),
            recent=tuple(tracker.recent[:10]),
            failed_unseen=self._failed_unseen,
            last_error=self._last_error,
            sync_status=self._sync_status,
        )
        for cb in self._subscribers:
            try:
                cb(self._state)
            except Exception:  # noqa: BLE001 - a UI callback never stops polling
                log.exception("state subscriber failed")

    # ----------------------------------------------------------------- cleanup

    def _cleanup_job(self) -> None:
        c = self.config.cleanup
        removed = self.clear(frozenset(c.remove), c.min_age)
        if removed:
            log.info("cleanup removed %d finished transfer(s) from slskd", removed)

    def clear_finished(self) -> int:
        """The menu's and CLI's clear: every finished transfer whose end is recorded."""
        return self.clear(ALL_OUTCOMES, 0.0)

    def clear(self, outcomes: Iterable[str], min_age: float) -> int:
        """Remove ended transfers from slskd, each by its id, never one whose end is not committed.

        A fresh poll is reconciled and committed first, so everything that has ended by then
        is recorded (and reported) before anything is removed. Removal is transfer by transfer:
        slskd's bulk `all/completed` removes whatever is complete when it runs, including a
        download that appeared and finished after this poll, unreported.
        """
        wanted = {Kind(o) for o in outcomes}
        with self._clear_lock:
            with self._lock:
                listed = self._poll(build_all=True)
                if listed is None:
                    return 0
                now = self._clock()
                recorded = self._tracker.recorded_outcome
                removable = [t for t in listed
                             if t.status.terminal and recorded(t.id) in wanted and _old_enough(t, now, min_age)]
            return self._remove(removable)

    def _remove(self, transfers: list[Transfer]) -> int:
        """DELETE each one (outside the poll lock: polls go on meanwhile); returns how many went."""
        removed = failed = 0
        for t in transfers:
            if self._stopping.is_set():
                break
            try:
                self._client.remove_download(t.username, t.id)
                removed += 1
            except SlskdError as exc:
                failed += 1
                if failed == 1:
                    log.warning("could not remove %r: %s", t.filename, exc)
                if isinstance(exc, SlskdUnreachable):
                    break
        if failed > 1:
            log.warning("could not remove %d finished transfer(s) in all", failed)
        return removed

    # ------------------------------------------------------------------- sync

    def sync_playlists(self) -> bool:
        """Run the configured playlist sync (blocking; the tray submits it to the pool).

        Progress shows in ``AgentState.sync_status``; the end is one ``sync`` event, so the
        desktop notifier shows one summary. False if a sync was already running here.
        """
        from trayagent.sync.playlist import PlaylistError
        from trayagent.sync.store import SyncBusy
        from trayagent.sync_cli import run_configured_sync

        if not self._sync_lock.acquire(blocking=False):
            return False
        try:
            self._sync_status = "Sync starting"
            self._publish()

            def progress(p: object) -> None:
                self._sync_status = p.text()  # type: ignore[attr-defined]
                self._publish()

            status, summary, error = "error", None, None
            try:
                client = CancelNotingClient(SlskdClient(self.config.slskd), self._note_cancels)
                try:
                    report = run_configured_sync(self.config, progress_cb=progress, stop_event=self._sync_stop,
                                                 client=client)
                finally:
                    client.close()
                status = "ok" if report.ok else "incomplete"
                summary = report.summary()
            except (PlaylistError, SyncBusy, ValueError, OSError) as exc:
                error = str(exc)
                log.warning("playlist sync: %s", exc)
            self._sync_status = None
            with self._lock:
                self._deliver([Event(EventType.SYNC, self._clock(), status=status, summary=summary, error=error)])
            self._publish()
            return True
        finally:
            self._sync_lock.release()

    # ------------------------------------------------------------ retry, cancel

    def retry_failed(self) -> int:
        """The tray's *Retry failed*: every recent failure not retried yet."""
        return self.retry(None)

    def retry(self, ids: Collection[str] | None = None) -> int:
        """Re-enqueue failed downloads with the same peer and file; returns how many files went in.

        `ids`: only these failures (e.g. a notification's *Retry*); None: every recent one.
        Each peer's file is listed once however often it failed, a file that completed since is
        left alone, and what was retried is remembered in the state file, so no failure is
        retried twice, across agent restarts too.
        """
        wanted = None if ids is None else set(ids)
        with self._lock:
            live = {(d.username, d.filename) for d in self._tracker.active}
            plan = plan_retry(self._tracker.recent, self._issued_ids(RETRY), live, wanted)
            followed = {(d.username, d.transfer_id) for d in self._tracker.active}
            recorded = set(self._tracker.recorded)
        if plan.completed_since or plan.in_progress:
            log.info("retry: %d failure(s) completed since, %d already back in slskd's queue",
                     plan.completed_since, plan.in_progress)
        count = 0
        for user, files in plan.files.items():
            # Records slskd may already list: every recorded end and what is followed.
            known = {tid for u, tid in followed if u == user} | recorded | set(plan.failures[user])
            count += self._enqueue_retry(user, files, plan.failures[user], known)
        if count:
            self.poll_now()
        return count

    def _enqueue_retry(self, user: str, files: list[tuple[str, int]], failures: list[str],
                       known: set[str]) -> int:
        try:
            result = self._client.enqueue(user, files)
        except SlskdUnreachable as exc:
            # The POST may still have reached slskd (it answers only after reaching the peer):
            # the download list decides, not the timeout.
            count = self._confirm_enqueued(user, {name for name, _size in files}, known)
            if not count:
                log.warning("retry for %r failed: %s", user, exc)
                return 0
            log.info("retry for %r: no answer in time, but slskd lists %d file(s) again", user, count)
        except SlskdError as exc:
            log.warning("retry for %r failed: %s", user, exc)
            return 0
        else:
            count = len(result.enqueued) if result.ids_known else len(files) - result.failed_count
        with self._lock:
            self._note_issued(RETRY, failures)
        return count

    def _confirm_enqueued(self, user: str, names: set[str], known: set[str]) -> int:
        """Poll until slskd lists the files under new ids (or give up); how many appeared."""
        deadline = time.monotonic() + ENQUEUE_CONFIRM_SECONDS
        found: set[str] = set()
        while True:
            # The whole list, every record built: the peer may have no followed download, so
            # a per-peer poll would not read it, and its recorded ends would not be built.
            listed = self._poll(build_all=True)
            if listed is not None:
                found |= new_records(listed, user, names, known)
                if found >= names:
                    break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(max(self.config.poll.active_interval, 0.1), left))
        return len(found)

    def cancel(self, ids: Collection[str]) -> int:
        """Cancel downloads the agent follows, by transfer id; their ends are reported as cancelled."""
        wanted = set(ids)
        with self._lock:
            targets = [(d.username, d.transfer_id) for d in self._tracker.active
                       if d.transfer_id in wanted or not wanted.isdisjoint(d.aliases)]
            self._note_issued(CANCEL, [tid for _user, tid in targets])
        count = 0
        for user, tid in targets:
            try:
                self._client.cancel_download(user, tid)
                count += 1
            except SlskdError as exc:
                log.warning("could not cancel %s from %r: %s", tid, user, exc)
        if count:
            self.poll_now()
        return count

    def _note_cancels(self, ids: Collection[str]) -> None:
        """Record cancels made on the agent's behalf (the sync's) before they are sent."""
        with self._lock:
            self._note_issued(CANCEL, ids)

    def _note_issued(self, action: str, ids: Collection[str]) -> None:
        """Persist first: an end seen after a crash must still be judged by what was issued."""
        if ids:
            self._store.note_issued(action, ids, self._clock())
            self._issued[action].update(ids)

    def _issued_ids(self, action: str) -> set[str]:
        """Ids retried or cancelled so far, including what other processes noted (`trayagent sync`)."""
        rows, self._issued_row = self._store.issued(self._issued_row)
        for kind, tid in rows:
            self._issued.setdefault(kind, set()).add(tid)
        return self._issued[action]

class _LogConsumer:
    """The consumer of a running agent that has no other sink: the agent's log.

    Every event is logged as it is recorded (Agent._recorded), so taking it here is a no-op.
    Only a running agent has it: `trayagent clear` with no agent running has no consumer
    and leaves its events in the outbox for the agent's next start.
    """

    def notify(self, events: Iterable[Event]) -> None:
        pass

    def close(self) -> None:
        pass


def _old_enough(t: Transfer, now: datetime, min_age: float) -> bool:
    if min_age <= 0:
        return True
    ended = t.ended_at
    return ended is not None and now - ended >= timedelta(seconds=min_age)


def _as_transfer(d: Tracked) -> Transfer:
    return Transfer(id=d.transfer_id, username=d.username, filename=d.filename, state=d.state,
                    size=d.size, bytes_transferred=d.bytes_transferred)
