"""One line where a line is due (issue 14, item 8): the command line as a user meets it.

A damaged or foreign state database, a state directory that cannot be written, numbers that
would overflow later, a URL with a password in it, the state directory's mode under any
umask, and the warning about a config readable by others going through logging.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from agentproc import ROOT, AgentProcess, write_config
from conftest import API_KEY

from trayagent.config import Config, SlskdConfig, load_config
from trayagent.errors import ConfigError
from trayagent.store import Store


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None, cmd: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = AgentProcess(tmp_path / "c.toml", tmp_path / "state", home).env()
    base.update(env or {})
    return subprocess.run([*cmd, sys.executable, "-m", "trayagent", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=30, preexec_fn=preexec)


def one_line_error(r: subprocess.CompletedProcess[str], code: int, *needles: str,
                   prefix: str = "trayagent: error: ") -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(prefix), r.stderr
    for needle in needles:
        assert needle.lower() in r.stderr.lower(), r.stderr


def state_files(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """This instance's state path, and the single file older versions used."""
    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir(exist_ok=True)
    return list(dict.fromkeys([Config(slskd=SlskdConfig(url=url)).state_path, tmp_path / "state" / "trayagent.sqlite3"]))


@pytest.mark.parametrize("command", [("clear",), ("run", "--headless", "--json")])
def test_damaged_state_database_is_one_line(tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch,
                                            command: tuple[str, ...]) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    for path in state_files(tmp_path, sim.url, monkeypatch):
        path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    r = cli(tmp_path, *command, "--config", str(cfg))
    one_line_error(r, 1, "state database", "damaged", "move it aside")


def test_sync_on_a_damaged_state_database_is_one_line(tmp_path: Path, sim: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync keeps its progress in the same file: a damaged one is named, with what to do."""
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    playlist = tmp_path / "p.m3u"
    playlist.write_text("Artist - Title.mp3\n")
    paths = state_files(tmp_path, sim.url, monkeypatch)
    for path in paths:
        path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    r = cli(tmp_path, "sync", str(playlist), "--config", str(cfg))
    # the sync's own errors (another sync running, its state file) speak as `trayagent sync:`
    one_line_error(r, 1, "state database", str(paths[0]), "damaged", "move it aside", prefix="trayagent sync: ")


@pytest.mark.parametrize("version,needle", [("abc", "unknown schema version"), ("99", "newer trayagent")])
def test_unknown_schema_version_is_one_line(tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch,
                                            version: str, needle: str) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    for path in state_files(tmp_path, sim.url, monkeypatch):
        Store(path).close()
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET v=? WHERE k='schema'", (version,))
        db.commit()
        db.close()
    one_line_error(cli(tmp_path, "clear", "--config", str(cfg)), 1, needle)


@pytest.mark.parametrize("existing", [False, True], ids=["empty", "with-state"])
def test_read_only_state_directory_is_one_line(tmp_path: Path, sim: Any, existing: bool) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    state = tmp_path / "state"
    if existing:
        assert cli(tmp_path, "clear", "--config", str(cfg)).returncode == 0
        for side in state.glob("*-wal"):
            side.unlink()  # as after a clean stop: SQLite must create it again
    else:
        state.mkdir()
    state.chmod(0o500)
    drop: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that allow it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv")
        caps = "-dac_override,-dac_read_search,-fowner"
        drop = (setpriv, "--bounding-set", caps, "--inh-caps", caps)
    try:
        r = cli(tmp_path, "run", "--headless", "--json", "--config", str(cfg), cmd=drop)
    finally:
        state.chmod(0o700)
    one_line_error(r, 1, str(state))


def test_status_on_a_broken_database_says_so_in_one_line_and_still_shows_slskd(
        tmp_path: Path, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    sim.add_download("alice", "x\\song.flac", 100, state="InProgress")
    for path in state_files(tmp_path, sim.url, monkeypatch):
        Store(path).close()
        db = sqlite3.connect(path)
        db.execute("DROP TABLE history")
        db.commit()
        db.close()
    r = cli(tmp_path, "status", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 active of 1 listed by slskd")
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("trayagent: WARNING: cannot read the state database"), r.stderr


@pytest.mark.parametrize(
    "section,key,value,needle",
    [
        ("slskd", "timeout", "1e10", "[slskd] timeout must be a number > 0 and at most 600"),
        ("poll", "active_interval", "1e14", "[poll] active_interval must be a number > 0 and at most 86400 (a day)"),
        ("poll", "idle_interval", "1e14", "[poll] idle_interval must be a number > 0 and at most 86400 (a day)"),
        ("poll", "max_backoff", "1e14", "[poll] max_backoff must be a number > 0 and at most 86400 (a day)"),
        ("cleanup", "interval", "1e14", "[cleanup] interval must be a number > 0 and at most 604800 (a week)"),
        ("cleanup", "min_age", "1e14", "[cleanup] min_age must be a number >= 0 and at most 31536000 (a year)"),
        ("tracking", "restart_window", "1e14", "[tracking] restart_window must be a number >= 0 and at most 604800"),
        ("tracking", "grace_polls", "10000000000", "[tracking] grace_polls must be a whole number >= 1 and at most 1000"),
    ],
)
def test_numbers_have_an_upper_bound_named_in_the_message(tmp_path: Path, section: str, key: str, value: str,
                                                          needle: str) -> None:
    path = tmp_path / "c.toml"
    extra = f"{key} = {value}\n" if section == "slskd" else f"[{section}]\n{key} = {value}\n"
    path.write_text(f'[slskd]\nurl = "http://127.0.0.1:5030"\n{extra}')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert needle in str(info.value)


def test_huge_timeout_is_a_one_line_error_not_a_crash_later(tmp_path: Path, sim: Any) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY, slskd={"timeout": 1e10})
    one_line_error(cli(tmp_path, "status", "--config", str(cfg)), 2, "at most 600")


@pytest.mark.parametrize("url", [
    "http://alice:s3cret-pw@127.0.0.1:notaport",
    "http://alice:s3cret-pw/with/slash@127.0.0.1:5030",
    "ftp://alice:s3cret-pw@127.0.0.1",
    "http://alice:s3cret-pw@127.0.0.1:5030/ with space",
    "http://alice:s3cret-pw@127.0.0.1:5030/?q=1",
])
def test_url_error_never_shows_the_password(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[slskd]\nurl = "{url}"\n')
    cfg.chmod(0o600)
    for r in (cli(tmp_path, "status", "--config", str(cfg)),
              cli(tmp_path, "status", env={"SLSKD_URL": url, "SLSKD_API_KEY": API_KEY})):
        one_line_error(r, 2, "url")
        assert "s3cret" not in r.stderr, r.stderr


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_state_directory_is_created_0700_whatever_the_umask(tmp_path: Path, sim: Any, umask: int) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    r = cli(tmp_path, "clear", "--config", str(cfg), preexec=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    for f in (tmp_path / "state").iterdir():
        assert f.stat().st_mode & 0o077 == 0, f


def test_config_readable_by_others_is_warned_through_logging(tmp_path: Path, sim: Any) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    cfg.chmod(0o644)
    r = cli(tmp_path, "status", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "readable by others" in line]
    assert len(warned) == 1 and warned[0].startswith("trayagent: WARNING: "), r.stderr
    log_file = tmp_path / "home" / "state" / "trayagent" / "log" / "trayagent.log"
    assert "readable by others" in log_file.read_text()
    assert API_KEY not in r.stderr + log_file.read_text()


def test_every_error_the_user_reads_is_in_the_one_hierarchy() -> None:
    """Issue 11.4: the CLI shows a TrayagentError's message as it is and exits with its code."""
    from trayagent.desktop.autostart import AutostartError
    from trayagent.errors import EXIT_FAIL, EXIT_USAGE, ConfigError, StoreError, TrayagentError
    from trayagent.lock import AlreadyRunning, LockError
    from trayagent.slskd.errors import SlskdError
    from trayagent.sync.playlist import PlaylistError
    from trayagent.sync.store import SyncBusy

    codes = {cls: cls.exit_code for cls in (AutostartError, ConfigError, PlaylistError, StoreError, LockError,
                                             AlreadyRunning, SlskdError, SyncBusy)}
    assert all(issubclass(cls, TrayagentError) for cls in codes)
    assert {cls for cls, code in codes.items() if code == EXIT_USAGE} == {AutostartError, ConfigError, PlaylistError}
    assert codes[StoreError] == codes[SlskdError] == EXIT_FAIL
