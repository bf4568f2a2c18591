"""Clear cost: removing finished transfers one by one, against one full poll and the bulk call.

Cleanup removes only what the agent has recorded, each transfer by its id (a DELETE per
transfer), because slskd's bulk `DELETE transfers/downloads/all/completed` removes whatever
is complete when slskd handles it, including a download that appeared and finished after the
agent's poll, unreported (issue 14, item 5). This measures what that costs with N finished
transfers listed (10,000 by default), all recorded:

- baseline: one full poll (`Agent.poll_once`: GET the list, parse, reconcile, commit), the
  median of several;
- per transfer: `Agent.clear_finished()` (a fresh poll, then a DELETE for each of the N);
- bulk: one `DELETE .../all/completed` (what the agent used to send), for comparison.

Wall time and the agent's CPU time (process time of the agent process; the simulator runs in
another process, this one). Ratios are to the baseline poll measured in the same run.

    .venv/bin/python benchmarks/clear_cost.py [--transfers 10000] [--polls 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import header, populate_history

from trayagent.slskd.simulator import Simulator

KEY = "bench-key-0123456789"


def _timed(fn: Any) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def driver(url: str, state: str, phase: str, polls: int) -> dict[str, Any]:
    """Runs in the agent's own process: one phase, timings out as JSON."""
    os.environ["TRAYAGENT_STATE_DIR"] = state
    from trayagent.agent import Agent
    from trayagent.config import CleanupConfig, Config, SlskdConfig

    agent = Agent(Config(slskd=SlskdConfig(url=url, api_key=KEY, timeout=120.0),
                         cleanup=CleanupConfig(enabled=False)))
    try:
        assert agent.poll_once(), agent.state().last_error  # records every finished transfer
        if phase == "bulk":
            wall, cpu, _ = _timed(agent._client.clear_completed)
            return {"bulk_wall": wall, "bulk_cpu": cpu}
        poll = [_timed(agent.poll_once)[:2] for _ in range(polls)]
        wall, cpu, removed = _timed(agent.clear_finished)
        return {"poll_wall": statistics.median(p[0] for p in poll), "poll_cpu": statistics.median(p[1] for p in poll),
                "clear_wall": wall, "clear_cpu": cpu, "removed": removed}
    finally:
        agent.stop()


def run_phase(url: str, state: Path, phase: str, polls: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--driver", url, str(state), phase, str(polls)],
                         capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--driver"]:
        url, state, phase, polls = args_in[1:5]
        print(json.dumps(driver(url, state, phase, int(polls))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transfers", type=int, default=10_000)
    ap.add_argument("--polls", type=int, default=5, help="polls measured for the baseline (median)")
    args = ap.parse_args(args_in)
    n = args.transfers
    header(f"clear cost at {n:,} finished transfers: one DELETE each, vs one poll and the bulk call")
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp, Simulator(api_key=KEY) as sim:
        populate_history(sim, n)
        sim.clear_requests()
        ours = run_phase(sim.url, Path(tmp) / "a", "per-transfer", args.polls)
        deletes = [r for r in sim.requests if r.method == "DELETE"]
        assert ours["removed"] == n == len(deletes), (ours["removed"], len(deletes))
        populate_history(sim, n)
        bulk = run_phase(sim.url, Path(tmp) / "b", "bulk", 1)
    pw, pc = ours["poll_wall"], ours["poll_cpu"]
    print(f"   one full poll (baseline)       wall {pw * 1000:8.1f} ms   agent CPU {pc * 1000:8.1f} ms")
    print(f"   clear, one DELETE per transfer wall {ours['clear_wall'] * 1000:8.1f} ms   agent CPU "
          f"{ours['clear_cpu'] * 1000:8.1f} ms   = {ours['clear_wall'] / pw:5.1f}x / {ours['clear_cpu'] / pc:5.1f}x a poll"
          f"   ({ours['clear_wall'] / n * 1e6:.0f} us wall per transfer)")
    print(f"   bulk all/completed (old)       wall {bulk['bulk_wall'] * 1000:8.1f} ms   agent CPU "
          f"{bulk['bulk_cpu'] * 1000:8.1f} ms   = {bulk['bulk_wall'] / pw:5.2f}x / {bulk['bulk_cpu'] / pc:5.2f}x a poll")
    print(f"   per-transfer clear costs {ours['clear_wall'] / max(bulk['bulk_wall'], 1e-9):.0f}x the bulk call in wall time;"
          " polls go on meanwhile (removals run outside the poll lock)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
