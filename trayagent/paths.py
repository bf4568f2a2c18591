"""Where trayagent keeps its files: the config file, the per-instance state databases, the log.

One module owns every location so the config, the logs, the lock and the store agree on them
without importing each other (the config needs the log redactor, the log needs its directory).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import platformdirs

APP_NAME = "trayagent"
CONFIG_FILE_NAME = "config.toml"
#: The single state database of versions before state was kept per slskd instance.
STATE_FILE_NAME = "trayagent.sqlite3"
STATE_DIR_ENV = "TRAYAGENT_STATE_DIR"


def default_config_path() -> Path:
    """Where the config file lives by default (platformdirs user config dir)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE_NAME


def state_dir() -> Path:
    """Directory for the agent's database; TRAYAGENT_STATE_DIR overrides (used by tests)."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    """Directory for the rotating log file (platformdirs user log dir, XDG honoured)."""
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def make_private_dir(directory: Path) -> Path:
    """Create a directory 0700 whatever the umask (it holds download history and locks).

    mkdir's mode is masked by the umask (0700 & ~0777 is 0000), so a directory created here
    gets its mode set explicitly; one that already exists is left as the user made it.
    """
    if not directory.is_dir():
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    return directory


def write_private_file(target: Path, data: bytes) -> None:
    """Replace `target` by `data` atomically, the file 0600 from its creation; raises OSError.

    The config holds secrets: written under a temporary name opened O_EXCL|O_NOFOLLOW with
    mode 0600, fsynced, then renamed over the target, so no reader ever sees a half file
    nor, for an instant, a world-readable one. A failure leaves the old file as it was.
    """
    parent = make_private_dir(target.parent)
    tmp = parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; not possible (nor needed) on every platform."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def normalized_slskd_url(url: str) -> str:
    """host:port/base of an slskd URL: one spelling per slskd instance.

    Case of the host, a default port written out or not, trailing or doubled slashes and
    the scheme (one port serves one scheme) do not make another instance.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(scheme, 0)
    path = quote(unquote(re.sub("/+", "/", parts.path)), safe="/:@!$&'()*+,;=-._~").rstrip("/")
    return f"{host}:{port}{path}"


def instance_key(url: str) -> str:
    """A short, file-name-safe key of the slskd instance a URL points at."""
    return hashlib.sha256(normalized_slskd_url(url).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def instance_state_path(url: str) -> Path:
    """The state database of one slskd instance: two instances, two histories, two agents."""
    return state_dir() / f"slskd-{instance_key(url)}.sqlite3"


def legacy_state_path() -> Path:
    """Where versions before per-instance state kept their one database (migrated on start)."""
    return state_dir() / STATE_FILE_NAME


__all__ = [
    "APP_NAME", "CONFIG_FILE_NAME", "STATE_DIR_ENV", "STATE_FILE_NAME", "default_config_path", "instance_key",
    "instance_state_path", "legacy_state_path", "log_dir", "make_private_dir", "normalized_slskd_url", "state_dir",
    "write_private_file",
]
