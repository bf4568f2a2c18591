"""A loopback HTTP server that speaks slskd 0.26's REST dialect, for demos, tests and benchmarks.

Why it exists: the agent must be exercised against the exact wire format slskd produces
(camelCase, omitted nulls, flag-string states, mixed `Z`/no-`Z` timestamps, empty-bodied 4xx,
JSON-string 500s) and against the awkward things slskd does (restarts that error every
in-flight transfer and re-enqueue them under new ids, supersede-on-re-request, soft removal).
Every behaviour follows /work/shared/slskd-api.md; where that reference is silent the choice
is documented at the spot.

Stdlib only: `ThreadingHTTPServer` in a daemon thread, one clock thread for time-driven plans.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import hashlib
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import parse_qs, unquote

log = logging.getLogger(__name__)

VERSION = "0.26.0.0"
DEFAULT_API_KEY = "sim-key-0123456789abcdef"

#: Soulseek.NET TransferStates flag values (reference section 2).
FLAG_VALUES: dict[str, int] = {
    "None": 0, "Requested": 1, "Queued": 2, "Initializing": 4, "InProgress": 8, "Completed": 16,
    "Succeeded": 32, "Cancelled": 64, "TimedOut": 128, "Errored": 256, "Rejected": 512,
    "Aborted": 1024, "Locally": 2048, "Remotely": 4096,
}
#: TransferStateCategories.Completed: what `DELETE downloads/all/completed` and `remove=true` accept.
COMPLETED_SET = frozenset({16, 48, 80, 144, 272, 528, 1040})
SHUTDOWN_EXCEPTION = "Application shut down"
FAULT_KINDS = frozenset({"500", "broken_json", "reset", "401", "403", "404", "timeout", "503"})
#: TransfersController's enqueue limiter (SemaphoreSlim(2, 2)): a third concurrent POST gets 429.
ENQUEUE_CONCURRENCY = 2
ENQUEUE_BUSY_MESSAGE = "Only one concurrent operation is permitted. Wait until the previous request completes"
#: DownloadService.EnqueueAsync's check; an ArgumentException's message names its parameter.
DUPLICATE_FILES_MESSAGE = "Two or more files in request are duplicated (Parameter 'files')"

TICK = 0.05  # clock thread period, seconds
INIT_SECONDS = 0.3  # how long a plan's transfer step shows "Initializing" (scaled by speedup)
MAX_BODY = 16 * 1024 * 1024
_GUID_RE = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}"
    r"|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}"
    r"|\([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\))$"
)

Step = tuple[Any, ...]
Matcher = str | Callable[[str], bool]


class RequestRecord(NamedTuple):
    """One request as the simulator saw it. `auth` names the credential kind, never its value."""

    method: str
    path: str  # raw request path as sent (includes url_base), without the query string
    query: dict[str, str]
    status: int  # 0 when the connection was dropped without a response
    at: float  # time.monotonic() when the request arrived
    auth: str | None = None  # "api-key", "bearer", "none" (auth disabled), "invalid" or None


class SimulatorError(RuntimeError):
    """Misuse of the simulator's Python API."""


# --------------------------------------------------------------------------- formatting


def flags_value(state: str) -> int:
    """Numeric TransferStates value of a flag string; unknown names count as 0."""
    return sum(FLAG_VALUES.get(part.strip(), 0) for part in state.split(",") if part.strip())


def _flags(state: str) -> set[str]:
    return {part.strip() for part in state.split(",") if part.strip()}


def is_completed(state: str) -> bool:
    """slskd's terminal test: the Completed flag is set."""
    return "Completed" in _flags(state)


def format_time(epoch: float, utc_z: bool) -> str:
    """A DateTime as System.Text.Json writes it: ISO 8601, up to 7 fractional digits with trailing
    zeros trimmed (none on a whole second); `Z` only for UTC-kind values."""
    whole = math.floor(epoch)
    ticks = int(round((epoch - whole) * 10_000_000))
    if ticks >= 10_000_000:
        whole, ticks = whole + 1, ticks - 10_000_000
    stamp = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ticks:07d}".rstrip("0")
    return f"{stamp}{'.' + frac if frac else ''}{'Z' if utc_z else ''}"


def format_timespan(seconds: float) -> str:
    """.NET TimeSpan constant ("c") format: [-][d.]hh:mm:ss[.fffffff]."""
    neg = seconds < 0
    ticks = int(round(abs(seconds) * 10_000_000))
    days, rem = divmod(ticks, 864_000_000_000)
    hours, rem = divmod(rem, 36_000_000_000)
    minutes, rem = divmod(rem, 600_000_000)
    secs, frac = divmod(rem, 10_000_000)
    out = f"{'-' if neg else ''}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{secs:02d}"
    return out + (f".{frac:07d}" if frac else "")


def dotnet_number(value: float) -> float | int:
    """System.Text.Json writes integral doubles without a fraction ("3", not "3.0")."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _dumps(obj: Any) -> bytes:
    # ensure_ascii mirrors .NET's default encoder, which escapes every non-ASCII character.
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _directory(filename: str) -> str:
    """Remote directory part of a filename: everything before the last '\\' or '/'."""
    cut = max(filename.rfind("\\"), filename.rfind("/"))
    return filename[:cut] if cut >= 0 else ""


def _has_traversal(filename: str) -> bool:
    return any(seg == ".." for seg in re.split(r"[\\/]", filename))


def _parse_guid(text: str) -> str | None:
    """Normalise the GUID spellings .NET's Guid.Parse accepts; None if it is not one."""
    if not _GUID_RE.match(text):
        return None
    return str(uuid.UUID(text.strip("{}()")))


def _parse_bool(value: str | None, default: bool) -> bool | None:
    """ASP.NET bool model binding: true/false, case-insensitive; None means a 400."""
    if value is None or value == "":
        return default
    low = value.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return None


def _wall(mono: float) -> float:
    """Convert a monotonic instant to epoch seconds (plans run on the monotonic clock)."""
    return time.time() - (time.monotonic() - mono)


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Record:
    """One download as slskd stores it; `to_json` renders the 0.26 REST shape."""

    id: str
    username: str
    filename: str
    size: int
    state: str
    requested_at: float
    enqueued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    bytes_transferred: int = 0
    average_speed: float = 0.0
    place_in_queue: int | None = None
    exception: str | None = None
    attempts: int = 1
    removed: bool = False

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        out: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "direction": "Download",
            "filename": self.filename,
            "size": self.size,
            "state": self.state,
            "requestedAt": format_time(self.requested_at, False),
        }
        if self.enqueued_at is not None:
            out["enqueuedAt"] = format_time(self.enqueued_at, False)
        if self.started_at is not None:
            out["startedAt"] = format_time(self.started_at, True)
        if self.ended_at is not None:
            out["endedAt"] = format_time(self.ended_at, True)
        out["bytesTransferred"] = self.bytes_transferred
        out["averageSpeed"] = dotnet_number(self.average_speed)
        if self.place_in_queue is not None:
            out["placeInQueue"] = self.place_in_queue
        if self.exception is not None:
            out["exception"] = self.exception
        out["attempts"] = self.attempts
        out["removed"] = self.removed
        remaining = self.size - self.bytes_transferred
        out["bytesRemaining"] = remaining
        if self.started_at is not None:
            end = self.ended_at if self.ended_at is not None else now
            out["elapsedTime"] = format_timespan(max(end - self.started_at, 0.0))
        out["percentComplete"] = dotnet_number(self.bytes_transferred / self.size * 100) if self.size else 0
        if self.average_speed > 0:
            out["remainingTime"] = format_timespan(remaining / self.average_speed)
        return out


@dataclass(slots=True)
class _Plan:
    """A scripted life for one transfer, advanced by the clock thread."""

    tid: str
    steps: list[Step]
    idx: int = 0
    started: float | None = None  # monotonic start of the current step
    entered: bool = False
    base_bytes: int = 0
    last_state: str | None = None

    def reset_to(self, idx: int, started: float | None) -> None:
        self.idx, self.started, self.entered, self.base_bytes = idx, started, False, 0


@dataclass(slots=True)
class _Search:
    id: str
    text: str
    token: int
    started_mono: float
    started_wall: float
    all_responses: list[dict[str, Any]]
    arrivals: list[float]  # seconds after the start at which each response arrives
    timeout: float  # searchTimeout: the search ends this long after the last response
    response_limit: int
    file_limit: int
    state: str = "InProgress"
    complete: bool = False
    ended_wall: float | None = None
    received: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, include_responses: bool) -> dict[str, Any]:
        # slskd's Search record: no request options; StartedAt/EndedAt are UTC (Z).
        out: dict[str, Any] = {
            "fileCount": sum(len(r.get("files", [])) for r in self.received),
            "id": self.id,
            "isComplete": self.complete,
            "lockedFileCount": sum(len(r.get("lockedFiles", [])) for r in self.received),
            "responseCount": len(self.received),
            # Responses are only persisted once a search finishes (reference section 4).
            "responses": copy.deepcopy(self.received) if include_responses and self.complete else [],
            "searchText": self.text,
            "startedAt": _search_time(self.started_wall),
            "state": self.state,
            "token": self.token,
        }
        if self.ended_wall is not None:
            out["endedAt"] = _search_time(self.ended_wall)
        return out


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    ctype: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    abort: bool = False  # drop the connection without answering
    auth: str | None = None


def _json(status: int, obj: Any) -> _Response:
    return _Response(status, _dumps(obj), "application/json; charset=utf-8")


def _empty(status: int) -> _Response:
    return _Response(status)


def _error_500(message: str) -> _Response:
    """Unhandled exceptions: 500 with a JSON string body (reference section 0)."""
    return _json(500, message)


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not stall stop()
    allow_reuse_address = True  # rebind the same port after restart()
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.closing = threading.Event()  # set when this listener generation goes away
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Kestrel
    server_version = "Kestrel"
    sys_version = ""
    server: _Server
    timeout = 300

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without this, Nagle holds the body until the
        # client's delayed ACK (~40 ms per request on loopback), which Kestrel does not do.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
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
        sim = self.server.sim
        arrived = time.monotonic()
        raw_path, _, qs = self.path.partition("?")
        query = {k: v[0] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            sim._record(RequestRecord(method, raw_path, query, 400 if length < 0 else 413, arrived))
            self._write(_empty(400 if length < 0 else 413))
            return
        body = self.rfile.read(length) if length else b""
        hook = sim.on_request
        if hook is not None:
            try:
                hook(method, raw_path)
            except Exception:
                log.exception("simulator on_request hook failed")
        try:
            resp = sim._handle(method, raw_path, query, self.headers, body, self.server.closing)
        except Exception as exc:  # a bug in the simulator must still answer like slskd would
            log.exception("simulator handler failed")
            resp = _error_500(f"{type(exc).__name__}: {exc}")
        # Recorded before answering, so a client that got its response always finds it logged.
        sim._record(RequestRecord(method, raw_path, query, 0 if resp.abort else resp.status, arrived, resp.auth))
        if resp.abort:
            self._abort()
        else:
            self._write(resp)

    def _write(self, resp: _Response) -> None:
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


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """An in-process fake slskd. Start it, script it through the Python API, point clients at `url`."""

    def __init__(
        self,
        api_key: str | None = DEFAULT_API_KEY,
        url_base: str = "",
        username: str = "slskd",
        password: str = "slskd",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        base = "/" + url_base.strip("/") if url_base.strip("/") else ""
        self.url_base = base
        self.username = username
        self.password = password
        self.soulseek_username = "trayagent-sim"
        self.speedup = 1.0
        self.search_duration = 0.3
        #: What GET /api/v0/options reports as directories.downloads / .incomplete.
        self.downloads_dir = "/app/downloads"
        self.incomplete_dir = "/app/incomplete"
        self.timeout_fault_seconds = 30.0
        #: What slskd's version check found (None: not checked yet, as with --no-version-check).
        self.latest_version: str | None = VERSION
        #: How long a cancel takes to land on a live transfer (slskd cancels a token; the task fails
        #: asynchronously). 0 = the "stuck record" path: cancelled at once.
        self.cancel_delay = 0.1
        #: Plan given to every transfer created by the legacy enqueue endpoint (None = stay queued).
        self.enqueue_plan: list[Step] | None = None
        #: Seconds an enqueue POST for a peer takes before slskd answers (looking the peer up and
        #: connecting to it); see set_enqueue_delay. Not divided by `speedup`.
        self.enqueue_delays: dict[str, float] = {}
        self.searches_made: list[str] = []
        #: Called as on_request(method, raw_path) before each request is handled, so a test can
        #: change state at exactly that moment (races). Exceptions are logged and ignored.
        self.on_request: Callable[[str, str], None] | None = None

        self._lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        self._by_key: dict[tuple[str, str], list[str]] = {}
        self._plans: dict[str, _Plan] = {}
        self._suspended: dict[str, _Plan] = {}  # old tid -> plan, across a restart
        self._cancelling: dict[str, float] = {}  # tid -> monotonic time the cancel lands
        self._searches: dict[str, _Search] = {}
        self._search_rules: list[tuple[Matcher, list[dict[str, Any]]]] = []
        self._search_token = random.randint(10_000, 90_000)
        self._faults: collections.deque[str] = collections.deque()
        self._user_faults: dict[str, collections.deque[str]] = {}  # GET downloads/{username} only
        self._busy = 0
        self._enqueues_running = 0
        self._request_local = threading.local()  # the listener generation serving this thread
        self._offline: set[str] = set()
        self._logged_in = True
        self._relogging = False
        self._tokens: dict[str, float] = {}
        self._jwt_secret = os.urandom(32)
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=200_000)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

        self._port = port
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._clock_thread: threading.Thread | None = None
        self._restart_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._life = threading.Lock()  # serialises listen/close between stop() and a restart
        self._started = False
        self._up = False
        self._paused_at: float | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL including url_base; empty before start()."""
        return f"http://127.0.0.1:{self._port}{self.url_base}" if self._started else ""

    @property
    def is_up(self) -> bool:
        """Whether the listener accepts connections (False during a restart's downtime)."""
        return self._up

    def start(self) -> str:
        """Bind 127.0.0.1 (the given port or a free one), start serving, return the base URL."""
        if self._started:
            raise SimulatorError("simulator already started")
        self._stop.clear()
        with self._life:
            self._listen()
        self._started = True
        self._clock_thread = threading.Thread(target=self._clock, name="sim-clock", daemon=True)
        self._clock_thread.start()
        log.info("slskd simulator listening at %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop everything promptly; idempotent. Blocked handlers (timeout fault) are released."""
        if not self._started:
            return
        self._stop.set()
        with self._life:
            self._close_listener()
        for thread in (self._clock_thread, self._restart_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._started = False
        log.info("slskd simulator stopped")

    def __enter__(self) -> Simulator:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        deadline = time.monotonic() + 3.0
        while True:
            try:
                server = _Server(("127.0.0.1", self._port), self)
                break
            except OSError:
                # After restart() the old socket may linger for a moment; keep trying briefly.
                if self._port == 0 or time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(0.05)
        self._port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-http", daemon=True
        )
        thread.start()
        self._server, self._serve_thread = server, thread
        self._up = True

    def _close_listener(self) -> None:
        server, thread = self._server, self._serve_thread
        self._server, self._serve_thread = None, None
        self._up = False
        if server is None:
            return
        server.closing.set()
        server.shutdown()
        server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # a restarted slskd drops every open connection too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=2.0)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of every request seen so far (no header values are ever kept)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)
        log.debug("%s %s -> %s", rec.method, rec.path, rec.status)

    # ------------------------------------------------------------------ transfers API

    def add_download(
        self,
        username: str,
        filename: str,
        size: int,
        state: str = "Queued, Remotely",
        bytes_transferred: int = 0,
        exception: str | None = None,
        speed: float = 0.0,
        ended_ago: float | None = None,
        *,
        attempts: int = 1,
        supersede: bool = True,
    ) -> str:
        """Insert a download record directly; returns its new GUID.

        Like every new slskd record, it supersedes (soft-removes) older non-removed records for
        the same (username, filename) unless `supersede=False`. A `Completed, Succeeded` record
        given no byte count gets all of them.
        """
        now = time.time()
        end = now - (ended_ago or 0.0)
        flags = _flags(state)
        if "Succeeded" in flags and not bytes_transferred:
            bytes_transferred = int(size)
        duration = bytes_transferred / speed if speed > 0 else (5.0 if bytes_transferred else 0.0)
        with self._lock:
            rec = self._new_record(username, filename, int(size), state, supersede=supersede)
            rec.requested_at = now
            rec.attempts = attempts
            rec.bytes_transferred = int(bytes_transferred)
            rec.average_speed = float(speed)
            rec.exception = exception
            if "Completed" in flags:
                rec.ended_at = end
                if bytes_transferred or "Succeeded" in flags:
                    rec.started_at = end - duration
                first = (rec.started_at if rec.started_at is not None else end) - 2.0
                rec.requested_at, rec.enqueued_at = first - 1.0, first
            elif flags & {"InProgress", "Initializing"}:
                rec.started_at = now - duration
                rec.requested_at, rec.enqueued_at = rec.started_at - 3.0, rec.started_at - 2.0
            elif "Remotely" in flags:
                rec.enqueued_at = now
            return rec.id

    def set_state(
        self, tid: str, state: str, bytes_transferred: int | None = None, exception: str | None = None
    ) -> None:
        """Move a transfer to `state`, stamping enqueuedAt/startedAt/endedAt as slskd would.

        `Completed, Succeeded` without an explicit byte count means every byte arrived.
        """
        with self._lock:
            rec = self._get_record(tid)
            if bytes_transferred is not None:
                rec.bytes_transferred = int(bytes_transferred)
            elif _flags(state) >= {"Completed", "Succeeded"}:
                rec.bytes_transferred = rec.size
            self._apply_state(rec, state, time.time())
            if exception is not None:
                rec.exception = exception

    def progress(self, tid: str, bytes_transferred: int) -> None:
        """An in-progress update: moves to InProgress if needed and recomputes averageSpeed."""
        now = time.time()
        with self._lock:
            rec = self._get_record(tid)
            if "InProgress" not in _flags(rec.state):
                self._apply_state(rec, "InProgress", now)
            rec.bytes_transferred = int(bytes_transferred)
            elapsed = now - (rec.started_at or now)
            if elapsed > 0:
                rec.average_speed = rec.bytes_transferred / elapsed

    def get(self, tid: str) -> dict[str, Any]:
        """The transfer exactly as served by GET downloads/{u}/{id} (removed ones included)."""
        with self._lock:
            return self._get_record(tid).to_json()

    def transfers(self, include_removed: bool = False) -> list[dict[str, Any]]:
        """Every download in insertion order, flattened."""
        now = time.time()
        with self._lock:
            return [r.to_json(now) for r in self._records.values() if include_removed or not r.removed]

    def enqueue(self, username: str, files: Iterable[tuple[str, int]]) -> dict[str, Any]:
        """The legacy POST's effect, minus the HTTP-only 429/offline checks: {enqueued, failed}."""
        items = [{"filename": f, "size": int(s)} for f, s in files]
        if not items or any(_has_traversal(i["filename"]) for i in items):
            raise ValueError("empty file list or '..' traversal")
        with self._lock:
            enqueued, failed = self._enqueue(username, items)
        return {"enqueued": enqueued, "failed": failed}

    def delete(self, tid: str) -> None:
        """Hard-delete a record (as if slskd's database lost it): gone even by id."""
        with self._lock:
            rec = self._records.pop(tid)
            ids = self._by_key.get((rec.username, rec.filename), [])
            if tid in ids:
                ids.remove(tid)
            self._plans.pop(tid, None)
            self._cancelling.pop(tid, None)

    def _get_record(self, tid: str) -> _Record:
        rec = self._records.get(tid)
        if rec is None:
            raise KeyError(tid)
        return rec

    def _new_record(self, username: str, filename: str, size: int, state: str, *, supersede: bool) -> _Record:
        key = (username, filename)
        if supersede:
            for old in self._by_key.get(key, []):
                self._records[old].removed = True
        rec = _Record(str(uuid.uuid4()), username, filename, size, state, time.time())
        self._records[rec.id] = rec
        self._by_key.setdefault(key, []).append(rec.id)
        return rec

    def _apply_state(self, rec: _Record, state: str, when: float) -> None:
        flags = _flags(state)
        if "Remotely" in flags and rec.enqueued_at is None:
            rec.enqueued_at = when
        if "InProgress" in flags and rec.started_at is None:
            rec.started_at = when
        if state != "Queued, Locally":
            rec.attempts = max(rec.attempts, 1)  # an attempt is under way (or has failed)
        if "Completed" in flags:
            if rec.ended_at is None or not is_completed(rec.state):
                rec.ended_at = when
            if rec.average_speed == 0 and rec.started_at is not None and rec.bytes_transferred:
                rec.average_speed = rec.bytes_transferred / max(when - rec.started_at, 1e-3)
        elif state != "Queued, Locally":
            rec.ended_at = None
            rec.exception = None  # the next attempt starts clean
        # else: waiting for slskd's next retry, the failed attempt's endedAt and exception stay
        rec.place_in_queue = None  # dropped whenever the record is rewritten
        rec.state = state

    def _enqueue(self, username: str, items: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
        enqueued: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        new_ids: list[str] = []
        for item in items:
            filename, size = item["filename"], int(item["size"])
            active = [
                self._records[t] for t in self._by_key.get((username, filename), [])
                if not self._records[t].removed and not is_completed(self._records[t].state)
            ]
            if active:  # "Skipped: Already in progress"; a C# tuple serialises as {}
                failed.append({})
                continue
            rec = self._new_record(username, filename, size, "Queued, Locally", supersede=True)
            rec.attempts = 0  # no attempt has started yet (the first one makes it 1)
            new_ids.append(rec.id)
            enqueued.append(rec.to_json())
        if self.enqueue_plan:
            for tid in new_ids:
                self._plans[tid] = _Plan(tid, list(self.enqueue_plan))
        return enqueued, failed

    # ------------------------------------------------------------------ plans

    def plan(self, tid: str, steps: Sequence[Step]) -> None:
        """Script a transfer's life (run by the clock thread); replaces any plan it had.

        Steps: ("state", s, hold), ("wait", secs), ("transfer", bps[, until_bytes]),
        ("end", s[, exception]), ("attempt",), ("attempts", n), ("remove",).
        Durations are divided by, and speeds multiplied by, `speedup`. The plan stops when the
        transfer is removed or ended from outside (e.g. cancelled over HTTP).
        """
        checked = [tuple(s) for s in steps]
        for step in checked:
            if not step or step[0] not in {"state", "wait", "transfer", "end", "attempt", "attempts", "remove"}:
                raise ValueError(f"unknown plan step {step!r}")
            if step[0] in {"state", "end"} and (len(step) < 2 or not isinstance(step[1], str)):
                raise ValueError(f"plan step {step!r} needs a state string")
            if step[0] in {"transfer", "wait", "attempts"} and len(step) < 2:
                raise ValueError(f"plan step {step!r} needs a number")
        with self._lock:
            self._get_record(tid)
            self._plans[tid] = _Plan(tid, checked)

    def scenario_done(self) -> bool:
        """True when no plan is running or waiting out a restart (the demo has played out)."""
        with self._lock:
            return not (self._plans or self._suspended or self._cancelling) and self._restart_thread is None

    def _clock(self) -> None:
        while not self._stop.wait(TICK):
            try:
                with self._lock:
                    if self._paused_at is None:
                        self._tick(time.monotonic())
            except Exception:  # keep the clock alive; a broken plan is dropped below
                log.exception("simulator clock tick failed")

    def _tick(self, now: float) -> None:
        for tid, plan in list(self._plans.items()):
            try:
                keep = self._run_plan(plan, now)
            except Exception:
                log.exception("plan for %s failed; dropping it", tid)
                keep = False
            if not keep:
                self._plans.pop(tid, None)
        for tid, due in list(self._cancelling.items()):
            if now >= due:
                self._land_cancel(tid, _wall(due))
        self._advance_searches(now)

    def _land_cancel(self, tid: str, when: float) -> None:
        self._cancelling.pop(tid, None)
        rec = self._records.get(tid)
        if rec is None or is_completed(rec.state):
            return
        if rec.state == "Queued, Locally" and rec.exception is not None:
            # Waiting between slskd's own retries: the cancelled wait fails the retry loop, and
            # TryFail keeps the earlier attempt's endedAt and exception (Common/Retry.cs).
            rec.state = "Completed, Errored"
            rec.place_in_queue = None
            return
        self._apply_state(rec, "Completed, Cancelled", when)

    def _plan_set(self, plan: _Plan, rec: _Record, state: str, mono: float) -> None:
        self._apply_state(rec, state, _wall(mono))
        plan.last_state = state

    def _run_plan(self, plan: _Plan, now: float) -> bool:
        rec = self._records.get(plan.tid)
        if rec is None or rec.removed:
            return False
        if rec.state != plan.last_state and is_completed(rec.state) and plan.last_state is not None:
            return False  # cancelled (or otherwise ended) from outside
        if plan.started is None:
            plan.started = now
        speed = max(float(self.speedup), 1e-9)
        while plan.idx < len(plan.steps):
            step = plan.steps[plan.idx]
            kind, t0 = step[0], plan.started
            if kind in ("state", "wait"):
                if kind == "state" and not plan.entered:
                    self._plan_set(plan, rec, step[1], t0)
                    plan.entered = True
                hold = float(step[2]) if kind == "state" and len(step) > 2 else float(step[1]) if kind == "wait" else 0.0
                end = t0 + hold / speed
                if now < end:
                    return True
                plan.reset_to(plan.idx + 1, end)
            elif kind == "transfer":
                bps = float(step[1]) * speed
                target = min(int(step[2]), rec.size) if len(step) > 2 else rec.size
                if not plan.entered:
                    self._plan_set(plan, rec, "Initializing", t0)
                    plan.base_bytes = rec.bytes_transferred
                    plan.entered = True
                init_end = t0 + INIT_SECONDS / speed
                if now < init_end:
                    return True
                if rec.state != "InProgress":
                    self._plan_set(plan, rec, "InProgress", init_end)
                    rec.average_speed = bps
                if bps <= 0:
                    return True  # stalled for good
                done_at = init_end + max(target - plan.base_bytes, 0) / bps
                upto = min(now, done_at)
                rec.bytes_transferred = max(
                    rec.bytes_transferred, min(target, plan.base_bytes + int((upto - init_end) * bps))
                )
                if now < done_at:
                    return True
                rec.bytes_transferred = max(rec.bytes_transferred, target)
                plan.reset_to(plan.idx + 1, done_at)
            elif kind == "end":
                self._plan_set(plan, rec, step[1], t0)
                if len(step) > 2 and step[2] is not None:
                    rec.exception = str(step[2])
                if step[1] == "Completed, Succeeded":
                    rec.bytes_transferred = max(rec.bytes_transferred, rec.size)
                plan.reset_to(plan.idx + 1, t0)
            elif kind == "attempt":  # slskd 0.25+ retry: same id, attempts + 1, back to the queue
                rec.attempts += 1
                rec.started_at = None
                self._plan_set(plan, rec, "Queued, Locally", t0)
                plan.reset_to(plan.idx + 1, t0)
            elif kind == "attempts":
                rec.attempts = int(step[1])
                plan.reset_to(plan.idx + 1, t0)
            elif kind == "remove":
                rec.removed = True
                return False
        return False

    # ------------------------------------------------------------------ faults, state knobs

    def fault(self, kind: str, count: int = 1) -> None:
        """The next `count` requests to /api/v0/transfers* misbehave as `kind`.

        Faults queue up in call order; `count=0` withdraws every pending fault of that kind.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            if count <= 0:
                self._faults = collections.deque(f for f in self._faults if f != kind)
            else:
                self._faults.extend([kind] * count)

    def fault_user(self, username: str, kind: str, count: int = 1) -> None:
        """The next `count` GETs of one peer's list (transfers/downloads/{username}) misbehave as
        `kind`, while every other request answers; `count=0` withdraws them."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            if count <= 0:
                self._user_faults.pop(username, None)
            else:
                self._user_faults.setdefault(username, collections.deque()).extend([kind] * count)

    def _take_user_fault(self, method: str, parts: list[str], low: list[str]) -> str | None:
        if method != "GET" or len(low) != 5 or low[3] != "downloads" or not self._user_faults:
            return None
        queue = self._user_faults.get(unquote(parts[4]))
        return queue.popleft() if queue else None

    def pending_faults(self) -> int:
        """How many injected faults have not been consumed yet."""
        with self._lock:
            return len(self._faults) + sum(len(q) for q in self._user_faults.values())

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._user_faults.clear()

    def set_logged_in(self, logged_in: bool) -> None:
        with self._lock:
            self._logged_in = bool(logged_in)

    def set_user_offline(self, username: str, offline: bool = True) -> None:
        with self._lock:
            (self._offline.add if offline else self._offline.discard)(username)

    def set_enqueue_delay(self, username: str, seconds: float) -> None:
        """Make enqueue POSTs for this peer answer only after `seconds` (0 removes the delay).

        slskd answers an enqueue once it has looked the peer up and connected to it, which can
        take its whole connect timeout (10 s) and more; a client must wait long enough.
        """
        with self._lock:
            if seconds > 0:
                self.enqueue_delays[username] = float(seconds)
            else:
                self.enqueue_delays.pop(username, None)

    def busy(self, count: int = 1) -> None:
        """The next `count` enqueue/search POSTs get 429 (slskd's concurrency limiter)."""
        with self._lock:
            self._busy += count

    def expire_tokens(self) -> None:
        """Invalidate every issued JWT, so clients must log in again after a 401."""
        with self._lock:
            self._tokens.clear()
            self._jwt_secret = os.urandom(32)

    # ------------------------------------------------------------------ restart

    def restart(self, downtime: float = 1.0, relogin_delay: float = 0.5, reenqueue: bool = True) -> threading.Event:
        """Mimic an slskd restart; the listener is closed when this returns, the rest runs in background.

        Returns an Event that is set once the restart has fully played out (incl. re-enqueue).
        """
        if not self._started:
            raise SimulatorError("simulator not started")
        done = threading.Event()
        with self._lock:
            if self._restart_thread is not None:
                raise SimulatorError("a restart is already in progress")
            self._paused_at = time.monotonic()
            self._tokens.clear()  # the JWT signing key is regenerated at every start
            self._jwt_secret = os.urandom(32)
            thread = threading.Thread(
                target=self._restart_run, args=(downtime, relogin_delay, reenqueue, done),
                name="sim-restart", daemon=True,
            )
            self._restart_thread = thread
        with self._life:
            self._close_listener()
        log.info("simulated slskd restart: down for %.2fs", downtime)
        thread.start()
        return done

    def _restart_run(self, downtime: float, relogin_delay: float, reenqueue: bool, done: threading.Event) -> None:
        try:
            if self._stop.wait(downtime):
                return
            with self._lock:
                casualties = self._shutdown_casualties()
                self._relogging = True
            try:
                with self._life:
                    if self._stop.is_set():
                        return
                    self._listen()
            except OSError:
                log.exception("simulator could not listen again on port %d", self._port)
                return
            with self._lock:
                paused = time.monotonic() - (self._paused_at or time.monotonic())
                for plan in self._plans.values():  # plans not hit by the restart resume where they were
                    if plan.started is not None:
                        plan.started += paused
                self._paused_at = None
            if self._stop.wait(relogin_delay):
                return
            with self._lock:
                self._relogging = False
                if reenqueue:
                    self._reenqueue(casualties)
                self._suspended.clear()
        finally:
            with self._lock:
                self._restart_thread = None
                self._paused_at = None
            done.set()

    def _shutdown_casualties(self) -> list[str]:
        """What slskd does at startup: every unfinished transfer becomes `Completed, Errored`."""
        now = time.time()
        casualties: list[str] = []
        for rec in self._records.values():
            if rec.removed or (rec.ended_at is not None and is_completed(rec.state)):
                continue
            self._apply_state(rec, "Completed, Errored", now)
            rec.ended_at = now
            rec.exception = SHUTDOWN_EXCEPTION
            casualties.append(rec.id)
            self._cancelling.pop(rec.id, None)
            plan = self._plans.pop(rec.id, None)
            if plan is not None:
                self._suspended[rec.id] = plan
        for search in self._searches.values():
            if not search.complete:
                search.state, search.complete, search.ended_wall = "Completed, TimedOut", True, now
                search.received = []
        return casualties

    def _reenqueue(self, casualties: list[str]) -> None:
        now = time.monotonic()
        for old_id in casualties:
            old = self._records[old_id]
            plan = self._suspended.pop(old_id, None)
            if old.removed:  # the user removed it while slskd was logging in
                continue
            new = self._new_record(old.username, old.filename, old.size, "Queued, Locally", supersede=True)
            if plan is not None:
                transfer_steps = [i for i, s in enumerate(plan.steps[: plan.idx + 1]) if s[0] == "transfer"]
                resume = transfer_steps[-1] if transfer_steps else plan.idx
                new_plan = _Plan(new.id, plan.steps)
                new_plan.reset_to(resume, now)
                new_plan.last_state = new.state
                self._plans[new.id] = new_plan
            elif self.enqueue_plan:  # slskd re-enqueues through the normal enqueue path
                self._plans[new.id] = _Plan(new.id, list(self.enqueue_plan))
            log.debug("re-enqueued %s as %s", old_id, new.id)

    # ------------------------------------------------------------------ searches

    def add_search_results(self, matcher: Matcher | None, responses: list[dict[str, Any]]) -> None:
        """Peers and their shares. Like real peers, each answers a search only with the files
        whose path holds every query word (see `_peer_files`). `matcher` narrows further which
        search texts they see at all (str = case-insensitive substring; None = every search).
        """
        with self._lock:
            self._search_rules.append((matcher, copy.deepcopy(responses)))

    def _responses_for(self, text: str, token: int) -> list[dict[str, Any]]:
        terms, exclusions = _query_terms(text)
        out: list[dict[str, Any]] = []
        for matcher, responses in self._search_rules:
            if matcher is not None:
                hit = matcher.lower() in text.lower() if isinstance(matcher, str) else bool(matcher(text))
                if not hit:
                    continue
            for resp in responses:
                files = _peer_files(resp.get("files", []), terms, exclusions)
                locked = _peer_files(resp.get("lockedFiles", []), terms, exclusions)
                if files or locked:
                    out.append(_normalise_response({**resp, "files": files, "lockedFiles": locked}, token))
        return out

    def _advance_searches(self, now: float) -> None:
        """Responses arrive over `search_duration`; a search ends `searchTimeout` after the last
        one (slskd restarts its timeout on every response), or at the response/file limit."""
        for search in self._searches.values():
            if search.complete:
                continue
            elapsed = now - search.started_mono
            received, files, end, state = 0, 0, None, None
            for i, at in enumerate(search.arrivals):
                if at > elapsed:
                    break
                received = i + 1
                files += len(search.all_responses[i].get("files", []))
                if received >= search.response_limit:
                    end, state = at, "Completed, ResponseLimitReached"
                    break
                if files >= search.file_limit:
                    end, state = at, "Completed, FileLimitReached"
                    break
            search.received = search.all_responses[:received]
            if end is None:
                last = search.arrivals[-1] if search.arrivals else 0.0
                if received == len(search.arrivals) and elapsed >= last + search.timeout:
                    end, state = last + search.timeout, "Completed, TimedOut"
            if end is not None and state is not None:
                search.complete, search.state = True, state
                search.ended_wall = _wall(search.started_mono + end)

    # ------------------------------------------------------------------ scenarios

    def load_scenario(self, name: str) -> None:
        """"demo": a realistic ~85 s session (scaled by `speedup`); "idle": nothing."""
        if name == "idle":
            return
        if name != "demo":
            raise ValueError(f"unknown scenario {name!r}; expected 'demo' or 'idle'")
        _load_demo(self)

    # ------------------------------------------------------------------ HTTP dispatch

    def _handle(
        self,
        method: str,
        raw_path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        closing: threading.Event,
    ) -> _Response:
        self._request_local.closing = closing
        base = self.url_base
        # slskd's UsePathBase strips the base from a path that starts with it (case-insensitive,
        # whole segments) and serves every other path unchanged: both spellings work.
        if base and (raw_path.lower() == base.lower() or raw_path.lower().startswith(base.lower() + "/")):
            raw_path = raw_path[len(base):]
        rel = raw_path.lstrip("/")
        if rel.endswith("/"):
            rel = rel[:-1]
        parts = rel.split("/") if rel else []
        low = [p.lower() for p in parts]

        if low[:3] == ["api", "v0", "transfers"]:
            with self._lock:
                fault = self._take_user_fault(method, parts, low)
                if fault is None:
                    fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                log.debug("injecting fault %s on %s %s", fault, method, raw_path)
                resp = self._fault_response(fault, closing)
                if resp is not None:
                    return resp
                if fault == "broken_json":
                    resp = self._route(method, parts, low, query, headers, body)
                    payload = resp.body[: max(1, len(resp.body) // 2)] if resp.body else b'[{"id":"'
                    return _Response(200, payload, "application/json; charset=utf-8", auth=resp.auth)
        return self._route(method, parts, low, query, headers, body)

    def _fault_response(self, fault: str, closing: threading.Event) -> _Response | None:
        if fault == "500":
            return _error_500("Simulated failure: An unexpected error occurred")
        if fault in ("401", "403", "404", "503"):
            return _empty(int(fault))
        if fault == "reset":
            return _Response(0, abort=True)
        if fault == "timeout":
            if closing.wait(self.timeout_fault_seconds) or self._stop.is_set():
                return _Response(0, abort=True)
        return None  # timeout elapsed, or broken_json: answer for real

    def _route(
        self,
        method: str,
        parts: list[str],
        low: list[str],
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        if low == ["health"]:
            return _Response(200, b"Healthy", "text/plain") if method == "GET" else _empty(405)
        if low[:1] != ["api"]:
            return _web_page(method, parts)
        if low[:2] != ["api", "v0"]:
            return _empty(404)
        p, lp = parts[2:], low[2:]

        # Anonymous routes.
        if lp == ["session", "enabled"]:
            return _json(200, self.api_key is not None) if method == "GET" else _empty(405)
        if lp == ["session"] and method == "POST":
            return self._login(headers, body)

        handler = self._match(method, p, lp, query, headers, body)
        if handler is None:
            return _empty(404)
        if isinstance(handler, _Response):  # 405
            return handler
        ok, kind = self._authenticate(headers)
        if not ok:
            challenge = 'Bearer error="invalid_token"' if kind == "invalid-bearer" else "Bearer"
            return _Response(401, headers={"WWW-Authenticate": challenge}, auth="invalid" if kind else None)
        resp = handler()
        resp.auth = kind
        return resp

    def _match(
        self,
        method: str,
        p: list[str],
        lp: list[str],
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Callable[[], _Response] | _Response | None:
        """Find the handler for a route; a 405 response for a known path with the wrong method."""

        def allow(table: dict[str, Callable[[], _Response]]) -> Callable[[], _Response] | _Response:
            return table.get(method) or _empty(405)

        n = len(lp)
        if lp == ["session"]:
            return allow({"GET": lambda: _empty(200)})
        if lp == ["application"]:
            return allow({"GET": lambda: _json(200, self._application_json())})
        if lp == ["application", "version"]:
            return allow({"GET": lambda: _json(200, VERSION)})
        if lp == ["application", "version", "latest"]:  # the cached version state; ?forceCheck=true checks
            return allow({"GET": lambda: self._version_latest(query)})
        if lp == ["application", "gc"]:  # forces a collection; 200 with no body
            return allow({"POST": lambda: _empty(200)})
        if lp == ["server"]:
            return allow({"GET": lambda: _json(200, self._server_json())})
        if lp == ["options"]:  # redacted options; only what clients read is modelled
            return allow({"GET": lambda: _json(200, {"directories": {
                "downloads": self.downloads_dir, "incomplete": self.incomplete_dir}})})
        if lp[:2] == ["transfers", "uploads"]:
            if n == 2:
                return allow({"GET": lambda: _json(200, [])})
            if n in (3, 4):
                return allow({"GET": lambda: _empty(404)})
            return None
        if lp[:2] == ["transfers", "downloads"]:
            if n == 2:
                return allow({"GET": lambda: self._list_downloads(query)})
            if n == 4 and lp[2:] == ["all", "completed"] and method == "DELETE":
                return self._clear_completed
            user = unquote(p[2]) if n >= 3 else ""
            if n == 3:
                return allow({
                    "GET": lambda: self._user_downloads(user),
                    "POST": lambda: self._legacy_enqueue(user, headers, body),
                })
            if n == 4:
                return allow({
                    "GET": lambda: self._get_download(p[3]),
                    "DELETE": lambda: self._delete_download(p[3], query),
                })
            if n == 5 and lp[4] == "position":
                return allow({"GET": lambda: self._position(p[3])})
            return None
        if lp and lp[0] == "searches":
            if n == 1:
                return allow({"GET": self._list_searches, "POST": lambda: self._start_search(headers, body)})
            # The search routes use a {id:guid} constraint, so a non-GUID does not match: 404.
            sid = _parse_guid(p[1]) if n >= 2 else None
            if sid is None:
                return None
            if n == 2:
                return allow({
                    "GET": lambda: self._get_search(sid, query),
                    "PUT": lambda: self._cancel_search(sid),
                    "DELETE": lambda: self._delete_search(sid),
                })
            if n == 3 and lp[2] == "responses":
                return allow({"GET": lambda: self._search_responses(sid)})
        return None

    # ------------------------------------------------------------------ auth

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[bool, str | None]:
        if self.api_key is None:
            return True, "none"
        key = headers.get("X-API-Key")
        if key is not None and hmac.compare_digest(
            key.encode("utf-8", "replace"), self.api_key.encode("utf-8", "replace")
        ):
            return True, "api-key"
        authz = headers.get("Authorization") or ""
        if authz[:7].lower() == "bearer ":
            token = authz[7:].strip()
            with self._lock:
                expiry = self._tokens.get(token)
            if expiry is not None and expiry > time.time():
                return True, "bearer"
            return False, "invalid-bearer"
        return False, "invalid-key" if key is not None else None

    def _login(self, headers: Mapping[str, str], body: bytes) -> _Response:
        data, err = _json_body(headers, body)
        if err is not None:
            return err
        if not isinstance(data, dict):
            return _empty(400)
        user, password = data.get("username"), data.get("password")
        if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
            return _empty(400)
        if not (
            hmac.compare_digest(user.encode("utf-8", "replace"), self.username.encode("utf-8", "replace"))
            and hmac.compare_digest(password.encode("utf-8", "replace"), self.password.encode("utf-8", "replace"))
        ):
            return _empty(401)
        issued = int(time.time())
        expires = issued + 7 * 24 * 3600
        with self._lock:
            token = _make_jwt(self._jwt_secret, user, issued, expires)
            self._tokens[token] = float(expires)
        return _json(200, {
            "expires": expires, "issued": issued, "name": user, "notBefore": issued,
            "token": token, "tokenType": "Bearer",
        })

    # ------------------------------------------------------------------ application

    def _server_json(self) -> dict[str, Any]:
        with self._lock:
            relogging, logged_in = self._relogging, self._logged_in
        if relogging:
            state, conn, logging_in, logged = "Connected, LoggingIn", True, True, False
        elif logged_in:
            state, conn, logging_in, logged = "Connected, LoggedIn", True, False, True
        else:
            state, conn, logging_in, logged = "Disconnected", False, False, False
        return {
            "address": "vps.slsknet.org",
            "ipEndPoint": "208.76.170.59:2271",
            "state": state,
            "isConnected": conn,
            "isConnecting": False,
            "isLoggedIn": logged,
            "isLoggingIn": logging_in,
            "isTransitioning": logging_in,
        }

    def _version_json(self) -> dict[str, Any]:
        """slskd's VersionState: `latest` and `isUpdateAvailable` are null (so absent) until checked."""
        out: dict[str, Any] = {"full": VERSION, "current": VERSION}
        if self.latest_version is not None:
            out["latest"] = self.latest_version
            out["isUpdateAvailable"] = self.latest_version != VERSION
        out.update(isCanary=False, isDevelopment=False)
        return out

    def _version_latest(self, query: dict[str, str]) -> _Response:
        force = _parse_bool(query.get("forceCheck"), False)
        if force is None:
            return _empty(400)
        if force and self.latest_version is None:
            self.latest_version = VERSION  # nothing newer is ever published here
        return _json(200, self._version_json())

    def _application_json(self) -> dict[str, Any]:
        server = self._server_json()
        return {
            "version": self._version_json(),
            "pendingReconnect": False,
            "pendingRestart": False,
            "server": server,
            "connectionWatchdog": {
                "isEnabled": True, "isAttemptingConnection": not server["isLoggedIn"], "isAwaitingVpn": False,
            },
            "user": {
                "username": self.soulseek_username,
                "privileges": {"isPrivileged": False, "privilegesRemaining": 0},
                "statistics": {"averageSpeed": 0, "directoryCount": 12, "fileCount": 140, "uploadCount": 0},
            },
            "shares": {
                "scanPending": False, "scanning": False, "ready": True, "faulted": False, "cancelled": False,
                "scanProgress": 1, "hosts": ["local"], "directories": 12, "files": 140,
            },
            "rooms": [],
            "users": [],
        }

    # ------------------------------------------------------------------ transfer routes

    def _list_downloads(self, query: dict[str, str]) -> _Response:
        include = _parse_bool(query.get("includeRemoved"), False)
        if include is None:
            return _empty(400)
        now = time.time()
        with self._lock:
            records = [r for r in self._records.values() if include or not r.removed]
            return _json(200, _group(records, now))

    def _user_downloads(self, user: str) -> _Response:
        now = time.time()
        with self._lock:
            records = [r for r in self._records.values() if r.username == user and not r.removed]
            if not records:
                return _empty(404)
            return _json(200, _group(records, now)[0])

    def _get_download(self, raw_id: str) -> _Response:
        tid = _parse_guid(unquote(raw_id))
        if tid is None:
            return _empty(400)
        with self._lock:
            rec = self._records.get(tid)
            return _json(200, rec.to_json()) if rec is not None else _empty(404)

    def _position(self, raw_id: str) -> _Response:
        tid = _parse_guid(unquote(raw_id))
        if tid is None:
            return _empty(400)
        with self._lock:
            rec = self._records.get(tid)
            if rec is None:
                return _empty(404)
            rec.place_in_queue = 1 + sum(
                1 for r in self._records.values()
                if r.username == rec.username and not r.removed and "Queued" in _flags(r.state)
                and r.requested_at < rec.requested_at
            )
            return _json(200, rec.place_in_queue)

    def _delete_download(self, raw_id: str, query: dict[str, str]) -> _Response:
        tid = _parse_guid(unquote(raw_id))
        remove = _parse_bool(query.get("remove"), False)
        if tid is None or remove is None:
            return _empty(400)
        with self._lock:
            rec = self._records.get(tid)
            if rec is None:
                return _empty(204)  # 0.26 answers 204 even for an unknown id
            if not is_completed(rec.state):
                # The transfer's token is cancelled: it stops moving now, and the record turns
                # `Completed, Cancelled` only when the task fails a moment later (so remove=true on
                # an active transfer removes nothing, as in slskd).
                self._plans.pop(tid, None)
                if self.cancel_delay > 0:
                    self._cancelling.setdefault(tid, time.monotonic() + self.cancel_delay)
                else:
                    self._land_cancel(tid, time.time())
            if remove and flags_value(rec.state) in COMPLETED_SET:
                rec.removed = True
        return _empty(204)

    def _clear_completed(self) -> _Response:
        with self._lock:
            for rec in self._records.values():
                if not rec.removed and flags_value(rec.state) in COMPLETED_SET:
                    rec.removed = True
        return _empty(204)

    def _legacy_enqueue(self, user: str, headers: Mapping[str, str], body: bytes) -> _Response:
        data, err = _json_body(headers, body)
        if err is not None:
            return err
        if not isinstance(data, list) or not data:
            return _empty(400)
        items: list[dict[str, Any]] = []
        for item in data:
            if not isinstance(item, dict):
                return _empty(400)
            filename, size = item.get("filename"), item.get("size")
            if not isinstance(filename, str) or not filename or _has_traversal(filename):
                return _empty(400)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                return _empty(400)
            items.append({"filename": filename, "size": size})
        with self._lock:
            if self._busy > 0 or self._enqueues_running >= ENQUEUE_CONCURRENCY:
                self._busy = max(self._busy - 1, 0)
                return _json(429, ENQUEUE_BUSY_MESSAGE)
            self._enqueues_running += 1
        try:
            if len({(i["filename"], i["size"]) for i in items}) != len(items):
                return _error_500(DUPLICATE_FILES_MESSAGE)  # the whole request fails
            with self._lock:
                if not self._logged_in or self._relogging:
                    # The peer's address comes from the Soulseek server (GetUserEndPointAsync);
                    # Soulseek.NET refuses that while logged out. Wording approximated.
                    return _error_500("The server connection must be connected and logged in to "
                                      "get the endpoint of a user (currently: Disconnected)")
                if user in self._offline:
                    return _error_500(f"User {user} appears to be offline")
                delay = self.enqueue_delays.get(user, 0.0)
            closing: threading.Event | None = getattr(self._request_local, "closing", None)
            if delay > 0 and ((closing.wait(delay) if closing else self._stop.wait(delay)) or self._stop.is_set()):
                return _Response(0, abort=True)  # slskd went away while connecting: no records
            with self._lock:
                enqueued, failed = self._enqueue(user, items)
            return _json(201, {"enqueued": enqueued, "failed": failed})
        finally:
            with self._lock:
                self._enqueues_running -= 1

    # ------------------------------------------------------------------ search routes

    def _start_search(self, headers: Mapping[str, str], body: bytes) -> _Response:
        request = _search_request(headers, body)
        if isinstance(request, _Response):
            return request
        sid, text, options = request
        with self._lock:
            if self._busy > 0:
                self._busy -= 1
                return _empty(429)
            if sid in self._searches:  # the INSERT fails before any validation: unhandled, 500
                return _error_500(f"An item with the same key has already been added. Key: {sid}")
            self._search_token += 1
            token = self._search_token
            # SearchService saves the search before Soulseek.NET validates it; a refusal then
            # leaves it behind as "Completed, Errored" (the caller must delete it).
            terms, _exclusions = _query_terms(text)
            refusal: _Response | None = None
            if not terms:
                refusal = _json(400, "The search query must contain at least one term of two or more "
                                     "characters (Parameter 'query')")
            elif not self._logged_in or self._relogging:
                refusal = _error_409("The server connection must be connected and logged in")
            limit = max(options["responseLimit"], 1)
            responses = [] if refusal else self._responses_for(text, token)[:limit]
            duration = max(float(self.search_duration), 0.0)
            search = _Search(
                sid, text, token, time.monotonic(), time.time(), responses,
                arrivals=[duration * (i + 1) / len(responses) for i in range(len(responses))],
                timeout=options["searchTimeout"] / 1000.0,
                response_limit=limit, file_limit=max(options["fileLimit"], 1),
            )
            self._searches[sid] = search
            if refusal is not None:
                search.state, search.complete, search.ended_wall = "Completed, Errored", True, search.started_wall
                return refusal
            self.searches_made.append(text)
            return _json(200, search.to_json(False))

    def _list_searches(self) -> _Response:
        with self._lock:
            self._advance_searches(time.monotonic())
            return _json(200, [s.to_json(False) for s in self._searches.values()])

    def _get_search(self, sid: str, query: dict[str, str]) -> _Response:
        include = _parse_bool(query.get("includeResponses"), False)
        if include is None:
            return _empty(400)
        with self._lock:
            self._advance_searches(time.monotonic())
            search = self._searches.get(sid)
            return _json(200, search.to_json(include)) if search else _empty(404)

    def _search_responses(self, sid: str) -> _Response:
        with self._lock:
            self._advance_searches(time.monotonic())
            search = self._searches.get(sid)
            if search is None:
                return _empty(404)
            return _json(200, copy.deepcopy(search.received) if search.complete else [])

    def _cancel_search(self, sid: str) -> _Response:
        with self._lock:
            self._advance_searches(time.monotonic())
            search = self._searches.get(sid)
            if search is None:
                return _empty(404)
            if not search.complete:
                search.state, search.complete, search.ended_wall = "Completed, Cancelled", True, time.time()
            return _empty(200)

    def _delete_search(self, sid: str) -> _Response:
        with self._lock:
            return _empty(204) if self._searches.pop(sid, None) is not None else _empty(404)


# --------------------------------------------------------------------------- helpers


def _web_page(method: str, parts: list[str]) -> _Response:
    """slskd's fallback for a path that is no route: the web UI's page, for any GET of a path
    without a file extension (so a wrong URL base gets HTML, not a 404); else 404."""
    last = parts[-1] if parts else ""
    if method != "GET" or "." in last:
        return _empty(404)
    page = b"<!doctype html><title>slskd (simulated)</title><p>slskd simulator " + VERSION.encode() + b"</p>"
    return _Response(200, page, "text/html; charset=utf-8")


def _error_409(message: str) -> _Response:
    return _json(409, message)


def _search_request(headers: Mapping[str, str], body: bytes) -> tuple[str, str, dict[str, int]] | _Response:
    """POST searches' body as SearchRequest binds and validates it: (id, text, options) or a 4xx."""
    data, err = _json_body(headers, body)
    if err is not None:
        return err
    if not isinstance(data, dict):
        return _empty(400)
    text = data.get("searchText")
    if not isinstance(text, str) or not text.strip():  # [Required] on SearchRequest
        return _json(400, "The SearchText field is required.")
    sid: str | None = str(uuid.uuid4())
    if data.get("id") is not None:
        sid = _parse_guid(str(data["id"]))
        if sid is None:
            return _empty(400)
    defaults = {"fileLimit": 25000, "maximumPeerQueueLength": 2147483647, "minimumPeerUploadSpeed": 0,
                "minimumResponseFileCount": 1, "responseLimit": 250, "searchTimeout": 15000}
    options: dict[str, int] = {}
    for name, default in defaults.items():
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            return _empty(400)
        options[name] = value
    if not isinstance(data.get("filterResponses", True), bool):
        return _empty(400)
    if options["searchTimeout"] < 5:  # SearchRequest's [Range] minimum
        return _json(400, "The field SearchTimeout must be between 5 and 2147483647.")
    return sid, text, options


def _search_time(epoch: float) -> str:
    """A search's StartedAt/EndedAt: UTC with Z, fraction without trailing zeros (.NET "O")."""
    head, _, frac = format_time(epoch, True).rstrip("Z").partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


def _query_terms(text: str) -> tuple[list[str], list[str]]:
    """Soulseek.NET's SearchQuery: space-split; "-x" excludes; one-letter terms are dropped."""
    tokens = text.split(" ")
    exclusions = [t[1:] for t in tokens if t.startswith("-") and len(t) > 1]
    terms = [t for t in tokens if t and not t.startswith("-") and len(t) > 1]
    return terms, exclusions


def _path_words(text: str) -> set[str]:
    """How a Soulseek client indexes a shared path: words split at any non-word character,
    case-insensitive, accents kept ("Björk" is not "bjork")."""
    return {w for w in re.split(r"[\W_]+", text.lower()) if w}


def _peer_files(files: Any, terms: list[str], exclusions: list[str]) -> list[dict[str, Any]]:
    """The files a peer answers with: every query word among the path's words, no excluded word."""
    want = {w for t in terms for w in _path_words(t)}
    banned = {w for t in exclusions for w in _path_words(t)}
    out = []
    for f in files if isinstance(files, list) else []:
        have = _path_words(str(f.get("filename", "")))
        if want and want <= have and not banned & have:
            out.append(f)
    return out


def _json_body(headers: Mapping[str, str], body: bytes) -> tuple[Any, _Response | None]:
    """Parse a [FromBody] JSON payload the way ASP.NET would reject it: 415 / 400."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        return None, _empty(415)
    try:
        return json.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError):
        return None, _empty(400)


def _group(records: Iterable[_Record], now: float) -> list[dict[str, Any]]:
    """User groups -> directories -> files, in insertion order."""
    users: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        users.setdefault(rec.username, {}).setdefault(_directory(rec.filename), []).append(rec.to_json(now))
    return [
        {
            "username": user,
            "directories": [{"directory": d, "fileCount": len(files), "files": files} for d, files in dirs.items()],
        }
        for user, dirs in users.items()
    ]


def _normalise_response(resp: Mapping[str, Any], token: int) -> dict[str, Any]:
    """Fill in the fields slskd always sends on a search Response and its Files."""
    out = copy.deepcopy(dict(resp))
    files = [_normalise_file(f) for f in out.get("files", [])]
    locked = [_normalise_file(f) for f in out.get("lockedFiles", [])]
    out["files"], out["lockedFiles"] = files, locked
    out["fileCount"], out["lockedFileCount"] = len(files), len(locked)
    out.setdefault("username", "peer")
    out.setdefault("token", token)
    out.setdefault("hasFreeUploadSlot", True)
    out.setdefault("uploadSpeed", 0)
    out.setdefault("queueLength", 0)
    return out


def _normalise_file(f: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(f)
    name = str(out.get("filename", ""))
    dot = name.rfind(".")
    out.setdefault("extension", name[dot + 1:].lower() if dot > max(name.rfind("\\"), name.rfind("/")) else "")
    out.setdefault("size", 0)
    out.setdefault("code", 1)
    out.setdefault("isLocked", False)  # never set by slskd's mapper
    return out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _make_jwt(secret: bytes, name: str, issued: int, expires: int) -> str:
    """A real HS256 JWT shaped like slskd's (clients should treat it as opaque)."""
    header = _b64(_dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(_dumps({
        "name": name, "role": "Administrator", "jti": uuid.uuid4().hex,
        "nbf": issued, "exp": expires, "iat": issued, "iss": "slskd",
    }))
    sig = _b64(hmac.new(secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


# --------------------------------------------------------------------------- demo scenario

_ALBUM_DIR = "@@music\\Halcyon Drift\\Tidal Architecture (2019)"
_ALBUM_TRACKS = (
    "Low Tide Protocol", "Salt Lines", "Harbour Lights at 4am", "Breakwater", "Undertow (Reprise)",
    "Glass Ocean", "The Long Fetch", "Moored", "Signal Flags", "Estuary", "Slack Water",
)


def _load_demo(sim: Simulator) -> None:
    """A realistic ~85 s session; every duration is divided by `sim.speedup` at run time."""
    rng = random.Random(2019)
    mb = 1_000_000
    # Already finished before the agent started, so the list is not empty.
    sim.add_download("oldfriend", "@@share\\Podcasts\\Field Recordings Ep. 41.mp3", 48_211_337,
                     "Completed, Succeeded", 48_211_337, speed=2_400_000.0, ended_ago=3 * 3600)
    sim.add_download("oldfriend", "@@share\\Podcasts\\Field Recordings Ep. 42.mp3", 51_902_114,
                     "Completed, Succeeded", 51_902_114, speed=2_100_000.0, ended_ago=3500)
    sim.add_download("nightowl", "@@lossless\\Various\\Compilation 07\\03 - Lumen.flac", 31_440_012,
                     "Completed, Errored", 9_117_200, exception="Remote connection closed",
                     speed=850_000.0, ended_ago=2900, attempts=3)

    def queued(hold: float) -> list[Step]:
        return [("state", "Queued, Locally", 0.4), ("state", "Requested", 0.6), ("state", "Queued, Remotely", hold)]

    # The album: queued all at once, then two at a time at a few MB/s.
    user = "halcyon_archive"
    slots = [3.0, 4.5]
    for i, title in enumerate(_ALBUM_TRACKS, start=1):
        size = rng.randint(20 * mb, 34 * mb)
        bps = rng.uniform(3.2, 4.4) * mb
        tid = sim.add_download(user, f"{_ALBUM_DIR}\\{i:02d} - {title}.flac", size, state="Queued, Locally")
        slot = min(range(len(slots)), key=slots.__getitem__)
        start = slots[slot]
        sim.plan(tid, queued(start - 1.0) + [("transfer", bps), ("end", "Completed, Succeeded")])
        slots[slot] = start + INIT_SECONDS + size / bps + 0.4

    # A slow peer: one long DJ mix at ~50 KB/s.
    tid = sim.add_download("dialup_dan", "@@shared\\Mixes\\Late Night Radio Session 1997 (tape rip).mp3",
                           4_000_000, state="Queued, Locally")
    sim.plan(tid, queued(1.0) + [("transfer", 51_200), ("end", "Completed, Succeeded")])

    # The peer never acknowledges: Queued, Remotely, then TimedOut with 0 bytes. slskd 0.25+ retries
    # it (same id, attempts + 1) and 0.26 shows the failed state briefly in between.
    tid = sim.add_download("ghostpeer", "@@rare\\White Labels\\Untitled B2.flac", 27_500_000,
                           state="Queued, Locally")
    steps: list[Step] = []
    for attempt in range(3):
        steps += [("state", "Requested", 0.6), ("state", "Queued, Remotely", 7.0)]
        steps += [("end", "Completed, TimedOut", "Operation timed out")]
        if attempt < 2:
            steps += [("wait", 0.5), ("attempt",)]
    sim.plan(tid, steps)

    # Rejected by the peer: never retried.
    tid = sim.add_download("privatecollector", "@@vault\\Test Pressings\\Side A.flac", 41_000_000,
                           state="Queued, Locally")
    sim.plan(tid, [("state", "Queued, Locally", 0.5), ("state", "Requested", 2.5),
                   ("end", "Completed, Rejected", "File not shared.")])

    # Cancelled part-way through.
    tid = sim.add_download("netlabel_mirror", "@@netlabels\\Kasuga\\KSG-014 Full Release.zip", 48_000_000,
                           state="Queued, Locally")
    sim.plan(tid, queued(2.0) + [("transfer", 1_200_000, 19_000_000), ("end", "Completed, Cancelled")])


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m trayagent.slskd.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-key", default=DEFAULT_API_KEY, help="the X-API-Key to accept")
    auth.add_argument("--no-auth", action="store_true", help="disable authentication, like SLSKD_NO_AUTH")
    parser.add_argument("--url-base", default="", help="URL base, e.g. /slskd")
    parser.add_argument("--scenario", choices=("demo", "idle"), default="idle")
    parser.add_argument("--speedup", type=float, default=1.0, help="divide all scenario durations by this")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.speedup <= 0:
        parser.error("--speedup must be positive")

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = Simulator(api_key=None if args.no_auth else args.api_key, url_base=args.url_base, port=args.port)
    sim.speedup = args.speedup
    sim.load_scenario(args.scenario)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        url = sim.start()
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%d: %s", args.port, exc)
        return 1
    log.info("slskd simulator ready: %s (auth: %s, scenario: %s)", url,
             "off" if args.no_auth else "X-API-Key", args.scenario)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
