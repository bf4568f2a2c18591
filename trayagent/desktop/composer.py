"""What desktop notifications say and when: events and an injected clock in, Notification values out.

Pure and single-threaded, so every rule is tested with plain data: batching, a rate cap, debounce,
quiet hours, pause, one in-place notification per album, and one summary for what ended while
nobody watched. The desktop notifier (desktop_notifier.py) owns the lock, the clock and the backends.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Sequence

from trayagent.config import NotificationsConfig, in_quiet_hours, parse_quiet_hours
from trayagent.core.model import Event, EventType
from trayagent.desktop.clock import before, seconds_between
from trayagent.desktop.labels import (
    BODY_LIMIT,
    TITLE_LIMIT,
    failure_text,
    folder_key,
    folder_name,
    is_audio,
    sanitize,
    track_label,
    track_title,
)
from trayagent.desktop.notification import Notification

log = logging.getLogger(__name__)

#: The notification spec's categories for finished and failed transfers.
COMPLETE = "transfer.complete"
ERROR = "transfer.error"
#: Failure notifications name this many files, then "+N more".
NAMED_FAILURES = 3


#: The composer reads the [notifications] config section as it is; one definition of the settings.
NotificationRules = NotificationsConfig


def quiet_span(text: str) -> tuple[time, time] | None:
    """'22:00-07:00' -> (start, end); '' -> None. Raises ValueError (config's wording) otherwise."""
    text = (text or "").strip()
    return parse_quiet_hours(text) if text else None


def is_away(previous_poll: datetime | None, now: datetime, gap: float) -> bool:
    """Whether events delivered at `now` ended while nobody watched.

    True before the agent's first successful poll (the outbox at start, the first poll after
    login) and when the last one is more than `gap` seconds old (the machine slept, or slskd
    could not be read for that long).
    """
    if previous_poll is None:
        return True
    return seconds_between(previous_poll, now) > gap


def away_gap(active_interval: float, idle_interval: float) -> float:
    """A gap between polls much larger than the poll interval: the wall clock jumped."""
    return max(120.0, 5.0 * max(active_interval, idle_interval))


_FINISH_EVENTS = (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED)
_AWAY_KEY = ("", "\0away")
#: Albums remembered at once; the oldest are forgotten first (their files still notify singly).
MAX_ALBUMS = 1000


@dataclass(slots=True)
class _Group:
    """Finished downloads from one peer and one remote folder, waiting for the batch window."""

    key: tuple[str, str]
    username: str
    folder: str
    first: datetime
    last: datetime
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class _Album:
    """Every file of one peer's folder seen so far, each with how it ended (None: not yet)."""

    key: str  # the in-place key, unique for this album's life
    username: str
    folder: str
    files: dict[str, Event | None] = field(default_factory=dict)
    shown: bool = False  # a note for it is on screen: later ones replace it
    folded: bool = False  # the rate cap folded it into a summary: no note of its own any more

    @property
    def ended(self) -> list[Event]:
        return [e for e in self.files.values() if e is not None]

    @property
    def complete(self) -> bool:
        return all(e is not None for e in self.files.values())


@dataclass(slots=True)
class _Tally:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    def add(self, e: Event) -> None:
        if e.event is EventType.COMPLETED:
            self.completed += 1
        elif e.event is EventType.FAILED:
            self.failed += 1
        else:
            self.cancelled += 1

    @property
    def total(self) -> int:
        return self.completed + self.failed + self.cancelled


class NotificationComposer:
    """Turns events into notifications: batching, a rate cap, debounce, quiet hours and pause.

    Pure and single-threaded: callers pass `now` (a datetime; aware or naive local) to every
    call and hold their own lock. `due(now)` returns what should be shown at that moment;
    `next_deadline(now)` says when to ask again so batch windows elapse without a new event.
    """

    RATE_WINDOW = timedelta(seconds=60)

    def __init__(self, rules: NotificationRules | None = None, *, connection_delay: float = 10.0) -> None:
        self.rules = rules if rules is not None else NotificationRules()
        self._window = timedelta(seconds=max(float(self.rules.batch_window), 0.0))
        # A steady trickle into one folder must still be reported: cap how long a group waits.
        self._max_hold = self._window * 5
        self._cap = max(int(self.rules.max_per_minute), 1)
        self._conn_delay = timedelta(seconds=max(connection_delay, 0.0))
        try:
            self._quiet = quiet_span(self.rules.quiet_hours)
        except ValueError as exc:
            log.warning("ignoring quiet hours: %s", exc)
            self._quiet = None
        self._groups: dict[tuple[str, str], _Group] = {}
        self._albums: OrderedDict[tuple[str, str], _Album] = OrderedDict()
        self._album_serial = 0
        self._away: _Group | None = None
        self._overflow = _Tally()
        self._held: list[Notification] = []  # connection notes waiting for a rate slot
        self._sent: deque[datetime] = deque()
        self._conn = "up"  # up / pending (lost, not yet told) / notified / silent (lost, not told)
        self._down_since: datetime | None = None
        self._lost_error: str | None = None
        self._paused = False
        self._paused_until: datetime | None = None

    # -- controls

    def set_paused(self, paused: bool, until: datetime | None = None) -> None:
        """Pause indefinitely (paused=True) or until a moment; (False, None) resumes."""
        self._paused = bool(paused)
        self._paused_until = until

    def is_paused(self, now: datetime) -> bool:
        if self._paused:
            return True
        return self._paused_until is not None and before(now, self._paused_until)

    def suppressed(self, now: datetime) -> bool:
        """Whether anything shown now would be dropped (disabled, paused or quiet hours)."""
        return not self.rules.enabled or self.is_paused(now) or in_quiet_hours(self._quiet, now)

    # -- input

    def expect(self, username: str, filename: str) -> None:
        """Count a download that has not ended yet as part of its album ("7 of 12")."""
        self._album(username, filename).files[filename] = None

    def feed(self, event: Event, now: datetime, away: bool = False) -> None:
        """Take one event. added/started only count towards albums; finished ones wait for a batch.

        `away` marks downloads that ended while nobody watched (see is_away): they are told in
        one summary, not one notification each.
        """
        if event.event is EventType.CONNECTION:
            self._feed_connection(event, now)
            return
        if event.event is EventType.SYNC:
            if not self.suppressed(now):
                self._held.append(_sync_note(event))
            return
        if event.event in (EventType.ADDED, EventType.STARTED):
            self.expect(event.username, event.filename)
            return
        if event.event not in _FINISH_EVENTS:
            return
        album = self._album(event.username, event.filename)
        album.files[event.filename] = event
        if not self._wanted(event.event) or self.suppressed(now):
            self._settle_unseen(album, now)
            return
        key = (event.username, folder_key(event.filename))
        if away:
            key = _AWAY_KEY
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, event.username, folder_name(event.filename), now, now)
        group.last = now
        group.events.append(event)

    def _album(self, username: str, filename: str) -> _Album:
        key = (username, folder_key(filename))
        album = self._albums.get(key)
        if album is None:
            self._album_serial += 1
            album = self._albums[key] = _Album(f"album-{self._album_serial}", username, folder_name(filename))
            while len(self._albums) > MAX_ALBUMS:
                self._albums.popitem(last=False)
        return album

    def _settle_unseen(self, album: _Album, now: datetime) -> None:
        """An album ended by a download nobody is told about: its shown note still needs a final."""
        key = next((k for k, a in self._albums.items() if a is album), None)
        if key is None or not album.complete:
            return
        if album.shown and not album.folded and key not in self._groups:
            self._groups[key] = _Group(key, album.username, album.folder, now, now)
        elif not album.shown:
            del self._albums[key]

    def _wanted(self, kind: EventType) -> bool:
        r = self.rules
        return {
            EventType.COMPLETED: r.on_completed,
            EventType.FAILED: r.on_failed,
            EventType.CANCELLED: r.on_cancelled,
        }.get(kind, False)

    def _feed_connection(self, event: Event, now: datetime) -> None:
        if not self.rules.on_connection:
            return
        if event.status == "lost":
            if self._conn == "up":
                self._conn, self._down_since = "pending", now
                self._lost_error = event.error
        elif event.status == "restored":
            previous, self._conn, self._down_since = self._conn, "up", None
            if previous != "notified":
                return
            held_lost = [n for n in self._held if n.kind == "connection_lost"]
            if held_lost:  # never shown: drop it and say nothing about the recovery either
                self._held = [n for n in self._held if n.kind != "connection_lost"]
                return
            self._held.append(Notification("Reconnected to slskd", "", "low", "connection_restored"))

    # -- output

    def next_deadline(self, now: datetime) -> datetime | None:
        """The earliest moment at which due() may return something new (None: only on input)."""
        times = [self._group_deadline(g) for g in self._groups.values()]
        if self._conn == "pending" and self._down_since is not None:
            times.append(self._down_since + self._conn_delay)
        if self._held or self._overflow.total:
            times.append(self._sent[0] + self.RATE_WINDOW if len(self._sent) >= self._cap else now)
        return min(times) if times else None

    def _group_deadline(self, g: _Group) -> datetime:
        return min(g.last + self._window, g.first + self._max_hold)

    def due(self, now: datetime) -> list[Notification]:
        """Everything to show at `now`, within the rate cap; overflow becomes one summary."""
        groups = [g for g in self._groups.values() if not before(now, self._group_deadline(g))]
        return self._emit(now, groups)

    def flush(self, now: datetime) -> list[Notification]:
        """Close every batch now (on shutdown). What the rate cap still holds back is dropped."""
        out = self._emit(now, list(self._groups.values()))
        dropped = self._overflow.total + len(self._held)
        if dropped:
            log.info("dropping %d notification(s) held back by the rate limit at shutdown", dropped)
        self._overflow, self._held = _Tally(), []
        return out

    def _emit(self, now: datetime, groups: list[_Group]) -> list[Notification]:
        for g in groups:
            del self._groups[g.key]
        self._take_away(groups)
        if self._conn == "pending" and self._down_since is not None:
            if not before(now, self._down_since + self._conn_delay):
                if self.suppressed(now):
                    self._conn = "silent"
                else:
                    self._conn = "notified"
                    self._held.append(self._lost_note())
        if self.suppressed(now):
            self._held, self._overflow = [], _Tally()
            return []
        while self._sent and not before(now, self._sent[0] + self.RATE_WINDOW):
            self._sent.popleft()
        slots = self._cap - len(self._sent)
        out: list[Notification] = []
        while self._held and slots > 0:
            out.append(self._held.pop(0))
            slots -= 1
        groups.sort(key=lambda g: g.first)
        fresh: list[_Group] = []
        in_place: list[Notification] = []
        for g in groups:
            album = self._albums.get(g.key)
            if album is not None and album.shown and not album.folded:
                in_place.append(self._album_note(g.key, album))  # replaces a shown one: no new slot
            elif album is not None and album.folded:
                self._fold(g)
            else:
                fresh.append(g)
        for i, g in enumerate(fresh):
            last_one = i == len(fresh) - 1 and not self._overflow.total
            if slots > 1 or (slots == 1 and last_one):
                out.append(self._group_note(g))
                slots -= 1
            else:
                self._fold(g)
        if self._overflow.total and slots > 0:
            out.append(self._summary_note(self._overflow))
            self._overflow = _Tally()
        self._sent.extend(now for _ in out)
        return out + in_place

    def _fold(self, g: _Group) -> None:
        """No slot for this group: count it in the next summary, and its album from now on."""
        for e in g.events:
            self._overflow.add(e)
        album = self._albums.get(g.key)
        if album is not None:
            album.folded = True
            if album.complete:
                del self._albums[g.key]

    def _take_away(self, groups: list[_Group]) -> None:
        """Turn a due away batch into one summary note (held), or its one album's usual note."""
        away = next((g for g in groups if g.key == _AWAY_KEY), None)
        if away is None:
            return
        groups.remove(away)
        keys = {(e.username, folder_key(e.filename)) for e in away.events}
        if len(keys) == 1:
            [key] = keys
            groups.append(_Group(key, away.events[0].username, folder_name(away.events[0].filename),
                                 away.first, away.last, away.events))
            return
        for key in keys:  # told in the summary: forget finished albums, close their stale notes
            album = self._albums.get(key)
            if album is not None and album.complete:
                del self._albums[key]
                if album.shown:
                    self._held.append(Notification("", kind="close", key=album.key))
        self._held.append(_away_note(away.events))

    # -- wording

    def _lost_note(self) -> Notification:
        error = sanitize(self._lost_error or "", 160, leading_dash=False)
        body = f"slskd is unreachable: {error}" if error else "slskd is unreachable"
        return Notification("Connection lost", sanitize(body, BODY_LIMIT), "normal", "connection_lost")

    def _group_note(self, g: _Group) -> Notification:
        album = self._albums.get(g.key)
        if album is not None and len(album.files) > 1:
            return self._album_note(g.key, album)
        if album is not None and album.complete:
            del self._albums[g.key]
        if len(g.events) == 1:
            return _single_note(g.events[0])
        return _batch_note(g.folder, g.username, g.events, key="", final=True)

    def _album_note(self, key: tuple[str, str], album: _Album) -> Notification:
        """'Album — 7 of 12' while it arrives; its final state (counts, failures named) at the end."""
        album.shown = True
        ended = [e for e in album.ended if self._wanted(e.event)]
        if album.complete:
            del self._albums[key]
            return _batch_note(album.folder, album.username, ended, key=album.key, final=True)
        note = _batch_note(album.folder, album.username, ended, key=album.key, final=False)
        title = f"{sanitize(album.folder, 60) or 'Album'} — {len(album.ended)} of {len(album.files)}"
        return Notification(sanitize(title, TITLE_LIMIT), note.body, "normal", "album", album.key, False,
                            note.category, note.folder_of, note.retry_ids)

    def _summary_note(self, tally: _Tally) -> Notification:
        title = f"{tally.total} more downloads finished" if tally.total != 1 else "1 more download finished"
        body = _counts(tally) if tally.failed or tally.cancelled else ""
        return Notification(title, body, "normal", "summary", category=ERROR if tally.failed else COMPLETE)


def _sync_note(e: Event) -> Notification:
    """The one notification at the end of a playlist sync."""
    title = "Playlist sync finished" if e.status != "error" else "Playlist sync stopped"
    body = sanitize(e.summary or e.error or "", BODY_LIMIT, leading_dash=False)
    return Notification(title, body, "normal" if e.status != "error" else "critical", kind="sync")


def _single_note(e: Event) -> Notification:
    label = track_label(e.filename, TITLE_LIMIT)
    if e.event is EventType.COMPLETED:
        return Notification("Download finished", sanitize(label, BODY_LIMIT), "normal",
                            category=COMPLETE, folder_of=e.filename)
    if e.event is EventType.FAILED:
        why = failure_text(e.reason, e.bytes_transferred, e.error)
        return Notification("Download failed", sanitize(f"{label}: {why}", BODY_LIMIT), "normal",
                            category=ERROR, retry_ids=(e.id,) if e.id else ())
    return Notification("Download cancelled", sanitize(label, BODY_LIMIT), "low", category=COMPLETE)


def _batch_note(folder: str, username: str, events: Sequence[Event], *, key: str, final: bool) -> Notification:
    """Several downloads of one folder: counts in the title, the failed files named in the body."""
    tally = _Tally()
    for e in events:
        tally.add(e)
    album = sanitize(folder, 60) if folder else ""
    if tally.failed == 0 and tally.cancelled == 0:
        noun = "tracks" if all(is_audio(e.filename) for e in events) else "files"
        what = f"{tally.completed} {noun} downloaded"
    else:
        what = _counts(tally)
    user = sanitize(username, 60, leading_dash=False)
    title = f"{album} — {what}" if album else f"{what} from {user}"
    body = f"from {user}" if album and user else ""
    failed = [e for e in events if e.event is EventType.FAILED]
    if failed:
        named = f"failed: {failed_names(failed)} ({_reason_summary(failed)})"
        body = f"{body} · {named}" if body else named
    urgency = "normal" if tally.completed or tally.failed else "low"
    done = next((e.filename for e in events if e.event is EventType.COMPLETED), "")
    return Notification(sanitize(title, TITLE_LIMIT), sanitize(body, BODY_LIMIT), urgency,
                        "album" if key else "downloads", key, final, ERROR if failed else COMPLETE,
                        done, tuple(e.id for e in failed if e.id))


def _away_note(events: Sequence[Event]) -> Notification:
    """One summary of what ended while the agent was not running or the machine slept."""
    tally = _Tally()
    for e in events:
        tally.add(e)
    failed = [e for e in events if e.event is EventType.FAILED]
    if failed:
        body = f"failed: {failed_names(failed)}"
    else:
        folders = list(dict.fromkeys(sanitize(folder_name(e.filename), 40) or "(no folder)" for e in events))
        more = f" +{len(folders) - NAMED_FAILURES} more" if len(folders) > NAMED_FAILURES else ""
        body = "in " + ", ".join(folders[:NAMED_FAILURES]) + more
    dirs = {folder_key(e.filename) for e in events if e.event is EventType.COMPLETED}
    done = next((e.filename for e in events if e.event is EventType.COMPLETED), "") if len(dirs) == 1 else ""
    return Notification(sanitize(f"While you were away: {_counts(tally)}", TITLE_LIMIT), sanitize(body, BODY_LIMIT),
                        "normal", "away", category=ERROR if failed else COMPLETE, folder_of=done,
                        retry_ids=tuple(e.id for e in failed if e.id))


def failed_names(failed: Sequence[Event], limit: int = NAMED_FAILURES) -> str:
    """'A, B, C +2 more': the failed files by title, so the user knows which ones to look at."""
    titles = [sanitize(track_title(e.filename), 40) or "(unnamed)" for e in failed]
    more = f" +{len(titles) - limit} more" if len(titles) > limit else ""
    return ", ".join(titles[:limit]) + more


def _counts(t: _Tally) -> str:
    parts = []
    if t.completed:
        parts.append(f"{t.completed} downloaded")
    if t.failed:
        parts.append(f"{t.failed} failed")
    if t.cancelled:
        parts.append(f"{t.cancelled} cancelled")
    return ", ".join(parts)


def _reason_summary(failed: Sequence[Event]) -> str:
    counts: dict[str, int] = {}
    for e in failed:
        text = failure_text(e.reason, e.bytes_transferred, e.error)
        counts[text] = counts.get(text, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {text}" for text, n in counts.items())

