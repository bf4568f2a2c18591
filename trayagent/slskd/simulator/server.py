"""The simulator as tests, benchmarks and the demo use it: start it, script it through its Python
API, point clients at `url`, restart it like slskd restarts, stop it.

Stdlib only: `ThreadingHTTPServer` in a daemon thread, one clock thread for time-driven plans.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Iterable, Mapping, Sequence

from trayagent.slskd.simulator import plans, routes, scenarios
from trayagent.slskd.simulator.httpd import Server
from trayagent.slskd.simulator.plans import Step, StepArg
from trayagent.slskd.simulator.records import apply_state
from trayagent.slskd.simulator.searches import Matcher
from trayagent.slskd.simulator.state import DEFAULT_API_KEY, RequestRecord, SimulatorError, SlskdState
from trayagent.slskd.simulator.transfers import backdate, has_traversal
from trayagent.slskd.simulator.wire import IncomingRequest, JsonObject, Response, flags

log = logging.getLogger(__name__)

TICK = 0.05  # clock thread period, seconds


class Simulator(SlskdState):
    """An in-process fake slskd. Start it, script it through the Python API, point clients at `url`."""

    def __init__(
        self,
        api_key: str | None = DEFAULT_API_KEY,
        url_base: str = "",
        username: str = "slskd",
        password: str = "slskd",
        port: int = 0,
    ) -> None:
        super().__init__(api_key, url_base, username, password)
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=200_000)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

        self._port = port
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._clock_thread: threading.Thread | None = None
        self._restart_thread: threading.Thread | None = None
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
        self.stopping.clear()
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
        self.stopping.set()
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
                server = Server(("127.0.0.1", self._port), self)
                break
            except OSError:
                # After restart() the old socket may linger for a moment; keep trying briefly.
                if self._port == 0 or time.monotonic() > deadline or self.stopping.is_set():
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

    # ------------------------------------------------------------------ what the listener calls

    def handle_request(self, request: IncomingRequest) -> Response:
        """The answer to one request (called by the HTTP listener's threads)."""
        return routes.handle(self, request)

    def track_connection(self, conn: socket.socket, is_open: bool) -> None:
        """Keep the open connections, so a restart can drop them all as slskd's would be."""
        with self._conns_lock:
            if is_open:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def record_request(self, rec: RequestRecord) -> None:
        with self.lock:
            self._requests.append(rec)
        log.debug("%s %s -> %s", rec.method, rec.path, rec.status)

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of every request seen so far (no header values are ever kept)."""
        with self.lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

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
        if "Succeeded" in flags(state) and not bytes_transferred:
            bytes_transferred = int(size)
        duration = bytes_transferred / speed if speed > 0 else (5.0 if bytes_transferred else 0.0)
        with self.lock:
            rec = self.transfer_book.new_record(username, filename, int(size), state, supersede=supersede)
            rec.requested_at = now
            rec.attempts = attempts
            rec.bytes_transferred = int(bytes_transferred)
            rec.average_speed = float(speed)
            rec.exception = exception
            backdate(rec, now, ended_ago, duration)
            return rec.id

    def set_state(
        self, tid: str, state: str, bytes_transferred: int | None = None, exception: str | None = None
    ) -> None:
        """Move a transfer to `state`, stamping enqueuedAt/startedAt/endedAt as slskd would.

        `Completed, Succeeded` without an explicit byte count means every byte arrived.
        """
        with self.lock:
            rec = self.transfer_book.get(tid)
            if bytes_transferred is not None:
                rec.bytes_transferred = int(bytes_transferred)
            elif flags(state) >= {"Completed", "Succeeded"}:
                rec.bytes_transferred = rec.size
            apply_state(rec, state, time.time())
            if exception is not None:
                rec.exception = exception

    def progress(self, tid: str, bytes_transferred: int) -> None:
        """An in-progress update: moves to InProgress if needed and recomputes averageSpeed."""
        now = time.time()
        with self.lock:
            rec = self.transfer_book.get(tid)
            if "InProgress" not in flags(rec.state):
                apply_state(rec, "InProgress", now)
            rec.bytes_transferred = int(bytes_transferred)
            elapsed = now - (rec.started_at or now)
            if elapsed > 0:
                rec.average_speed = rec.bytes_transferred / elapsed

    def get(self, tid: str) -> JsonObject:
        """The transfer exactly as served by GET downloads/{u}/{id} (removed ones included)."""
        with self.lock:
            return self.transfer_book.get(tid).to_json()

    def transfers(self, include_removed: bool = False) -> list[JsonObject]:
        """Every download in insertion order, flattened."""
        now = time.time()
        with self.lock:
            return [r.to_json(now) for r in self.transfer_book.listed(include_removed)]

    def enqueue(self, username: str, files: Iterable[tuple[str, int]]) -> JsonObject:
        """The legacy POST's effect, minus the HTTP-only 429/offline checks: {enqueued, failed}."""
        items = [(f, int(s)) for f, s in files]
        if not items or any(has_traversal(f) for f, _ in items):
            raise ValueError("empty file list or '..' traversal")
        with self.lock:
            enqueued, failed = self.transfer_book.enqueue(username, items, self.enqueue_plan)
        return {"enqueued": enqueued, "failed": failed}

    def delete(self, tid: str) -> None:
        """Hard-delete a record (as if slskd's database lost it): gone even by id."""
        with self.lock:
            self.transfer_book.delete(tid)

    # ------------------------------------------------------------------ plans

    def plan(self, tid: str, steps: Sequence[Sequence[StepArg]]) -> None:
        """Script a transfer's life (run by the clock thread); replaces any plan it had.

        Steps: ("state", s, hold), ("wait", secs), ("transfer", bps[, until_bytes]),
        ("end", s[, exception]), ("attempt",), ("attempts", n), ("remove",).
        Durations are divided by, and speeds multiplied by, `speedup`. The plan stops when the
        transfer is removed or ended from outside (e.g. cancelled over HTTP).
        """
        checked: list[Step] = plans.check_steps(steps)
        with self.lock:
            self.transfer_book.get(tid)
            self.transfer_book.plans[tid] = plans.Plan(tid, checked)

    def scenario_done(self) -> bool:
        """True when no plan is running or waiting out a restart (the demo has played out)."""
        book = self.transfer_book
        with self.lock:
            return not (book.plans or book.suspended or book.cancelling) and self._restart_thread is None

    def load_scenario(self, name: str) -> None:
        """"demo": a realistic ~85 s session (scaled by `speedup`); "idle": nothing."""
        scenarios.load(self, name)

    def _clock(self) -> None:
        while not self.stopping.wait(TICK):
            try:
                with self.lock:
                    if self._paused_at is None:
                        now = time.monotonic()
                        self.transfer_book.tick(now, self.speedup)
                        self.search_book.advance(now)
            except Exception:  # keep the clock alive; a broken plan is dropped by the book
                log.exception("simulator clock tick failed")

    # ------------------------------------------------------------------ faults, state knobs

    def fault(self, kind: str, count: int = 1) -> None:
        """The next `count` requests to /api/v0/transfers* misbehave as `kind`.

        Faults queue up in call order; `count=0` withdraws every pending fault of that kind.
        """
        with self.lock:
            self.fault_queue.add(kind, count)

    def fault_user(self, username: str, kind: str, count: int = 1) -> None:
        """The next `count` GETs of one peer's list (transfers/downloads/{username}) misbehave as
        `kind`, while every other request answers; `count=0` withdraws them."""
        with self.lock:
            self.fault_queue.add_for_user(username, kind, count)

    def pending_faults(self) -> int:
        """How many injected faults have not been consumed yet."""
        with self.lock:
            return self.fault_queue.pending()

    def clear_faults(self) -> None:
        with self.lock:
            self.fault_queue.clear()

    def set_logged_in(self, logged_in: bool) -> None:
        with self.lock:
            self.session.logged_in = bool(logged_in)

    def set_user_offline(self, username: str, offline: bool = True) -> None:
        with self.lock:
            (self.session.offline.add if offline else self.session.offline.discard)(username)

    def set_enqueue_delay(self, username: str, seconds: float) -> None:
        """Make enqueue POSTs for this peer answer only after `seconds` (0 removes the delay).

        slskd answers an enqueue once it has looked the peer up and connected to it, which can
        take its whole connect timeout (10 s) and more; a client must wait long enough.
        """
        with self.lock:
            if seconds > 0:
                self.enqueue_delays[username] = float(seconds)
            else:
                self.enqueue_delays.pop(username, None)

    def busy(self, count: int = 1) -> None:
        """The next `count` enqueue/search POSTs get 429 (slskd's concurrency limiter)."""
        with self.lock:
            self.session.busy += count

    def expire_tokens(self) -> None:
        """Invalidate every issued JWT, so clients must log in again after a 401."""
        self.tokens.forget_all()

    def add_search_results(self, matcher: Matcher | None, responses: Sequence[Mapping[str, object]]) -> None:
        """Peers and their shares. Like real peers, each answers a search only with the files
        whose path holds every query word. `matcher` narrows further which search texts they
        see at all (str = case-insensitive substring; None = every search).
        """
        with self.lock:
            self.search_book.add_peers(matcher, responses)

    # ------------------------------------------------------------------ restart

    def restart(self, downtime: float = 1.0, relogin_delay: float = 0.5, reenqueue: bool = True) -> threading.Event:
        """Mimic an slskd restart; the listener is closed when this returns, the rest runs in background.

        Returns an Event that is set once the restart has fully played out (incl. re-enqueue).
        """
        if not self._started:
            raise SimulatorError("simulator not started")
        done = threading.Event()
        with self.lock:
            if self._restart_thread is not None:
                raise SimulatorError("a restart is already in progress")
            self._paused_at = time.monotonic()
            self.tokens.forget_all()  # the JWT signing key is regenerated at every start
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
            if self.stopping.wait(downtime):
                return
            with self.lock:
                now = time.time()
                casualties = self.transfer_book.shutdown_casualties(now)
                self.search_book.time_out_running(now)
                self.session.relogging = True
            if not self._listen_again():
                return
            with self.lock:
                self.transfer_book.shift_plans(time.monotonic() - (self._paused_at or time.monotonic()))
                self._paused_at = None
            if self.stopping.wait(relogin_delay):
                return
            with self.lock:
                self.session.relogging = False
                if reenqueue:
                    self.transfer_book.reenqueue(casualties, self.enqueue_plan)
                self.transfer_book.suspended.clear()
        finally:
            with self.lock:
                self._restart_thread = None
                self._paused_at = None
            done.set()

    def _listen_again(self) -> bool:
        """Open the listener after a restart's downtime; False if stopped or the port is gone."""
        try:
            with self._life:
                if self.stopping.is_set():
                    return False
                self._listen()
        except OSError:
            log.exception("simulator could not listen again on port %d", self._port)
            return False
        return True
