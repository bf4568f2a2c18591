"""The system-tray front end: icon, tooltip and menu over an Agent, via pystray.

Split so most of it is testable without a display: MenuModel is a pure description of the menu
built from an AgentState; TrayApp wires it to pystray, throttles redraws and routes every menu
action through ``agent.submit`` so the UI thread never blocks on slskd.

pystray is imported lazily: importing it picks a backend and, on X11 without a display, raises.
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

from trayagent.icons import icon_key, render_icon, tooltip
from trayagent.model import AgentState, Finished, Kind
from trayagent.notify import folder_name, sanitize, short_reason, track_label, track_title

log = logging.getLogger(__name__)

RECENT_LIMIT = 10
RECENT_LABEL_LIMIT = 60
PAUSE_HOUR = timedelta(hours=1)
NO_MENU_HINT = (
    "tray backend '{name}' has no menus: install PyGObject + AppIndicator for the full menu "
    "(see README)"
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


# --------------------------------------------------------------------------- backend


def backend_info() -> tuple[str, bool]:
    """(backend name, has menus) of the pystray backend this process would use.

    Names: appindicator, gtk, xorg, darwin, win32, dummy; 'unavailable: <why>' when pystray
    cannot load any (for instance X11 with no DISPLAY). Used by `trayagent doctor`.
    """
    try:
        import pystray
    except Exception as exc:  # Xlib raises DisplayNameError, not ImportError, without a display
        return f"unavailable: {type(exc).__name__}: {exc}", False
    module = pystray.Icon.__module__.rsplit(".", 1)[-1].lstrip("_")
    name = "dummy" if module == "base" else module
    return name, bool(getattr(pystray.Icon, "HAS_MENU", False))


_warned_no_menu = False


def _warn_if_no_menu(name: str, has_menu: bool) -> None:
    global _warned_no_menu
    if not has_menu and not _warned_no_menu:
        _warned_no_menu = True
        log.warning(NO_MENU_HINT.format(name=name))


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


def to_pystray(
    specs: Sequence[ItemSpec],
    on_action: Callable[[str, str | None], None],
    pystray: Any,
    *,
    escape_ampersand: bool = False,
) -> list[Any]:
    """Convert specs into pystray.MenuItem objects whose callbacks call on_action(action, arg)."""
    out: list[Any] = []
    for spec in specs:
        if spec.separator:
            out.append(pystray.Menu.SEPARATOR)
            continue
        text = spec.text.replace("&", "&&") if escape_ampersand else spec.text
        if spec.submenu is not None:
            sub = to_pystray(spec.submenu, on_action, pystray, escape_ampersand=escape_ampersand)
            out.append(pystray.MenuItem(text, pystray.Menu(*sub), enabled=spec.enabled))
            continue
        action = _callback(on_action, spec.action, spec.arg) if spec.action else None
        checked = (lambda _item, v=spec.checked: v) if spec.checked is not None else None
        out.append(
            pystray.MenuItem(text, action, checked=checked, enabled=spec.enabled, default=spec.default)
        )
    return out


def _callback(on_action: Callable[[str, str | None], None], action: str, arg: str | None) -> Callable[[Any, Any], None]:
    def fire(icon: Any, item: Any) -> None:
        on_action(action, arg)

    return fire


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


def _enable_xorg_clicks(icon: Any) -> None:
    """Let pystray's xorg icon hear left-clicks.

    pystray 0.19.5 handles ButtonPress on its xorg window but never selects ButtonPressMask,
    so clicks are never delivered and the default action ("Open slskd") cannot run
    (moses-palmer/pystray#151). Called before run(), while no other thread uses the display.
    """
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        return
    try:
        from Xlib import X

        window.change_attributes(event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask)
        display.flush()
    except Exception as exc:  # noqa: BLE001 - clicks are a convenience; the icon still shows
        log.debug("could not enable clicks on the xorg tray icon: %s", exc)


# --------------------------------------------------------------------------- app


class TrayApp:
    """The tray icon over an Agent.

    Threads: pystray owns the main thread (``run`` blocks). State arrives on the agent's worker
    threads; redraws are coalesced to at most one per REDRAW_INTERVAL with a timer. Menu actions
    go to ``agent.submit``.

    pystray has no "menu opened" hook on every backend (appindicator and xorg have none), so
    failures are marked seen on any menu action and on left-click instead of on open.

    Notification pause lives here and is pushed to every notifier that has ``set_paused``: the
    ``notifier`` argument, else the agent's notifiers.
    """

    REDRAW_INTERVAL = 1.0
    ICON_SIZE = 64

    def __init__(
        self,
        agent: Any,
        config: Any,
        *,
        notifier: Any = None,
        icon_factory: Callable[..., Any] | None = None,
        pystray_module: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _local_now,
    ) -> None:
        self._agent = agent
        self._config = config
        if notifier is not None:
            self._notifiers: list[Any] = [notifier]
        else:
            # Until the Agent exposes its notifiers publicly, read the list it keeps.
            self._notifiers = list(getattr(agent, "notifiers", None) or getattr(agent, "_notifiers", ()))
        self._icon_factory = icon_factory
        self._pystray = pystray_module
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.RLock()  # guards fields; never held while calling into pystray
        self._refresh_lock = threading.Lock()  # one refresh at a time, so images apply in order
        self._state: AgentState = agent.state()
        self._paused = False
        self._paused_until: datetime | None = None
        self._shown_key: tuple | None = None
        self._shown_title: str | None = None
        self._model: MenuModel | None = None
        self._menu_cache: tuple[MenuModel, list[Any]] | None = None
        self._last_redraw = -math.inf
        self._timer: threading.Timer | None = None
        self._icon: Any = None
        self._backend = "unknown"
        self._stopping = False
        self._agent_stopped = False
        self._agent_started = False

    # -- lifecycle

    def run(self) -> None:
        """Create the icon and block in pystray's loop until Quit or stop(); starts the agent."""
        if self._pystray is None and self._icon_factory is None:
            import pystray

            self._pystray = pystray
        name, has_menu = backend_info() if self._icon_factory is None else ("fake", True)
        self._backend = name
        _warn_if_no_menu(name, has_menu)
        self._icon = self._create_icon()
        self._agent.subscribe(self._on_state)
        try:
            self._icon.run(setup=self._setup)
        finally:
            with self._lock:
                self._stopping = True
            self._cancel_timer()
            self._stop_agent()

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
        # After icon.stop() the xorg backend's loop is gone and any icon update would wait for
        # it forever: _stopping (set in stop()) keeps refreshes out, the lock waits for one in flight.
        with self._refresh_lock:
            icon = self._icon
            if icon is not None:
                try:
                    icon.stop()
                except Exception:  # noqa: BLE001 - quitting must finish
                    log.exception("tray icon failed to stop")

    def _stop_agent(self) -> None:
        with self._lock:
            if self._agent_stopped:
                return
            self._agent_stopped = True
        try:
            self._agent.stop()
        except Exception:  # noqa: BLE001
            log.exception("agent failed to stop")

    def _setup(self, icon: Any) -> None:
        """pystray's setup thread: show the icon, then start polling."""
        icon.visible = True
        try:
            self._agent.start()
            self._agent_started = True
        except Exception:  # noqa: BLE001 - the icon stays up and says what is wrong
            log.exception("agent failed to start")
        self.refresh(force=True)

    def _create_icon(self) -> Any:
        with self._lock:
            key, title, _ = self._compute()
            image = render_icon(self._state, self.ICON_SIZE, paused=key[3])
        menu = self._pystray_menu()
        factory = self._icon_factory or self._pystray.Icon
        icon = factory("trayagent", icon=image, title=title, menu=menu)
        if self._backend == "xorg":
            _enable_xorg_clicks(icon)
        with self._lock:
            self._shown_key, self._shown_title = key, title
            self._model = self._build_model()
        return icon

    def _pystray_menu(self) -> Any:
        ps = self._pystray
        if ps is None:
            return None
        return ps.Menu(self._menu_items)

    def _menu_items(self) -> list[Any]:
        """Called by pystray whenever it needs the items; converted once per model."""
        with self._lock:
            model = self._model or self._build_model()
            cached = self._menu_cache
        if cached is not None and cached[0] == model:
            return cached[1]
        items = to_pystray(model.items, self._on_menu, self._pystray, escape_ampersand=self._backend == "win32")
        with self._lock:
            self._menu_cache = (model, items)
        return items

    # -- state and redraws

    def _on_state(self, state: AgentState) -> None:
        """Agent callback (worker thread): remember, then redraw now or within a second."""
        with self._lock:
            self._state = state
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._stopping:
                return
            wait = self._last_redraw + self.REDRAW_INTERVAL - self._monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._on_timer)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.refresh()

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

    def _compute(self) -> tuple[tuple, str, MenuModel]:
        paused, _ = self._effective_pause()
        key = icon_key(self._state, paused=paused)
        return key, tooltip(self._state, paused=paused), self._build_model()

    def refresh(self, force: bool = False) -> None:
        """Push icon, tooltip and menu to pystray, each only if what it shows changed.

        Never call this on pystray's UI thread: the xorg backend makes off-thread updates wait
        for that thread (see _refresh_soon).
        """
        with self._refresh_lock:
            with self._lock:
                icon = self._icon
                if icon is None or self._stopping:
                    return
                key, title, model = self._compute()
                new_icon = force or key != self._shown_key
                new_title = force or title != self._shown_title
                new_menu = force or model != self._model
                image = render_icon(self._state, self.ICON_SIZE, paused=key[3]) if new_icon else None
                self._shown_key, self._shown_title, self._model = key, title, model
                if new_icon or new_title or new_menu:
                    self._last_redraw = self._monotonic()
            try:
                if image is not None:
                    icon.icon = image
                if new_title:
                    icon.title = title
                if new_menu:
                    icon.update_menu()
            except Exception:  # noqa: BLE001 - a tray glitch must not kill the agent's thread
                log.exception("tray update failed")

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
