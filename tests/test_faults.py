"""Exactly once under faults (issue 14): the agent as a real process against the simulator.

A second process holding the database, a write refused by the kernel (a file size limit:
the disk full as SQLite sees it), a proxy answering with bodies that are not a download list,
a kill -9 while a slow pipe is written, a file name slskd's .NET strings allow and UTF-8 does
not. Each of these once lost, repeated or wrongly removed a download's end.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import subprocess
import sys
import termios
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from agentproc import AgentProcess, write_config
from conftest import API_KEY
from oddproxy import OddProxy

pytestmark = pytest.mark.integration

ALBUM = "@@music\\Artist\\Album (2024)\\"
F_SETPIPE_SZ = 1031  # linux/fcntl.h


def ends(agent: AgentProcess) -> Counter:
    return Counter(e["id"] for e in agent.events if e["event"] in ("completed", "failed", "cancelled"))


def assert_once(agent: AgentProcess) -> None:
    repeated = {k: v for k, v in ends(agent).items() if v > 1}
    assert not repeated, f"reported more than once: {repeated}"


def state_db(agent: AgentProcess) -> Path:
    """The agent's state database (whatever it is named)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = sorted(agent.state_dir.glob("*.sqlite3"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no state database in {agent.state_dir}")


def wait_removed(sim: Any, tid: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.get(tid).get("removed"):
            return True
        time.sleep(0.1)
    return False


def warnings(agent: AgentProcess, words: str) -> list[str]:
    return [line for line in agent.stderr if "WARNING" in line and words in line]


# ------------------------------------------------------------------ 1. a failed write

HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def test_database_locked_by_another_process_loses_nothing(make_agent: Any, sim: Any) -> None:
    agent = make_agent(cleanup={"enabled": True, "interval": 0.5})
    tid = sim.add_download("alice", ALBUM + "locked.flac", 100, state="InProgress")
    agent.wait_event("started", id=tid)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state_db(agent)), "6.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        time.sleep(3.0)  # commits wait for the lock; cleanup must not act on an end not committed
        assert not sim.get(tid).get("removed"), "removed from slskd before its end was recorded"
        agent.wait_event("completed", id=tid, timeout=20)
    finally:
        holder.wait(20)
    assert wait_removed(sim, tid)
    assert_once(agent)
    assert len(warnings(agent, "holds a lock")) == 1, agent.stderr
    assert not any("Traceback" in line for line in agent.stderr), "".join(agent.stderr)


def test_full_disk_loses_nothing_and_hides_no_error(make_agent: Any, sim: Any) -> None:
    """The kernel refuses to grow the WAL (RLIMIT_FSIZE): SQLite fails the commit and rolls back itself."""
    agent = make_agent(cleanup={"enabled": True, "interval": 0.5})
    tid = sim.add_download("alice", ALBUM + "full.flac", 100, state="InProgress")
    agent.wait_event("started", id=tid)
    wal = state_db(agent).with_name(state_db(agent).name + "-wal")
    assert agent.proc is not None
    resource.prlimit(agent.proc.pid, resource.RLIMIT_FSIZE, (wal.stat().st_size, resource.RLIM_INFINITY))
    try:
        sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        late = sim.add_download("bob", ALBUM + "during.flac", 100, state="Completed, Succeeded")
        time.sleep(2.5)  # polls and cleanups while nothing can be written
        assert not sim.get(tid).get("removed") and not sim.get(late).get("removed")
        assert not agent.of("completed"), "an end reported that was never recorded"
    finally:
        resource.prlimit(agent.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    agent.wait_event("completed", id=tid, timeout=20)
    agent.wait_event("completed", id=late, timeout=20)
    assert wait_removed(sim, tid) and wait_removed(sim, late)
    time.sleep(0.5)
    assert_once(agent)
    # Once for the polls; a consumer whose delivery progress hit the same full disk says so once more.
    said = warnings(agent, "refused the write")
    assert len([w for w in said if "took event" not in w]) == 1, agent.stderr
    assert len([w for w in said if "took event" in w]) <= 1, agent.stderr
    assert not any("cannot rollback" in line or "Traceback" in line for line in agent.stderr), "".join(agent.stderr)


# ------------------------------------------------------------------ 2. a body that is not a download list

ODD_BODIES = {
    "empty object": (b"{}", "application/json"),
    "message": (b'{"message": "Service Unavailable"}', "application/json"),
    "html": (b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    "records without ids": (b'[{"username": "alice", "directories": [{"directory": "x", '
                            b'"files": [{"filename": "x.flac", "state": "Queued"}]}]}]', "application/json"),
}


@pytest.fixture
def proxied(sim: Any, tmp_path: Path) -> Iterator[tuple[OddProxy, AgentProcess]]:
    """An agent reaching the simulator through the odd-body proxy."""
    proxy = OddProxy(sim.url).start()
    home = tmp_path / "home"
    home.mkdir()
    agent = AgentProcess(write_config(tmp_path / "c.toml", proxy.url, API_KEY, tracking={"grace_polls": 2}),
                         tmp_path / "state", home)
    try:
        yield proxy, agent.start()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        proxy.stop()


@pytest.mark.parametrize("kind", list(ODD_BODIES))
def test_body_that_is_not_a_download_list_is_a_failed_poll(sim: Any, proxied: Any, kind: str) -> None:
    proxy, agent = proxied
    body, ctype = ODD_BODIES[kind]
    tid = sim.add_download("alice", ALBUM + "odd.flac", 100, state="InProgress")
    agent.wait_event("started", id=tid)
    proxy.serve(body, ctype, count=8)
    lost = agent.wait_event("connection", status="lost")
    assert "download list" in lost["error"] or "invalid JSON" in lost["error"], lost
    agent.wait_event("connection", status="restored", timeout=20)
    assert proxy.pending() == 0
    assert not agent.of("failed", id=tid), "an odd body read as 'slskd lists nothing'"
    sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
    agent.wait_event("completed", id=tid)
    assert len(agent.of("connection", status="lost")) == 1
    assert len(agent.of("connection", status="restored")) == 1
    assert_once(agent)
    assert len(warnings(agent, "cannot be read")) == 1, agent.stderr


def test_one_unreadable_record_among_good_ones_blocks_nothing_and_fails_no_one(sim: Any, proxied: Any) -> None:
    """A record without an id is skipped; what it may hide is not counted missing meanwhile."""
    proxy, agent = proxied
    hidden = sim.add_download("alice", ALBUM + "hidden.flac", 100, state="InProgress")
    agent.wait_event("started", id=hidden)
    good = sim.add_download("bob", ALBUM + "good.flac", 100, state="Completed, Succeeded")
    rec = sim.get(good)
    junk = dict(sim.get(hidden))
    del junk["id"]  # the hidden download's record, unreadable
    listing = [{"username": "bob", "directories": [{"directory": "d", "files": [rec]}]},
               {"username": "alice", "directories": [{"directory": "d", "files": [junk]}]}]
    proxy.serve(json.dumps(listing).encode(), count=8)
    agent.wait_event("completed", id=good)
    deadline = time.monotonic() + 10
    while proxy.pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not agent.of("failed", id=hidden), "a download hidden by an unreadable record counted missing"
    assert not agent.of("connection")
    assert len(warnings(agent, "without an id or file name")) == 1, agent.stderr


# ------------------------------------------------------------------ 4. kill -9 mid-batch


def _fill_then_kill(agent: AgentProcess, read_fd: int, stderr: Any) -> bytes:
    """Start the agent writing into a 4 KiB pipe nobody reads, kill -9 it once it blocks."""
    agent.proc = subprocess.Popen(agent.command(), cwd=Path(__file__).resolve().parent.parent, env=agent.env(),
                                  stdout=agent.pipe_w, stderr=stderr)  # type: ignore[attr-defined]
    os.close(agent.pipe_w)  # type: ignore[attr-defined]
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        buf = bytearray(4)
        fcntl.ioctl(read_fd, termios.FIONREAD, buf)
        queued = int.from_bytes(buf, sys.byteorder)
        if queued != last:
            last, since = queued, time.monotonic()
        elif queued > 0 and time.monotonic() - since > 1.0:
            break  # the pipe is full and the writer blocked
        time.sleep(0.05)
    agent.proc.kill()
    agent.proc.wait(10)
    chunks = []
    while True:
        data = os.read(read_fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read_fd)
    return b"".join(chunks)


def test_kill_9_while_writing_a_batch_to_a_slow_pipe_repeats_at_most_one_event(sim: Any, tmp_path: Path) -> None:
    ids = {sim.add_download(f"peer{i % 7}", ALBUM + f"{i:03d}.flac", 100) for i in range(300)}
    home = tmp_path / "home"
    home.mkdir()
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    first = AgentProcess(cfg, tmp_path / "state", home)
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
    first.pipe_w = write_fd  # type: ignore[attr-defined]
    with open(tmp_path / "first.err", "w") as err:
        written = _fill_then_kill(first, read_fd, err)
    assert written, "the agent wrote nothing before it was killed"
    assert written.endswith(b"\n"), f"a cut-off line was left: ...{written[-80:]!r}"
    before = [json.loads(line) for line in written.splitlines()]
    assert 0 < len(before) < 300, len(before)

    second = AgentProcess(cfg, tmp_path / "state", home).start()
    try:
        second.wait_for(lambda evs: {e["id"] for e in before + evs if e["event"] == "added"} >= ids, timeout=30)
    finally:
        second.stop()
    seqs = Counter(e["seq"] for e in before + second.events if e["event"] == "added")
    repeated = [s for s, n in seqs.items() if n > 1]
    assert len(repeated) <= 1, f"{len(repeated)} events repeated after one kill -9"
    assert len(seqs) == 300


# ------------------------------------------------------------------ 6. one bad string


@pytest.mark.parametrize("without", [(), ("orjson",)], ids=["orjson", "stdlib-json"])
def test_lone_surrogate_in_a_file_name_blocks_nothing(sim: Any, tmp_path: Path, without: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY, cleanup={"enabled": True, "interval": 0.5})
    agent = AgentProcess(cfg, tmp_path / "state", home, without=without).start()
    bad_name = ALBUM + "bad \ud800 name.flac"
    try:
        names = [ALBUM + f"s{i:02d}.flac" for i in range(14)] + [bad_name]
        ids = {sim.add_download("alice", name, 100, state="InProgress"): name for name in names}
        for tid in ids:
            agent.wait_event("started", id=tid)
        for tid in ids:
            sim.set_state(tid, "Completed, Succeeded", bytes_transferred=100)
        for tid, name in ids.items():
            assert agent.wait_event("completed", id=tid)["filename"] == name
        assert all(wait_removed(sim, tid) for tid in ids)
        time.sleep(0.5)
        assert_once(agent)
        assert not any("Traceback" in line for line in agent.stderr), "".join(agent.stderr)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
