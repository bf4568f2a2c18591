"""Reconcile what slskd shows against what the agent tracks: the pure heart of trayagent.

No I/O and no clock of its own: a poll's transfers and "now" go in, events and the rows
that changed come out. The agent persists those rows and the events in one transaction
before anyone hears of them, so each download that ends is reported exactly once.

Rules (see the tracking-engine issue):
1. States are flag sets; only ``Completed, Succeeded`` is success (``model.classify``).
2. Match by id first, then by (username, filename) against downloads not yet finished,
   one transfer to one download; earlier ids of a download are remembered as aliases
   and their stale records ignored. A file re-queued after a reported end is new.
3. A download missing from ``grace_polls`` consecutive successful polls fails as
   ``missing``. Only successful polls are reconciled, so failed ones count for nothing;
   a poll that read only some peers' lists counts only for those peers' downloads.
4. A retryable failure is reported once it has held ``failure_settle`` seconds;
   rejections and cancellations at once.
5. ``Application shut down`` (slskd restarting) is not a failure unless nothing returns
   within ``restart_window``.
6. On the very first start, transfers that had already ended are recorded silently.
7. A download trayagent cancelled (the ids come in with each poll) that ends without
   succeeding is cancelled, whatever slskd shows: cancelled between slskd's own retries it
   ends `Completed, Errored` with the previous attempt's error.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import AbstractSet, Collection, Iterable, Mapping, Sequence

from trayagent.core.model import (
    OUTCOME_EVENT,
    Event,
    EventType,
    Finished,
    Kind,
    Progress,
    Transfer,
    classify,
)
from trayagent.core.rules import Wait, judge


_WEEK = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Rules:
    """How long to wait before believing a disappearance, a failure, or a restart casualty.

    This class is also the config's [tracking] section, so the rules are written once; the
    metadata holds the limits the config accepts (plain data: core imports nothing).
    """

    grace_polls: int = field(default=3, metadata={"minimum": 1, "maximum": 1000})
    failure_settle: float = field(default=60.0, metadata={"inclusive": True, "maximum": _WEEK})
    restart_window: float = field(default=300.0, metadata={"inclusive": True, "maximum": _WEEK})


@dataclass(slots=True)
class Tracked:
    """A download the agent follows until its end is recorded.

    ``key`` is the first transfer id ever seen for it and never changes; ``transfer_id``
    is its current slskd id (slskd mints new ids on re-request and after a restart).
    """

    key: str
    transfer_id: str
    username: str
    filename: str
    size: int
    state: str
    first_seen: datetime
    bytes_transferred: int = 0
    aliases: set[str] = field(default_factory=set)
    started: bool = False
    missing_polls: int = 0
    failing_since: datetime | None = None
    restart_since: datetime | None = None
    error: str | None = None
    last: Transfer | None = None  # the latest record seen; not persisted

    def persistent(self) -> tuple:
        """The fields whose change must reach the store (progress bytes are cosmetic)."""
        return (
            self.transfer_id, frozenset(self.aliases), self.state, self.size, self.started,
            self.missing_polls, self.failing_since, self.restart_since, self.error,
        )


@dataclass(slots=True)
class Changes:
    """What one reconcile changed: to be committed atomically, then the events delivered."""

    events: list[Event] = field(default_factory=list)
    upserts: dict[str, Tracked] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    finished: list[Finished] = field(default_factory=list)
    ended: dict[str, Kind] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)  # ended ids slskd no longer lists
    initialized: bool = False  # this poll was the agent's very first baseline

    @property
    def empty(self) -> bool:
        return not (
            self.events or self.upserts or self.deletes or self.finished or self.ended
            or self.forgotten or self.initialized
        )


class Tracker:
    """Active and finished queues, with every transition made in one place."""

    #: Ended ids absent from slskd's list are forgotten after two sweeps this many polls apart.
    FORGET_EVERY = 200

    def __init__(
        self,
        rules: Rules = Rules(),
        tracked: Iterable[Tracked] = (),
        ended: Mapping[str, Kind] | None = None,
        initialized: bool = False,
        recent: Iterable[Finished] = (),
        recent_limit: int = 100,
    ) -> None:
        self.rules = rules
        self.initialized = initialized
        self._tracked: dict[str, Tracked] = {}
        self._by_id: dict[str, str] = {}
        self._by_name: dict[tuple[str, str], list[str]] = {}
        for d in tracked:
            self._index(d)
        self._ended: dict[str, Kind] = dict(ended or {})
        self._recent: deque[Finished] = deque(recent, maxlen=recent_limit)
        self._full_polls = 0
        self._absent_once: set[str] = set()
        self._cancelled: AbstractSet[str] = frozenset()

    # ----------------------------------------------------------------- queries

    @property
    def active(self) -> list[Tracked]:
        return list(self._tracked.values())

    @property
    def recent(self) -> list[Finished]:
        return list(self._recent)

    def is_recorded(self, transfer_id: str) -> bool:
        """Whether this id's end is recorded (and reported, unless it predates the agent)."""
        return transfer_id in self._ended

    def recorded_outcome(self, transfer_id: str) -> Kind | None:
        return self._ended.get(transfer_id)

    @property
    def recorded(self) -> Mapping[str, Kind]:
        """Every id whose end is recorded, with its outcome (read-only; lets a parser skip them)."""
        return MappingProxyType(self._ended)

    def peers(self) -> frozenset[str]:
        """The peers whose downloads are followed: the lists a partial poll has to read."""
        return frozenset(d.username for d in self._tracked.values())

    def followed_ids(self) -> frozenset[str]:
        """Every id of a followed download, earlier ids included: what a poll matches or skips."""
        return frozenset(self._by_id)

    def needs_full_poll(self) -> bool:
        """Whether something only the whole list can settle is pending: an slskd restart.

        A shutdown casualty comes back under a new id after slskd logs in again; reading the
        whole list at once also catches whatever else that restart changed.
        """
        return any(d.restart_since is not None for d in self._tracked.values())

    def compact(self) -> None:
        """Re-create the recorded ids in fresh memory; nothing else changes.

        After the first start's baseline they are strings cut from one big parsed body (10,000
        listed: ~150,000 objects), one in every few hundred bytes of the memory it took, so
        that memory cannot go back to the system while they live. Freed first, then made
        again from one joined string, they pack together (benchmarks/idle.py: -6 MB at 10,000).
        """
        ended = self._ended  # refilled in place: a `recorded` view of it stays valid
        ids = list(ended)
        kinds = list(ended.values())
        lengths = [len(tid) for tid in ids]
        joined = "".join(ids)
        del ids
        ended.clear()  # the old strings go here, unless something else still holds one
        start = 0
        for length, kind in zip(lengths, kinds):
            ended[joined[start:start + length]] = kind
            start += length

    def progress(self) -> Progress:
        p = Progress()
        for d in self._tracked.values():
            t = d.last
            kind = t.status.kind if t is not None else None
            if kind is Kind.IN_PROGRESS:
                p.downloading += 1
                p.bytes_total += d.size
                p.bytes_done += min(d.bytes_transferred, d.size)
                p.speed += t.average_speed if t is not None else 0.0
            elif kind is Kind.QUEUED or (kind is None and not d.failing_since):
                p.queued += 1
        return p

    # --------------------------------------------------------------- reconcile

    def reconcile(
        self,
        transfers: Sequence[Transfer],
        now: datetime,
        complete: bool = True,
        peers: AbstractSet[str] | None = None,
        also_listed: Collection[str] = (),
        whole_list: bool | None = None,
        cancelled: AbstractSet[str] = frozenset(),
    ) -> Changes:
        """Fold one successful poll into the queues. Never call it for a failed poll.

        `complete=False` says slskd listed records that could not be read: what is absent
        may be among them, so absence counts for nothing in that poll (rule 3), while every
        record that was read is reconciled as usual.

        `peers` names the peers whose whole lists this poll read (None: slskd's whole list).
        Absence counts only for downloads of those peers; everything listed is reconciled.
        `also_listed` holds ids slskd listed that were not built into Transfers because their
        end is recorded and their state unchanged: they are skipped here anyway, and are
        present for the sweep that forgets ids slskd no longer lists.

        `whole_list` says the poll saw every id slskd lists, built or not (by default: when
        `peers` is None). Only such polls count for that sweep. A poll that read slskd's whole
        list for its ids only, then the followed peers' lists for their records, passes those
        peers and `whole_list=True`.

        `cancelled`: transfer ids trayagent asked slskd to cancel (rule 7).
        """
        ch = Changes()
        self._cancelled = cancelled
        matched = self._match(transfers, now, ch)
        tracked = self._tracked
        for key, t in matched.items():
            d = tracked[key]
            before = d.persistent()
            self._observe(d, t, now, ch)
            if key in tracked and d.persistent() != before:
                ch.upserts[key] = d
        if complete:
            self._count_absent(matched, peers, now, ch)
        if not self.initialized:
            self.initialized = True
            ch.initialized = True
        if whole_list is None:
            whole_list = peers is None
        if whole_list:
            self._full_polls += 1
            if complete and self._full_polls % self.FORGET_EVERY == 0:
                self._forget_absent(transfers, also_listed, ch)
        return ch

    def _count_absent(
        self, matched: Mapping[str, Transfer], peers: AbstractSet[str] | None, now: datetime, ch: Changes,
    ) -> None:
        """Rule 3 for every followed download this poll could have listed and did not."""
        absent = [k for k, d in self._tracked.items() if k not in matched and (peers is None or d.username in peers)]
        for key in absent:
            d = self._tracked[key]
            before = d.persistent()
            self._absent(d, now, ch)
            if key in self._tracked and d.persistent() != before:
                ch.upserts[key] = d

    # ---------------------------------------------------------------- matching

    def _match(self, transfers: Sequence[Transfer], now: datetime, ch: Changes) -> dict[str, Transfer]:
        """Each listed record to the download it belongs to (rule 2); new downloads begin here."""
        matched: dict[str, Transfer] = {}
        unmatched: list[Transfer] = []
        ended = self._ended
        by_id = self._by_id
        for t in transfers:
            tid = t.id
            if tid in ended:
                continue
            key = by_id.get(tid)
            if key is None:
                unmatched.append(t)
            elif self._tracked[key].transfer_id == tid:
                matched[key] = t
            # else: an alias, a superseded record of a tracked download: ignored
        if unmatched:
            self._match_unknown(unmatched, matched, now, ch)
        return matched

    def _match_unknown(
        self, unmatched: list[Transfer], matched: dict[str, Transfer], now: datetime, ch: Changes,
    ) -> None:
        """Ids nobody follows: a followed download's new id (matched by name), or a new download."""
        # Live records first, newest first: they are the likely re-enqueues.
        unmatched.sort(key=lambda t: t.requested_at_raw or "", reverse=True)
        unmatched.sort(key=lambda t: t.status.terminal)
        for t in unmatched:
            key = self._match_by_name(t, matched)
            if key is None:
                key = self._begin(t, now, ch)
                if key is None:
                    continue
            else:
                self._switch_id(self._tracked[key], t.id)
            matched[key] = t

    def _match_by_name(self, t: Transfer, matched: Mapping[str, Transfer]) -> str | None:
        keys = self._by_name.get((t.username, t.filename))
        if not keys:
            return None
        live = not t.status.terminal
        for key in keys:
            current = matched.get(key)
            if current is None:
                return key
            # Its current record is here too: a live new record supersedes an ended one.
            if live and current.status.terminal:
                return key
        return None

    def _switch_id(self, d: Tracked, new_id: str) -> None:
        d.aliases.add(d.transfer_id)
        d.transfer_id = new_id
        self._by_id[new_id] = d.key

    def _begin(self, t: Transfer, now: datetime, ch: Changes) -> str | None:
        """A transfer nobody tracks: a new download, or on the first start, old history."""
        status = t.status
        if not self.initialized and status.terminal:
            self._ended[t.id] = status.kind
            ch.ended[t.id] = status.kind
            return None
        d = Tracked(
            key=t.id, transfer_id=t.id, username=t.username, filename=t.filename,
            size=t.size, state=t.state, first_seen=now, bytes_transferred=t.bytes_transferred,
        )
        self._index(d)
        ch.upserts[d.key] = d
        ch.events.append(self._event(EventType.ADDED, d, t, now))
        return d.key

    def _index(self, d: Tracked) -> None:
        self._tracked[d.key] = d
        self._by_id[d.transfer_id] = d.key
        for alias in d.aliases:
            self._by_id[alias] = d.key
        self._by_name.setdefault((d.username, d.filename), []).append(d.key)

    def _unindex(self, d: Tracked) -> None:
        del self._tracked[d.key]
        for tid in (d.transfer_id, *d.aliases):
            if self._by_id.get(tid) == d.key:
                del self._by_id[tid]
        name = (d.username, d.filename)
        keys = self._by_name.get(name, [])
        if d.key in keys:
            keys.remove(d.key)
        if not keys:
            self._by_name.pop(name, None)

    # -------------------------------------------------------------- transitions

    def _observe(self, d: Tracked, t: Transfer, now: datetime, ch: Changes) -> None:
        d.last = t
        d.state = t.state
        d.missing_polls = 0
        if t.size:
            d.size = t.size
        d.bytes_transferred = t.bytes_transferred
        status = t.status
        kind = status.kind

        if kind is Kind.QUEUED or kind is Kind.IN_PROGRESS:  # judge()'s GOING, without the call
            d.failing_since = d.restart_since = d.error = None
            if kind is Kind.IN_PROGRESS and not d.started:
                d.started = True
                ch.events.append(self._event(EventType.STARTED, d, t, now))
            return
        casualty = kind is Kind.FAILED and t.is_shutdown_casualty
        verdict = judge(
            status, self.rules, casualty=casualty, failing_for=_since(d.failing_since, now),
            restarting_for=_since(d.restart_since, now), cancelled=self._was_cancelled(d),
        )
        if kind is Kind.FAILED and verdict.outcome is not Kind.CANCELLED:
            d.error = t.exception
            self._run_clock(d, Wait.RESTART if casualty else Wait.FAILURE, now)
        if verdict.ended:
            assert verdict.outcome is not None
            self._finish(d, t, verdict.outcome, verdict.reason, now, ch)

    def _absent(self, d: Tracked, now: datetime, ch: Changes) -> None:
        restarting = d.restart_since is not None
        verdict = judge(
            None, self.rules, failing_for=_since(d.failing_since, now),
            restarting_for=_since(d.restart_since, now), missing_polls=d.missing_polls + 1,
            cancelled=self._was_cancelled(d), last_reason=_last_reason(d),
        )
        if not restarting:  # gone after slskd's restart: waiting for it under a new id, uncounted
            d.missing_polls += 1
        if verdict.ended:
            assert verdict.outcome is not None
            self._finish(d, None, verdict.outcome, verdict.reason, now, ch)

    @staticmethod
    def _run_clock(d: Tracked, wait: Wait, now: datetime) -> None:
        """Start the clock a failed download settles on (if not running), and stop the other."""
        if wait is Wait.RESTART:
            d.failing_since = None
            if d.restart_since is None:
                d.restart_since = now
        else:
            d.restart_since = None
            if d.failing_since is None:
                d.failing_since = now

    def _was_cancelled(self, d: Tracked) -> bool:
        cancelled = self._cancelled
        return bool(cancelled) and (d.transfer_id in cancelled or not cancelled.isdisjoint(d.aliases))

    def _finish(
        self, d: Tracked, t: Transfer | None, kind: Kind, reason: str | None,
        now: datetime, ch: Changes,
    ) -> None:
        self._unindex(d)
        ch.upserts.pop(d.key, None)
        ch.deletes.add(d.key)
        for tid in (d.transfer_id, *d.aliases):
            self._ended[tid] = kind
            ch.ended[tid] = kind
        done = Finished(
            transfer_id=d.transfer_id, username=d.username, filename=d.filename, size=d.size,
            outcome=kind, reason=reason, state=t.state if t is not None else d.state,
            error=(t.exception if t is not None else None) or d.error,
            first_seen=d.first_seen, finished_at=now,
        )
        self._recent.appendleft(done)
        ch.finished.append(done)
        ch.events.append(self._event(OUTCOME_EVENT[kind], d, t, now, reason=reason))

    def _forget_absent(self, transfers: Sequence[Transfer], also_listed: Collection[str], ch: Changes) -> None:
        """Drop ended ids slskd stopped listing (cleanup, retention) two sweeps in a row.

        Keeps the ended set from growing with history that slskd itself has let go of.
        Sweeps run on polls that saw the whole list only: a partial poll does not show what slskd
        still lists.
        """
        present = {t.id for t in transfers}
        present.update(also_listed)
        absent = {tid for tid in self._ended if tid not in present}
        gone = absent & self._absent_once
        self._absent_once = absent - gone
        for tid in gone:
            del self._ended[tid]
        ch.forgotten |= gone

    @staticmethod
    def _event(
        kind: EventType, d: Tracked, t: Transfer | None, now: datetime, reason: str | None = None
    ) -> Event:
        return Event(
            event=kind, at=now, id=t.id if t is not None else d.transfer_id,
            username=d.username, filename=d.filename,
            state=t.state if t is not None else d.state, size=d.size,
            bytes_transferred=t.bytes_transferred if t is not None else d.bytes_transferred,
            reason=reason if kind is EventType.FAILED else None,
            error=((t.exception if t is not None else None) or d.error)
            if kind in (EventType.FAILED, EventType.CANCELLED) else None,
        )


def _since(since: datetime | None, now: datetime) -> float | None:
    """Seconds a clock has run, or None when it is not running."""
    return None if since is None else (now - since).total_seconds()


def _last_reason(d: Tracked) -> str | None:
    status = classify(d.state)
    return status.reason if status.kind is Kind.FAILED else None

