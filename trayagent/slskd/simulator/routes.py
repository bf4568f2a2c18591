"""slskd's HTTP surface: the URL base, injected faults, the route table with its 404/405s,
authentication in front of every non-anonymous route, and the application/server routes.

Why one place: which path answers what, and in which order slskd checks route, method and
credential, decides what a client sees for every mistake it can make.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from trayagent.slskd.simulator import auth, faults, search_routes, transfer_routes
from trayagent.slskd.simulator.state import SlskdState
from trayagent.slskd.simulator.wire import (
    VERSION,
    IncomingRequest,
    JsonObject,
    Response,
    empty,
    json_response,
    parse_bool,
    parse_guid,
)

log = logging.getLogger(__name__)

Handler = Callable[[], Response]


@dataclass(frozen=True, slots=True)
class Request:
    """A request with its path split into segments after the URL base, as the routes read it."""

    incoming: IncomingRequest
    parts: list[str]  # path segments after the URL base, as sent
    low: list[str]  # the same, lower-cased (slskd's routes are case-insensitive)

    @property
    def method(self) -> str:
        return self.incoming.method


def handle(state: SlskdState, incoming: IncomingRequest) -> Response:
    """The answer slskd gives to one request, injected faults included."""
    method, raw_path = incoming.method, incoming.raw_path
    base = state.url_base
    # slskd's UsePathBase strips the base from a path that starts with it (case-insensitive,
    # whole segments) and serves every other path unchanged: both spellings work.
    if base and (raw_path.lower() == base.lower() or raw_path.lower().startswith(base.lower() + "/")):
        raw_path = raw_path[len(base):]
    rel = raw_path.lstrip("/")
    if rel.endswith("/"):
        rel = rel[:-1]
    parts = rel.split("/") if rel else []
    req = Request(incoming, parts, [p.lower() for p in parts])
    if req.low[:3] == ["api", "v0", "transfers"]:
        with state.lock:
            fault = state.fault_queue.take(method, parts, req.low)
        if fault is not None:
            log.debug("injecting fault %s on %s %s", fault, method, raw_path)
            resp = faults.fault_response(fault, incoming.closing, state.stopping, state.timeout_fault_seconds)
            if resp is not None:
                return resp
            if fault == "broken_json":
                return faults.broken_json(_route(state, req))
    return _route(state, req)


def _route(state: SlskdState, req: Request) -> Response:
    method, low = req.method, req.low
    if low == ["health"]:
        return Response(200, b"Healthy", "text/plain") if method == "GET" else empty(405)
    if low[:1] != ["api"]:
        return _web_page(method, req.parts)
    if low[:2] != ["api", "v0"]:
        return empty(404)
    lp = low[2:]

    # Anonymous routes.
    if lp == ["session", "enabled"]:
        return json_response(200, state.api_key is not None) if method == "GET" else empty(405)
    if lp == ["session"] and method == "POST":
        return auth.login(state.username, state.password, state.tokens, req.incoming.headers, req.incoming.body)

    handler = _match(state, req)
    if handler is None:
        return empty(404)
    if isinstance(handler, Response):  # 405
        return handler
    ok, kind = auth.authenticate(state.api_key, state.tokens, req.incoming.headers)
    if not ok:
        return auth.refusal(kind)
    resp = handler()
    resp.auth = kind
    return resp


def _allow(req: Request, table: dict[str, Handler]) -> Handler | Response:
    """The handler for the request's method, or the 405 for a known path."""
    return table.get(req.method) or empty(405)


def _match(state: SlskdState, req: Request) -> Handler | Response | None:
    """Find the handler for a route; a 405 response for a known path with the wrong method."""
    lp = req.low[2:]
    if lp[:1] == ["transfers"]:
        return _match_transfers(state, req)
    if lp[:1] == ["searches"]:
        return _match_searches(state, req)
    return _match_application(state, req)


def _match_application(state: SlskdState, req: Request) -> Handler | Response | None:
    lp = req.low[2:]
    if lp == ["session"]:
        return _allow(req, {"GET": lambda: empty(200)})
    if lp == ["application"]:
        return _allow(req, {"GET": lambda: json_response(200, _application_json(state))})
    if lp == ["application", "version"]:
        return _allow(req, {"GET": lambda: json_response(200, VERSION)})
    if lp == ["application", "version", "latest"]:  # the cached version state; ?forceCheck=true checks
        return _allow(req, {"GET": lambda: _version_latest(state, req.incoming.query)})
    if lp == ["application", "gc"]:  # forces a collection; 200 with no body
        return _allow(req, {"POST": lambda: empty(200)})
    if lp == ["server"]:
        return _allow(req, {"GET": lambda: json_response(200, _server_json(state))})
    if lp == ["options"]:  # redacted options; only what clients read is modelled
        return _allow(req, {"GET": lambda: json_response(200, {"directories": {
            "downloads": state.downloads_dir, "incomplete": state.incomplete_dir}})})
    return None


def _match_transfers(state: SlskdState, req: Request) -> Handler | Response | None:
    p, lp = req.parts[2:], req.low[2:]
    n = len(lp)
    if lp[:2] == ["transfers", "uploads"]:
        if n == 2:
            return _allow(req, {"GET": lambda: json_response(200, [])})
        if n in (3, 4):
            return _allow(req, {"GET": lambda: empty(404)})
        return None
    if lp[:2] != ["transfers", "downloads"]:
        return None
    if n == 2:
        return _allow(req, {"GET": lambda: transfer_routes.list_downloads(state, req.incoming.query)})
    if n == 4 and lp[2:] == ["all", "completed"] and req.method == "DELETE":
        return lambda: transfer_routes.clear_completed(state)
    user = unquote(p[2]) if n >= 3 else ""
    if n == 3:
        return _allow(req, {
            "GET": lambda: transfer_routes.user_downloads(state, user),
            "POST": lambda: transfer_routes.legacy_enqueue(state, user, req.incoming.headers, req.incoming.body, req.incoming.closing),
        })
    if n == 4:
        return _allow(req, {
            "GET": lambda: transfer_routes.get_download(state, p[3]),
            "DELETE": lambda: transfer_routes.delete_download(state, p[3], req.incoming.query),
        })
    if n == 5 and lp[4] == "position":
        return _allow(req, {"GET": lambda: transfer_routes.position(state, p[3])})
    return None


def _match_searches(state: SlskdState, req: Request) -> Handler | Response | None:
    p, lp = req.parts[2:], req.low[2:]
    n = len(lp)
    if n == 1:
        return _allow(req, {
            "GET": lambda: search_routes.list_searches(state),
            "POST": lambda: search_routes.start_search(state, req.incoming.headers, req.incoming.body),
        })
    # The search routes use a {id:guid} constraint, so a non-GUID does not match: 404.
    sid = parse_guid(p[1]) if n >= 2 else None
    if sid is None:
        return None
    if n == 2:
        return _allow(req, {
            "GET": lambda: search_routes.get_search(state, sid, req.incoming.query),
            "PUT": lambda: search_routes.cancel_search(state, sid),
            "DELETE": lambda: search_routes.delete_search(state, sid),
        })
    if n == 3 and lp[2] == "responses":
        return _allow(req, {"GET": lambda: search_routes.search_responses(state, sid)})
    return None


def _web_page(method: str, parts: list[str]) -> Response:
    """slskd's fallback for a path that is no route: the web UI's page, for any GET of a path
    without a file extension (so a wrong URL base gets HTML, not a 404); else 404."""
    last = parts[-1] if parts else ""
    if method != "GET" or "." in last:
        return empty(404)
    page = b"<!doctype html><title>slskd (simulated)</title><p>slskd simulator " + VERSION.encode() + b"</p>"
    return Response(200, page, "text/html; charset=utf-8")


# --------------------------------------------------------------------------- application


def _server_json(state: SlskdState) -> JsonObject:
    with state.lock:
        relogging, logged_in = state.session.relogging, state.session.logged_in
    if relogging:
        server, conn, logging_in, logged = "Connected, LoggingIn", True, True, False
    elif logged_in:
        server, conn, logging_in, logged = "Connected, LoggedIn", True, False, True
    else:
        server, conn, logging_in, logged = "Disconnected", False, False, False
    return {
        "address": "vps.slsknet.org",
        "ipEndPoint": "208.76.170.59:2271",
        "state": server,
        "isConnected": conn,
        "isConnecting": False,
        "isLoggedIn": logged,
        "isLoggingIn": logging_in,
        "isTransitioning": logging_in,
    }


def _version_json(state: SlskdState) -> JsonObject:
    """slskd's VersionState: `latest` and `isUpdateAvailable` are null (so absent) until checked."""
    out: JsonObject = {"full": VERSION, "current": VERSION}
    if state.latest_version is not None:
        out["latest"] = state.latest_version
        out["isUpdateAvailable"] = state.latest_version != VERSION
    out.update(isCanary=False, isDevelopment=False)
    return out


def _version_latest(state: SlskdState, query: dict[str, str]) -> Response:
    force = parse_bool(query.get("forceCheck"), False)
    if force is None:
        return empty(400)
    if force and state.latest_version is None:
        state.latest_version = VERSION  # nothing newer is ever published here
    return json_response(200, _version_json(state))


def _application_json(state: SlskdState) -> JsonObject:
    server = _server_json(state)
    return {
        "version": _version_json(state),
        "pendingReconnect": False,
        "pendingRestart": False,
        "server": server,
        "connectionWatchdog": {
            "isEnabled": True, "isAttemptingConnection": not server["isLoggedIn"], "isAwaitingVpn": False,
        },
        "user": {
            "username": state.soulseek_username,
            "privileges": {"isPrivileged": False, "privilegesRemaining": 0},
            "statistics": {"averageSpeed": 0, "directoryCount": 12, "fileCount": 140, "uploadCount": 0},
        },
        "shares": {
            "scanPending": False, "scanning": False, "ready": True, "faulted": False, "cancelled": False,
            "scanProgress": 1, "hosts": ["local"], "directories": 12, "files": 140,
        },
        "rooms": [],
        "users": [],
    }
