"""Requests per minute to slskd: idle, while a download is active, and while slskd is down.

Runs `python -m trayagent run --headless --json` against the loopback simulator with the
default [poll] intervals (active 1 s, idle 10 s, backoff doubling from 1 s up to 60 s) all
multiplied by --scale, so the whole run takes a minute or two; the simulator counts every
request. Rates are printed as measured and converted back to the default intervals
(measured x scale): the agent's schedule is linear in the intervals, so this is exact up to
timer jitter. "down" is slskd answering every transfers request with a 500 (sim.fault); a
refused connection backs off the same way. Cleanup is off (with it on, one extra poll and a
bulk DELETE per [cleanup] interval, 300 s by default).

    .venv/bin/python benchmarks/requests_rate.py [--scale 0.1] [--window 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
from _common import (BENCH_KEY, agent_cmd, agent_env, download_polls, header, peer_polls, populate_history, spawn, stop,
                     wait_for, write_config)

from trayagent.config import PollConfig
from trayagent.slskd.simulator import Simulator


def count(sim: Simulator, start: float, end: float) -> tuple[int, int, int]:
    """(GETs of the whole download list, GETs of one peer's list, all requests) in [start, end)."""
    reqs = [r for r in sim.requests if start <= r.at < end]
    return (len([t for t in download_polls(sim) if start <= t < end]),
            len([t for t in peer_polls(sim) if start <= t < end]), len(reqs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1, help="multiply every default interval by this")
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per phase (after settling)")
    args = ap.parse_args(argv)
    d = PollConfig()
    poll = {"active_interval": d.active_interval * args.scale, "idle_interval": d.idle_interval * args.scale,
            "max_backoff": d.max_backoff * args.scale}
    header(f"requests per minute (intervals x {args.scale:g}: active {poll['active_interval']:g} s,"
           f" idle {poll['idle_interval']:g} s, max backoff {poll['max_backoff']:g} s)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp, Simulator(api_key=BENCH_KEY) as sim:
        root = Path(tmp)
        populate_history(sim, 500)
        cfg = write_config(root / "config.toml", sim.url, BENCH_KEY, poll=poll, cleanup={"enabled": False},
                           notifications={"enabled": False})
        proc = spawn(agent_cmd(cfg), agent_env(root / "state", root / "home"))
        try:
            wait_for(lambda: download_polls(sim), 20.0)

            def phase(name: str, settle: float, window: float) -> None:
                time.sleep(settle)
                start = time.monotonic()
                time.sleep(window)
                end = time.monotonic()
                polls, peers, total = count(sim, start, end)
                rows.append((name, polls, peers, total, end - start))

            phase("idle (history only)", 2 * poll["idle_interval"], args.window)
            tid = sim.add_download("peer-active", "@@music\\Album\\01 - Still queued.flac", 9_000_000,
                                   state="Queued, Remotely")
            phase("active (a download queued)", poll["idle_interval"] + 2 * poll["active_interval"], args.window)
            more = [sim.add_download(user, f"@@music\\Now\\{i:02d} - Active.flac", 9_000_000, state="InProgress")
                    for i, user in enumerate(("peer-active", "peer-other"))]
            phase("active (3 downloads from 2 peers)", poll["idle_interval"] + 2 * poll["active_interval"], args.window)
            for extra in more:
                sim.delete(extra)
            sim.fault("500", count=10**6)
            down_at = time.monotonic()
            ramp = sum(min(poll["max_backoff"], poll["active_interval"] * 2 ** k) for k in range(1, 8))
            window = max(args.window, 4 * poll["max_backoff"])
            phase("slskd down (500 on every request)", ramp, window)
            down_polls = [t for t in download_polls(sim) if t >= down_at]
            gaps = [b - a for a, b in zip(down_polls, down_polls[1:])]
            sim.clear_faults()
            back_at = time.monotonic()
            sim.set_state(tid, "InProgress")
            wait_for(lambda: any(t > back_at for t in download_polls(sim)), 2 * poll["max_backoff"] + 5)
            recovered = min(t for t in download_polls(sim) if t > back_at) - back_at
        finally:
            stop(proc)
    print(f"  {'phase':<36} {'GET whole':>9} {'GET peer':>8} {'all reqs':>8} {'window s':>8} {'measured /min':>13}"
          f" {'at default intervals /min (whole + peer)':>41}")
    for name, polls, peers, total, secs in rows:
        rate, peer_rate = polls / secs * 60, peers / secs * 60
        print(f"  {name:<36} {polls:>9} {peers:>8} {total:>8} {secs:>8.1f} {rate + peer_rate:>13.1f}"
              f" {(rate + peer_rate) * args.scale:>19.2f} ({rate * args.scale:.2f} + {peer_rate * args.scale:.2f})")
    print("  backoff while down, gaps between polls at default intervals (s): "
          + ", ".join(f"{g / args.scale:.1f}" for g in gaps[:10]))
    print(f"  first poll after slskd came back: {recovered / args.scale:.1f} s at default intervals"
          f" (at most the current backoff, {d.max_backoff:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
