"""Command line: `trayagent run | demo | status | clear | sync | init | doctor | autostart`.

User mistakes (bad flags, bad config) end with one line saying what to fix and exit code 2;
slskd being unreachable is exit code 1; success is 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Sequence

from trayagent import __version__
from trayagent.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, TrayagentError

if TYPE_CHECKING:  # the commands import these lazily: `trayagent --help` stays quick
    from trayagent.agent import Agent
    from trayagent.config import Config
    from trayagent.lock import InstanceLock
    from trayagent.desktop.tray import PauseTarget

log = logging.getLogger(__name__)


class UsageError(TrayagentError):
    """A mistake the user can fix; printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH", help="config file (default: the user config dir)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")

    p = _Parser(prog="trayagent", description="A system-tray companion for slskd.")
    p.add_argument("--version", action="version", version=f"trayagent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", parents=[common], help="run the agent (tray icon, or --headless)")
    run.add_argument("--headless", action="store_true", help="no tray icon (servers, no display)")
    run.add_argument("--json", action="store_true", help="write each event as one JSON line on stdout")
    run.add_argument("--no-notify", action="store_true", help="no desktop notifications")

    demo = sub.add_parser("demo", parents=[common], help="run against the bundled slskd simulator")
    demo.add_argument("--headless", action="store_true", help="no tray icon even if a display exists")
    demo.add_argument("--json", action="store_true", help="events as JSON lines instead of text")
    demo.add_argument("--speedup", type=_positive_float, default=1.0, help="run the scripted session faster")
    demo.add_argument("--duration", type=_positive_float, default=None,
                      help="stop after this many seconds (default: when the session is over, headless)")

    status = sub.add_parser("status", parents=[common], help="one poll: active and recent downloads")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("clear", parents=[common], help="remove finished transfers the agent has recorded")

    sync = sub.add_parser("sync", parents=[common], help="bring playlists home (search, enqueue, retry)")
    sync.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="playlists (default: [sync] playlists)")
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    sync.add_argument("--dry-run", action="store_true",
                      help="search and rank, show what would be downloaded, enqueue nothing")

    init = sub.add_parser("init", parents=[common], help="write a config after checking it against slskd")
    init.add_argument("--url", help="slskd URL, e.g. http://localhost:5030")
    init.add_argument("--api-key-stdin", action="store_true", help="read the API key from standard input")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")

    doctor = sub.add_parser("doctor", parents=[common], help="check the setup, each line with its fix")
    doctor.add_argument("--notify", action="store_true", help="also send a test notification")

    auto = sub.add_parser("autostart", parents=[common], help="start at login: enable, disable, status")
    auto.add_argument("action", choices=["enable", "disable", "status"])
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            raise UsageError("no command given: try 'trayagent run' or 'trayagent demo' (see 'trayagent --help')")
        return COMMANDS[args.command](args)
    except TrayagentError as exc:  # config, state database, slskd: one line, never a traceback
        print(f"trayagent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# ------------------------------------------------------------------- helpers


def _load_config(args: argparse.Namespace) -> Config:
    from trayagent.config import load_config
    from trayagent.errors import ConfigError

    if args.config is not None and not args.config.is_file():
        raise UsageError(f"config file {args.config} does not exist: create it with "
                         f"'trayagent init --config {args.config}' or fix the path")
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _setup_logging(args: argparse.Namespace) -> Path | None:
    from trayagent.logs import setup_logging

    return setup_logging(getattr(args, "verbose", 0))


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _wait_for_signal(stop: threading.Event, timeout: float | None = None) -> None:
    """Block the main thread until SIGINT/SIGTERM (or the timeout)."""
    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait(timeout)


def _notifiers_for(args: argparse.Namespace, config: Config, agent: Agent, console: bool = False,
                   with_desktop: bool = True) -> PauseTarget | None:
    """Attach the event sinks; returns the desktop notifier (the tray pauses it), if any."""
    from trayagent import notify

    if getattr(args, "json", False):
        agent.add_notifier(notify.JsonLinesNotifier(sys.stdout))
    elif console:
        agent.add_notifier(notify.ConsoleNotifier(sys.stdout))
    if with_desktop and config.notifications.enabled and not getattr(args, "no_notify", False):
        from trayagent.desktop.desktop_notifier import DesktopNotifier

        desktop = notify.make_notifier("desktop", config, host=agent)
        agent.add_notifier(desktop)
        return desktop if isinstance(desktop, DesktopNotifier) else None
    return None


def _run_agent(agent: Agent, config: Config, headless: bool, stop: threading.Event,
               timeout: float | None = None, until: Callable[[], bool] | None = None,
               notifier: PauseTarget | None = None) -> int:
    if headless:
        agent.start()
        try:
            if until is None:
                _wait_for_signal(stop, timeout)
            else:
                _wait_until(stop, until, timeout)
        finally:
            agent.stop()
        return EXIT_OK
    from trayagent.desktop.tray import TrayApp

    app = TrayApp(agent, config, notifier=notifier)

    def handler(signum: int, frame: object) -> None:
        app.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if timeout is not None:
        threading.Timer(timeout, app.stop).start()
    app.run()  # starts and stops the agent
    return EXIT_OK


def _wait_until(stop: threading.Event, until: Callable[[], bool], timeout: float | None) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    waited = 0.0
    while not stop.wait(0.25):
        waited += 0.25
        if until() or (timeout is not None and waited >= timeout):
            break


# ------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    _setup_logging(args)  # first, so what loading the config says goes to the log
    config = _load_config(args)
    from trayagent.agent import Agent
    from trayagent.lock import AlreadyRunning

    lock = _instance_lock(config)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"already running (pid {exc.pid})", file=sys.stderr)
        return EXIT_OK
    try:
        headless = args.headless or not _has_display()
        if not args.headless and headless:
            log.warning("no display found: running headless")
        agent = Agent(config, watch_server=not headless)
        desktop = _notifiers_for(args, config, agent)
        return _run_agent(agent, config, headless, threading.Event(), notifier=desktop)
    finally:
        lock.release()


def _instance_lock(config: Config) -> InstanceLock:
    """One agent per slskd instance: the lock is the state database's own, beside it.

    Keyed by slskd's URL, not the config's path, so a hard-linked config or an environment-only
    config started from two directories cannot run two agents on one state.
    """
    from trayagent.lock import InstanceLock

    return InstanceLock.for_state(config.state_path)


def cmd_demo(args: argparse.Namespace) -> int:
    from trayagent.agent import Agent
    from trayagent.config import CleanupConfig, Config, PollConfig, SlskdConfig
    from trayagent.core.tracker import Rules
    from trayagent.slskd.simulator import Simulator

    _setup_logging(args)
    workdir = Path(tempfile.mkdtemp(prefix="trayagent-demo-"))
    os.environ["TRAYAGENT_STATE_DIR"] = str(workdir)  # keep the demo out of the user's history
    sim = Simulator(api_key=os.urandom(16).hex())
    sim.speedup = args.speedup
    sim.load_scenario("demo")
    url = sim.start()
    try:
        config = Config(
            slskd=SlskdConfig(url=url, api_key=sim.api_key or ""),
            poll=PollConfig(active_interval=0.5, idle_interval=2.0, max_backoff=10.0),
            tracking=Rules(grace_polls=3, failure_settle=3.0, restart_window=30.0),
            cleanup=CleanupConfig(enabled=True, interval=20.0),
        )
        display = _has_display()
        headless = args.headless or args.json or not display
        mode = "tray" if not headless else "headless" if display else "no display: headless, events print here"
        print(f"trayagent demo: simulated slskd at {url} ({mode}); Ctrl-C to stop", file=sys.stderr)
        agent = Agent(config, watch_server=not headless)
        # Without a display no notification can be seen: don't try (and warn) at all.
        desktop = _notifiers_for(args, config, agent, console=True, with_desktop=display)
        until = None
        if headless and args.duration is None:
            until = lambda: sim.scenario_done() and not agent.state().active  # noqa: E731
        return _run_agent(agent, config, headless, threading.Event(), args.duration, until, desktop)
    finally:
        sim.stop()


def cmd_status(args: argparse.Namespace) -> int:
    _setup_logging(args)
    config = _load_config(args)
    from trayagent.status import show_status

    return show_status(config, args.json, sys.stdout, sys.stderr)


def cmd_clear(args: argparse.Namespace) -> int:
    _setup_logging(args)
    config = _load_config(args)
    from trayagent.agent import Agent
    from trayagent.lock import AlreadyRunning

    lock = _instance_lock(config)
    try:
        lock.acquire()
    except AlreadyRunning:
        # The running agent owns the state: remove only what it has already recorded.
        removed = _clear_recorded_only(config)
    else:
        try:
            agent = Agent(config)
            try:
                if not agent.poll_once():
                    print(f"trayagent: {agent.state().last_error}", file=sys.stderr)
                    return EXIT_FAIL
                removed = agent.clear_finished()
            finally:
                agent.stop()
        finally:
            lock.release()
    if removed is None:
        return EXIT_FAIL
    print(f"removed {removed} finished transfer(s)")
    return EXIT_OK


def _clear_recorded_only(config: Config) -> int | None:
    """`clear` while an agent runs: remove only what its committed state records as ended."""
    from trayagent.slskd.client import SlskdClient
    from trayagent.slskd.errors import SlskdError
    from trayagent.store import Store

    store = Store(config.state_path, readonly=True)
    try:
        recorded = store.ended_ids()
    finally:
        store.close()
    client = SlskdClient(config.slskd)
    removed = 0
    try:
        for t in client.list_downloads():
            if t.status.terminal and t.id in recorded:
                client.remove_download(t.username, t.id)
                removed += 1
    except SlskdError as exc:
        print(f"trayagent: {exc}", file=sys.stderr)
        return None
    finally:
        client.close()
    return removed


def cmd_sync(args: argparse.Namespace) -> int:
    _setup_logging(args)
    config = _load_config(args)
    from trayagent.actions import CancelNotingClient
    from trayagent.paths import legacy_state_path
    from trayagent.core.model import utcnow
    from trayagent.store import CANCEL, adopt_legacy, note_issued_elsewhere
    from trayagent.sync_cli import run_sync_command

    adopt_legacy(legacy_state_path(), config.state_path)  # sync's progress lives in the same file

    def note(ids: Collection[str]) -> None:  # a running (or later) agent reports these ends as cancelled
        note_issued_elsewhere(config.state_path, CANCEL, ids, utcnow())

    client = CancelNotingClient(config.slskd, note)
    try:
        return run_sync_command(config, list(args.paths), args.json, sys.stdout, sys.stderr, client=client,
                                dry_run=args.dry_run)
    finally:
        client.close()


def cmd_init(args: argparse.Namespace) -> int:
    from trayagent.paths import default_config_path
    from trayagent.setup_wizard import run_init

    _setup_logging(args)
    return run_init(
        args.config or default_config_path(), os.environ, sys.stdin, sys.stdout,
        url=args.url, interactive=sys.stdin.isatty() and not args.api_key_stdin,
        api_key_stdin=args.api_key_stdin, force=args.force, err=sys.stderr,
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from trayagent.doctor import run_doctor

    return run_doctor(args.config, os.environ, sys.stdout, notify=args.notify)


def cmd_autostart(args: argparse.Namespace) -> int:
    from trayagent.desktop import autostart

    run_args = autostart.run_args(args.config)
    try:
        if args.action == "enable":
            print(f"autostart enabled: {autostart.enable(args=run_args)}")
        elif args.action == "disable":
            print("autostart disabled" if autostart.disable() else "autostart was not enabled")
        else:
            print(autostart.status(args=run_args).describe())
    except autostart.AutostartError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "demo": cmd_demo,
    "status": cmd_status,
    "clear": cmd_clear,
    "sync": cmd_sync,
    "init": cmd_init,
    "doctor": cmd_doctor,
    "autostart": cmd_autostart,
}
