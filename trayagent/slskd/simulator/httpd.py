"""The loopback HTTP listener: reads each request off the socket, hands it to the simulator,
writes the answer (or drops the connection) the way Kestrel would.

Why stdlib and this careful: keep-alive, TCP_NODELAY, Content-Length limits and RST on abort
all change what a client sees; tests must meet the same as against a real slskd.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Protocol
from urllib.parse import parse_qs

from trayagent.slskd.simulator.state import RequestRecord
from trayagent.slskd.simulator.wire import IncomingRequest, Response, empty, error_500

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


class Backend(Protocol):
    """What the listener needs from the simulator behind it."""

    on_request: Callable[[str, str], None] | None

    def handle_request(self, request: IncomingRequest) -> Response: ...

    def record_request(self, rec: RequestRecord) -> None: ...

    def track_connection(self, conn: socket.socket, is_open: bool) -> None: ...


class Server(ThreadingHTTPServer):
    """One listener generation (a restart makes a new one on the same port)."""

    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not stall stop()
    allow_reuse_address = True  # rebind the same port after restart()
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self.closing = threading.Event()  # set when this listener generation goes away
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Kestrel
    server_version = "Kestrel"
    sys_version = ""
    server: Server
    timeout = 300

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without this, Nagle holds the body until the
        # client's delayed ACK (~40 ms per request on loopback), which Kestrel does not do.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.backend.track_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.backend.track_connection(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        backend = self.server.backend
        arrived = time.monotonic()
        raw_path, _, qs = self.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            backend.record_request(RequestRecord(method, raw_path, query, 400 if length < 0 else 413, arrived))
            self._write(empty(400 if length < 0 else 413))
            return
        body = self.rfile.read(length) if length else b""
        hook = backend.on_request
        if hook is not None:
            try:
                hook(method, raw_path)
            except Exception:
                log.exception("simulator on_request hook failed")
        try:
            request = IncomingRequest(method, raw_path, query, self.headers, body, self.server.closing)
            resp = backend.handle_request(request)
        except Exception as exc:  # a bug in the simulator must still answer like slskd would
            log.exception("simulator handler failed")
            resp = error_500(f"{type(exc).__name__}: {exc}")
        # Recorded before answering, so a client that got its response always finds it logged.
        record = RequestRecord(method, raw_path, query, 0 if resp.abort else resp.status, arrived, resp.auth)
        backend.record_request(record)
        if resp.abort:
            self._abort()
        else:
            self._write(resp)

    def _write(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            if resp.status != 204:
                if resp.ctype:
                    self.send_header("Content-Type", resp.ctype)
                self.send_header("Content-Length", str(len(resp.body)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if resp.body and resp.status != 204:
                self.wfile.write(resp.body)
        except OSError:  # the client went away (e.g. it timed out first)
            self.close_connection = True

    def _abort(self) -> None:
        """Close with RST and no response, like a crashed proxy or server."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
