"""Run `trayagent run --headless --json` as a real subprocess and read its event stream."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

FAST = {
    "poll": {"active_interval": 0.1, "idle_interval": 0.2, "max_backoff": 0.8},
    "tracking": {"grace_polls": 3, "failure_settle": 0.6, "restart_window": 4.0},
    "cleanup": {"enabled": False},
    "notifications": {"enabled": False},
}


def write_config(path: Path, url: str, api_key: str | None, **sections: dict[str, Any]) -> Path:
    import tomli_w

    data: dict[str, dict[str, Any]] = {k: dict(v) for k, v in FAST.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    data["slskd"] = {"url": url, **({"api_key": api_key} if api_key else {}), **data.get("slskd", {})}
    path.write_text(tomli_w.dumps(data))
    path.chmod(0o600)
    return path


class AgentProcess:
    """The agent under test, with its stdout parsed as JSON lines as they arrive."""

    def __init__(self, config: Path, state_dir: Path, home: Path, extra_args: tuple[str, ...] = (),
                 without: tuple[str, ...] = (), env_extra: dict[str, str] | None = None) -> None:
        self.config = config
        self.state_dir = state_dir
        self.home = home
        self.extra_args = extra_args
        self.without = without  # modules the agent must run without (e.g. the optional orjson)
        self.env_extra = env_extra or {}
        self.proc: subprocess.Popen[str] | None = None
        self.events: list[dict[str, Any]] = []
        self.raw_stdout: list[str] = []
        self.stderr: list[str] = []
        self._new = threading.Condition()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLSKD_", "DBUS_", "DISPLAY"))}
        env.update(
            TRAYAGENT_STATE_DIR=str(self.state_dir),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_STATE_HOME=str(self.home / "state"),
            XDG_CACHE_HOME=str(self.home / "cache"),
            HOME=str(self.home),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env_extra)
        return env

    def command(self) -> list[str]:
        args = ["run", "--headless", "--json", "--no-notify", "--config", str(self.config), *self.extra_args]
        if not self.without:
            return [sys.executable, "-m", "trayagent", *args]
        blocked = "".join(f"sys.modules[{m!r}] = None; " for m in self.without)
        code = f"import sys; {blocked}from trayagent.cli import main; sys.exit(main(sys.argv[1:]))"
        return [sys.executable, "-c", code, *args]

    def start(self) -> AgentProcess:
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1,
        )
        threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True).start()
        return self

    def _read_stdout(self, stream: Any) -> None:
        for line in stream:
            with self._new:
                self.raw_stdout.append(line)
                self.events.append(json.loads(line))  # anything but JSON fails the test here
                self._new.notify_all()

    def _read_stderr(self, stream: Any) -> None:
        for line in stream:
            self.stderr.append(line)

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._new:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None and not pred(self.events)):
                    raise AssertionError(
                        f"timed out waiting; events so far: {self.events}\nstderr:\n{''.join(self.stderr)[-4000:]}"
                    )
                self._new.wait(min(left, 0.2))
            return list(self.events)

    def wait_event(self, event: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        def found(evs: list[dict[str, Any]]) -> bool:
            return any(_matches(e, event, match) for e in evs)

        evs = self.wait_for(found, timeout)
        return next(e for e in evs if _matches(e, event, match))

    def of(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if _matches(e, event, match)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        time.sleep(0.1)  # let the reader threads drain
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _matches(e: dict[str, Any], event: str, match: dict[str, Any]) -> bool:
    return e.get("event") == event and all(e.get(k) == v for k, v in match.items())


def quiet_for(agent: AgentProcess, seconds: float) -> None:
    """Let the agent run a while (to prove something does NOT happen)."""
    time.sleep(seconds)


class EventSink:
    """A notifier that keeps what it was given (the agent's sink protocol, for an in-process Agent)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def notify(self, events: Any) -> None:
        self.events.extend(events)

    def close(self) -> None:
        pass
