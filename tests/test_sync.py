"""Playlist sync against the simulator over real HTTP, with scripted peers.

Each peer's behaviour is scripted on the simulator the moment its file is enqueued (plans
with small timings), so every scenario is deterministic: what slskd answers, in what order.
The invariant checked everywhere: no peer+file is ever enqueued twice.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from trayagent.config import Config, SlskdConfig, SyncConfig
from trayagent.core.tracker import Rules
from trayagent.sync.playlist import WantedTrack
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdUnreachable
from trayagent.sync.engine import EngineTimings, SyncEngine
from trayagent.sync.library import LocalLibrary
from trayagent.sync.report import SyncProgress
from trayagent.sync.store import SyncBusy, SyncStore
from trayagent.sync_cli import run_configured_sync, run_sync_command

API_KEY = "test-key-0123456789abcdef"
LUCKY = WantedTrack("Daft Punk", "Get Lucky", "Random Access Memories", 248.0)
SIZE = 30_000_000

QUEUED = ("state", "Queued, Remotely", 0.1)
SUCCEED = [QUEUED, ("transfer", 500_000_000), ("end", "Completed, Succeeded")]
REJECT = [QUEUED, ("end", "Completed, Rejected")]
FOREVER_QUEUED = [("state", "Queued, Remotely", 3600)]

# slskd ends a search searchTimeout after its last response: 50 ms keeps the suite fast.
FAST = EngineTimings(poll_interval=0.05, rules=Rules(failure_settle=0.3), busy_backoff=0.05, search_backoff=0.1,
                     give_up_after=5.0, max_search_rounds=2, search_timeout_ms=50, login_check=0.05)


def file(user_dir: str, name: str, size: int = SIZE, **extra: Any) -> dict[str, Any]:
    return {"filename": f"@@{user_dir}\\Music\\Daft Punk\\Random Access Memories\\{name}", "size": size,
            "length": 248, **extra}


def peer(username: str, files: list[dict[str, Any]], free: bool = True, queue: int = 0,
         speed: int = 1_000_000) -> dict[str, Any]:
    return {"username": username, "files": files, "hasFreeUploadSlot": free, "queueLength": queue,
            "uploadSpeed": speed}


# Ranked order for LUCKY: best (flac, free) > second (flac, queue 5) > third (mp3, busy).
BEST = peer("best", [file("b", "08 - Get Lucky.flac")], speed=5_000_000)
SECOND = peer("second", [file("s", "08 Get Lucky.flac")], free=False, queue=5)
THIRD = peer("third", [file("t", "Get Lucky.mp3", size=9_000_000, bitRate=320)], free=False, queue=20)


class ScriptedClient:
    """The real client; a peer's scripted behaviour is installed on each enqueued transfer."""

    def __init__(self, real: SlskdClient, sim: Any, peers: dict[str, Any] | None = None,
                 before_enqueue: Callable[[str], None] | None = None) -> None:
        self.real, self.sim, self.peers = real, sim, peers or {}
        self.before_enqueue = before_enqueue

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def enqueue(self, username: str, files: Any) -> Any:
        if self.before_enqueue:
            self.before_enqueue(username)
        result = self.real.enqueue(username, files)
        for t in result.enqueued:
            script = self.peers.get(username)
            if callable(script):
                script(t.id)
            elif script:
                self.sim.plan(t.id, script)
        return result


def sync_cfg(**kw: Any) -> SyncConfig:
    base = dict(searches_per_minute=600.0, max_attempts=3, queue_timeout=0.5,
                preferred_formats=("flac", "mp3"), min_bitrate=192)
    base.update(kw)
    return SyncConfig(**base)


def engine(client: Any, tmp_path: Path, timings: EngineTimings = FAST, music: Path | None = None,
           **cfg: Any) -> SyncEngine:
    return SyncEngine(client, sync_cfg(**cfg), tmp_path / "state.sqlite3", timings=timings,
                      library=LocalLibrary(music))


def enqueue_posts(sim: Any) -> list[tuple[str, int]]:
    """(path, status) of every legacy enqueue POST the simulator saw."""
    return [(r.path, r.status) for r in sim.requests if r.method == "POST" and "/transfers/downloads/" in r.path]


def assert_never_enqueued_twice(sim: Any) -> None:
    records = Counter((t["username"], t["filename"]) for t in sim.transfers(include_removed=True))
    twice = {k: v for k, v in records.items() if v > 1}
    assert not twice, f"enqueued more than once: {twice}"


def assert_searches_deleted(sim: Any, client: SlskdClient) -> None:
    assert client._get_json("/api/v0/searches") == []


def run_bg(eng: SyncEngine, tracks: list[WantedTrack], **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["report"] = eng.run(tracks, **kw)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, box


pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- scenarios


def test_first_candidate_rejects_second_succeeds(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [THIRD, SECOND, BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": REJECT, "second": SUCCEED, "third": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])

    assert report.totals() == {"total": 1, "skipped": 0, "found": 1, "queued": 0, "pending": 0,
                               "not_searched": 0, "picked": 0, "completed": 1, "failed": 0, "not_found": 0}
    (track,) = report.tracks
    assert track.username == "second" and track.attempts == 2 and track.searches == 1
    assert sim_fast.searches_made == ["daft punk get lucky"]  # no new search for the retry
    posts = enqueue_posts(sim_fast)
    assert [p.rsplit("/", 1)[-1] for p, _ in posts] == ["best", "second"]
    assert all(s == 201 for _, s in posts)
    states = {t["username"]: t["state"] for t in sim_fast.transfers()}
    assert states == {"best": "Completed, Rejected", "second": "Completed, Succeeded"}
    assert_never_enqueued_twice(sim_fast)
    assert_searches_deleted(sim_fast, real_client)


def test_nothing_found_tries_one_looser_search_then_gives_up(sim_fast, real_client, tmp_path):
    wanted = WantedTrack("Daft Punk", "Get Lucky (Radio Edit)", None, None)
    report = engine(real_client, tmp_path).run([wanted])

    assert report.count("not_found") == 1 and report.tracks[0].reason == "no results"
    # "Radio Edit" is not part of the song's name: it ranks, it is not searched for
    assert sim_fast.searches_made == ["daft punk get lucky", "get lucky"]
    assert enqueue_posts(sim_fast) == []
    assert_searches_deleted(sim_fast, real_client)
    assert not report.ok


def test_looser_search_is_used_only_when_the_first_finds_nothing(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results(lambda text: text == "get lucky", [BEST])
    wanted = WantedTrack("Daft Punk", "Get Lucky (Radio Edit)")
    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED})
    report = engine(client, tmp_path).run([wanted])
    assert report.count("completed") == 1
    assert sim_fast.searches_made == ["daft punk get lucky", "get lucky"]


def test_429_on_enqueue_waits_and_retries_without_duplicates(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    armed = {"done": False}

    def busy_once(_user: str) -> None:
        if not armed["done"]:
            armed["done"] = True
            sim_fast.busy(2)  # the next two enqueue POSTs answer 429

    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED}, before_enqueue=busy_once)
    report = engine(client, tmp_path).run([LUCKY])

    assert report.count("completed") == 1 and report.tracks[0].username == "best"
    assert [s for _, s in enqueue_posts(sim_fast)] == [429, 429, 201]
    assert report.tracks[0].attempts == 1  # a 429 is not a failed attempt
    assert len(sim_fast.transfers()) == 1
    assert_never_enqueued_twice(sim_fast)


def test_429_on_search_waits_and_retries(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST])
    sim_fast.busy(1)
    client = ScriptedClient(real_client, sim_fast, {"best": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])
    assert report.count("completed") == 1
    assert sim_fast.searches_made == ["daft punk get lucky"]  # the 429'd POST made no search
    assert report.tracks[0].searches == 1


def test_sync_restarted_mid_way_resumes_without_enqueueing_again(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    sim_fast.add_search_results("around the world", [peer("atw", [{"filename": "@@a\\Daft Punk\\Homework\\Around the World.flac", "size": SIZE}])])
    slow = [("state", "Queued, Remotely", 0.8), ("transfer", 500_000_000), ("end", "Completed, Succeeded")]
    client = ScriptedClient(real_client, sim_fast, {"best": slow, "atw": slow})
    tracks = [LUCKY, WantedTrack("Daft Punk", "Around the World")]
    stop = threading.Event()

    def stop_when_enqueued(p: SyncProgress) -> None:
        if p.active >= 1:
            stop.set()

    first = engine(client, tmp_path).run(tracks, progress_cb=stop_when_enqueued, stop_event=stop)
    assert first.stopped and first.count("completed") == 0
    assert first.count("queued") == 1 and first.count("pending") == 1
    assert len(enqueue_posts(sim_fast)) == 1

    # A fresh engine and client, as after quitting and starting again.
    client2 = ScriptedClient(SlskdClient(SlskdConfig(url=sim_fast.url, api_key=API_KEY)), sim_fast,
                             {"best": slow, "atw": slow})
    second = engine(client2, tmp_path).run(tracks)
    assert second.count("completed") == 2 and not second.stopped
    assert sorted(sim_fast.searches_made) == ["daft punk around the world", "daft punk get lucky"]
    assert [p.rsplit("/", 1)[-1] for p, _ in enqueue_posts(sim_fast)] == ["best", "atw"]
    assert_never_enqueued_twice(sim_fast)

    # Third run: everything obtained, nothing asked of slskd.
    before = len(sim_fast.requests)
    third = engine(client2, tmp_path).run(tracks)
    assert third.count("skipped") == 2 and third.ok
    assert [r for r in sim_fast.requests[before:] if r.method == "POST"] == []


class LostAnswerClient(ScriptedClient):
    """slskd enqueues, but the answer never arrives (connection reset after the POST)."""

    def enqueue(self, username: str, files: Any) -> Any:
        super().enqueue(username, files)
        raise SlskdUnreachable("connection reset after POST")


def test_lost_enqueue_answer_is_reconciled_not_repeated(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    client = LostAnswerClient(real_client, sim_fast, {"best": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])
    assert report.count("completed") == 1 and report.tracks[0].username == "best"
    assert len(enqueue_posts(sim_fast)) == 1
    assert_never_enqueued_twice(sim_fast)


def test_crash_between_intent_and_post_is_reconciled_on_start(sim_fast, real_client, tmp_path):
    """The store says 'enqueuing'; slskd has the transfer: adopt it. Absent: ask once."""
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    crash = threading.Event()

    class Crash(BaseException):
        pass

    class CrashingClient(ScriptedClient):
        def enqueue(self, username: str, files: Any) -> Any:
            result = super().enqueue(username, files)
            crash.set()
            raise Crash()  # the process dies right after slskd accepted

    with pytest.raises(Crash):
        engine(CrashingClient(real_client, sim_fast, {"best": SUCCEED}), tmp_path).run([LUCKY])
    assert crash.is_set()
    report = engine(ScriptedClient(real_client, sim_fast), tmp_path).run([LUCKY])
    assert report.count("completed") == 1 and report.tracks[0].username == "best"
    assert len(enqueue_posts(sim_fast)) == 1
    assert_never_enqueued_twice(sim_fast)


def test_queue_timeout_moves_to_next_candidate_and_cancels(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    client = ScriptedClient(real_client, sim_fast, {"best": FOREVER_QUEUED, "second": SUCCEED})
    report = engine(client, tmp_path, queue_timeout=0.4 / 60).run([LUCKY])  # 0.4 s, in minutes
    assert report.count("completed") == 1 and report.tracks[0].username == "second"
    states = {t["username"]: t["state"] for t in sim_fast.transfers()}
    assert states["best"] == "Completed, Cancelled"
    assert_never_enqueued_twice(sim_fast)


def test_queued_remotely_is_waited_for_within_queue_timeout(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    slow = [("state", "Queued, Remotely", 0.6), ("transfer", 500_000_000), ("end", "Completed, Succeeded")]
    client = ScriptedClient(real_client, sim_fast, {"best": slow})
    report = engine(client, tmp_path, queue_timeout=0.5).run([LUCKY])  # 30 s: far longer than 0.6 s
    assert report.tracks[0].username == "best" and report.tracks[0].attempts == 1


def test_retryable_failure_is_given_time_for_slskds_own_retry(sim_fast, real_client, tmp_path):
    """slskd 0.26 briefly shows 'Completed, Errored' before retrying under the same id."""
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    retried = [QUEUED, ("end", "Completed, Errored"), ("wait", 0.15), ("attempt",),
               ("transfer", 500_000_000), ("end", "Completed, Succeeded")]
    client = ScriptedClient(real_client, sim_fast, {"best": retried, "second": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])  # settle 0.3 s > the 0.15 s retry delay
    assert report.tracks[0].username == "best" and report.tracks[0].attempts == 1
    assert len(enqueue_posts(sim_fast)) == 1


def test_timed_out_after_settling_moves_on(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    client = ScriptedClient(real_client, sim_fast, {"best": [QUEUED, ("end", "Completed, TimedOut")],
                                                    "second": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])
    assert report.tracks[0].username == "second" and report.tracks[0].attempts == 2
    assert_never_enqueued_twice(sim_fast)


def test_slskd_restart_mid_download_follows_the_reenqueued_transfer(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    slow = [("state", "Queued, Remotely", 0.5), ("transfer", 500_000_000), ("end", "Completed, Succeeded")]
    client = ScriptedClient(real_client, sim_fast, {"best": slow, "second": SUCCEED})
    restarted: dict[str, Any] = {}

    def restart_once(p: SyncProgress) -> None:
        if p.active and "done" not in restarted:
            restarted["done"] = sim_fast.restart(downtime=0.3, relogin_delay=0.4)

    report = engine(client, tmp_path).run([LUCKY], progress_cb=restart_once)
    assert restarted["done"].wait(5)
    assert report.count("completed") == 1 and report.tracks[0].username == "best"
    assert len(enqueue_posts(sim_fast)) == 1  # slskd re-enqueued it, not us
    records = [t for t in sim_fast.transfers(include_removed=True) if t["username"] == "best"]
    assert len(records) == 2 and {t["state"] for t in records} == {"Completed, Errored", "Completed, Succeeded"}


def test_a_vanished_transfer_is_given_the_trackers_grace_polls(sim_fast, real_client, tmp_path):
    """A transfer slskd no longer has, even by id, is given up after `grace_polls` polls (core/rules)."""
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    client = ScriptedClient(real_client, sim_fast, {"best": FOREVER_QUEUED, "second": SUCCEED})
    deleted: dict[str, str] = {}

    def delete_once(p: SyncProgress) -> None:
        live = [t for t in sim_fast.transfers() if t["username"] == "best"]
        if live and not deleted:
            deleted["id"] = live[0]["id"]
            sim_fast.delete(live[0]["id"])

    report = engine(client, tmp_path, queue_timeout=60.0).run([LUCKY], progress_cb=delete_once)
    assert report.tracks[0].username == "second" and report.tracks[0].attempts == 2
    missing = [r for r in sim_fast.requests if r.method == "GET" and r.path.endswith(deleted["id"])]
    assert [r.status for r in missing] == [404] * Rules().grace_polls


def test_succeeded_without_all_bytes_is_not_obtained(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])

    def short(tid: str) -> None:
        sim_fast.set_state(tid, "Completed, Succeeded", bytes_transferred=1000)

    client = ScriptedClient(real_client, sim_fast, {"best": short, "second": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])
    assert report.count("completed") == 1 and report.tracks[0].username == "second"


def test_run_configured_sync_for_the_tray(sim_fast, real_client, tmp_path, monkeypatch):
    config = _config(sim_fast, tmp_path, monkeypatch, playlists=())
    with pytest.raises(ValueError):
        run_configured_sync(config, client=real_client)
    missing = tmp_path / "nope.m3u"
    from trayagent.sync.playlist import PlaylistError

    with pytest.raises(PlaylistError):
        run_configured_sync(config, [missing], client=real_client)


def test_enqueued_is_never_counted_as_obtained(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": FOREVER_QUEUED})
    stop = threading.Event()
    th, box = run_bg(engine(client, tmp_path, queue_timeout=60), [LUCKY], stop_event=stop,
                     progress_cb=lambda p: stop.set() if p.active else None)
    th.join(10)
    assert box["report"].count("queued") == 1 and box["report"].count("completed") == 0
    assert not box["report"].ok


def test_max_attempts_bounds_the_peers_asked(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND, THIRD])
    client = ScriptedClient(real_client, sim_fast, {"best": REJECT, "second": REJECT, "third": SUCCEED})
    report = engine(client, tmp_path, max_attempts=2).run([LUCKY])
    assert report.count("failed") == 1 and "2 peers tried" in (report.tracks[0].reason or "")
    assert [p.rsplit("/", 1)[-1] for p, _ in enqueue_posts(sim_fast)] == ["best", "second"]
    assert sim_fast.searches_made == ["daft punk get lucky"]


def test_exhausted_pool_searches_again_but_never_reasks_a_failed_file(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": REJECT})
    report = engine(client, tmp_path).run([LUCKY])
    assert sim_fast.searches_made == ["daft punk get lucky", "daft punk get lucky"]  # rounds = 2
    assert len(enqueue_posts(sim_fast)) == 1
    assert report.count("not_found") == 1 and "exhausted" in (report.tracks[0].reason or "")


def test_offline_peer_is_skipped_for_the_next(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST, SECOND])
    sim_fast.set_user_offline("best")
    client = ScriptedClient(real_client, sim_fast, {"second": SUCCEED})
    report = engine(client, tmp_path).run([LUCKY])
    assert report.tracks[0].username == "second" and report.count("completed") == 1
    assert [s for _, s in enqueue_posts(sim_fast)] == [500, 201]


def test_track_in_music_folder_is_skipped_without_searching(sim_fast, real_client, tmp_path):
    music = tmp_path / "music"
    (music / "Daft Punk").mkdir(parents=True)
    (music / "Daft Punk" / "Daft Punk - Get Lucky.mp3").write_bytes(b"not really audio")
    _write_tagged_flac(music / "x" / "track01.flac", artist="Massive Attack", title="Teardrop")
    tracks = [LUCKY, WantedTrack("Massive Attack", "Teardrop"), WantedTrack("Muse", "Uprising")]
    report = engine(real_client, tmp_path, music=music).run(tracks)
    assert [t.status for t in report.tracks] == ["skipped", "skipped", "not_found"]
    assert sim_fast.searches_made == ["muse uprising"]


def test_searches_are_rate_limited(sim_fast, real_client, tmp_path):
    import time as _time

    tracks = [WantedTrack("Artist", f"Song Number {i}") for i in range(3)]  # each: strict + loose
    began = _time.monotonic()
    engine(real_client, tmp_path, searches_per_minute=120.0).run(tracks)  # one per 0.5 s
    elapsed = _time.monotonic() - began
    searches = [r.at for r in sim_fast.requests if r.method == "POST" and r.path.endswith("/searches")]
    assert len(searches) == 6
    gaps = [b - a for a, b in zip(searches, searches[1:])]
    assert min(gaps) >= 0.45 and elapsed >= 2.4


def test_concurrent_runs_on_one_store_are_refused(sim_fast, real_client, tmp_path):
    sim_fast.add_search_results("get lucky", [BEST])
    client = ScriptedClient(real_client, sim_fast, {"best": FOREVER_QUEUED})
    stop = threading.Event()
    started = threading.Event()
    th, box = run_bg(engine(client, tmp_path, queue_timeout=60), [LUCKY], stop_event=stop,
                     progress_cb=lambda p: started.set())
    assert started.wait(5)
    with pytest.raises(SyncBusy):
        engine(client, tmp_path).run([LUCKY])
    stop.set()
    th.join(10)
    assert box["report"].stopped


def test_unreachable_slskd_ends_the_run_with_an_error(tmp_path):
    client = SlskdClient(SlskdConfig(url="http://127.0.0.1:9", api_key=API_KEY, timeout=0.5))
    timings = EngineTimings(poll_interval=0.05, give_up_after=0.3)
    report = engine(client, tmp_path, timings=timings).run([LUCKY])
    assert report.error and "unreachable" in report.error
    assert report.count("not_searched") == 1 and not report.ok


# --------------------------------------------------------------------------- CLI


def _config(sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **sync: Any) -> Config:
    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    return Config(slskd=SlskdConfig(url=sim.url, api_key=API_KEY), sync=sync_cfg(**sync))


def _fast_engine(client: Any, cfg: Any, path: Any, **kw: Any) -> SyncEngine:
    return SyncEngine(client, cfg, path, timings=FAST, library=LocalLibrary(None), **kw)


def test_cli_json_report_and_exit_codes(sim_fast, tmp_path, monkeypatch):
    sim_fast.add_search_results("get lucky", [BEST])
    sim_fast.enqueue_plan = SUCCEED
    playlist = tmp_path / "p.m3u"
    playlist.write_text("#EXTM3U\n#EXTINF:248,Daft Punk - Get Lucky\nx.mp3\n#EXTINF:1,Nobody - Nothing\ny.mp3\n")
    config = _config(sim_fast, tmp_path, monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    code = run_sync_command(config, [str(playlist)], True, out, err, engine_factory=_fast_engine)
    data = json.loads(out.getvalue())
    assert code == 1  # one track not found
    assert {k: data[k] for k in ("total", "completed", "not_found", "queued", "failed", "found")} == \
        {"total": 2, "completed": 1, "not_found": 1, "queued": 0, "failed": 0, "found": 1}
    assert [t["status"] for t in data["tracks"]] == ["completed", "not_found"]
    # not a TTY: no bar, but a line per settled track, numbered
    lines = err.getvalue().splitlines()
    assert "\x1b" not in err.getvalue() and lines[0].startswith("2 tracks; searching them takes about")
    assert sorted(lines[1:]) == ["[1/2] not found: Nobody - Nothing (no results)",
                                 "[2/2] downloaded: Daft Punk - Get Lucky (Random Access Memories\\08 - Get Lucky.flac "
                                 "from best)"]

    # Second run: everything settled is skipped or retried later; exit 0 needs all obtained.
    playlist.write_text("#EXTINF:248,Daft Punk - Get Lucky\nx.mp3\n")
    out = io.StringIO()
    assert run_sync_command(config, [playlist], False, out, err, engine_factory=_fast_engine) == 0
    assert "1 already had" in out.getvalue()


def test_cli_bad_playlist_path_is_one_line_and_exit_2(sim_fast, tmp_path, monkeypatch):
    config = _config(sim_fast, tmp_path, monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    assert run_sync_command(config, [str(tmp_path / "missing.m3u")], False, out, err) == 2
    assert err.getvalue().count("\n") == 1 and "not found" in err.getvalue()
    assert run_sync_command(config, [], False, out, io.StringIO()) == 2  # none configured


def test_cli_progress_bar_on_a_tty(sim_fast, tmp_path, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    sim_fast.add_search_results("get lucky", [BEST])
    sim_fast.enqueue_plan = SUCCEED
    playlist = tmp_path / "p.txt"
    playlist.write_text("Daft Punk - Get Lucky\n")
    config = _config(sim_fast, tmp_path, monkeypatch, playlists=(str(playlist),))
    out, err = io.StringIO(), Tty()
    assert run_sync_command(config, [], False, out, err, engine_factory=_fast_engine) == 0
    assert "[" in err.getvalue() and "1/1" in err.getvalue()
    assert "1 downloaded" in out.getvalue()


# --------------------------------------------------------------------------- store


def test_store_survives_reopen_and_keeps_attempts(tmp_path):
    from trayagent.sync.ranking import Candidate
    from trayagent.sync.store import TrackState

    path = tmp_path / "s.sqlite3"
    store = SyncStore(path)
    state = TrackState.new(LUCKY)
    store.begin_attempt(state, Candidate("u", "f.flac", 10, "flac", 0.5), 1.0)
    store.set_attempt(state, "u", "f.flac", "failed", 2.0, reason="rejected")
    store.close()
    again = SyncStore(path)
    assert again.load(LUCKY.key).artist == "Daft Punk"
    assert again.tried(LUCKY.key) == [("u", "f.flac", "failed")]
    assert not again.file_claimed("u", "f.flac")  # failed files block only their own track
    again.close()


def test_track_state_is_stored_flat_and_brings_back_the_whole_wanted_track():
    """The wanted track is one field of TrackState, stored flat as before: older files read the same."""
    from trayagent.sync.store import TrackState

    wanted = WantedTrack("Daft Punk", "Get Lucky", "RAM", 248.0, "p.csv", ("Pharrell Williams",))
    data = json.loads(TrackState.new(wanted).to_json())
    assert "wanted" not in data and (data["artist"], data["featured"]) == ("Daft Punk", ["Pharrell Williams"])
    back = TrackState.from_json(TrackState.new(wanted).to_json()).wanted
    assert (back, back.source, back.featured) == (wanted, "p.csv", ("Pharrell Williams",))
    old = TrackState.from_json('{"key": "daft punk|get lucky", "artist": "Daft Punk", "title": "Get Lucky", '
                               '"album": null, "duration": null, "source": "", "featured": [], "status": "completed"}')
    assert (old.key, old.label, old.status, old.wanted.featured) == (
        "daft punk|get lucky", "Daft Punk - Get Lucky", "completed", ())


def _write_tagged_flac(path: Path, artist: str, title: str) -> None:
    """A tiny valid FLAC (STREAMINFO only) with Vorbis comments, written by mutagen."""
    from mutagen.flac import FLAC

    path.parent.mkdir(parents=True, exist_ok=True)
    streaminfo = bytearray(34)
    streaminfo[0:2] = (4096).to_bytes(2, "big")
    streaminfo[2:4] = (4096).to_bytes(2, "big")
    # sample rate 44100 (20 bits), channels-1 = 1 (3 bits), bps-1 = 15 (5 bits), 36 bits samples = 0
    packed = (44100 << 44) | (1 << 41) | (15 << 36)
    streaminfo[10:18] = packed.to_bytes(8, "big")
    path.write_bytes(b"fLaC" + bytes([0x80, 0, 0, 34]) + bytes(streaminfo))
    audio = FLAC(path)
    audio.add_tags()
    audio["artist"], audio["title"] = artist, title
    audio.save()


def test_not_found_is_not_searched_again_until_retry_after(sim_fast, real_client, tmp_path):
    first = engine(real_client, tmp_path).run([WantedTrack("Muse", "Uprising")])
    assert first.count("not_found") == 1 and sim_fast.searches_made == ["muse uprising"]
    again = engine(real_client, tmp_path).run([WantedTrack("Muse", "Uprising")])
    assert again.count("not_found") == 1 and sim_fast.searches_made == ["muse uprising"]  # polite
    sim_fast.add_search_results("uprising", [peer("m", [{"filename": "@@m\\Muse\\The Resistance\\01 Uprising.flac",
                                                          "size": SIZE}])])
    sim_fast.enqueue_plan = SUCCEED
    third = engine(real_client, tmp_path, timings=replace(FAST, retry_after=0.0)).run([WantedTrack("Muse", "Uprising")])
    assert third.count("completed") == 1 and sim_fast.searches_made == ["muse uprising", "muse uprising"]


def test_cli_ctrl_c_stops_cleanly_and_saves_state(sim_fast, tmp_path, monkeypatch):
    import os
    import signal

    sim_fast.add_search_results("get lucky", [BEST])
    sim_fast.enqueue_plan = FOREVER_QUEUED
    playlist = tmp_path / "p.txt"
    playlist.write_text("Daft Punk - Get Lucky\n")
    config = _config(sim_fast, tmp_path, monkeypatch, queue_timeout=60)
    before = signal.getsignal(signal.SIGINT)

    def interrupt_once_enqueued() -> None:
        while not sim_fast.transfers():
            threading.Event().wait(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_enqueued, daemon=True).start()
    out = io.StringIO()
    code = run_sync_command(config, [playlist], True, out, io.StringIO(), engine_factory=_fast_engine)
    data = json.loads(out.getvalue())
    assert code == 1 and data["stopped"] and data["queued"] == 1
    assert signal.getsignal(signal.SIGINT) is before
    assert len(sim_fast.transfers()) == 1


def test_sync_follows_downloads_by_the_users_tracking_rules(sim_fast, tmp_path, monkeypatch):
    """Issue 11.2: one rule set. The [tracking] section the user set is the sync's too."""
    import trayagent.sync_cli as sync_cli
    from trayagent.core.tracker import Rules

    seen: list[object] = []

    class Recording(SyncEngine):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            seen.append(self.t.rules)

        def run(self, *args: Any, **kw: Any) -> Any:  # the rules are what this test is about
            raise KeyboardInterrupt

    monkeypatch.setattr(sync_cli, "SyncEngine", Recording)
    playlist = tmp_path / "p.m3u"
    playlist.write_text("#EXTINF:248,Daft Punk - Get Lucky\nx.mp3\n")
    config = _config(sim_fast, tmp_path, monkeypatch)
    config.tracking = Rules(failure_settle=7.0, restart_window=42.0, grace_polls=5)
    with pytest.raises(KeyboardInterrupt):
        run_configured_sync(config, [str(playlist)])
    with pytest.raises(KeyboardInterrupt):
        run_sync_command(config, [str(playlist)], True, io.StringIO(), io.StringIO())
    assert seen == [config.tracking, config.tracking]
