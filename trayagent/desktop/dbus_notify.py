"""Desktop notifications over D-Bus (org.freedesktop.Notifications) with jeepney: pure Python.

Talks to the notification daemon the way Nicotine+ or Transmission do, with no compiler and no
GLib: Notify with replaces_id (an album updated in place), CloseNotification, and the daemon's
GetCapabilities honoured per connection: bodies are markup-escaped only where `body-markup` is
offered (plain text otherwise) and buttons are sent only where `actions` is. ActionInvoked and
NotificationClosed arrive on a listener thread and are handed to callbacks, which must return
quickly (the desktop notifier passes the work on to the agent's worker pool).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Mapping

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.threading import DBusConnection, DBusRouter, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from trayagent.desktop.labels import TITLE_LIMIT, encodable, escape_markup, sanitize
from trayagent.desktop.notification import (
    DESKTOP_ENTRY,
    ActionCallback,
    Actions,
    ClosedCallback,
    Notification,
    NotificationError,
)

log = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.Notifications"
INTERFACE = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
NOTIFICATIONS = DBusAddress(PATH, bus_name=BUS_NAME, interface=INTERFACE)
#: The spec's urgency hint is a byte.
URGENCY = {"low": 0, "normal": 1, "critical": 2}
#: A daemon that does not answer in this long is treated as gone (the notifier falls back).
CALL_TIMEOUT = 5.0


def session_bus_address(env: Mapping[str, str] | None = None) -> str:
    """The session bus: DBUS_SESSION_BUS_ADDRESS, else systemd's $XDG_RUNTIME_DIR/bus."""
    env = os.environ if env is None else env
    address = (env.get("DBUS_SESSION_BUS_ADDRESS") or "").strip()
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR") or ""
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return f"unix:path={os.path.join(runtime, 'bus')}"
    raise NotificationError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")


def _call(router: DBusRouter, msg: Message, timeout: float = CALL_TIMEOUT) -> tuple[Any, ...]:
    """One method call; every way it can fail becomes NotificationError.

    The reply body is as jeepney decodes it (its values are untyped, hence Any): callers in this
    module read it where they know its D-Bus signature; nothing untyped leaves the module.
    """
    try:
        return tuple(unwrap_msg(router.send_and_get_reply(msg, timeout=timeout)))
    except DBusErrorResponse as exc:
        raise NotificationError(f"the notification daemon answered {exc.name}: {exc.data}") from exc
    except Exception as exc:  # noqa: BLE001 - a dead bus raises OSError, RouterClosed, TimeoutError...
        raise NotificationError(f"D-Bus call {msg.header.fields.get(HeaderFields.member)} failed: "
                                f"{type(exc).__name__}: {exc}") from exc


class DBusNotifyBackend:
    """One connection to the session bus and its notification daemon."""

    replaces = True

    def __init__(self, conn: DBusConnection, router: DBusRouter, capabilities: frozenset[str],
                 server: tuple[str, ...], app_name: str, icon_path: str | None,
                 on_action: ActionCallback | None, on_closed: ClosedCallback | None) -> None:
        self._conn = conn
        self._router = router
        self.capabilities = capabilities
        self.server = server
        self.markup = "body-markup" in capabilities
        self.actions = "actions" in capabilities
        self.name = f"D-Bus ({' '.join(server[:1] + server[2:3]) or 'unknown daemon'})"
        self._app_name = sanitize(app_name, 40) or "trayagent"
        self._icon = icon_path or ""
        self._on_action = on_action
        self._on_closed = on_closed
        self._signals: queue.Queue[Message | None] = queue.Queue(maxsize=1000)
        self._owner = ""
        self._filter = None
        self._listener: threading.Thread | None = None

    @classmethod
    def connect(cls, app_name: str = "trayagent", icon_path: str | None = None, *,
                on_action: ActionCallback | None = None, on_closed: ClosedCallback | None = None,
                address: str | None = None) -> DBusNotifyBackend:
        """Connect, ask the daemon what it can do, and listen for its signals; NotificationError if not."""
        try:
            conn = open_dbus_connection(address or session_bus_address())
        except NotificationError:
            raise
        except Exception as exc:  # noqa: BLE001 - no socket, refused, auth failure, bad address
            raise NotificationError(f"cannot reach the D-Bus session bus: {type(exc).__name__}: {exc}") from exc
        router = DBusRouter(conn)
        try:
            caps = _call(router, new_method_call(NOTIFICATIONS, "GetCapabilities"))[0]
            server = _call(router, new_method_call(NOTIFICATIONS, "GetServerInformation"))
            backend = cls(conn, router, frozenset(caps), tuple(str(s) for s in server), app_name,
                          icon_path, on_action, on_closed)
            backend._listen()
        except BaseException:
            _close_quietly(router, conn)
            raise
        log.info("notifications via %s, capabilities: %s", backend.name, ", ".join(sorted(caps)))
        return backend

    # ------------------------------------------------------------------ showing

    def send(self, note: Notification, replaces_id: int = 0, actions: Actions = ()) -> int:
        """Notify (replacing `replaces_id` when non-zero); returns the daemon's id for the note."""
        body = escape_markup(note.body) if self.markup else note.body
        flat: list[str] = []
        if self.actions:
            for key, label in actions:
                flat += [key, _utf8(label)]
        hints: dict[str, tuple[str, Any]] = {
            "desktop-entry": ("s", DESKTOP_ENTRY),
            "urgency": ("y", URGENCY.get(note.urgency, 1)),
        }
        if note.category:
            hints["category"] = ("s", note.category)
        title = _utf8(sanitize(note.title, TITLE_LIMIT) or "trayagent")
        msg = new_method_call(NOTIFICATIONS, "Notify", "susssasa{sv}i", (
            self._app_name, int(replaces_id) & 0xFFFFFFFF, self._icon, title, _utf8(body), flat, hints, -1,
        ))
        return int(_call(self._router, msg)[0])

    def close(self, notification_id: int) -> None:
        """Take a shown notification off the screen (CloseNotification)."""
        _call(self._router, new_method_call(NOTIFICATIONS, "CloseNotification", "u", (int(notification_id),)))

    def stop(self) -> None:
        """Stop listening and close the connection."""
        try:
            self._signals.put_nowait(None)
        except queue.Full:
            pass
        _close_quietly(self._router, self._conn)

    # ------------------------------------------------------------------ signals

    def _listen(self) -> None:
        """Subscribe to the daemon's signals and dispatch them on a thread of their own."""
        rule = MatchRule(type="signal", interface=INTERFACE, path=PATH)
        self._filter = self._router.filter(rule, queue=self._signals)  # type: ignore[arg-type]
        _call(self._router, message_bus.AddMatch(rule))
        self._owner = self._daemon_owner()
        self._listener = threading.Thread(target=self._dispatch_signals, name="trayagent-dbus-notify",
                                          daemon=True)
        self._listener.start()

    def _daemon_owner(self) -> str:
        """The unique bus name of the daemon now: only its signals are believed."""
        try:
            return str(_call(self._router, message_bus.GetNameOwner(BUS_NAME))[0])
        except NotificationError:
            return ""

    def _from_daemon(self, msg: Message) -> bool:
        sender = msg.header.fields.get(HeaderFields.sender, "")
        if sender and sender == self._owner:
            return True
        self._owner = self._daemon_owner()  # the daemon may have been restarted since
        return bool(sender) and sender == self._owner

    def _dispatch_signals(self) -> None:
        while True:
            msg = self._signals.get()
            if msg is None:
                return
            if msg.header.message_type is not MessageType.signal or not self._from_daemon(msg):
                continue
            member = msg.header.fields.get(HeaderFields.member)
            try:
                if member == "ActionInvoked" and self._on_action is not None:
                    nid, key = msg.body
                    self._on_action(int(nid), str(key))
                elif member == "NotificationClosed" and self._on_closed is not None:
                    self._on_closed(int(msg.body[0]))
            except Exception:  # noqa: BLE001 - a callback's failure never stops listening
                log.exception("notification %s handler failed", member)


def _utf8(text: str) -> str:
    """D-Bus strings must be valid UTF-8: lone surrogates from odd file names become '?'."""
    return encodable(text, "utf-8")


def _close_quietly(router: DBusRouter, conn: DBusConnection) -> None:
    for close in (router.close, conn.close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            log.debug("closing the D-Bus connection", exc_info=True)
