"""What a running (simulated) slskd knows: its settings, its Soulseek session, its transfers and
searches, the faults queued for it, all under one lock.

Why its own class: the HTTP routes work on this state and nothing else; the `Simulator` that
extends it adds the listener, the clock and the Python API tests script it with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from trayagent.slskd.simulator.auth import TokenStore
from trayagent.slskd.simulator.faults import FaultQueue
from trayagent.slskd.simulator.plans import Step
from trayagent.slskd.simulator.searches import SearchBook
from trayagent.slskd.simulator.transfers import TransferBook
from trayagent.slskd.simulator.wire import VERSION

DEFAULT_API_KEY = "sim-key-0123456789abcdef"


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


@dataclass(slots=True)
class Session:
    """The Soulseek server connection and the request limiters in front of it."""

    logged_in: bool = True
    relogging: bool = False  # after a restart, until slskd has logged in again
    offline: set[str] = field(default_factory=set)  # peers that appear offline
    busy: int = 0  # the next enqueue/search POSTs that get 429
    enqueues_running: int = 0


class SlskdState:
    """Settings and state of one simulated slskd; every change happens under `lock`."""

    def __init__(self, api_key: str | None, url_base: str, username: str, password: str) -> None:
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

        self.lock = threading.RLock()
        self.stopping = threading.Event()  # set by stop(): waits in handlers end early
        self.session = Session()
        self.tokens = TokenStore()
        self.transfer_book = TransferBook()
        self.search_book = SearchBook()
        self.fault_queue = FaultQueue()
