"""Run every benchmark with modest defaults (`make bench`); a few minutes in all.

Each runs in its own process, so one's heap does not colour another's figures.

    .venv/bin/python benchmarks/run_all.py [--only poll_cost,idle] [--before | --today]

--before runs them on the pre-change code paths (see _before.py) for a side-by-side; --today on
the poll path before issue 12 (see _today.py). active_cost measures today's and the current
path itself, in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES: list[tuple[str, list[str]]] = [
    ("poll_cost", ["--sizes", "1000,10000,50000", "--polls", "7"]),
    ("persist", ["--transfers", "10000"]),
    ("startup", ["--runs", "5"]),
    ("idle", ["--seconds", "30", "--warmup", "12"]),
    ("requests_rate", ["--scale", "0.1", "--window", "12"]),
    ("clear_cost", ["--transfers", "10000"]),
    ("ranking_accuracy", []),
    ("active_cost", ["--sizes", "1000,10000,50000", "--seconds", "30"]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated subset: " + ",".join(n for n, _ in BENCHES))
    ap.add_argument("--before", action="store_true", help="measure the pre-change code paths")
    ap.add_argument("--today", action="store_true", help="measure the poll path before issue 12 (_today.py)")
    args = ap.parse_args(argv)
    wanted = {x for x in args.only.split(",") if x}
    unknown = wanted - {n for n, _ in BENCHES}
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    env = dict(os.environ)
    prefix = [sys.executable]
    if args.before:
        prefix.append(str(HERE / "_before.py"))
        env["TRAYAGENT_BENCH_BEFORE"] = "1"
    elif args.today:
        prefix.append(str(HERE / "_today.py"))
        env["TRAYAGENT_BENCH_TODAY"] = "1"
    failed = []
    started = time.monotonic()
    for name, bench_args in BENCHES:
        if wanted and name not in wanted:
            continue
        rc = subprocess.call([*prefix, str(HERE / f"{name}.py"), *bench_args], env=env, cwd=HERE.parent)
        if rc:
            failed.append(f"{name} (exit {rc})")
    print(f"\nall benchmarks done in {time.monotonic() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
