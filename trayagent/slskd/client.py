"""A small, strict client for slskd's REST API (see docs in /work/shared/slskd-api.md).

SlskdClient is slskd's endpoints over one SlskdConnection (trayagent/slskd/connection.py: session,
auth, error mapping); what slskd's JSON means is read in trayagent/slskd/parsing.py. Design
choices that matter to the rest of the agent:
- Every failure is one typed SlskdError (trayagent/slskd/errors.py) with a one-line,
  secret-free message the tray can show.
- Arguments that go into a URL are checked before anything is sent (SlskdInvalidArgument).
- The download list is read in one piece and parsed, or read by id only when nothing in it is
  new (list_downloads); the heap is trimmed after a big read (trayagent/slskd/memory.py).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import AbstractSet, Iterable, Mapping
from urllib.parse import quote

from trayagent.core.model import Kind, Transfer
from trayagent.slskd import memory
from trayagent.slskd.errors import SlskdBadResponse, SlskdError, SlskdInvalidArgument, SlskdNotFound
from trayagent.slskd.connection import API, SlskdConnection
from trayagent.slskd.parsing import JSON, JSONObject, Downloads, known_ids_only, load_json, parse_downloads

log = logging.getLogger(__name__)

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


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
    """`value` if it is a GUID: anything else must not reach slskd's URL (nothing is sent)."""
    if not isinstance(value, str) or not _GUID_RE.match(value):
        shown = repr(value)[:60]
        raise SlskdInvalidArgument(f"{what} must be a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6 (got {shown})")
    return value


class SlskdClient(SlskdConnection):
    """Talks to one slskd instance. Safe to share between the poll thread and the UI thread."""

    def list_downloads(
        self, include_removed: bool = False, known: Mapping[str, Kind] | None = None,
        followed: AbstractSet[str] | None = None, trim: bool = True,
    ) -> Downloads:
        """Every download slskd still lists (optionally with soft-removed history).

        A 200 whose body is not a download list raises SlskdBadResponse (see parse_downloads,
        also for `known`: records whose recorded end is unchanged are not built). With
        `followed` (the ids of downloads the caller follows), a list whose every id is known or
        followed comes back as ids only (`by_id`, see known_ids_only). `trim=False` leaves the
        memory a parse freed to the next poll instead of handing it back (see memory.trim_heap); a
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
                memory.trim_heap(size)

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
        body: list[dict[str, str | int]] = []
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
        data = load_json(resp.content, f"POST {path}")
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

    def application(self) -> JSONObject:
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
        server: JSON = None
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

    def start_search(self, text: str, search_id: str | None = None, timeout_ms: int = 15000) -> JSONObject:
        """Start a search; the id is chosen here when not given, so it is always known."""
        if not isinstance(text, str) or not text.strip():
            raise SlskdInvalidArgument("search text must not be empty")
        sid = _guid(search_id, "search id") if search_id is not None else str(uuid.uuid4())
        payload: dict[str, str | int] = {"id": sid, "searchText": text, "searchTimeout": int(timeout_ms)}
        path = f"{API}/searches"
        resp = self._request("POST", path, json_body=payload)
        if not resp.content.strip():
            return {"id": sid, "searchText": text}
        return self._expect_dict(load_json(resp.content, f"POST {path}"), f"POST {path}")

    def get_search(self, search_id: str, include_responses: bool = False) -> JSONObject:
        """A search's state and counts (responses only once it has finished)."""
        path = f"{API}/searches/{_guid(search_id, 'search id')}"
        params = {"includeResponses": "true" if include_responses else "false"}
        return self._expect_dict(self._get_json(path, params=params), f"GET {path}")

    def search_responses(self, search_id: str) -> list[JSONObject]:
        """A finished search's responses (empty while it is still running)."""
        path = f"{API}/searches/{_guid(search_id, 'search id')}/responses"
        value = self._get_json(path)
        if not isinstance(value, list):
            raise SlskdBadResponse(f"slskd sent {type(value).__name__} for GET {path}, expected a list")
        return [item for item in value if isinstance(item, dict)]

    def delete_search(self, search_id: str) -> None:
        """Delete a search and its responses (hard delete on slskd's side)."""
        self._request("DELETE", f"{API}/searches/{_guid(search_id, 'search id')}")


__all__ = ["EnqueueResult", "ServerState", "SlskdClient"]
