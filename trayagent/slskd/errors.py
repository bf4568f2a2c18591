"""What can go wrong talking to slskd, as one family of TrayagentErrors with one-line messages.

Its own module, below both the HTTP client and the parser, because both raise these: every
failure is one typed SlskdError whose message the tray can show as it is (no secrets, no
tracebacks, no line breaks from whatever slskd echoed).
"""

from __future__ import annotations

from trayagent.errors import TrayagentError, one_line

MESSAGE_LIMIT = 200  # characters of slskd's own words quoted in a message


class SlskdError(TrayagentError):
    """Any failure talking to slskd. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SlskdUnreachable(SlskdError):
    """No HTTP answer: connection refused/reset, DNS failure, TLS failure or timeout."""


class SlskdUnauthorized(SlskdError):
    """401/403: the key, the login or slskd's CIDR rules refused us."""


class SlskdBadResponse(SlskdError):
    """slskd answered, but with a 5xx, an unexpected status, broken JSON or a wrong shape."""


class SlskdBusy(SlskdError):
    """429: slskd's limiter is full (another enqueue or search POST is running)."""


class SlskdNotFound(SlskdError):
    """404: no such transfer/search/user, or the route does not exist in this version."""


class SlskdInvalidArgument(SlskdError, ValueError):
    """A caller passed an id or username that must not be put in a URL; nothing was sent."""


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` on one line and at most `limit` characters, so an echoed body cannot flood a message."""
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "MESSAGE_LIMIT", "SlskdBadResponse", "SlskdBusy", "SlskdError", "SlskdInvalidArgument", "SlskdNotFound",
    "SlskdUnauthorized", "SlskdUnreachable", "shorten",
]
