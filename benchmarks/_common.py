"""Shared helpers for the benchmark scripts: paths, the machine line, agent subprocesses."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: slskd accepts API keys of 16 to 255 characters, and so does trayagent's config.
BENCH_KEY = "bench-key-0123456789"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import orjson

        oj = f"orjson {orjson.__version__}"
    except ImportError:
        oj = "no orjson"
    code = "BEFORE the performance changes (benchmarks/_before.py)" if os.environ.get("TRAYAGENT_BENCH_BEFORE") \
        else "the poll path before issue 12 (benchmarks/_today.py)" if os.environ.get("TRAYAGENT_BENCH_TODAY") \
        else "current code"
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({model}), "
            f"Python {platform.python_version()}, {oj}; {code}")


def header(title: str) -> None:
    print(f"\n== {title}")
    print(f"   machine: {machine()}")
    print(f"   command: {' '.join([Path(sys.executable).name, *sys.argv])}")


def agent_env(state_dir: Path, home: Path) -> dict[str, str]:
    """A clean environment for a headless agent: no display, no D-Bus, private dirs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLSKD_", "DBUS_", "DISPLAY", "WAYLAND", "TRAYAGENT_", "PYTHON"))}
    env.update(
        TRAYAGENT_STATE_DIR=str(state_dir),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        HOME=str(home),
        PYTHONUNBUFFERED="1",
    )
    return env


def write_config(path: Path, url: str, api_key: str, **sections: dict[str, Any]) -> Path:
    import tomli_w

    data: dict[str, Any] = {"slskd": {"url": url, "api_key": api_key}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path.write_text(tomli_w.dumps(data))
    path.chmod(0o600)
    return path


def agent_cmd(config: Path, *extra: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    """`python -m trayagent run --headless --json`; through _before.py in a "before" run."""
    before = (str(HERE / "_before.py"),) if os.environ.get("TRAYAGENT_BENCH_BEFORE") else \
        (str(HERE / "_today.py"),) if os.environ.get("TRAYAGENT_BENCH_TODAY") else ()
    return [sys.executable, *python_flags, *before, "-m", "trayagent", "run", "--headless", "--json",
            "--config", str(config), *extra]


def spawn(cmd: list[str], env: dict[str, str], stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(cond: Any, timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def populate_history(sim: Any, n: int, peers: int = 200) -> None:
    """n finished downloads (mostly succeeded) from `peers` users, straight into the simulator."""
    for i in range(n):
        state = ("Completed, Errored" if i % 50 == 7 else
                 "Completed, Cancelled" if i % 97 == 3 else "Completed, Succeeded")
        sim.add_download(f"peer{i % peers:03d}", f"@@music\\Album {i // 12:04d}\\{i % 12 + 1:02d} - Track {i}.flac",
                         5_000_000 + i * 1000, state=state, ended_ago=3600.0 + i,
                         exception="Transfer failed: Connection reset by peer" if "Errored" in state else None)


DOWNLOADS = "/api/v0/transfers/downloads"


def peer_polls(sim: Any) -> list[float]:
    """Monotonic arrival times of every GET of one peer's list (transfers/downloads/{username})."""
    return [r.at for r in sim.requests if r.method == "GET" and r.path.startswith(DOWNLOADS + "/")
            and r.path.count("/") == DOWNLOADS.count("/") + 1]


def download_polls(sim: Any) -> list[float]:
    """Monotonic arrival times of every GET of the download list."""
    return [r.at for r in sim.requests if r.method == "GET" and r.path.rstrip("/").endswith(DOWNLOADS)]


def naive_from_json(obj: dict[str, Any], username: str | None = None) -> Any:
    """Transfer.from_json as first written (keyword construction, a helper call per field)."""
    tid = obj.get("id")
    filename = obj.get("filename")
    if not isinstance(tid, str) or not tid or not isinstance(filename, str) or not filename:
        return None
    user = obj.get("username")
    if not isinstance(user, str) or not user:
        user = username or ""
    state = obj.get("state")
    exc = obj.get("exception")
    from trayagent.core.model import Transfer, _float, _int, _str_or_none

    return Transfer(
        id=tid, username=user, filename=filename,
        state=state if isinstance(state, str) else "None",
        size=max(_int(obj.get("size")), 0),
        bytes_transferred=max(_int(obj.get("bytesTransferred")), 0),
        average_speed=_float(obj.get("averageSpeed")),
        exception=exc if isinstance(exc, str) else None,
        attempts=_int(obj.get("attempts")),
        requested_at_raw=_str_or_none(obj.get("requestedAt")),
        started_at_raw=_str_or_none(obj.get("startedAt")),
        ended_at_raw=_str_or_none(obj.get("endedAt")),
    )


def run_patched(install: Any, doc: str | None) -> None:
    """`python SHIM.py -m module args` / `python SHIM.py script.py args`, with install() applied first."""
    import runpy

    args = sys.argv[1:]
    if not args:
        raise SystemExit(doc)
    install()
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")
