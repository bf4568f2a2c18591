"""`trayagent doctor`: check the whole setup, one line per check, each problem with its fix.

Every check runs in isolation: a missing optional module, a broken backend or a bug in one
check becomes a FAIL line for that check and the rest still run, because doctor is what a
user reaches for precisely when something is broken. Nothing secret is ever printed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, TextIO
from urllib.parse import urlsplit

if TYPE_CHECKING:  # each check imports what it needs itself: a missing module fails only that check
    from trayagent.config import Config
    from trayagent.desktop.notify_backends import NotificationBackend
    from trayagent.slskd.client import SlskdClient
    from trayagent.slskd.errors import SlskdError

log = logging.getLogger(__name__)

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
#: Doctor should answer quickly even when slskd hangs.
DOCTOR_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One printed line: level, what was checked, and what was found (with the fix)."""

    level: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.level:<4} {self.name}: {self.message}"


#: Why the checks after check_auth have nothing to check.
NEEDS_SLSKD = "needs a reachable, authenticated slskd"


@dataclass
class _Doctor:
    """Holds what earlier checks learned (config, client) for the later ones."""

    config_path: Path | None
    env: Mapping[str, str]
    out: TextIO
    notify: bool
    home: Path | None
    platform: str | None
    results: list[CheckResult] = field(default_factory=list)
    config: Config | None = None
    client: SlskdClient | None = None
    reachable: bool = False
    authed: bool = False

    def __post_init__(self) -> None:
        self._secrets = [v for k in ("SLSKD_API_KEY", "SLSKD_PASSWORD") if (v := self.env.get(k))]

    # ----------------------------------------------------------------- output

    def _clean(self, text: str) -> str:
        """Remove anything secret from a message, whatever produced it."""
        from trayagent.logs import redact, scrub

        secrets = list(self._secrets)
        if self.config is not None:
            secrets += [self.config.slskd.api_key, self.config.slskd.password]
        text = scrub(text, secrets)
        try:
            text = redact(text)
        except Exception:  # noqa: BLE001 - redaction of registered secrets is a bonus
            pass
        return " ".join(text.split())

    def emit(self, level: str, name: str, message: str) -> None:
        result = CheckResult(level, name, self._clean(message))
        self.results.append(result)
        self.out.write(result.line() + "\n")
        self.out.flush()

    def _skipped(self, name: str, ready: bool, why: str) -> bool:
        """A SKIP line when an earlier check left this one nothing to check (then True)."""
        if not ready:
            self.emit(SKIP, name, why)
        return not ready

    def run(self, name: str, check: Callable[[], None]) -> None:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            log.debug("doctor check %s crashed", name, exc_info=True)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.emit(FAIL, name, f"check crashed ({detail}) — run with -vv and see the log; please report it")

    # ----------------------------------------------------------------- checks

    def check_config(self) -> None:
        from trayagent.config import load_config
        from trayagent.errors import ConfigError
        from trayagent.paths import default_config_path

        path = Path(self.config_path).expanduser() if self.config_path is not None else default_config_path()
        exists = path.is_file()
        try:
            self.config = load_config(path, self.env)
        except ConfigError as exc:
            if not exists and not self.env.get("SLSKD_URL"):
                self.emit(FAIL, "config", f"no config file at {path} — run `trayagent init` "
                          "(or set SLSKD_URL and SLSKD_API_KEY)")
            else:
                self.emit(FAIL, "config", f"{exc} — fix it, or rewrite it with `trayagent init --force`")
            return
        overrides = sorted(
            name for name, dotted in (("SLSKD_URL", "slskd.url"), ("SLSKD_API_KEY", "slskd.api_key"),
                                      ("SLSKD_USERNAME", "slskd.username"), ("SLSKD_PASSWORD", "slskd.password"))
            if dotted in self.config.env_overrides
        )
        note = f"; overridden by {', '.join(overrides)}" if overrides else ""
        if not exists:
            self.emit(WARN, "config", f"no file at {path}; using the environment{note} — "
                      "run `trayagent init` so autostart (which has no shell environment) works too")
            return
        self.emit(OK, "config", f"{path} (valid{note})")
        if os.name == "posix":
            mode = path.stat().st_mode & 0o777
            cfg, env_set = self.config.slskd, self.config.env_overrides
            has_secret = bool(
                any(k in self.config.file_values for k in ("slskd.api_key", "slskd.password"))
                or (cfg.api_key and "slskd.api_key" not in env_set)
                or (cfg.password and "slskd.password" not in env_set)
            )
            if mode & 0o077 and has_secret:
                self.emit(WARN, "config permissions",
                          f"{path} is readable by other users (mode {mode:o}) and may hold the API key — "
                          f"run `chmod 600 {path}`")

    def _where(self, key: str) -> str:
        """Name the setting the user must fix: the env var when it overrode the file."""
        env_names = {"url": "SLSKD_URL", "api_key": "SLSKD_API_KEY"}
        if self.config is not None and f"slskd.{key}" in self.config.env_overrides:
            return f"{env_names[key]} (set in the environment)"
        return f"[slskd] {key}"

    def _make_client(self, config: Config) -> SlskdClient:
        from trayagent.slskd.client import SlskdClient

        cfg = config.slskd
        timeout = min(cfg.timeout, DOCTOR_TIMEOUT) if cfg.timeout and cfg.timeout > 0 else DOCTOR_TIMEOUT
        self.client = SlskdClient(dataclasses.replace(cfg, timeout=timeout))
        return self.client

    def _slskd(self) -> tuple[Config, SlskdClient]:
        """The config and client of check_reachable, for the checks that run only once it answered."""
        assert self.config is not None and self.client is not None, "checked by the caller's _skipped"
        return self.config, self.client

    def check_reachable(self) -> None:
        from trayagent.slskd.errors import SlskdError, SlskdUnreachable

        name = "slskd reachable"
        if self.config is None:
            self.emit(SKIP, name, "no usable config")
            return
        client = self._make_client(self.config)
        url = _safe_url(client.url)
        if client.health():
            self.reachable = True
            self.emit(OK, name, f"{url} (/health OK)")
            return
        # health() only says no; the anonymous API route says why.
        try:
            client.session_enabled()
        except SlskdUnreachable as exc:
            self.emit(FAIL, name, f"{_unreachable_reason(str(exc))} at {url} — is slskd running? "
                      f"check {self._where('url')}")
            return
        except SlskdError as exc:
            self.emit(FAIL, name, f"something answers at {url} but it is not slskd's API ({_status(exc)}) — "
                      f"check {self._where('url')}, including slskd's URL base (web.url_base), "
                      "e.g. http://host:5030/slskd")
            return
        self.reachable = True
        self.emit(WARN, name, f"{url} answers its API but /health is not OK (slskd reports itself unhealthy) — "
                  "check slskd's own log")

    def check_auth(self) -> None:
        from trayagent.slskd.errors import SlskdUnauthorized

        name = "auth"
        if self._skipped(name, self.reachable, "slskd not reachable"):
            return
        config, client = self._slskd()
        cfg = config.slskd
        enabled = client.session_enabled()
        if not enabled:
            self.authed = True
            if _is_loopback(cfg.url):
                self.emit(OK, name, "slskd has authentication disabled (acceptable: it is only reached via localhost)")
            else:
                self.emit(WARN, name, "slskd has authentication disabled, so anyone who can reach it controls it — "
                          "enable web.authentication in slskd and set [slskd] api_key")
            return
        if not cfg.api_key and not (cfg.username and cfg.password):
            self.emit(FAIL, name, "slskd requires authentication but no credentials are configured — "
                      "set [slskd] api_key (or SLSKD_API_KEY), e.g. with `trayagent init --force`")
            return
        using = "API key" if cfg.api_key else f"web login ({cfg.username})"
        try:
            client.check_auth()
        except SlskdUnauthorized as exc:
            code = exc.status or 401
            if cfg.api_key:
                fix = (f"check {self._where('api_key')} matches slskd's web.authentication.api_key "
                       "or an api_keys entry, and that its cidr allows this machine")
            else:
                fix = "check [slskd] username and password (slskd's web.authentication settings), or use api_key"
            self.emit(FAIL, name, f"slskd rejected the {using} ({code}) — {fix}")
            return
        self.authed = True
        self.emit(OK, name, f"authentication enabled, {using} accepted")

    def check_server(self) -> None:
        name = "soulseek server"
        if self._skipped(name, self.authed, NEEDS_SLSKD):
            return
        state = self._slskd()[1].server_state()
        shown = f" ({state.state})" if state.state else ""
        if state.logged_in:
            self.emit(OK, name, f"connected and logged in{shown}")
        elif state.connected:
            self.emit(WARN, name, f"connected but not logged in{shown} — check slskd's soulseek username "
                      "and password (soulseek.username / soulseek.password) and slskd's log")
        else:
            self.emit(WARN, name, f"not connected{shown} — slskd keeps retrying on its own; check its network "
                      "or VPN and its log (downloads wait until it is back)")

    def check_version(self) -> None:
        name = "slskd version"
        if not self._skipped(name, self.authed, NEEDS_SLSKD):
            self.emit(OK, name, self._slskd()[1].version())

    def check_state(self) -> None:
        """The state database opens and reads: a damaged one stops `run` at once, so say so here."""
        from trayagent.errors import StoreError
        from trayagent.store import Store, existing_state

        name = "state database"
        if self._skipped(name, self.config is not None, "no usable config"):
            return
        assert self.config is not None
        path = existing_state(self.config.state_path)
        if path is None:
            self.emit(OK, name, f"{self.config.state_path} (created on the first `trayagent run`)")
            return
        try:
            store = Store(path, readonly=True)
            try:
                store.recent(1)
            finally:
                store.close()
        except StoreError as exc:
            self.emit(FAIL, name, str(exc))
            return
        self.emit(OK, name, str(path))

    def check_tray(self) -> None:
        """Which tray the agent would use here, and why each better one is not used."""
        from trayagent.desktop import traybackend as tb

        name = "tray"
        setting = self.config.tray.backend if self.config is not None else "auto"
        if setting == "none":
            self.emit(OK, name, '[tray] backend = "none": no tray icon; notifications and the JSON stream only')
            return
        ladder = tb.plan(setting, lambda rung: tb.probe(rung, self.env), self.platform or sys.platform, self.env)
        chosen = tb.choose(ladder)
        skipped = [f"{r.name}: {r.problem}" for r in ladder if r.problem is not None]
        if chosen is None:
            if _no_display(self.env, self.platform):
                self.emit(WARN, name, "no graphical session (DISPLAY/WAYLAND_DISPLAY unset), so no tray icon — "
                          "fine on a server: use `trayagent run --headless` (see packaging/trayagent.service)")
                return
            why = "; ".join(skipped) or f'[tray] backend = "{setting}" allows none here'
            self.emit(FAIL, name, f"no tray backend works here ({why}) — the agent still runs with notifications "
                      "only; use a panel with a StatusNotifierItem tray, or install the gtk extra for XEmbed trays "
                      "(see README, Tray)")
            return
        message = f"{chosen.name} in use ({tb.DESCRIPTIONS.get(chosen.name, 'pystray')})"
        if skipped:
            message += "; not used: " + "; ".join(skipped)
        later = [r.name for r in ladder[ladder.index(chosen) + 1:] if r.problem is None]
        if later:
            message += f"; fallback if it fails: {', '.join(later)}"
        if chosen.name == "xorg":
            self.emit(WARN, name, message + " — for the full menu use a panel with StatusNotifierItem support "
                      "or install the gtk extra (pip install 'trayagent[gtk]'), then restart")
        else:
            self.emit(OK, name, message)

    def check_notifications(self) -> None:
        from trayagent.desktop.notify_backends import choose_backend

        disabled = self.config is not None and not self.config.notifications.enabled
        backend = choose_backend()
        try:
            self._notifications_with(backend, disabled)
        finally:
            stop = getattr(backend, "stop", None)  # a D-Bus backend holds a connection and a listener
            if stop is not None:
                stop()

    def _notifications_with(self, backend: NotificationBackend, disabled: bool) -> None:
        from trayagent.desktop.notification import Notification

        name = "notifications"
        if backend.name == "none":
            reason = getattr(backend, "reason", "no notification backend")
            level = OK if disabled else WARN
            suffix = " (and they are disabled in [notifications])" if disabled else ""
            self.emit(level, name, f"{reason}{suffix}")
            return
        state = " (disabled in [notifications] enabled = false)" if disabled else ""
        if getattr(backend, "actions", True) is False:
            state += "; no buttons: this notification daemon does not offer actions"
        if not self.notify:
            self.emit(OK, name, f"backend {backend.name}{state}; `trayagent doctor --notify` sends a test")
            return
        try:
            backend.send(Notification(title="trayagent test", body="If you can read this, notifications work."))
        except Exception as exc:  # noqa: BLE001 - any backend failure is the answer
            self.emit(FAIL, name, f"backend {backend.name} could not show a test notification ({exc}) — "
                      "is a notification daemon running in this session (e.g. dunst, your desktop's)?")
            return
        self.emit(OK, name, f"backend {backend.name}: test notification sent (check that it appeared){state}")

    def check_autostart(self) -> None:
        from trayagent.desktop import autostart

        name = "autostart"
        args = autostart.run_args(self.config_path)
        env = self.env if self.home is not None else None
        st = autostart.status(self.platform, self.home, args=args, env=env)
        if st.installed and st.matches:
            self.emit(OK, name, f"enabled ({st.location})")
        elif st.installed:
            self.emit(WARN, name, f"{st.problem} ({st.location}) — run `trayagent autostart enable` to repair it")
        elif st.problem:
            self.emit(OK, name, f"not active: {st.problem} ({st.location}) — `trayagent autostart enable` turns it on")
        else:
            self.emit(OK, name, "not enabled (optional) — `trayagent autostart enable` starts the tray at login")

    def check_log(self) -> None:
        from trayagent.paths import log_dir
        from trayagent.logs import LOG_FILE_NAME

        name = "log file"
        path = log_dir() / LOG_FILE_NAME
        if path.is_file():
            if os.access(path, os.W_OK):
                self.emit(OK, name, f"{path} ({path.stat().st_size} bytes)")
            else:
                self.emit(FAIL, name, f"{path} is not writable — fix its owner/permissions")
            return
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if os.access(parent, os.W_OK):
            self.emit(OK, name, f"{path} (created on the first `trayagent run`)")
        else:
            self.emit(WARN, name, f"{path} cannot be created ({parent} is not writable) — the agent will log "
                      "to stderr only; fix the directory's permissions")

    # ----------------------------------------------------------------- driver

    def run_all(self) -> int:
        self.run("config", self.check_config)
        try:
            self.run("slskd reachable", self.check_reachable)
            self.run("auth", self.check_auth)
            self.run("soulseek server", self.check_server)
            self.run("slskd version", self.check_version)
        finally:
            if self.client is not None:
                try:
                    self.client.close()
                except Exception:  # noqa: BLE001
                    pass
        self.run("state database", self.check_state)
        self.run("tray", self.check_tray)
        self.run("notifications", self.check_notifications)
        self.run("autostart", self.check_autostart)
        self.run("log file", self.check_log)
        fails = sum(r.level == FAIL for r in self.results)
        warns = sum(r.level == WARN for r in self.results)
        if fails:
            self.out.write(f"{fails} problem(s) to fix, {warns} warning(s)\n")
        else:
            self.out.write(f"all checks passed ({warns} warning(s))\n" if warns else "all checks passed\n")
        self.out.flush()
        return 1 if fails else 0


def run_doctor(
    config_path: Path | None,
    env: Mapping[str, str],
    out: TextIO,
    notify: bool = False,
    *,
    home: Path | None = None,
    platform: str | None = None,
) -> int:
    """Run every check, print one line each; return 0 if nothing FAILed, else 1.

    `home`/`platform` only redirect the autostart check (tests).
    """
    return _Doctor(config_path, env, out, notify, home, platform).run_all()


# --------------------------------------------------------------------------- helpers


def _safe_url(url: str) -> str:
    """The URL without any user:password part (config rejects those, but be sure)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


_UNREACHABLE_RE = re.compile(r"is unreachable: (?P<reason>.*?)(?: \((?:GET|POST|PUT|DELETE|HEAD) [^)]*\))?$")


def _unreachable_reason(message: str) -> str:
    """'connection refused' out of the client's longer 'slskd at ... is unreachable: ...'."""
    match = _UNREACHABLE_RE.search(message)
    reason = match.group("reason") if match else message
    return reason.replace(" (is slskd running, and on this port?)", "")


def _status(exc: SlskdError) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if status else "not slskd's JSON"


def _is_loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_display(env: Mapping[str, str], platform: str | None) -> bool:
    name = (platform or sys.platform).lower()
    if name.startswith("win") or name == "darwin":
        return False
    return not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


__all__ = ["CheckResult", "run_doctor"]
