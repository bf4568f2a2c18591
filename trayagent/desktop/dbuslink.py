"""A jeepney D-Bus connection served by one receiver thread, for the StatusNotifierItem tray.

Replies go straight to the caller waiting for them; method calls and signals for us go to a
queue that the tray's dispatcher thread serves, so a handler may itself make calls on the bus.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from jeepney import HeaderFields, Message, MessageType
from jeepney.io.threading import ReceiveStopped, open_dbus_connection

from trayagent.desktop.trayview import TrayBackendError

log = logging.getLogger(__name__)
#: Seconds a method call waits for its reply.
CALL_TIMEOUT = 5.0


class Link:
    """A jeepney connection with a receiver thread: replies go to callers, the rest to a queue."""

    def __init__(self, bus: str) -> None:
        self.conn = open_dbus_connection(bus)
        self.incoming: queue.Queue[Message | None] = queue.Queue()
        self._waiting: dict[int, Future[Message]] = {}
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._receive, name="trayagent-sni-rx", daemon=True)
        self._thread.start()

    @property
    def unique_name(self) -> str:
        return str(self.conn.unique_name)

    def send(self, msg: Message) -> None:
        self.conn.send(msg)

    def call(self, msg: Message, timeout: float = CALL_TIMEOUT) -> Message:
        """Send a method call and wait for its reply; D-Bus errors raise TrayBackendError."""
        fut: Future[Message] = Future()
        with self._lock:
            if self.closed.is_set():
                raise TrayBackendError("the D-Bus connection is closed")
            serial = next(self.conn.outgoing_serial)
            self._waiting[serial] = fut
        try:
            self.conn.send(msg, serial=serial)
            reply = fut.result(timeout)
        finally:
            with self._lock:
                self._waiting.pop(serial, None)
        if reply.header.message_type is MessageType.error:
            detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise TrayBackendError(f"{reply.header.fields.get(HeaderFields.error_name)}: {detail}".strip(": "))
        return reply

    def _receive(self) -> None:
        try:
            while True:
                try:
                    msg = self.conn.receive()
                except TimeoutError:
                    continue  # jeepney's select can wake with nothing to read (EINTR): not an error
                serial = msg.header.fields.get(HeaderFields.reply_serial)
                with self._lock:
                    fut = self._waiting.get(serial) if serial is not None else None
                if fut is not None:
                    fut.set_result(msg)
                elif msg.header.message_type in (MessageType.method_call, MessageType.signal):
                    self.incoming.put(msg)
        except ReceiveStopped:
            pass
        except Exception as exc:  # noqa: BLE001 - the bus went away: the tray falls down the ladder
            if self._closing:
                return
            log.warning("D-Bus connection lost: %r", exc)
            log.debug("D-Bus receive failure", exc_info=True)
        finally:
            with self._lock:
                self.closed.set()
                waiting, self._waiting = self._waiting, {}
            for fut in waiting.values():
                fut.set_exception(TrayBackendError("the D-Bus connection closed"))
            self.incoming.put(None)

    def close(self) -> None:
        self._closing = True
        self.conn.close()
        self._thread.join(timeout=5)
