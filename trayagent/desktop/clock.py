"""Local wall-clock time for the desktop: pause deadlines, quiet hours, batch windows.

The tray, the notification composer and the desktop notifier all compare moments that may come
one naive (local time, as tests and the config write them) and one aware (datetime.now()
.astimezone()); one place decides how such a pair is compared.
"""

from __future__ import annotations

from datetime import datetime


def local_now() -> datetime:
    """Now, as an aware datetime in the local time zone."""
    return datetime.now().astimezone()


def aligned(a: datetime, b: datetime) -> tuple[datetime, datetime]:
    """a and b made comparable: when only one is naive, both as aware local time (as astimezone does)."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        return a.astimezone(), b.astimezone()
    return a, b


def before(a: datetime, b: datetime) -> bool:
    """a < b, tolerating one side naive."""
    a, b = aligned(a, b)
    return a < b


def seconds_between(start: datetime, end: datetime) -> float:
    """end - start in seconds, tolerating one side naive."""
    start, end = aligned(start, end)
    return (end - start).total_seconds()
