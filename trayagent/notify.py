"""Where events go: the console and JSON-lines sinks, and `make_notifier` for `run --notify KIND`.

Kept I/O-only and tolerant: a broken sink is logged and never stops the agent. The Notifier
protocol they satisfy is in core (core/notifier.py). Desktop notifications live in the desktop
layer: desktop/composer.py (pure: events and an injected clock in, Notification values out)
decides *what* to say and *when*; desktop/desktop_notifier.py owns a flusher thread and shows it
through a backend ladder (dbus_notify.py over jeepney, then notify_backends.py's notify-send /
plyer). Names come from remote peers, so every line is sanitised (desktop/labels.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import IO, TYPE_CHECKING, Iterable

from trayagent.config import Config
from trayagent.core.model import Event, EventType
from trayagent.core.notifier import Notifier
from trayagent.desktop.labels import failure_text, sanitize, track_label

if TYPE_CHECKING:
    from trayagent.desktop.desktop_notifier import NotificationHost

log = logging.getLogger(__name__)


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


def make_notifier(kind: str, config: Config | None = None, stream: IO[str] | None = None,
                  host: NotificationHost | None = None) -> Notifier:
    """Build the notifier for `run --notify KIND`: 'desktop', 'json' or 'none'.

    `host` (the Agent) runs notification buttons on its worker pool and tells when it last polled.
    """
    if kind == "json":
        return JsonLinesNotifier(stream)
    if kind == "none":
        return NullNotifier()
    if kind == "desktop":
        if config is not None and not config.notifications.enabled:
            log.info("desktop notifications disabled in config")
            return NullNotifier()
        from trayagent.desktop.desktop_notifier import DesktopNotifier, app_icon_path

        return DesktopNotifier(config, icon_path=app_icon_path(), host=host)
    raise ValueError(f"unknown notifier kind {kind!r} (use desktop, json or none)")
