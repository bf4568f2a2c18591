"""Start trayagent at login: XDG autostart (Linux/BSD), a LaunchAgent (macOS), HKCU Run (Windows).

Everything that depends on the machine (platform, home directory, environment, executable,
registry) is a parameter, so the three back ends are exercised on any OS. `status()` reads
what is really installed rather than trusting a flag we wrote, because users and desktop
settings tools edit these entries behind our back (Hidden=true, a moved virtualenv, ...).
"""

from __future__ import annotations

import logging
import ntpath
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from trayagent.errors import EXIT_USAGE, TrayagentError
from trayagent.desktop.autostart_formats import desktop_entry, parse_exec, parse_windows_command, read_desktop_entry

log = logging.getLogger(__name__)

APP_NAME = "trayagent"
DESKTOP_FILE_NAME = "trayagent.desktop"
LAUNCH_AGENT_LABEL = "com.trayagent.agent"
RUN_KEY_PATH = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE_NAME = "trayagent"
DEFAULT_ARGS: tuple[str, ...] = ("run",)
#: A path given by the caller (a home, an executable, a config file), or None for the default.
PathArg = str | os.PathLike[str] | None


class AutostartError(TrayagentError):
    """Autostart could not be changed; the message says what and where, in one line."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class AutostartStatus:
    """What is installed right now.

    installed: an entry exists and the desktop/OS will act on it (not Hidden/Disabled).
    location: the file path or registry value it lives at (shown to the user).
    command: the command line as written in the entry; None when absent/unreadable.
    matches: installed, runs exactly the expected command, and that executable exists.
    problem: why it does not match, in words for the user; None when all is well or absent.
    argv: `command` split into arguments, as the desktop/OS would run it.
    """

    installed: bool
    location: str
    command: str | None
    matches: bool
    problem: str | None = None
    argv: tuple[str, ...] | None = None

    def describe(self) -> str:
        """One line for `autostart status` and `doctor`."""
        if self.installed and self.matches:
            return f"enabled ({self.location})"
        if self.problem:
            return f"{self.problem} ({self.location})"
        return f"not enabled ({self.location})"


class RunKey(Protocol):
    """The one registry key Windows autostart needs (HKCU ... \\Run), as a small adapter."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> bool: ...


class WinregRunKey:
    """RunKey backed by the real registry; only constructible on Windows."""

    def __init__(self) -> None:
        import winreg  # noqa: PLC0415 - Windows only

        self._winreg = winreg

    def get(self, name: str) -> str | None:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, RUN_KEY_PATH, 0, w.KEY_READ) as key:
                value, _type = w.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        w = self._winreg
        with w.CreateKeyEx(w.HKEY_CURRENT_USER, RUN_KEY_PATH, 0, w.KEY_SET_VALUE) as key:
            w.SetValueEx(key, name, 0, w.REG_SZ, value)

    def delete(self, name: str) -> bool:
        w = self._winreg
        try:
            with w.OpenKey(w.HKEY_CURRENT_USER, RUN_KEY_PATH, 0, w.KEY_SET_VALUE) as key:
                w.DeleteValue(key, name)
        except FileNotFoundError:
            return False
        return True


# --------------------------------------------------------------------------- platform & command


def _kind(platform: str | None) -> str:
    """Normalise a sys.platform-style name to 'xdg', 'macos' or 'windows'."""
    name = (platform or sys.platform).lower()
    if name.startswith(("win", "cygwin", "msys")) or name == "nt":
        return "windows"
    if name in ("darwin", "macos", "mac", "osx"):
        return "macos"
    return "xdg"  # linux, freebsd, openbsd, netbsd, ...


def find_executable(platform: str | None = None) -> list[str]:
    """The argv prefix that starts this installation of trayagent, as absolute paths.

    Prefers the installed `trayagent` script of the running interpreter's environment (so a
    virtualenv install autostarts the same venv), then PATH, then `python -m trayagent`.
    """
    windows = _kind(platform) == "windows"
    names = ("trayagent.exe", "trayagent") if windows else ("trayagent",)
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name in names and argv0.is_file():
        return [os.path.abspath(argv0)]
    # Not resolved: a venv's python is a symlink and its scripts sit next to the link.
    bindir = Path(sys.executable).parent
    for sub in (bindir, bindir / "Scripts"):
        for name in names:
            candidate = sub / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return [os.path.abspath(candidate)]
    found = shutil.which("trayagent")
    if found:
        return [os.path.abspath(found)]
    log.debug("no trayagent script found; autostart will use %s -m trayagent", sys.executable)
    return [os.path.abspath(sys.executable), "-m", "trayagent"]


def _expected(platform: str | None, exe: PathArg, args: Sequence[str]) -> list[str]:
    if exe is None:
        prefix = find_executable(platform)
    elif _kind(platform) == "windows" and ntpath.isabs(str(exe)):
        prefix = [str(exe)]  # a Windows path handled on another OS must not be mangled
    else:
        prefix = [os.path.abspath(os.fspath(exe))]
    return prefix + list(args)


def run_args(config_path: PathArg = None) -> tuple[str, ...]:
    """Arguments after the executable: `run`, plus `--config PATH` for a non-default config.

    enable(), status() and doctor must agree on this, or status reports a mismatch.
    """
    if config_path is None:
        return DEFAULT_ARGS
    path = os.path.abspath(os.path.expanduser(os.fspath(config_path)))
    try:
        from trayagent.paths import default_config_path  # noqa: PLC0415 - avoid an import cycle

        if os.path.abspath(default_config_path()) == path:
            return DEFAULT_ARGS
    except Exception:  # noqa: BLE001 - config is optional here; be explicit instead
        pass
    return (*DEFAULT_ARGS, "--config", path)


def _home(home: PathArg) -> Path:
    return Path(home) if home is not None else Path.home()


def _env(home: object, env: Mapping[str, str] | None) -> Mapping[str, str]:
    # An injected home with no env must not pick up the real XDG_CONFIG_HOME (tests would
    # then write into the user's real autostart directory).
    if env is not None:
        return env
    return {} if home is not None else os.environ


def _problem_for(command: Sequence[str] | None, expected: Sequence[str]) -> str | None:
    """Why an installed command is not the one we would install, or None if it is."""
    if not command:
        return "entry has no command"
    if not os.path.exists(command[0]):
        return f"entry points to a missing executable {command[0]}"
    if list(command) != list(expected):
        return f"entry runs {_display(command)}, expected {_display(expected)}"
    return None


def _display(argv: Sequence[str]) -> str:
    return subprocess.list2cmdline(list(argv)) if os.name == "nt" else _sh_join(argv)


def _sh_join(argv: Sequence[str]) -> str:
    return shlex.join(list(argv))


# --------------------------------------------------------------------------- entries in a file


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically so a crash never leaves a half entry the desktop would choke on."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise AutostartError(f"cannot write {path}: {exc.strerror or exc}") from None


class _FileEntry:
    """A login entry that is one file (XDG, macOS): rewritten only when its bytes would change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def render(self, argv: Sequence[str]) -> bytes:
        raise NotImplementedError

    def read(self, expected: Sequence[str]) -> AutostartStatus:
        raise NotImplementedError

    def install(self, argv: Sequence[str]) -> Path:
        data = self.render(argv)
        try:
            current = self.path.read_bytes()
        except OSError:
            current = None
        if current != data:
            _write_private(self.path, data)
        log.info("autostart enabled: %s runs %s", self.path, _display(argv))
        return self.path

    def remove(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise AutostartError(f"cannot remove {self.path}: {exc.strerror or exc}") from None
        return True


# --------------------------------------------------------------------------- XDG (Linux/BSD)


def xdg_autostart_path(home: PathArg = None, env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/autostart/trayagent.desktop (relative XDG values are ignored per spec)."""
    environ = _env(home, env)
    base = environ.get("XDG_CONFIG_HOME", "")
    config_home = Path(base) if base and os.path.isabs(base) else _home(home) / ".config"
    return config_home / "autostart" / DESKTOP_FILE_NAME


class _XdgEntry(_FileEntry):
    """$XDG_CONFIG_HOME/autostart/trayagent.desktop, honoured by every freedesktop session."""

    def render(self, argv: Sequence[str]) -> bytes:
        return desktop_entry(argv).encode("utf-8")

    def read(self, expected: Sequence[str]) -> AutostartStatus:
        location = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AutostartStatus(False, location, None, False)
        except (OSError, UnicodeDecodeError) as exc:
            return AutostartStatus(False, location, None, False, f"entry unreadable: {exc}")
        entry = read_desktop_entry(text)
        command = entry.get("Exec") or None
        argv: tuple[str, ...] | None
        try:
            argv = tuple(parse_exec(command)) if command else None
        except ValueError:
            argv = None
        if entry.get("Hidden", "").lower() == "true":
            return AutostartStatus(False, location, command, False, "entry present but disabled (Hidden=true)", argv)
        if entry.get("X-GNOME-Autostart-enabled", "true").lower() == "false":
            off = "entry present but disabled (X-GNOME-Autostart-enabled=false)"
            return AutostartStatus(False, location, command, False, off, argv)
        if entry.get("Type", "Application") != "Application":
            return AutostartStatus(False, location, command, False, f"entry has Type={entry.get('Type')}", argv)
        if command and argv is None:
            return AutostartStatus(True, location, command, False, "entry has an unparseable Exec line")
        problem = _problem_for(argv, expected)
        return AutostartStatus(True, location, command, problem is None, problem, argv)


# --------------------------------------------------------------------------- macOS


def launch_agent_path(home: PathArg = None) -> Path:
    return _home(home) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def launch_agent_log(home: PathArg = None) -> Path:
    """launchd's stdout/stderr capture; the agent's own log is separate (logs.py)."""
    return _home(home) / "Library" / "Logs" / APP_NAME / "launchd.log"


def launch_agent(argv: Sequence[str], home: PathArg = None) -> dict[str, object]:
    """The LaunchAgent plist: run once at login in the GUI session, no restart loop."""
    log_file = str(launch_agent_log(home))
    return {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(argv),
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
        "StandardOutPath": log_file,
        "StandardErrorPath": log_file,
    }


class _LaunchAgentEntry(_FileEntry):
    """~/Library/LaunchAgents/com.trayagent.agent.plist, loaded by launchd at login."""

    def __init__(self, home: PathArg) -> None:
        super().__init__(launch_agent_path(home))
        self._home = home

    def render(self, argv: Sequence[str]) -> bytes:
        logs = launch_agent_log(self._home).parent
        try:
            logs.mkdir(parents=True, exist_ok=True)  # launchd won't create it
        except OSError as exc:
            log.warning("cannot create %s: %s", logs, exc)
        return plistlib.dumps(launch_agent(argv, self._home), fmt=plistlib.FMT_XML, sort_keys=True)

    def read(self, expected: Sequence[str]) -> AutostartStatus:
        location = str(self.path)
        try:
            with self.path.open("rb") as fh:
                data = plistlib.load(fh)
        except FileNotFoundError:
            return AutostartStatus(False, location, None, False)
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            return AutostartStatus(False, location, None, False, f"entry unreadable: {exc}")
        if not isinstance(data, dict):
            return AutostartStatus(False, location, None, False, "entry is not a property-list dictionary")
        args = data.get("ProgramArguments")
        argv: tuple[str, ...] | None
        if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
            argv = tuple(args)
        elif isinstance(data.get("Program"), str):
            argv = (data["Program"],)
        else:
            argv = None
        command = _sh_join(argv) if argv else None
        if data.get("Disabled") is True:
            return AutostartStatus(False, location, command, False, "entry present but disabled (Disabled=true)", argv)
        if data.get("RunAtLoad") is not True:
            return AutostartStatus(False, location, command, False, "entry present but RunAtLoad is not true", argv)
        problem = _problem_for(argv, expected)
        return AutostartStatus(True, location, command, problem is None, problem, argv)


# --------------------------------------------------------------------------- Windows


class _RunKeyEntry:
    """The trayagent value under HKCU\\...\\Run, which Explorer runs at login."""

    location = f"HKCU\\{RUN_KEY_PATH}\\{RUN_VALUE_NAME}"

    def __init__(self, registry: RunKey | None) -> None:
        self._given = registry

    def _key(self) -> RunKey:
        if self._given is not None:
            return self._given
        try:
            return WinregRunKey()
        except ImportError as exc:
            raise AutostartError("the Windows registry is not available on this system") from exc

    def install(self, argv: Sequence[str]) -> str:
        key = self._key()
        value = subprocess.list2cmdline(list(argv))
        try:
            if key.get(RUN_VALUE_NAME) != value:
                key.set(RUN_VALUE_NAME, value)
        except OSError as exc:
            raise AutostartError(f"cannot write HKCU\\{RUN_KEY_PATH}: {exc}") from None
        log.info("autostart enabled: %s = %s", self.location, value)
        return self.location

    def remove(self) -> bool:
        key = self._key()
        try:
            return key.delete(RUN_VALUE_NAME)
        except OSError as exc:
            raise AutostartError(f"cannot change HKCU\\{RUN_KEY_PATH}: {exc}") from None

    def read(self, expected: Sequence[str]) -> AutostartStatus:
        value = self._key().get(RUN_VALUE_NAME)
        if value is None:
            return AutostartStatus(False, self.location, None, False)
        argv = tuple(parse_windows_command(value)) or None
        problem = _problem_for(argv, expected)
        return AutostartStatus(True, self.location, value, problem is None, problem, argv)


# --------------------------------------------------------------------------- public API


class _Entry(Protocol):
    """One platform's login entry: what enable(), disable() and status() do there."""

    def install(self, argv: Sequence[str]) -> Path | str: ...

    def remove(self) -> bool: ...

    def read(self, expected: Sequence[str]) -> AutostartStatus: ...


def _entry(platform: str | None, home: PathArg, env: Mapping[str, str] | None,
           registry: RunKey | None) -> _Entry:
    """The login entry of this platform: the one place the platforms part ways."""
    kind = _kind(platform)
    if kind == "windows":
        return _RunKeyEntry(registry)
    if kind == "macos":
        return _LaunchAgentEntry(home)
    return _XdgEntry(xdg_autostart_path(home, env))


def enable(platform: str | None = None, home: PathArg = None, exe: PathArg = None, *,
           args: Sequence[str] = DEFAULT_ARGS, env: Mapping[str, str] | None = None,
           registry: RunKey | None = None) -> Path | str:
    """Install (or repair) the login entry; return where it lives. Idempotent.

    `args` follow the executable (default `run`); pass e.g. ("--config", p, "run") when a
    non-default config is in use so the login session starts the same agent.
    Raises AutostartError when the entry cannot be written.
    """
    argv = _expected(platform, exe, args)
    return _entry(platform, home, env, registry).install(argv)


def disable(platform: str | None = None, home: PathArg = None, *, env: Mapping[str, str] | None = None,
            registry: RunKey | None = None) -> bool:
    """Remove the login entry; True if one was removed, False if there was none."""
    removed = _entry(platform, home, env, registry).remove()
    log.info("autostart %s", "disabled" if removed else "was not enabled")
    return removed


def status(platform: str | None = None, home: PathArg = None, exe: PathArg = None, *,
           args: Sequence[str] = DEFAULT_ARGS, env: Mapping[str, str] | None = None,
           registry: RunKey | None = None) -> AutostartStatus:
    """Read back what is installed and compare it with what enable() would install."""
    expected = _expected(platform, exe, args)
    return _entry(platform, home, env, registry).read(expected)


__all__ = [
    "AutostartError", "AutostartStatus", "RunKey", "WinregRunKey", "disable", "enable",
    "find_executable", "run_args", "status",
]
