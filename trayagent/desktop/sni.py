"""A StatusNotifierItem tray over D-Bus with jeepney: pure Python, nothing to compile.

KDE Plasma, the XFCE panel, Cinnamon, MATE, LXQt, waybar and GNOME (with the AppIndicator
extension) draw tray icons for applications that publish an ``org.kde.StatusNotifierItem`` and
register it with ``org.kde.StatusNotifierWatcher``. The host draws the icon from our pixmaps,
shows our tooltip, calls ``Activate`` on a left click and builds the menu itself from the
``com.canonical.dbusmenu`` object served here (layout in dbusmenu.py).

Threads: jeepney's connection is read by one receiver thread; everything it receives that is
not a reply goes to a queue served by one dispatcher thread, so handlers may call out (the
watcher re-registration does). Updates come from TrayApp's threads and only send signals.
"""

from __future__ import annotations

import logging
import os
import threading
from itertools import count
from typing import Any, Callable

from jeepney import DBusAddress, HeaderFields, Message, MessageFlag, MessageType, new_error, new_method_call
from jeepney import new_method_return, new_signal
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.io.threading import DBusConnection, open_dbus_connection
from PIL import Image

from trayagent.desktop import dbusmenu
from trayagent.desktop.dbuslink import Link
from trayagent.desktop.dbusmenu import MenuLayout, UnknownItem
from trayagent.desktop.icons import IconKey, render_key
from trayagent.desktop.trayview import ActionHandler, TrayBackendError, TrayView

log = logging.getLogger(__name__)

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
ITEM_PATH = "/StatusNotifierItem"
MENU_PATH = "/MenuBar"
PROPS_INTERFACE = "org.freedesktop.DBus.Properties"
#: Sizes hosts pick from (16 px panels up to HiDPI 64 px); each drawn by icons.py, not scaled.
ICON_SIZES = (16, 22, 24, 32, 48, 64)
APP_ID = "trayagent"

Pixmap = tuple[int, int, bytes]
# D-Bus message bodies and variants are as jeepney builds and decodes them: untyped (Any) values
# within this module, each read or written against its signature; nothing untyped leaves it.


# --------------------------------------------------------------------------- pixmaps


def argb32(image: Image.Image) -> Pixmap:
    """(width, height, ARGB32 bytes in network byte order): A, R, G, B per pixel, not premultiplied."""
    red, green, blue, alpha = image.convert("RGBA").split()
    return image.width, image.height, Image.merge("RGBA", (alpha, red, green, blue)).tobytes()


def pixmaps(key: IconKey, sizes: tuple[int, ...] = ICON_SIZES) -> list[Pixmap]:
    """The icon for a key at every size, for IconPixmap."""
    return [argb32(render_key(key, size)) for size in sizes]


# --------------------------------------------------------------------------- probing


def watcher_problem(bus: str = "SESSION", timeout: float = 2.0) -> str | None:
    """None when a StatusNotifierWatcher (an SNI tray host) is on the bus, else why not.

    ``bus``: 'SESSION' or a D-Bus address.
    """
    try:
        conn = open_dbus_connection(bus)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: not this rung
        return f"cannot connect to the D-Bus session bus ({exc})"
    try:
        reply = _call(conn, message_bus.NameHasOwner(WATCHER), timeout)
        if not reply.body[0]:
            return (f"no StatusNotifierItem host ({WATCHER} is not on the session bus): the panel has "
                    "no SNI tray; on GNOME install the AppIndicator/KStatusNotifierItem extension")
        return None
    finally:
        conn.close()


def _call(conn: DBusConnection, msg: Message, timeout: float) -> Message:
    """One call on a connection nobody else is reading (probes only)."""
    serial = next(conn.outgoing_serial)
    conn.send(msg, serial=serial)
    while True:
        reply = conn.receive(timeout=timeout)
        if reply.header.fields.get(HeaderFields.reply_serial) == serial:
            if reply.header.message_type is MessageType.error:
                raise TrayBackendError(f"D-Bus error {reply.header.fields.get(HeaderFields.error_name)}")
            return reply


# --------------------------------------------------------------------------- the item


class SniTray:
    """The StatusNotifierItem backend: one item plus its dbusmenu on a private connection."""

    name = "sni"
    has_menu = True

    def __init__(self, bus: str = "SESSION", sizes: tuple[int, ...] = ICON_SIZES) -> None:
        self._bus = bus
        self._sizes = sizes
        self._link: Link | None = None
        self._on_action: ActionHandler | None = None
        self._lock = threading.Lock()  # guards the view, pixmaps and the menu layout
        self._view: TrayView | None = None
        self._pixmaps: list[Pixmap] = []
        self._menu = MenuLayout()
        self._bus_name = f"org.kde.StatusNotifierItem-{os.getpid()}-{next(_instances)}"
        self._stopped = threading.Event()
        self._dispatcher: threading.Thread | None = None

    # -- TrayBackend

    def start(self, view: TrayView, on_action: ActionHandler) -> None:
        self._on_action = on_action
        self._set_view(view)
        self._link = Link(self._bus)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="trayagent-sni", daemon=True)
        self._dispatcher.start()
        link = self._link
        link.call(message_bus.AddMatch(_WATCHER_OWNER_RULE))
        reply = link.call(message_bus.RequestName(self._bus_name, 4))  # 4: DO_NOT_QUEUE
        if reply.body[0] != 1:
            raise TrayBackendError(f"could not own the bus name {self._bus_name}")

    def run(self, ready: Callable[[], None]) -> None:
        link = self._require_link()
        try:
            self._register()
            ready()
            while not self._stopped.wait(0.5):
                if link.closed.is_set():
                    raise TrayBackendError("the D-Bus session bus connection closed")
        finally:
            self._close()

    def update(self, view: TrayView, *, icon: bool, title: bool, menu: bool) -> None:
        with self._lock:
            old = self._view
            change = self._set_view(view)
            icons, tip, status = list(self._pixmaps), self._tooltip(), self._status()
        link = self._require_link()
        changed: dict[str, tuple[str, Any]] = {}
        if icon:
            link.send(self._signal("NewIcon"))
            link.send(self._signal("NewAttentionIcon"))
            changed["IconPixmap"] = changed["AttentionIconPixmap"] = ("a(iiay)", icons)
        if title:
            link.send(self._signal("NewToolTip"))
            changed["ToolTip"] = ("(sa(iiay)ss)", tip)
        if old is None or old.needs_attention != view.needs_attention:
            link.send(self._signal("NewStatus", "s", (status,)))
            changed["Status"] = ("s", status)
        if changed:
            link.send(new_signal(DBusAddress(ITEM_PATH, interface=PROPS_INTERFACE), "PropertiesChanged",
                                 "sa{sv}as", (ITEM_INTERFACE, changed, [])))
        if change.changed:  # the menu flag is implied: the layout compares itself
            self._send_menu_change(change)

    def stop(self) -> None:
        self._stopped.set()

    # -- state

    def _set_view(self, view: TrayView) -> dbusmenu.Change:
        old = self._view
        self._view = view
        if old is None or old.key != view.key:
            self._pixmaps = pixmaps(view.key, self._sizes)
        return self._menu.update(view.model.items)

    def _require_link(self) -> Link:
        if self._link is None:
            raise TrayBackendError("the StatusNotifierItem is not started")
        return self._link

    def _status(self) -> str:
        return "NeedsAttention" if self._view is not None and self._view.needs_attention else "Active"

    def _tooltip(self) -> tuple[str, list[Pixmap], str, str]:
        text = self._view.title if self._view is not None else ""
        return ("", [], "slskd", text)

    def _signal(self, member: str, signature: str | None = None, body: tuple[Any, ...] = ()) -> Message:
        return new_signal(DBusAddress(ITEM_PATH, interface=ITEM_INTERFACE), member, signature, body)

    def _send_menu_change(self, change: dbusmenu.Change) -> None:
        link = self._require_link()
        menu = DBusAddress(MENU_PATH, interface=dbusmenu.INTERFACE)
        if change.updated or change.removed:
            link.send(new_signal(menu, "ItemsPropertiesUpdated", "a(ia{sv})a(ias)",
                                 (change.updated, change.removed)))
        for parent in change.layout_parents:
            link.send(new_signal(menu, "LayoutUpdated", "ui", (change.revision, parent)))

    # -- registration

    def _register(self) -> None:
        """Tell the watcher about the item; again whenever a watcher (re)appears."""
        link = self._require_link()
        watcher = DBusAddress(WATCHER_PATH, bus_name=WATCHER, interface=WATCHER)
        link.call(new_method_call(watcher, "RegisterStatusNotifierItem", "s", (self._bus_name,)))
        log.info("tray: StatusNotifierItem %s registered with the panel", self._bus_name)

    def _on_watcher_owner(self, msg: Message) -> None:
        name, _old, new = msg.body
        if name != WATCHER:
            return
        if not new:
            log.info("tray: the StatusNotifierWatcher went away (panel restarting?); waiting for it")
            return
        try:
            self._register()
        except Exception as exc:  # noqa: BLE001 - the next watcher gets another chance
            log.warning("tray: could not register with the new StatusNotifierWatcher: %s", exc)

    # -- dispatch

    def _dispatch_loop(self) -> None:
        link = self._require_link()
        while True:
            msg = link.incoming.get()
            if msg is None:
                return
            try:
                if msg.header.message_type is MessageType.signal:
                    if msg.header.fields.get(HeaderFields.member) == "NameOwnerChanged":
                        self._on_watcher_owner(msg)
                    continue
                self._answer(link, msg)
            except Exception:  # noqa: BLE001 - one bad request never stops the tray
                log.exception("tray: D-Bus request failed")

    def _answer(self, link: Link, msg: Message) -> None:
        try:
            signature, body = self._handle(msg)
            reply = new_method_return(msg, signature, body)
        except UnknownItem as exc:
            reply = new_error(msg, "com.canonical.dbusmenu.Error.UnknownId", "s", (str(exc),))
        except _DBusError as exc:
            reply = new_error(msg, exc.name, "s", (exc.text,))
        if not msg.header.flags & MessageFlag.no_reply_expected:
            link.send(reply)

    def _handle(self, msg: Message) -> tuple[str | None, tuple[Any, ...]]:
        fields = msg.header.fields
        path = fields.get(HeaderFields.path)
        iface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member)
        args = msg.body
        if iface == "org.freedesktop.DBus.Introspectable" or (iface is None and member == "Introspect"):
            return "s", (_introspect(path),)
        if iface == "org.freedesktop.DBus.Peer" and member == "Ping":
            return None, ()
        if iface == PROPS_INTERFACE:
            return self._properties(path, member, args)
        if path == ITEM_PATH and iface in (ITEM_INTERFACE, None):
            return self._item_method(member)
        if path == MENU_PATH and iface in (dbusmenu.INTERFACE, None):
            return self._menu_method(member, args)
        raise _DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {iface}.{member} at {path}")

    def _properties(self, path: str, member: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        table = self._item_properties() if path == ITEM_PATH else self._menu_properties() if path == MENU_PATH else {}
        iface = args[0] if args else ""
        expected = ITEM_INTERFACE if path == ITEM_PATH else dbusmenu.INTERFACE
        if iface not in ("", expected):
            table = {}
        if member == "GetAll":
            return "a{sv}", (table,)
        if member == "Get":
            if args[1] not in table:
                raise _DBusError("org.freedesktop.DBus.Error.UnknownProperty", f"no property {args[1]}")
            return "v", (table[args[1]],)
        if member == "Set":
            raise _DBusError("org.freedesktop.DBus.Error.PropertyReadOnly", "the tray's properties are read-only")
        raise _DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {member}")

    def _item_properties(self) -> dict[str, tuple[str, Any]]:
        with self._lock:
            icons = list(self._pixmaps)
            return {
                "Category": ("s", "ApplicationStatus"),
                "Id": ("s", APP_ID),
                "Title": ("s", APP_ID),
                "Status": ("s", self._status()),
                "WindowId": ("i", 0),
                "IconName": ("s", ""),
                "IconThemePath": ("s", ""),
                "IconPixmap": ("a(iiay)", icons),
                "OverlayIconName": ("s", ""),
                "OverlayIconPixmap": ("a(iiay)", []),
                "AttentionIconName": ("s", ""),
                "AttentionIconPixmap": ("a(iiay)", icons),
                "AttentionMovieName": ("s", ""),
                "ToolTip": ("(sa(iiay)ss)", self._tooltip()),
                "ItemIsMenu": ("b", False),
                "Menu": ("o", MENU_PATH),
            }

    def _menu_properties(self) -> dict[str, tuple[str, Any]]:
        return {
            "Version": ("u", dbusmenu.VERSION),
            "TextDirection": ("s", "ltr"),
            "Status": ("s", "normal"),
            "IconThemePath": ("as", []),
        }

    def _item_method(self, member: str) -> tuple[str | None, tuple[Any, ...]]:
        if member == "Activate":
            self._fire_default()
        elif member not in ("SecondaryActivate", "ContextMenu", "Scroll", "ProvideXdgActivationToken"):
            raise _DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {member}")
        return None, ()

    def _fire_default(self) -> None:
        with self._lock:
            default = self._view.model.default if self._view is not None else None
        if default is not None and default.action and self._on_action is not None:
            self._on_action(default.action, default.arg)

    def _menu_method(self, member: str, args: tuple[Any, ...]) -> tuple[str | None, tuple[Any, ...]]:
        if member == "Event":
            if self._menu_events([(args[0], args[1])]):
                raise UnknownItem(f"no menu item with id {args[0]}")
            return None, ()
        if member == "EventGroup":
            return "ai", (self._menu_events([(e[0], e[1]) for e in args[0]]),)
        with self._lock:
            menu = self._menu
            if member == "GetLayout":
                return "u(ia{sv}av)", menu.get_layout(args[0], args[1], args[2])
            if member == "GetGroupProperties":
                return "a(ia{sv})", (menu.group_properties(args[0], args[1]),)
            if member == "GetProperty":
                return "v", (menu.get_property(args[0], args[1]),)
            if member == "AboutToShow":
                menu.node(args[0])
                return "b", (False,)
            if member == "AboutToShowGroup":
                return "aiai", ([], [i for i in args[0] if not menu.has(i)])
        raise _DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {member}")

    def _menu_events(self, events: list[tuple[int, str]]) -> list[int]:
        """Run clicked items' actions (TrayApp hands them to agent.submit); returns unknown ids.

        Other events (opened, closed, hovered) need nothing: the menu is always current.
        """
        with self._lock:
            unknown = [i for i, _ in events if not self._menu.has(i)]
            targets = [self._menu.action_for(i) for i, event in events if event == "clicked"]
        for target in targets:
            if target is not None and self._on_action is not None:
                self._on_action(*target)
        return unknown

    def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                link.call(message_bus.ReleaseName(self._bus_name), timeout=1.0)
            except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                pass
            link.close()


class _DBusError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name, self.text = name, text


_instances = count(1)
_WATCHER_OWNER_RULE = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                                member="NameOwnerChanged", path="/org/freedesktop/DBus")
_WATCHER_OWNER_RULE.add_arg_condition(0, WATCHER)


def _introspect(path: str | None) -> str:
    """Introspection XML: what hosts and tools (d-feet, busctl) see at each path."""
    standard = (
        '<interface name="org.freedesktop.DBus.Introspectable"><method name="Introspect">'
        '<arg name="xml" type="s" direction="out"/></method></interface>'
        '<interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>'
        '<interface name="org.freedesktop.DBus.Properties">'
        '<method name="Get"><arg type="s" direction="in"/><arg type="s" direction="in"/>'
        '<arg type="v" direction="out"/></method>'
        '<method name="GetAll"><arg type="s" direction="in"/><arg type="a{sv}" direction="out"/></method>'
        '<method name="Set"><arg type="s" direction="in"/><arg type="s" direction="in"/>'
        '<arg type="v" direction="in"/></method>'
        '<signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/><arg type="as"/></signal>'
        '</interface>'
    )
    body = {ITEM_PATH: _ITEM_XML, MENU_PATH: dbusmenu.INTROSPECTION}.get(path or "", "")
    children = "" if path in (ITEM_PATH, MENU_PATH) else '<node name="StatusNotifierItem"/><node name="MenuBar"/>'
    return (
        '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" '
        '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">'
        f"<node>{standard}{body}{children}</node>"
    )


_ITEM_XML = (
    f'<interface name="{ITEM_INTERFACE}">'
    + dbusmenu.properties_xml("Category:s Id:s Title:s Status:s WindowId:i IconName:s IconThemePath:s IconPixmap:a(iiay) "
                 "OverlayIconName:s OverlayIconPixmap:a(iiay) AttentionIconName:s AttentionIconPixmap:a(iiay) "
                 "AttentionMovieName:s ToolTip:(sa(iiay)ss) ItemIsMenu:b Menu:o")
    + '<method name="ContextMenu"><arg name="x" type="i"/><arg name="y" type="i"/></method>'
    '<method name="Activate"><arg name="x" type="i"/><arg name="y" type="i"/></method>'
    '<method name="SecondaryActivate"><arg name="x" type="i"/><arg name="y" type="i"/></method>'
    '<method name="Scroll"><arg name="delta" type="i"/><arg name="orientation" type="s"/></method>'
    '<signal name="NewTitle"/><signal name="NewIcon"/><signal name="NewAttentionIcon"/>'
    '<signal name="NewOverlayIcon"/><signal name="NewToolTip"/>'
    '<signal name="NewStatus"><arg name="status" type="s"/></signal>'
    "</interface>"
)
