"""Issue 12: active polls read only the followed peers' lists; every tracking rule still holds.

The agent runs as a real process against the simulator over HTTP. The idle interval is long
next to the active one, so most polls while something is active are per-peer polls, and the
simulator's request log shows which lists were read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agentproc import quiet_for, write_config
from conftest import API_KEY
from test_integration import ALBUM, _wait_new_id, assert_once

pytestmark = pytest.mark.integration

LIST = "/api/v0/transfers/downloads"
PEER_POLLS = {"active_interval": 0.1, "idle_interval": 1.5, "max_backoff": 2.0}


def full_gets(sim: Any) -> int:
    return len([r for r in sim.requests if r.method == "GET" and r.path == LIST])


def peer_gets(sim: Any) -> list[str]:
    """The peers whose own lists were read, one entry per GET."""
    return [r.path[len(LIST) + 1:] for r in sim.requests
            if r.method == "GET" and r.path.startswith(LIST + "/") and r.path.count("/") == 5]


def test_active_polls_read_only_the_followed_peers_and_the_whole_list_at_the_idle_interval(
        make_agent: Any, sim: Any) -> None:
    for i in range(40):  # history: recorded silently at the first poll, never read again per peer
        sim.add_download("carol", ALBUM + f"old{i:02d}.flac", 10, state="Completed, Succeeded")
    agent = make_agent(poll=PEER_POLLS)
    ids = [sim.add_download("alice", ALBUM + "a1.flac", 100, state="InProgress"),
           sim.add_download("alice", ALBUM + "a2.flac", 100, state="InProgress"),
           sim.add_download("bob", ALBUM + "b1.flac", 100, state="InProgress")]
    for tid in ids:
        agent.wait_event("started", id=tid)
    sim.clear_requests()
    time.sleep(3.0)
    peers = peer_gets(sim)
    assert set(peers) == {"alice", "bob"}, peers
    assert 1 <= full_gets(sim) <= 4, full_gets(sim)  # every 1.5 s, not every 0.1 s
    assert len(peers) >= 4 * full_gets(sim), (len(peers), full_gets(sim))

    started = time.monotonic()
    elsewhere = sim.add_download("dave", ALBUM + "d1.flac", 100)  # added from slskd's web UI
    agent.wait_event("added", id=elsewhere, timeout=10)
    assert time.monotonic() - started <= PEER_POLLS["idle_interval"] + 1.0
    for tid in ids:
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
    for tid in ids:
        agent.wait_event("completed", id=tid)
    quiet_for(agent, 0.5)
    assert_once(agent)


def test_above_max_peers_the_fast_poll_reads_the_whole_list(make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll={**PEER_POLLS, "max_peers": 1})
    a = sim.add_download("alice", ALBUM + "a.flac", 100, state="InProgress")
    b = sim.add_download("bob", ALBUM + "b.flac", 100, state="InProgress")
    agent.wait_event("started", id=a)
    agent.wait_event("started", id=b)
    sim.clear_requests()
    time.sleep(1.5)
    assert not peer_gets(sim)
    assert full_gets(sim) >= 8  # every 0.1 s


def test_grace_counts_per_peer_absence_like_the_whole_list_and_404_is_no_downloads(
        make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll=PEER_POLLS)
    stays = sim.add_download("alice", ALBUM + "stays.flac", 100, state="InProgress")
    gone = sim.add_download("bob", ALBUM + "gone.flac", 100, state="InProgress")
    agent.wait_event("started", id=stays)
    agent.wait_event("started", id=gone)
    sim.clear_requests()
    sim.delete(gone)  # bob has no downloads left: slskd answers his list with 404
    assert agent.wait_event("failed", id=gone, timeout=10)["reason"] == "missing"
    assert any(r.path == LIST + "/bob" and r.status == 404 for r in sim.requests)
    quiet_for(agent, 0.5)
    assert not agent.of("failed", id=stays) and not agent.of("connection")
    sim.set_state(stays, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=stays)
    assert_once(agent)


def test_a_peer_whose_list_fails_counts_nothing_while_the_others_are_followed(make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll=PEER_POLLS, tracking={"grace_polls": 2})
    a = sim.add_download("alice", ALBUM + "a.flac", 100, state="InProgress")
    b = sim.add_download("bob", ALBUM + "b.flac", 100, state="InProgress")
    agent.wait_event("started", id=a)
    agent.wait_event("started", id=b)
    sim.clear_requests()
    sim.fault_user("bob", "500", count=10_000)
    time.sleep(1.0)
    sim.set_state(a, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=a)
    quiet_for(agent, 1.0)
    assert any(r.path == LIST + "/bob" and r.status == 500 for r in sim.requests), "bob's list never failed"
    assert not agent.of("failed", id=b), "a failed list must not count its peer's downloads missing"
    assert not agent.of("connection"), "slskd answered: the connection was never lost"
    sim.fault_user("bob", "500", count=0)
    sim.set_state(b, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=b)
    quiet_for(agent, 0.5)
    assert_once(agent)


def test_every_peer_unreachable_is_a_lost_connection_and_counts_nothing(make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll=PEER_POLLS, tracking={"grace_polls": 2})
    a = sim.add_download("alice", ALBUM + "a.flac", 100, state="InProgress")
    agent.wait_event("started", id=a)
    time.sleep(0.3)
    sim.fault_user("alice", "reset", count=3)
    sim.fault("500", count=3)
    agent.wait_event("connection", status="lost")
    agent.wait_event("connection", status="restored", timeout=20)
    assert not agent.of("failed", id=a)
    sim.set_state(a, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=a)
    assert_once(agent)


def test_an_id_change_seen_in_a_peers_list_is_one_download(make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll=PEER_POLLS)
    other = sim.add_download("bob", ALBUM + "b.flac", 100, state="InProgress")
    old = sim.add_download("alice", ALBUM + "again.flac", 100, state="InProgress")
    agent.wait_event("started", id=old)
    agent.wait_event("started", id=other)
    time.sleep(0.5)
    sim.clear_requests()
    new = sim.add_download("alice", ALBUM + "again.flac", 100, state="Queued, Locally")  # re-requested
    time.sleep(0.5)
    sim.set_state(new, "Completed, Succeeded", bytes_transferred=100)
    assert agent.wait_event("completed", id=new)["filename"] == ALBUM + "again.flac"
    assert "alice" in peer_gets(sim), "the new id should have been seen in alice's own list"
    quiet_for(agent, 1.0)
    assert not agent.of("added", id=new) and not agent.of("failed"), agent.events
    assert_once(agent)


def test_slskd_restart_reads_the_whole_list_and_every_download_ends_once(make_agent: Any, sim: Any) -> None:
    agent = make_agent(poll=PEER_POLLS, tracking={"restart_window": 20.0})
    files = [("alice", ALBUM + "r1.flac"), ("alice", ALBUM + "r2.flac"), ("bob", ALBUM + "r3.flac")]
    old = [sim.add_download(u, f, 1000, state="InProgress", bytes_transferred=100) for u, f in files]
    for tid in old:
        agent.wait_event("started", id=tid)
    sim.clear_requests()
    time.sleep(0.5)
    assert set(peer_gets(sim)) == {"alice", "bob"}
    sim.restart(downtime=0.5, relogin_delay=0.5, reenqueue=True)
    agent.wait_event("connection", status="restored", timeout=20)
    new = [_wait_new_id(sim, f, tid) for (_, f), tid in zip(files, old)]
    for tid in new:
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=1000)
    for tid in new:
        agent.wait_event("completed", id=tid)
    quiet_for(agent, 1.0)
    assert not agent.of("failed"), agent.events
    assert_once(agent)
    assert len([e for e in agent.events if e["event"] == "completed"]) == 3


def test_idle_polls_read_the_whole_list_by_id_and_the_forget_sweep_still_runs(
        sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, over real HTTP: an idle poll that finds nothing new in the list builds nothing."""
    from trayagent.slskd import client as slskd_mod
    from trayagent.agent import Agent
    from trayagent.config import load_config
    from trayagent.store import Store
    from trayagent.core.tracker import Rules, Tracker

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(Tracker, "FORGET_EVERY", 2)
    parsed: list[int] = []
    real_parse = slskd_mod.parse_downloads
    monkeypatch.setattr(slskd_mod, "parse_downloads", lambda body, **kw: parsed.append(len(body)) or real_parse(body, **kw))
    old = [sim.add_download(f"peer{i % 3}", ALBUM + f"old{i:02d}.flac", 10, state="Completed, Succeeded")
           for i in range(30)]
    agent = Agent(load_config(write_config(tmp_path / "c.toml", sim.url, API_KEY), env={}))
    try:
        assert agent.poll_once() and len(parsed) == 1  # the first start's baseline is built
        for tid in old[:5]:
            sim.delete(tid)  # slskd let them go (retention)
        for _ in range(4):
            assert agent.poll_once()
        assert len(parsed) == 1, "an idle poll that found nothing new built the list"
        assert full_gets(sim) == 5 and not peer_gets(sim)
        new = sim.add_download("dave", ALBUM + "new.flac", 10)
        assert agent.poll_once() and len(parsed) == 2
        assert [t.id for t in agent.state().active] == [new]
    finally:
        agent.stop()
    store = Store(load_config(tmp_path / "c.toml", env={}).state_path)
    try:
        tracker = store.load_tracker(Rules())
    finally:
        store.close()
    assert not any(tracker.is_recorded(tid) for tid in old[:5]), "the sweep did not run on polls read by id"
    assert all(tracker.is_recorded(tid) for tid in old[5:])
