"""Value types shared by every layer, and the pure classification of slskd states.

slskd serialises transfer states as .NET flag lists ("Completed, Succeeded"). Everything
that decides what a state *means* lives here so the rules are tested once, with plain data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping

#: Flag names of Soulseek.NET's TransferStates enum.
KNOWN_FLAGS = frozenset(
    {
        "None", "Requested", "Queued", "Initializing", "InProgress", "Completed", "Succeeded",
        "Cancelled", "TimedOut", "Errored", "Rejected", "Aborted", "Locally", "Remotely",
    }
)

#: Failure flags, most specific first: the first present names the reason.
FAILURE_FLAGS: tuple[tuple[str, str], ...] = (
    ("Rejected", "rejected"),
    ("TimedOut", "timedout"),
    ("Aborted", "aborted"),
    ("Errored", "errored"),
)

#: slskd writes this exception on every in-flight transfer when it starts up again.
SHUTDOWN_EXCEPTION = "Application shut down"


class Kind(str, enum.Enum):
    """Where a transfer is in its life."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Kind.SUCCEEDED, Kind.CANCELLED, Kind.FAILED)


@dataclass(frozen=True, slots=True)
class Status:
    """The meaning of one slskd state string."""

    kind: Kind
    reason: str | None = None  # on FAILED: rejected / timedout / aborted / errored / unknown

    @property
    def terminal(self) -> bool:
        return self.kind.terminal

    @property
    def retryable(self) -> bool:
        """Whether slskd may still retry it (so a failure must settle before it is reported)."""
        return self.kind is Kind.FAILED and self.reason != "rejected"


def parse_flags(state: str | None) -> frozenset[str]:
    """Split a flag-list state into its names; tolerant of spacing, case and junk."""
    if not state:
        return frozenset({"None"})
    out = set()
    for part in state.split(","):
        name = part.strip()
        if not name:
            continue
        canon = _CANONICAL.get(name.lower(), name)
        out.add(canon)
    return frozenset(out) or frozenset({"None"})


_CANONICAL = {name.lower(): name for name in KNOWN_FLAGS}
_STATUS_CACHE: dict[str, Status] = {}


def classify(state: str | None) -> Status:
    """Map a raw slskd state string to a Status. Never treats TimedOut as success."""
    key = state or ""
    cached = _STATUS_CACHE.get(key)
    if cached is not None:
        return cached
    status = _classify_flags(parse_flags(state))
    if len(_STATUS_CACHE) < 256:  # hostile servers must not grow this without bound
        _STATUS_CACHE[key] = status
    return status


def _classify_flags(flags: frozenset[str]) -> Status:
    if "Completed" in flags:
        if "Cancelled" in flags:
            return Status(Kind.CANCELLED)
        for flag, reason in FAILURE_FLAGS:
            if flag in flags:
                return Status(Kind.FAILED, reason)
        if "Succeeded" in flags:
            return Status(Kind.SUCCEEDED)
        return Status(Kind.FAILED, "unknown")
    if "InProgress" in flags or "Initializing" in flags:
        return Status(Kind.IN_PROGRESS)
    return Status(Kind.QUEUED)


def parse_time(value: object) -> datetime | None:
    """Parse an slskd timestamp as UTC, with or without 'Z', with 7 fractional digits."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1]
        tz: timezone | None = timezone.utc
    else:
        tz = None
    # .NET writes up to 7 fractional digits; Python accepts at most 6.
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        frac = text[dot + 1 : end][:6]
        text = text[: dot + 1] + frac + text[end:] if frac else text[:dot] + text[end:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=tz or timezone.utc)
    return parsed.astimezone(timezone.utc)


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        return int(value)
    return default


def _float(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(value)
    return 0.0


@dataclass(frozen=True, slots=True)
class Transfer:
    """One slskd download record as seen in one poll. Timestamps stay raw until asked for."""

    id: str
    username: str
    filename: str
    state: str
    size: int = 0
    bytes_transferred: int = 0
    average_speed: float = 0.0
    exception: str | None = None
    attempts: int = 0
    requested_at_raw: str | None = None
    started_at_raw: str | None = None
    ended_at_raw: str | None = None

    @property
    def status(self) -> Status:
        return classify(self.state)

    @property
    def requested_at(self) -> datetime | None:
        return parse_time(self.requested_at_raw)

    @property
    def started_at(self) -> datetime | None:
        return parse_time(self.started_at_raw)

    @property
    def ended_at(self) -> datetime | None:
        return parse_time(self.ended_at_raw)

    @property
    def key(self) -> tuple[str, str]:
        """The (username, filename) pair slskd keeps across re-requests and restarts."""
        return (self.username, self.filename)

    @property
    def is_shutdown_casualty(self) -> bool:
        """Errored by slskd's own restart, to be re-enqueued under a new id after login."""
        return self.exception is not None and SHUTDOWN_EXCEPTION.lower() in self.exception.lower()

    @classmethod
    def from_json(cls, obj: Mapping[str, object], username: str | None = None) -> Transfer | None:
        """Build from one slskd Transfer object; None if it lacks an id or a filename."""
        # Hot path: runs once per transfer per poll (tens of thousands). Exact JSON types take
        # the inline `type(x) is ...` branch; anything else goes through the same helpers as
        # before, so the result is identical for every input.
        get = obj.get
        tid = get("id")
        filename = get("filename")
        if not isinstance(tid, str) or not tid or not isinstance(filename, str) or not filename:
            return None
        user = get("username")
        if not isinstance(user, str) or not user:
            user = username or ""
        state = get("state")
        if not isinstance(state, str):
            state = "None"
        size = get("size")
        if type(size) is not int:
            size = _int(size)
        if size < 0:
            size = 0
        done = get("bytesTransferred")
        if type(done) is not int:
            done = _int(done)
        if done < 0:
            done = 0
        speed = get("averageSpeed")
        if type(speed) is not float or speed != speed:
            speed = _float(speed)
        exc = get("exception")
        if exc is not None and not isinstance(exc, str):
            exc = None
        attempts = get("attempts")
        if type(attempts) is not int:
            attempts = _int(attempts)
        requested = get("requestedAt")
        if requested is not None and type(requested) is not str:
            requested = _str_or_none(requested)
        started = get("startedAt")
        if started is not None and type(started) is not str:
            started = _str_or_none(started)
        ended = get("endedAt")
        if ended is not None and type(ended) is not str:
            ended = _str_or_none(ended)
        # Positional: keyword arguments cost a third more on 10k+ constructions per poll.
        return cls(tid, user, filename, state, size, done, speed, exc, attempts, requested, started, ended)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class EventType(str, enum.Enum):
    ADDED = "added"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONNECTION = "connection"
    SYNC = "sync"  # a playlist sync finished: `status` ok / incomplete / error, `summary` in words


#: Outcome of a finished download -> the event that reports it.
OUTCOME_EVENT = {
    Kind.SUCCEEDED: EventType.COMPLETED,
    Kind.FAILED: EventType.FAILED,
    Kind.CANCELLED: EventType.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Event:
    """Something the user may want to hear about. `seq` is set once the store has it."""

    event: EventType
    at: datetime
    id: str = ""
    username: str = ""
    filename: str = ""
    state: str = ""
    size: int = 0
    bytes_transferred: int = 0
    reason: str | None = None
    error: str | None = None
    status: str | None = None  # connection events: "lost" / "restored"; sync: "ok" / "incomplete" / "error"
    summary: str | None = None  # sync events: the report in one line
    seq: int | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"event": self.event.value}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.event in (EventType.CONNECTION, EventType.SYNC):
            out["status"] = self.status
            if self.summary:
                out["summary"] = self.summary
            if self.error:
                out["error"] = self.error
        else:
            out.update(
                id=self.id,
                username=self.username,
                filename=self.filename,
                state=self.state,
                size=self.size,
                bytes_transferred=self.bytes_transferred,
            )
            if self.event is EventType.FAILED:
                out["reason"] = self.reason
            if self.error:
                out["error"] = self.error
        out["at"] = iso(self.at)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Event:
        return cls(
            event=EventType(str(obj["event"])),
            at=parse_time(obj.get("at")) or datetime.now(timezone.utc),
            id=_str_or_none(obj.get("id")) or "",
            username=_str_or_none(obj.get("username")) or "",
            filename=_str_or_none(obj.get("filename")) or "",
            state=_str_or_none(obj.get("state")) or "",
            size=_int(obj.get("size")),
            bytes_transferred=_int(obj.get("bytes_transferred")),
            reason=_str_or_none(obj.get("reason")),
            error=_str_or_none(obj.get("error")),
            status=_str_or_none(obj.get("status")),
            summary=_str_or_none(obj.get("summary")),
            seq=_int(seq) if (seq := obj.get("seq")) is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Finished:
    """A download whose end has been recorded (and reported, unless it predates the agent)."""

    transfer_id: str
    username: str
    filename: str
    size: int
    outcome: Kind
    reason: str | None
    state: str
    error: str | None
    first_seen: datetime
    finished_at: datetime
    reported: bool = True


@dataclass(slots=True)
class Progress:
    """Aggregate numbers for the tray's icon and tooltip."""

    downloading: int = 0
    queued: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    speed: float = 0.0

    @property
    def fraction(self) -> float:
        return min(self.bytes_done / self.bytes_total, 1.0) if self.bytes_total > 0 else 0.0


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, the one format trayagent writes."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


__all__ = [
    "AgentState", "Event", "EventType", "Finished", "Kind", "Progress", "Status", "Transfer",
    "classify", "iso", "parse_flags", "parse_time", "utcnow",
]


@dataclass(frozen=True, slots=True)
class AgentState:
    """An immutable picture of the agent after a poll: what the tray draws and the menu lists."""

    connected: bool = False  # the last poll of slskd succeeded
    polled: bool = True  # False only before the agent's first poll: "connecting", not "unreachable"
    logged_in: bool | None = None  # slskd logged in to the Soulseek server; None = unknown
    active: tuple[Transfer, ...] = ()  # tracked downloads not yet ended (their latest record)
    progress: Progress = field(default_factory=Progress)
    recent: tuple[Finished, ...] = ()  # newest first
    failed_unseen: int = 0  # failures since the user last opened the menu
    last_error: str | None = None  # why the last poll failed, secret-free
    web_url: str = ""  # slskd's web UI
    download_dir: str | None = None  # local folder downloads land in, when known
    sync_status: str | None = None  # playlist sync progress while one runs, e.g. "Sync 3/10"
