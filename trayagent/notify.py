"""Where events go: a Notifier receives every event the agent reports, in order.

Kept I/O-only and tolerant: a broken sink is logged and never stops the agent.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import IO, Iterable, Protocol

from trayagent.model import Event

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def notify(self, events: Iterable[Event]) -> None: ...

    def close(self) -> None: ...


class NullNotifier:
    """Notifications switched off."""

    def notify(self, events: Iterable[Event]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesNotifier:
    """One JSON object per line per event: the machine-readable stream of `run --json`."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def notify(self, events: Iterable[Event]) -> None:
        lines = [json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events]
        if not lines:
            return
        with self._lock:
            self._stream.write("".join(lines))
            self._stream.flush()

    def close(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass
