"""Kill/fault soak: every end reported exactly once across kills, faults and cleanup.

A scripted session of downloads plays out in the simulator (queued, transferring, then
succeeded, rejected, errored or cancelled; some with hostile names, one with a lone
surrogate) while `trayagent run --headless --json` is started and stopped again and again,
mostly by `kill -9` at a random moment, with cleanup removing what it recorded every 0.7 s.
During the rounds, faults are injected at random:

- slskd faults: 500, 503, 401, a reset connection, broken JSON, a read timeout;
- odd bodies: a 200 with `{}`, `{"message": ...}`, an HTML page, records without ids
  (through a loopback proxy, tests/oddproxy.py);
- an slskd restart (in-flight downloads errored, re-enqueued under new ids);
- the state database locked by another connection (BEGIN EXCLUSIVE) for 1-7 s;
- a refused write (the agent's RLIMIT_FSIZE pinned at the WAL's size: the disk full);
- the reader of `--json` going away (the pipe closed).

Then faults stop, the session finishes, one last agent runs until everything is reported, and
the whole stream is checked as a consumer sees it (duplicates of one `seq` dropped, as the
README says): each download's end exactly once with the right outcome, no cut-off line, at
most one repeated line per kill. Exits 1 on any violation.

    .venv/bin/python benchmarks/soak.py [--rounds 60] [--downloads 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import ROOT, agent_cmd, agent_env, header, write_config

sys.path.insert(0, str(ROOT / "tests"))
from oddproxy import OddProxy  # noqa: E402

from trayagent.slskd.simulator import Simulator, SimulatorError  # noqa: E402

KEY = "soak-key-0123456789"
ALBUM = "@@music\\Soak Artist\\Soak Album\\"
OUTCOMES = [("Completed, Succeeded", "completed", 80), ("Completed, Rejected", "failed", 8),
            ("Completed, Errored", "failed", 6), ("Completed, Cancelled", "cancelled", 6)]
ODD = [b"{}", b'{"message": "Service Unavailable"}', b"<html><body>502 Bad Gateway</body></html>",
       b'[{"username": "x", "directories": [{"directory": "d", "files": [{"filename": "f"}]}]}]']
SLSKD_FAULTS = ["500", "503", "401", "reset", "broken_json", "timeout"]
HOSTILE = ["-rf --help", "<b>bold</b> & <i>it</i>", "ctrl\x01\x1b[31mred", "rtl \u202egnp.exe", "emoji 🎵 ünïcödé",
           "bad \ud800 surrogate"]


class Run:
    """One agent process and what it wrote, line by line (bytes, so a cut-off line shows).

    The reader reads the pipe unbuffered, so when it "goes away" it has thrown away nothing it
    received. What the agent had already written into the pipe at that moment (the kernel's
    buffer) is lost with the pipe, as for any reader that quits; it is kept apart as
    `abandoned`, to tell such lines from ends the agent never wrote.
    """

    def __init__(self, cmd: list[str], env: dict[str, str], err: Path) -> None:
        self.lines: list[bytes] = []
        self.abandoned: list[bytes] = []
        self.close_reader = threading.Event()
        self._err = open(err, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL, bufsize=0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *whole, pending = pending.split(b"\n")
            self.lines.extend(line + b"\n" for line in whole)
            if self.close_reader.is_set():
                # The agent is paused while the pipe is emptied and closed, so nothing it writes
                # falls between the two; its next write meets a closed pipe.
                _pause(self.proc.pid)
                os.set_blocking(fd, False)
                try:
                    left = os.read(fd, 1 << 20)
                except BlockingIOError:
                    left = b""
                self.abandoned.extend(line + b"\n" for line in (pending + left).split(b"\n")[:-1])
                pending = b""
                self.proc.stdout.close()
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                return
        if pending:
            self.lines.append(pending)  # a cut-off line: check() reports it
        self.proc.stdout.close()

    def end(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        self._err.close()
        return rc


def _pause(pid: int, timeout: float = 2.0) -> None:
    """SIGSTOP, and wait until every thread has really stopped (kill() returns before that)."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [Path(t, "stat").read_text().rsplit(")", 1)[1].split()[0]
                      for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            return
        if all(st in ("T", "t", "Z", "X") for st in states):
            return
        time.sleep(0.001)


class Session(threading.Thread):
    """Adds downloads with scripted lives; remembers which filename should end how."""

    def __init__(self, sim: Simulator, total: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.sim, self.total, self.rng = sim, total, rng
        self.expected: dict[str, str] = {}  # filename -> completed / failed / cancelled
        self.done = threading.Event()

    def run(self) -> None:
        rng = self.rng
        for i in range(self.total):
            extra = HOSTILE[i % len(HOSTILE)] + " " if i % 17 == 0 else ""
            name = f"{ALBUM}{i:04d} {extra}Track.flac"
            state, event = rng.choices([(s, e) for s, e, _ in OUTCOMES], [w for *_, w in OUTCOMES])[0]
            tid = self.sim.add_download(f"peer{i % 23}", name, 2_000_000)
            steps: list[tuple[Any, ...]] = [("state", "Queued, Remotely", rng.uniform(0.1, 2.0))]
            if state != "Completed, Rejected":  # a rejection comes from the peer's queue
                steps.append(("transfer", rng.uniform(1e6, 8e6)))
            steps.append(("end", state, "Transfer failed: Connection reset by peer" if "Errored" in state else None))
            self.sim.plan(tid, steps)
            self.expected[name] = event
            time.sleep(rng.uniform(0.0, 0.12))
        self.done.set()


def hold_lock(db: Path, seconds: float) -> None:
    try:
        con = sqlite3.connect(db, isolation_level=None, timeout=10)
        con.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        con.execute("ROLLBACK")
        con.close()
    except sqlite3.Error:
        pass


def refuse_writes(pid: int, db: Path, seconds: float) -> None:
    wal = db.with_name(db.name + "-wal")
    try:
        size = wal.stat().st_size if wal.exists() else 0
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (max(size, 1), resource.RLIM_INFINITY))
        time.sleep(seconds)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ProcessLookupError, OSError):
        pass


def inject(kind: str, rng: random.Random, sim: Simulator, proxy: OddProxy, run: Run, state: Path) -> None:
    dbs = sorted(state.glob("slskd-*.sqlite3"))
    if kind == "slskd":
        sim.fault(rng.choice(SLSKD_FAULTS), count=rng.randint(1, 6))
    elif kind == "odd body":
        proxy.serve(rng.choice(ODD), count=rng.randint(1, 5))
    elif kind == "restart":
        try:
            sim.restart(downtime=rng.uniform(0.2, 1.0), relogin_delay=rng.uniform(0.1, 0.5), reenqueue=True)
        except SimulatorError:  # one already in progress
            sim.fault(rng.choice(SLSKD_FAULTS), count=rng.randint(1, 6))
    elif kind == "locked db" and dbs:
        threading.Thread(target=hold_lock, args=(dbs[0], rng.uniform(1.0, 7.0)), daemon=True).start()
    elif kind == "refused write" and dbs:
        threading.Thread(target=refuse_writes, args=(run.proc.pid, dbs[0], rng.uniform(0.5, 3.0)), daemon=True).start()
    elif kind == "reader gone":
        run.close_reader.set()


FAULTS = ["slskd", "odd body", "restart", "locked db", "refused write", "reader gone"]


def check(runs: list[Run], expected: dict[str, str], kills: int) -> tuple[list[str], dict[str, int]]:
    """The stream as a consumer reads it: every line whole, seq duplicates dropped, each end once."""
    problems: list[str] = []
    seen: dict[int, dict[str, Any]] = {}
    repeats = 0
    abandoned = 0
    for n, run in enumerate(runs):
        abandoned += len(run.abandoned)
        for raw in run.lines + run.abandoned:
            if not raw.endswith(b"\n"):
                problems.append(f"run {n}: cut-off line {raw[-60:]!r}")
                continue
            ev = json.loads(raw)
            seq = ev.get("seq")
            if seq is None:
                continue  # connection events: not kept, not numbered
            if seq in seen:
                repeats += 1
                if seen[seq] != ev:
                    problems.append(f"seq {seq} repeated with other content")
                continue
            seen[seq] = ev
    ends = Counter()
    outcome: dict[str, str] = {}
    for ev in seen.values():
        if ev["event"] in ("completed", "failed", "cancelled"):
            ends[ev["filename"]] += 1
            outcome[ev["filename"]] = ev["event"]
    for name, want in expected.items():
        if ends[name] != 1:
            problems.append(f"{name!r}: reported {ends[name]} times")
        elif outcome[name] != want:
            problems.append(f"{name!r}: reported {outcome[name]}, slskd says {want}")
    for name in ends:
        if name not in expected:
            problems.append(f"{name!r}: reported but never in the session")
    if repeats > kills:
        problems.append(f"{repeats} repeated lines after {kills} kills")
    return problems, {"events": len(seen), "ends": sum(ends.values()), "repeats": repeats, "abandoned": abandoned}


class Soak:
    """The simulator, the proxy, the agent runs so far and the tally of kills and faults."""

    def __init__(self, tmp: Path, rng: random.Random) -> None:
        self.tmp, self.rng = tmp, rng
        self.sim = Simulator(api_key=KEY)
        self.sim.timeout_fault_seconds = 1.5
        self.sim.start()
        self.proxy = OddProxy(self.sim.url).start()
        self.state = tmp / "state"
        cfg = write_config(tmp / "config.toml", self.proxy.url, KEY,
                           poll={"active_interval": 0.1, "idle_interval": 0.2, "max_backoff": 0.8},
                           tracking={"grace_polls": 3, "failure_settle": 0.5, "restart_window": 4.0},
                           cleanup={"enabled": True, "interval": 0.7, "remove": ["succeeded", "cancelled", "failed"]},
                           notifications={"enabled": False}, slskd={"timeout": 1.0})
        self.env = agent_env(self.state, tmp / "home")
        self.cmd = agent_cmd(cfg, "--no-notify")
        self.runs: list[Run] = []
        self.tally: Counter = Counter()

    def start_agent(self, tag: str) -> Run:
        run = Run(self.cmd, self.env, self.tmp / f"err-{tag}.txt")
        self.runs.append(run)
        return run

    def play(self, rounds: int) -> Run:
        """Each round: run a while, maybe a fault, then kill -9 (or stop) and start again."""
        rng, current = self.rng, self.runs[-1]
        for n in range(rounds):
            time.sleep(rng.uniform(0.2, 1.5))
            if rng.random() < 0.6:
                kind = rng.choice(FAULTS)
                inject(kind, rng, self.sim, self.proxy, current, self.state)
                self.tally[kind] += 1
                time.sleep(rng.uniform(0.1, 1.5))
            sig = signal.SIGKILL if rng.random() < 0.8 else signal.SIGTERM
            rc = current.end(sig)
            self.tally["kill -9" if sig == signal.SIGKILL else "clean stop"] += 1
            if rc not in (0, -signal.SIGKILL):  # e.g. 1: it could not open a database locked for > 5 s
                self.tally["agent exit " + str(rc)] += 1
            time.sleep(rng.uniform(0.0, 0.8))
            current = self.start_agent(f"{n:04d}")
        return current

    def finish(self, current: Run, session: Session) -> None:
        """Faults off; the session plays out; a last agent reports everything that is left."""
        session.done.wait(600)
        self.sim.clear_faults()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.sim.scenario_done():
            time.sleep(0.2)
        current.end(signal.SIGTERM)
        last = self.start_agent("last")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            problems, _ = check(self.runs, session.expected, self.tally["kill -9"])
            if not [p for p in problems if "reported 0 times" in p]:
                break
            time.sleep(0.5)
        time.sleep(1.5)  # anything reported twice would show now
        last.end(signal.SIGTERM)

    def stop(self) -> None:
        self.proxy.stop()
        self.sim.stop()

    def report(self, session: Session, seconds: float) -> list[str]:
        problems, figures = check(self.runs, session.expected, self.tally["kill -9"])
        tally = self.tally
        tracebacks = sum(p.read_text(errors="replace").count("Traceback") for p in self.tmp.glob("err-*.txt"))
        faults = {k: v for k, v in tally.items() if k in FAULTS}
        print(f"   {len(self.runs)} agent runs in {seconds:.0f} s: {tally['kill -9']} kill -9, "
              f"{tally['clean stop']} clean stops; {sum(faults.values())} faults injected: "
              + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
        print(f"   {len(session.expected)} downloads ended; {figures['ends']} ends reported, {figures['events']} "
              f"numbered events; {figures['repeats']} lines repeated after a kill (same seq); "
              f"{tracebacks} tracebacks in stderr; {figures['abandoned']} lines were in the pipe when its "
              "reader went away")
        for other in sorted(k for k in tally if k.startswith("agent exit")):
            print(f"   {other}: {tally[other]}")
        if problems:
            print(f"   VIOLATIONS ({len(problems)}):")
            for p in problems[:30]:
                print(f"     {p}")
        else:
            print("   every end reported exactly once, no cut-off line")
        return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--downloads", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (agent stderr per round)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    header(f"kill/fault soak: {args.rounds} rounds, {args.downloads} downloads, seed {args.seed}")
    tmp = Path(tempfile.mkdtemp(prefix="trayagent-soak-"))
    soak = Soak(tmp, rng)
    started = time.monotonic()
    try:
        soak.start_agent("first")
        deadline = time.monotonic() + 20  # the first poll before anything ends: nothing is old history
        while time.monotonic() < deadline and not any(r.path.endswith("/transfers/downloads") for r in soak.sim.requests):
            time.sleep(0.05)
        session = Session(soak.sim, args.downloads, rng)
        session.start()
        soak.finish(soak.play(args.rounds), session)
    finally:
        soak.stop()
    problems = soak.report(session, time.monotonic() - started)
    if args.keep:
        print(f"   work directory kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
