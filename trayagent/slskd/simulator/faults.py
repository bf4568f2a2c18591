"""Injected faults: the next requests to /api/v0/transfers* (or to one peer's list) misbehave.

Why: a client must survive what a real network and a real slskd do now and then (500s, cut
connections, half-written JSON, hangs, auth lapses); tests queue exactly those moments here.
Not thread-safe: every caller holds the simulator's lock.
"""

from __future__ import annotations

import collections
import threading
from urllib.parse import unquote

from trayagent.slskd.simulator.wire import Response, empty, error_500

FAULT_KINDS = frozenset({"500", "broken_json", "reset", "401", "403", "404", "timeout", "503"})


def check_kind(kind: str) -> None:
    """ValueError naming the kinds there are, for a fault the simulator cannot play."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")


class FaultQueue:
    """Pending faults in call order: for every transfers request, and per peer for GETs of its list."""

    def __init__(self) -> None:
        self._all: collections.deque[str] = collections.deque()
        self._per_user: dict[str, collections.deque[str]] = {}  # GET downloads/{username} only

    def add(self, kind: str, count: int) -> None:
        """Queue `count` faults of `kind`; `count <= 0` withdraws every pending one of that kind."""
        check_kind(kind)
        if count <= 0:
            self._all = collections.deque(f for f in self._all if f != kind)
        else:
            self._all.extend([kind] * count)

    def add_for_user(self, username: str, kind: str, count: int) -> None:
        """Queue `count` faults for GETs of one peer's list; `count <= 0` withdraws that peer's."""
        check_kind(kind)
        if count <= 0:
            self._per_user.pop(username, None)
        else:
            self._per_user.setdefault(username, collections.deque()).extend([kind] * count)

    def take(self, method: str, parts: list[str], low: list[str]) -> str | None:
        """The fault this transfers request meets, if any: a peer's own fault comes first."""
        fault = self._take_user_fault(method, parts, low)
        if fault is None:
            fault = self._all.popleft() if self._all else None
        return fault

    def _take_user_fault(self, method: str, parts: list[str], low: list[str]) -> str | None:
        if method != "GET" or len(low) != 5 or low[3] != "downloads" or not self._per_user:
            return None
        queue = self._per_user.get(unquote(parts[4]))
        return queue.popleft() if queue else None

    def pending(self) -> int:
        return len(self._all) + sum(len(q) for q in self._per_user.values())

    def clear(self) -> None:
        self._all.clear()
        self._per_user.clear()


def fault_response(fault: str, closing: threading.Event, stop: threading.Event, hang: float) -> Response | None:
    """The answer a fault gives instead of the route's; None when the route must answer
    (broken_json, which spoils the real answer, or a `timeout` hang that ran its `hang` seconds)."""
    if fault == "500":
        return error_500("Simulated failure: An unexpected error occurred")
    if fault in ("401", "403", "404", "503"):
        return empty(int(fault))
    if fault == "reset":
        return Response(0, abort=True)
    if fault == "timeout":
        if closing.wait(hang) or stop.is_set():
            return Response(0, abort=True)
    return None  # timeout elapsed, or broken_json: answer for real


def broken_json(resp: Response) -> Response:
    """The real answer cut in half, still labelled JSON with a 200."""
    payload = resp.body[: max(1, len(resp.body) // 2)] if resp.body else b'[{"id":"'
    return Response(200, payload, "application/json; charset=utf-8", auth=resp.auth)
