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
from typing import Callable, Collection, Iterable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from trayagent.actions import CancelNotingClient, new_records, plan_retry
from trayagent.config import Config
from trayagent.model import (
    AgentState,
    Event,
    EventType,
    Kind,
    Transfer,
    utcnow,
)
from trayagent.notify import Notifier
from trayagent.slskd import SlskdClient, SlskdError, SlskdUnreachable, tune_allocator
from trayagent.store import CANCEL, RETRY, Store
from trayagent.tracker import Rules, Tracked

log = logging.getLogger(__name__)

#: How many removable transfers make the bulk endpoint worth its conditions.
BULK_CLEAR_MIN = 25
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
        self._store = store if store is not None else Store(config.state_path)
        t = config.tracking
        self._tracker = self._store.load_tracker(
            Rules(grace_polls=t.grace_polls, failure_settle=t.failure_settle,
                  restart_window=t.restart_window)
        )
        self._clock = clock
        self._watch_server = watch_server
        self._lock = threading.RLock()
        self._notifiers: list[Notifier] = []
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
        self._last_transfers: Sequence[Transfer] = ()
        self._issued: dict[str, set[str]] = {RETRY: set(), CANCEL: set()}  # retries/cancels made
        self._issued_row = 0
        self._sync_status: str | None = None
        self._download_dir_known = bool(config.slskd.download_dir)
        self._sync_stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._running = False
        self.polls = 0
        self._state = AgentState(web_url=config.slskd.ui_url, download_dir=config.slskd.download_dir or None)
        self._publish()

    # ------------------------------------------------------------ public API

    def add_notifier(self, notifier: Notifier) -> None:
        self._notifiers.append(notifier)

    def subscribe(self, callback: StateCallback) -> None:
        self._subscribers.append(callback)

    def state(self) -> AgentState:
        return self._state

    def start(self) -> None:
        """Deliver what a previous run committed but never delivered, then start polling."""
        with self._lock:
            pending = self._store.pending_events()
            if pending:
                log.info("delivering %d event(s) left over from the previous run", len(pending))
                self._deliver(pending)
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
        if self._running:
            self._running = False
            self._scheduler.shutdown(wait=True)
        with self._lock:
            for n in self._notifiers:
                try:
                    n.close()
                except Exception:  # noqa: BLE001 - a notifier never stops shutdown
                    log.exception("notifier failed to close")
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
        """One poll: fetch, reconcile, commit, deliver. False if slskd could not be read."""
        with self._lock:
            try:
                transfers = self._client.list_downloads()
            except SlskdError as exc:
                self._on_failure(exc)
                return False
            now = self._clock()
            changes = self._tracker.reconcile(transfers, now, cancelled=self._issued_ids(CANCEL))
            events = self._store.commit(changes)
            self._last_transfers = transfers
            self.polls += 1
            self._on_success()
            if events:
                self._deliver(events)
            self._publish()
            return True

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
        self._failures += 1
        self._last_error = str(exc)
        if self._connected is not False:
            log.warning("slskd unreachable: %s", exc)
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

    def _deliver(self, events: list[Event]) -> None:
        for ev in events:
            if ev.event in (EventType.CONNECTION, EventType.SYNC):
                continue
            log.info("%s: %r from %r%s", ev.event.value, ev.filename, ev.username,
                     f" ({ev.reason})" if ev.reason else "")
            if ev.event is EventType.FAILED:
                self._failed_unseen += 1
        for n in self._notifiers:
            try:
                n.notify(events)
            except Exception:  # noqa: BLE001 - a broken sink never stops the agent
                log.exception("notifier %s failed", type(n).__name__)
        self._store.ack(events)

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
        """Remove ended transfers from slskd, never one whose end is not yet recorded.

        A fresh poll is reconciled and committed first, so everything that has ended by
        then is recorded (and reported) before anything is removed.
        """
        wanted = {Kind(o) for o in outcomes}
        with self._lock:
            if not self.poll_once():
                return 0
            now = self._clock()
            removable: list[Transfer] = []
            blocked = False  # something that could still finish, or an end not recorded
            for t in self._last_transfers:
                outcome = self._tracker.recorded_outcome(t.id)
                if outcome is None or not t.status.terminal:
                    blocked = True
                    continue
                if outcome in wanted and _old_enough(t, now, min_age):
                    removable.append(t)
                else:
                    blocked = True
            if not removable:
                return 0
            if not blocked and len(removable) >= BULK_CLEAR_MIN:
                try:
                    self._client.clear_completed()
                    return len(removable)
                except SlskdError as exc:
                    log.warning("bulk clear failed (%s); removing one by one", exc)
            removed = 0
            for t in removable:
                try:
                    self._client.remove_download(t.username, t.id)
                    removed += 1
                except SlskdError as exc:
                    log.warning("could not remove %r: %s", t.filename, exc)
                    if isinstance(exc, SlskdUnreachable):
                        break
            return removed

    # ------------------------------------------------------------------- sync

    def sync_playlists(self) -> bool:
        """Run the configured playlist sync (blocking; the tray submits it to the pool).

        Progress shows in ``AgentState.sync_status``; the end is one ``sync`` event, so the
        desktop notifier shows one summary. False if a sync was already running here.
        """
        from trayagent.playlist import PlaylistError
        from trayagent.sync import SyncBusy, run_configured_sync

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
            listed = self._last_transfers
        if plan.completed_since or plan.in_progress:
            log.info("retry: %d failure(s) completed since, %d already back in slskd's queue",
                     plan.completed_since, plan.in_progress)
        count = 0
        for user, files in plan.files.items():
            names = {name for name, _size in files}
            known = {t.id for t in listed if t.username == user and t.filename in names}
            count += self._enqueue_retry(user, files, plan.failures[user], known | set(plan.failures[user]))
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
            if self.poll_once():
                with self._lock:
                    found |= new_records(self._last_transfers, user, names, known)
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

def _old_enough(t: Transfer, now: datetime, min_age: float) -> bool:
    if min_age <= 0:
        return True
    ended = t.ended_at
    return ended is not None and now - ended >= timedelta(seconds=min_age)


def _as_transfer(d: Tracked) -> Transfer:
    return Transfer(id=d.transfer_id, username=d.username, filename=d.filename, state=d.state,
                    size=d.size, bytes_transferred=d.bytes_transferred)
