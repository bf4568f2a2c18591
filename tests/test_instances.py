"""One agent and one state per slskd instance (issue 14, item 7), as real processes.

The lock and the state database are keyed by slskd's normalised URL, not by the config file's
path: two slskd instances are watched side by side, each exactly once, and however a config
is spelt (a hard link, the environment alone from another directory) a second agent for the
same slskd says it is already running. The single state file of older versions is taken over.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from agentproc import ROOT, AgentProcess, quiet_for
from conftest import API_KEY

pytestmark = pytest.mark.integration

ALBUM = "@@music\\Artist\\Album (2024)\\"


def assert_once(agent: AgentProcess) -> None:
    ends = Counter(e["id"] for e in agent.events if e["event"] in ("completed", "failed", "cancelled"))
    assert all(n == 1 for n in ends.values()), ends


def wait_polled(sim: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.path.endswith("/transfers/downloads") for r in sim.requests):
            return
        time.sleep(0.05)
    raise AssertionError("the agent never polled")


def test_two_slskd_instances_side_by_side_each_exactly_once(make_agent: Any, sim: Any) -> None:
    from trayagent.slskd.simulator import Simulator

    other = Simulator(api_key=API_KEY)
    other.start()
    try:
        first = make_agent()
        mine = sim.add_download("alice", ALBUM + "first.flac", 100, state="InProgress")
        first.wait_event("started", id=mine)
        second = make_agent(url=other.url)  # same state dir, another slskd
        theirs = other.add_download("bob", ALBUM + "second.flac", 100, state="InProgress")
        second.wait_event("started", id=theirs)
        quiet_for(second, 1.0)  # many polls each: neither may count the other's download missing
        sim.set_state(mine, "Completed, Succeeded", bytes_transferred=100)
        other.set_state(theirs, "Completed, Succeeded", bytes_transferred=100)
        first.wait_event("completed", id=mine)
        second.wait_event("completed", id=theirs)
        quiet_for(first, 0.5)
        for agent, foreign in ((first, theirs), (second, mine)):
            assert not agent.of("failed"), agent.events
            assert not [e for e in agent.events if e.get("id") == foreign]
            assert_once(agent)
            assert agent.proc is not None and agent.proc.poll() is None
        assert len(list(first.state_dir.glob("slskd-*.sqlite3"))) == 2
    finally:
        other.stop()


def test_hard_linked_config_cannot_start_a_second_agent(make_agent: Any, sim: Any, tmp_path: Path) -> None:
    agent = make_agent()
    wait_polled(sim)
    linked = tmp_path / "linked.toml"
    os.link(agent.config, linked)
    second = subprocess.run(
        [sys.executable, "-m", "trayagent", "run", "--headless", "--json", "--config", str(linked)],
        env=agent.env(), capture_output=True, text=True, timeout=15, cwd=ROOT,
    )
    assert second.returncode == 0
    assert f"already running (pid {agent.proc.pid})" in second.stderr
    assert second.stdout == ""


def test_environment_only_config_from_two_directories_runs_one_agent(sim: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    probe = AgentProcess(tmp_path / "none.toml", tmp_path / "state", home)
    env = {**probe.env(), "SLSKD_URL": sim.url, "SLSKD_API_KEY": API_KEY}
    cmd = [sys.executable, "-m", "trayagent", "run", "--headless", "--json", "--no-notify"]
    where = [tmp_path / "a", tmp_path / "b"]
    for d in where:
        d.mkdir()
    first = subprocess.Popen(cmd, cwd=where[0], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_polled(sim)
        second = subprocess.run(cmd, cwd=where[1], env=env, capture_output=True, text=True, timeout=15)
        assert second.returncode == 0
        assert f"already running (pid {first.pid})" in second.stderr
    finally:
        first.terminate()
        first.wait(15)


def test_the_single_state_file_of_an_older_version_is_taken_over(make_agent: Any, sim: Any, tmp_path: Path) -> None:
    from trayagent.core.model import Transfer
    from trayagent.store import Store
    from trayagent.core.tracker import Rules

    def seen(tid: str) -> Transfer:
        t = Transfer.from_json(sim.get(tid))
        assert t is not None
        return t

    # What an older agent left: one download followed, one end committed but never delivered.
    legacy = tmp_path / "state" / "trayagent.sqlite3"
    store = Store(legacy)
    tracker = store.load_tracker(Rules())
    follow = sim.add_download("alice", ALBUM + "followed.flac", 100, state="InProgress")
    done = sim.add_download("alice", ALBUM + "undelivered.flac", 100, state="InProgress")
    now = datetime.now(timezone.utc)
    store.ack(store.commit(tracker.reconcile([seen(follow), seen(done)], now)))
    sim.set_state(done, "Completed, Succeeded", bytes_transferred=100)
    store.commit(tracker.reconcile([seen(follow), seen(done)], now))  # killed before delivering
    store.close()

    agent = make_agent()
    agent.wait_event("completed", id=done)
    sim.set_state(follow, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=follow)
    quiet_for(agent, 0.5)
    assert not agent.of("added"), "a download the old state followed was taken for a new one"
    assert_once(agent)
    assert not legacy.exists()
    assert len(list(legacy.parent.glob("slskd-*.sqlite3"))) == 1
