"""Idle cost of `trayagent run --headless --json`: resident memory, CPU, and what it imports.

Starts the loopback slskd simulator (scenario "idle" plus --history finished transfers from
200 peers) in this process and the agent as a subprocess with the default [poll] intervals
(1 s active, 10 s idle) and default notifications; cleanup is off so the history stays listed
for the whole run (the worst case for an idle poll). After --warmup seconds it samples the
agent's VmRSS (/proc/PID/status) and utime+stime (/proc/PID/stat) for --seconds.

The agent runs under `python -X importtime`, so every module it ever imports (at start-up or
later) is listed on its stderr: headless mode must not import PIL, pystray or plyer.

    .venv/bin/python benchmarks/idle.py [--seconds 60] [--warmup 15] [--history 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
from _common import (BENCH_KEY, agent_cmd, agent_env, cpu_seconds, download_polls, header, populate_history, rss_mb,
                     spawn, stop, wait_for, write_config)

from trayagent.slskd.simulator import Simulator

FORBIDDEN = ("PIL", "pystray", "plyer")
RSS_TARGET_MB = 45.0
CPU_TARGET = 0.01  # of one core


def imported_modules(stderr_text: str) -> list[str]:
    out = []
    for line in stderr_text.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="sampling window")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds after the first poll before sampling")
    ap.add_argument("--history", type=int, default=2000, help="finished transfers slskd lists")
    args = ap.parse_args(argv)
    header(f"idle cost: run --headless --json, idle slskd listing {args.history:,} finished transfers")
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp, Simulator(api_key=BENCH_KEY) as sim:
        root = Path(tmp)
        populate_history(sim, args.history)
        cfg = write_config(root / "config.toml", sim.url, BENCH_KEY, cleanup={"enabled": False})
        err_path = root / "stderr.txt"
        with err_path.open("wb") as err:
            proc = spawn(agent_cmd(cfg, python_flags=("-X", "importtime")),
                         agent_env(root / "state", root / "home"), stderr=err)
            try:
                if not wait_for(lambda: download_polls(sim), 15.0):
                    print("  the agent never polled; stderr:\n" + err_path.read_text()[-2000:])
                    return 1
                time.sleep(args.warmup)
                polls0 = len(download_polls(sim))
                cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
                rss: list[float] = []
                while time.monotonic() - wall0 < args.seconds:
                    rss.append(rss_mb(proc.pid))
                    time.sleep(1.0)
                cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
                polls = len(download_polls(sim)) - polls0
                threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
            finally:
                stop(proc)
        modules = imported_modules(err_path.read_text(errors="replace"))
    share = (cpu1 - cpu0) / (wall1 - wall0)
    bad = sorted({m for m in modules if m.split(".")[0] in FORBIDDEN})
    print(f"  window {wall1 - wall0:.0f} s after {args.warmup:.0f} s warm-up; {polls} polls of the download list"
          f" ({polls / (wall1 - wall0) * 60:.1f}/min); {threads} threads")
    print(f"  resident memory: max {max(rss):.1f} MB, last {rss[-1]:.1f} MB   (target <= {RSS_TARGET_MB:.0f} MB:"
          f" {'MET' if max(rss) <= RSS_TARGET_MB else 'MISSED'})")
    print(f"  CPU: {cpu1 - cpu0:.2f} s in {wall1 - wall0:.0f} s = {share * 100:.2f}% of a core"
          f"   (target <= {CPU_TARGET * 100:.0f}%: {'MET' if share <= CPU_TARGET else 'MISSED'})")
    print(f"  modules imported: {len(modules)}; PIL/pystray/plyer: {', '.join(bad) if bad else 'none'}"
          f"   ({'MET' if not bad else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
