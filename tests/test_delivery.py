"""An event leaves the outbox only once a consumer took it (issue 14, items 3 and 4).

Real agent processes against the simulator where a user would meet the fault (a reader of
`--json` that goes away or never reads, an ASCII locale, `trayagent clear` with no agent
running), and a real Agent with several notifiers for the per-consumer progress.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentproc import ROOT, AgentProcess, write_config
from conftest import API_KEY

pytestmark = pytest.mark.integration

ALBUM = "@@music\\Artist\\Album (2024)\\"
F_SETPIPE_SZ = 1031


def _agent(tmp_path: Path, url: str, **kw: Any) -> AgentProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cfg = write_config(tmp_path / "c.toml", url, API_KEY)
    return AgentProcess(cfg, tmp_path / "state", home, **kw)


def _completed(events: list[dict[str, Any]], tid: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "completed" and e["id"] == tid]


def test_clear_with_no_agent_running_keeps_the_end_for_the_next_start(sim: Any, tmp_path: Path) -> None:
    first = _agent(tmp_path, sim.url).start()
    tid = sim.add_download("alice", ALBUM + "while-stopped.flac", 100, state="InProgress")
    first.wait_event("started", id=tid)
    assert first.stop() == 0
    sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
    r = subprocess.run([sys.executable, "-m", "trayagent", "clear", "--config", str(first.config)],
                       env=first.env(), capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "removed 1 finished transfer(s)"
    assert sim.get(tid)["removed"]
    second = AgentProcess(first.config, first.state_dir, first.home).start()
    try:
        ev = second.wait_event("completed", id=tid)
        assert ev["filename"] == ALBUM + "while-stopped.flac"
        time.sleep(0.5)
        assert len(second.of("completed", id=tid)) == 1
    finally:
        second.stop()


def test_reader_that_went_away_loses_nothing(sim: Any, tmp_path: Path) -> None:
    first = _agent(tmp_path, sim.url)
    assert first.command()
    proc = subprocess.Popen(first.command(), cwd=ROOT, env=first.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        tid = sim.add_download("alice", ALBUM + "reader-gone.flac", 100, state="InProgress")
        for line in proc.stdout:
            if json.loads(line)["event"] == "started":
                break
        proc.stdout.close()  # the consumer of --json goes away
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        time.sleep(1.0)  # polls record the end; writing it fails
        assert proc.poll() is None, "the agent must keep running"
        proc.terminate()
        assert proc.wait(15) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    second = AgentProcess(first.config, first.state_dir, first.home).start()
    try:
        second.wait_event("completed", id=tid)
        time.sleep(0.5)
        assert len(second.of("completed", id=tid)) == 1
    finally:
        second.stop()
    assert "Traceback" not in err, err
    assert err.count("could not take event") == 1, err


def test_ascii_output_encoding_still_reports_cafe(sim: Any, tmp_path: Path) -> None:
    agent = _agent(tmp_path, sim.url, env_extra={"PYTHONIOENCODING": "ascii"}).start()
    try:
        tid = sim.add_download("zoë", ALBUM + "Café.flac", 100, state="InProgress")
        agent.wait_event("started", id=tid)
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        ev = agent.wait_event("completed", id=tid)
        assert ev["filename"] == ALBUM + "Café.flac" and ev["username"] == "zoë"
        assert all(line.isascii() for line in agent.raw_stdout)
    finally:
        agent.stop()


def test_pipe_never_read_blocks_neither_polling_nor_shutdown_and_loses_nothing(sim: Any, tmp_path: Path) -> None:
    ids = [sim.add_download("alice", ALBUM + f"n{i:02d}.flac", 100, state="InProgress") for i in range(60)]
    first = _agent(tmp_path, sim.url)
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(first.command(), cwd=ROOT, env=first.env(), stdout=write_fd, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        time.sleep(1.5)  # the pipe fills with the first events; nobody reads it
        for tid in ids:
            sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        sim.clear_requests()
        time.sleep(1.0)
        polls = [r for r in sim.requests if r.path.endswith("/transfers/downloads")]
        assert len(polls) >= 3, "polling stopped behind a blocked reader"
        proc.terminate()
        assert proc.wait(15) == 0, "shutdown hung on a reader that never reads"
    finally:
        if proc.poll() is None:
            proc.kill()
    chunks = []
    while data := os.read(read_fd, 65536):
        chunks.append(data)
    os.close(read_fd)
    before = [json.loads(line) for line in b"".join(chunks).splitlines()]
    second = AgentProcess(first.config, first.state_dir, first.home).start()
    try:
        second.wait_for(lambda evs: {e["id"] for e in before + evs if e["event"] == "completed"} >= set(ids))
    finally:
        second.stop()
    seqs = Counter(e["seq"] for e in before + second.events if "seq" in e)
    assert [s for s, n in seqs.items() if n > 1] == []


class _Sink:
    """A notifier that keeps what it took; `fail` makes its next notify() calls raise."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[Any] = []
        self.fail = fail
        self.calls = 0

    def notify(self, events: Any) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise BrokenPipeError("reader gone")
        self.events.extend(events)

    def close(self) -> None:
        pass


def test_a_failing_notifier_never_repeats_events_to_the_others(sim: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from trayagent.agent import Agent
    from trayagent.config import load_config

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    cfg = load_config(write_config(tmp_path / "c.toml", sim.url, API_KEY), env={})
    ids = [sim.add_download("alice", ALBUM + f"m{i}.flac", 100, state="InProgress") for i in range(5)]
    good, flaky = _Sink(), _Sink(fail=3)
    agent = Agent(cfg)
    agent.add_notifier(good, "good")
    agent.add_notifier(flaky, "flaky")
    agent.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len([e for e in good.events if e.event.value == "started"]) < 5:
            time.sleep(0.05)
        for tid in ids:
            sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        while time.monotonic() < deadline and len([e for e in flaky.events if e.event.value == "completed"]) < 5:
            time.sleep(0.1)
    finally:
        agent.stop()
    for sink in (good, flaky):
        seqs = Counter(e.seq for e in sink.events)
        assert all(n == 1 for n in seqs.values()), seqs
        assert {e.id for e in sink.events if e.event.value == "completed"} == set(ids)
        assert [e.seq for e in sink.events] == sorted(e.seq for e in sink.events), "out of order"
    assert flaky.calls > len(flaky.events), "the flaky sink never failed"

    # The next run with the same consumers starts where each stopped: nothing again.
    again_good, again_flaky = _Sink(), _Sink()
    agent = Agent(cfg)
    agent.add_notifier(again_good, "good")
    agent.add_notifier(again_flaky, "flaky")
    agent.start()
    time.sleep(1.0)
    agent.stop()
    assert again_good.events == [] and again_flaky.events == []


def test_a_consumer_that_took_nothing_gets_the_backlog_at_the_next_start(sim: Any, tmp_path: Path,
                                                                         monkeypatch: Any) -> None:
    from trayagent.agent import Agent
    from trayagent.config import load_config
    from trayagent.store import Store

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    cfg = load_config(write_config(tmp_path / "c.toml", sim.url, API_KEY), env={})
    tid = sim.add_download("alice", ALBUM + "backlog.flac", 100, state="InProgress")
    broken = _Sink(fail=10**6)
    agent = Agent(cfg)
    agent.add_notifier(broken, "json")
    assert agent.poll_once()  # not started: delivered (and failed) in this thread
    sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
    assert agent.poll_once()
    agent.stop()
    assert broken.events == []
    store = Store(cfg.state_path)
    assert [e.event.value for e in store.pending_events()] == ["added", "started", "completed"]
    store.close()

    sink = _Sink()
    agent = Agent(cfg)
    agent.add_notifier(sink, "json")
    agent.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(sink.events) < 3:
        time.sleep(0.05)
    agent.stop()
    assert [e.event.value for e in sink.events[:3]] == ["added", "started", "completed"]
    store = Store(cfg.state_path)
    assert store.pending_events() == [], "taken by the only consumer: gone from the outbox"
    store.close()
