"""One download as slskd stores it, and how a state change rewrites it.

Why its own module: the record and `apply_state` are what both the transfer rules and the
scripted plans change; keeping them here lets each of those build on it without the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from trayagent.slskd.simulator.wire import JsonObject, dotnet_number, flags, format_time, format_timespan, is_completed


@dataclass(slots=True)
class TransferRecord:
    """One download as slskd stores it; `to_json` renders the 0.26 REST shape."""

    id: str
    username: str
    filename: str
    size: int
    state: str
    requested_at: float
    enqueued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    bytes_transferred: int = 0
    average_speed: float = 0.0
    place_in_queue: int | None = None
    exception: str | None = None
    attempts: int = 1
    removed: bool = False

    def to_json(self, now: float | None = None) -> JsonObject:
        now = time.time() if now is None else now
        out: JsonObject = {
            "id": self.id,
            "username": self.username,
            "direction": "Download",
            "filename": self.filename,
            "size": self.size,
            "state": self.state,
            "requestedAt": format_time(self.requested_at, False),
        }
        if self.enqueued_at is not None:
            out["enqueuedAt"] = format_time(self.enqueued_at, False)
        if self.started_at is not None:
            out["startedAt"] = format_time(self.started_at, True)
        if self.ended_at is not None:
            out["endedAt"] = format_time(self.ended_at, True)
        out["bytesTransferred"] = self.bytes_transferred
        out["averageSpeed"] = dotnet_number(self.average_speed)
        if self.place_in_queue is not None:
            out["placeInQueue"] = self.place_in_queue
        if self.exception is not None:
            out["exception"] = self.exception
        out["attempts"] = self.attempts
        out["removed"] = self.removed
        remaining = self.size - self.bytes_transferred
        out["bytesRemaining"] = remaining
        if self.started_at is not None:
            end = self.ended_at if self.ended_at is not None else now
            out["elapsedTime"] = format_timespan(max(end - self.started_at, 0.0))
        out["percentComplete"] = dotnet_number(self.bytes_transferred / self.size * 100) if self.size else 0
        if self.average_speed > 0:
            out["remainingTime"] = format_timespan(remaining / self.average_speed)
        return out


def apply_state(rec: TransferRecord, state: str, when: float) -> None:
    """Move `rec` to `state` at `when`, stamping enqueuedAt/startedAt/endedAt as slskd would."""
    names = flags(state)
    if "Remotely" in names and rec.enqueued_at is None:
        rec.enqueued_at = when
    if "InProgress" in names and rec.started_at is None:
        rec.started_at = when
    if state != "Queued, Locally":
        rec.attempts = max(rec.attempts, 1)  # an attempt is under way (or has failed)
    if "Completed" in names:
        if rec.ended_at is None or not is_completed(rec.state):
            rec.ended_at = when
        if rec.average_speed == 0 and rec.started_at is not None and rec.bytes_transferred:
            rec.average_speed = rec.bytes_transferred / max(when - rec.started_at, 1e-3)
    elif state != "Queued, Locally":
        rec.ended_at = None
        rec.exception = None  # the next attempt starts clean
    # else: waiting for slskd's next retry, the failed attempt's endedAt and exception stay
    rec.place_in_queue = None  # dropped whenever the record is rewritten
    rec.state = state


def directory(filename: str) -> str:
    """Remote directory part of a filename: everything before the last '\\' or '/'."""
    cut = max(filename.rfind("\\"), filename.rfind("/"))
    return filename[:cut] if cut >= 0 else ""


def group(records: Iterable[TransferRecord], now: float) -> list[JsonObject]:
    """User groups -> directories -> files, in insertion order."""
    users: dict[str, dict[str, list[JsonObject]]] = {}
    for rec in records:
        users.setdefault(rec.username, {}).setdefault(directory(rec.filename), []).append(rec.to_json(now))
    return [
        {
            "username": user,
            "directories": [{"directory": d, "fileCount": len(files), "files": files} for d, files in dirs.items()],
        }
        for user, dirs in users.items()
    ]
