"""Autostart on all three platforms, in a temporary home, with a fake Windows registry."""

from __future__ import annotations

import os
import plistlib
import subprocess
from pathlib import Path

import pytest

from trayagent.desktop import autostart
from trayagent.desktop.autostart_formats import (
    format_exec,
    parse_exec,
    parse_windows_command,
    read_desktop_entry,
)


class FakeRunKey:
    """In-memory HKCU\\...\\Run; counts writes so idempotence is observable."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.writes += 1
        self.values[name] = value

    def delete(self, name: str) -> bool:
        return self.values.pop(name, None) is not None


def make_exe(directory: Path, name: str = "trayagent") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    return make_exe(tmp_path / "venv" / "bin")


# --------------------------------------------------------------------------- XDG


def test_xdg_enable_status_disable(home: Path, exe: Path) -> None:
    path = autostart.enable("linux", home, exe, env={})
    assert path == home / ".config" / "autostart" / "trayagent.desktop"
    entry = read_desktop_entry(path.read_text())
    assert entry["Type"] == "Application"
    assert entry["Exec"] == f"{exe} run"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    assert "Hidden" not in entry

    st = autostart.status("linux", home, exe, env={})
    assert st.installed and st.matches and st.problem is None
    assert st.location == str(path)
    assert st.command == f"{exe} run"
    assert st.argv == (str(exe), "run")

    assert autostart.disable("linux", home, env={}) is True
    assert not path.exists()
    assert autostart.disable("linux", home, env={}) is False
    st = autostart.status("linux", home, exe, env={})
    assert not st.installed and not st.matches and st.command is None and st.problem is None


def test_xdg_enable_is_idempotent(home: Path, exe: Path) -> None:
    path = Path(autostart.enable("linux", home, exe, env={}))
    first = path.read_bytes()
    os.utime(path, (1_000_000, 1_000_000))
    autostart.enable("linux", home, exe, env={})
    assert path.read_bytes() == first
    assert path.stat().st_mtime == 1_000_000  # unchanged content is not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["trayagent.desktop"]


def test_xdg_config_home_is_honoured_and_relative_ignored(home: Path, exe: Path, tmp_path: Path) -> None:
    xdg = tmp_path / "xdgconf"
    path = autostart.enable("linux", home, exe, env={"XDG_CONFIG_HOME": str(xdg)})
    assert path == xdg / "autostart" / "trayagent.desktop"
    path = autostart.enable("freebsd", home, exe, env={"XDG_CONFIG_HOME": "relative/dir"})
    assert path == home / ".config" / "autostart" / "trayagent.desktop"


def test_injected_home_does_not_read_the_real_environment(
    home: Path, exe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real-xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(real))
    path = autostart.enable("linux", home, exe)
    assert path == home / ".config" / "autostart" / "trayagent.desktop"
    assert not real.exists()


def test_xdg_quotes_awkward_paths_per_spec(home: Path, tmp_path: Path) -> None:
    odd = make_exe(tmp_path / "my apps" / 'we"ird $dir\\50%')
    path = autostart.enable("linux", home, odd, env={})
    exec_line = read_desktop_entry(Path(path).read_text())["Exec"]
    # quoted; " $ \ escaped inside quotes, then \ doubled by string escaping; % as %%
    assert exec_line.startswith('"') and exec_line.endswith('" run')
    assert '\\\\"' in exec_line and "\\\\$" in exec_line and "\\\\\\\\" in exec_line and "%%" in exec_line
    assert parse_exec(exec_line) == [str(odd), "run"]
    st = autostart.status("linux", home, odd, env={})
    assert st.installed and st.matches


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/trayagent", "run"],
        ["/opt/a b/trayagent", "run", "--config", "/home/u/my config.toml"],
        ["/x/`tick`/$HOME/\\back", "run"],
        ["/p/100%/trayagent", "run", "it's"],
        ["/tab\there", "run", ""],
    ],
)
def test_exec_round_trip(argv: list[str]) -> None:
    assert parse_exec(format_exec(argv)) == argv


def test_parse_exec_drops_field_codes() -> None:
    assert parse_exec("trayagent run %U") == ["trayagent", "run"]
    assert parse_exec('"/a b/trayagent" run %%x') == ["/a b/trayagent", "run", "%x"]
    with pytest.raises(ValueError):
        parse_exec('"/unterminated run')


def test_xdg_hidden_true_is_reported_and_repaired(home: Path, exe: Path) -> None:
    path = Path(autostart.enable("linux", home, exe, env={}))
    path.write_text(path.read_text() + "Hidden=true\n")
    st = autostart.status("linux", home, exe, env={})
    assert not st.installed and not st.matches
    assert "Hidden=true" in (st.problem or "")
    assert st.argv == (str(exe), "run")  # still tells what it would run

    autostart.enable("linux", home, exe, env={})
    assert "Hidden" not in read_desktop_entry(path.read_text())
    assert autostart.status("linux", home, exe, env={}).matches


def test_xdg_gnome_disabled_is_not_installed(home: Path, exe: Path) -> None:
    path = Path(autostart.enable("linux", home, exe, env={}))
    path.write_text(path.read_text().replace("X-GNOME-Autostart-enabled=true", "X-GNOME-Autostart-enabled=false"))
    st = autostart.status("linux", home, exe, env={})
    assert not st.installed and "X-GNOME-Autostart-enabled=false" in (st.problem or "")


def test_xdg_status_reports_a_different_executable(home: Path, exe: Path, tmp_path: Path) -> None:
    other = make_exe(tmp_path / "other-venv" / "bin")
    autostart.enable("linux", home, other, env={})
    st = autostart.status("linux", home, exe, env={})
    assert st.installed and not st.matches
    assert str(other) in (st.problem or "") and str(exe) in (st.problem or "")
    assert st.argv == (str(other), "run")


def test_xdg_status_reports_a_missing_executable(home: Path, exe: Path) -> None:
    autostart.enable("linux", home, exe, env={})
    exe.unlink()
    st = autostart.status("linux", home, exe, env={})
    assert st.installed and not st.matches
    assert "missing executable" in (st.problem or "")


def test_xdg_status_reports_hand_edited_arguments(home: Path, exe: Path) -> None:
    path = Path(autostart.enable("linux", home, exe, env={}))
    path.write_text(path.read_text().replace(f"Exec={exe} run", f"Exec={exe} run --headless"))
    st = autostart.status("linux", home, exe, env={})
    assert st.installed and not st.matches and "--headless" in (st.problem or "")


def test_args_carry_a_non_default_config(home: Path, exe: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "my config.toml"
    args = autostart.run_args(cfg)
    assert args == ("run", "--config", str(cfg))
    autostart.enable("linux", home, exe, args=args, env={})
    assert autostart.status("linux", home, exe, args=args, env={}).matches
    assert not autostart.status("linux", home, exe, env={}).matches  # plain `run` is a different agent
    assert autostart.run_args(None) == ("run",)


def test_default_executable_is_the_installed_script(home: Path) -> None:
    path = autostart.enable("linux", home, env={})
    argv = parse_exec(read_desktop_entry(Path(path).read_text())["Exec"])
    assert os.path.isabs(argv[0]) and os.path.exists(argv[0])
    assert argv[-1] == "run"
    assert autostart.status("linux", home, env={}).matches


# --------------------------------------------------------------------------- macOS


def test_macos_enable_status_disable(home: Path, exe: Path) -> None:
    path = Path(autostart.enable("darwin", home, exe))
    assert path == home / "Library" / "LaunchAgents" / "com.trayagent.agent.plist"
    data = plistlib.loads(path.read_bytes())
    assert data["Label"] == "com.trayagent.agent"
    assert data["ProgramArguments"] == [str(exe), "run"]
    assert data["RunAtLoad"] is True and data["KeepAlive"] is False
    log_path = Path(data["StandardOutPath"])
    assert data["StandardErrorPath"] == data["StandardOutPath"]
    assert log_path.is_relative_to(home / "Library" / "Logs") and log_path.parent.is_dir()

    st = autostart.status("darwin", home, exe)
    assert st.installed and st.matches and st.location == str(path)

    before = path.read_bytes()
    os.utime(path, (1_000_000, 1_000_000))
    autostart.enable("darwin", home, exe)
    assert path.read_bytes() == before and path.stat().st_mtime == 1_000_000

    assert autostart.disable("darwin", home) is True
    assert autostart.disable("darwin", home) is False
    assert not autostart.status("darwin", home, exe).installed


def test_macos_status_truthful_after_edits(home: Path, exe: Path, tmp_path: Path) -> None:
    path = Path(autostart.enable("darwin", home, exe))
    data = plistlib.loads(path.read_bytes())
    data["Disabled"] = True
    path.write_bytes(plistlib.dumps(data))
    st = autostart.status("darwin", home, exe)
    assert not st.installed and "Disabled" in (st.problem or "")

    other = make_exe(tmp_path / "elsewhere")
    del data["Disabled"]
    data["ProgramArguments"] = [str(other), "run"]
    path.write_bytes(plistlib.dumps(data))
    st = autostart.status("darwin", home, exe)
    assert st.installed and not st.matches and str(other) in (st.problem or "")

    path.write_bytes(b"not a plist")
    st = autostart.status("darwin", home, exe)
    assert not st.installed and "unreadable" in (st.problem or "")
    autostart.enable("darwin", home, exe)  # repairs a corrupt entry
    assert autostart.status("darwin", home, exe).matches


# --------------------------------------------------------------------------- Windows


def test_windows_enable_status_disable(home: Path, tmp_path: Path) -> None:
    exe = make_exe(tmp_path / "Program Files" / "Python" / "Scripts", "trayagent.exe")
    reg = FakeRunKey()
    where = autostart.enable("win32", home, exe, registry=reg)
    assert where == r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\trayagent"
    assert reg.values["trayagent"] == f'"{exe}" run'
    st = autostart.status("win32", home, exe, registry=reg)
    assert st.installed and st.matches and st.command == f'"{exe}" run'

    autostart.enable("win32", home, exe, registry=reg)
    assert reg.writes == 1  # idempotent: no rewrite

    reg.values["trayagent"] = r'"C:\Old Python\Scripts\trayagent.exe" run'
    st = autostart.status("win32", home, exe, registry=reg)
    assert st.installed and not st.matches
    assert "missing executable" in (st.problem or "")
    assert st.argv == (r"C:\Old Python\Scripts\trayagent.exe", "run")

    assert autostart.disable("win32", home, registry=reg) is True
    assert autostart.disable("win32", home, registry=reg) is False
    assert not autostart.status("win32", home, exe, registry=reg).installed


def test_windows_keeps_windows_paths_intact(home: Path) -> None:
    reg = FakeRunKey()
    autostart.enable("win32", home, r"C:\Users\Ann Lee\venv\Scripts\trayagent.exe", registry=reg)
    assert reg.values["trayagent"] == r'"C:\Users\Ann Lee\venv\Scripts\trayagent.exe" run'


@pytest.mark.parametrize(
    "argv",
    [
        [r"C:\Program Files\trayagent.exe", "run"],
        [r"C:\p\trayagent.exe", "run", "--config", r"C:\Users\x\my cfg\\"],
        ["a\\\\b", 'q"uote', "", "tab\there", 'end\\"'],
    ],
)
def test_windows_command_round_trip(argv: list[str]) -> None:
    assert parse_windows_command(subprocess.list2cmdline(argv)) == argv


@pytest.mark.parametrize(
    "line,argv",
    [  # Microsoft's examples for parsing C command-line arguments, plus quotes doubled inside quotes
        ('"abc" d e', ["abc", "d", "e"]),
        (r'a\\\b d"e f"g h', ["a\\\\\\b", "de fg", "h"]),
        (r'a\\\"b c d', ['a\\"b', "c", "d"]),
        (r'a\\\\"b c" d e', ["a\\\\b c", "d", "e"]),
        ('"" x', ["", "x"]),
        ('"say ""hi""" y', ['say "hi"', "y"]),
    ],
)
def test_windows_command_lines_split_like_the_c_runtime(line: str, argv: list[str]) -> None:
    """Lines not written by list2cmdline (a user's own Run value) are read the way Windows does."""
    assert parse_windows_command(line) == argv


# --------------------------------------------------------------------------- misc


def test_status_describe() -> None:
    ok = autostart.AutostartStatus(True, "/x", "/t run", True)
    assert ok.describe() == "enabled (/x)"
    off = autostart.AutostartStatus(False, "/x", None, False)
    assert off.describe() == "not enabled (/x)"
    bad = autostart.AutostartStatus(True, "/x", "/t run", False, "entry points to a missing executable /t")
    assert bad.describe().startswith("entry points to a missing executable")


def test_unwritable_location_raises_autostart_error(home: Path, exe: Path) -> None:
    (home / ".config").write_text("a file where the directory should be")
    with pytest.raises(autostart.AutostartError, match="cannot write"):
        autostart.enable("linux", home, exe, env={})


# --------------------------------------------------------------------------- packaging files

PACKAGING = Path(__file__).resolve().parent.parent / "packaging"


def test_launch_agent_template_matches_what_enable_writes() -> None:
    template = plistlib.loads((PACKAGING / "com.trayagent.agent.plist").read_bytes())
    assert template == autostart.launch_agent(["@TRAYAGENT@", "run"], "@HOME@")


def test_systemd_unit_is_headless_and_secret_free() -> None:
    text = (PACKAGING / "trayagent.service").read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines() if "=" in ln and ln[0] != "#"}
    assert lines["ExecStart"] == "%h/.local/bin/trayagent run --headless"
    assert lines["Restart"] == "on-failure"
    assert lines["EnvironmentFile"] == "-%h/.config/trayagent/env"
    assert lines["WantedBy"] == "default.target"
    assert "API_KEY" not in "".join(v for k, v in lines.items() if k != "EnvironmentFile")


def test_application_launcher_parses() -> None:
    entry = read_desktop_entry((PACKAGING / "trayagent.desktop").read_text())
    assert entry["Type"] == "Application"
    assert parse_exec(entry["Exec"]) == ["trayagent", "run"]
