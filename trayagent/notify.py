"""Where events go: a Notifier receives every event the agent reports, in order.

Kept I/O-only and tolerant: a broken sink is logged and never stops the agent.

Desktop notifications are split in two so the rules can be tested with plain data:
NotificationComposer (pure: events and an injected clock in, Notification values out) decides
*what* to say and *when*; DesktopNotifier owns a flusher thread and a backend that shows it.
Every text shown comes from a remote peer's file name, so it is sanitised before it reaches a
notification daemon (which renders markup in bodies) or a command line (notify-send).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Protocol

from trayagent.config import NotificationsConfig, in_quiet_hours, parse_quiet_hours
from trayagent.model import Event, EventType

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def notify(self, events: Iterable[Event]) -> None: ...

    def close(self) -> None: ...


class NullNotifier:
    """Notifications switched off."""

    def notify(self, events: Iterable[Event]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesNotifier:
    """One JSON object per line per event: the machine-readable stream of `run --json`.

    Each line is written whole by one write(2) straight to the file descriptor when there is
    one (a line up to PIPE_BUF, 4 KiB, is atomic on a pipe), so a kill never leaves half a
    line, and notify() returns only once its lines are out: raising means not taken. Any
    string can be written: characters the stream's encoding cannot take (an ASCII locale, a
    lone surrogate in a file name) are written as JSON escapes, which read back the same.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._encoding = getattr(self._stream, "encoding", None) or "utf-8"

    def notify(self, events: Iterable[Event]) -> None:
        with self._lock:
            for e in events:
                self._write(json_line(e.to_json(), self._encoding))

    def _write(self, line: str) -> None:
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if fd < 0:
            self._stream.write(line)
            self._stream.flush()
            return
        self._stream.flush()  # anything written through the stream goes first
        data = line.encode(self._encoding)
        while data:
            data = data[os.write(fd, data):]

    def close(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass


def json_line(obj: object, encoding: str = "utf-8") -> str:
    """One JSON text and a newline, in plain characters where `encoding` can take them."""
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    try:
        line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        line = json.dumps(obj) + "\n"
    return line


class ConsoleNotifier:
    """One readable line per event for `trayagent demo` in a terminal (sanitised: names are remote)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def notify(self, events: Iterable[Event]) -> None:
        lines = [console_line(e) + "\n" for e in events]
        if not lines:
            return
        with self._lock:
            try:
                self._stream.write("".join(lines))
                self._stream.flush()
            except (OSError, ValueError, UnicodeError) as exc:
                log.debug("console notifier could not write: %s", exc)

    def close(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass


def console_line(e: Event) -> str:
    """'12:00:01 completed  Song — Artist  [peer]' and friends; one line, no control chars."""
    stamp = e.at.astimezone().strftime("%H:%M:%S") if e.at.tzinfo else e.at.strftime("%H:%M:%S")
    if e.event is EventType.CONNECTION:
        detail = f": {sanitize(e.error, 120, leading_dash=False)}" if e.error and e.status == "lost" else ""
        return f"{stamp} connection {sanitize(e.status or '?', 20)}{detail}"
    line = f"{stamp} {e.event.value:<9}  {track_label(e.filename, 80)}  [{sanitize(e.username, 40, leading_dash=False)}]"
    if e.event is EventType.FAILED:
        line += f"  {failure_text(e.reason, e.bytes_transferred, e.error)}"
    return line


# --------------------------------------------------------------------------- sanitising

TITLE_LIMIT = 100
BODY_LIMIT = 300
ELLIPSIS = "…"
#: Replaces a leading '-' so no text can be read as a command-line option (U+2010 HYPHEN).
SAFE_DASH = "\u2010"

#: Bidi embeddings/overrides/isolates and marks: they reorder what the user reads
#: ("gpj.exe" shown as "exe.jpg"). Zero-width joiners/BOM are stripped as invisible noise.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\u200b\u2060\ufeff"
_STRIP_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f" + _BIDI + _INVISIBLE + "]"
)
#: Terminal escape sequences (CSI like ESC[31m, OSC like ESC]0;title BEL): dropped whole, so
#: no "[31m" residue is left behind once the ESC itself is stripped.
_ANSI_RE = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?")
#: Lone surrogates (legal in slskd's .NET strings, not in any encoding): shown as U+FFFD.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
#: Whitespace-like controls become a space first so "a\nb" reads "a b", not "ab".
_SPACE_RE = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029\\s]+")


def sanitize(text: str, limit: int, *, leading_dash: bool = True) -> str:
    """One safe line: no control/bidi characters, collapsed whitespace, at most `limit` chars.

    A leading '-' becomes U+2010 (looks the same) so the text can never be an option to a
    command it ends up on; pass leading_dash=False only for text that is never a whole argument.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = unicodedata.normalize("NFC", _SURROGATE_RE.sub("\ufffd", text))
    text = _ANSI_RE.sub("", text)
    text = _SPACE_RE.sub(" ", text)
    text = _STRIP_RE.sub("", text)
    text = _SPACE_RE.sub(" ", text).strip()
    if leading_dash and text.startswith("-"):
        text = SAFE_DASH + text[1:]
    limit = max(int(limit), 1)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


def escape_markup(text: str) -> str:
    """Escape &, < and > for notification bodies, which daemons render as a subset of HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- file names

_SEP_RE = re.compile(r"[\\/]+")
_TRACK_NO_RE = re.compile(r"^\s*(?:\d{1,3}|[A-Da-d]\d{1,2})(?:\s*[-._)]\s*|\s+)(?=\S)")
_AUDIO_EXT = frozenset({"flac", "mp3", "ogg", "opus", "m4a", "aac", "wav", "aiff", "aif", "alac", "wma", "ape", "wv"})
#: Folder names that say nothing about the artist (share roots people commonly use).
_GENERIC_DIRS = frozenset(
    {
        "music", "musique", "musik", "mp3", "mp3s", "flac", "audio", "albums", "downloads", "download",
        "complete", "completed", "shared", "share", "shares", "soulseek", "slsk", "media", "my music",
    }
)


def path_segments(filename: str) -> list[str]:
    """Split a remote path on either separator, dropping empty parts."""
    return [s for s in _SEP_RE.split(filename or "") if s]


def folder_name(filename: str) -> str:
    """The remote file's parent folder name (slskd names the local folder after it), or ''."""
    parts = path_segments(filename)
    return parts[-2] if len(parts) >= 2 else ""


def folder_key(filename: str) -> str:
    """The full remote directory, used to group downloads of one album."""
    parts = path_segments(filename)
    return "\\".join(parts[:-1]).lower()


def track_title(filename: str) -> str:
    """A readable title: last path segment without extension or leading track number."""
    parts = path_segments(filename)
    name = parts[-1] if parts else ""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) <= 5 and " " not in ext:
        name = stem
    stripped = _TRACK_NO_RE.sub("", name)
    return stripped or name


def guess_artist(filename: str) -> str:
    """Best guess at the artist from the folder layout (Artist\\Album\\track or 'Artist - Album')."""
    parts = path_segments(filename)[:-1]
    if parts and parts[0].startswith("@@"):
        parts = parts[1:]
    if len(parts) >= 2 and parts[-2].strip().lower() not in _GENERIC_DIRS:
        return parts[-2]
    if parts:
        parent = parts[-1]
        if " - " in parent:
            return parent.split(" - ", 1)[0]
        return parent if parent.strip().lower() not in _GENERIC_DIRS else ""
    return ""


def is_audio(filename: str) -> bool:
    _, dot, ext = filename.rpartition(".")
    return bool(dot) and ext.lower() in _AUDIO_EXT


def track_label(filename: str, limit: int = 80) -> str:
    """'Title — Artist' (or just 'Title'), sanitised and capped: the one-line name of a download."""
    title = sanitize(track_title(filename), limit) or "(unnamed)"
    artist = sanitize(guess_artist(filename), limit, leading_dash=False)
    if artist and artist.casefold() != title.casefold():
        return sanitize(f"{title} — {artist}", limit)
    return title


def failure_text(reason: str | None, bytes_transferred: int = 0, error: str | None = None) -> str:
    """Why a download failed, in words a user understands."""
    if reason == "rejected":
        return "peer rejected the request"
    if reason == "timedout":
        return "timed out waiting in the peer's queue" if not bytes_transferred else "timed out"
    if reason == "errored":
        detail = sanitize(error or "", 120, leading_dash=False)
        return f"transfer error: {detail}" if detail else "transfer error"
    if reason == "aborted":
        return "aborted"
    if reason == "missing":
        return "disappeared from slskd"
    return "failed"


def short_reason(reason: str | None) -> str:
    """A one- or two-word reason for tight spaces such as menu items."""
    return {
        "rejected": "rejected",
        "timedout": "timed out",
        "errored": "error",
        "aborted": "aborted",
        "missing": "disappeared",
    }.get(reason or "", "failed")


# --------------------------------------------------------------------------- composer


@dataclass(frozen=True, slots=True)
class Notification:
    """One desktop notification: plain, sanitised text (backends escape markup themselves)."""

    title: str
    body: str = ""
    urgency: str = "normal"  # low / normal / critical (freedesktop names)
    kind: str = "downloads"  # downloads / summary / connection_lost / connection_restored


#: The composer reads the [notifications] config section as it is; one definition of the settings.
NotificationRules = NotificationsConfig


def quiet_span(text: str) -> tuple[time, time] | None:
    """'22:00-07:00' -> (start, end); '' -> None. Raises ValueError (config's wording) otherwise."""
    text = (text or "").strip()
    return parse_quiet_hours(text) if text else None


_FINISH_EVENTS = (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED)


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

    def __init__(self, rules: NotificationRules | Any = None, *, connection_delay: float = 10.0) -> None:
        self.rules = rules if isinstance(rules, NotificationRules) else NotificationRules.from_config(rules)
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
        return self._paused_until is not None and _before(now, self._paused_until)

    def suppressed(self, now: datetime) -> bool:
        """Whether anything shown now would be dropped (disabled, paused or quiet hours)."""
        return not self.rules.enabled or self.is_paused(now) or in_quiet_hours(self._quiet, now)

    # -- input

    def feed(self, event: Event, now: datetime) -> None:
        """Take one event. added/started never notify; finished ones wait for their batch."""
        if event.event is EventType.CONNECTION:
            self._feed_connection(event, now)
            return
        if event.event is EventType.SYNC:
            if not self.suppressed(now):
                self._held.append(_sync_note(event))
            return
        if event.event not in _FINISH_EVENTS or not self._wanted(event.event):
            return
        if self.suppressed(now):
            return
        key = (event.username, folder_key(event.filename))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, event.username, folder_name(event.filename), now, now)
        group.last = now
        group.events.append(event)

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
        groups = [g for g in self._groups.values() if not _before(now, self._group_deadline(g))]
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
        if self._conn == "pending" and self._down_since is not None:
            if not _before(now, self._down_since + self._conn_delay):
                if self.suppressed(now):
                    self._conn = "silent"
                else:
                    self._conn = "notified"
                    self._held.append(self._lost_note())
        if self.suppressed(now):
            self._held, self._overflow = [], _Tally()
            return []
        while self._sent and not _before(now, self._sent[0] + self.RATE_WINDOW):
            self._sent.popleft()
        slots = self._cap - len(self._sent)
        out: list[Notification] = []
        while self._held and slots > 0:
            out.append(self._held.pop(0))
            slots -= 1
        groups.sort(key=lambda g: g.first)
        for i, g in enumerate(groups):
            last_one = i == len(groups) - 1 and not self._overflow.total
            if slots > 1 or (slots == 1 and last_one):
                out.append(self._group_note(g))
                slots -= 1
            else:
                for e in g.events:
                    self._overflow.add(e)
        if self._overflow.total and slots > 0:
            out.append(self._summary_note(self._overflow))
            self._overflow = _Tally()
        self._sent.extend(now for _ in out)
        return out

    # -- wording

    def _lost_note(self) -> Notification:
        error = sanitize(self._lost_error or "", 160, leading_dash=False)
        body = f"slskd is unreachable: {error}" if error else "slskd is unreachable"
        return Notification("Connection lost", sanitize(body, BODY_LIMIT), "normal", "connection_lost")

    def _group_note(self, g: _Group) -> Notification:
        events = g.events
        if len(events) == 1:
            return _single_note(events[0])
        tally = _Tally()
        for e in events:
            tally.add(e)
        album = sanitize(g.folder, 60) if g.folder else ""
        if tally.failed == 0 and tally.cancelled == 0:
            noun = "tracks" if all(is_audio(e.filename) for e in events) else "files"
            what = f"{tally.completed} {noun} downloaded"
        else:
            what = _counts(tally)
        user = sanitize(g.username, 60, leading_dash=False)
        title = f"{album} — {what}" if album else f"{what} from {user}"
        body = f"from {user}" if album and user else ""
        reasons = _reason_summary([e for e in events if e.event is EventType.FAILED])
        if reasons:
            body = f"{body} · failed: {reasons}" if body else f"failed: {reasons}"
        urgency = "normal" if tally.completed or tally.failed else "low"
        return Notification(sanitize(title, TITLE_LIMIT), sanitize(body, BODY_LIMIT), urgency)

    def _summary_note(self, tally: _Tally) -> Notification:
        title = f"{tally.total} more downloads finished" if tally.total != 1 else "1 more download finished"
        body = _counts(tally) if tally.failed or tally.cancelled else ""
        return Notification(title, body, "normal", "summary")


def _sync_note(e: Event) -> Notification:
    """The one notification at the end of a playlist sync."""
    title = "Playlist sync finished" if e.status != "error" else "Playlist sync stopped"
    body = sanitize(e.summary or e.error or "", BODY_LIMIT, leading_dash=False)
    return Notification(title, body, "normal" if e.status != "error" else "critical", kind="sync")


def _single_note(e: Event) -> Notification:
    label = track_label(e.filename, TITLE_LIMIT)
    if e.event is EventType.COMPLETED:
        return Notification("Download finished", sanitize(label, BODY_LIMIT), "normal")
    if e.event is EventType.FAILED:
        why = failure_text(e.reason, e.bytes_transferred, e.error)
        return Notification("Download failed", sanitize(f"{label}: {why}", BODY_LIMIT), "normal")
    return Notification("Download cancelled", sanitize(label, BODY_LIMIT), "low")


def _counts(t: _Tally) -> str:
    parts = []
    if t.completed:
        parts.append(f"{t.completed} downloaded")
    if t.failed:
        parts.append(f"{t.failed} failed")
    if t.cancelled:
        parts.append(f"{t.cancelled} cancelled")
    return ", ".join(parts)


def _reason_summary(failed: list[Event]) -> str:
    counts: dict[str, int] = {}
    for e in failed:
        text = failure_text(e.reason, e.bytes_transferred, e.error)
        counts[text] = counts.get(text, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {text}" for text, n in counts.items())


def _before(a: datetime, b: datetime) -> bool:
    """a < b, tolerating one side naive (taken as local time, as datetime.astimezone does)."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.astimezone(), b.astimezone()
    return a < b


# --------------------------------------------------------------------------- backends


class NotificationError(Exception):
    """A backend could not show a notification."""


class NotificationBackend(Protocol):
    name: str
    markup: bool  # whether bodies are rendered as markup (and must be escaped)

    def send(self, note: Notification) -> None: ...


class NotifySendBackend:
    """libnotify's notify-send, with '--' before the positional summary and body.

    plyer's own Linux path runs `notify-send <title> <message> -i ...` without '--', so a file
    named '-u critical' would be parsed as options; its Flatpak path splices text into a GVariant
    string. This backend passes every option as --name=value and ends options explicitly.
    """

    markup = True

    def __init__(self, executable: str, app_name: str = "trayagent", icon_path: str | None = None) -> None:
        self.name = "notify-send"
        self._exe = executable
        self._app_name = sanitize(app_name, 40) or "trayagent"
        self._icon = icon_path

    def command(self, note: Notification) -> list[str]:
        """The argv for one notification (exposed so tests can check it without a daemon)."""
        urgency = note.urgency if note.urgency in ("low", "normal", "critical") else "normal"
        args = [self._exe, f"--app-name={self._app_name}", f"--urgency={urgency}"]
        if self._icon:
            args.append(f"--icon={self._icon}")
        args += ["--", sanitize(note.title, TITLE_LIMIT) or "trayagent", escape_markup(note.body)]
        return args

    def send(self, note: Notification) -> None:
        try:
            done = subprocess.run(
                self.command(note),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise NotificationError(f"notify-send failed: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip()[:200] if done.stderr else ""
            raise NotificationError(f"notify-send exited {done.returncode}: {detail or 'no message'}")


class PlyerBackend:
    """plyer's notification facade: Windows, macOS, and Linux only via dbus-python (safe there)."""

    markup = False

    def __init__(self, app_name: str = "trayagent", icon_path: str | None = None) -> None:
        self.name = f"plyer ({sys.platform})"
        self._app_name = app_name
        self._icon = icon_path or ""

    def send(self, note: Notification) -> None:
        try:
            from plyer import notification as facade

            facade.notify(
                title=sanitize(note.title, 63),  # Windows balloons cap titles at 64 incl. NUL
                message=sanitize(note.body, 255, leading_dash=False) or " ",
                app_name=self._app_name,
                app_icon=self._icon,
                timeout=10,
            )
        except Exception as exc:  # plyer raises anything from ImportError to NotImplementedError
            raise NotificationError(f"plyer: {type(exc).__name__}: {exc}") from exc


class MissingBackend:
    """No way to show notifications here; sending reports why (logged once by the notifier)."""

    markup = False

    def __init__(self, reason: str) -> None:
        self.name = "none"
        self.reason = reason

    def send(self, note: Notification) -> None:
        raise NotificationError(self.reason)


def choose_backend(app_name: str = "trayagent", icon_path: str | None = None) -> NotificationBackend:
    """Pick the safest working backend for this platform, without showing anything."""
    if sys.platform in ("win32", "darwin"):
        return PlyerBackend(app_name, icon_path)
    exe = shutil.which("notify-send")
    if exe:
        return NotifySendBackend(exe, app_name, icon_path)
    # plyer on Linux is only safe through dbus-python; its Flatpak (/app) path is not.
    if not os.path.isdir("/app"):
        try:
            import dbus  # type: ignore[import-not-found]  # noqa: F401

            return PlyerBackend(app_name, icon_path)
        except ImportError:
            pass
    return MissingBackend("no notification backend: install notify-send (libnotify-bin / libnotify)")


def _local_now() -> datetime:
    return datetime.now().astimezone()


class DesktopNotifier:
    """A Notifier that shows desktop notifications; never raises into the agent.

    notify() only feeds the composer (cheap, under a lock); a daemon thread sends what is due
    and wakes at the composer's next deadline so batch windows elapse on their own.
    """

    def __init__(
        self,
        settings: Any = None,
        app_name: str = "trayagent",
        icon_path: str | None = None,
        *,
        backend: NotificationBackend | None = None,
        clock: Callable[[], datetime] = _local_now,
        connection_delay: float = 10.0,
    ) -> None:
        self._composer = NotificationComposer(settings, connection_delay=connection_delay)
        self._backend = backend if backend is not None else choose_backend(app_name, icon_path)
        self._clock = clock
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._warned = False
        self._send_lock = threading.Lock()

    def backend_name(self) -> str:
        """Which backend shows notifications ('notify-send', 'plyer (...)', 'none'), for doctor."""
        return self._backend.name

    def send_test(self, title: str = "trayagent", body: str = "Desktop notifications work.") -> None:
        """Show one notification now, bypassing rules; raises NotificationError (doctor --notify)."""
        self._backend.send(Notification(sanitize(title, TITLE_LIMIT), sanitize(body, BODY_LIMIT)))

    def set_paused(self, paused: bool, until: datetime | None = None) -> None:
        """Pause (indefinitely or until a moment) or resume; applied by the tray's menu."""
        with self._cond:
            self._composer.set_paused(paused, until)
            self._cond.notify_all()

    def notify(self, events: Iterable[Event]) -> None:
        try:
            batch = list(events)
            if not batch:
                return
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                for event in batch:
                    self._composer.feed(event, now)
                self._ensure_thread()
                self._cond.notify_all()
        except Exception:  # a notifier must never break the agent's event delivery
            log.exception("desktop notifier could not take events")

    def close(self) -> None:
        """Stop the flusher, then send whatever batches are still open."""
        with self._cond:
            if self._closed:
                return
            self._closed = self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=15)
        with self._cond:
            notes = self._composer.flush(self._clock())
        self._send_all(notes)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="trayagent-notify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._clock()
                notes = self._composer.due(now)
                if not notes:
                    deadline = self._composer.next_deadline(now)
                    timeout = 30.0 if deadline is None else _seconds_until(deadline, now)
                    self._cond.wait(timeout=min(max(timeout, 0.02), 30.0))
                    continue
            self._send_all(notes)

    def _send_all(self, notes: list[Notification]) -> None:
        with self._send_lock:
            for note in notes:
                try:
                    self._backend.send(note)
                except Exception as exc:
                    if not self._warned:
                        self._warned = True
                        log.warning("desktop notifications unavailable (%s): %s", self._backend.name, exc)
                    else:
                        log.debug("notification not shown: %s", exc)


def _seconds_until(deadline: datetime, now: datetime) -> float:
    if (deadline.tzinfo is None) != (now.tzinfo is None):
        deadline, now = deadline.astimezone(), now.astimezone()
    return (deadline - now).total_seconds()


def app_icon_path() -> str | None:
    """The installed application icon, shown beside each notification."""
    path = Path(__file__).resolve().parent / "icons" / "trayagent.png"
    return str(path) if path.is_file() else None


def make_notifier(kind: str, config: Any = None, stream: IO[str] | None = None) -> Notifier:
    """Build the notifier for `run --notify KIND`: 'desktop', 'json' or 'none'."""
    if kind == "json":
        return JsonLinesNotifier(stream)
    if kind == "none":
        return NullNotifier()
    if kind == "desktop":
        rules = NotificationRules.from_config(config)
        if not rules.enabled:
            log.info("desktop notifications disabled in config")
            return NullNotifier()
        return DesktopNotifier(rules, icon_path=app_icon_path())
    raise ValueError(f"unknown notifier kind {kind!r} (use desktop, json or none)")
