"""Playlist sync against the strict simulator: what issues 10 and 13 found broken.

Runs that could loop or stall on broken code run in a thread with a deadline, so a
regression fails here instead of hanging the suite.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Any, Callable

import pytest

from test_sync import (
    BEST,
    FOREVER_QUEUED,
    LUCKY,
    SECOND,
    SIZE,
    SUCCEED,
    ScriptedClient,
    _config,
    _fast_engine,
    engine,
    enqueue_posts,
    peer,
    run_bg,
)
from trayagent.sync.playlist import WantedTrack
from trayagent.sync.store import SyncStore
from trayagent.sync_cli import run_sync_command

pytestmark = pytest.mark.integration


def search_posts(sim: Any) -> list[int]:
    """Status of every search POST the simulator answered."""
    return [r.status for r in sim.requests if r.method == "POST" and r.path.endswith("/searches")]


def run_with_deadline(eng: Any, tracks: list[WantedTrack], seconds: float,
                      until: Callable[[Any], bool] | None = None, **kw: Any) -> Any:
    """Run a sync; stop it after `seconds`, or once `until(progress)` holds (a loop or a stall
    ends as a failed assertion, not a hung suite)."""
    stop = threading.Event()
    if until is not None:
        kw["progress_cb"] = lambda p: stop.set() if until(p) else None
    th, box = run_bg(eng, tracks, stop_event=stop, **kw)
    th.join(seconds)
    stop.set()
    th.join(10)
    return box["report"]


def one_file_peer(user: str, path: str, **kw: Any) -> dict[str, Any]:
    return peer(user, [{"filename": path, "size": SIZE, "length": 248}], **kw)


# --------------------------------------------------------------------------- issue 13.2 / 13.3


def test_one_letter_track_is_not_found_at_once_and_never_blocks_the_next(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results(None, [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED})
    report = run_with_deadline(engine(client, tmp_path), [WantedTrack("X", "Y"), LUCKY], 8)

    assert [t.status for t in report.tracks] == ["not_found", "completed"]
    assert "one-letter" in (report.tracks[0].reason or "")
    assert search_posts(sim_fast) == [200]  # nothing slskd would refuse was sent


def test_a_400_is_final_for_that_text_and_its_saved_search_is_deleted(sim_fast, real_client, tmp_path):
    """slskd refuses a text (400) after saving it: the next form, then not found; no loop, no litter."""
    sim_fast.add_search_results(None, [BEST])

    class Mangling(ScriptedClient):
        def start_search(self, text: str, **kw: Any) -> Any:  # as if slskd saw only short words
            return self.real.start_search("a b c" if "uprising" in text else text, **kw)

    client = Mangling(real_client, sim_fast, {"best": SUCCEED})
    report = run_with_deadline(engine(client, tmp_path), [WantedTrack("Muse", "Uprising"), LUCKY], 8)

    assert [t.status for t in report.tracks] == ["not_found", "completed"]
    assert "slskd refused the search text" in (report.tracks[0].reason or "")
    assert search_posts(sim_fast) == [400, 200]  # "muse uprising" is the only form: one POST
    assert real_client._get_json("/api/v0/searches") == []  # the errored search was deleted


def test_no_search_while_slskd_is_not_logged_in(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results(None, [BEST])
    sim_fast.set_logged_in(False)
    threading.Timer(1.0, sim_fast.set_logged_in, args=(True,)).start()
    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED})
    began = time.monotonic()
    report = run_with_deadline(engine(client, tmp_path), [LUCKY], 10)

    assert report.count("completed") == 1 and time.monotonic() - began >= 1.0
    assert search_posts(sim_fast) == [200]  # no 409 while logged out: it asked first
    assert real_client._get_json("/api/v0/searches") == []


def test_a_409_search_is_deleted_not_left_behind(sim_fast, real_client, tmp_path):
    """Logged out between the check and the POST: slskd saves the search as errored; we delete it."""
    sim_fast.add_search_results(None, [BEST])

    class LogoutRace(ScriptedClient):
        raced = False

        def start_search(self, text: str, **kw: Any) -> Any:
            if not self.raced:
                self.raced = True
                self.sim.set_logged_in(False)
                threading.Timer(0.3, self.sim.set_logged_in, args=(True,)).start()
            return self.real.start_search(text, **kw)

    client = LogoutRace(real_client, sim_fast, {"best": SUCCEED})
    report = run_with_deadline(engine(client, tmp_path), [LUCKY], 10)

    assert report.count("completed") == 1
    assert search_posts(sim_fast) == [409, 200]
    assert real_client._get_json("/api/v0/searches") == []


# --------------------------------------------------------------------------- issue 10.1: never stall


def test_peers_that_queue_do_not_stop_searching_or_enqueueing(sim_fast, real_client, tmp_path):
    names = ["Around the World", "Harder Better Faster Stronger", "One More Time", "Digital Love",
             "Aerodynamic", "Voyager"]
    scripts: dict[str, Any] = {}
    for i, name in enumerate(names):
        user = f"peer{i}"
        sim_fast.add_search_results(None, [one_file_peer(user, f"@@{user}\\Daft Punk\\{name}.flac")])
        scripts[user] = FOREVER_QUEUED if i < 3 else SUCCEED  # the first three peers queue for an hour
    client = ScriptedClient(real_client, sim_fast, scripts)
    tracks = [WantedTrack("Daft Punk", name, None, 248.0) for name in names]
    report = run_with_deadline(engine(client, tmp_path, queue_timeout=60, max_in_progress=3), tracks, 6,
                               until=lambda p: p.completed == 3)

    assert [t.status for t in report.tracks] == ["queued"] * 3 + ["completed"] * 3
    assert len(search_posts(sim_fast)) == 6


def test_a_stalled_transfer_moves_to_the_next_candidate(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    stalled = [("transfer", 0)]  # starts, then not a byte
    client = ScriptedClient(real_client, sim_fast, {"best": stalled, "second": SUCCEED})
    report = run_with_deadline(engine(client, tmp_path, stall_timeout=0.4 / 60), [LUCKY], 8)

    assert report.count("completed") == 1 and report.tracks[0].username == "second"
    states = {t["username"]: t["state"] for t in sim_fast.transfers()}
    assert states["best"] == "Completed, Cancelled"


def test_transfers_in_progress_are_bounded(sim_fast, real_client, tmp_path):
    names = [f"Song Number {i}" for i in range(6)]
    for i, name in enumerate(names):
        sim_fast.add_search_results(None, [one_file_peer(f"p{i}", f"@@p{i}\\Artist\\{name}.flac")])
    sim_fast.enqueue_plan = [("transfer", SIZE / 0.6), ("end", "Completed, Succeeded")]  # starts at once
    seen: list[int] = []

    def sample(_p: Any) -> None:
        seen.append(sum(1 for t in sim_fast.transfers() if t["state"] in ("InProgress", "Initializing")))

    tracks = [WantedTrack("Artist", n, None, 248.0) for n in names]
    report = run_with_deadline(engine(real_client, tmp_path, max_in_progress=2), tracks, 15, progress_cb=sample)
    assert report.count("completed") == 6
    assert max(seen) == 2


# --------------------------------------------------------------------------- issue 10.2-10.5 end to end


def test_only_another_version_is_not_found_with_the_near_miss(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results(None, [one_file_peer("live", "@@l\\Coldplay\\Live 2003\\06 Clocks (Live).flac")])
    report = engine(real_client, tmp_path).run([WantedTrack("Coldplay", "Clocks", None, 248.0)])

    (track,) = report.tracks
    assert track.status == "not_found" and enqueue_posts(sim_fast) == []
    assert track.reason == ("1 file from 1 peer, none matched: best was Live 2003\\06 Clocks (Live).flac from live "
                            "(live version, not asked for)")
    assert track.to_json()["near_misses"] == [{"username": "live", "filename": "@@l\\Coldplay\\Live 2003\\06 Clocks "
                                               "(Live).flac", "why": "live version, not asked for"}]


@pytest.mark.parametrize("wanted,path,searches", [
    (WantedTrack("Björk", "Jóga"), "@@b\\Björk\\Homogenic\\02 Jóga.flac", ["björk jóga"]),
    (WantedTrack("Björk", "Jóga"), "@@b\\Bjork\\Homogenic\\02 Joga.flac", ["björk jóga", "bjork joga"]),
    (WantedTrack("Queen", "Don't Stop Me Now"), "@@q\\Queen\\Jazz\\12 Don't Stop Me Now.flac",
     ["queen don stop me now"]),
    (WantedTrack("AC/DC", "Back in Black"), "@@a\\AC-DC\\Back in Black\\06 Back in Black.flac",
     ["ac dc back in black"]),
    (WantedTrack("Lady Gaga", 'Hold My Hand - From "Top Gun: Maverick"'),
     "@@g\\Lady Gaga\\Top Gun Maverick OST\\01 Hold My Hand.flac", ["lady gaga hold my hand"]),
    (WantedTrack("Simon & Garfunkel", "The Boxer"), "@@s\\Simon and Garfunkel\\Bridge\\04 The Boxer.flac",
     ["simon garfunkel the boxer"]),
])
def test_peers_find_what_people_ask_for(sim_fast, real_client, tmp_path, wanted, path, searches):
    sim_fast.add_search_results(None, [one_file_peer("u", path)])
    client = ScriptedClient(real_client, sim_fast, {"u": SUCCEED})
    report = engine(client, tmp_path).run([wanted])
    assert report.count("completed") == 1 and report.tracks[0].filename == path
    assert sim_fast.searches_made == searches


def test_a_band_name_is_not_matched_by_its_first_word_in_the_music_folder(sim_fast, real_client, tmp_path):
    music = tmp_path / "music"
    (music / "Earth").mkdir(parents=True)
    (music / "Earth" / "Earth - September.mp3").write_bytes(b"not really audio")
    report = engine(real_client, tmp_path, music=music).run([WantedTrack("Earth, Wind & Fire", "September")])
    assert report.tracks[0].status == "not_found"  # searched, not "already had"
    assert sim_fast.searches_made[0] == "earth wind fire september"


# --------------------------------------------------------------------------- issue 10.7: reports


def test_still_queued_does_not_count_tracks_never_searched(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": FOREVER_QUEUED})
    tracks = [LUCKY, WantedTrack("Muse", "Uprising"), WantedTrack("Muse", "Starlight")]
    stop = threading.Event()
    eng = engine(client, tmp_path, searches_per_minute=2, queue_timeout=60)  # next search in 30 s
    report = eng.run(tracks, stop_event=stop, progress_cb=lambda p: stop.set() if p.active else None)

    assert [t.status for t in report.tracks] == ["queued", "not_searched", "not_searched"]
    assert "1 still queued" in report.summary() and "2 not searched yet" in report.summary()


def test_progress_has_counts_and_an_eta_from_the_search_rate(sim_fast, real_client, tmp_path):
    seen: list[Any] = []
    tracks = [WantedTrack("Nobody", f"Nothing {i}") for i in range(4)]
    engine(real_client, tmp_path, searches_per_minute=300).run(tracks, progress_cb=seen.append)
    first = seen[0]
    assert first.eta is not None and 0.6 <= first.eta <= 1.5  # 3 intervals of 0.2 s + the search time
    assert seen[-1].not_found == 4 and "4 not found" in seen[-1].text()
    assert sum(len(p.settled) for p in seen) == 4  # one line per settled track, once


def test_one_line_per_track_in_the_log(sim_fast, real_client, tmp_path, caplog):
    sim_fast.add_search_results(None, [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED})
    with caplog.at_level(logging.INFO, logger="trayagent.sync.engine"):
        engine(client, tmp_path).run([LUCKY, WantedTrack("Nobody", "Nothing")])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("track ")]
    assert sorted(lines) == ["track downloaded: Daft Punk - Get Lucky (Random Access Memories\\08 - Get Lucky.flac "
                             "from best)", "track not found: Nobody - Nothing (no results)"]


def test_cli_dry_run_searches_ranks_and_enqueues_nothing(sim_fast, tmp_path, monkeypatch):
    sim_fast.add_search_results(None, [BEST, SECOND])
    playlist = tmp_path / "p.txt"
    playlist.write_text("Daft Punk - Get Lucky\nNobody - Nothing\nnot a track line\n")
    config = _config(sim_fast, tmp_path, monkeypatch)
    out = io.StringIO()
    code = run_sync_command(config, [playlist], False, out, io.StringIO(), engine_factory=_fast_engine,
                            dry_run=True)
    text = out.getvalue()
    assert code == 1 and enqueue_posts(sim_fast) == []
    assert "would download: Daft Punk - Get Lucky (Random Access Memories\\08 - Get Lucky.flac from best)" in text
    assert "skipped playlist line" in text and "not 'Artist - Title'" in text
    assert text.rstrip().endswith("Dry run of 2 tracks: 1 would be downloaded, 1 not found, 1 playlist line skipped")
    real = SyncStore(config.state_path)
    try:  # the state is untouched; the search clock is shared
        untouched = [real.load(WantedTrack(a, t).key) for a, t in (("Daft Punk", "Get Lucky"), ("Nobody", "Nothing"))]
        assert untouched == [None, None] and real.meta("last_search_at") is not None
    finally:
        real.close()
    sim_fast.enqueue_plan = SUCCEED
    out = io.StringIO()
    run_sync_command(config, [playlist], True, out, io.StringIO(), engine_factory=_fast_engine)
    data = json.loads(out.getvalue())  # the real run searched again and downloaded the pick
    assert data["completed"] == 1 and data["tracks"][0]["username"] == "best"
    assert data["skipped_lines"] == [{"source": str(playlist), "line": 3, "text": "not a track line",
                                      "reason": "not 'Artist - Title'"}]
    assert len(enqueue_posts(sim_fast)) == 1


def test_tracks_obtained_under_an_earlier_versions_key_are_not_downloaded_again(sim_fast, real_client, tmp_path):
    from trayagent.sync.store import COMPLETED, TrackState, legacy_key

    assert legacy_key("Simon & Garfunkel", "The Boxer") == "simon|the boxer"  # what 0.x stored
    assert legacy_key("Coldplay", "Clocks - 2008 Remaster") == "coldplay|clocks"
    store = SyncStore(tmp_path / "state.sqlite3")
    old = TrackState(legacy_key("Simon & Garfunkel", "The Boxer"), WantedTrack("Simon & Garfunkel", "The Boxer"),
                     status=COMPLETED, finished_at=1.0, found=True)
    store.save(old, 1.0)
    store.close()
    report = engine(real_client, tmp_path).run([WantedTrack("Simon & Garfunkel", "The Boxer")])
    assert [t.status for t in report.tracks] == ["skipped"] and sim_fast.searches_made == []


def test_trayagent_sync_dry_run_as_a_process(sim_fast, tmp_path):
    """`trayagent sync --dry-run --json`: a real process over HTTP; the picks, and nothing enqueued."""
    import os
    import subprocess
    import sys

    from agentproc import ROOT, write_config
    from conftest import API_KEY

    sim_fast.add_search_results(None, [BEST, SECOND])
    playlist = tmp_path / "liked.txt"
    playlist.write_text("Daft Punk - Get Lucky\nX - Y\n", encoding="utf-8")
    cfg = write_config(tmp_path / "c.toml", sim_fast.url, API_KEY,
                       sync={"searches_per_minute": 600, "search_timeout": 0.05})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLSKD_", "DISPLAY", "DBUS_"))}
    env.update(TRAYAGENT_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "trayagent", "sync", "--dry-run", "--json", "--config", str(cfg),
                        str(playlist)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["dry_run"] is True  # one track would not be found
    assert (data["picked"], data["not_found"]) == (1, 1)
    assert data["tracks"][0]["username"] == "best" and "one-letter" in data["tracks"][1]["reason"]
    assert "[1/2]" in r.stderr or "[2/2]" in r.stderr  # piped: a line per track
    assert enqueue_posts(sim_fast) == []
