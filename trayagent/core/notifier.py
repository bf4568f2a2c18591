"""The Notifier seam: what receives the agent's events, in order.

In core so the agent and delivery (which hand events out) and the desktop notifier and the
console/JSON sinks (which take them) share one definition without importing each other.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from trayagent.core.model import Event


class Notifier(Protocol):
    """A sink of events. notify() raises only when it did not take them (they are kept for later)."""

    def notify(self, events: Iterable[Event]) -> None: ...

    def close(self) -> None: ...
