"""InstanceLock: one agent per config, across real processes, surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trayagent.lock import AlreadyRunning, InstanceLock, lock_name

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses SIGKILL and flock semantics")

HOLDER = textwrap.dedent(
    """
    import sys, time
    from trayagent.lock import InstanceLock
    lock = InstanceLock(sys.argv[1], sys.argv[2])
    lock.acquire()
    print("locked", flush=True)
    if sys.argv[3] == "hold":
        time.sleep(60)
    else:
        lock.release()
        print("released", flush=True)
    """
)


def start_holder(state: Path, config: Path, mode: str = "hold") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), str(config), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "locked", proc.stderr.read() if proc.stderr else line
    return proc


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "cfg" / "config.toml"
    config.parent.mkdir()
    config.write_text("")
    return tmp_path / "state", config


def test_second_process_sees_holder_pid(paths: tuple[Path, Path]) -> None:
    state, config = paths
    holder = start_holder(state, config)
    try:
        with pytest.raises(AlreadyRunning) as info:
            InstanceLock(state, config).acquire()
        assert info.value.pid == holder.pid
        assert str(info.value) == f"already running (pid {holder.pid})"
    finally:
        holder.kill()
        holder.wait()


def test_sigkilled_holder_is_taken_over(paths: tuple[Path, Path]) -> None:
    state, config = paths
    holder = start_holder(state, config)
    lock = InstanceLock(state, config)
    with pytest.raises(AlreadyRunning):
        lock.acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # The stale file still names the dead process, but the OS dropped its lock.
    assert lock.holder_pid() == holder.pid
    lock.acquire()
    try:
        assert lock.held
        assert lock.holder_pid() == os.getpid()
    finally:
        lock.release()


def test_clean_release_lets_the_next_one_in(paths: tuple[Path, Path]) -> None:
    state, config = paths
    proc = subprocess.run(
        [sys.executable, "-c", HOLDER, str(state), str(config), "release"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert proc.stdout.split() == ["locked", "released"]
    with InstanceLock(state, config) as lock:
        assert lock.holder_pid() == os.getpid()
    assert lock.holder_pid() is None  # release clears the pid; the file stays
    assert lock.path.exists()


def test_same_config_twice_in_one_process_conflicts(paths: tuple[Path, Path]) -> None:
    state, config = paths
    with InstanceLock(state, config):
        with pytest.raises(AlreadyRunning) as info:
            InstanceLock(state, config).acquire()
        assert info.value.pid == os.getpid()


def test_different_configs_do_not_conflict(paths: tuple[Path, Path], tmp_path: Path) -> None:
    state, config = paths
    other = tmp_path / "other.toml"
    with InstanceLock(state, config) as a, InstanceLock(state, other) as b:
        assert a.path != b.path
        assert a.held and b.held


def test_name_comes_from_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "config.toml"
    monkeypatch.chdir(tmp_path)
    assert lock_name("config.toml") == lock_name(target)
    assert lock_name(tmp_path / "sub" / ".." / "config.toml") == lock_name(target)
    link = tmp_path / "link.toml"
    target.write_text("")
    link.symlink_to(target)
    assert lock_name(link) == lock_name(target)
    assert lock_name(target).startswith("trayagent-") and lock_name(target).endswith(".lock")


def test_acquire_is_reentrant_and_release_idempotent(paths: tuple[Path, Path]) -> None:
    state, config = paths
    lock = InstanceLock(state, config)
    lock.acquire()
    lock.acquire()
    lock.release()
    lock.release()
    assert not lock.held
    with InstanceLock(state, config):
        pass


def test_lock_file_is_private(paths: tuple[Path, Path]) -> None:
    state, config = paths
    with InstanceLock(state, config) as lock:
        assert lock.path.stat().st_mode & 0o077 == 0


def test_state_lock_sits_beside_its_database_and_is_one_per_database(tmp_path: Path) -> None:
    db = tmp_path / "state" / "slskd-0123456789abcdef.sqlite3"
    with InstanceLock.for_state(db) as lock:
        assert lock.path == db.with_name(db.name + ".lock")
        with pytest.raises(AlreadyRunning):
            InstanceLock.for_state(db).acquire()
        with InstanceLock.for_state(db.with_name("slskd-fedcba9876543210.sqlite3")):
            pass  # another slskd instance: another lock
