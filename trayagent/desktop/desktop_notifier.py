"""The Notifier that shows desktop notifications, with buttons, in-place albums and a fallback ladder.

notify() only feeds the pure composer (cheap, under a lock); a daemon thread sends what is due
and wakes at the composer's next deadline so batch windows elapse on their own. Sending walks
the backend ladder (D-Bus, then notify-send, then none): a backend that fails is logged once and
the next one takes the note, so the desktop never stops the agent. Buttons pressed in the daemon
arrive on the D-Bus listener thread and run on the agent's worker pool (``host.submit``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Collection, Iterable, Protocol, Sequence

from trayagent.config import Config, NotificationsConfig, PollConfig
from trayagent.core.model import AgentState, Event
from trayagent.desktop.clock import local_now, seconds_between
from trayagent.desktop.composer import NotificationComposer, away_gap, is_away
from trayagent.desktop.labels import BODY_LIMIT, TITLE_LIMIT, sanitize
from trayagent.desktop.notification import BackendFactory, Notification, NotificationBackend, NotificationError
from trayagent.desktop.notify_backends import MissingBackend, backend_ladder
from trayagent.desktop import openers

log = logging.getLogger(__name__)

DEFAULT = "default"  # the spec's name for a click on the notification itself
RETRY = "retry"
OPEN_FOLDER = "open-folder"
SHOW_IN_SLSKD = "show-slskd"
#: Notifications whose buttons are remembered; older ones are long gone from any screen.
REMEMBERED = 200
#: With every backend failed, try the ladder again this long after (a restarted daemon, a new bus).
RETRY_LADDER_AFTER = 300.0


class NotifierClosed(NotificationError):
    """The notifier was closed: it did not take these events (the agent keeps them for later)."""


class NotificationHost(Protocol):
    """What the desktop notifier needs from the agent (Agent satisfies it)."""

    polled_at: datetime | None  # the last successful poll, before the one being delivered

    def submit(self, fn: Callable[[], object]) -> None: ...

    def retry(self, ids: Collection[str] | None = None) -> int: ...

    def state(self) -> AgentState: ...


@dataclass(frozen=True, slots=True)
class NoteActions:
    """What a notification's buttons do: the data each one needs, resolved when it is shown."""

    web_url: str = ""
    folder: str | None = None  # the local folder to open, when known
    fallback: str | None = None  # download_dir, opened when the folder is not there (yet)
    retry_ids: tuple[str, ...] = ()
    transfers: bool = False  # about downloads: offer "Show in slskd"

    def buttons(self) -> list[tuple[str, str]]:
        """(key, label) pairs: the default click opens slskd; the rest as the note allows."""
        out = [(DEFAULT, "Open slskd")] if self.web_url else []
        if self.retry_ids:
            out.append((RETRY, "Retry"))
        if self.folder:
            out.append((OPEN_FOLDER, "Open folder"))
        if self.transfers and self.web_url:
            out.append((SHOW_IN_SLSKD, "Show in slskd"))
        return out


def note_actions(note: Notification, web_url: str, download_dir: str | None) -> NoteActions:
    """The buttons a note gets: Retry for failures, Open folder when its local folder is known."""
    folder = openers.local_folder(download_dir, note.folder_of) if note.folder_of else None
    return NoteActions(web_url=web_url, folder=folder, fallback=download_dir or None,
                       retry_ids=note.retry_ids, transfers=bool(note.category))


class DesktopNotifier:
    """A Notifier that shows desktop notifications; a desktop failure never reaches the agent.

    `settings` is the whole Config (or just its [notifications] section). `host` (the agent)
    runs button actions on its worker pool and says when it last polled, so downloads that ended
    while the agent was not running or the machine slept become one summary.
    """

    def __init__(
        self,
        settings: Config | NotificationsConfig | None = None,
        app_name: str = "trayagent",
        icon_path: str | None = None,
        *,
        backend: NotificationBackend | None = None,
        backends: Sequence[BackendFactory] | None = None,
        clock: Callable[[], datetime] = local_now,
        connection_delay: float = 10.0,
        host: NotificationHost | None = None,
    ) -> None:
        config = settings if isinstance(settings, Config) else None
        rules = config.notifications if config is not None else settings
        self._composer = NotificationComposer(rules if isinstance(rules, NotificationsConfig) else None,
                                              connection_delay=connection_delay)
        poll = config.poll if config is not None else PollConfig()
        self._away_gap = away_gap(poll.active_interval, poll.idle_interval)
        self._web_url = config.slskd.ui_url if config is not None else ""
        self._download_dir = config.slskd.download_dir if config is not None else ""
        if backend is not None:
            ladder: list[BackendFactory] = [lambda: backend]
        elif backends is not None:
            ladder = list(backends)
        else:
            ladder = backend_ladder(app_name, icon_path, on_action=self._on_action, on_closed=self._on_closed)
        self._factories = tuple(ladder)
        self._ladder = list(ladder)
        self._backend: NotificationBackend | None = None
        self._exhausted_at: float | None = None
        self.retry_ladder_after = RETRY_LADDER_AFTER
        self._warned: set[str] = set()
        self._host = host
        self._clock = clock
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._seeded = False
        self._send_lock = threading.Lock()
        self._ids_lock = threading.Lock()
        self._ids: dict[str, int] = {}  # composer key -> the daemon's id of the note shown for it
        self._actions: OrderedDict[int, NoteActions] = OrderedDict()

    # ------------------------------------------------------------------ controls

    def backend_name(self) -> str:
        """Which backend shows notifications ('D-Bus (dunst 1.9.0)', 'notify-send', 'none'), for doctor."""
        return self._current().name

    def send_test(self, title: str = "trayagent", body: str = "Desktop notifications work.") -> None:
        """Show one notification now, bypassing rules; raises NotificationError (doctor --notify)."""
        self._current().send(Notification(sanitize(title, TITLE_LIMIT), sanitize(body, BODY_LIMIT)))

    def set_paused(self, paused: bool, until: datetime | None = None) -> None:
        """Pause (indefinitely or until a moment) or resume; applied by the tray's menu."""
        with self._cond:
            self._composer.set_paused(paused, until)
            self._cond.notify_all()

    def notify(self, events: Iterable[Event]) -> None:
        """Take events into the composer; raises only if they could not be taken (closed)."""
        batch = list(events)
        if not batch:
            return
        with self._cond:
            if self._closed:
                raise NotifierClosed("the desktop notifier is closed")
            now = self._clock()
            self._seed_albums()
            away = self._away(now)
            for event in batch:
                self._composer.feed(event, now, away)
            self._ensure_thread()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the flusher, send whatever batches are still open, then let go of the backend."""
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
        with self._send_lock:
            if self._backend is not None:
                _stop_quietly(self._backend)

    # ------------------------------------------------------------------ input

    def _seed_albums(self) -> None:
        """Once: downloads still running from before a restart count towards their albums."""
        if self._seeded or self._host is None:
            return
        self._seeded = True
        try:
            for t in self._host.state().active:
                self._composer.expect(t.username, t.filename)
        except Exception:  # noqa: BLE001 - counts are cosmetic; never refuse events for them
            log.debug("could not read the agent's active downloads", exc_info=True)

    def _away(self, now: datetime) -> bool:
        if self._host is None:
            return False
        try:
            return is_away(self._host.polled_at, now, self._away_gap)
        except Exception:  # noqa: BLE001 - a host without poll times: nothing is "away"
            return False

    # ------------------------------------------------------------------ flusher

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
                    timeout = 30.0 if deadline is None else seconds_between(now, deadline)
                    self._cond.wait(timeout=min(max(timeout, 0.02), 30.0))
                    continue
            self._send_all(notes)

    def _send_all(self, notes: list[Notification]) -> None:
        with self._send_lock:
            for note in notes:
                self._send_down_the_ladder(note)

    def _current(self) -> NotificationBackend:
        """The backend in use, starting the next one of the ladder when none is (logged once each)."""
        if self._exhausted_at is not None and time.monotonic() - self._exhausted_at >= self.retry_ladder_after:
            self._backend, self._ladder, self._exhausted_at = None, list(self._factories), None
        while self._backend is None:
            if not self._ladder:
                self._backend = MissingBackend("no notification backend left")
                self._exhausted_at = time.monotonic()
                break
            make = self._ladder.pop(0)
            try:
                self._backend = make()
            except Exception as exc:  # noqa: BLE001 - any failure to start: the next one
                self._warn_once(f"start:{len(self._factories) - len(self._ladder)}",
                                f"desktop notifications: {exc}; trying the next way")
        return self._backend

    def _warn_once(self, key: str, message: str) -> None:
        """Each way of failing is a warning once; its repeats (after a retry of the ladder) are debug."""
        if key in self._warned:
            log.debug("%s", message)
        else:
            self._warned.add(key)
            log.warning("%s", message)

    def _send_down_the_ladder(self, note: Notification) -> None:
        while True:
            backend = self._current()
            try:
                self._show(backend, note)
                return
            except Exception as exc:  # noqa: BLE001 - a backend failure degrades, never raises
                if isinstance(backend, MissingBackend):
                    log.debug("notification not shown: %s", exc)
                    return
                self._backend = None
                nxt = "the next way" if self._ladder else "none (notifications off)"
                self._warn_once(f"send:{backend.name}",
                                f"desktop notifications via {backend.name} failed ({exc}); falling back to {nxt}")
                _stop_quietly(backend)

    def _show(self, backend: NotificationBackend, note: Notification) -> None:
        """One note on one backend, with replaces_id and button bookkeeping."""
        with self._ids_lock:
            shown = self._ids.get(note.key, 0) if note.key else 0
        if note.kind == "close":
            close = getattr(backend, "close", None)
            with self._ids_lock:
                self._ids.pop(note.key, None)
            if shown and close is not None:
                close(shown)
            return
        if not note.final and not getattr(backend, "replaces", False):
            return  # an album in progress: shown once, in its final state, where nothing updates in place
        actions = note_actions(note, self._host_web_url(), self._host_download_dir())
        nid = backend.send(note, replaces_id=shown, actions=actions.buttons())
        with self._ids_lock:
            if note.key and not note.final and nid:
                self._ids[note.key] = nid
            elif note.key:
                self._ids.pop(note.key, None)
            if nid:
                self._actions[nid] = actions
                self._actions.move_to_end(nid)
                while len(self._actions) > REMEMBERED:
                    self._actions.popitem(last=False)

    def _host_web_url(self) -> str:
        state = self._host_state()
        return (state.web_url if state is not None else "") or self._web_url

    def _host_download_dir(self) -> str | None:
        state = self._host_state()
        return self._download_dir or (state.download_dir if state is not None else None) or None

    def _host_state(self) -> AgentState | None:
        try:
            return self._host.state() if self._host is not None else None
        except Exception:  # noqa: BLE001
            return None

    # ------------------------------------------------------------------ buttons

    def _on_action(self, notification_id: int, key: str) -> None:
        """A button (or the note itself) was clicked: run it on the agent's pool, not this thread."""
        with self._ids_lock:
            actions = self._actions.get(notification_id)
        if actions is None:
            return
        work = _action_work(actions, key, self._host)
        if work is None:
            log.debug("ignoring notification action %r", key)
            return
        if self._host is not None:
            self._host.submit(work)
        else:
            threading.Thread(target=work, name="trayagent-notify-action", daemon=True).start()

    def _on_closed(self, notification_id: int) -> None:
        with self._ids_lock:
            self._actions.pop(notification_id, None)


def _action_work(actions: NoteActions, key: str, host: NotificationHost | None) -> Callable[[], object] | None:
    """What a button does, as a function to run on the worker pool (None: not one of ours)."""
    url = actions.web_url
    if key == DEFAULT and url:
        return lambda: openers.open_url(url)
    if key == SHOW_IN_SLSKD and url:
        return lambda: openers.open_url(url.rstrip("/") + "/downloads")
    if key == OPEN_FOLDER and actions.folder:
        folder, fallback = actions.folder, actions.fallback
        return lambda: openers.open_folder(folder, fallback)
    if key == RETRY and actions.retry_ids and host is not None:
        ids = actions.retry_ids
        return lambda: log.info("re-enqueued %d failed download(s) from a notification", host.retry(ids))
    return None


def _stop_quietly(backend: NotificationBackend) -> None:
    """Let go of a backend that holds a connection (D-Bus); one that fails to stop is only logged."""
    stop = getattr(backend, "stop", None)  # optional: only backends with a connection have it
    if stop is not None:
        try:
            stop()
        except Exception:  # noqa: BLE001 - it is being dropped or shut down anyway
            log.debug("notification backend %s did not stop cleanly", backend.name, exc_info=True)


def app_icon_path() -> str | None:
    """The installed application icon, shown beside each notification."""
    path = Path(__file__).resolve().parent.parent / "icons" / "trayagent.png"
    return str(path) if path.is_file() else None
