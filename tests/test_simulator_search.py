"""The simulator's search routes hold to slskd's and Soulseek peers' rules (issue 13).

- peers answer only with files whose path holds every query word (case-insensitive, accents
  as typed), slskd having dropped one-letter words first;
- a search stays open until `searchTimeout` after its last response;
- a text with nothing left (400) or a search while not logged in (409) is refused, and the
  search record slskd wrote first stays behind as "Completed, Errored";
- `startedAt`/`endedAt` are UTC with `Z` and no trailing zeros in the fraction.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from test_simulator import http, wait_for  # noqa: F401 - `http` is a fixture (it uses this module's `sim`)
from trayagent.slskd.simulator import Simulator

SEARCHES = "/api/v0/searches"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# .NET round-trip format of a UTC DateTime: 0-7 fraction digits, trailing zeros trimmed.
UTC_TRIMMED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,6}[1-9])?Z$")

SHARES = [
    {"username": "bjork_fan", "files": [
        {"filename": "@@b\\Music\\Björk\\Debut\\05 - Jóga.flac", "size": 9},
        {"filename": "@@b\\Music\\Björk\\Debut\\cover.jpg", "size": 1},
    ]},
    {"username": "ascii_only", "files": [{"filename": "@@a\\Bjork\\Homogenic\\Joga.mp3", "size": 5}]},
    {"username": "queen", "files": [
        {"filename": "@@q\\Queen\\Jazz\\12 - Don't Stop Me Now.flac", "size": 7},
        {"filename": "@@q\\Queen\\Jazz\\12 - Don't Stop Me Now (Live).flac", "size": 7},
    ]},
    {"username": "acdc", "files": [{"filename": "@@c/AC-DC/Back in Black/06 Back in Black.mp3", "size": 3}]},
]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as s:
        s.search_duration = 0.05
        s.add_search_results(None, SHARES)
        yield s


def search(sim: Simulator, http: requests.Session, text: str, timeout_ms: int = 50) -> dict[str, Any]:
    """Run a search to its end; the finished search with its responses."""
    r = http.post(sim.url + SEARCHES, json={"searchText": text, "searchTimeout": timeout_ms})
    assert r.status_code == 200, r.text
    sid = r.json()["id"]
    url = f"{sim.url}{SEARCHES}/{sid}"
    wait_for(lambda: http.get(url).json()["isComplete"])
    return http.get(url, params={"includeResponses": "true"}).json()


def files(found: dict[str, Any]) -> list[str]:
    return sorted(f["filename"] for r in found["responses"] for f in r["files"])


@pytest.mark.parametrize("text,expected", [
    ("björk jóga", ["@@b\\Music\\Björk\\Debut\\05 - Jóga.flac"]),
    ("BJÖRK JÓGA", ["@@b\\Music\\Björk\\Debut\\05 - Jóga.flac"]),  # case-insensitive
    ("bjork joga", ["@@a\\Bjork\\Homogenic\\Joga.mp3"]),  # accents are not folded
    ("queen don stop me now", ["@@q\\Queen\\Jazz\\12 - Don't Stop Me Now (Live).flac",
                               "@@q\\Queen\\Jazz\\12 - Don't Stop Me Now.flac"]),
    ("queen dont stop me now", []),  # "Don't" is the words "don" and "t": glued, nothing
    ("queen don stop me now -live", ["@@q\\Queen\\Jazz\\12 - Don't Stop Me Now.flac"]),
    ("ac dc back in black", ["@@c/AC-DC/Back in Black/06 Back in Black.mp3"]),
    ("acdc back in black", []),
    ("x ac dc back in black", ["@@c/AC-DC/Back in Black/06 Back in Black.mp3"]),  # "x" dropped first
    ("bjork jóga", []),  # every word must match the same file
])
def test_peers_answer_only_when_every_word_is_in_the_path(sim, http, text, expected):
    assert files(search(sim, http, text)) == expected


def test_a_peer_without_matching_files_does_not_answer(sim, http):
    found = search(sim, http, "björk jóga")
    assert [r["username"] for r in found["responses"]] == ["bjork_fan"]
    assert found["responseCount"] == 1 and found["fileCount"] == 1  # cover.jpg has no "jóga"


def test_search_ends_search_timeout_after_the_last_response(sim, http):
    sim.search_duration = 0.1  # the one response arrives at 0.1 s
    r = http.post(sim.url + SEARCHES, json={"searchText": "bjork joga", "searchTimeout": 600})
    url = f"{sim.url}{SEARCHES}/{r.json()['id']}"
    began = time.monotonic()
    wait_for(lambda: http.get(url).json()["responseCount"] == 1)
    assert http.get(url).json()["isComplete"] is False
    wait_for(lambda: http.get(url).json()["isComplete"], timeout=3)
    took = time.monotonic() - began
    done = http.get(url).json()
    assert done["state"] == "Completed, TimedOut" and took >= 0.6
    length = _parse(done["endedAt"]) - _parse(done["startedAt"])
    assert 0.65 <= length.total_seconds() <= 0.8  # 0.1 s to the response + 0.6 s of silence


def test_search_without_responses_ends_after_its_timeout(sim, http):
    r = http.post(sim.url + SEARCHES, json={"searchText": "nothing shares this", "searchTimeout": 300})
    url = f"{sim.url}{SEARCHES}/{r.json()['id']}"
    time.sleep(0.15)
    assert http.get(url).json()["isComplete"] is False  # not 0.3 s after the start, regardless
    wait_for(lambda: http.get(url).json()["isComplete"], timeout=3)


def test_response_limit_ends_the_search_at_once(sim, http):
    sim.search_duration = 0.05
    r = http.post(sim.url + SEARCHES, json={"searchText": "joga", "searchTimeout": 10_000, "responseLimit": 1})
    # "joga" matches only the ascii peer; one response reaches the limit: no 10 s wait
    url = f"{sim.url}{SEARCHES}/{r.json()['id']}"
    wait_for(lambda: http.get(url).json()["isComplete"], timeout=2)
    assert http.get(url).json()["state"] == "Completed, ResponseLimitReached"


def test_times_are_utc_with_z_and_trimmed_fractions(sim, http):
    found = search(sim, http, "bjork joga")
    listed = http.get(sim.url + SEARCHES).json()[0]
    for stamp in (found["startedAt"], found["endedAt"], listed["startedAt"]):
        assert UTC_TRIMMED.match(stamp), stamp
    assert "searchTimeout" not in found and "responseLimit" not in found  # not part of slskd's Search


@pytest.mark.parametrize("text", ["x", "X - Y", "a b c", "-live x"])
def test_nothing_left_after_dropping_one_letter_words_is_400_and_leaves_an_errored_search(sim, http, text):
    sid = "12345678-1234-1234-1234-123456789abc"
    r = http.post(sim.url + SEARCHES, json={"searchText": text, "id": sid})
    assert r.status_code == 400 and isinstance(r.json(), str) and "query" in r.json()
    saved = http.get(f"{sim.url}{SEARCHES}/{sid}").json()
    assert saved["state"] == "Completed, Errored" and saved["isComplete"] is True
    assert saved["endedAt"] == saved["startedAt"]
    assert sim.searches_made == []  # nothing went to the network
    assert http.delete(f"{sim.url}{SEARCHES}/{sid}").status_code == 204


def test_not_logged_in_is_409_and_leaves_an_errored_search(sim, http):
    sim.set_logged_in(False)
    sid = "12345678-1234-1234-1234-123456789abd"
    r = http.post(sim.url + SEARCHES, json={"searchText": "bjork joga", "id": sid})
    assert r.status_code == 409 and "logged in" in r.json()
    assert [s["id"] for s in http.get(sim.url + SEARCHES).json()] == [sid]
    assert http.get(f"{sim.url}{SEARCHES}/{sid}").json()["state"] == "Completed, Errored"


def test_empty_text_busy_and_duplicate_id_leave_nothing_or_fail_whole(sim, http):
    url = sim.url + SEARCHES
    assert http.post(url, json={"searchText": "   "}).status_code == 400
    sim.busy(1)
    assert http.post(url, json={"searchText": "bjork joga"}).status_code == 429
    assert http.get(url).json() == []  # neither was saved
    sid = "12345678-1234-1234-1234-123456789abe"
    assert http.post(url, json={"searchText": "bjork joga", "id": sid}).status_code == 200
    assert http.post(url, json={"searchText": "bjork joga", "id": sid}).status_code == 500


def test_search_lifecycle_cancel_delete_and_responses(sim, http):
    url = sim.url + SEARCHES
    sim.search_duration = 0.2
    r = http.post(url, json={"searchText": "Queen Don Stop Me Now", "searchTimeout": 100})
    s = r.json()
    assert s["state"] == "InProgress" and s["isComplete"] is False and s["responses"] == []
    assert GUID.match(s["id"])
    sid = s["id"]
    assert http.get(f"{url}/{sid}", params={"includeResponses": "true"}).json()["responses"] == []
    assert http.get(f"{url}/{sid}/responses").json() == []  # only persisted at the end
    wait_for(lambda: http.get(f"{url}/{sid}").json()["isComplete"])
    done = http.get(f"{url}/{sid}", params={"includeResponses": "true"}).json()
    assert done["responseCount"] == 1 and done["fileCount"] == 2 and done["lockedFileCount"] == 0
    f = done["responses"][0]["files"][0]
    assert f["extension"] == "flac" and f["isLocked"] is False
    assert http.get(f"{url}/{sid}").json()["responses"] == []  # not without includeResponses
    assert len(http.get(f"{url}/{sid}/responses").json()) == 1
    sim.search_duration = 30
    slow = http.post(url, json={"searchText": "bjork joga"}).json()["id"]
    assert http.put(f"{url}/{slow}").status_code == 200
    assert http.get(f"{url}/{slow}").json()["state"] == "Completed, Cancelled"
    assert http.delete(f"{url}/{slow}").status_code == 204
    assert http.delete(f"{url}/{slow}").status_code == 404
    assert http.get(f"{url}/{slow}").status_code == 404
    assert sim.searches_made == ["Queen Don Stop Me Now", "bjork joga"]


def test_locked_files_obey_the_same_words(sim, http):
    sim.add_search_results(None, [{"username": "locker", "files": [], "lockedFiles": [
        {"filename": "@@l\\Björk\\Jóga (locked).flac", "size": 1},
        {"filename": "@@l\\Björk\\Army of Me.flac", "size": 1}]}])
    found = search(sim, http, "björk jóga")
    locker = [r for r in found["responses"] if r["username"] == "locker"]
    assert [f["filename"] for f in locker[0]["lockedFiles"]] == ["@@l\\Björk\\Jóga (locked).flac"]


def _parse(stamp: str) -> datetime:
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0').ljust(6, '0')[:6]}+00:00")
