"""The system-tray front end: icon, tooltip and menu over an Agent, on whichever tray this desktop has.

Split so most of it is testable without a display: MenuModel (menu.py) is a pure description of
the menu built from an AgentState; TrayApp throttles redraws, routes every menu action through
``agent.submit`` so the UI thread never blocks on slskd, and walks the backend ladder
(traybackend.py): a tray that fails to start or to update is logged once and replaced by the
next one, down to no tray at all, while polling and the JSON stream go on.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from datetime import datetime
from typing import Callable, Protocol, Sequence

from trayagent.config import Config
from trayagent.core.model import AgentState
from trayagent.desktop.clock import before, local_now
from trayagent.desktop.icons import icon_key, tooltip
from trayagent.desktop.menu import (
    CLEAR,
    OPEN_FOLDER,
    OPEN_SLSKD,
    PAUSE_HOUR,
    PAUSE_HOUR_ACTION,
    QUIT,
    RETRY,
    SYNC,
    SYNC_PLAYLISTS,
    TOGGLE_PAUSE,
    MenuModel,
)
from trayagent.desktop.openers import open_folder, open_url
from trayagent.desktop.traybackend import Probe, create, probe, rungs
from trayagent.desktop.trayview import TrayBackend, TrayView

log = logging.getLogger(__name__)

#: How long a tray may take to show its icon before polling starts without it. pystray's
#: XEmbed icon sometimes never docks (and never calls back): polling must not wait on it.
READY_GRACE = 5.0
NO_MENU_HINT = (
    "tray backend '{name}' has no menu (a click opens slskd): a panel with StatusNotifierItem support, "
    "or the gtk extra, gives the full menu (see README)"
)


class TrayHost(Protocol):
    """What the tray needs from the agent (Agent satisfies it): snapshots in, actions out."""

    def state(self) -> AgentState: ...

    def subscribe(self, callback: Callable[[AgentState], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, fn: Callable[[], object]) -> None: ...

    def mark_failures_seen(self) -> None: ...

    def poll_now(self) -> None: ...

    def sync_playlists(self) -> bool: ...

    def clear_finished(self) -> int: ...

    def retry_failed(self) -> int: ...


class PauseTarget(Protocol):
    """A notifier the tray's pause items reach (the desktop notifier satisfies it)."""

    def set_paused(self, paused: bool, until: datetime | None = None) -> None: ...


class TrayApp:
    """The tray icon over an Agent, on the best backend this desktop offers.

    Threads: the backend owns the main thread (``run`` blocks). State arrives on the agent's
    worker threads, which never call into the backend themselves: redraws run on a timer
    thread, at most one per REDRAW_INTERVAL, so a tray that hangs (pystray's xorg waits for
    its own loop) cannot stall polling; one that hangs for UPDATE_TIMEOUT is dropped like one
    that fails. Menu actions go to ``agent.submit``.

    Not every backend says when its menu opens (pystray's never do), so failures are marked
    seen on any menu action and on left-click instead of on open.

    Notification pause lives here and is pushed to ``notifier`` (a PauseTarget), which the
    caller passes in: the tray reads AgentState snapshots and nothing else of the agent.
    """

    REDRAW_INTERVAL = 1.0
    UPDATE_TIMEOUT = 10.0

    def __init__(
        self,
        agent: TrayHost,
        config: Config,
        *,
        notifier: PauseTarget | None = None,
        backends: Sequence[str] | None = None,
        factory: Callable[[str], TrayBackend] = create,
        probe: Probe = probe,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = local_now,
    ) -> None:
        self._agent = agent
        self._config = config
        self._notifier = notifier
        self._rungs = tuple(backends) if backends is not None else rungs(config.tray.backend)
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
        self._agent_steps: set[str] = set()  # "start", "stop": each runs once

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
            if "start" in self._agent_steps or self._stopping:
                return
        log.warning("tray: the %s icon has not appeared after %.0f s; polling goes on without it", name, READY_GRACE)
        self._start_agent()

    def _start_agent(self) -> None:
        self._agent_once("start", self._agent.start)

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
        self._agent_once("stop", self._agent.stop)

    def _agent_once(self, step: str, call: Callable[[], None]) -> None:
        """Start or stop the agent once, whichever thread comes first; no start once quitting began.

        A failure is logged: the icon stays up and says what is wrong, and quitting still finishes.
        """
        with self._lock:
            if step in self._agent_steps or (step == "start" and self._stopping):
                return
            self._agent_steps.add(step)
        try:
            call()
        except Exception:  # noqa: BLE001
            log.exception("agent failed to %s", step)

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
        if self._paused_until is not None and not before(self._wall(), self._paused_until):
            self._paused_until = None
            self._apply_pause()
        return self._paused or self._paused_until is not None, self._paused_until

    def _build_model(self) -> MenuModel:
        return MenuModel.build(
            self._state,
            paused=self._paused,
            paused_until=self._paused_until,
            download_dir=self._config.slskd.download_dir or None,
            now=self._wall(),
            playlists=bool(self._config.sync.playlists),
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
        target = self._notifier
        if target is not None:
            try:
                target.set_paused(self._paused, self._paused_until)
            except Exception:  # noqa: BLE001
                log.exception("could not pause %s", type(target).__name__)

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
            root = self._config.slskd.download_dir or self._state.download_dir
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
        slskd = self._config.slskd
        return slskd.web_url or self._state.web_url or slskd.url
