"""Issue 12: the agent's CPU while downloads are active, against the history slskd lists.

For each size (1k / 10k / 50k ended transfers from 200 peers, plus 3 downloads in progress
from 2 peers), in one run:

1. **CPU per second while active**: `trayagent run --headless --json` as a subprocess with the
   default intervals (active 1 s, idle 10 s), cleanup and notifications off, its utime+stime
   (/proc) over --seconds after --warmup. "today" is the poll path before this issue
   (benchmarks/_today.py: the whole list every second, read through requests' 10 KiB chunks,
   every record built); "after" is the current code (per-peer lists every second, the whole
   list every 10 s, read by id when nothing in it is new). Requests per minute of each kind
   are counted by the server.
2. **A full poll against json.loads**: Agent.poll_once with per-peer polling off ([poll]
   max_peers = 0), end to end (HTTP receive, parse, reconcile, commit, publish; thread CPU of
   the polling thread), best of --polls, as a ratio to stdlib json.loads of the same body
   (best of --polls, measured in turn with the polls), today and after, each in its own process.
3. **Idle**: the same agent with nothing active and --idle-sizes ended transfers listed (2k and
   10k): its resident memory (VmRSS) at the end of --idle-seconds after --warmup, and the
   requests per minute, today and after.

The bodies are the simulator's own (its JSON for those records), served by a small loopback
server from memory, so serving 50,000 records does not slow the agent's polls down.

    .venv/bin/python benchmarks/active_cost.py [--sizes 1000,10000,50000] [--seconds 30] [--warmup 14]
                                               [--idle-sizes 2000,10000] [--idle-seconds 12]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import _common  # noqa: F401  (sys.path)
from _common import (BENCH_KEY, HERE, agent_env, cpu_seconds, header, populate_history, rss_mb, spawn, stop,
                     wait_for, write_config)
from poll_cost import BodyServer

LIST = "/api/v0/transfers/downloads"
ACTIVE = [("alice", "@@music\\Now\\01 - Active.flac"), ("alice", "@@music\\Now\\02 - Active.flac"),
          ("bob", "@@music\\Later\\01 - Active.flac")]
CPU_TARGET = 0.05  # of today's, at 10k
RATIO_TARGET = 1.2
RSS_TARGET_MB = 45.0  # idle, 10k ended transfers listed


def bodies(n: int, active: bool = True) -> tuple[bytes, dict[str, bytes]]:
    """The simulator's answers: the whole list, and each peer's own list."""
    from trayagent.slskd.simulator import Simulator
    from trayagent.slskd.simulator.transfer_routes import list_downloads, user_downloads

    with Simulator(api_key=None) as sim:
        populate_history(sim, n)
        for user, name in ACTIVE if active else ():
            sim.add_download(user, name, 40_000_000, state="InProgress", bytes_transferred=1_000_000, speed=500_000.0)
        users = {r.username for r in sim.transfer_book.records.values()}
        per_user = {u: user_downloads(sim, u).body for u in users}
        return list_downloads(sim, {}).body, per_user


class Server(BodyServer):
    """Serves the whole list and per-peer lists (404 for a peer with none), and counts GETs."""

    def __init__(self, full: bytes, per_user: dict[str, bytes]) -> None:
        from urllib.parse import unquote

        self.counts = {"full": 0, "peer": 0}

        def route(path: str) -> bytes | None:
            if path == LIST:
                self.counts["full"] += 1
                return full
            self.counts["peer"] += 1
            return per_user.get(unquote(path[len(LIST) + 1:])) if path.startswith(LIST + "/") else None

        super().__init__(route)


def active_run(server: Server, mode: str, root: Path, seconds: float, warmup: float) -> dict[str, float]:
    """The agent at default intervals against `server` (3 downloads from 2 peers active, or none)."""
    cfg = write_config(root / f"{mode}.toml", server.url, BENCH_KEY, cleanup={"enabled": False},
                       notifications={"enabled": False})
    shim = [str(HERE / "_today.py")] if mode == "today" else []
    cmd = [sys.executable, *shim, "-m", "trayagent", "run", "--headless", "--json", "--config", str(cfg)]
    server.counts.update(full=0, peer=0)
    proc = spawn(cmd, agent_env(root / f"state-{mode}", root / "home"))
    try:
        if not wait_for(lambda: server.counts["full"] > 0, 30.0):
            raise SystemExit(f"the {mode} agent never polled")
        time.sleep(warmup)
        server.counts.update(full=0, peer=0)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
        counts = dict(server.counts)
        rss = rss_mb(proc.pid)
    finally:
        stop(proc)
    wall = wall1 - wall0
    return {"cpu": (cpu1 - cpu0) / wall, "full": counts["full"] / wall * 60, "peer": counts["peer"] / wall * 60,
            "rss": rss}


def full_poll(n: int, polls: int) -> dict[str, float]:
    """In this process: best json.loads and best Agent.poll_once (per-peer polls off) of one body.

    The two alternate, poll by poll, so that a shared machine's drift during the run weighs on
    both alike; both are the calling thread's CPU time.
    """
    from trayagent.agent import Agent
    from trayagent.config import Config, PollConfig, SlskdConfig
    from trayagent.slskd.memory import tune_allocator
    from trayagent.store import Store

    full, per_user = bodies(n)
    server = Server(full, per_user)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = [t0]
    tune_allocator()
    loads, out = [], []
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
        config = Config(slskd=SlskdConfig(url=server.url, api_key=BENCH_KEY), poll=PollConfig(max_peers=0))
        agent = Agent(config, store=Store(Path(tmp) / "state.db"), clock=lambda: clock[0])
        try:
            for i in range(polls + 1):
                gc.collect()
                start = time.thread_time()
                json.loads(full)
                loads.append(time.thread_time() - start)
                clock[0] = t0 + timedelta(seconds=i)
                gc.collect()
                start = time.thread_time()
                assert agent.poll_once(), agent.state().last_error
                if i:  # the first poll is the silent baseline
                    out.append(time.thread_time() - start)
        finally:
            agent.stop()
            server.close()
    return {"loads": min(loads), "poll": min(out), "bytes": len(full)}


def full_poll_in_process(n: int, polls: int, mode: str) -> dict[str, float]:
    shim = [str(HERE / "_today.py")] if mode == "today" else []
    cmd = [sys.executable, *shim, str(Path(__file__).resolve()), "--full-poll", str(n), "--polls", str(polls)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--seconds", type=float, default=30.0, help="CPU sampling window per agent run")
    ap.add_argument("--warmup", type=float, default=14.0, help="seconds after the first poll before sampling")
    ap.add_argument("--polls", type=int, default=7, help="polls measured for the full-poll ratio")
    ap.add_argument("--idle-sizes", default="2000,10000", help="ended transfers listed for the idle runs")
    ap.add_argument("--idle-seconds", type=float, default=12.0, help="idle window (an idle poll every 10 s)")
    ap.add_argument("--full-poll", type=int, default=0, help=argparse.SUPPRESS)  # the in-process part, one size
    args = ap.parse_args(argv)
    if args.full_poll:
        print(json.dumps(full_poll(args.full_poll, args.polls)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    header("agent CPU while 3 downloads from 2 peers are active, the full poll against json.loads, idle memory")
    rows = []
    for n in sizes:
        full, per_user = bodies(n)
        server = Server(full, per_user)
        try:
            with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
                runs = {mode: active_run(server, mode, Path(tmp), args.seconds, args.warmup)
                        for mode in ("today", "after")}
        finally:
            server.close()
        polls = {mode: full_poll_in_process(n, args.polls, mode) for mode in ("today", "after")}
        rows.append((n, len(full), runs, polls))
        del full, per_user
    idle_sizes = [int(s) for s in args.idle_sizes.split(",") if s]
    idle = [(n, idle_runs(n, args.idle_seconds, args.warmup)) for n in idle_sizes]
    report(args, rows, idle)
    return 0


def idle_runs(n: int, seconds: float, warmup: float) -> dict[str, dict[str, float]]:
    full, per_user = bodies(n, active=False)
    server = Server(full, per_user)
    try:
        with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
            return {mode: active_run(server, mode, Path(tmp), seconds, warmup) for mode in ("today", "after")}
    finally:
        server.close()


def report(args: argparse.Namespace, rows: list, idle: list) -> None:
    """Print the three tables and the targets."""
    print(f"\n  CPU per second while active (default intervals; {args.seconds:g} s window after {args.warmup:g} s)")
    print(f"  {'ended':>7} {'body':>8} {'today ms/s':>10} {'after ms/s':>10} {'after/today':>11}"
          f" {'today GET/min (whole)':>22} {'after GET/min (whole + peer)':>29}")
    for n, size, runs, _ in rows:
        t, a = runs["today"], runs["after"]
        print(f"  {n:>7,} {size / 1e6:>6.1f}MB {t['cpu'] * 1e3:>10.2f} {a['cpu'] * 1e3:>10.2f}"
              f" {a['cpu'] / t['cpu'] * 100:>10.1f}% {t['full'] + t['peer']:>15.1f} ({t['full']:.1f})"
              f" {a['full'] + a['peer']:>15.1f} ({a['full']:.1f} + {a['peer']:.1f})")
    print(f"\n  A full poll, end to end (HTTP included), best of {args.polls}, as a ratio to json.loads of the body")
    print(f"  {'ended':>7} {'json.loads':>10} {'today':>16} {'after':>16}")
    for n, _, _, polls in rows:
        t, a = polls["today"], polls["after"]
        print(f"  {n:>7,} {a['loads'] * 1e3:>8.1f}ms {t['poll'] * 1e3:>8.1f}ms ({t['poll'] / t['loads']:.2f}x)"
              f" {a['poll'] * 1e3:>8.1f}ms ({a['poll'] / a['loads']:.2f}x)")
    by = {n: (runs, polls) for n, _, runs, polls in rows}
    if 10_000 in by:
        runs, polls = by[10_000]
        share = runs["after"]["cpu"] / runs["today"]["cpu"]
        ratio = polls["after"]["poll"] / polls["after"]["loads"]
        print(f"\n  target at 10k: active CPU <= {CPU_TARGET:.0%} of today's: {share:.1%}"
              f" ({'MET' if share <= CPU_TARGET else 'MISSED'});"
              f" full poll <= {RATIO_TARGET}x json.loads: {ratio:.2f}x ({'MET' if ratio <= RATIO_TARGET else 'MISSED'})")
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        print(f"  flat in history: after, {lo[0]:,} -> {hi[0]:,} ended: {lo[2]['after']['cpu'] * 1e3:.2f} ->"
              f" {hi[2]['after']['cpu'] * 1e3:.2f} ms/s (today {lo[2]['today']['cpu'] * 1e3:.1f} ->"
              f" {hi[2]['today']['cpu'] * 1e3:.1f} ms/s)")
    if not idle:
        return
    print(f"\n  Idle, nothing active (default intervals; {args.idle_seconds:g} s window after {args.warmup:g} s)")
    print(f"  {'ended':>7} {'RSS today':>10} {'RSS after':>10} {'GET/min today (whole)':>22}"
          f" {'after (whole + peer)':>21} {'CPU ms/s today':>15} {'after':>6}")
    for n, runs in idle:
        t, a = runs["today"], runs["after"]
        print(f"  {n:>7,} {t['rss']:>8.1f}MB {a['rss']:>8.1f}MB {t['full'] + t['peer']:>15.1f} ({t['full']:.1f})"
              f" {a['full'] + a['peer']:>12.1f} ({a['full']:.1f} + {a['peer']:.1f})"
              f" {t['cpu'] * 1e3:>15.2f} {a['cpu'] * 1e3:>6.2f}")
    by_idle = dict(idle)
    if 10_000 in by_idle:
        rss = by_idle[10_000]["after"]["rss"]
        print(f"\n  target: idle RSS with 10k ended transfers <= {RSS_TARGET_MB:g} MB: {rss:.1f} MB"
              f" ({'MET' if rss <= RSS_TARGET_MB else 'MISSED'})", end="")
        if 2_000 in by_idle:
            print(f"; today's with 2k: {by_idle[2_000]['today']['rss']:.1f} MB", end="")
        print()


if __name__ == "__main__":
    sys.exit(main())
