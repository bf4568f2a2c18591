"""The /api/v0/transfers/downloads routes: binding each request and answering with slskd's
status codes for the transfer rules in `transfers.py`.

Why apart from the rules: what is refused with which status (400, 404, 429, 500) and what a
request body must look like is ASP.NET's and TransfersController's business, not the list's.
"""

from __future__ import annotations

import threading
import time
from typing import Callable
from urllib.parse import unquote

from trayagent.slskd.simulator.records import TransferRecord, group
from trayagent.slskd.simulator.state import SlskdState
from trayagent.slskd.simulator.transfers import FileRequest, has_traversal
from trayagent.slskd.simulator.wire import (
    Headers,
    Json,
    Response,
    empty,
    error_500,
    json_body,
    json_response,
    parse_bool,
    parse_guid,
)

#: TransfersController's enqueue limiter (SemaphoreSlim(2, 2)): a third concurrent POST gets 429.
ENQUEUE_CONCURRENCY = 2
ENQUEUE_BUSY_MESSAGE = "Only one concurrent operation is permitted. Wait until the previous request completes"
#: DownloadService.EnqueueAsync's check; an ArgumentException's message names its parameter.
DUPLICATE_FILES_MESSAGE = "Two or more files in request are duplicated (Parameter 'files')"


def _transfer_id(raw_id: str) -> str | None:
    """The {id} segment as the Guid it must bind to; None means a 400."""
    return parse_guid(unquote(raw_id))


def list_downloads(state: SlskdState, query: dict[str, str]) -> Response:
    include = parse_bool(query.get("includeRemoved"), False)
    if include is None:
        return empty(400)
    now = time.time()
    with state.lock:
        return json_response(200, group(state.transfer_book.listed(include), now))


def user_downloads(state: SlskdState, user: str) -> Response:
    now = time.time()
    with state.lock:
        records = state.transfer_book.of_user(user)
        if not records:
            return empty(404)
        return json_response(200, group(records, now)[0])


def _with_record(state: SlskdState, raw_id: str, answer: Callable[[TransferRecord], Json]) -> Response:
    """200 with `answer(record)` (taken under the lock); 400 for a malformed id, 404 for an unknown one."""
    tid = _transfer_id(raw_id)
    if tid is None:
        return empty(400)
    with state.lock:
        rec = state.transfer_book.records.get(tid)
        return json_response(200, answer(rec)) if rec is not None else empty(404)


def get_download(state: SlskdState, raw_id: str) -> Response:
    return _with_record(state, raw_id, lambda rec: rec.to_json())


def position(state: SlskdState, raw_id: str) -> Response:
    return _with_record(state, raw_id, state.transfer_book.position)


def delete_download(state: SlskdState, raw_id: str, query: dict[str, str]) -> Response:
    tid = _transfer_id(raw_id)
    remove = parse_bool(query.get("remove"), False)
    if tid is None or remove is None:
        return empty(400)
    with state.lock:
        book = state.transfer_book
        rec = book.records.get(tid)
        if rec is None:
            return empty(204)  # 0.26 answers 204 even for an unknown id
        # An active transfer turns `Completed, Cancelled` only when its task fails a moment later,
        # so remove=true on it removes nothing, as in slskd.
        book.cancel(tid, state.cancel_delay)
        if remove:
            book.remove_if_completed(rec)
    return empty(204)


def clear_completed(state: SlskdState) -> Response:
    with state.lock:
        state.transfer_book.clear_completed()
    return empty(204)


def _enqueue_items(headers: Headers, body: bytes) -> list[FileRequest] | Response:
    """The legacy enqueue body, a non-empty list of {filename, size}, bound as ASP.NET would."""
    data, err = json_body(headers, body)
    if err is not None:
        return err
    if not isinstance(data, list) or not data:
        return empty(400)
    items: list[FileRequest] = []
    for item in data:
        if not isinstance(item, dict):
            return empty(400)
        filename, size = item.get("filename"), item.get("size")
        if not isinstance(filename, str) or not filename or has_traversal(filename):
            return empty(400)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return empty(400)
        items.append((filename, size))
    return items


def legacy_enqueue(
    state: SlskdState, user: str, headers: Headers, body: bytes, closing: threading.Event
) -> Response:
    """`POST transfers/downloads/{username}`: 201 {enqueued, failed}, or slskd's refusals."""
    items = _enqueue_items(headers, body)
    if isinstance(items, Response):
        return items
    session = state.session
    with state.lock:
        if session.busy > 0 or session.enqueues_running >= ENQUEUE_CONCURRENCY:
            session.busy = max(session.busy - 1, 0)
            return json_response(429, ENQUEUE_BUSY_MESSAGE)
        session.enqueues_running += 1
    try:
        return _enqueue_admitted(state, user, items, closing)
    finally:
        with state.lock:
            session.enqueues_running -= 1


def _enqueue_admitted(state: SlskdState, user: str, items: list[FileRequest], closing: threading.Event) -> Response:
    """An enqueue past the limiter: the checks slskd makes before and while reaching the peer."""
    if len(set(items)) != len(items):
        return error_500(DUPLICATE_FILES_MESSAGE)  # the whole request fails
    with state.lock:
        if not state.session.logged_in or state.session.relogging:
            # The peer's address comes from the Soulseek server (GetUserEndPointAsync);
            # Soulseek.NET refuses that while logged out. Wording approximated.
            return error_500("The server connection must be connected and logged in to "
                             "get the endpoint of a user (currently: Disconnected)")
        if user in state.session.offline:
            return error_500(f"User {user} appears to be offline")
        delay = state.enqueue_delays.get(user, 0.0)
    if delay > 0 and (closing.wait(delay) or state.stopping.is_set()):
        return Response(0, abort=True)  # slskd went away while connecting: no records
    with state.lock:
        enqueued, failed = state.transfer_book.enqueue(user, items, state.enqueue_plan)
    return json_response(201, {"enqueued": enqueued, "failed": failed})
