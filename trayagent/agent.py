"""The runtime: APScheduler jobs that poll slskd, reconcile, persist, notify and clean up.

This module owns the only mutable state of a running agent (tracker, store, connection
status): its lifecycle, the scheduling of its jobs, the state snapshots and the user's actions.
What a poll reads is polling.py's, slskd's reachability server_status.py's, the retry and
cleanup plans actions.py's. Polls, cleanups and actions are serialised by one lock; the UI
reads immutable ``AgentState`` snapshots and never waits on that lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from functools import partial
from datetime import datetime, timezone
from typing import Callable, Collection, Iterable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from trayagent.actions import IssuedLedger, confirm_enqueued, enqueue_retry, plan_retry, removable, remove_transfers
from trayagent.agent_sync import run_agent_sync
from trayagent.config import Config
from trayagent.core.model import AgentState, Event, EventType, Kind, Transfer, utcnow
from trayagent.core.notifier import Notifier
from trayagent.delivery import Delivery, LogConsumer
from trayagent.paths import legacy_state_path
from trayagent.polling import Poller
from trayagent.server_status import ServerStatus
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError
from trayagent.slskd.memory import tune_allocator
from trayagent.errors import StoreError
from trayagent.store import CANCEL, RETRY, Store, open_store
from trayagent.core.tracker import Rules, Tracked, Tracker

log = logging.getLogger(__name__)

SERVER_STATE_INTERVAL = 30.0
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
        self._poller = Poller(self._client, config.poll, self._on_failure)
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
        self._server = ServerStatus(download_dir_known=bool(config.slskd.download_dir))
        self._interval = config.poll.active_interval
        self._last_error: str | None = None
        self._failed_unseen = 0
        self._issued = IssuedLedger(self._store)  # retries/cancels made
        self._sync_status: str | None = None
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
            self.add_notifier(LogConsumer(), "log")
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
        Poller.peers_to_poll). `build_all` reads the whole list and builds every record, for clear().
        """
        with self._lock:
            if self._tracker_stale and not self._reload_tracker():
                return None
            self._compact_if_due()
            fetched = self._poller.fetch(self._tracker, build_all)
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
                cancelled = self._issued.ids(CANCEL)
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
            self._poller.after_poll(self._tracker, full, whole)
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

    def _on_store_failure(self, exc: StoreError) -> None:
        """The commit failed: nothing of this poll happened. Put the tracker back as committed."""
        self._last_error = str(exc)
        if not self._store_failing:
            self._store_failing = True
            log.warning("%s; this poll is redone once the state can be saved", exc)
        else:
            log.debug("state still cannot be saved: %s", exc)
        self._tracker_stale = True
        self._poller.whole_list_next()
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
        interval = self._server.next_interval(self.config.poll, ok, bool(self._tracker.active))
        if interval != self._interval and self._running:
            self._interval = interval
            log.debug("poll interval now %.2fs", interval)
            try:
                self._scheduler.reschedule_job("poll", trigger="interval", seconds=interval)
            except Exception:  # noqa: BLE001 - the scheduler may be shutting down
                log.debug("could not reschedule poll", exc_info=True)

    def _on_failure(self, exc: SlskdError) -> None:
        self._last_error = str(exc)
        lost = self._server.poll_failed(exc, self._clock())
        if lost is not None:
            self._deliver([lost])
        self._publish()

    def _on_success(self) -> None:
        self._last_error = None
        restored = self._server.poll_succeeded(self._clock())
        if restored is not None:
            self._deliver([restored])

    def _server_job(self) -> None:
        try:
            logged_in = self._client.server_state().logged_in
        except SlskdError as exc:
            log.debug("server state unavailable: %s", exc)
            return
        changed = logged_in != self._server.logged_in
        if logged_in and self._server.logged_in is False:
            with self._lock:
                self._poller.whole_list_next()  # back on the Soulseek network: read the whole list at once
        self._server.logged_in = logged_in
        download_dir = self._server.learn_download_dir(self._client)
        if download_dir is not None:
            self._state = replace(self._state, download_dir=download_dir)
        if changed or download_dir is not None:
            self._publish()

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
            connected=bool(self._server.connected),
            polled=self._server.connected is not None,
            logged_in=self._server.logged_in,
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
                gone = removable(listed, self._tracker.recorded_outcome, wanted, now, min_age)
            # outside the poll lock: polls go on meanwhile
            return remove_transfers(self._client, gone, self._stopping)

    # ------------------------------------------------------------------- sync

    def sync_playlists(self) -> bool:
        """Run the configured playlist sync (blocking; the tray submits it to the pool).

        Progress shows in ``AgentState.sync_status``; the end is one ``sync`` event, so the
        desktop notifier shows one summary. False if a sync was already running here.
        """
        if not self._sync_lock.acquire(blocking=False):
            return False
        try:
            self._show_sync("Sync starting")
            end = run_agent_sync(self.config, self._note_cancels, self._sync_stop, self._show_sync)
            self._sync_status = None
            with self._lock:
                self._deliver([Event(EventType.SYNC, self._clock(), status=end.status, summary=end.summary,
                                     error=end.error)])
            self._publish()
            return True
        finally:
            self._sync_lock.release()

    def _show_sync(self, status: str) -> None:
        self._sync_status = status
        self._publish()

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
            plan = plan_retry(self._tracker.recent, self._issued.ids(RETRY), live, wanted)
            followed = {(d.username, d.transfer_id) for d in self._tracker.active}
            recorded = set(self._tracker.recorded)
        if plan.completed_since or plan.in_progress:
            log.info("retry: %d failure(s) completed since, %d already back in slskd's queue",
                     plan.completed_since, plan.in_progress)
        count = 0
        for user, files in plan.files.items():
            # Records slskd may already list: every recorded end and what is followed.
            known = {tid for u, tid in followed if u == user} | recorded | set(plan.failures[user])
            enqueued = enqueue_retry(self._client, user, files, partial(self._confirm_enqueued, user, known=known))
            if enqueued is not None:
                with self._lock:
                    self._note_issued(RETRY, plan.failures[user])
                count += enqueued
        if count:
            self.poll_now()
        return count

    def _confirm_enqueued(self, user: str, names: set[str], known: set[str]) -> int:
        """After an enqueue's answer timed out: how many of the files slskd lists under new ids."""
        read = partial(self._poll, build_all=True)
        return confirm_enqueued(read, user, names, known, self.config.poll.active_interval)

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
        self._issued.note(action, ids, self._clock())


def _as_transfer(d: Tracked) -> Transfer:
    return Transfer(id=d.transfer_id, username=d.username, filename=d.filename, state=d.state,
                    size=d.size, bytes_transferred=d.bytes_transferred)
