"""A small, strict client for slskd's REST API (see docs in /work/shared/slskd-api.md).

Design choices that matter to the rest of the agent:
- Every failure is one typed SlskdError with a one-line, secret-free message the tray can show.
- Nothing is retried except the single re-login after a 401 on a JWT session (a 401 means the
  request was not executed). POST/DELETE are never repeated after a network error, because
  slskd may have acted on them.
- parse_downloads is a pure function: it runs on every poll over tens of thousands of records.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import sys
import threading
import time
import uuid
from itertools import compress, repeat
from operator import is_, not_
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from trayagent.config import SlskdConfig
from trayagent.errors import TrayagentError
from trayagent.logs import register_secret, scrub
from trayagent.core.model import Kind, Transfer, classify

try:  # orjson is a default dependency; the stdlib parser is the fallback without it
    import orjson

    _loads = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError, TypeError)
except ImportError:  # pragma: no cover - exercised by the agent run without orjson (tests)
    orjson = None  # type: ignore[assignment]

    def _loads(body: bytes | str) -> Any:  # type: ignore[misc]
        return json.loads(body)

    _JSON_ERRORS = (ValueError, TypeError)


def tune_allocator() -> None:
    """Keep the per-poll big buffers out of the heap, so idle memory does not ratchet up.

    Process-wide, so it is called by the long-running agent (Agent.start), never on import.

    Each poll allocates a few large transient blocks (the response body, orjson's scratch
    buffer of ~15x the body). glibc's first free of such a block raises its mmap threshold
    to the block's size, after which every later one is carved from the heap and stays
    resident after it is freed (measured: +4 MB RSS at 2,000 transfers, +5 MB at 10,000).
    Pinning the threshold at glibc's default (128 KiB) keeps them mmapped and returned.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; not on musl: harmless
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes, or not glibc
        pass


_TRIM_AFTER = 1 << 20  # bytes of body: below this a poll's garbage is too small to matter


def _trim_heap(body_size: int) -> None:
    """Hand the pages a big poll's parse freed back to the system (glibc only; else a no-op).

    The parse of a 5.6 MB list (10,000 transfers) builds a tree of ~150,000 objects and frees
    it at once; glibc keeps most of those pages, in the heap of each worker thread that ever
    polled, because a few live blocks sit above them. malloc_trim(0) releases every free page.
    Measured: idle RSS at 10,000 listed transfers 57 MB without it (benchmarks/idle.py).
    """
    if body_size < _TRIM_AFTER or _malloc_trim is None:
        return
    _malloc_trim(0)


def _find_malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes, or not glibc (musl)
        return None


_malloc_trim = _find_malloc_trim()

log = logging.getLogger(__name__)

API = "/api/v0"
CONNECT_TIMEOUT_CAP = 5.0
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MESSAGE_LIMIT = 200
_insecure_warned = False


# --------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Outcome of a legacy enqueue. ids_known is False for slskd <= 0.23 (empty 201 body)."""

    enqueued: list[Transfer] = field(default_factory=list)
    failed_count: int = 0
    ids_known: bool = True


@dataclass(frozen=True, slots=True)
class ServerState:
    """slskd's connection to the Soulseek server."""

    connected: bool
    logged_in: bool
    state: str


# --------------------------------------------------------------------------- parsing


def _load_json(body: bytes | str, what: str) -> Any:
    if not body:
        raise SlskdBadResponse(f"slskd sent an empty body for {what}")
    try:
        return _loads(body)
    except _JSON_ERRORS as exc:
        detail = _one_line(str(exc))[:100]
    if orjson is not None:
        # orjson refuses a lone surrogate escape ("\ud800"), which is legal in slskd's .NET
        # strings; the stdlib parser keeps it, so one odd file name does not fail every poll.
        try:
            return json.loads(body)
        except (ValueError, TypeError):
            pass
    raise SlskdBadResponse(f"slskd sent invalid JSON for {what}: {detail}")


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
        listed = out.recorded_ids.append  # type: ignore[union-attr] - a list whenever known is set
        known_get = known.get
    for obj, user in zip(records, owners):
        if type(obj) is dict:
            if known is not None:
                tid = obj.get("id")
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
        ids = list(map(dict.get, records, repeat("id")))
        states = list(map(dict.get, records, repeat("state")))
        state_kinds = {s: classify(s).kind for s in set(states) if type(s) is str}
        settled = list(map(is_, map(known.get, ids), map(state_kinds.get, states, repeat(_NO_KIND))))
        if not all(map(str.__len__, map(dict.get, compress(records, settled), repeat("filename")))):
            return None
    except TypeError:
        return None
    listed.extend(compress(ids, settled))
    fresh = list(map(not_, settled))
    return list(compress(records, fresh)), list(compress(owners, fresh))


def _parse_downloads(body: bytes | str, listing: bool, one_group: bool, known: Mapping[str, Kind] | None) -> Downloads:
    what = "a peer's download list" if one_group else "the download list"
    data = _load_json(body, what)
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


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words, without echoing its content."""
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:5])
        return f"an object ({'keys: ' + _trim(keys, 80) if keys else 'empty'})"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------- helpers


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _trim(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_segment(username: str) -> str:
    """Percent-encode a username as one path segment, exactly once."""
    if not isinstance(username, str) or not username:
        raise SlskdInvalidArgument("a non-empty username is required")
    segment = quote(username, safe="")
    if segment.strip(".") == "":
        # "." and ".." would be eaten as dot-segments by URL normalisation; slskd decodes %2E.
        segment = segment.replace(".", "%2E")
    return segment


def _guid(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _GUID_RE.match(value):
        shown = repr(value)[:60]
        raise SlskdInvalidArgument(f"{what} must be a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6 (got {shown})")
    return value


def _classify_network_error(exc: BaseException, timeout: float) -> str:
    """A short reason for a requests exception, without its URL-laden repr."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (slskd's HTTPS certificate is self-signed by default: set [slskd] verify_tls = false or use http)"
    if isinstance(exc, (requests.exceptions.ConnectTimeout,)):
        return f"connection timed out after {min(timeout, CONNECT_TIMEOUT_CAP):g}s"
    if isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.Timeout)):
        return f"no answer within {timeout:g}s"
    chain: list[BaseException] = []
    current: Any = exc
    while isinstance(current, BaseException) and current not in chain and len(chain) < 10:
        chain.append(current)
        nxt = current.__cause__ or current.__context__ or getattr(current, "reason", None)
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        current = nxt
    text = " ".join(str(e) for e in chain).lower()
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused (is slskd running, and on this port?)"
        if isinstance(item, ConnectionResetError):
            return "connection reset"
    if "refused" in text:
        return "connection refused (is slskd running, and on this port?)"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text \
            or "name resolution" in text or "failed to resolve" in text:
        return "host name could not be resolved"
    if "reset" in text:
        return "connection reset"
    if "aborted" in text or "remotedisconnected" in text or "closed connection" in text:
        return "connection closed without an answer"
    return f"network error ({type(exc).__name__})"


# --------------------------------------------------------------------------- client


class SlskdClient:
    """Talks to one slskd instance. Safe to share between the poll thread and the UI thread."""

    def __init__(self, cfg: SlskdConfig, session: requests.Session | None = None) -> None:
        self._cfg = cfg
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        parts = urlsplit(cfg.url.strip())
        base_path = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=-._~")
        self._origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._base_path = base_path
        self.url = self._origin + base_path
        timeout = float(cfg.timeout) if cfg.timeout and cfg.timeout > 0 else 10.0
        self._timeout = (min(timeout, CONNECT_TIMEOUT_CAP), timeout)
        # slskd answers an enqueue only once it has looked the peer up and connected to it (its
        # own connect timeout alone is 10 s), so that one POST gets a longer read timeout.
        slow = float(cfg.enqueue_timeout) if cfg.enqueue_timeout and cfg.enqueue_timeout > 0 else 60.0
        self._enqueue_timeout = (self._timeout[0], max(slow, timeout))
        self._verify = bool(cfg.verify_tls)
        self._env_settings: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires: float | None = None
        self._secrets = tuple(s for s in (cfg.api_key, cfg.password) if s)
        if not self._verify:
            _quiet_insecure_warning()

    def __repr__(self) -> str:
        return f"SlskdClient(url={self.url!r})"

    __str__ = __repr__

    def __enter__(self) -> SlskdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    # ----------------------------------------------------------------- plumbing

    def _scrub(self, text: str) -> str:
        """Never let a credential into an exception message, whatever slskd echoes."""
        return scrub(text, (*self._secrets, self._token))

    def _auth_headers(self) -> dict[str, str]:
        if self._cfg.api_key:
            return {"X-API-Key": self._cfg.api_key}
        if self._cfg.username and self._cfg.password:
            return {"Authorization": f"Bearer {self._ensure_token()}"}
        return {}

    def _ensure_token(self, force: bool = False) -> str:
        with self._lock:
            expired = self._token_expires is not None and time.time() > self._token_expires - 60
            if self._token and not force and not expired:
                return self._token
            self._token = None
            token, expires = self._login()
            self._token, self._token_expires = token, expires
            return token

    def _login(self) -> tuple[str, float | None]:
        """POST /session with the web UI credentials; returns (jwt, expiry epoch)."""
        resp = self._send("POST", f"{API}/session", json_body={"username": self._cfg.username,
                                                              "password": self._cfg.password})
        what = "login (POST /api/v0/session)"
        if resp.status_code in (401, 403):
            hint = ("slskd runs headless (no web login): use [slskd] api_key" if resp.status_code == 403
                    else "check [slskd] username and password (slskd's web.authentication settings)")
            raise SlskdUnauthorized(f"slskd refused the {what} with {resp.status_code}: {hint}", resp.status_code)
        self._raise_for_status(resp, what)
        body = _load_json(resp.content, what)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SlskdBadResponse(f"slskd's {what} answer has no token", resp.status_code)
        register_secret(token)
        expires = body.get("expires")
        expiry = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None
        log.debug("logged in to slskd as %s (token expires %s)", self._cfg.username, expiry)
        return token, expiry

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """One HTTP exchange; network failures become SlskdUnreachable. Never retries.

        `stream=True` leaves the body unread (see _whole_body).
        """
        full_path = self._base_path + path
        url = self._origin + full_path
        req = requests.Request(method, url, params=params, json=json_body, headers=dict(headers or {}))
        prepared = self._session.prepare_request(req)
        # requests re-quotes URLs and would turn our %2E back into '.', so put the exact
        # path we encoded back in (it is already pure, fully quoted ASCII).
        p = urlsplit(prepared.url or url)
        prepared.url = urlunsplit((p.scheme, p.netloc, full_path, p.query, p.fragment))
        if self._env_settings is None:  # proxies and CA bundle from the environment: one host, read once
            self._env_settings = self._session.merge_environment_settings(prepared.url, {}, None, self._verify, None)
        settings = self._env_settings
        started = time.monotonic()
        limits = timeout or self._timeout
        try:
            resp = self._session.send(prepared, timeout=limits, allow_redirects=False,
                                      **{**settings, "stream": stream})
        except requests.exceptions.RequestException as exc:
            reason = _classify_network_error(exc, limits[1])
            log.debug("%s %s failed: %s", method, path, type(exc).__name__)
            raise SlskdUnreachable(self._scrub(f"slskd at {self.url} is unreachable: {reason} ({method} {path})")) from None
        log.debug("%s %s -> %d in %.0f ms", method, path, resp.status_code, (time.monotonic() - started) * 1000)
        return resp

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: bool = True,
        stream: bool = False,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send with auth; on a 401 with a JWT, log in again once and repeat once."""
        headers = self._auth_headers() if auth else {}
        resp = self._send(method, path, params=params, json_body=json_body, headers=headers, stream=stream,
                          timeout=timeout)
        if resp.status_code == 401 and auth and "Authorization" in headers:
            log.info("slskd rejected the session token; logging in again")
            resp.close()
            headers = {"Authorization": f"Bearer {self._ensure_token(force=True)}"}
            resp = self._send(method, path, params=params, json_body=json_body, headers=headers, stream=stream,
                              timeout=timeout)
        try:
            self._raise_for_status(resp, f"{method} {path}")
        except SlskdError:
            resp.close()
            raise
        return resp

    def _get_whole(self, path: str, *, params: Mapping[str, str] | None = None) -> bytes:
        """GET a potentially large body (the download list: megabytes) in one read.

        requests' `.content` gathers a body in 10 KiB chunks, each through urllib3's streaming
        machinery: at 5.6 MB that cost more CPU than reconciling and saving the poll together
        (benchmarks/poll_cost.py). One read of the announced length (or of the whole chunked
        stream) gives the same bytes in one allocation.
        """
        resp = self._request("GET", path, params=params, stream=True)
        try:
            return resp.raw.read(decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = _classify_network_error(exc, self._timeout[1])
            raise SlskdUnreachable(self._scrub(f"slskd at {self.url} broke off its answer: {reason} (GET {path})")) from None
        finally:
            resp._content_consumed = True  # noqa: SLF001 - lets close() hand the connection back for reuse
            resp.close()

    def _raise_for_status(self, resp: requests.Response, what: str) -> None:
        code = resp.status_code
        if 200 <= code < 300:
            return
        if code in (401, 403):
            if code == 401:
                hint = ("check [slskd] api_key and that slskd's key cidr allows this machine's address"
                        if self._cfg.api_key else
                        "check [slskd] api_key or username/password, and slskd's key cidr setting")
                msg = f"slskd rejected our credentials (401) for {what}: {hint}"
            else:
                msg = (f"slskd refused {what} (403): check [slskd] api_key (its role and cidr) "
                       "and that slskd is not a relay agent")
            raise SlskdUnauthorized(self._scrub(msg), code)
        detail = self._body_message(resp)
        suffix = f": {detail}" if detail else ""
        if code == 404:
            raise SlskdNotFound(self._scrub(f"slskd has no such resource (404) for {what}{suffix}"), code)
        if code == 429:
            raise SlskdBusy(self._scrub(f"slskd is busy (429) for {what}; try again shortly"), code)
        if 300 <= code < 400:
            location = resp.headers.get("Location", "")
            where = f" to {_trim(location, 120)}" if location else ""
            raise SlskdBadResponse(
                self._scrub(f"slskd redirected {what} ({code}){where}: set [slskd] url to the final address"), code)
        if code >= 500:
            raise SlskdBadResponse(self._scrub(f"slskd failed ({code}) on {what}{suffix}"), code)
        raise SlskdBadResponse(self._scrub(f"unexpected status {code} from slskd for {what}{suffix}"), code)

    @staticmethod
    def _body_message(resp: requests.Response) -> str:
        """slskd's error body: usually a JSON string, sometimes text, often empty."""
        raw = resp.content[:4096]
        if not raw:
            return ""
        try:
            value = _loads(raw)
        except _JSON_ERRORS:
            try:
                return _trim(raw.decode("utf-8", "replace"))
            except Exception:  # pragma: no cover - decode with "replace" does not raise
                return ""
        if isinstance(value, str):
            return _trim(value)
        if isinstance(value, dict):
            for key in ("message", "title", "detail", "error"):
                if isinstance(value.get(key), str):
                    return _trim(value[key])
        return _trim(json.dumps(value)[:_MESSAGE_LIMIT])

    def _get_json(self, path: str, *, params: Mapping[str, str] | None = None, auth: bool = True) -> Any:
        resp = self._request("GET", path, params=params, auth=auth)
        return _load_json(resp.content, f"GET {path}")

    @staticmethod
    def _expect_dict(value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SlskdBadResponse(f"slskd sent {type(value).__name__} for {what}, expected an object")
        return value

    # ----------------------------------------------------------------- transfers

    def list_downloads(
        self, include_removed: bool = False, known: Mapping[str, Kind] | None = None,
        followed: AbstractSet[str] | None = None, trim: bool = True,
    ) -> Downloads:
        """Every download slskd still lists (optionally with soft-removed history).

        A 200 whose body is not a download list raises SlskdBadResponse (see parse_downloads,
        also for `known`: records whose recorded end is unchanged are not built). With
        `followed` (the ids of downloads the caller follows), a list whose every id is known or
        followed comes back as ids only (`by_id`, see known_ids_only). `trim=False` leaves the
        memory a parse freed to the next poll instead of handing it back (see _trim_heap); a
        list read by id is trimmed after in any case.
        """
        params = {"includeRemoved": "true"} if include_removed else None
        body = self._get_whole(f"{API}/transfers/downloads", params=params)
        size = len(body)
        listed = None
        try:
            listed = known_ids_only(body, known or {}, followed) if followed is not None else None
            if listed is None:
                listed = parse_downloads(body, listing=True, known=known)
            return listed
        finally:
            # Trimmed once the body is gone too: a body served from free heap memory a parse left
            # (not mmapped afresh) stayed resident otherwise (+5.6 MB at 10,000, benchmarks/idle.py).
            del body
            if trim or listed is None or listed.by_id:
                _trim_heap(size)

    def list_user_downloads(self, username: str, known: Mapping[str, Kind] | None = None) -> Downloads:
        """Every download from one peer that slskd still lists; empty when it lists none.

        slskd answers GET transfers/downloads/{username} with that peer's one group object, and
        with 404 once the peer has no (non-removed) downloads: that 404 is an empty list here.
        Any other failure raises as usual, and so does a 200 that is not one group.
        """
        path = f"{API}/transfers/downloads/{_user_segment(username)}"
        try:
            body = self._get_whole(path)
        except SlskdNotFound:
            return Downloads()
        return parse_downloads(body, group=True, known=known)

    def get_download(self, username: str, transfer_id: str) -> Transfer:
        """One download by id (slskd returns it even after it was removed from the list)."""
        path = f"{API}/transfers/downloads/{_user_segment(username)}/{_guid(transfer_id)}"
        obj = self._expect_dict(self._get_json(path), f"GET {path}")
        transfer = Transfer.from_json(obj, username=username)
        if transfer is None:
            raise SlskdBadResponse(f"slskd's transfer for GET {path} lacks an id or filename")
        return transfer

    def cancel_download(self, username: str, transfer_id: str) -> None:
        """Ask slskd to cancel; the record turns 'Completed, Cancelled' asynchronously."""
        self._request("DELETE", f"{API}/transfers/downloads/{_user_segment(username)}/{_guid(transfer_id)}")

    def remove_download(self, username: str, transfer_id: str) -> None:
        """Soft-remove a finished download from the list.

        On an active download slskd cancels it first (the same as cancel_download); the record
        is removed only if it has already ended by then, else it stays as `Completed, Cancelled`.
        """
        self._request(
            "DELETE",
            f"{API}/transfers/downloads/{_user_segment(username)}/{_guid(transfer_id)}",
            params={"remove": "true"},
        )

    def clear_completed(self) -> None:
        """Remove every succeeded and failed download from slskd's list in one call."""
        self._request("DELETE", f"{API}/transfers/downloads/all/completed")

    def enqueue(self, username: str, files: Iterable[tuple[str, int]]) -> EnqueueResult:
        """Queue files from one user via the legacy endpoint (works on 0.2x and 0.26).

        A 201 with an empty body (slskd <= 0.23) gives enqueued=[] and ids_known=False: the
        caller must then find the new records by (username, filename). slskd answers only after
        reaching the peer, so this POST waits up to [slskd] enqueue_timeout; a timeout is a
        SlskdUnreachable whose outcome is unknown (the records may still appear). slskd refuses
        the whole request (500) when one (filename, size) is listed twice.
        """
        segment = _user_segment(username)
        body = []
        for item in files:
            try:
                filename, size = item
            except (TypeError, ValueError):
                raise SlskdInvalidArgument("files must be (filename, size) pairs") from None
            if not isinstance(filename, str) or not filename:
                raise SlskdInvalidArgument("every file needs a non-empty filename")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SlskdInvalidArgument(f"size must be a whole number >= 0 (got {size!r})")
            body.append({"filename": filename, "size": size})
        if not body:
            raise SlskdInvalidArgument("enqueue needs at least one file")
        path = f"{API}/transfers/downloads/{segment}"
        resp = self._request("POST", path, json_body=body, timeout=self._enqueue_timeout)
        if not resp.content.strip():
            return EnqueueResult(enqueued=[], failed_count=0, ids_known=False)
        data = _load_json(resp.content, f"POST {path}")
        if not isinstance(data, dict):
            raise SlskdBadResponse(f"slskd sent {type(data).__name__} for POST {path}, expected {{enqueued, failed}}")
        raw_enqueued = data.get("enqueued") or []
        raw_failed = data.get("failed") or []
        if not isinstance(raw_enqueued, list) or not isinstance(raw_failed, list):
            raise SlskdBadResponse(f"slskd's answer to POST {path} has no enqueued/failed lists")
        enqueued = [t for t in (Transfer.from_json(o, username=username) for o in raw_enqueued if isinstance(o, dict))
                    if t is not None]
        return EnqueueResult(enqueued=enqueued, failed_count=len(raw_failed), ids_known=True)

    # ----------------------------------------------------------------- status

    def health(self) -> bool:
        """Whether slskd answers its anonymous /health check with 200 "Healthy". Never raises.

        The body matters: slskd answers any unknown path without a file extension with its web
        page (200, HTML), e.g. when [slskd] url carries a URL base slskd does not have.
        """
        try:
            resp = self._send("GET", "/health")
        except SlskdError as exc:
            log.debug("health check failed: %s", exc)
            return False
        return resp.status_code == 200 and resp.content.strip().lower() == b"healthy"

    def session_enabled(self) -> bool:
        """Whether slskd has authentication switched on (anonymous endpoint)."""
        path = f"{API}/session/enabled"
        value = self._get_json(path, auth=False)
        if not isinstance(value, bool):
            raise SlskdBadResponse(f"slskd sent {type(value).__name__} for GET {path}, expected true/false")
        return value

    def check_auth(self) -> None:
        """Raise SlskdUnauthorized unless our credentials are accepted."""
        self._request("GET", f"{API}/session")

    def application(self) -> dict[str, Any]:
        """slskd's whole application state (version, server, user, shares...)."""
        path = f"{API}/application"
        return self._expect_dict(self._get_json(path), f"GET {path}")

    def download_directory(self) -> str | None:
        """Where slskd saves finished downloads (options.directories.downloads), if it says."""
        path = f"{API}/options"
        options = self._expect_dict(self._get_json(path), f"GET {path}")
        dirs = options.get("directories")
        value = dirs.get("downloads") if isinstance(dirs, dict) else None
        return value if isinstance(value, str) and value.strip() else None

    def server_state(self) -> ServerState:
        """Whether slskd is connected and logged in to the Soulseek server."""
        server: Any = None
        try:
            server = self.application().get("server")
        except (SlskdNotFound, SlskdBadResponse) as exc:
            log.debug("application state unusable (%s); asking /server", exc)
        if not isinstance(server, dict):
            path = f"{API}/server"
            server = self._expect_dict(self._get_json(path), f"GET {path}")
        state = server.get("state")
        return ServerState(
            connected=server.get("isConnected") is True,
            logged_in=server.get("isLoggedIn") is True,
            state=state if isinstance(state, str) else "",
        )

    def version(self) -> str:
        """slskd's version string, e.g. "0.26.0.0"."""
        path = f"{API}/application/version"
        try:
            value = self._get_json(path)
        except SlskdNotFound:
            value = None
        if isinstance(value, str) and value:
            return value
        info = self.application().get("version")
        if isinstance(info, dict):
            for key in ("full", "current"):
                if isinstance(info.get(key), str) and info[key]:
                    return info[key]
        raise SlskdBadResponse("slskd did not report its version")

    # ----------------------------------------------------------------- searches

    def start_search(self, text: str, search_id: str | None = None, timeout_ms: int = 15000) -> dict[str, Any]:
        """Start a search; the id is chosen here when not given, so it is always known."""
        if not isinstance(text, str) or not text.strip():
            raise SlskdInvalidArgument("search text must not be empty")
        sid = _guid(search_id, "search id") if search_id is not None else str(uuid.uuid4())
        payload = {"id": sid, "searchText": text, "searchTimeout": int(timeout_ms)}
        path = f"{API}/searches"
        resp = self._request("POST", path, json_body=payload)
        if not resp.content.strip():
            return {"id": sid, "searchText": text}
        return self._expect_dict(_load_json(resp.content, f"POST {path}"), f"POST {path}")

    def get_search(self, search_id: str, include_responses: bool = False) -> dict[str, Any]:
        """A search's state and counts (responses only once it has finished)."""
        path = f"{API}/searches/{_guid(search_id, 'search id')}"
        params = {"includeResponses": "true" if include_responses else "false"}
        return self._expect_dict(self._get_json(path, params=params), f"GET {path}")

    def search_responses(self, search_id: str) -> list[dict[str, Any]]:
        """A finished search's responses (empty while it is still running)."""
        path = f"{API}/searches/{_guid(search_id, 'search id')}/responses"
        value = self._get_json(path)
        if not isinstance(value, list):
            raise SlskdBadResponse(f"slskd sent {type(value).__name__} for GET {path}, expected a list")
        return [item for item in value if isinstance(item, dict)]

    def delete_search(self, search_id: str) -> None:
        """Delete a search and its responses (hard delete on slskd's side)."""
        self._request("DELETE", f"{API}/searches/{_guid(search_id, 'search id')}")


def _quiet_insecure_warning() -> None:
    """verify_tls = false is a deliberate choice: say so once, not on every request."""
    global _insecure_warned
    if _insecure_warned:
        return
    _insecure_warned = True
    try:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    except Exception:  # pragma: no cover - urllib3 always ships with requests
        pass
    log.warning("TLS certificate verification for slskd is off ([slskd] verify_tls = false)")


__all__ = [
    "Downloads", "EnqueueResult", "ServerState", "SlskdBadResponse", "SlskdBusy", "SlskdClient", "SlskdError",
    "SlskdInvalidArgument", "SlskdNotFound", "SlskdUnauthorized", "SlskdUnreachable", "known_ids_only",
    "listed_ids", "parse_downloads",
]
