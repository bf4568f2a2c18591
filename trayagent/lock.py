"""One agent per state database: an OS-level lock on a small file in the state directory.

The agent locks its state database's own name (``slskd-<key>.sqlite3.lock``), and the state
is keyed by the slskd instance, so two agents can never share a state however their configs
are spelt (a hard link, an environment-only config started from two directories), while two
slskd instances are watched side by side. `lock_name` keys a lock by a config path instead.

The lock is an advisory kernel lock (flock on POSIX, msvcrt.locking on Windows), not the
mere existence of a pid file, so a holder that is SIGKILLed or crashes releases it the
moment the OS closes its descriptors; the next start simply takes it over. The pid is
written into the file only so the loser can say who is running.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from trayagent.paths import make_private_dir
from trayagent.errors import TrayagentError

log = logging.getLogger(__name__)

#: Windows locks a byte range and a locked range cannot be read by others, so the lock
#: byte sits well past the pid text.
_WIN_LOCK_OFFSET = 4096
#: How long a loser waits for a fresh holder to finish writing its pid.
_PID_WAIT = 0.5


class AlreadyRunning(TrayagentError):
    """Another live process holds the lock for this state."""

    def __init__(self, pid: int | None, path: Path) -> None:
        self.pid = pid
        self.path = path
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"already running ({who})")


def lock_name(config_path: str | os.PathLike[str]) -> str:
    """File name derived from the resolved config path, so two configs run side by side."""
    resolved = os.path.normcase(str(Path(config_path).expanduser().resolve(strict=False)))
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"trayagent-{digest}.lock"


class LockError(TrayagentError):
    """The lock file cannot be created or locked (a read-only state directory, say)."""


class InstanceLock:
    """Single-instance lock; use as a context manager or acquire/release.

    Keyed by a config path (`lock_name`), or by a file name given as `name`: see `for_state`.
    """

    def __init__(self, state_dir: str | os.PathLike[str], config_path: str | os.PathLike[str] | None = None,
                 *, name: str | None = None) -> None:
        if name is None and config_path is None:
            raise ValueError("InstanceLock needs a config path or a lock file name")
        self.state_dir = Path(state_dir)
        self.config_path = Path(config_path) if config_path is not None else None
        self.path = self.state_dir / (name if name is not None else lock_name(config_path or ""))
        self._fd: int | None = None

    @classmethod
    def for_state(cls, state_path: Path) -> InstanceLock:
        """The lock of one state database, beside it: one agent (or `clear`) per database."""
        return cls(state_path.parent, name=state_path.name + ".lock")

    @classmethod
    def for_sync(cls, state_path: Path) -> InstanceLock:
        """The playlist sync's lock on one state file: one sync at a time (CLI or tray), beside an agent."""
        return cls(state_path.parent, name=state_path.name + ".sync.lock")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning(pid). A no-op if this object holds it."""
        if self._fd is not None:
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            make_private_dir(self.state_dir)
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise LockError(f"cannot create the lock file {self.path}: {exc.strerror or exc}; "
                            f"check that {self.state_dir} is a directory you can write") from None
        try:
            if not _try_lock(fd):
                raise AlreadyRunning(self._read_pid(fd), self.path)
            _write_pid(fd, os.getpid())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        log.debug("instance lock %s acquired (pid %d)", self.path, os.getpid())

    def release(self) -> None:
        """Clear the pid and drop the lock. The file stays: unlinking it would let two
        processes lock different inodes of the same name."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            _unlock(fd)
        except OSError as exc:  # closing the descriptor below releases it anyway
            log.debug("unlock %s: %s", self.path, exc)
        os.close(fd)
        log.debug("instance lock %s released", self.path)

    def holder_pid(self) -> int | None:
        """The pid recorded in the lock file (whoever wrote it last), if any."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        return _parse_pid(text)

    def _read_pid(self, fd: int) -> int | None:
        # The holder writes its pid right after locking; give it a moment if we raced it.
        deadline = time.monotonic() + _PID_WAIT
        while True:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                pid = _parse_pid(os.read(fd, 64).decode("ascii", "replace"))
            except OSError:
                pid = None
            if pid is not None or time.monotonic() >= deadline:
                return pid
            time.sleep(0.02)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _parse_pid(text: str) -> int | None:
    first = text.strip().split("\n", 1)[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def _write_pid(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{pid}\n".encode("ascii"))
    try:
        os.fsync(fd)
    except OSError:
        pass


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


__all__ = ["AlreadyRunning", "InstanceLock", "LockError", "lock_name"]
