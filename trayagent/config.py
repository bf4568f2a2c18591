"""Configuration: typed sections, TOML load/save, environment overrides and validation.

Every mistake in the file becomes one ConfigError line that names the key and says what to
fix, because the agent usually runs from an autostart entry where a traceback is never read.
Secrets are hidden from repr/str, registered for log redaction, and secrets that came from the
environment are never written back to disk by save_config.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import re
import secrets as _secrets
import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime, time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote, urlsplit

import platformdirs
import tomli_w

from trayagent.errors import EXIT_USAGE, TrayagentError
from trayagent.logs import SLSKD_MAX_KEY_LENGTH, SLSKD_MIN_KEY_LENGTH, register_secret

log = logging.getLogger(__name__)

APP_NAME = "trayagent"
CONFIG_FILE_NAME = "config.toml"
#: The single state database of versions before state was kept per slskd instance.
STATE_FILE_NAME = "trayagent.sqlite3"
STATE_DIR_ENV = "TRAYAGENT_STATE_DIR"
MASK = "***"

#: Environment variable -> (section, key). These override the file.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "SLSKD_URL": ("slskd", "url"),
    "SLSKD_API_KEY": ("slskd", "api_key"),
    "SLSKD_USERNAME": ("slskd", "username"),
    "SLSKD_PASSWORD": ("slskd", "password"),
}
SECRET_KEYS = frozenset({"api_key", "password"})
CLEANUP_OUTCOMES = ("succeeded", "cancelled", "failed")
#: [tray] backend: "auto" walks the ladder (StatusNotifierItem, then XEmbed, then none).
TRAY_BACKENDS = ("auto", "sni", "xembed", "none")


class ConfigError(TrayagentError):
    """A configuration problem, described in one line that says what to fix."""

    exit_code = EXIT_USAGE


# --------------------------------------------------------------------------- locations


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


# --------------------------------------------------------------------------- sections


def _mask(value: str) -> str:
    return MASK if value else "''"


@dataclass(slots=True)
class SlskdConfig:
    """How to reach slskd. api_key wins over username/password when both are set."""

    url: str
    api_key: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    verify_tls: bool = True
    timeout: float = 10.0
    web_url: str = ""
    download_dir: str = ""
    #: Seconds to wait for an enqueue POST: slskd answers it only after reaching the peer.
    enqueue_timeout: float = 60.0

    def __repr__(self) -> str:
        return (
            f"SlskdConfig(url={self.url!r}, api_key={_mask(self.api_key)}, username={self.username!r}, "
            f"password={_mask(self.password)}, verify_tls={self.verify_tls!r}, timeout={self.timeout!r}, "
            f"web_url={self.web_url!r}, download_dir={self.download_dir!r}, "
            f"enqueue_timeout={self.enqueue_timeout!r})"
        )

    __str__ = __repr__

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

    active_interval: float = 1.0
    idle_interval: float = 10.0
    max_backoff: float = 60.0
    #: While downloads from at most this many peers are followed, the fast poll reads only
    #: those peers' lists (the whole list still comes every idle_interval); 0 = always whole.
    max_peers: int = 4


@dataclass(slots=True)
class TrackingConfig:
    """How long to wait before believing a disappearance, a failure, or a restart casualty."""

    grace_polls: int = 3
    failure_settle: float = 60.0
    restart_window: float = 300.0


@dataclass(slots=True)
class CleanupConfig:
    """Which finished downloads the agent removes from slskd's list, and how often."""

    enabled: bool = True
    interval: float = 300.0
    remove: tuple[str, ...] = ("succeeded", "cancelled")
    min_age: float = 0.0


@dataclass(slots=True)
class NotificationsConfig:
    """Which events become desktop notifications, and how they are rate limited."""

    enabled: bool = True
    on_completed: bool = True
    on_failed: bool = True
    on_cancelled: bool = False
    on_connection: bool = True
    batch_window: float = 3.0
    max_per_minute: int = 6
    quiet_hours: str = ""

    @classmethod
    def from_config(cls, settings: Any) -> NotificationsConfig:
        """This section from a whole Config, the section itself, anything shaped like it, or None."""
        if settings is None:
            return cls()
        settings = getattr(settings, "notifications", settings)
        if isinstance(settings, cls):
            return settings
        defaults = cls()
        return cls(**{f.name: getattr(settings, f.name, getattr(defaults, f.name)) for f in fields(cls)})

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
    searches_per_minute: float = 6.0
    max_attempts: int = 5
    queue_timeout: float = 30.0  # minutes
    preferred_formats: tuple[str, ...] = ("flac", "mp3")
    min_bitrate: int = 192  # kbps
    max_in_progress: int = 3  # transfers that may be running at once (queued ones don't count)
    stall_timeout: float = 5.0  # minutes in progress without a byte before the next candidate
    long_queue: int = 20  # a peer queue this long (no free slot) outweighs the format preference
    search_timeout: float = 15.0  # seconds slskd waits for more responses after the last one


@dataclass(slots=True)
class TrayConfig:
    """Which tray backend to use: "auto" (the ladder), "sni", "xembed" or "none"."""

    backend: str = "auto"


@dataclass(slots=True)
class Config:
    """The whole configuration. `env_values` remembers what the environment supplied."""

    slskd: SlskdConfig
    poll: PollConfig = field(default_factory=PollConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
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

    def to_toml_dict(self) -> dict[str, dict[str, Any]]:
        """Every setting as TOML-ready data, secrets included (empty credentials omitted)."""
        s = self.slskd
        slskd: dict[str, Any] = {"url": s.url}
        for key in ("api_key", "username", "password"):
            if getattr(s, key):
                slskd[key] = getattr(s, key)
        slskd.update(verify_tls=s.verify_tls, timeout=s.timeout, web_url=s.web_url, download_dir=s.download_dir,
                     enqueue_timeout=s.enqueue_timeout)
        c, n, y = self.cleanup, self.notifications, self.sync
        return {
            "slskd": slskd,
            "poll": {
                "active_interval": self.poll.active_interval,
                "idle_interval": self.poll.idle_interval,
                "max_backoff": self.poll.max_backoff,
                "max_peers": self.poll.max_peers,
            },
            "tracking": {
                "grace_polls": self.tracking.grace_polls,
                "failure_settle": self.tracking.failure_settle,
                "restart_window": self.tracking.restart_window,
            },
            "cleanup": {"enabled": c.enabled, "interval": c.interval, "remove": list(c.remove), "min_age": c.min_age},
            "notifications": {
                "enabled": n.enabled,
                "on_completed": n.on_completed,
                "on_failed": n.on_failed,
                "on_cancelled": n.on_cancelled,
                "on_connection": n.on_connection,
                "batch_window": n.batch_window,
                "max_per_minute": n.max_per_minute,
                "quiet_hours": n.quiet_hours,
            },
            "sync": {
                "playlists": list(y.playlists),
                "music_dir": y.music_dir,
                "searches_per_minute": y.searches_per_minute,
                "max_attempts": y.max_attempts,
                "queue_timeout": y.queue_timeout,
                "preferred_formats": list(y.preferred_formats),
                "min_bitrate": y.min_bitrate,
                "max_in_progress": y.max_in_progress,
                "stall_timeout": y.stall_timeout,
                "long_queue": y.long_queue,
                "search_timeout": y.search_timeout,
            },
            "tray": {"backend": self.tray.backend},
        }

    def redacted(self) -> dict[str, dict[str, Any]]:
        """to_toml_dict() with secrets shown as '***', safe to print (`trayagent doctor`)."""
        data = self.to_toml_dict()
        for key in SECRET_KEYS:
            if key in data["slskd"]:
                data["slskd"][key] = MASK
        return data

    def validate(self, source: str = "config") -> None:
        """Re-check a Config built or changed in code; raises ConfigError like load_config."""
        raw = self.to_toml_dict()
        env_names = {f"{sec}.{key}": name for name, (sec, key) in ENV_OVERRIDES.items()}
        where = {k: env_names[k] for k in self.env_values if k in env_names}
        _build(raw, _Ctx(source, where))


# --------------------------------------------------------------------------- parsing helpers


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


def _show(value: Any) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, (list, tuple)):
        text = json.dumps([v if isinstance(v, (str, int, float, bool)) else str(v) for v in value], ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(slots=True)
class _Ctx:
    """Where values come from, so messages say 'config.toml: [poll] x' or 'SLSKD_URL'."""

    source: str
    env: dict[str, str] = field(default_factory=dict)  # "section.key" -> env var name

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        env_name = self.env.get(f"{section}.{key}")
        if env_name:
            return ConfigError(_one_line(f"{env_name} {problem}"))
        return ConfigError(_one_line(f"{self.source}: [{section}] {key} {problem}"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: Upper bounds of the config's numbers, in seconds unless the key says otherwise.
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
WEEK, YEAR = 7 * DAY, 365 * DAY
_SPANS = ((YEAR, "a year"), (WEEK, "a week"), (DAY, "a day"), (HOUR, "an hour"))


def _span(seconds: float) -> str:
    """' (a day)' after a bound that is a well-known duration, so the range reads plainly."""
    for value, words in _SPANS:
        if seconds == value:
            return f" ({words})"
    return ""


_MISSING = object()


class _Section:
    """Typed accessors for one TOML table; unknown keys are reported when it is done."""

    def __init__(self, ctx: _Ctx, name: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.ctx, self.name, self.data, self.known = ctx, name, data, known
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
                tail = f"did you mean {', '.join(hint)}?" if hint else f"valid keys: {', '.join(known)}"
                raise ConfigError(_one_line(f"{ctx.source}: unknown key [{name}] {key} ({tail})"))

    def fail(self, key: str, problem: str) -> ConfigError:
        return self.ctx.fail(self.name, key, problem)

    def number(self, key: str, default: float, *, minimum: float = 0.0, inclusive: bool = False,
               maximum: float = YEAR) -> float:
        """A finite number above `minimum` and at most `maximum`.

        The upper bound is not pedantry: a timeout of 1e10 s overflows the socket layer and an
        interval of 1e14 s the scheduler's date arithmetic, long after the config was accepted.
        """
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        op = ">=" if inclusive else ">"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = value >= minimum if inclusive else value > minimum
        if not ok:
            raise self.fail(key, f"must be a number {op} {minimum:g} (got {_show(value)})")
        if value > maximum:
            raise self.fail(key, f"must be a number {op} {minimum:g} and at most {maximum:.10g}{_span(maximum)} "
                                 f"(got {_show(value)})")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int = 1_000_000) -> int:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(key, f"must be a whole number >= {minimum} (got {_show(value)})")
        if value > maximum:
            raise self.fail(key, f"must be a whole number >= {minimum} and at most {maximum} (got {_show(value)})")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false (got {_show(value)})")
        return value

    def string(self, key: str, default: str, *, secret: bool = False) -> str:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            shown = "a non-string value" if secret else _show(value)
            raise self.fail(key, f'must be a string in quotes (got {shown})')
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, f'must be a list of non-empty strings, e.g. ["a", "b"] (got {_show(value)})')
        return tuple(value)


_USERINFO_RE = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(.*)@", re.DOTALL)


def _hide_userinfo(url: str) -> str:
    """The URL with everything before its last '@' after the scheme replaced by ***.

    A password typed into a URL may hold '/', '?' or '#' unencoded, which moves urlsplit's
    idea of where the host starts; masking up to the last '@' hides it whatever it holds.
    """
    return _USERINFO_RE.sub(lambda m: (m.group(1) or "") + MASK + "@", url, count=1)


def _check_url(sec: _Section, key: str, value: str) -> str:
    """Require an http(s) URL with a host, no credentials, query or fragment."""
    text = value.strip()
    shown = _show(_hide_userinfo(value))
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise sec.fail(key, f"is not an http(s) URL: {shown} (expected e.g. http://127.0.0.1:5030)") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise sec.fail(key, f"is not an http(s) URL: {shown} (expected e.g. http://127.0.0.1:5030)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc + parts.path:
        raise sec.fail(key, "must not contain a user name or password; use [slskd] api_key or username/password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise sec.fail(key, f"must not have a ?query or #fragment (got {shown})")
    del port
    return text


def _check_secret(sec: _Section, key: str, value: str) -> str:
    if value and (value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise sec.fail(key, "must not contain control characters or leading/trailing spaces")
    return value


def _check_api_key(sec: _Section, value: str) -> str:
    """slskd refuses to start with a key outside 16-255 characters, so such a key cannot be right."""
    value = _check_secret(sec, "api_key", value)
    if value and len(value) < SLSKD_MIN_KEY_LENGTH:
        raise sec.fail("api_key", f"is too short for slskd ({len(value)} characters; slskd's keys have "
                       f"{SLSKD_MIN_KEY_LENGTH} to {SLSKD_MAX_KEY_LENGTH}): copy the whole key from slskd's "
                       "web.authentication.api_key or api_keys")
    if len(value) > SLSKD_MAX_KEY_LENGTH:
        raise sec.fail("api_key", f"is too long for slskd ({len(value)} characters; slskd's keys have "
                       f"{SLSKD_MIN_KEY_LENGTH} to {SLSKD_MAX_KEY_LENGTH})")
    return value


def _build(raw: Mapping[str, Any], ctx: _Ctx) -> Config:
    """Turn parsed TOML (plus env values already merged in) into a validated Config."""
    sections: dict[str, tuple[str, ...]] = {
        "slskd": ("url", "api_key", "username", "password", "verify_tls", "timeout", "web_url", "download_dir",
                  "enqueue_timeout"),
        "poll": ("active_interval", "idle_interval", "max_backoff", "max_peers"),
        "tracking": ("grace_polls", "failure_settle", "restart_window"),
        "cleanup": ("enabled", "interval", "remove", "min_age"),
        "notifications": (
            "enabled", "on_completed", "on_failed", "on_cancelled", "on_connection",
            "batch_window", "max_per_minute", "quiet_hours",
        ),
        "sync": (
            "playlists", "music_dir", "searches_per_minute", "max_attempts", "queue_timeout",
            "preferred_formats", "min_bitrate", "max_in_progress", "stall_timeout", "long_queue",
            "search_timeout",
        ),
        "tray": ("backend",),
    }
    for name, value in raw.items():
        if name not in sections:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{ctx.source}: unknown top-level key {name} (settings belong in a section such as [slskd])"
                )
            hint = difflib.get_close_matches(name, list(sections), n=1, cutoff=0.6)
            tail = f"did you mean [{hint[0]}]?" if hint else f"valid sections: {', '.join(sections)}"
            raise ConfigError(f"{ctx.source}: unknown section [{name}] ({tail})")
        if not isinstance(value, dict):
            raise ConfigError(f"{ctx.source}: {name} must be a section [{name}], not a value")

    def section(name: str) -> _Section:
        return _Section(ctx, name, raw.get(name, {}), sections[name])

    s = section("slskd")
    url = s.string("url", "")
    if not url.strip():
        raise ConfigError(f"no slskd URL: set [slskd] url in {ctx.source} or SLSKD_URL")
    url = _check_url(s, "url", url)
    web_url = s.string("web_url", "")
    if web_url.strip():
        web_url = _check_url(s, "web_url", web_url)
    slskd = SlskdConfig(
        url=url,
        api_key=_check_api_key(s, s.string("api_key", "", secret=True)),
        username=s.string("username", ""),
        password=_check_secret(s, "password", s.string("password", "", secret=True)),
        verify_tls=s.boolean("verify_tls", True),
        timeout=s.number("timeout", 10.0, maximum=10 * MINUTE),
        web_url=web_url,
        download_dir=s.string("download_dir", ""),
        enqueue_timeout=s.number("enqueue_timeout", 60.0, maximum=10 * MINUTE),
    )
    if slskd.username and not slskd.password:
        raise s.fail("username", "is set but [slskd] password is not (set both, or use api_key instead)")
    if slskd.password and not slskd.username:
        raise s.fail("password", "is set but [slskd] username is not (set both, or use api_key instead)")

    p = section("poll")
    poll = PollConfig(
        active_interval=p.number("active_interval", 1.0, maximum=DAY),
        idle_interval=p.number("idle_interval", 10.0, maximum=DAY),
        max_backoff=p.number("max_backoff", 60.0, maximum=DAY),
        max_peers=p.integer("max_peers", 4, minimum=0, maximum=100),
    )
    slowest = max(poll.active_interval, poll.idle_interval)
    if poll.max_backoff < slowest:
        raise p.fail(
            "max_backoff",
            f"must be >= active_interval and idle_interval (got {poll.max_backoff:g} < {slowest:g})",
        )

    t = section("tracking")
    tracking = TrackingConfig(
        grace_polls=t.integer("grace_polls", 3, minimum=1, maximum=1000),
        failure_settle=t.number("failure_settle", 60.0, inclusive=True, maximum=WEEK),
        restart_window=t.number("restart_window", 300.0, inclusive=True, maximum=WEEK),
    )

    c = section("cleanup")
    remove = c.strings("remove", ("succeeded", "cancelled"))
    lowered = tuple(dict.fromkeys(r.strip().lower() for r in remove))
    bad = [r for r in lowered if r not in CLEANUP_OUTCOMES]
    if bad:
        raise c.fail("remove", f"may only contain {', '.join(CLEANUP_OUTCOMES)} (got {_show(bad[0])})")
    cleanup = CleanupConfig(
        enabled=c.boolean("enabled", True),
        interval=c.number("interval", 300.0, maximum=WEEK),
        remove=lowered,
        min_age=c.number("min_age", 0.0, inclusive=True, maximum=YEAR),
    )

    n = section("notifications")
    quiet = n.string("quiet_hours", "").strip()
    if quiet:
        try:
            parse_quiet_hours(quiet)
        except ValueError as exc:
            raise n.fail("quiet_hours", f'{exc} (got {_show(quiet)}; use "" for none)') from None
    notifications = NotificationsConfig(
        enabled=n.boolean("enabled", True),
        on_completed=n.boolean("on_completed", True),
        on_failed=n.boolean("on_failed", True),
        on_cancelled=n.boolean("on_cancelled", False),
        on_connection=n.boolean("on_connection", True),
        batch_window=n.number("batch_window", 3.0, inclusive=True, maximum=HOUR),
        max_per_minute=n.integer("max_per_minute", 6, minimum=1, maximum=1000),
        quiet_hours=quiet,
    )

    y = section("sync")
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in y.strings("preferred_formats", ("flac", "mp3"))))
    if any(not f for f in formats):
        raise y.fail("preferred_formats", 'must be file extensions such as "flac" or "mp3"')
    sync = SyncConfig(
        playlists=y.strings("playlists", ()),
        music_dir=y.string("music_dir", ""),
        searches_per_minute=y.number("searches_per_minute", 6.0, maximum=600),
        max_attempts=y.integer("max_attempts", 5, minimum=1, maximum=1000),
        queue_timeout=y.number("queue_timeout", 30.0, maximum=WEEK / MINUTE),  # minutes
        preferred_formats=formats,
        min_bitrate=y.integer("min_bitrate", 192, minimum=0, maximum=100_000),
        max_in_progress=y.integer("max_in_progress", 3, minimum=1, maximum=1000),
        stall_timeout=y.number("stall_timeout", 5.0, maximum=WEEK / MINUTE),
        long_queue=y.integer("long_queue", 20, minimum=1, maximum=100_000),
        search_timeout=y.number("search_timeout", 15.0, maximum=DAY),
    )
    r = section("tray")
    backend = r.string("backend", "auto").strip().lower()
    if backend not in TRAY_BACKENDS:
        raise r.fail("backend", f"must be one of {', '.join(TRAY_BACKENDS)} (got {_show(backend)})")
    tray = TrayConfig(backend=backend)
    return Config(slskd=slskd, poll=poll, tracking=tracking, cleanup=cleanup, notifications=notifications, sync=sync,
                  tray=tray)


# --------------------------------------------------------------------------- load / save


def _read_toml(path: Path) -> dict[str, Any] | None:
    """Parse the file; None if it does not exist. Every failure is a one-line ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_one_line(f"{path}: invalid TOML: {exc}")) from None


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Load and validate the config; SLSKD_* env vars override the file.

    A missing file is fine when the environment supplies SLSKD_URL. Empty env vars count
    as unset. Secrets are registered with the log redactor before anything can log them.
    """
    path = Path(path).expanduser() if path is not None else default_config_path()
    raw = _read_toml(path)
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
            continue  # _build reports the malformed section
        else:
            table = raw[sec] = dict(table)
        old = table.get(key)
        if isinstance(old, str):
            file_values[f"{sec}.{key}"] = old
        table[key] = value
        env_values[f"{sec}.{key}"] = value
        where[f"{sec}.{key}"] = name

    config = _build(raw, _Ctx(source, where))
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


def _persistable(config: Config) -> dict[str, dict[str, Any]]:
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
    parent = target.parent
    if not parent.is_dir():
        parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)
    text = _HEADER + tomli_w.dumps(_persistable(config))
    tmp = parent / f".{target.name}.{_secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(parent)
    log.info("config saved to %s", target)
    return target


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not possible (nor needed) on every platform."""
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


__all__ = [
    "CleanupConfig", "Config", "ConfigError", "NotificationsConfig", "PollConfig", "SlskdConfig",
    "SyncConfig", "TrackingConfig", "TrayConfig", "default_config_path", "load_config", "log_dir",
    "parse_quiet_hours", "save_config", "state_dir",
]
