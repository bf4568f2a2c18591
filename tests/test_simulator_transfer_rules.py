"""The simulator holds to slskd 0.26's transfer rules that a forgiving fake would hide.

Each rule is the one read in slskd's source (see /work/shared/slskd-api.md, "Rules that a
forgiving simulator would hide"): DownloadService.EnqueueAsync, TransfersController,
Common/Retry.cs with DownloadService.TryFail, and ApplicationController.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from conftest import API_KEY

from trayagent.slskd.simulator import Simulator

API = "/api/v0"
DL = f"{API}/transfers/downloads"
A = "@@music\\Artist\\Album\\01 - One.flac"
B = "@@music\\Artist\\Album\\02 - Two.flac"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["X-API-Key"] = API_KEY
        yield s


def test_a_file_listed_twice_fails_the_whole_enqueue_with_500(sim: Simulator, http: requests.Session) -> None:
    url = f"{sim.url}{DL}/carol"
    r = http.post(url, json=[{"filename": A, "size": 10}, {"filename": B, "size": 20}, {"filename": A, "size": 10}])
    assert r.status_code == 500 and r.json() == "Two or more files in request are duplicated (Parameter 'files')"
    assert sim.transfers() == []  # nothing of it was enqueued
    # The check is on (filename, size): the same name with another size passes it, and the
    # second is then skipped as already in progress.
    body = http.post(url, json=[{"filename": A, "size": 10}, {"filename": A, "size": 11}]).json()
    assert len(body["enqueued"]) == 1 and body["failed"] == [{}]


def test_enqueue_needs_slskd_logged_in_to_find_the_peer(sim: Simulator, http: requests.Session) -> None:
    sim.set_logged_in(False)
    r = http.post(f"{sim.url}{DL}/carol", json=[{"filename": A, "size": 10}])
    assert r.status_code == 500 and "logged in" in r.json()
    assert sim.transfers() == []
    sim.set_logged_in(True)
    assert http.post(f"{sim.url}{DL}/carol", json=[{"filename": A, "size": 10}]).status_code == 201


def test_enqueued_records_have_no_attempt_until_one_starts(sim: Simulator, http: requests.Session) -> None:
    (rec,) = http.post(f"{sim.url}{DL}/carol", json=[{"filename": A, "size": 10}]).json()["enqueued"]
    assert rec["attempts"] == 0 and rec["state"] == "Queued, Locally"
    assert sim.get(rec["id"])["attempts"] == 0
    sim.set_state(rec["id"], "Requested")
    assert sim.get(rec["id"])["attempts"] == 1


def test_a_retry_waiting_in_the_queue_still_shows_the_failed_attempt(sim: Simulator) -> None:
    tid = sim.enqueue("carol", [(A, 1000)])["enqueued"][0]["id"]
    sim.plan(tid, [("state", "Requested", 0.05), ("end", "Completed, Errored", "Remote connection closed"),
                   ("wait", 0.1), ("attempt",), ("state", "Queued, Locally", 30.0)])
    deadline = time.monotonic() + 5
    while sim.get(tid)["attempts"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    t = sim.get(tid)
    assert t["state"] == "Queued, Locally" and t["attempts"] == 2
    assert t["exception"] == "Remote connection closed" and t["endedAt"].endswith("Z")


def test_cancel_between_retries_ends_errored_with_the_earlier_error(sim: Simulator, http: requests.Session) -> None:
    sim.cancel_delay = 0.0
    tid = sim.add_download("carol", A, 1000, state="InProgress", bytes_transferred=10)
    sim.set_state(tid, "Completed, Errored", exception="Remote connection closed")
    ended = sim.get(tid)["endedAt"]
    sim.set_state(tid, "Queued, Locally")  # slskd waits before its next attempt
    time.sleep(0.05)
    assert http.delete(f"{sim.url}{DL}/carol/{tid}").status_code == 204
    t = sim.get(tid)
    assert t["state"] == "Completed, Errored", "not Cancelled: the cancelled wait fails the retry loop"
    assert t["exception"] == "Remote connection closed" and t["endedAt"] == ended
    # A download cancelled while it runs ends Cancelled as before.
    live = sim.add_download("carol", B, 1000, state="InProgress", bytes_transferred=10)
    http.delete(f"{sim.url}{DL}/carol/{live}")
    assert sim.get(live)["state"] == "Completed, Cancelled"


def test_enqueue_answers_only_after_reaching_the_peer(sim: Simulator, http: requests.Session) -> None:
    sim.set_enqueue_delay("slow peer", 0.6)
    url = f"{sim.url}{DL}/{quote('slow peer', safe='')}"
    started = time.monotonic()
    r = http.post(url, json=[{"filename": A, "size": 10}])
    assert r.status_code == 201 and time.monotonic() - started >= 0.55
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(url, json=[{"filename": B, "size": 10}], timeout=(1.0, 0.2))
    time.sleep(0.6)  # slskd went on without the client: the file is queued anyway
    assert {t["filename"] for t in sim.transfers()} == {A, B}
    sim.set_enqueue_delay("slow peer", 0)
    assert "slow peer" not in sim.enqueue_delays


def test_a_third_concurrent_enqueue_gets_429_with_slskd_message(sim: Simulator) -> None:
    sim.set_enqueue_delay("slow", 0.8)
    url = f"{sim.url}{DL}/slow"
    codes: list[int] = []

    def post(name: str) -> None:
        codes.append(requests.post(url, json=[{"filename": name, "size": 1}], headers={"X-API-Key": API_KEY}).status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in ("a.flac", "b.flac")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    third = requests.post(f"{sim.url}{DL}/fast", json=[{"filename": "c.flac", "size": 1}],
                          headers={"X-API-Key": API_KEY})
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 201]
    assert third.status_code == 429
    assert third.json() == "Only one concurrent operation is permitted. Wait until the previous request completes"
    assert requests.post(f"{sim.url}{DL}/fast", json=[{"filename": "c.flac", "size": 1}],
                         headers={"X-API-Key": API_KEY}).status_code == 201


def test_a_restart_during_a_slow_enqueue_drops_it(sim: Simulator) -> None:
    sim.set_enqueue_delay("slow", 1.0)
    result: list[object] = []

    def post() -> None:
        try:
            result.append(requests.post(f"{sim.url}{DL}/slow", json=[{"filename": A, "size": 1}],
                                        headers={"X-API-Key": API_KEY}, timeout=5).status_code)
        except requests.exceptions.ConnectionError as exc:
            result.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.2)
    sim.restart(downtime=0.2, relogin_delay=0.1).wait(5)
    thread.join(5)
    assert isinstance(result[0], requests.exceptions.ConnectionError)
    time.sleep(1.0)
    assert sim.transfers() == []


def test_version_latest_and_gc(sim: Simulator, http: requests.Session) -> None:
    latest = http.get(f"{sim.url}{API}/application/version/latest")
    assert latest.status_code == 200
    assert latest.json() == {"full": "0.26.0.0", "current": "0.26.0.0", "latest": "0.26.0.0",
                             "isUpdateAvailable": False, "isCanary": False, "isDevelopment": False}
    sim.latest_version = None  # slskd started with --no-version-check: null fields are left out
    unchecked = http.get(f"{sim.url}{API}/application/version/latest").json()
    assert "latest" not in unchecked and "isUpdateAvailable" not in unchecked
    assert http.get(f"{sim.url}{API}/application").json()["version"] == unchecked
    forced = http.get(f"{sim.url}{API}/application/version/latest", params={"forceCheck": "true"}).json()
    assert forced["latest"] == "0.26.0.0" and forced["isUpdateAvailable"] is False
    assert http.get(f"{sim.url}{API}/application/version/latest", params={"forceCheck": "maybe"}).status_code == 400
    gc = http.post(f"{sim.url}{API}/application/gc")
    assert gc.status_code == 200 and gc.content == b""
    assert http.get(f"{sim.url}{API}/application/gc").status_code == 405
    assert requests.post(f"{sim.url}{API}/application/gc").status_code == 401
