"""Configuration: the typed sections, TOML load/save, environment overrides and validation.

The sections below are the whole schema: config_schema reads, lists and writes them from
their fields, so a key is added in one place. Every mistake in the file becomes one
ConfigError line that names the key and says what to fix, because the agent usually runs from
an autostart entry where a traceback is never read. Secrets are hidden from repr/str,
registered for log redaction, and secrets that came from the environment are never written
back to disk by save_config.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import tomli_w

from trayagent.config_schema import (
    DAY, HOUR, MASK, MINUTE, WEEK, YEAR, Fail, Origin, TomlTable, env_overrides, masked_repr, one_of, read_sections,
    read_toml_file, secret_keys, sections_to_toml, setting, show, some_of,
)
from trayagent.core.tracker import Rules
from trayagent.errors import ConfigError
from trayagent.logs import SLSKD_MAX_KEY_LENGTH, SLSKD_MIN_KEY_LENGTH, register_secret
from trayagent.paths import default_config_path, instance_state_path, write_private_file

log = logging.getLogger(__name__)

CLEANUP_OUTCOMES = ("succeeded", "cancelled", "failed")
#: [tray] backend: "auto" walks the ladder (StatusNotifierItem, then XEmbed, then none).
TRAY_BACKENDS = ("auto", "sni", "xembed", "none")


# --------------------------------------------------------------------------- checks of single keys


_USERINFO_RE = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(.*)@", re.DOTALL)


def _hide_userinfo(url: str) -> str:
    """The URL with everything before its last '@' after the scheme replaced by ***.

    A password typed into a URL may hold '/', '?' or '#' unencoded, which moves urlsplit's
    idea of where the host starts; masking up to the last '@' hides it whatever it holds.
    """
    return _USERINFO_RE.sub(lambda m: (m.group(1) or "") + MASK + "@", url, count=1)


def _check_url(value: str, origin: Origin) -> str:
    """Require an http(s) URL with a host, no credentials, query or fragment."""
    text = value.strip()
    shown = show(_hide_userinfo(value))
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError for a bad port
    except ValueError:
        raise origin.fail(f"is not an http(s) URL: {shown} (expected e.g. http://127.0.0.1:5030)") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise origin.fail(f"is not an http(s) URL: {shown} (expected e.g. http://127.0.0.1:5030)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc + parts.path:
        raise origin.fail("must not contain a user name or password; use [slskd] api_key or username/password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise origin.fail(f"must not have a ?query or #fragment (got {shown})")
    return text


def _required_url(value: str, origin: Origin) -> str:
    if not value.strip():
        raise ConfigError(f"no slskd URL: set [slskd] url in {origin.source} or SLSKD_URL")
    return _check_url(value, origin)


def _optional_url(value: str, origin: Origin) -> str:
    return _check_url(value, origin) if value.strip() else value


def _check_secret(value: str, origin: Origin) -> str:
    if value and (value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise origin.fail("must not contain control characters or leading/trailing spaces")
    return value


def _check_api_key(value: str, origin: Origin) -> str:
    """slskd refuses to start with a key outside 16-255 characters, so such a key cannot be right."""
    value = _check_secret(value, origin)
    if value and len(value) < SLSKD_MIN_KEY_LENGTH:
        raise origin.fail(f"is too short for slskd ({len(value)} characters; slskd's keys have "
                          f"{SLSKD_MIN_KEY_LENGTH} to {SLSKD_MAX_KEY_LENGTH}): copy the whole key from slskd's "
                          "web.authentication.api_key or api_keys")
    if len(value) > SLSKD_MAX_KEY_LENGTH:
        raise origin.fail(f"is too long for slskd ({len(value)} characters; slskd's keys have "
                          f"{SLSKD_MIN_KEY_LENGTH} to {SLSKD_MAX_KEY_LENGTH})")
    return value


def _quiet_hours(value: str, origin: Origin) -> str:
    quiet = value.strip()
    if quiet:
        try:
            parse_quiet_hours(quiet)
        except ValueError as exc:
            raise origin.fail(f'{exc} (got {show(quiet)}; use "" for none)') from None
    return quiet


def _formats(value: tuple[str, ...], origin: Origin) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in value))
    if any(not f for f in formats):
        raise origin.fail('must be file extensions such as "flac" or "mp3"')
    return formats


# --------------------------------------------------------------------------- sections


@dataclass(slots=True)
class SlskdConfig:
    """How to reach slskd. api_key wins over username/password when both are set."""

    url: str = field(metadata={"check": _required_url, "env": "SLSKD_URL"})
    api_key: str = setting("", secret=True, omit_empty=True, check=_check_api_key, env="SLSKD_API_KEY")
    username: str = setting("", omit_empty=True, env="SLSKD_USERNAME")
    password: str = setting("", secret=True, omit_empty=True, check=_check_secret, env="SLSKD_PASSWORD")
    verify_tls: bool = True
    timeout: float = setting(10.0, maximum=10 * MINUTE)
    web_url: str = setting("", check=_optional_url, help="the web UI address when it differs from url")
    download_dir: str = ""
    enqueue_timeout: float = setting(60.0, maximum=10 * MINUTE,
                                     help="seconds to wait for an enqueue POST: slskd answers it only after "
                                          "reaching the peer")

    __repr__ = masked_repr
    __str__ = masked_repr

    def check_section(self, fail: Fail) -> None:
        """Credentials come in pairs: a user name alone cannot log in."""
        if self.username and not self.password:
            raise fail("username", "is set but [slskd] password is not (set both, or use api_key instead)")
        if self.password and not self.username:
            raise fail("password", "is set but [slskd] username is not (set both, or use api_key instead)")

    @property
    def base_url(self) -> str:
        """url without trailing slashes, ready for '/api/v0/...' to be appended."""
        return self.url.strip().rstrip("/")

    @property
    def ui_url(self) -> str:
        """The web UI address: web_url when given, else the API url."""
        return (self.web_url or self.url).strip()

    @property
    def download_path(self) -> Path | None:
        """download_dir as a Path (~ expanded), or None when unset."""
        return Path(self.download_dir).expanduser() if self.download_dir else None


@dataclass(slots=True)
class PollConfig:
    """Seconds between polls: fast while something is active, slow when idle, capped backoff."""

    active_interval: float = setting(1.0, maximum=DAY)
    idle_interval: float = setting(10.0, maximum=DAY)
    max_backoff: float = setting(60.0, maximum=DAY)
    max_peers: int = setting(4, minimum=0, maximum=100,
                             help="while downloads from at most this many peers are followed, the fast poll reads "
                                  "only those peers' lists (the whole list still comes every idle_interval); "
                                  "0 = always whole")

    def check_section(self, fail: Fail) -> None:
        """A backoff shorter than the normal interval would poll faster after an error."""
        slowest = max(self.active_interval, self.idle_interval)
        if self.max_backoff < slowest:
            raise fail("max_backoff",
                       f"must be >= active_interval and idle_interval (got {self.max_backoff:g} < {slowest:g})")


@dataclass(slots=True)
class CleanupConfig:
    """Which finished downloads the agent removes from slskd's list, and how often."""

    enabled: bool = True
    interval: float = setting(300.0, maximum=WEEK)
    remove: tuple[str, ...] = setting(("succeeded", "cancelled"), check=some_of(CLEANUP_OUTCOMES))
    min_age: float = setting(0.0, inclusive=True, maximum=YEAR)


@dataclass(slots=True)
class NotificationsConfig:
    """Which events become desktop notifications, and how they are rate limited."""

    enabled: bool = True
    on_completed: bool = True
    on_failed: bool = True
    on_cancelled: bool = False
    on_connection: bool = True
    batch_window: float = setting(3.0, inclusive=True, maximum=HOUR)
    max_per_minute: int = setting(6, minimum=1, maximum=1000)
    quiet_hours: str = setting("", check=_quiet_hours, help='"HH:MM-HH:MM" local time, may cross midnight')

    @property
    def quiet_range(self) -> tuple[time, time] | None:
        """quiet_hours as (start, end) local times, or None when unset."""
        return parse_quiet_hours(self.quiet_hours) if self.quiet_hours else None

    def is_quiet(self, moment: datetime) -> bool:
        """Whether a moment falls in quiet hours (local wall clock); ranges may cross midnight."""
        return in_quiet_hours(self.quiet_range, moment)


@dataclass(slots=True)
class SyncConfig:
    """Playlist sync: what to look for, how hard to search and what audio is acceptable."""

    playlists: tuple[str, ...] = ()
    music_dir: str = ""
    searches_per_minute: float = setting(6.0, maximum=600)
    max_attempts: int = setting(5, minimum=1, maximum=1000)
    queue_timeout: float = setting(30.0, maximum=WEEK / MINUTE, help="minutes")
    preferred_formats: tuple[str, ...] = setting(("flac", "mp3"), check=_formats)
    min_bitrate: int = setting(192, minimum=0, maximum=100_000, help="kbps")
    max_in_progress: int = setting(3, minimum=1, maximum=1000,
                                   help="transfers that may be running at once (queued ones don't count)")
    stall_timeout: float = setting(5.0, maximum=WEEK / MINUTE,
                                   help="minutes in progress without a byte before the next candidate")
    long_queue: int = setting(20, minimum=1, maximum=100_000,
                              help="a peer queue this long (no free slot) outweighs the format preference")
    search_timeout: float = setting(15.0, maximum=DAY,
                                    help="seconds slskd waits for more responses after the last one")


@dataclass(slots=True)
class TrayConfig:
    """Which tray backend to use: "auto" (the ladder), "sni", "xembed" or "none"."""

    backend: str = setting("auto", check=one_of(TRAY_BACKENDS))


#: The config's secrets, derived from the fields marked secret.
SECRET_KEYS = secret_keys(SlskdConfig)


@dataclass(slots=True)
class Config:
    """The whole configuration. `env_values` remembers what the environment supplied.

    Every field typed as a dataclass is a [section] of the file; [tracking] is the tracker's
    own `Rules`, so the rules the tracker follows and the keys the file accepts are one class.
    """

    slskd: SlskdConfig
    poll: PollConfig = field(default_factory=PollConfig)
    tracking: Rules = field(default_factory=Rules)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    tray: TrayConfig = field(default_factory=TrayConfig)
    #: The file this came from (None when built in code or when only env supplied it).
    path: Path | None = field(default=None, compare=False)
    #: "section.key" -> value taken from the environment, so save_config can leave it out.
    env_values: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: "section.key" -> the file's value that an env override shadowed.
    file_values: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"Config(slskd={self.slskd!r}, poll={self.poll!r}, tracking={self.tracking!r}, "
            f"cleanup={self.cleanup!r}, notifications={self.notifications!r}, sync={self.sync!r}, tray={self.tray!r}, "
            f"path={self.path!r}, env_overrides={sorted(self.env_values)!r})"
        )

    __str__ = __repr__

    @property
    def env_overrides(self) -> frozenset[str]:
        """Which "section.key" fields came from the environment."""
        return frozenset(self.env_values)

    @property
    def state_path(self) -> Path:
        """The agent's SQLite database for this slskd instance (keyed by its normalised URL)."""
        return instance_state_path(self.slskd.url)

    def to_toml_dict(self) -> dict[str, TomlTable]:
        """Every setting as TOML-ready data, secrets included (empty credentials omitted)."""
        return sections_to_toml(self)

    def redacted(self) -> dict[str, TomlTable]:
        """to_toml_dict() with secrets shown as '***', safe to print (`trayagent doctor`)."""
        data = self.to_toml_dict()
        for key in SECRET_KEYS:
            if key in data["slskd"]:
                data["slskd"][key] = MASK
        return data

    def validate(self, source: str = "config") -> None:
        """Re-check a Config built or changed in code; raises ConfigError like load_config."""
        env_names = {f"{sec}.{key}": name for name, (sec, key) in ENV_OVERRIDES.items()}
        read_sections(Config, self.to_toml_dict(), source,
                      {k: env_names[k] for k in self.env_values if k in env_names})


#: Environment variable -> (section, key): SLSKD_URL and friends override the file.
ENV_OVERRIDES = env_overrides(Config)


# --------------------------------------------------------------------------- quiet hours


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """Parse "HH:MM-HH:MM" (may cross midnight). Raises ValueError with the reason."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError('must look like "22:00-07:00"')
    out = []
    for part in parts:
        bits = part.strip().split(":")
        if len(bits) != 2 or not all(b.isdigit() and 1 <= len(b) <= 2 for b in bits):
            raise ValueError('must look like "22:00-07:00"')
        hour, minute = int(bits[0]), int(bits[1])
        if hour > 23 or minute > 59:
            raise ValueError("has an hour above 23 or a minute above 59")
        out.append(time(hour, minute))
    if out[0] == out[1]:
        raise ValueError("has the same start and end")
    return out[0], out[1]


def in_quiet_hours(span: tuple[time, time] | None, moment: datetime) -> bool:
    """Whether the local wall-clock time of `moment` is inside [start, end), across midnight."""
    if span is None:
        return False
    start, end = span
    local = moment.astimezone() if moment.tzinfo is not None else moment
    now = local.time().replace(tzinfo=None)
    if start < end:
        return start <= now < end
    return now >= start or now < end


# --------------------------------------------------------------------------- load / save


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Load and validate the config; SLSKD_* env vars override the file.

    A missing file is fine when the environment supplies SLSKD_URL. Empty env vars count
    as unset. Secrets are registered with the log redactor before anything can log them.
    """
    path = Path(path).expanduser() if path is not None else default_config_path()
    raw = read_toml_file(path)
    exists = raw is not None
    raw = dict(raw or {})
    source = str(path)

    env_values: dict[str, str] = {}
    file_values: dict[str, str] = {}
    where: dict[str, str] = {}
    for name, (sec, key) in ENV_OVERRIDES.items():
        value = env.get(name)
        if not value:
            continue
        table = raw.get(sec)
        if table is None:
            table = raw[sec] = {}
        elif not isinstance(table, dict):
            continue  # read_sections reports the malformed section
        else:
            table = raw[sec] = dict(table)
        old = table.get(key)
        if isinstance(old, str):
            file_values[f"{sec}.{key}"] = old
        table[key] = value
        env_values[f"{sec}.{key}"] = value
        where[f"{sec}.{key}"] = name

    config = read_sections(Config, raw, source, where)
    config.path = path if exists else None
    config.env_values = env_values
    config.file_values = file_values
    register_secret(config.slskd.api_key)
    register_secret(config.slskd.password)
    if exists:
        _warn_if_exposed(path, config, env_values)
    log.debug("config loaded from %s (env overrides: %s)", path if exists else "environment only",
              ", ".join(sorted(where.values())) or "none")
    return config


def _warn_if_exposed(path: Path, config: Config, env_values: Mapping[str, str]) -> None:
    """A file holding a key or password should not be readable by other users: say so."""
    if os.name != "posix":
        return
    in_file = [k for k in SECRET_KEYS if getattr(config.slskd, k) and f"slskd.{k}" not in env_values]
    if not in_file:
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warning("%s holds a secret but is readable by others (mode %03o): run chmod 600 %s", path, mode, path)


def _persistable(config: Config) -> dict[str, TomlTable]:
    """to_toml_dict() minus secrets the environment supplied (the file's own value is kept)."""
    data = config.to_toml_dict()
    for dotted, env_value in config.env_values.items():
        sec, key = dotted.split(".", 1)
        if key not in SECRET_KEYS:
            continue
        current = getattr(config.slskd, key)
        if current != env_value:
            continue  # changed in code after loading: that is the user's new value, keep it
        original = config.file_values.get(dotted)
        if original:
            data[sec][key] = original
        else:
            data[sec].pop(key, None)
    return data


_HEADER = (
    "# trayagent configuration (written by trayagent; comments are not preserved).\n"
    "# Secrets given through SLSKD_API_KEY / SLSKD_PASSWORD are not stored here.\n\n"
)


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write the config atomically with mode 0600 from creation; return the path written.

    Secrets that came from the environment are not persisted (see _persistable), so a key
    exported in a shell profile never ends up copied into a file.
    """
    config.validate(str(path or config.path or default_config_path()))
    target = Path(path or config.path or default_config_path()).expanduser()
    text = _HEADER + tomli_w.dumps(_persistable(config))
    try:
        write_private_file(target, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None
    log.info("config saved to %s", target)
    return target


__all__ = [
    "CleanupConfig", "Config", "NotificationsConfig", "PollConfig", "SlskdConfig", "SyncConfig", "TrayConfig",
    "in_quiet_hours", "load_config", "parse_quiet_hours", "save_config",
]
