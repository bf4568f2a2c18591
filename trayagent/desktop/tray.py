"""The system-tray front end: icon, tooltip and menu over an Agent, on whichever tray this desktop has.

Split so most of it is testable without a display: MenuModel is a pure description of the menu
built from an AgentState; TrayApp throttles redraws, routes every menu action through
``agent.submit`` so the UI thread never blocks on slskd, and walks the backend ladder
(traybackend.py): a tray that fails to start or to update is logged once and replaced by the
next one, down to no tray at all, while polling and the JSON stream go on.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

from trayagent.desktop.icons import icon_key, tooltip
from trayagent.core.model import AgentState, Finished, Kind
from trayagent.notify import folder_name, sanitize, short_reason, track_label, track_title
from trayagent.desktop.traybackend import Probe, TrayBackend, TrayView, create, probe, rungs

log = logging.getLogger(__name__)

RECENT_LIMIT = 10
RECENT_LABEL_LIMIT = 60
PAUSE_HOUR = timedelta(hours=1)
#: How long a tray may take to show its icon before polling starts without it. pystray's
#: XEmbed icon sometimes never docks (and never calls back): polling must not wait on it.
READY_GRACE = 5.0
NO_MENU_HINT = (
    "tray backend '{name}' has no menu (a click opens slskd): a panel with StatusNotifierItem support, "
    "or the gtk extra, gives the full menu (see README)"
)

# Action names: what a menu item does, dispatched by TrayApp.
SYNC = "sync"
SYNC_PLAYLISTS = "sync_playlists"
CLEAR = "clear_finished"
RETRY = "retry_failed"
OPEN_FOLDER = "open_folder"
TOGGLE_PAUSE = "toggle_pause"
PAUSE_HOUR_ACTION = "pause_hour"
OPEN_SLSKD = "open_slskd"
QUIT = "quit"


# --------------------------------------------------------------------------- menu model


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One menu entry, backend-neutral. `action` names what TrayApp does; `arg` is its input."""

    text: str
    action: str | None = None
    arg: str | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not checkable
    default: bool = False  # the left-click action where the backend has one
    submenu: tuple[ItemSpec, ...] | None = None
    separator: bool = False


SEPARATOR = ItemSpec("", enabled=False, separator=True)


def local_folder(download_dir: str | None, filename: str) -> str | None:
    """Where slskd put a download: download_dir / <remote parent folder name>, or None.

    The folder name comes from a remote peer, so '.', '..' and names with control characters
    are refused rather than joined (no escaping download_dir).
    """
    if not download_dir:
        return None
    segment = folder_name(filename)
    if not segment or segment.strip() in (".", "..") or sanitize(segment, 1000, leading_dash=False) != segment:
        return None
    if os.sep in segment or (os.altsep and os.altsep in segment) or "\x00" in segment:
        return None
    base = os.path.abspath(os.path.expanduser(download_dir))
    return os.path.join(base, segment)


def recent_label(f: Finished) -> str:
    """'✓ Title — Artist' for a success, '✗ Title (timed out)' otherwise; capped."""
    if f.outcome is Kind.SUCCEEDED:
        return sanitize("✓ " + track_label(f.filename, RECENT_LABEL_LIMIT), RECENT_LABEL_LIMIT + 2)
    why = "cancelled" if f.outcome is Kind.CANCELLED else short_reason(f.reason)
    title = sanitize(track_title(f.filename), RECENT_LABEL_LIMIT - len(why) - 3) or "(unnamed)"
    return f"✗ {title} ({why})"


@dataclass(frozen=True, slots=True)
class MenuModel:
    """The whole menu as data. Equal models render identical menus, so TrayApp compares them."""

    items: tuple[ItemSpec, ...]

    @classmethod
    def build(
        cls,
        state: AgentState,
        *,
        paused: bool = False,
        paused_until: datetime | None = None,
        download_dir: str | None = None,
        now: datetime | None = None,
        playlists: bool = False,
    ) -> MenuModel:
        """Describe the menu for a state and the tray's notification-pause flags."""
        now = now if now is not None else datetime.now().astimezone()
        until = paused_until if paused_until is not None and _before(now, paused_until) else None
        is_paused = paused or until is not None
        folder_root = download_dir or state.download_dir
        recent = state.recent[:RECENT_LIMIT]
        any_failed = any(f.outcome is Kind.FAILED for f in state.recent)

        if recent:
            entries = []
            for f in recent:
                target = local_folder(folder_root, f.filename)
                entries.append(ItemSpec(recent_label(f), OPEN_FOLDER, target, enabled=target is not None))
            recent_menu = tuple(entries)
        else:
            recent_menu = (ItemSpec("No finished downloads yet", enabled=False),)

        pause_text = "Pause notifications"
        if until is not None and not paused:
            pause_text = f"Notifications paused until {until.strftime('%H:%M')}"

        items = (
            ItemSpec(tooltip(state, paused=is_paused), enabled=False),
            SEPARATOR,
            ItemSpec("Open slskd", OPEN_SLSKD, default=True),
            ItemSpec("Sync now", SYNC),
            ItemSpec(state.sync_status or "Sync playlists", SYNC_PLAYLISTS,
                     enabled=playlists and state.sync_status is None),
            ItemSpec("Clear finished", CLEAR),
            ItemSpec("Retry failed", RETRY, enabled=any_failed),
            ItemSpec("Recent", submenu=recent_menu),
            SEPARATOR,
            ItemSpec(pause_text, TOGGLE_PAUSE, checked=is_paused),
            ItemSpec("Pause for 1 hour", PAUSE_HOUR_ACTION),
            SEPARATOR,
            ItemSpec("Quit", QUIT),
        )
        return cls(items)

    def find(self, action: str) -> ItemSpec | None:
        """The first item with this action, searching submenus too."""
        for item in _walk(self.items):
            if item.action == action:
                return item
        return None

    @property
    def default(self) -> ItemSpec | None:
        return next((i for i in _walk(self.items) if i.default), None)


def _walk(items: Iterable[ItemSpec]) -> Iterable[ItemSpec]:
    for item in items:
        yield item
        if item.submenu:
            yield from _walk(item.submenu)


def _before(a: datetime, b: datetime) -> bool:
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.astimezone(), b.astimezone()
    return a < b


# --------------------------------------------------------------------------- openers


def open_url(url: str) -> bool:
    """Open slskd's web UI; only http(s) URLs, so a config typo can't launch a local file."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("not opening %r: slskd's web URL must start with http:// or https://", url)
        return False
    return webbrowser.open(url.strip())


def open_folder(path: str, fallback: str | None = None) -> bool:
    """Open a folder in the file manager; the fallback (download_dir) when it does not exist."""
    target = path if os.path.isdir(path) else fallback if fallback and os.path.isdir(fallback) else None
    if target is None:
        log.warning("folder %s does not exist (yet)", path)
        return False
    target = os.path.abspath(target)  # absolute: can never be read as an option
    try:
        if sys.platform == "win32":
            os.startfile(target)  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            subprocess.Popen(["open", "--", target], start_new_session=True)
        else:
            subprocess.Popen(["xdg-open", target], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        log.warning("could not open %s: %s", target, exc)
        return False
    return True


def _local_now() -> datetime:
    return datetime.now().astimezone()



# --------------------------------------------------------------------------- app


class TrayApp:
    """The tray icon over an Agent, on the best backend this desktop offers.

    Threads: the backend owns the main thread (``run`` blocks). State arrives on the agent's
    worker threads, which never call into the backend themselves: redraws run on a timer
    thread, at most one per REDRAW_INTERVAL, so a tray that hangs (pystray's xorg waits for
    its own loop) cannot stall polling; one that hangs for UPDATE_TIMEOUT is dropped like one
    that fails. Menu actions go to ``agent.submit``.

    Not every backend says when its menu opens (pystray's never do), so failures are marked
    seen on any menu action and on left-click instead of on open.

    Notification pause lives here and is pushed to ``notifier`` (anything with ``set_paused``),
    which the caller passes in: the tray reads AgentState snapshots and nothing else of the agent.
    """

    REDRAW_INTERVAL = 1.0
    UPDATE_TIMEOUT = 10.0

    def __init__(
        self,
        agent: Any,
        config: Any,
        *,
        notifier: Any = None,
        backends: Sequence[str] | None = None,
        factory: Callable[[str], TrayBackend] = create,
        probe: Probe = probe,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _local_now,
    ) -> None:
        self._agent = agent
        self._config = config
        self._notifiers: list[Any] = [notifier] if notifier is not None else []
        setting = getattr(getattr(config, "tray", None), "backend", "auto")
        self._rungs = tuple(backends) if backends is not None else rungs(setting)
        self._hung: set[str] = set()  # rungs whose icon stopped answering once (given one more try)
        self._factory = factory
        self._probe = probe
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.RLock()  # guards fields; never held while calling into a backend
        self._refresh_lock = threading.Lock()  # one refresh at a time, so images apply in order
        self._dirty = False  # a refresh was asked for while one was in flight
        self._updating_since: float | None = None
        self._state: AgentState = agent.state()
        self._paused = False
        self._paused_until: datetime | None = None
        self._shown: TrayView | None = None
        self._last_redraw = -math.inf
        self._timer: threading.Timer | None = None
        self._backend: TrayBackend | None = None
        self._stopping = False
        self._done = threading.Event()
        self._agent_stopped = False
        self._agent_started = False

    @property
    def backend_name(self) -> str:
        """The tray in use: 'sni', 'gtk', 'xorg', ... or 'none'."""
        backend = self._backend
        return backend.name if backend is not None else "none"

    # -- lifecycle

    def run(self) -> None:
        """Show the tray on the first backend that works and block until Quit or stop().

        Starts the agent once, whichever backend (or none) ends up showing it.
        """
        self._agent.subscribe(self._on_state)
        try:
            for name in self._rungs:
                if self._stopping or self._run_backend(name):
                    break
                if name in self._hung and not self._stopping:
                    # pystray's XEmbed icon now and then hangs before it docks; a fresh one
                    # of the same kind nearly always docks, so it gets one more try.
                    log.info("tray: trying a fresh %s tray once more", name)
                    if self._run_backend(name):
                        break
            else:
                if not self._stopping:
                    log.warning("no tray icon: desktop notifications and the JSON stream go on")
                    self._start_agent()
                    self._done.wait()
        finally:
            with self._lock:
                self._stopping = True
            self._cancel_timer()
            self._stop_agent()

    def _run_backend(self, name: str) -> bool:
        """Run one rung until it ends. True when the app is stopping, False to try the next."""
        problem = self._probe(name)
        if problem is not None:
            log.info("tray: %s is not available: %s", name, problem)
            return False
        try:
            backend = self._factory(name)
            with self._lock:
                view = self._view()
            backend.start(view, self._on_menu)
        except Exception as exc:  # noqa: BLE001 - a broken tray degrades, it never stops polling
            log.warning("tray: the %s tray could not start (%s); trying the next one", name, exc)
            log.debug("tray start failure", exc_info=True)
            return False
        with self._lock:
            self._backend, self._shown = backend, view
            if self._stopping:
                return True
        log.info("tray: using the %s tray", backend.name)
        if not backend.has_menu:
            log.warning(NO_MENU_HINT.format(name=backend.name))
        grace = threading.Timer(READY_GRACE, self._not_shown, args=(backend.name,))
        grace.daemon = True
        grace.start()
        try:
            backend.run(self._ready)
        except Exception as exc:  # noqa: BLE001
            log.warning("tray: the %s tray failed (%s); trying the next one", backend.name, exc)
            log.debug("tray run failure", exc_info=True)
        with self._lock:
            if self._backend is backend:
                self._backend = None
            return self._stopping

    def _ready(self) -> None:
        """The backend shows the icon: start polling (once), then draw the current state."""
        self._start_agent()
        self.refresh(force=True)

    def _not_shown(self, name: str) -> None:
        """The icon has not appeared in time: poll anyway; it is drawn if it ever shows."""
        with self._lock:
            if self._agent_started or self._stopping:
                return
        log.warning("tray: the %s icon has not appeared after %.0f s; polling goes on without it", name, READY_GRACE)
        self._start_agent()

    def _start_agent(self) -> None:
        with self._lock:
            if self._agent_started or self._stopping:
                return
            self._agent_started = True
        try:
            self._agent.start()
        except Exception:  # noqa: BLE001 - the icon stays up and says what is wrong
            log.exception("agent failed to start")

    def stop(self) -> None:
        """Quit from anywhere (signal handler, timer): agent first, then the icon; never blocks."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        threading.Thread(target=self._shutdown, name="trayagent-quit", daemon=True).start()

    def _shutdown(self) -> None:
        self._cancel_timer()
        self._stop_agent()
        # After a backend stopped, updating it may block forever (pystray's xorg waits for its
        # loop): _stopping (set in stop()) keeps refreshes out, the lock waits for one in flight.
        lock = self._refresh_lock
        locked = lock.acquire(timeout=self.UPDATE_TIMEOUT)
        try:
            backend = self._backend
            if backend is not None:
                try:
                    backend.stop()
                except Exception:  # noqa: BLE001 - quitting must finish
                    log.exception("tray icon failed to stop")
        finally:
            if locked:
                lock.release()
        self._done.set()

    def _stop_agent(self) -> None:
        with self._lock:
            if self._agent_stopped:
                return
            self._agent_stopped = True
        try:
            self._agent.stop()
        except Exception:  # noqa: BLE001
            log.exception("agent failed to stop")

    def _drop_backend(self, backend: TrayBackend, exc: BaseException) -> None:
        """An update failed or hung: log once, stop that backend; run() moves down the ladder.

        The stop runs on its own thread (a hung backend may hang there too), and refreshes get
        a fresh lock, so one stuck inside the old backend blocks nothing that comes after.
        """
        with self._lock:
            if self._backend is not backend:
                return
            self._backend = None
            self._refresh_lock = threading.Lock()
            self._updating_since = None
        log.warning("tray: the %s tray failed to update (%s); trying the next one", backend.name, exc)
        log.debug("tray update failure", exc_info=exc)

        def stop() -> None:
            try:
                backend.stop()
            except Exception:  # noqa: BLE001
                log.debug("the failed tray did not stop cleanly", exc_info=True)

        threading.Thread(target=stop, name="trayagent-tray-stop", daemon=True).start()

    # -- state and redraws

    def _on_state(self, state: AgentState) -> None:
        """Agent callback (worker thread): remember, then redraw now or within a second."""
        with self._lock:
            self._state = state
        self._schedule()

    def _schedule(self) -> None:
        """Ask for a redraw on the timer thread: now, or REDRAW_INTERVAL after the last one."""
        with self._lock:
            if self._stopping:
                return
            backend, since = self._backend, self._updating_since
            hung = backend is not None and since is not None and self._monotonic() - since > self.UPDATE_TIMEOUT
            if not hung and self._timer is None:
                wait = max(self._last_redraw + self.REDRAW_INTERVAL - self._monotonic(), 0.0)
                self._timer = threading.Timer(wait, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
        if hung and backend is not None:
            with self._lock:
                self._hung.add(backend.name)
            self._drop_backend(backend, TimeoutError(f"no answer for {self.UPDATE_TIMEOUT:.0f} s"))

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.refresh()

    def _cancel_timer(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _effective_pause(self) -> tuple[bool, datetime | None]:
        """(paused, until); an `until` in the past is cleared here and pushed to notifiers."""
        if self._paused_until is not None and not _before(self._wall(), self._paused_until):
            self._paused_until = None
            self._apply_pause()
        return self._paused or self._paused_until is not None, self._paused_until

    def _build_model(self) -> MenuModel:
        download_dir = getattr(getattr(self._config, "slskd", None), "download_dir", None) or None
        return MenuModel.build(
            self._state,
            paused=self._paused,
            paused_until=self._paused_until,
            download_dir=download_dir,
            now=self._wall(),
            playlists=bool(getattr(getattr(self._config, "sync", None), "playlists", ())),
        )

    def _view(self) -> TrayView:
        paused, _ = self._effective_pause()
        return TrayView(icon_key(self._state, paused=paused), tooltip(self._state, paused=paused),
                        self._build_model())

    def refresh(self, force: bool = False) -> None:
        """Push icon, tooltip and menu to the backend, each only if what it shows changed.

        Never call this on the backend's UI thread (pystray's xorg makes off-thread updates wait
        for that thread) nor on the agent's (see _schedule). While one refresh is in flight,
        another one only marks the view dirty; the one in flight then draws again.
        """
        with self._lock:
            lock = self._refresh_lock
        if not lock.acquire(blocking=False):
            with self._lock:
                self._dirty = True
            return
        try:
            while self._refresh_once(force):
                force = False
        finally:
            lock.release()

    def _refresh_once(self, force: bool) -> bool:
        """One update; True when another was asked for meanwhile (draw again)."""
        with self._lock:
            backend = self._backend
            if backend is None or self._stopping:
                return False
            view, shown = self._view(), self._shown
            new_icon = force or shown is None or view.key != shown.key
            new_title = force or shown is None or view.title != shown.title
            new_menu = force or shown is None or view.model != shown.model
            self._shown = view
            self._dirty = False
            if not (new_icon or new_title or new_menu):
                return False
            self._last_redraw = self._updating_since = self._monotonic()
        try:
            backend.update(view, icon=new_icon, title=new_title, menu=new_menu)
        except Exception as exc:  # noqa: BLE001 - a tray glitch must not kill the agent's thread
            self._drop_backend(backend, exc)
            return False
        with self._lock:
            self._updating_since = None
            return self._dirty and self._backend is backend

    def _refresh_soon(self) -> None:
        """Refresh off the calling (UI) thread, at once: used after a menu click changed flags."""
        threading.Thread(target=self.refresh, name="trayagent-refresh", daemon=True).start()

    # -- pause

    def set_pause(self, paused: bool, until: datetime | None = None) -> None:
        """Pause notifications indefinitely, until a moment, or resume (False, None)."""
        with self._lock:
            self._paused, self._paused_until = bool(paused), until
            self._apply_pause()
        self._refresh_soon()

    @property
    def paused(self) -> tuple[bool, datetime | None]:
        with self._lock:
            return self._effective_pause()

    def _apply_pause(self) -> None:
        for n in self._notifiers:
            setter = getattr(n, "set_paused", None)
            if setter is not None:
                try:
                    setter(self._paused, self._paused_until)
                except Exception:  # noqa: BLE001
                    log.exception("could not pause %s", type(n).__name__)

    # -- actions

    def _on_menu(self, action: str, arg: str | None = None) -> None:
        """Every menu click (and the left-click default) lands here, on the UI thread."""
        agent = self._agent
        agent.submit(agent.mark_failures_seen)
        if action == SYNC:
            agent.submit(agent.poll_now)
        elif action == SYNC_PLAYLISTS:
            agent.submit(agent.sync_playlists)
        elif action == CLEAR:
            agent.submit(lambda: log.info("cleared %d finished download(s)", agent.clear_finished()))
        elif action == RETRY:
            agent.submit(lambda: log.info("re-enqueued %d failed download(s)", agent.retry_failed()))
        elif action == OPEN_FOLDER and arg:
            root = getattr(getattr(self._config, "slskd", None), "download_dir", None) or self._state.download_dir
            fallback = os.path.abspath(os.path.expanduser(root)) if root else None
            agent.submit(lambda: open_folder(arg, fallback))
        elif action == OPEN_SLSKD:
            url = self._web_url()
            agent.submit(lambda: open_url(url))
        elif action == TOGGLE_PAUSE:
            paused, _ = self.paused
            self.set_pause(not paused, None)
        elif action == PAUSE_HOUR_ACTION:
            self.set_pause(False, self._wall() + PAUSE_HOUR)
        elif action == QUIT:
            self.stop()
        else:
            log.debug("ignoring menu action %r", action)

    def _web_url(self) -> str:
        s = getattr(self._config, "slskd", None)
        return (
            (getattr(s, "web_url", "") or "")
            or self._state.web_url
            or (getattr(s, "url", "") or "")
        )
