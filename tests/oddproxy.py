"""A loopback HTTP proxy in front of the simulator that can answer the download list oddly.

It stands for what sits between a real agent and a real slskd (a reverse proxy, a captive
portal, a half-started server): a 200 whose body is not a download list. Everything else is
forwarded to the simulator unchanged, over real HTTP.
"""

from __future__ import annotations

import collections
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

LIST_PATH = "/api/v0/transfers/downloads"


class OddProxy:
    """`serve(body, content_type, count)` answers the next `count` download-list GETs with `body`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._odd: collections.deque[tuple[bytes, str]] = collections.deque()
        self._lock = threading.Lock()
        self.served_odd = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def do_DELETE(self) -> None:
                proxy._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]  # killed clients
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OddProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, body: bytes, content_type: str = "application/json; charset=utf-8", count: int = 1) -> None:
        with self._lock:
            self._odd.extend([(body, content_type)] * count)

    def pending(self) -> int:
        with self._lock:
            return len(self._odd)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        odd = None
        if method == "GET" and handler.path.split("?", 1)[0] == LIST_PATH:
            with self._lock:
                if self._odd:
                    odd = self._odd.popleft()
                    self.served_odd += 1
        if odd is not None:
            self._answer(handler, 200, odd[0], odd[1])
            return
        conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:  # slskd down or restarting behind the proxy: what a reverse proxy says
            self._answer(handler, 502, b"Bad Gateway", "text/plain")
            return
        finally:
            conn.close()
        self._answer(handler, resp.status, data, resp.getheader("Content-Type") or "")

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        try:
            handler.send_response(status)
            if content_type:
                handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if body:
                handler.wfile.write(body)
        except OSError:  # the client went away (a killed agent)
            handler.close_connection = True
