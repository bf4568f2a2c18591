"""Following the sync's downloads on slskd until each succeeds or is given up for the next candidate.

One `GET transfers/downloads` per tick serves every followed transfer (hundreds may wait in
peers' queues at once). A transfer moves on to the next candidate when it fails for good,
waits in a peer's queue longer than `queue_timeout`, or sits in progress without a byte moving
for `stall_timeout`; the abandoned one is cancelled first, so slskd never finishes it behind
our back.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Protocol

from trayagent.core.model import Kind, Transfer, classify
from trayagent.core.rules import FollowRules, Phase, Verdict, Wait, judge
from trayagent.slskd.client import EnqueueResult
from trayagent.slskd.errors import SlskdBadResponse, SlskdError, SlskdNotFound, SlskdUnreachable
from trayagent.sync.search import SlskdCall
from trayagent.sync.store import ACTIVE, ENQUEUING, READY, Attempt, SyncStore, TrackState

log = logging.getLogger(__name__)


class TransferClient(Protocol):
    """The part of SlskdClient that enqueues and follows the sync's downloads."""

    def list_downloads(self) -> list[Transfer]: ...

    def get_download(self, username: str, transfer_id: str) -> Transfer: ...

    def enqueue(self, username: str, files: Iterable[tuple[str, int]]) -> EnqueueResult: ...

    def cancel_download(self, username: str, transfer_id: str) -> None: ...


class _Timings(Protocol):
    rules: FollowRules  # the tracker's: failure settle, restart window, grace polls


class TransferFollower:
    """The transfer side of SyncEngine (a mixin: the engine supplies what is declared here)."""

    client: TransferClient
    t: _Timings
    clock: Callable[[], float]
    queue_timeout: float
    stall_timeout: float
    _listing: list[Transfer] | None

    # Supplied by the engine.
    @property
    def store(self) -> SyncStore:
        raise NotImplementedError  # the engine's store, open while it runs
    _call: SlskdCall
    _attempt_failed: Callable[[TrackState, str], None]
    _succeeded: Callable[[TrackState], None]

    def follow_transfers(self, states: list[TrackState]) -> None:
        """Reconcile interrupted enqueues, then poll every followed transfer once."""
        for state in states:
            if state.status == ENQUEUING:
                self._reconcile_enqueue(state)
            elif state.status == ACTIVE:
                self._poll_transfer(state)

    def _downloads(self) -> list[Transfer]:
        if self._listing is None:
            self._listing = self._call(self.client.list_downloads)
        return self._listing

    def _find_download(self, username: str, filename: str) -> Transfer | None:
        matches = [t for t in self._downloads() if t.username == username and t.filename == filename]
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
            self._listing = None  # an enqueue may have landed since the tick's listing
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

    def _current_transfer(self, cur: Attempt) -> Transfer | None:
        """The followed transfer from the tick's listing; by id when the list no longer has it."""
        for transfer in self._downloads():
            if transfer.id == cur.transfer_id:
                return transfer
        assert cur.transfer_id
        return self._call(self.client.get_download, cur.username, cur.transfer_id)

    def _poll_transfer(self, state: TrackState) -> None:
        """One look at the followed transfer, judged by the tracker's rules (core/rules.judge)."""
        cur = state.current
        assert cur is not None and cur.transfer_id
        try:
            transfer = self._current_transfer(cur)
        except SlskdNotFound:
            self._vanished(state)
            return
        except SlskdBadResponse as exc:
            log.warning("polling %s: %s", state.label, exc)
            return
        if transfer is None:
            return
        moved = transfer.bytes_transferred > cur.bytes_transferred
        cur.state, cur.bytes_transferred, cur.missing_polls = transfer.state, transfer.bytes_transferred, 0
        status = transfer.status
        casualty = status.kind is Kind.FAILED and transfer.is_shutdown_casualty
        if casualty and self._follow_reenqueued(state):
            return
        now = self.clock()
        verdict = judge(status, self.t.rules, casualty=casualty, failing_for=_since(cur.terminal_since, now),
                        restarting_for=_since(cur.restart_since, now))
        if verdict.phase is Phase.SETTLING:
            assert verdict.wait is not None
            self._settling(state, verdict.wait)
        elif verdict.ended:
            self._ended(state, transfer, verdict)
        elif status.kind is Kind.QUEUED:
            self._queued(state)
        else:
            self._running(state, moved)

    def _follow_reenqueued(self, state: TrackState) -> bool:
        """slskd restarted under it: follow the live record it re-enqueued under a new id, if any yet."""
        cur = state.current
        assert cur is not None
        newer = self._find_download(cur.username, cur.filename)
        if newer is None or newer.id == cur.transfer_id or newer.status.terminal:
            return False
        log.info("%s: slskd re-enqueued it after a restart; following %s", state.label, newer.id)
        cur.transfer_id, cur.terminal_since, cur.restart_since, cur.missing_polls = newer.id, None, None, 0
        self.store.set_attempt(state, cur.username, cur.filename, "active", self.clock(), transfer_id=newer.id)
        return True

    def _vanished(self, state: TrackState) -> None:
        """slskd no longer has the transfer: after a restart it may come back; else gone after grace polls."""
        cur = state.current
        assert cur is not None
        if cur.restart_since is not None and self._follow_reenqueued(state):
            return
        now = self.clock()
        cur.missing_polls += 1
        last = classify(cur.state)
        verdict = judge(None, self.t.rules, failing_for=_since(cur.terminal_since, now),
                        restarting_for=_since(cur.restart_since, now), missing_polls=cur.missing_polls,
                        last_reason=last.reason if last.kind is Kind.FAILED else None)
        if verdict.ended:
            self._attempt_failed(state, "download vanished from slskd")

    def _settling(self, state: TrackState, wait: Wait) -> None:
        """Failed, but slskd may retry it or bring it back: start the clock it settles on."""
        cur = state.current
        assert cur is not None
        now = self.clock()
        if wait is Wait.RESTART:
            cur.terminal_since, started = None, cur.restart_since is None
            cur.restart_since = cur.restart_since if cur.restart_since is not None else now
        else:
            cur.restart_since, started = None, cur.terminal_since is None
            cur.terminal_since = cur.terminal_since if cur.terminal_since is not None else now
        if started:
            self.store.save(state, now)

    def _ended(self, state: TrackState, transfer: Transfer, verdict: Verdict) -> None:
        cur = state.current
        assert cur is not None
        if verdict.outcome is Kind.SUCCEEDED:
            size = transfer.size or cur.size
            if size > 0 and transfer.bytes_transferred >= size:
                self._succeeded(state)
            else:
                self._attempt_failed(state, f"incomplete ({transfer.bytes_transferred}/{size} bytes)")
        elif verdict.outcome is Kind.CANCELLED:
            self._attempt_failed(state, "cancelled")
        else:
            if transfer.status.retryable:
                self._cancel(cur)  # a retry slskd schedules later must not run behind our back
            self._attempt_failed(state, verdict.reason or "failed")

    def _queued(self, state: TrackState) -> None:
        cur = state.current
        assert cur is not None
        now = self.clock()
        cur.terminal_since, cur.restart_since, cur.progress_at = None, None, None
        if cur.queued_since is None:
            cur.queued_since = now
            self.store.save(state, now)
        if now - cur.queued_since >= self.queue_timeout:
            log.info("%s: queued at %s for %.0f min; trying another peer",
                     state.label, cur.username, (now - cur.queued_since) / 60)
            self._cancel(cur)
            self._attempt_failed(state, "queue timeout")

    def _running(self, state: TrackState, moved: bool) -> None:
        """Initializing or InProgress: fine while bytes move; `stall_timeout` without any is a stall."""
        cur = state.current
        assert cur is not None
        now = self.clock()
        cur.terminal_since = cur.restart_since = None
        if cur.queued_since is not None or cur.progress_at is None:
            cur.queued_since, cur.progress_at = None, now
            self.store.save(state, now)
            return
        if moved:
            cur.progress_at = now  # kept in memory only: a restart restarts the stall clock
            return
        if now - cur.progress_at >= self.stall_timeout:
            pct = 100.0 * cur.bytes_transferred / cur.size if cur.size else 0.0
            log.info("%s: no progress from %s for %.0f s; trying another peer",
                     state.label, cur.username, now - cur.progress_at)
            self._cancel(cur)
            self._attempt_failed(state, f"stalled at {pct:.0f}% for {(now - cur.progress_at) / 60:.1f} min")

    def _cancel(self, cur: Attempt) -> None:
        if not cur.transfer_id:
            return
        try:
            self._call(self.client.cancel_download, cur.username, cur.transfer_id)
        except SlskdUnreachable:
            raise
        except SlskdError as exc:
            log.warning("could not cancel %s from %s: %s", cur.filename, cur.username, exc)


def _since(since: float | None, now: float) -> float | None:
    """Seconds a clock has run, or None when it is not running."""
    return None if since is None else now - since


__all__ = ["TransferClient", "TransferFollower"]
