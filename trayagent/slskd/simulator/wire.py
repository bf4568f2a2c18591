"""slskd 0.26's wire format: how values are written (System.Text.Json's dates, TimeSpans and
numbers, TransferStates flag strings), how ASP.NET binds what a client sends (GUIDs, bools, JSON
bodies), and the answer a route gives.

Why one module: every other part of the simulator must write and read exactly these shapes, and
a difference from slskd in any one of them would let a forgiving client pass.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

VERSION = "0.26.0.0"

#: A JSON document as sent or received; read it by narrowing (isinstance) where it is used.
Json = object
JsonObject = dict[str, object]

#: Soulseek.NET TransferStates flag values (reference section 2).
FLAG_VALUES: dict[str, int] = {
    "None": 0, "Requested": 1, "Queued": 2, "Initializing": 4, "InProgress": 8, "Completed": 16,
    "Succeeded": 32, "Cancelled": 64, "TimedOut": 128, "Errored": 256, "Rejected": 512,
    "Aborted": 1024, "Locally": 2048, "Remotely": 4096,
}
#: TransferStateCategories.Completed: what `DELETE downloads/all/completed` and `remove=true` accept.
COMPLETED_SET = frozenset({16, 48, 80, 144, 272, 528, 1040})

_GUID_RE = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}"
    r"|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}"
    r"|\([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\))$"
)


# --------------------------------------------------------------------------- states


def flags_value(state: str) -> int:
    """Numeric TransferStates value of a flag string; unknown names count as 0."""
    return sum(FLAG_VALUES.get(part.strip(), 0) for part in state.split(",") if part.strip())


def flags(state: str) -> set[str]:
    """The flag names in a state string ("Completed, Succeeded" -> {"Completed", "Succeeded"})."""
    return {part.strip() for part in state.split(",") if part.strip()}


def is_completed(state: str) -> bool:
    """slskd's terminal test: the Completed flag is set."""
    return "Completed" in flags(state)


# --------------------------------------------------------------------------- values written


def format_time(epoch: float, utc_z: bool) -> str:
    """A DateTime as System.Text.Json writes it: ISO 8601, up to 7 fractional digits with trailing
    zeros trimmed (none on a whole second); `Z` only for UTC-kind values."""
    whole = math.floor(epoch)
    ticks = int(round((epoch - whole) * 10_000_000))
    if ticks >= 10_000_000:
        whole, ticks = whole + 1, ticks - 10_000_000
    stamp = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ticks:07d}".rstrip("0")
    return f"{stamp}{'.' + frac if frac else ''}{'Z' if utc_z else ''}"


def format_timespan(seconds: float) -> str:
    """.NET TimeSpan constant ("c") format: [-][d.]hh:mm:ss[.fffffff]."""
    neg = seconds < 0
    ticks = int(round(abs(seconds) * 10_000_000))
    days, rem = divmod(ticks, 864_000_000_000)
    hours, rem = divmod(rem, 36_000_000_000)
    minutes, rem = divmod(rem, 600_000_000)
    secs, frac = divmod(rem, 10_000_000)
    out = f"{'-' if neg else ''}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{secs:02d}"
    return out + (f".{frac:07d}" if frac else "")


def dotnet_number(value: float) -> float | int:
    """System.Text.Json writes integral doubles without a fraction ("3", not "3.0")."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def dumps(obj: Json) -> bytes:
    """Compact JSON; ensure_ascii mirrors .NET's default encoder, which escapes every non-ASCII character."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def wall(mono: float) -> float:
    """Convert a monotonic instant to epoch seconds (plans run on the monotonic clock)."""
    return time.time() - (time.monotonic() - mono)


# --------------------------------------------------------------------------- values read


def parse_guid(text: str) -> str | None:
    """Normalise the GUID spellings .NET's Guid.Parse accepts; None if it is not one."""
    if not _GUID_RE.match(text):
        return None
    return str(uuid.UUID(text.strip("{}()")))


def parse_bool(value: str | None, default: bool) -> bool | None:
    """ASP.NET bool model binding: true/false, case-insensitive; None means a 400."""
    if value is None or value == "":
        return default
    low = value.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return None


# --------------------------------------------------------------------------- requests and answers


class Headers(Protocol):
    """Request headers as http.server parses them: looked up by name, case-insensitively."""

    def get(self, name: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """One request as the listener read it off the socket."""

    method: str
    raw_path: str  # as sent (URL base included), without the query string
    query: dict[str, str]  # the first value of each parameter
    headers: Headers
    body: bytes
    closing: threading.Event  # set when the listener that took this request goes away


@dataclass(slots=True)
class Response:
    """What a route answers; `abort` drops the connection instead, `auth` names the credential kind."""

    status: int
    body: bytes = b""
    ctype: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    abort: bool = False  # drop the connection without answering
    auth: str | None = None


def json_response(status: int, obj: Json) -> Response:
    return Response(status, dumps(obj), "application/json; charset=utf-8")


def empty(status: int) -> Response:
    return Response(status)


def error_500(message: str) -> Response:
    """Unhandled exceptions: 500 with a JSON string body (reference section 0)."""
    return json_response(500, message)


def json_body(headers: Headers, body: bytes) -> tuple[Json, Response | None]:
    """Parse a [FromBody] JSON payload the way ASP.NET would reject it: 415 / 400."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        return None, empty(415)
    try:
        return json.loads(body.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError):
        return None, empty(400)


def json_object_body(headers: Headers, body: bytes) -> JsonObject | Response:
    """A [FromBody] payload that must be a JSON object (a model class): the object, or 415/400."""
    data, err = json_body(headers, body)
    if err is not None:
        return err
    if not isinstance(data, dict):
        return empty(400)
    return data
