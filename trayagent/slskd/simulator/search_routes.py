"""The /api/v0/searches routes: SearchRequest binding and validation, and slskd's answers for
the search rules in `searches.py`.

Why apart from the rules: the order of slskd's checks (limiter, duplicate id, query, login) and
the status each refusal gets are the controller's, and a client must meet them exactly.
"""

from __future__ import annotations

import copy
import time
import uuid

from trayagent.slskd.simulator.searches import Search, query_terms
from trayagent.slskd.simulator.state import SlskdState
from trayagent.slskd.simulator.wire import (
    Headers,
    Response,
    empty,
    error_500,
    json_object_body,
    json_response,
    parse_bool,
    parse_guid,
)

_OPTION_DEFAULTS = {
    "fileLimit": 25000, "maximumPeerQueueLength": 2147483647, "minimumPeerUploadSpeed": 0,
    "minimumResponseFileCount": 1, "responseLimit": 250, "searchTimeout": 15000,
}


def search_request(headers: Headers, body: bytes) -> tuple[str, str, dict[str, int]] | Response:
    """POST searches' body as SearchRequest binds and validates it: (id, text, options) or a 4xx."""
    data = json_object_body(headers, body)
    if isinstance(data, Response):
        return data
    text = data.get("searchText")
    if not isinstance(text, str) or not text.strip():  # [Required] on SearchRequest
        return json_response(400, "The SearchText field is required.")
    sid = str(uuid.uuid4())
    if data.get("id") is not None:
        given = parse_guid(str(data["id"]))
        if given is None:
            return empty(400)
        sid = given
    options: dict[str, int] = {}
    for name, default in _OPTION_DEFAULTS.items():
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            return empty(400)
        options[name] = value
    if not isinstance(data.get("filterResponses", True), bool):
        return empty(400)
    if options["searchTimeout"] < 5:  # SearchRequest's [Range] minimum
        return json_response(400, "The field SearchTimeout must be between 5 and 2147483647.")
    return sid, text, options


def start_search(state: SlskdState, headers: Headers, body: bytes) -> Response:
    request = search_request(headers, body)
    if isinstance(request, Response):
        return request
    sid, text, options = request
    with state.lock:
        if state.session.busy > 0:
            state.session.busy -= 1
            return empty(429)
        if sid in state.search_book.searches:  # the INSERT fails before any validation: unhandled, 500
            return error_500(f"An item with the same key has already been added. Key: {sid}")
        # SearchService saves the search before Soulseek.NET validates it; a refusal then
        # leaves it behind as "Completed, Errored" (the caller must delete it).
        terms, _exclusions = query_terms(text)
        refusal: Response | None = None
        if not terms:
            refusal = json_response(400, "The search query must contain at least one term of two or more "
                                         "characters (Parameter 'query')")
        elif not state.session.logged_in or state.session.relogging:
            refusal = json_response(409, "The server connection must be connected and logged in")
        duration = max(float(state.search_duration), 0.0)
        search = state.search_book.start(sid, text, options, duration, refused=refusal is not None)
        if refusal is not None:
            return refusal
        state.searches_made.append(text)
        return json_response(200, search.to_json(False))


def _current(state: SlskdState, sid: str) -> Search | None:
    """The search as of now (responses that have arrived, ended if due); the caller holds the lock."""
    state.search_book.advance(time.monotonic())
    return state.search_book.searches.get(sid)


def list_searches(state: SlskdState) -> Response:
    with state.lock:
        state.search_book.advance(time.monotonic())
        return json_response(200, [s.to_json(False) for s in state.search_book.searches.values()])


def get_search(state: SlskdState, sid: str, query: dict[str, str]) -> Response:
    include = parse_bool(query.get("includeResponses"), False)
    if include is None:
        return empty(400)
    with state.lock:
        search = _current(state, sid)
        return json_response(200, search.to_json(include)) if search else empty(404)


def search_responses(state: SlskdState, sid: str) -> Response:
    with state.lock:
        search = _current(state, sid)
        if search is None:
            return empty(404)
        return json_response(200, copy.deepcopy(search.received) if search.complete else [])


def cancel_search(state: SlskdState, sid: str) -> Response:
    with state.lock:
        search = _current(state, sid)
        if search is None:
            return empty(404)
        if not search.complete:
            search.end("Completed, Cancelled", time.time())
        return empty(200)


def delete_search(state: SlskdState, sid: str) -> Response:
    with state.lock:
        return empty(204) if state.search_book.searches.pop(sid, None) is not None else empty(404)
