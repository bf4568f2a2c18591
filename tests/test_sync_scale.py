"""A 200-track sync where a third of the best peers keep transfers queued for an hour (issue 10).

Before: three queued transfers stopped all searching for `queue_timeout`. Now searching goes
on at `searches_per_minute` whatever the downloads do, every findable track is obtained (from
the next candidate once a queue takes too long), and the search rate never exceeds the limit.
Intervals are small so it runs in seconds; the shape is what a 1,000-track playlist meets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from test_sync import SIZE, ScriptedClient, sync_cfg
from trayagent.config import SlskdConfig
from trayagent.core.tracker import Rules
from trayagent.sync.playlist import WantedTrack
from trayagent.slskd.client import SlskdClient
from trayagent.sync.engine import EngineTimings, SyncEngine
from trayagent.sync.library import LocalLibrary

API_KEY = "test-key-0123456789abcdef"
TRACKS = 200
UNFINDABLE = range(190, 200)  # nobody shares these
SEARCHES_PER_MINUTE = 1500.0  # one search POST per 0.04 s
QUEUE_FOR_AN_HOUR = [("state", "Queued, Remotely", 3600)]
FAST_DOWNLOAD = [("state", "Queued, Remotely", 0.05), ("transfer", SIZE / 0.1), ("end", "Completed, Succeeded")]

pytestmark = pytest.mark.integration


def wanted(i: int) -> WantedTrack:
    return WantedTrack(f"Band{i // 10:02d}", f"Track Name {i:03d}", None, 240.0)


def shares(i: int) -> list[dict[str, Any]]:
    """Every third track's best peer (flac, free slot) queues; a second peer (mp3) serves."""
    t = wanted(i)
    name = f"{t.artist}\\Album\\{t.title}"
    best = {"username": f"best{i}", "hasFreeUploadSlot": True, "queueLength": 0, "uploadSpeed": 5_000_000,
            "files": [{"filename": f"@@b{i}\\{name}.flac", "size": SIZE, "length": 240}]}
    backup = {"username": f"backup{i}", "hasFreeUploadSlot": False, "queueLength": 3, "uploadSpeed": 500_000,
              "files": [{"filename": f"@@k{i}\\{name}.mp3", "size": SIZE, "length": 240, "bitRate": 320}]}
    return [best, backup]


def test_200_tracks_with_queueing_peers_keep_searching_at_the_rate(sim: Any, tmp_path: Path) -> None:
    sim.search_duration = 0.01
    sim.speedup = 10.0  # transfers' Initializing and queue holds / 10: the hour-long queue stays 6 min
    scripts: dict[str, Any] = {}
    for i in range(TRACKS):
        if i in UNFINDABLE:
            continue
        sim.add_search_results(f"track name {i:03d}", shares(i))
        scripts[f"best{i}"] = QUEUE_FOR_AN_HOUR if i % 3 == 0 else FAST_DOWNLOAD
        scripts[f"backup{i}"] = FAST_DOWNLOAD
    client = ScriptedClient(SlskdClient(SlskdConfig(url=sim.url, api_key=API_KEY, timeout=5.0)), sim, scripts)
    timings = EngineTimings(poll_interval=0.02, search_timeout_ms=20, login_check=1.0, rules=Rules(failure_settle=0.3),
                            busy_backoff=0.02, give_up_after=10.0)
    cfg = sync_cfg(searches_per_minute=SEARCHES_PER_MINUTE, queue_timeout=1.0 / 60, max_in_progress=3)
    report = SyncEngine(client, cfg, tmp_path / "state.sqlite3", timings=timings,
                        library=LocalLibrary(None)).run([wanted(i) for i in range(TRACKS)])

    statuses = [t.status for t in report.tracks]
    assert statuses.count("completed") == TRACKS - len(UNFINDABLE)
    assert all(statuses[i] == "not_found" for i in UNFINDABLE)
    queued_peers = [t for t in report.tracks if t.status == "completed" and int(t.key.split()[-1]) % 3 == 0]
    assert queued_peers and all(t.username.startswith("backup") for t in queued_peers)
    queuers = {f"best{i}" for i in range(0, TRACKS, 3) if i not in UNFINDABLE}
    deadline = time.monotonic() + 3.0  # slskd cancels asynchronously: the last cancel may still land
    while time.monotonic() < deadline and not all(
            t["state"] == "Completed, Cancelled" for t in sim.transfers() if t["username"] in queuers):
        time.sleep(0.05)
    assert {t["username"] for t in sim.transfers() if t["state"] == "Completed, Cancelled"} == queuers

    posts = [r.at for r in sim.requests if r.method == "POST" and r.path.endswith("/searches")]
    interval = 60.0 / SEARCHES_PER_MINUTE
    # never above the rate: any 10 consecutive intervals hold at most 10 POSTs (+1 for the edge)
    for k in range(len(posts) - 11):
        assert posts[k + 11] - posts[k] >= 10 * interval * 0.95
    # ...and kept up at the rate while 66 peers held transfers queued: no stall
    assert posts[-1] - posts[0] <= 2.0 * len(posts) * interval
