"""The slskd simulator must speak slskd 0.26's dialect exactly, or every test built on it lies."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from trayagent.core.model import SHUTDOWN_EXCEPTION, parse_time
from trayagent.slskd.simulator import DEFAULT_API_KEY, Simulator, format_time, format_timespan

API = "/api/v0"
DL = f"{API}/transfers/downloads"
NO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,6}[1-9])?$")  # trailing zeros trimmed
WITH_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,6}[1-9])?Z$")
TIMESPAN = re.compile(r"^-?(\d+\.)?\d{2}:\d{2}:\d{2}(\.\d{7})?$")
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FILE = "@@music\\Artist\\Album (2001)\\01 - Intro.flac"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as s:
        yield s


@pytest.fixture
def http(sim: Simulator) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["X-API-Key"] = DEFAULT_API_KEY
        yield session


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def files_of(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for g in groups for d in g["directories"] for f in d["files"]]


# ----------------------------------------------------------------------------- shapes


def test_list_shape_groups_by_user_and_directory_and_omits_nulls(sim: Simulator, http: requests.Session) -> None:
    a = sim.add_download("alice", FILE, 1000)
    sim.add_download("alice", "@@music\\Artist\\Album (2001)\\02 - Two.flac", 2000)
    sim.add_download("bob", "plain/unix/path.mp3", 10, state="Queued, Locally")
    resp = http.get(sim.url + DL)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    groups = resp.json()
    assert [g["username"] for g in groups] == ["alice", "bob"]
    assert groups[0]["directories"] == [
        {"directory": "@@music\\Artist\\Album (2001)", "fileCount": 2, "files": groups[0]["directories"][0]["files"]}
    ]
    assert groups[1]["directories"][0]["directory"] == "plain/unix"
    first = groups[0]["directories"][0]["files"][0]
    assert first["id"] == a and GUID.match(a)
    assert list(first) == [
        "id", "username", "direction", "filename", "size", "state", "requestedAt", "enqueuedAt",
        "bytesTransferred", "averageSpeed", "attempts", "removed", "bytesRemaining", "percentComplete",
    ]
    assert first["direction"] == "Download" and first["state"] == "Queued, Remotely"
    assert first["bytesRemaining"] == 1000 and first["attempts"] == 1 and first["removed"] is False
    # Nulls are omitted, never sent as null; fields dropped in 0.26 are gone.
    assert "null" not in resp.text
    for gone in ("startedAt", "endedAt", "exception", "elapsedTime", "remainingTime", "placeInQueue",
                 "stateDescription", "startOffset", "batchId", "nextAttemptAt"):
        assert gone not in first
    # Queued, Locally has not been acknowledged by the peer: no enqueuedAt.
    assert "enqueuedAt" not in groups[1]["directories"][0]["files"][0]


def test_timestamps_and_timespans_use_dotnet_formats(sim: Simulator, http: requests.Session) -> None:
    tid = sim.add_download("alice", FILE, 4_000_000, state="InProgress", bytes_transferred=1_000_000, speed=500_000.0)
    t = http.get(f"{sim.url}{DL}/alice/{tid}").json()
    assert NO_Z.match(t["requestedAt"]) and NO_Z.match(t["enqueuedAt"])
    assert WITH_Z.match(t["startedAt"])
    assert TIMESPAN.match(t["elapsedTime"]) and TIMESPAN.match(t["remainingTime"])
    assert t["remainingTime"] == "00:00:06"  # 3 MB left at 500 kB/s; .NET drops a zero fraction
    assert t["percentComplete"] == 25 and isinstance(t["percentComplete"], int)
    sim.set_state(tid, "Completed, Succeeded")
    t = http.get(f"{sim.url}{DL}/alice/{tid}").json()
    assert WITH_Z.match(t["endedAt"]) and "startedAt" in t
    assert parse_time(t["endedAt"]) >= parse_time(t["startedAt"])  # type: ignore[operator]
    assert format_timespan(93784.5) == "1.02:03:04.5000000"
    assert format_timespan(-1.25) == "-00:00:01.2500000"
    assert format_time(0.5, True) == "1970-01-01T00:00:00.5Z"  # System.Text.Json trims the fraction
    assert format_time(1.0000001, False) == "1970-01-01T00:00:01.0000001"
    assert format_time(2.0, True) == "1970-01-01T00:00:02Z"


def test_state_changes_stamp_times_and_allow_negative_bytes_remaining(sim: Simulator) -> None:
    tid = sim.add_download("alice", FILE, 100, state="Requested")
    assert "enqueuedAt" not in sim.get(tid)
    sim.set_state(tid, "Queued, Remotely")
    assert "enqueuedAt" in sim.get(tid) and "startedAt" not in sim.get(tid)
    sim.set_state(tid, "Initializing")
    assert "startedAt" not in sim.get(tid)
    sim.progress(tid, 40)
    t = sim.get(tid)
    assert t["state"] == "InProgress" and "startedAt" in t and t["bytesTransferred"] == 40
    sim.set_state(tid, "Completed, Errored", bytes_transferred=130, exception="Remote connection closed")
    t = sim.get(tid)
    assert t["state"] == "Completed, Errored" and "endedAt" in t
    assert t["bytesRemaining"] == -30 and t["exception"] == "Remote connection closed"
    ended = t["endedAt"]
    sim.set_state(tid, "Queued, Locally")  # slskd's own retry: waiting, the failed attempt still shown
    t = sim.get(tid)
    assert t["state"] == "Queued, Locally" and t["endedAt"] == ended and t["exception"] == "Remote connection closed"
    sim.set_state(tid, "Requested")  # the next attempt starts clean
    t = sim.get(tid)
    assert "endedAt" not in t and "exception" not in t


# ----------------------------------------------------------------------------- auth


def test_api_key_auth_and_anonymous_routes(sim: Simulator) -> None:
    url = sim.url
    assert requests.get(url + "/health").text == "Healthy"
    assert requests.get(url + f"{API}/session/enabled").json() is True
    for headers in ({}, {"X-API-Key": "wrong-key-0000000000"}, {"Authorization": f"Bearer {DEFAULT_API_KEY}"}):
        r = requests.get(url + DL, headers=headers)
        assert r.status_code == 401 and r.content == b"", headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(url + DL, headers={"X-API-Key": DEFAULT_API_KEY}).json() == []
    r = requests.get(url + f"{API}/nope", headers={"X-API-Key": DEFAULT_API_KEY})
    assert r.status_code == 404 and r.content == b""
    assert requests.get(url + f"{API}/nope").status_code == 404  # unknown routes: 404 even without auth
    # The request log never keeps a credential.
    assert DEFAULT_API_KEY not in repr(sim.requests)
    assert [r.auth for r in sim.requests if r.path == DL] == [None, "invalid", "invalid", "api-key"]
    assert [r.status for r in sim.requests if r.path == DL] == [401, 401, 401, 200]


def test_jwt_login_expire_and_relogin(sim: Simulator) -> None:
    url = sim.url + f"{API}/session"
    assert requests.post(url, json={"username": "slskd", "password": "nope"}).status_code == 401
    assert requests.post(url, json={"username": "slskd"}).status_code == 400
    r = requests.post(url, json={"username": "slskd", "password": "slskd"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"expires", "issued", "name", "notBefore", "token", "tokenType"}
    assert body["tokenType"] == "Bearer" and body["name"] == "slskd" and body["expires"] > body["issued"]
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert requests.get(url, headers=auth).status_code == 200
    assert requests.get(url).status_code == 401
    assert requests.get(sim.url + DL, headers=auth).status_code == 200
    sim.expire_tokens()
    r = requests.get(sim.url + DL, headers=auth)
    assert r.status_code == 401 and r.content == b"" and "invalid_token" in r.headers["WWW-Authenticate"]
    token = requests.post(url, json={"username": "slskd", "password": "slskd"}).json()["token"]
    assert requests.get(sim.url + DL, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_auth_disabled_and_url_base() -> None:
    with Simulator(api_key=None, url_base="slskd/") as sim:
        assert sim.url.endswith("/slskd") and sim.url.startswith(f"http://127.0.0.1:{sim.port}")
        assert requests.get(sim.url + f"{API}/session/enabled").json() is False
        assert requests.get(sim.url + DL).status_code == 200
        assert requests.get(sim.url + "/health").status_code == 200
        root = f"http://127.0.0.1:{sim.port}"
        # UsePathBase serves paths without the base too, as slskd does.
        assert requests.get(root + DL).status_code == 200 and requests.get(root + DL).json() == []
        assert requests.get(root + "/health").text == "Healthy"
        assert requests.get(root + "/SLSKD" + DL).status_code == 200  # the base matches case-insensitively
        # An API path under a base slskd does not have is no route: slskd's web page answers it.
        page = requests.get(root + "/other" + DL)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert requests.get(sim.url + "/api/v0/nope").status_code == 404
        assert requests.get(sim.url + "/static/missing.js").status_code == 404
        assert requests.post(root + "/other" + DL, json=[]).status_code == 404


def test_application_version_and_server(sim: Simulator, http: requests.Session) -> None:
    app = http.get(sim.url + f"{API}/application").json()
    assert app["version"]["current"] == "0.26.0.0" and app["version"]["isUpdateAvailable"] is False
    assert app["server"]["state"] == "Connected, LoggedIn" and app["server"]["isLoggedIn"] is True
    assert app["pendingRestart"] is False and "username" in app["user"]
    assert http.get(sim.url + f"{API}/application/version").json() == "0.26.0.0"
    sim.set_logged_in(False)
    server = http.get(sim.url + f"{API}/server").json()
    assert server["isLoggedIn"] is False and server["isConnected"] is False and server["state"] == "Disconnected"


# ----------------------------------------------------------------------------- transfer routes


def test_per_user_group_and_by_id_lookups(sim: Simulator, http: requests.Session) -> None:
    weird = "DJ Name/with slash"
    tid = sim.add_download(weird, FILE, 5)
    r = http.get(f"{sim.url}{DL}/{quote(weird, safe='')}")
    assert r.status_code == 200 and isinstance(r.json(), dict) and r.json()["username"] == weird
    assert http.get(f"{sim.url}{DL}/nobody").status_code == 404
    assert http.get(f"{sim.url}{DL}/x/not-a-guid").status_code == 400
    assert http.get(f"{sim.url}{DL}/x/{'0' * 8}-0000-0000-0000-{'0' * 12}").status_code == 404
    sim.set_state(tid, "Completed, Succeeded")
    assert http.delete(f"{sim.url}{DL}/whoever/{tid}", params={"remove": "true"}).status_code == 204
    # Removed: gone from the lists, still found by id (username ignored), back with includeRemoved.
    assert http.get(sim.url + DL).json() == []
    assert http.get(f"{sim.url}{DL}/{quote(weird, safe='')}").status_code == 404
    got = http.get(f"{sim.url}{DL}/someone-else/{tid}").json()
    assert got["id"] == tid and got["removed"] is True
    assert [f["id"] for f in files_of(http.get(sim.url + DL, params={"includeRemoved": "true"}).json())] == [tid]
    assert http.get(sim.url + DL, params={"includeRemoved": "maybe"}).status_code == 400


def test_delete_cancel_and_remove_semantics(sim: Simulator, http: requests.Session) -> None:
    active = sim.add_download("u", "a.flac", 10, state="InProgress", bytes_transferred=3, speed=1.0)
    done = sim.add_download("u", "b.flac", 10, state="Completed, Succeeded", bytes_transferred=10)
    queued = sim.add_download("u", "c.flac", 10)
    # remove=true on an active transfer cancels it, but the cancel lands asynchronously, so the
    # record is not in the Completed set yet and is NOT removed.
    assert http.delete(f"{sim.url}{DL}/u/{active}", params={"remove": "true"}).status_code == 204
    wait_for(lambda: sim.get(active)["state"] == "Completed, Cancelled")
    assert sim.get(active)["removed"] is False and "endedAt" in sim.get(active)
    assert sim.get(active)["bytesTransferred"] == 3
    # Cancel (remove=false) on a terminal transfer: 204 and a no-op.
    assert http.delete(f"{sim.url}{DL}/u/{done}").status_code == 204
    assert sim.get(done)["state"] == "Completed, Succeeded" and sim.get(done)["removed"] is False
    assert http.delete(f"{sim.url}{DL}/u/{done}", params={"remove": "true"}).status_code == 204
    assert sim.get(done)["removed"] is True
    # Plain cancel on a queued transfer.
    assert http.delete(f"{sim.url}{DL}/u/{queued}").status_code == 204
    wait_for(lambda: sim.get(queued)["state"] == "Completed, Cancelled")
    # Unknown id: still 204. Non-GUID: 400.
    assert http.delete(f"{sim.url}{DL}/u/{'1' * 8}-1111-1111-1111-{'1' * 12}").status_code == 204
    assert http.delete(f"{sim.url}{DL}/u/b.flac").status_code == 400


def test_delete_all_completed_uses_the_exact_category_set(sim: Simulator, http: requests.Session) -> None:
    gone = [sim.add_download("u", f"{s}.mp3", 1, state=s) for s in (
        "Completed", "Completed, Succeeded", "Completed, Cancelled", "Completed, TimedOut",
        "Completed, Errored", "Completed, Rejected", "Completed, Aborted")]
    kept = [sim.add_download("u", f"{s}.mp3", 1, state=s) for s in (
        "Queued, Remotely", "Queued, Locally", "Requested", "Initializing", "InProgress",
        "Completed, Cancelled, TimedOut")]  # 208: not one of slskd's categories
    assert http.delete(f"{sim.url}{DL}/all/completed").status_code == 204
    assert all(sim.get(t)["removed"] for t in gone)
    assert not any(sim.get(t)["removed"] for t in kept)
    # GET on the same path is the {username}/{id} route: a non-GUID id gives 400.
    assert http.get(f"{sim.url}{DL}/all/completed").status_code == 400


def test_legacy_enqueue_supersede_and_errors(sim: Simulator, http: requests.Session) -> None:
    old = sim.add_download("peer", FILE, 100, state="Completed, Errored", exception="x")
    busy_file = sim.add_download("peer", "busy.flac", 5, state="InProgress")
    url = f"{sim.url}{DL}/peer"
    r = http.post(url, json=[{"filename": FILE, "size": 100}, {"filename": "busy.flac", "size": 5}])
    assert r.status_code == 201
    body = r.json()
    assert body["failed"] == [{}]
    (new,) = body["enqueued"]
    assert new["state"] == "Queued, Locally" and new["filename"] == FILE and new["id"] not in (old, busy_file)
    assert sim.get(old)["removed"] is True  # superseded
    assert sim.get(new["id"])["removed"] is False and sim.get(busy_file)["removed"] is False
    assert http.post(url, json=[]).status_code == 400
    assert http.post(url, json=[{"filename": "@@x\\..\\etc\\passwd", "size": 1}]).status_code == 400
    assert http.post(url, json=[None]).status_code == 400
    assert http.post(url, data=b"[]", headers={"Content-Type": "text/plain"}).status_code == 415
    sim.busy(1)
    assert http.post(url, json=[{"filename": "n.flac", "size": 1}]).status_code == 429
    assert http.post(url, json=[{"filename": "n.flac", "size": 1}]).status_code == 201
    sim.set_user_offline("gone user", True)
    r = http.post(f"{sim.url}{DL}/{quote('gone user', safe='')}", json=[{"filename": "n.flac", "size": 1}])
    assert r.status_code == 500 and r.json() == "User gone user appears to be offline"
    assert sim.enqueue("peer", [("other.flac", 3)])["enqueued"][0]["state"] == "Queued, Locally"


def test_hostile_filenames_round_trip_exactly(sim: Simulator, http: requests.Session) -> None:
    names = [
        "@@x\\" + "A" * 5000 + ".flac",
        "@@x\\ctl\x00\x01\x1b[31m\x7f\n\t.mp3",
        "@@x\\\u202eevil\u202cgnp.exe",
        "-rf --no-preserve-root.flac",
        "@@x\\<script>alert('&amp;')</script> \"quoted\" \\ back.flac",
        "@@x\\Björk – 日本語 🎵.flac",
    ]
    r = http.post(f"{sim.url}{DL}/h4x0r", json=[{"filename": n, "size": 1} for n in names])
    assert r.status_code == 201 and [t["filename"] for t in r.json()["enqueued"]] == names
    listed = {t["id"]: t["filename"] for t in files_of(http.get(sim.url + DL).json())}
    assert sorted(listed.values()) == sorted(names)
    for tid, name in listed.items():
        assert http.get(f"{sim.url}{DL}/h4x0r/{tid}").json()["filename"] == name
        assert sim.get(tid)["filename"] == name


# ----------------------------------------------------------------------------- faults


def test_each_fault_kind(sim: Simulator, http: requests.Session) -> None:
    sim.add_download("u", "a.flac", 1)
    url = sim.url + DL
    sim.fault("500")
    r = http.get(url)
    assert r.status_code == 500 and isinstance(r.json(), str)
    sim.fault("broken_json")
    r = http.get(url)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.text)
    sim.fault("401")
    r = http.get(url)
    assert r.status_code == 401 and r.content == b""
    sim.fault("503", count=2)
    assert [http.get(url).status_code for _ in range(3)] == [503, 503, 200]
    sim.fault("reset")
    with pytest.raises(requests.ConnectionError):
        http.get(url)
    # Faults only hit /api/v0/transfers*.
    sim.fault("500")
    assert http.get(sim.url + "/health").status_code == 200
    assert http.get(sim.url + f"{API}/application").status_code == 200
    assert http.get(url).status_code == 500
    assert http.get(url).status_code == 200
    sim.fault("500", count=100)
    sim.fault("503")
    sim.fault("500", count=0)  # withdraws the pending 500s only
    assert sim.pending_faults() == 1
    assert [http.get(url).status_code for _ in range(2)] == [503, 200]
    with pytest.raises(ValueError):
        sim.fault("teapot")


def test_timeout_fault_blocks_only_that_request_and_not_stop() -> None:
    sim = Simulator(api_key=None)
    sim.start()
    try:
        sim.fault("timeout")
        t0 = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            requests.get(sim.url + DL, timeout=0.5)
        assert time.monotonic() - t0 < 2
        # A second hung request in the background; others are still served meanwhile.
        sim.fault("timeout")
        hung = threading.Thread(target=lambda: _swallow(lambda: requests.get(sim.url + DL, timeout=20)))
        hung.start()
        wait_for(lambda: sim.pending_faults() == 0)
        assert requests.get(sim.url + DL, timeout=2).status_code == 200
    finally:
        t0 = time.monotonic()
        sim.stop()
        assert time.monotonic() - t0 < 3
    hung.join(timeout=3)
    assert not hung.is_alive()  # the server dropped it on stop()


def _swallow(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except requests.RequestException:
        pass


# ----------------------------------------------------------------------------- restart


def test_restart_refuses_then_returns_on_same_port_with_new_ids(sim: Simulator, http: requests.Session) -> None:
    port = sim.port
    running = sim.add_download("peer", "@@m\\A\\01.flac", 1_000_000, state="InProgress", bytes_transferred=10)
    queued = sim.add_download("peer", "@@m\\A\\02.flac", 1_000_000)
    done = sim.add_download("peer", "@@m\\A\\00.flac", 5, state="Completed, Succeeded", bytes_transferred=5)
    sim.plan(queued, [("state", "Queued, Remotely", 0.2), ("transfer", 5_000_000), ("end", "Completed, Succeeded")])
    token = requests.post(sim.url + f"{API}/session", json={"username": "slskd", "password": "slskd"}).json()["token"]
    assert http.get(sim.url + DL).status_code == 200  # opens a keep-alive connection
    finished = sim.restart(downtime=0.5, relogin_delay=0.4)
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.url + "/health", timeout=1)
    with pytest.raises(requests.ConnectionError):
        http.get(sim.url + DL, timeout=1)  # kept-alive connections are dropped too
    wait_for(lambda: sim.is_up, timeout=3)
    assert sim.port == port
    # Up again, logging in: the casualties are visible before re-enqueue.
    casualty = http.get(f"{sim.url}{DL}/peer/{running}").json()
    assert casualty["state"] == "Completed, Errored" and casualty["exception"] == SHUTDOWN_EXCEPTION
    assert WITH_Z.match(casualty["endedAt"])
    assert http.get(sim.url + f"{API}/server").json()["isLoggedIn"] is False
    assert requests.get(sim.url + DL, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert finished.wait(3)
    assert http.get(sim.url + f"{API}/server").json()["isLoggedIn"] is True
    assert sim.get(running)["removed"] is True and sim.get(queued)["removed"] is True
    assert sim.get(done)["state"] == "Completed, Succeeded" and sim.get(done)["removed"] is False
    live = {t["filename"]: t for t in files_of(http.get(sim.url + DL).json())}
    assert set(live) == {"@@m\\A\\00.flac", "@@m\\A\\01.flac", "@@m\\A\\02.flac"}
    assert live["@@m\\A\\01.flac"]["id"] != running and live["@@m\\A\\01.flac"]["state"] == "Queued, Locally"
    new_queued = live["@@m\\A\\02.flac"]["id"]
    assert new_queued != queued
    # The plan carried over to the new id and finishes there.
    wait_for(lambda: sim.get(new_queued)["state"] == "Completed, Succeeded", timeout=3)
    assert sim.get(new_queued)["bytesTransferred"] == 1_000_000


# ----------------------------------------------------------------------------- plans


def test_plan_advances_over_time_and_stops_when_cancelled(sim: Simulator, http: requests.Session) -> None:
    tid = sim.add_download("p", "big.flac", 2_000_000, state="Queued, Locally")
    sim.plan(tid, [("state", "Requested", 0.15), ("state", "Queued, Remotely", 0.15),
                   ("transfer", 2_000_000), ("end", "Completed, Succeeded")])
    seen: list[str] = []
    mids: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        t = sim.get(tid)
        if not seen or seen[-1] != t["state"]:
            seen.append(t["state"])
        if t["state"] == "InProgress" and 0 < t["bytesTransferred"] < t["size"]:
            mids.append(t["bytesTransferred"])
        if t["state"].startswith("Completed"):
            break
        time.sleep(0.01)
    assert seen[seen.index("Requested"):] == [
        "Requested", "Queued, Remotely", "Initializing", "InProgress", "Completed, Succeeded"]
    assert len(mids) >= 3 and mids == sorted(mids)
    t = sim.get(tid)
    assert t["bytesTransferred"] == 2_000_000 and t["averageSpeed"] == 2_000_000
    assert "startedAt" in t and "enqueuedAt" in t and "endedAt" in t
    assert sim.scenario_done()

    other = sim.add_download("p", "other.flac", 10_000_000, state="Queued, Locally")
    sim.plan(other, [("transfer", 1_000_000), ("end", "Completed, Succeeded")])
    wait_for(lambda: sim.get(other)["bytesTransferred"] > 0)
    http.delete(f"{sim.url}{DL}/p/{other}")
    wait_for(lambda: sim.get(other)["state"] == "Completed, Cancelled")
    frozen = sim.get(other)["bytesTransferred"]
    time.sleep(0.2)
    assert sim.get(other)["bytesTransferred"] == frozen < 10_000_000
    assert sim.get(other)["state"] == "Completed, Cancelled" and sim.scenario_done()


def test_hard_delete_and_request_hook(sim: Simulator, http: requests.Session) -> None:
    tid = sim.add_download("u", "x.flac", 5, state="InProgress")
    seen: list[tuple[str, str]] = []

    def hook(method: str, path: str) -> None:
        seen.append((method, path))
        if method == "GET" and path == DL:
            sim.delete(tid)  # runs before the request is answered

    sim.on_request = hook
    assert http.get(sim.url + DL).json() == []
    assert http.get(f"{sim.url}{DL}/u/{tid}").status_code == 404
    assert seen == [("GET", DL), ("GET", f"{DL}/u/{tid}")]
    with pytest.raises(KeyError):
        sim.get(tid)


def test_plan_rejects_unknown_steps(sim: Simulator) -> None:
    tid = sim.add_download("p", "x", 1)
    with pytest.raises(ValueError):
        sim.plan(tid, [("teleport", 1)])
    with pytest.raises(KeyError):
        sim.plan("no-such-id", [])


# ----------------------------------------------------------------------------- scenario, concurrency, CLI


def test_demo_scenario_reaches_every_end_state() -> None:
    with Simulator() as sim:
        sim.speedup = 40.0
        sim.load_scenario("demo")
        assert len(sim.transfers()) >= 15
        assert any(t["state"] == "Completed, Succeeded" for t in sim.transfers())  # history from "before"
        wait_for(sim.scenario_done, timeout=8)
        final = sim.transfers()
        states = {t["state"] for t in final}
        assert states == {"Completed, Succeeded", "Completed, TimedOut", "Completed, Rejected",
                          "Completed, Cancelled", "Completed, Errored"}
        album = [t for t in final if t["username"] == "halcyon_archive"]
        assert 10 <= len(album) <= 12 and all(t["state"] == "Completed, Succeeded" for t in album)
        assert all(t["bytesTransferred"] == t["size"] >= 20_000_000 for t in album)
        (timed_out,) = [t for t in final if t["state"] == "Completed, TimedOut"]
        assert timed_out["bytesTransferred"] == 0 and timed_out["attempts"] == 3 and "enqueuedAt" in timed_out
        (cancelled,) = [t for t in final if t["state"] == "Completed, Cancelled"]
        assert 0 < cancelled["bytesTransferred"] < cancelled["size"]


def test_concurrent_clients_while_plans_run(sim: Simulator) -> None:
    sim.speedup = 20.0
    sim.load_scenario("demo")
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            with requests.Session() as s:
                s.headers["X-API-Key"] = DEFAULT_API_KEY
                for _ in range(15):
                    r = s.get(sim.url + DL, timeout=5)
                    assert r.status_code == 200 and files_of(r.json())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert len([r for r in sim.requests if r.path == DL and r.status == 200]) == 120


def test_cli_runs_until_sigterm() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayagent.slskd.simulator", "--no-auth", "--url-base", "/slskd"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 10
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"(http://127\.0\.0\.1:\d+/slskd)", line)
            url = m.group(1) if m else None
        assert url, "simulator did not log its URL"
        assert requests.get(url + "/health", timeout=2).text == "Healthy"
        assert requests.get(url + DL, timeout=2).json() == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
