"""`python -m trayagent.slskd.simulator`: run the simulator in the foreground until SIGINT/SIGTERM.

Why a CLI: to poke a simulated slskd by hand (curl, a browser, the agent from another shell).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Sequence

from trayagent.slskd.simulator.scenarios import SCENARIOS
from trayagent.slskd.simulator.server import Simulator
from trayagent.slskd.simulator.state import DEFAULT_API_KEY

log = logging.getLogger(__name__)

DESCRIPTION = "A loopback HTTP server that speaks slskd 0.26's REST dialect, for demos, tests and benchmarks."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trayagent.slskd.simulator", description=DESCRIPTION)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-key", default=DEFAULT_API_KEY, help="the X-API-Key to accept")
    auth.add_argument("--no-auth", action="store_true", help="disable authentication, like SLSKD_NO_AUTH")
    parser.add_argument("--url-base", default="", help="URL base, e.g. /slskd")
    parser.add_argument("--scenario", choices=SCENARIOS, default="idle")
    parser.add_argument("--speedup", type=float, default=1.0, help="divide all scenario durations by this")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.speedup <= 0:
        parser.error("--speedup must be positive")

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = Simulator(api_key=None if args.no_auth else args.api_key, url_base=args.url_base, port=args.port)
    sim.speedup = args.speedup
    sim.load_scenario(args.scenario)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        url = sim.start()
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%d: %s", args.port, exc)
        return 1
    log.info("slskd simulator ready: %s (auth: %s, scenario: %s)", url,
             "off" if args.no_auth else "X-API-Key", args.scenario)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0
