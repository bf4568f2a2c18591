"""Fixtures for the end-to-end tests: a headless desktop, the simulator, the agent process.

Every test in this directory needs the desktop binaries. When one is missing the test is
skipped, unless ``TRAYAGENT_REQUIRE_E2E=1`` (CI sets it), in which case it fails and names
what is missing, so a broken CI image can never pass by skipping.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .desktop import Desktop, DesktopError, atspi_launcher, missing_binaries

ROOT = Path(__file__).resolve().parents[2]
SIM_API_KEY = "sim-key-0123456789abcdef"
#: Where the README's screenshots are written (override for throw-away runs).
SCREENSHOT_DIR = Path(os.environ.get("TRAYAGENT_SCREENSHOT_DIR") or ROOT / "docs" / "screenshots")

#: Poll/settle fast so a test takes seconds, not minutes.
FAST_CONFIG: dict[str, dict[str, Any]] = {
    "poll": {"active_interval": 0.2, "idle_interval": 0.5, "max_backoff": 1.0},
    "tracking": {"failure_settle": 0.5},
    "notifications": {"batch_window": 0.5},
}


def require_e2e() -> bool:
    """Whether missing prerequisites must fail (CI) rather than skip (a laptop)."""
    return os.environ.get("TRAYAGENT_REQUIRE_E2E", "").strip() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip, or fail when e2e runs are required."""
    if require_e2e():
        pytest.fail(f"TRAYAGENT_REQUIRE_E2E=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def e2e_prerequisites() -> None:
    """Every e2e test needs Xvfb, D-Bus, dunst, trayer, xdotool and ImageMagick's import."""
    missing = missing_binaries()
    if sys.platform != "linux":
        unavailable(f"e2e tests need Linux/X11 (this is {sys.platform})")
    if missing:
        unavailable(
            "missing e2e binaries: " + ", ".join(missing)
            + " (apt-get install xvfb dbus dunst libnotify-bin trayer xdotool imagemagick)"
        )


@pytest.fixture
def gtk_prerequisites() -> None:
    """The tray tests need PyGObject with GTK 3 (pystray's gtk backend) and AT-SPI."""
    problems = []
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("Atspi", "2.0")
    except (ImportError, ValueError) as exc:
        problems.append(f"PyGObject with Gtk 3.0 and Atspi 2.0 typelibs ({exc})")
    if atspi_launcher() is None:
        problems.append("at-spi2-core (at-spi-bus-launcher)")
    if problems:
        unavailable(
            "missing " + "; ".join(problems)
            + " (pip install -e '.[gtk]'; apt-get install gir1.2-gtk-3.0 gir1.2-atspi-2.0 at-spi2-core)"
        )


def _dump_logs(d: Desktop) -> None:
    """Print every component's log (pytest shows it for failing tests only)."""
    if not d.logs_dir.exists():
        return
    for log in sorted(d.logs_dir.iterdir()):
        text = log.read_text(errors="replace")
        if text.strip():
            print(f"----- {log.name} (last 4000 chars) -----\n{text[-4000:]}")


@contextmanager
def started_desktop(workdir: Path, **options: Any) -> Iterator[Desktop]:
    """A Desktop(workdir, **options), failing the test if it cannot start; logs shown, then stopped."""
    try:
        d = Desktop(workdir, **options).__enter__()
    except DesktopError as exc:
        pytest.fail(f"the test desktop did not start: {exc}", pytrace=False)
    try:
        yield d
    finally:
        _dump_logs(d)
        d.stop()


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    """Xvfb + private bus + dunst + trayer, torn down after the test."""
    with started_desktop(tmp_path / "desktop") as d:
        yield d


@pytest.fixture
def a11y_desktop(tmp_path: Path, gtk_prerequisites: None) -> Iterator[Desktop]:
    """Like ``desktop`` plus the AT-SPI bus, so menu items can be located on screen."""
    with started_desktop(tmp_path / "desktop", with_accessibility=True) as d:
        yield d


@pytest.fixture
def panel_desktop(tmp_path: Path) -> Iterator[Desktop]:
    """Xvfb + private bus + xfconfd + xfce4-panel (a StatusNotifierItem host), no trayer, no dunst."""
    try:
        d = Desktop(tmp_path / "desktop", with_tray=False, with_notifications=False, with_panel=True).__enter__()
    except DesktopError as exc:
        pytest.fail(f"the test desktop did not start: {exc}", pytrace=False)
    try:
        yield d
    finally:
        _dump_logs(d)
        d.stop()


@pytest.fixture
def without_gi(tmp_path: Path) -> dict[str, str]:
    """Agent environment in which ``import gi`` fails: the default install, no PyGObject."""
    shim = tmp_path / "no-gi" / "gi"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        'raise ImportError("PyGObject is not installed (blocked for this test: the default install)")\n'
    )
    return {"PYTHONPATH": os.pathsep.join([str(shim.parent), str(ROOT)])}


@pytest.fixture
def browser(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(agent env, record file): a BROWSER that records the URLs it is asked to open."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{opened}"\n')
    script.chmod(0o755)
    return {"BROWSER": str(script)}, opened


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The in-process slskd simulator."""
    from trayagent.slskd.simulator import Simulator

    sim = Simulator(api_key=SIM_API_KEY)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def write_config(path: Path, url: str, **sections: dict[str, Any]) -> Path:
    """A fast-polling TOML config for the agent, merged with ``sections``."""
    import tomli_w

    data: dict[str, dict[str, Any]] = {k: dict(v) for k, v in FAST_CONFIG.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    data["slskd"] = {"url": url, "api_key": SIM_API_KEY, **data.get("slskd", {})}
    path.write_text(tomli_w.dumps(data))
    path.chmod(0o600)
    return path


class AgentRun:
    """``trayagent run --json`` as a real process inside the test desktop."""

    def __init__(self, desktop: Desktop, config: Path, state_dir: Path, *, headless: bool,
                 env: dict[str, str] | None = None) -> None:
        self.desktop = desktop
        self.stdout_path = desktop.logs_dir / "agent.stdout"
        argv = [sys.executable, "-m", "trayagent", "run", "--json", "-v", "--config", str(config)]
        if headless:
            argv.insert(4, "--headless")
        full_env = dict(desktop.env)
        full_env.update(
            TRAYAGENT_STATE_DIR=str(state_dir),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
        )
        for key in list(full_env):
            if key.startswith("SLSKD_"):
                del full_env[key]
        full_env.update(env or {})
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = desktop.spawn("agent", argv, env=full_env, stdout=self._stdout, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """Every complete JSON line the agent has written so far."""
        text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")[:-1]  # the last piece may be a line still being written
        return [json.loads(line) for line in lines if line.strip()]

    def wait_event(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The first event of this type whose fields equal ``match``; fails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events():
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited ({self.proc.returncode}) before {event} {match}; "
                    f"log:\n{self.desktop.log_text('agent')[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {event} {match} within {timeout}s; events: {self.events()}\n"
                    f"log:\n{self.desktop.log_text('agent')[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM the agent (SIGKILL after a grace period); returns its exit code."""
        try:
            return self.desktop.terminate(self.proc, grace=10.0)
        finally:
            self._stdout.close()


@pytest.fixture
def start_agent(tmp_path: Path, simulator: Any) -> Iterator[Callable[..., AgentRun]]:
    """Start the agent in a desktop against the simulator; stopped after the test."""
    runs: list[AgentRun] = []

    def start(desktop: Desktop, *, headless: bool, env: dict[str, str] | None = None,
              **sections: dict[str, Any]) -> AgentRun:
        config = write_config(tmp_path / f"config{len(runs)}.toml", simulator.url, **sections)
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        run = AgentRun(desktop, config, state, headless=headless, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


@pytest.fixture
def screenshot_dir() -> Path:
    """docs/screenshots (created on demand)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
