"""The simulator's inner seams (issue 11): the routes answer from the state alone, and a plan the
clock cannot play is dropped without stopping the clock."""

from __future__ import annotations

import json
import threading
import time

from trayagent.slskd.simulator import DEFAULT_API_KEY, Simulator, routes
from trayagent.slskd.simulator.state import SlskdState
from trayagent.slskd.simulator.wire import IncomingRequest, Response

DL = "/api/v0/transfers/downloads"


def _ask(state: SlskdState, path: str, headers: dict[str, str], method: str = "GET") -> Response:
    return routes.handle(state, IncomingRequest(method, path, {}, headers, b"", threading.Event()))


def test_routes_answer_from_the_state_alone_without_a_listener() -> None:
    state = SlskdState(DEFAULT_API_KEY, "/slskd", "slskd", "slskd")
    rec = state.transfer_book.new_record("alice", "@@a\\Album\\01.flac", 10, "Queued, Remotely", supersede=True)
    key = {"X-API-Key": DEFAULT_API_KEY}

    for path in (f"/slskd{DL}", f"/SLSKD{DL}", DL):  # UsePathBase: with the base, any case, or without
        resp = _ask(state, path, key)
        assert resp.status == 200 and resp.auth == "api-key"
        [user] = json.loads(resp.body)
        assert user["directories"][0]["files"][0]["id"] == rec.id

    refused = _ask(state, DL, {"X-API-Key": "wrong"})
    assert (refused.status, refused.headers, refused.auth) == (401, {"WWW-Authenticate": "Bearer"}, "invalid")
    assert _ask(state, DL, key, method="PATCH").status == 405  # the route exists: 405 before auth
    assert _ask(state, f"{DL}/alice/not-a-guid", key).status == 400


def test_a_plan_step_the_clock_cannot_play_is_dropped_and_the_clock_goes_on() -> None:
    with Simulator(api_key=None) as sim:
        sim.enqueue_plan = [("teleport", 1.0)]  # set directly, so never checked by plan()
        [bad] = sim.enqueue("bob", [("@@b\\x.flac", 5)])["enqueued"]
        good = sim.add_download("bob", "@@b\\y.flac", 5, state="Queued, Locally")
        sim.plan(good, [("state", "Requested", 0.05), ("end", "Completed, Succeeded")])

        answered: list[bool] = []
        probe = threading.Thread(target=lambda: answered.append(_wait_done(sim)), daemon=True)
        probe.start()
        probe.join(timeout=5)
        assert answered == [True], "the clock wedged on a step it cannot play"
        assert sim.get(good)["state"] == "Completed, Succeeded"
        assert isinstance(bad, dict) and sim.get(str(bad["id"]))["state"] == "Queued, Locally"


def _wait_done(sim: Simulator) -> bool:
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        if sim.scenario_done():
            return True
        time.sleep(0.02)
    return False
