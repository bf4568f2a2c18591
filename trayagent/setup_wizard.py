"""`trayagent init`: find out the slskd URL and API key, prove they work, then write the config.

The API key is taken only from SLSKD_API_KEY, standard input (--api-key-stdin) or a hidden
prompt, never from a command-line argument, because argv is visible to every local user
(ps, /proc) and lands in shell history. Nothing is written until slskd has accepted the
values, so a config produced by init is known to have worked at least once.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, TextIO
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # config is imported when init needs it: `trayagent --help` stays quick
    from trayagent.config import Config

log = logging.getLogger(__name__)

EXIT_OK, EXIT_UNREACHABLE, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_URL = "http://localhost:5030"
INIT_TIMEOUT = 10.0


class _InitError(Exception):
    """Stop init with one line and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def normalize_url(text: str) -> str:
    """Turn what a user typed into a base URL, or raise ValueError saying what is wrong.

    'localhost:5030' gains http://; a trailing slash or a pasted '/api/v0' is dropped.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("the slskd URL is empty")
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a valid URL: {text.strip()!r} (expected e.g. {DEFAULT_URL})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in raw):
        raise ValueError(f"not an http(s) URL: {text.strip()!r} (expected e.g. {DEFAULT_URL})")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not contain a user name or password; give the API key separately")
    if parts.query or parts.fragment:
        raise ValueError(f"the URL must not have a ?query or #fragment: {text.strip()!r}")
    path = parts.path.rstrip("/")
    for suffix in ("/api/v0", "/api"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


class _Wizard:
    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str],
        stdin: TextIO,
        out: TextIO,
        err: TextIO,
        interactive: bool,
        prompt_secret: Callable[[str], str],
    ) -> None:
        self.config_path = Path(config_path).expanduser()
        self.env = env
        self.stdin = stdin
        self.out = out
        self.err = err
        self.interactive = interactive
        self.prompt_secret = prompt_secret

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            raise _InitError("no answer (end of input)", EXIT_BAD_INPUT)
        return line.strip()

    # ----------------------------------------------------------------- inputs

    def pick_url(self, flag: str | None) -> str:
        if flag:
            source, text = "--url", flag
        elif self.env.get("SLSKD_URL"):
            source, text = "SLSKD_URL", self.env["SLSKD_URL"]
        elif self.interactive:
            source, text = "answer", self.ask(f"slskd URL [{DEFAULT_URL}]: ") or DEFAULT_URL
        else:
            self.say(f"no --url or SLSKD_URL given; trying {DEFAULT_URL}")
            source, text = "default", DEFAULT_URL
        try:
            return normalize_url(text)
        except ValueError as exc:
            where = "" if source in ("answer", "default") else f" ({source})"
            raise _InitError(f"{exc}{where}", EXIT_BAD_INPUT) from None

    def read_key_from_stdin(self) -> str:
        line = self.stdin.readline()
        key = line.strip()
        if not key:
            raise _InitError("--api-key-stdin was given but standard input had no key on its first line",
                             EXIT_BAD_INPUT)
        return key

    def prompt_key(self) -> str:
        try:
            key = self.prompt_secret("slskd API key (input hidden): ").strip()
        except (EOFError, OSError):
            key = ""
        if not key:
            raise _InitError("no API key entered", EXIT_BAD_INPUT)
        return key

    # ----------------------------------------------------------------- checks

    def probe(self, url: str) -> bool:
        """Reach slskd anonymously; return whether it wants authentication."""
        from trayagent.config import SlskdConfig
        from trayagent.slskd.client import SlskdClient
        from trayagent.slskd.errors import SlskdError, SlskdUnreachable

        with SlskdClient(SlskdConfig(url=url, timeout=INIT_TIMEOUT)) as client:
            healthy = client.health()
            try:
                enabled = client.session_enabled()
            except SlskdUnreachable as exc:
                raise _InitError(f"cannot reach slskd at {url}: {_reason(str(exc))} — is slskd running? "
                                 "check the URL (--url)", EXIT_UNREACHABLE) from None
            except SlskdError as exc:
                status = f"HTTP {exc.status}" if exc.status else "not slskd's JSON"
                raise _InitError(f"something answers at {url} but it is not slskd's API ({status}) — check the "
                                 "URL, including slskd's URL base (web.url_base), e.g. http://host:5030/slskd",
                                 EXIT_BAD_INPUT) from None
        if not healthy:
            self.say(f"note: slskd at {url} answers, but its /health check is not OK (see slskd's log)")
        return enabled

    def verify(self, url: str, api_key: str) -> str:
        """Make an authenticated call; return slskd's version (or '') on success."""
        from trayagent.config import SlskdConfig
        from trayagent.slskd.client import SlskdClient
        from trayagent.slskd.errors import SlskdError, SlskdUnauthorized, SlskdUnreachable

        with SlskdClient(SlskdConfig(url=url, api_key=api_key, timeout=INIT_TIMEOUT)) as client:
            try:
                client.check_auth()
            except SlskdUnauthorized as exc:
                hint = ""
                if not 16 <= len(api_key) <= 255:
                    hint = f" (slskd keys are 16-255 characters; this one has {len(api_key)})"
                raise _InitError(
                    f"slskd rejected the API key ({exc.status or 401}){hint} — use a key from slskd's "
                    "web.authentication.api_key or api_keys (SLSKD_API_KEY on the slskd side) whose cidr "
                    "allows this machine", EXIT_BAD_INPUT) from None
            except SlskdUnreachable as exc:
                raise _InitError(f"lost contact with slskd at {url}: {_reason(str(exc))}", EXIT_UNREACHABLE) from None
            except SlskdError as exc:
                raise _InitError(f"slskd failed the authenticated check: {exc}", EXIT_UNREACHABLE) from None
            try:
                return client.version()
            except SlskdError as exc:
                log.debug("version unavailable: %s", exc)
                return ""

    # ----------------------------------------------------------------- write

    def build_config(self, url: str, api_key: str, force: bool) -> Config:
        from trayagent.config import Config, SlskdConfig, load_config
        from trayagent.errors import ConfigError

        config = None
        if force and self.config_path.is_file():
            try:  # keep the user's other settings; env must not leak into the file
                config = load_config(self.config_path, env={})
            except ConfigError as exc:
                self.say(f"note: the existing config is invalid ({exc}); replacing it with defaults")
        if config is None:
            config = Config(slskd=SlskdConfig(url=url))
        config.slskd.url = url
        config.slskd.api_key = api_key
        config.env_values = {}  # everything here was given to init on purpose: persist it
        config.file_values = {}
        return config

    def write(self, config: Config) -> Path:
        from trayagent.config import save_config
        from trayagent.errors import ConfigError

        try:
            return save_config(config, self.config_path)
        except ConfigError as exc:
            raise _InitError(f"{exc} — choose another path with --config", EXIT_BAD_INPUT) from None


def run_init(
    config_path: Path,
    env: Mapping[str, str],
    stdin: TextIO,
    out: TextIO,
    url: str | None = None,
    interactive: bool = False,
    *,
    api_key_stdin: bool = False,
    force: bool = False,
    err: TextIO | None = None,
    prompt_secret: Callable[[str], str] = getpass.getpass,
) -> int:
    """Check URL and API key against slskd, then write the config (0600).

    URL: --url, else SLSKD_URL, else a prompt (interactive) or http://localhost:5030.
    Key: --api-key-stdin (first line of stdin), else SLSKD_API_KEY, else a hidden prompt
    (interactive); none is needed when slskd has authentication disabled.
    Returns 0 on success, 1 when slskd is unreachable or failing, 2 for input to fix;
    errors are one line on `err` (default: out).
    """
    errors = err if err is not None else out
    wizard = _Wizard(Path(config_path), env, stdin, out, errors, interactive, prompt_secret)
    try:
        return _run(wizard, url, api_key_stdin, force)
    except _InitError as exc:
        errors.write(f"trayagent init: {exc}\n")
        errors.flush()
        return exc.code


def _run(w: _Wizard, url_flag: str | None, api_key_stdin: bool, force: bool) -> int:
    path = w.config_path
    if path.exists() and not force:
        raise _InitError(f"a config already exists at {path} — pass --force to replace it "
                         "(other settings in it are kept)", EXIT_BAD_INPUT)
    if path.exists() and not path.is_file():
        raise _InitError(f"{path} exists and is not a file — choose another path with --config", EXIT_BAD_INPUT)

    api_key = ""
    key_source = ""
    if api_key_stdin:
        api_key, key_source = w.read_key_from_stdin(), "standard input"
    elif w.env.get("SLSKD_API_KEY"):
        api_key, key_source = w.env["SLSKD_API_KEY"].strip(), "SLSKD_API_KEY"
    _check_key_text(api_key)
    _register(api_key)

    url = w.pick_url(url_flag)
    auth_enabled = w.probe(url)
    if not api_key:
        if auth_enabled and w.interactive:
            api_key, key_source = w.prompt_key(), "prompt"
            _check_key_text(api_key)
            _register(api_key)
        elif auth_enabled:
            raise _InitError("slskd requires an API key: set SLSKD_API_KEY, or pipe it in with --api-key-stdin, "
                             "or run init in a terminal to be asked", EXIT_BAD_INPUT)
        else:
            w.say(f"note: slskd at {url} has authentication disabled; saving no API key")

    version = w.verify(url, api_key)
    config = w.build_config(url, api_key, force)
    written = w.write(config)

    what = f"slskd {version}" if version else "slskd"
    auth = f"API key accepted (from {key_source})" if api_key else "no authentication"
    w.say(f"{what} at {url}: reachable, {auth}")
    w.say(f"config written to {written} (readable only by you)")
    w.say("next: `trayagent doctor` to check the rest, `trayagent run` to start, "
          "`trayagent autostart enable` to start at login")
    return EXIT_OK


def _check_key_text(key: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or any(c.isspace() for c in key):
        raise _InitError("the API key contains spaces or control characters — paste only the key", EXIT_BAD_INPUT)


def _register(key: str) -> None:
    """Make sure even a debug log line of this run cannot show the key."""
    if key:
        from trayagent.logs import register_secret

        register_secret(key)


def _reason(message: str) -> str:
    """The short cause out of the client's 'slskd at URL is unreachable: cause (GET ...)'."""
    marker = "is unreachable: "
    if marker in message:
        message = message.split(marker, 1)[1]
    if message.endswith(")") and " (GET " in message:
        message = message[: message.rindex(" (GET ")]
    return message.replace(" (is slskd running, and on this port?)", "")


__all__ = ["DEFAULT_URL", "normalize_url", "run_init"]
