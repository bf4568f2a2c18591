"""Tray backends and the ladder that picks one, so the desktop can never take the agent down.

A backend shows a TrayView (icon key, tooltip text, menu model) and reports menu clicks as
(action, arg). TrayApp (tray.py) walks the ladder: a backend that cannot be created, or that
fails while running or updating, is logged once and the next one is tried, down to no tray.

Linux:   sni (StatusNotifierItem over D-Bus, pure Python: sni.py)
         -> gtk (pystray's Gtk.StatusIcon, XEmbed, needs PyGObject: the optional gtk extra)
         -> xorg (pystray's python-xlib icon, XEmbed, no menu: a click opens slskd)
         -> none (notifications and the JSON stream only).
Windows and macOS: pystray's native backend -> none.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from trayagent.desktop.icons import render_key
from trayagent.desktop.menu import ItemSpec, MenuModel
from trayagent.desktop.trayview import ActionHandler, TrayBackend, TrayBackendError, TrayView

log = logging.getLogger(__name__)

#: [tray] backend values and the rungs each one allows, in order (Linux).
LINUX_LADDERS: dict[str, tuple[str, ...]] = {
    "auto": ("sni", "gtk", "xorg"),
    "sni": ("sni",),
    "xembed": ("gtk", "xorg"),
    "none": (),
}
#: What each rung is, for `trayagent doctor`.
DESCRIPTIONS: dict[str, str] = {
    "sni": "StatusNotifierItem over D-Bus, with its menu",
    "gtk": "XEmbed tray icon through PyGObject, with its menu",
    "xorg": "XEmbed tray icon through python-xlib, no menu: a click opens slskd",
    "pystray": "pystray's own backend",
}
PYSTRAY_ICON_SIZE = 64
#: Punctuation the agent writes that Latin-1 lacks, spelled in Latin-1.
_LATIN1_SPELLINGS = str.maketrans({"…": "...", "—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                                   "✓": "+", "✗": "x"})


# --------------------------------------------------------------------------- the ladder


@dataclass(frozen=True, slots=True)
class Rung:
    """One backend on the ladder and whether this desktop can have it (``problem`` None) or why not."""

    name: str
    problem: str | None


Probe = Callable[[str], "str | None"]


def rungs(setting: str, platform: str = sys.platform, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The backends [tray] backend allows here, best first. PYSTRAY_BACKEND pins the XEmbed rung."""
    if platform in ("win32", "darwin"):
        return () if setting in ("none", "sni") else ("pystray",)
    env = os.environ if env is None else env
    ladder = LINUX_LADDERS.get(setting, LINUX_LADDERS["auto"])
    pinned = (env.get("PYSTRAY_BACKEND") or "").strip()
    if pinned and pinned not in ("gtk", "xorg"):
        ladder = tuple(r for r in ladder if r == "sni") + (("pystray",) if setting != "sni" and ladder else ())
    elif pinned:
        ladder = tuple(r for r in ladder if r == "sni" or r == pinned)
    return ladder


def plan(setting: str, probe: Probe, platform: str = sys.platform,
         env: Mapping[str, str] | None = None) -> list[Rung]:
    """Probe every allowed rung (for `trayagent doctor`; TrayApp probes lazily, one at a time)."""
    return [Rung(name, probe(name)) for name in rungs(setting, platform, env)]


def choose(ladder: Sequence[Rung]) -> Rung | None:
    """The first usable rung, or None: no tray, notifications only."""
    return next((r for r in ladder if r.problem is None), None)


def probe(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why backend ``name`` cannot run in this session (``env``: os.environ), or None if it can.

    Never raises: a probe reports, it never takes the agent down.
    """
    env = os.environ if env is None else env
    try:
        if name == "sni":
            from trayagent.desktop.sni import watcher_problem

            address = env.get("DBUS_SESSION_BUS_ADDRESS")
            if not address:
                return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)"
            return watcher_problem(address)
        if name in ("gtk", "xorg") and not env.get("DISPLAY"):
            return "no X display (DISPLAY is unset), and XEmbed trays are X11 only"
        if name == "gtk":
            return _gtk_problem()
        if name == "xorg":
            return _xlib_problem(env["DISPLAY"])
        if name == "pystray":
            importlib.import_module("pystray")
            return None
        return f"unknown tray backend {name!r}"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def _gtk_problem() -> str | None:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401
    except (ImportError, ValueError) as exc:
        return f"PyGObject with GTK 3 is not importable ({exc}); it comes with the optional gtk extra"
    return None


def _xlib_problem(display: str) -> str | None:
    from Xlib import display as xdisplay

    try:
        xdisplay.Display(display).close()
    except Exception as exc:  # noqa: BLE001 - Xlib raises its own error types
        return f"cannot open the X display {display!r} ({exc})"
    return None


def create(name: str) -> TrayBackend:
    """A fresh, not yet started backend for a rung name."""
    if name == "sni":
        from trayagent.desktop.sni import SniTray

        return SniTray()
    return PystrayTray(name)


# --------------------------------------------------------------------------- pystray
# pystray ships no type hints: its package, Icon and MenuItem objects are `Any` in this section,
# and none of them leaves this module (TrayApp sees only the TrayBackend protocol).


def latin1_title(text: str) -> str:
    """Text an X window name (WM_NAME, STRING = Latin-1) can carry: '…' becomes '...', others '?'.

    pystray's xorg backend uses the title as the window name and python-xlib encodes it as
    Latin-1, so "Connecting to slskd…" or a Japanese track name raised UnicodeEncodeError.
    """
    text = unicodedata.normalize("NFKC", text.translate(_LATIN1_SPELLINGS))
    return text.encode("latin-1", "replace").decode("latin-1")


def to_pystray(
    specs: Sequence[ItemSpec],
    on_action: ActionHandler,
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


def _callback(on_action: ActionHandler, action: str, arg: str | None) -> Callable[[Any, Any], None]:
    def fire(icon: Any, item: Any) -> None:
        on_action(action, arg)

    return fire


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


def load_pystray(kind: str) -> tuple[Any, Any]:
    """(pystray package, Icon class) for 'gtk', 'xorg' or 'pystray' (its own choice).

    pystray picks a backend when the package is first imported; PYSTRAY_BACKEND steers that
    first pick so asking for xorg does not load GTK. Later picks import the module directly.
    """
    if "pystray" not in sys.modules and kind in ("gtk", "xorg"):
        saved = os.environ.get("PYSTRAY_BACKEND")
        os.environ["PYSTRAY_BACKEND"] = kind
        try:
            package = importlib.import_module("pystray")
        finally:
            if saved is None:
                os.environ.pop("PYSTRAY_BACKEND", None)
            else:
                os.environ["PYSTRAY_BACKEND"] = saved
    else:
        package = importlib.import_module("pystray")
    if kind in ("gtk", "xorg"):
        return package, importlib.import_module(f"pystray._{kind}").Icon
    return package, package.Icon


def pystray_backend_name(icon_class: Any) -> str:
    """'gtk', 'xorg', 'appindicator', 'win32', 'darwin' or 'dummy' for a pystray Icon class."""
    module = icon_class.__module__.rsplit(".", 1)[-1].lstrip("_")
    return "dummy" if module == "base" else module


class PystrayTray:
    """A pystray icon (XEmbed on Linux, native on Windows/macOS) as a TrayBackend."""

    def __init__(self, kind: str, loader: Callable[[str], tuple[Any, Any]] = load_pystray) -> None:
        self._kind = kind
        self._loader = loader
        self.name = kind
        self.has_menu = kind != "xorg"
        self._pystray: Any = None
        self._icon: Any = None
        self._items: tuple[Any, list[Any]] | None = None
        self._model: MenuModel | None = None
        self._on_action: ActionHandler | None = None

    def start(self, view: TrayView, on_action: ActionHandler) -> None:
        self._pystray, icon_class = self._loader(self._kind)
        self.name = pystray_backend_name(icon_class)
        self.has_menu = bool(getattr(icon_class, "HAS_MENU", False))
        if self.name == "dummy":
            raise TrayBackendError("pystray found no usable tray backend (dummy)")
        self._on_action, self._model = on_action, view.model
        image = render_key(view.key, PYSTRAY_ICON_SIZE).copy()
        menu = self._pystray.Menu(self._menu_items)
        self._icon = icon_class("trayagent", icon=image, title=self._title(view.title), menu=menu)
        if self.name == "xorg":
            _enable_xorg_clicks(self._icon)

    def _title(self, text: str) -> str:
        return latin1_title(text) if self.name == "xorg" else text

    def _menu_items(self) -> list[Any]:
        """Called by pystray whenever it needs the items; converted once per model."""
        model = self._model
        cached = self._items
        if cached is not None and cached[0] == model:
            return cached[1]
        assert model is not None and self._on_action is not None
        items = to_pystray(model.items, self._on_action, self._pystray, escape_ampersand=self.name == "win32")
        self._items = (model, items)
        return items

    def run(self, ready: Callable[[], None]) -> None:
        def setup(icon: Any) -> None:
            icon.visible = True
            ready()

        self._icon.run(setup=setup)

    def update(self, view: TrayView, *, icon: bool, title: bool, menu: bool) -> None:
        self._model = view.model
        if icon:
            self._icon.icon = render_key(view.key, PYSTRAY_ICON_SIZE).copy()
        if title:
            self._icon.title = self._title(view.title)
        if menu:
            self._icon.update_menu()

    def stop(self) -> None:
        if self._icon is not None:
            self._icon.stop()
