"""Logging setup: a rotating private log file, a terse stderr stream, and secret redaction.

Secrets (API key, password, JWTs) must never reach a log line, even when a library logs a
header dict or a traceback quotes a request. Every handler therefore carries a
RedactingFilter that scrubs registered secret values and the usual auth-header patterns.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable

from trayagent import paths

log = logging.getLogger(__name__)

APP_LOGGER = "trayagent"
LOG_FILE_NAME = "trayagent.log"
MAX_BYTES = 1_000_000
BACKUP_COUNT = 3
NOISY_LOGGERS = ("urllib3", "apscheduler", "PIL")
REDACTED = "***"

#: Secrets shorter than this are never redacted: hiding "a" would mangle every line.
MIN_SECRET_LENGTH = 4
#: slskd's shortest API key (Core/Options.cs: StringLength(255, MinimumLength = 16)). A secret
#: shorter than that is redacted only as a whole word, so a too-short key such as "lskd" cannot
#: turn every "slskd" in a log line into "s***".
SLSKD_MIN_KEY_LENGTH = 16
SLSKD_MAX_KEY_LENGTH = 255

_MARK = "_trayagent_handler"
_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None

#: Header and JSON-body shapes that carry credentials, whatever their value.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # X-API-Key: abc   'X-API-Key': 'abc'   "x-api-key"="abc"
    (re.compile(r"""(x-api-key['"]?\s*[:=]\s*['"]?)[^\s'",;}]+""", re.IGNORECASE), r"\1" + REDACTED),
    # Bearer eyJ... (token-like values only, so prose such as "Bearer token" survives)
    (re.compile(r"""\b(bearer\s+)[A-Za-z0-9\-._~+/]{12,}=*""", re.IGNORECASE), r"\1" + REDACTED),
    # Authorization: Basic dXNlcjpwYXNz
    (re.compile(r"""(authorization['"]?\s*[:=]\s*['"]?basic\s+)[A-Za-z0-9+/]+=*""", re.IGNORECASE),
     r"\1" + REDACTED),
    # "password": "x", "token": "x", 'api_key': 'x' (JSON bodies and dict reprs)
    (
        re.compile(r"""(['"](?:password|token|api_?key)['"]\s*:\s*['"])(?:[^'"\\]|\\.)*""", re.IGNORECASE),
        r"\1" + REDACTED,
    ),
)


def secret_pattern(secrets: Iterable[str | None]) -> re.Pattern[str] | None:
    """One regex for these secrets, with the length floor every redaction in trayagent obeys.

    Secrets under MIN_SECRET_LENGTH are left out; those under SLSKD_MIN_KEY_LENGTH match only
    as whole words (not next to a letter or digit); longer ones match anywhere.
    """
    usable = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
    if not usable:
        return None
    parts = []
    for secret in sorted(usable, key=len, reverse=True):  # longest first: replaced whole
        text = re.escape(secret)
        if len(secret) < SLSKD_MIN_KEY_LENGTH:
            text = rf"(?<![^\W_]){text}(?![^\W_])"
        parts.append(text)
    return re.compile("|".join(parts))


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Replace these secrets in text by '***' (for messages that never pass a log handler)."""
    pattern = secret_pattern(secrets)
    return pattern.sub(REDACTED, text) if pattern is not None and text else text


def register_secret(value: str | None) -> None:
    """Remember a secret so every later log line has it replaced by '***'."""
    global _secret_re
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _secret_re = secret_pattern(_secrets)


def clear_secrets() -> None:
    """Forget every registered secret (tests, and a config reload that changed them)."""
    global _secret_re
    with _secrets_lock:
        _secrets.clear()
        _secret_re = None


def redact(text: str) -> str:
    """Return text with registered secrets and credential patterns replaced by '***'."""
    if not text:
        return text
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for regex, repl in _PATTERNS:
        text = regex.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrub secrets from the message, the traceback and the stack of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the record (nor leak args raw)
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and not record.exc_text:
            # Format the traceback now so the formatter uses the redacted text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for `run --json` where stderr may be machine-read too."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, str] = {
            "at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are created 0600, never briefly world-readable."""

    def _open(self) -> IO[str]:  # type: ignore[override]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.baseFilename, flags, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # tighten a file that pre-existed with a looser mode
            return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def _stderr_level(verbosity: int) -> int:
    if verbosity >= 2:
        return logging.DEBUG
    if verbosity == 1:
        return logging.INFO
    if verbosity == 0:
        return logging.WARNING
    return logging.ERROR  # -q


def remove_handlers() -> None:
    """Detach and close every handler setup_logging installed (tests, and re-setup)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()


def _mark(handler: logging.Handler, level: int, formatter: logging.Formatter,
          redactor: RedactingFilter) -> logging.Handler:
    """Set up one of our handlers the same way, marked so remove_handlers finds it."""
    handler.setLevel(level)
    handler.setFormatter(formatter)
    handler.addFilter(redactor)
    setattr(handler, _MARK, True)
    return handler


def _open_log_file(log_dir: Path | None) -> tuple[PrivateRotatingFileHandler, Path] | str:
    """The rotating file handler and its path in a 0700 directory, or why it cannot be written."""
    try:
        path = paths.make_private_dir(Path(log_dir) if log_dir is not None else paths.log_dir()) / LOG_FILE_NAME
        # backslashreplace: a lone surrogate in a remote file name must not lose the line.
        handler = PrivateRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8",
                                             errors="backslashreplace")
    except OSError as exc:
        return f"{exc.strerror or exc} ({exc.filename or log_dir})"
    return handler, path


def setup_logging(
    verbosity: int = 0,
    log_dir: Path | None = None,
    stream: IO[str] | None = None,
    json_mode: bool = False,
) -> Path | None:
    """Install trayagent's handlers; return the log file path, or None if it can't be written.

    Handlers go on the Python root logger so warnings from requests/urllib3/apscheduler are
    redacted and land in the same file; the "trayagent" logger's level sets our verbosity.
    Calling it again replaces the handlers instead of adding more.
    """
    remove_handlers()
    root = logging.getLogger()
    redactor = RedactingFilter()
    stderr_level = _stderr_level(verbosity)
    file_level = logging.DEBUG if verbosity >= 1 else logging.INFO
    console_format = JsonFormatter() if json_mode else logging.Formatter("trayagent: %(levelname)s: %(message)s")
    root.addHandler(_mark(logging.StreamHandler(sys.stderr if stream is None else stream), stderr_level,
                          console_format, redactor))

    opened = _open_log_file(log_dir)
    file_problem, log_path = (opened, None) if isinstance(opened, str) else (None, opened[1])
    if not isinstance(opened, str):
        plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        root.addHandler(_mark(opened[0], file_level, plain, redactor))

    logging.getLogger(APP_LOGGER).setLevel(min(stderr_level, file_level) if log_path is not None else stderr_level)
    noisy_level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(noisy_level)
    # Third-party loggers inherit the root level; ours is set explicitly above.
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.captureWarnings(True)

    if file_problem:
        log.warning("cannot write the log file: %s; logging to stderr only", file_problem)
    log.debug("logging set up: verbosity=%d file=%s", verbosity, log_path)
    return log_path


__all__ = [
    "JsonFormatter", "PrivateRotatingFileHandler", "RedactingFilter", "clear_secrets", "redact", "register_secret",
    "remove_handlers", "scrub", "secret_pattern", "setup_logging",
]
