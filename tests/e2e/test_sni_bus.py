"""The StatusNotifierItem's D-Bus surface, checked from a client on a real private bus.

What every SNI host relies on, asked the way hosts ask: Properties.Get/GetAll, Introspect,
the dbusmenu methods, and the signals sent when the view changes (NewIcon, NewToolTip,
NewStatus, PropertiesChanged, ItemsPropertiesUpdated, LayoutUpdated). A minimal watcher owned
by the test records the registration; the full host (xfce4-panel) is in test_sni_e2e.py.
"""

from __future__ import annotations

import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from jeepney import DBusAddress, MatchRule, Message, MessageType, Properties, message_bus, new_method_call
from jeepney import new_method_return
from jeepney.io.threading import DBusRouter, open_dbus_connection

from trayagent.desktop import menu as T
from trayagent.desktop.icons import icon_key, tooltip
from trayagent.core.model import AgentState
from trayagent.desktop.sni import ITEM_INTERFACE, ITEM_PATH, MENU_PATH, SniTray
from trayagent.desktop.trayview import TrayView

from .desktop import Desktop, DesktopError, wait_for

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def view(**state: Any) -> TrayView:
    s = AgentState(connected=True, polled=True, logged_in=True, **state)
    return TrayView(icon_key(s), tooltip(s), T.MenuModel.build(s, now=NOW))


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[str]:
    try:
        d = Desktop(tmp_path / "desktop", with_tray=False, with_notifications=False).__enter__()
    except DesktopError as exc:
        pytest.fail(f"the test desktop did not start: {exc}", pytrace=False)
    try:
        yield d.bus_address
    finally:
        d.stop()


class Watcher:
    """Owns org.kde.StatusNotifierWatcher and records RegisterStatusNotifierItem calls."""

    def __init__(self, address: str) -> None:
        self.router = DBusRouter(open_dbus_connection(address))
        self.registered: list[str] = []
        self.calls: queue.Queue[Message] = queue.Queue()
        self.router.filter(MatchRule(type="method_call", interface="org.kde.StatusNotifierWatcher"),
                           queue=self.calls)
        reply = self.router.send_and_get_reply(message_bus.RequestName("org.kde.StatusNotifierWatcher"))
        assert reply.body[0] == 1
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            msg = self.calls.get()
            self.registered.append(msg.body[0])
            self.router.send(new_method_return(msg))


def test_properties_introspection_menu_and_signals(bus: str) -> None:
    watcher = Watcher(bus)
    actions: list[tuple[str, str | None]] = []
    item = SniTray(bus=bus)
    item.start(view(), lambda action, arg: actions.append((action, arg)))
    ready = threading.Event()
    runner = threading.Thread(target=item.run, args=(ready.set,), daemon=True)
    runner.start()
    assert ready.wait(10)
    name = watcher.registered[0]
    assert name.startswith("org.kde.StatusNotifierItem-")

    client = DBusRouter(open_dbus_connection(bus))
    signals: queue.Queue[Message] = queue.Queue()
    owner = client.send_and_get_reply(message_bus.GetNameOwner(name)).body[0]  # signals carry it
    for path in (ITEM_PATH, MENU_PATH):
        rule = MatchRule(type="signal", sender=owner, path=path)
        client.send_and_get_reply(message_bus.AddMatch(rule))
        client.filter(rule, queue=signals)
    obj = DBusAddress(ITEM_PATH, bus_name=name, interface=ITEM_INTERFACE)
    menu = DBusAddress(MENU_PATH, bus_name=name, interface="com.canonical.dbusmenu")

    def call(msg: Message) -> tuple[Any, ...]:
        reply = client.send_and_get_reply(msg, timeout=5)
        assert reply.header.message_type is MessageType.method_return, reply.body
        return reply.body

    props = call(Properties(obj).get_all())[0]
    assert props["Status"] == ("s", "Active") and props["Menu"] == ("o", MENU_PATH)
    assert props["ItemIsMenu"] == ("b", False) and props["Category"] == ("s", "ApplicationStatus")
    assert [(w, h) for w, h, _ in props["IconPixmap"][1]] == [(s, s) for s in (16, 22, 24, 32, 48, 64)]
    assert props["ToolTip"][1][2:] == ("slskd", "Idle")
    assert call(Properties(obj).get("Title")) == (("s", "trayagent"),)
    xml = call(new_method_call(DBusAddress(ITEM_PATH, name, "org.freedesktop.DBus.Introspectable"),
                               "Introspect"))[0]
    assert '<interface name="org.kde.StatusNotifierItem">' in xml and '<signal name="NewStatus">' in xml
    assert call(Properties(menu).get("Version")) == (("u", 3),)

    revision, layout = call(new_method_call(menu, "GetLayout", "iias", (0, -1, [])))
    clear = next(c[1][0] for c in layout[2] if c[1][1].get("label") == ("s", "Clear finished"))
    call(new_method_call(menu, "Event", "isvu", (clear, "clicked", ("s", ""), 0)))
    call(new_method_call(obj, "Activate", "ii", (0, 0)))
    assert actions == [(T.CLEAR, None), (T.OPEN_SLSKD, None)]

    # A failure: new icon (badge), new tooltip, NeedsAttention, and the menu updated in place.
    item.update(view(failed_unseen=1), icon=True, title=True, menu=True)
    members: dict[str, tuple[Any, ...]] = {}
    wait_for(lambda: members.update(_drain(signals)) or {"NewIcon", "NewToolTip", "NewStatus",
                                                           "PropertiesChanged", "ItemsPropertiesUpdated"}
             <= set(members), 5, "the item's signals")
    assert members["NewStatus"] == ("NeedsAttention",)
    iface, changed, _ = members["PropertiesChanged"]
    assert iface == ITEM_INTERFACE and changed["Status"] == ("s", "NeedsAttention")
    updated, removed = members["ItemsPropertiesUpdated"]
    assert (layout[2][0][1][0], {"label": ("s", "Idle · 1 failed")}) in updated
    assert call(new_method_call(menu, "GetLayout", "iias", (0, 0, [])))[0] == revision + 1

    # The watcher goes away and comes back (a panel restart): the item registers again.
    watcher.router.send_and_get_reply(message_bus.ReleaseName("org.kde.StatusNotifierWatcher"))
    again = Watcher(bus)
    wait_for(lambda: again.registered == [name], 5, "the item to register with the new watcher")

    item.stop()
    runner.join(5)
    assert not runner.is_alive()
    for router in (client, watcher.router, again.router):
        router.close()
        router.conn.close()


def _drain(q: queue.Queue[Message]) -> dict[str, tuple[Any, ...]]:
    out = {}
    while True:
        try:
            msg = q.get_nowait()
        except queue.Empty:
            return out
        out[msg.header.fields[3]] = msg.body  # 3: HeaderFields.member
