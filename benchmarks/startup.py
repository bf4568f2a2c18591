"""Start-up: from process start to the first GET of the download list arriving at slskd.

Spawns `python -m trayagent run --headless --json` against the loopback simulator (in this
process, so request arrival times and the spawn time share one monotonic clock), --runs
times with a fresh state directory each, and reports the median. Then one more run under
`python -X importtime` lists the most expensive imports (cumulative, top-level first).

    .venv/bin/python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
from _common import (BENCH_KEY, agent_cmd, agent_env, download_polls, header, populate_history, spawn, stop,
                     wait_for, write_config)

from trayagent.slskd.simulator import Simulator

TARGET = 0.5


def first_poll(sim: Simulator, root: Path, flags: tuple[str, ...] = (), stderr: object = subprocess.DEVNULL) -> float:
    cfg = write_config(root / "config.toml", sim.url, BENCH_KEY, cleanup={"enabled": False},
                       notifications={"enabled": False})
    sim.clear_requests()
    env = agent_env(root / "state", root / "home")
    cmd = agent_cmd(cfg, python_flags=flags)
    t0 = time.monotonic()
    proc = spawn(cmd, env, stderr=stderr)
    try:
        if not wait_for(lambda: download_polls(sim), 20.0, step=0.002):
            raise RuntimeError("the agent never polled")
        return download_polls(sim)[0] - t0
    finally:
        stop(proc)


def interpreter_floor(runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """(cumulative us, self us, depth, module) per import line."""
    out = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        name = name[1:]  # one separator space, then two spaces per nesting level
        depth = (len(name) - len(name.lstrip(" "))) // 2
        out.append((int(cum_us), int(self_us), depth, name.strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    header("start-up: process start to first poll")
    with Simulator(api_key=BENCH_KEY) as sim:
        populate_history(sim, 2000)
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
                times.append(first_poll(sim, Path(tmp)))
        with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
            err = Path(tmp) / "stderr.txt"
            with err.open("wb") as fh:
                first_poll(sim, Path(tmp), ("-X", "importtime"), stderr=fh)
            imports = parse_importtime(err.read_text(errors="replace"))
    floor = interpreter_floor(args.runs)
    med = statistics.median(times)
    print(f"  first poll after {med * 1e3:.0f} ms (median of {args.runs}; min {min(times) * 1e3:.0f},"
          f" max {max(times) * 1e3:.0f})   target <= {TARGET * 1e3:.0f} ms: {'MET' if med <= TARGET else 'MISSED'}")
    print(f"  bare interpreter (python -c pass): {floor * 1e3:.0f} ms")
    top_level = [i for i in imports if i[2] == 0]
    total = sum(i[0] for i in top_level)
    print(f"  -X importtime: {len(imports)} modules, {total / 1e3:.0f} ms in top-level imports; the most expensive:")
    for cum, self_us, depth, name in sorted(imports, reverse=True)[: args.top]:
        print(f"    {cum / 1e3:7.1f} ms cumulative {self_us / 1e3:6.1f} ms self  {'  ' * depth}{name}")
    bad = sorted({i[3] for i in imports if i[3].split(".")[0] in ("PIL", "pystray", "plyer")})
    print(f"  PIL/pystray/plyer imported: {', '.join(bad) if bad else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
