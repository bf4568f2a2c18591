"""slskd's JSON read into the agent's types: the download list, parsed or read by id only.

Pure functions, apart from logging: they run on every poll over tens of thousands of records,
so the hot paths are written for speed (see parse_downloads, _unrecorded) and every shortcut
gives the same result as the plain loop for every input (tests/test_slskd_client.py).
Anything that is not what slskd sends raises SlskdBadResponse or is skipped and counted.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from itertools import compress, repeat
from operator import is_, not_
from typing import AbstractSet, Any, Callable, Mapping

from trayagent.core.model import Kind, Transfer, classify
from trayagent.errors import one_line
from trayagent.slskd.errors import MESSAGE_LIMIT, SlskdBadResponse, shorten

#: Any value slskd's JSON decodes to; narrowed with isinstance/type checks where it is read.
JSON = object
#: One JSON object from slskd (a transfer, a search, the application state).
JSONObject = dict[str, object]

try:  # orjson is a default dependency; the stdlib parser is the fallback without it
    import orjson

    _loads = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError, TypeError)
except ImportError:  # pragma: no cover - exercised by the agent run without orjson (tests)
    orjson = None  # type: ignore[assignment]

    def _loads(body: bytes | str) -> JSON:  # type: ignore[misc]
        return json.loads(body)

    _JSON_ERRORS = (ValueError, TypeError)

log = logging.getLogger(__name__)


def load_json(body: bytes | str, what: str) -> JSON:
    """One body of slskd's decoded; an empty or broken one raises SlskdBadResponse naming `what`."""
    if not body:
        raise SlskdBadResponse(f"slskd sent an empty body for {what}")
    try:
        return _loads(body)
    except _JSON_ERRORS as exc:
        detail = one_line(str(exc))[:100]
    if orjson is not None:
        # orjson refuses a lone surrogate escape ("\ud800"), which is legal in slskd's .NET
        # strings; the stdlib parser keeps it, so one odd file name does not fail every poll.
        try:
            return json.loads(body)
        except (ValueError, TypeError):
            pass
    raise SlskdBadResponse(f"slskd sent invalid JSON for {what}: {detail}")


def error_message(raw: bytes) -> str:
    """slskd's words in an error body, on one short line: usually a JSON string, sometimes text, often empty."""
    if not raw:
        return ""
    try:
        value = _loads(raw)
    except _JSON_ERRORS:
        try:
            return shorten(raw.decode("utf-8", "replace"))
        except Exception:  # pragma: no cover - decode with "replace" does not raise
            return ""
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, dict):
        for key in ("message", "title", "detail", "error"):
            if isinstance(value.get(key), str):
                return shorten(value[key])
    return shorten(json.dumps(value)[:MESSAGE_LIMIT])


class Downloads(list[Transfer]):
    """A parsed download list; `skipped` counts the records in it that could not be read.

    `recorded_ids` holds the ids of records left unbuilt because the caller's `known` map
    already records their end with the same outcome (see parse_downloads).

    `by_id` is True when slskd's whole list was read for its ids only (see known_ids_only):
    nothing in it was new, no record was built, and `recorded_ids` holds every id it lists.
    """

    skipped: int = 0
    recorded_ids: list[str] | tuple[str, ...] = ()
    by_id: bool = False


#: A record's `"id"` key, with its value when that is a plain JSON string (no escapes). slskd
#: writes compact JSON; the optional spaces cover a re-indenting proxy.
_ID_KEY = re.compile(rb'"id"(?:\s*:\s*"([^"\\]*)")?')


def listed_ids(body: bytes) -> list[str] | None:
    """Every record id in a whole download list, found without parsing it; None when unsure.

    A quote cannot stand unescaped inside a JSON string, so `"id"` followed by a colon occurs
    only as a key. Each occurrence must carry a plain string value; anything else (an id that
    is a number, holds an escape or is not ASCII, a string value that reads `"id"`, a body that
    is not one JSON array, a list without ids) answers None, and the caller parses the body.
    So the ids returned are never fewer than the records a parse would see.
    """
    if not body[:64].lstrip().startswith(b"[") or not body[-64:].rstrip().endswith(b"]"):
        return None
    raw = _ID_KEY.findall(body)
    if not raw or b"" in raw:
        return None
    try:
        return [r.decode("ascii") for r in raw]
    except UnicodeDecodeError:
        return None


def known_ids_only(body: bytes, known: Mapping[str, Kind], followed: AbstractSet[str]) -> Downloads | None:
    """The whole list as ids only, when each is recorded (`known`) or followed; else None.

    The tracker skips a recorded id and matches a followed one to its download, so such a list
    holds nothing new: the agent reads the followed peers' own lists for their records and
    needs this one only for its ids (the sweep that forgets ids slskd let go of). At 10,000
    ended transfers this costs about a fifth of a parse and builds ~10,000 small strings
    instead of ~150,000 objects (benchmarks/active_cost.py, benchmarks/idle.py).
    """
    ids = listed_ids(body)
    if ids is None:
        return None
    for tid in ids:
        if tid not in known and tid not in followed:
            return None
    out = Downloads()
    out.recorded_ids = ids
    out.by_id = True
    return out


def parse_downloads(
    body: bytes | str, *, listing: bool = False, group: bool = False, known: Mapping[str, Kind] | None = None,
) -> Downloads:
    """Parse a GET transfers/downloads body (or a single user's group) into Transfers.

    Accepts the nested shape [{username, directories: [{directory, files}]}], the flat shape
    [{username, files}], a single group object, and a bare list of transfer objects. Junk
    entries are skipped and counted; broken JSON or a wrong top-level type raises
    SlskdBadResponse.

    `listing=True` is for GET transfers/downloads itself, which is always a list: anything else
    with a 200 (`{}`, `{"message": ...}` from a proxy, records that are all junk) raises
    SlskdBadResponse instead of reading as "slskd lists nothing", which would fail every
    tracked download as missing.

    `group=True` is for GET transfers/downloads/{username}, which is always one group object:
    anything else with a 200 raises SlskdBadResponse the same way.

    `known` maps ids whose end is already recorded to that outcome. A record whose id is there
    and whose state still means that outcome is not built into a Transfer (the tracker would
    skip it): only its id goes to `recorded_ids`. At 10,000 finished transfers that is most of
    a poll's objects, and none of them outlives the parse.
    """
    # The JSON tree and the Transfers built from it hold no cycles: reference counting frees
    # them. Their 100k+ container allocations (at 50k transfers) would otherwise set off full
    # cyclic collections that traverse the whole heap: a third of such a poll's CPU, measured
    # (benchmarks/poll_cost.py). So the collector is paused while they are built.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _parse_downloads(body, listing, group, known or None)
    finally:
        if paused:
            gc.enable()


def _collect(records: list[Any], owners: list[str | None], out: Downloads, known: Mapping[str, Kind] | None) -> int:
    """Append the transfers among `records` (each with its group's user) to `out`; returns how many were junk.

    With `known`, the records it settles (see parse_downloads) are first sorted out by
    _unrecorded in a few C-level passes, and only the others go through the loop below.
    """
    if known is not None and records:
        picked = _unrecorded(records, owners, known, out.recorded_ids)  # type: ignore[arg-type]
        if picked is not None:
            records, owners = picked
            known = None
    append = out.append
    from_json = Transfer.from_json
    skipped = 0
    if known is not None:
        listed = out.recorded_ids.append  # type: ignore[union-attr]  # a list whenever known is set
        known_get = known.get
    for obj, user in zip(records, owners):
        if type(obj) is dict:
            if known is not None:
                tid: Any = obj.get("id")  # a JSON value, its type checked right here
                kind = known_get(tid) if type(tid) is str else None
                if kind is not None:
                    state = obj.get("state")
                    filename = obj.get("filename")
                    if type(state) is str and classify(state).kind is kind and type(filename) is str and filename:
                        listed(tid)
                        continue
            transfer = from_json(obj, user)
            if transfer is not None:
                append(transfer)
                continue
        skipped += 1
    return skipped


_NO_KIND = object()  # the kind of a record whose state is not a string: never a recorded one
#: dict.get as one typed callable, for the C-level map passes below (the same builtin, no wrapper).
_field: Callable[[Any, str], Any] = dict.get


def _unrecorded(
    records: list[Any], owners: list[str | None], known: Mapping[str, Kind], listed: list[str],
) -> tuple[list[Any], list[str | None]] | None:
    """The records `known` does not settle, and their users; the ids of the others go to `listed`.

    The same decision as _collect's loop, made in passes that run in C (map, compress), so a
    whole list of 10,000 recorded ends costs a few list passes instead of a Python loop over
    every record (benchmarks/active_cost.py). None when any record is odd (not an object, an
    unhashable id or state, a recorded one without a non-empty string file name): the loop
    then decides each record as before, so the result is the same for every input.
    """
    try:
        ids = list(map(_field, records, repeat("id")))
        states = list(map(_field, records, repeat("state")))
        state_kinds = {s: classify(s).kind for s in set(states) if type(s) is str}
        kind_of: Callable[[Any, object], object] = state_kinds.get
        settled = list(map(is_, map(known.get, ids), map(kind_of, states, repeat(_NO_KIND))))
        if not all(map(str.__len__, map(_field, compress(records, settled), repeat("filename")))):
            return None
    except TypeError:
        return None
    listed.extend(compress(ids, settled))
    fresh = list(map(not_, settled))
    return list(compress(records, fresh)), list(compress(owners, fresh))


def _parse_downloads(body: bytes | str, listing: bool, one_group: bool, known: Mapping[str, Kind] | None) -> Downloads:
    what = "a peer's download list" if one_group else "the download list"
    data = load_json(body, what)
    if isinstance(data, dict) and not listing:
        groups: list[Any] = [data]
    elif isinstance(data, list) and not one_group:
        groups = data
    else:
        raise SlskdBadResponse(f"slskd sent {_json_kind(data)} where {what} belongs")

    out = Downloads()
    if known is not None:
        out.recorded_ids = []
    records: list[Any] = []  # every transfer object, in the order listed
    owners: list[str | None] = []  # the user of the group each came from
    skipped = 0
    for group in groups:
        if type(group) is not dict:
            skipped += 1
            continue
        user = group.get("username")
        if type(user) is not str:
            user = None
        directories = group.get("directories")
        flat = group.get("files")
        if directories is None and flat is None and "filename" in group:
            records.append(group)  # a bare transfer object, not a group
            owners.append(user)
            continue
        if type(directories) is not list and type(flat) is not list:
            skipped += 1  # neither a group nor a transfer: {"message": ...} and the like
            continue
        if type(directories) is list:
            for directory in directories:
                files = directory.get("files") if type(directory) is dict else None
                if type(files) is not list:
                    skipped += 1
                    continue
                records.extend(files)
                owners.extend(repeat(user, len(files)))
        if type(flat) is list:
            records.extend(flat)
            owners.extend(repeat(user, len(flat)))
    skipped += _collect(records, owners, out, known)
    if skipped:
        log.debug("download list: skipped %d malformed entries, kept %d", skipped, len(out))
        if (listing or one_group) and not out and not out.recorded_ids:
            raise SlskdBadResponse(
                f"slskd sent a download list of {skipped} record(s) and none is a transfer (no id or file name)")
    out.skipped = skipped
    return out


def _json_kind(value: JSON) -> str:
    """What a JSON value is, in words, without echoing its content."""
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:5])
        return f"an object ({'keys: ' + shorten(keys, 80) if keys else 'empty'})"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"



__all__ = [
    "JSON", "JSONObject", "Downloads", "error_message", "known_ids_only", "listed_ids", "load_json", "parse_downloads",
]
