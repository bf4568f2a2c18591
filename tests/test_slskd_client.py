"""SlskdClient against `responses` mocks, and parse_downloads on every shape slskd produces."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from trayagent.slskd import client as slskd_mod
from trayagent.slskd import memory as memory_mod
from trayagent.slskd import parsing as parsing_mod
from trayagent.config import SlskdConfig
from trayagent.logs import clear_secrets, redact
from trayagent.core.model import Kind
from trayagent.slskd.client import EnqueueResult, ServerState, SlskdClient
from trayagent.slskd.errors import (
    SlskdBadResponse,
    SlskdBusy,
    SlskdError,
    SlskdInvalidArgument,
    SlskdNotFound,
    SlskdUnauthorized,
    SlskdUnreachable,
)
from trayagent.slskd.parsing import known_ids_only, listed_ids, parse_downloads

BASE = "http://127.0.0.1:5030"
API = BASE + "/api/v0"
KEY = "api-key-0123456789-SECRET"
PASSWORD = "pw-SECRET-value"
TOKEN1 = "eyJhbGciOiJIUzI1NiJ9.first.TOKENSIG1"
TOKEN2 = "eyJhbGciOiJIUzI1NiJ9.second.TOKENSIG2"
GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
GUID2 = "11111111-2222-3333-4444-555555555555"
SECRETS = (KEY, PASSWORD, TOKEN1, TOKEN2)


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture()
def mock() -> responses.RequestsMock:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def key_client(**kw: Any) -> SlskdClient:
    return SlskdClient(SlskdConfig(url=kw.pop("url", BASE), api_key=KEY, **kw))


def jwt_client(**kw: Any) -> SlskdClient:
    return SlskdClient(SlskdConfig(url=BASE, username="me", password=PASSWORD, **kw))


def transfer(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": GUID,
        "username": "alice",
        "direction": "Download",
        "filename": "@@abc\\Music\\Album\\01 Song.flac",
        "size": 1000,
        "state": "Completed, Succeeded",
        "requestedAt": "2026-08-01T10:00:00.1234567",
        "startedAt": "2026-08-01T10:00:01.5Z",
        "endedAt": "2026-08-01T10:00:09.9999999Z",
        "bytesTransferred": 1000,
        "averageSpeed": 123.5,
        "bytesRemaining": 0,
        "percentComplete": 100.0,
        "attempts": 1,
    }
    obj.update(over)
    return obj


def nested(*transfers: dict[str, Any], username: str = "alice") -> list[dict[str, Any]]:
    return [{"username": username, "directories": [{"directory": "@@abc\\Music\\Album", "fileCount": len(transfers),
                                                    "files": list(transfers)}]}]


def assert_secret_free(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text
    assert "\n" not in text


# ----------------------------------------------------------------------------- auth


def test_api_key_header_and_no_bearer(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", json=[], match=[matchers.header_matcher({"X-API-Key": KEY})])
    assert key_client().list_downloads() == []
    assert "Authorization" not in mock.calls[0].request.headers


def test_no_credentials_sends_no_auth_headers(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", json=[])
    SlskdClient(SlskdConfig(url=BASE)).list_downloads()
    headers = mock.calls[0].request.headers
    assert "X-API-Key" not in headers and "Authorization" not in headers


def test_jwt_login_once_then_bearer(mock: responses.RequestsMock) -> None:
    login = mock.post(
        f"{API}/session",
        json={"token": TOKEN1, "tokenType": "Bearer", "expires": 4102444800},
        match=[matchers.json_params_matcher({"username": "me", "password": PASSWORD})],
    )
    mock.get(f"{API}/transfers/downloads", json=[], match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN1}"})])
    client = jwt_client()
    client.list_downloads()
    client.list_downloads()
    assert login.call_count == 1
    assert [c.request.method for c in mock.calls] == ["POST", "GET", "GET"]
    assert "X-API-Key" not in mock.calls[1].request.headers
    assert redact(f"token {TOKEN1}") == "token ***"  # registered for log redaction


def test_jwt_renewed_once_on_401_and_request_repeated(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/session", json={"token": TOKEN1})
    mock.post(f"{API}/session", json={"token": TOKEN2})
    mock.get(f"{API}/transfers/downloads", status=401,
             match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN1}"})])
    mock.get(f"{API}/transfers/downloads", json=nested(transfer()),
             match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN2}"})])
    got = jwt_client().list_downloads()
    assert [t.id for t in got] == [GUID]
    assert [(c.request.method, c.request.url.rsplit("/", 1)[-1]) for c in mock.calls] == [
        ("POST", "session"), ("GET", "downloads"), ("POST", "session"), ("GET", "downloads"),
    ]


def test_the_repeat_after_a_401_carries_the_whole_request(mock: responses.RequestsMock) -> None:
    """The one repeat after a re-login sends the same body, query and (longer enqueue) timeout."""
    mock.post(f"{API}/session", json={"token": TOKEN1})
    mock.post(f"{API}/session", json={"token": TOKEN2})
    mock.post(f"{API}/transfers/downloads/alice", status=401)
    mock.post(f"{API}/transfers/downloads/alice", status=201, body="")
    mock.get(f"{API}/transfers/downloads", status=401)
    mock.get(f"{API}/transfers/downloads", json=[])
    client = jwt_client(timeout=7, enqueue_timeout=90)
    assert client.enqueue("alice", [("a\\b.flac", 12)]).ids_known is False
    sent = [c for c in mock.calls if c.request.url.endswith("/alice")]
    assert [json.loads(c.request.body) for c in sent] == [[{"filename": "a\\b.flac", "size": 12}]] * 2
    assert [c.request.req_kwargs["timeout"] for c in sent] == [(5.0, 90.0)] * 2
    mock.post(f"{API}/session", json={"token": TOKEN1})
    client.list_downloads(include_removed=True)
    listed = [c for c in mock.calls if "/transfers/downloads?" in c.request.url]
    assert [c.request.url.split("?")[1] for c in listed] == ["includeRemoved=true"] * 2
    assert [c.request.req_kwargs["timeout"] for c in listed] == [(5.0, 7.0)] * 2


def test_jwt_second_401_gives_up(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/session", json={"token": TOKEN1})
    mock.delete(f"{API}/transfers/downloads/alice/{GUID}", status=401)
    with pytest.raises(SlskdUnauthorized) as info:
        jwt_client().cancel_download("alice", GUID)
    assert len(mock.calls) == 4  # login, DELETE, login, DELETE - and no more
    assert_secret_free(str(info.value))


def test_expired_token_is_renewed_before_use(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/session", json={"token": TOKEN1, "expires": 1000})  # 1970: already expired
    mock.post(f"{API}/session", json={"token": TOKEN2, "expires": 4102444800})
    mock.get(f"{API}/transfers/downloads", json=[])
    client = jwt_client()
    client.list_downloads()
    client.list_downloads()
    assert mock.calls[3].request.headers["Authorization"] == f"Bearer {TOKEN2}"


def test_api_key_401_is_not_retried_and_hints_cidr(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=401)
    with pytest.raises(SlskdUnauthorized) as info:
        key_client().list_downloads()
    assert len(mock.calls) == 1
    msg = str(info.value)
    assert "api_key" in msg and "cidr" in msg and info.value.status == 401
    assert_secret_free(msg)


def test_403_is_unauthorized(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=403)
    with pytest.raises(SlskdUnauthorized, match=r"403.*api_key.*cidr"):
        key_client().list_downloads()


@pytest.mark.parametrize(("status", "hint"), [(401, "username and password"), (403, "headless")])
def test_login_refused(mock: responses.RequestsMock, status: int, hint: str) -> None:
    mock.post(f"{API}/session", status=status)
    with pytest.raises(SlskdUnauthorized) as info:
        jwt_client().list_downloads()
    assert hint in str(info.value)
    assert len(mock.calls) == 1
    assert_secret_free(str(info.value))


def test_login_without_token_is_bad_response(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/session", json={"tokenType": "Bearer"})
    with pytest.raises(SlskdBadResponse, match="no token"):
        jwt_client().list_downloads()


def test_check_auth(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/session", status=200, body=b"")
    key_client().check_auth()
    mock.replace(responses.GET, f"{API}/session", status=401)
    with pytest.raises(SlskdUnauthorized):
        key_client().check_auth()


def test_session_enabled_is_anonymous(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/session/enabled", body="false")
    assert key_client().session_enabled() is False
    assert "X-API-Key" not in mock.calls[0].request.headers
    mock.replace(responses.GET, f"{API}/session/enabled", body='"yes"')
    with pytest.raises(SlskdBadResponse):
        key_client().session_enabled()


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", [BASE + "/slskd", BASE + "/slskd/", BASE + "/slskd//"])
def test_url_base_path_is_joined(mock: responses.RequestsMock, url: str) -> None:
    mock.get(f"{BASE}/slskd/api/v0/transfers/downloads", json=[])
    mock.get(f"{BASE}/slskd/health", body="Healthy")
    client = key_client(url=url)
    client.list_downloads()
    assert client.health() is True
    assert mock.calls[0].request.url == f"{BASE}/slskd/api/v0/transfers/downloads"
    assert mock.calls[1].request.url == f"{BASE}/slskd/health"


def test_trailing_slash_on_root_url(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", json=[])
    key_client(url=BASE + "/").list_downloads()
    assert mock.calls[0].request.url == f"{API}/transfers/downloads"


@pytest.mark.parametrize(
    ("username", "segment"),
    [
        ("alice", "alice"),
        ("DJ Foo/Bar", "DJ%20Foo%2FBar"),
        ("100%", "100%25"),
        ("a?b#c&d=e", "a%3Fb%23c%26d%3De"),
        ("Ünïcødé", "%C3%9Cn%C3%AFc%C3%B8d%C3%A9"),
        ("%41", "%2541"),  # already-looking-encoded names are encoded again, exactly once
        ("..", "%2E%2E"),  # would otherwise be eaten as a dot segment
        (".", "%2E"),
        ("a.b", "a.b"),
    ],
)
def test_username_is_percent_encoded_exactly_once(mock: responses.RequestsMock, username: str, segment: str) -> None:
    mock.delete(f"{API}/transfers/downloads/{segment}/{GUID}", status=204)
    key_client().remove_download(username, GUID)
    assert mock.calls[0].request.url == f"{API}/transfers/downloads/{segment}/{GUID}?remove=true"


@pytest.mark.parametrize("bad", ["", "01 Song.flac", "../../x", GUID + "/x", GUID + "?", 42, None])
def test_non_guid_ids_never_reach_the_network(mock: responses.RequestsMock, bad: Any) -> None:
    client = key_client()
    with pytest.raises(SlskdInvalidArgument):
        client.cancel_download("alice", bad)
    with pytest.raises(ValueError):  # also a ValueError, for callers that think of it that way
        client.get_download("alice", bad)
    with pytest.raises(SlskdError):
        client.get_search(bad)
    assert len(mock.calls) == 0


def test_empty_username_rejected(mock: responses.RequestsMock) -> None:
    with pytest.raises(SlskdInvalidArgument):
        key_client().remove_download("", GUID)
    assert len(mock.calls) == 0


# ----------------------------------------------------------------------------- timeouts / TLS


def test_timeouts_and_verify_are_passed(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", json=[])
    key_client(timeout=12.5).list_downloads()
    key_client(timeout=2, verify_tls=False).list_downloads()
    assert mock.calls[0].request.req_kwargs["timeout"] == (5.0, 12.5)
    assert mock.calls[0].request.req_kwargs["verify"] not in (False, None)  # True or a CA bundle path
    assert mock.calls[1].request.req_kwargs["timeout"] == (2.0, 2.0)
    assert mock.calls[1].request.req_kwargs["verify"] is False


def test_redirects_are_not_followed(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=301, headers={"Location": "https://127.0.0.1:5031/api/v0/transfers/downloads"})
    with pytest.raises(SlskdBadResponse, match=r"redirected .*\(301\) to https://127.0.0.1:5031"):
        key_client().list_downloads()
    assert len(mock.calls) == 1  # the key is not sent on to the redirect target


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
        (requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")), "connection reset"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "connection timed out after 5s"),
        (requests.exceptions.ReadTimeout("read timed out"), "no answer within 10s"),
        (requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), "verify_tls"),
    ],
)
def test_network_errors_are_unreachable(mock: responses.RequestsMock, exc: Exception, reason: str) -> None:
    mock.get(f"{API}/transfers/downloads", body=exc)
    with pytest.raises(SlskdUnreachable) as info:
        key_client().list_downloads()
    msg = str(info.value)
    assert reason in msg and "127.0.0.1:5030" in msg
    assert_secret_free(msg)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_network_error_text_with_secret_is_scrubbed(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", body=requests.exceptions.ConnectionError(f"boom {KEY}"))
    with pytest.raises(SlskdUnreachable) as info:
        key_client().list_downloads()
    assert_secret_free(str(info.value))


def test_real_connection_refused_on_localhost() -> None:
    import socket

    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SlskdClient(SlskdConfig(url=f"http://127.0.0.1:{port}", api_key=KEY, timeout=2))
    with pytest.raises(SlskdUnreachable, match="connection refused"):
        client.list_downloads()
    assert client.health() is False


@pytest.mark.parametrize("method", ["enqueue", "cancel", "remove", "clear", "search"])
def test_writes_are_never_retried_after_network_error(mock: responses.RequestsMock, method: str) -> None:
    err = requests.exceptions.ConnectionError("reset")
    mock.post(f"{API}/transfers/downloads/alice", body=err)
    mock.delete(f"{API}/transfers/downloads/alice/{GUID}", body=err)
    mock.delete(f"{API}/transfers/downloads/all/completed", body=err)
    mock.post(f"{API}/searches", body=err)
    client = key_client()
    calls = {
        "enqueue": lambda: client.enqueue("alice", [("a\\b.mp3", 1)]),
        "cancel": lambda: client.cancel_download("alice", GUID),
        "remove": lambda: client.remove_download("alice", GUID),
        "clear": client.clear_completed,
        "search": lambda: client.start_search("artist title"),
    }
    with pytest.raises(SlskdUnreachable):
        calls[method]()
    assert len(mock.calls) == 1


def test_500_with_json_string_message(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/transfers/downloads/bob", status=500, json="User bob appears to be offline")
    with pytest.raises(SlskdBadResponse) as info:
        key_client().enqueue("bob", [("x.flac", 10)])
    assert str(info.value) == "slskd failed (500) on POST /api/v0/transfers/downloads/bob: User bob appears to be offline"
    assert info.value.status == 500


def test_500_message_is_trimmed_to_one_line_and_scrubbed(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=500, json="line one\nline two " + KEY + " " + "x" * 500)
    with pytest.raises(SlskdBadResponse) as info:
        key_client().list_downloads()
    msg = str(info.value)
    assert "line one line two" in msg and len(msg) < 300 and msg.endswith("...")
    assert_secret_free(msg)


def test_500_with_text_and_empty_body(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=502, body="Bad Gateway")
    with pytest.raises(SlskdBadResponse, match=r"\(502\) .*: Bad Gateway$"):
        key_client().list_downloads()
    mock.replace(responses.GET, f"{API}/transfers/downloads", status=503, body=b"")
    with pytest.raises(SlskdBadResponse, match=r"slskd failed \(503\) on GET /api/v0/transfers/downloads$"):
        key_client().list_downloads()


def test_broken_json_is_bad_response(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", body='[{"username": "a", "files": [')
    with pytest.raises(SlskdBadResponse, match="invalid JSON"):
        key_client().list_downloads()


@pytest.mark.parametrize("body", ['"text"', "42", "null", "true"])
def test_wrong_top_level_type_is_bad_response(mock: responses.RequestsMock, body: str) -> None:
    mock.get(f"{API}/transfers/downloads", body=body)
    with pytest.raises(SlskdBadResponse):
        key_client().list_downloads()


def test_429_is_busy(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/transfers/downloads/alice", status=429)
    with pytest.raises(SlskdBusy) as info:
        key_client().enqueue("alice", [("a.mp3", 5)])
    assert info.value.status == 429 and len(mock.calls) == 1


def test_404_is_not_found(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads/alice/{GUID}", status=404)
    with pytest.raises(SlskdNotFound) as info:
        key_client().get_download("alice", GUID)
    assert info.value.status == 404


def test_unexpected_status(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", status=418, json="teapot")
    with pytest.raises(SlskdBadResponse, match="unexpected status 418 from slskd for GET /api/v0/transfers/downloads: teapot"):
        key_client().list_downloads()


def test_all_errors_are_slskd_errors() -> None:
    for cls in (SlskdUnreachable, SlskdUnauthorized, SlskdBadResponse, SlskdBusy, SlskdNotFound, SlskdInvalidArgument):
        assert issubclass(cls, SlskdError)


def test_repr_shows_url_only() -> None:
    for client in (key_client(url=BASE + "/slskd/"), jwt_client()):
        text = repr(client) + str(client)
        assert_secret_free(text)
        assert "me" not in text.replace("SlskdClient", "")
    assert repr(key_client(url=BASE + "/slskd/")) == f"SlskdClient(url='{BASE}/slskd')"


def test_debug_logs_never_carry_secrets(mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    mock.post(f"{API}/session", json={"token": TOKEN1})
    mock.get(f"{API}/transfers/downloads", status=500, json=f"echo {TOKEN1}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SlskdBadResponse):
        jwt_client().list_downloads()
    assert_secret_free(caplog.text.replace("\n", " "))


# ----------------------------------------------------------------------------- transfers


def test_list_downloads_and_include_removed(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads", json=nested(transfer()),
             match=[matchers.query_param_matcher({})])
    mock.get(f"{API}/transfers/downloads", json=nested(transfer(id=GUID2)),
             match=[matchers.query_param_matcher({"includeRemoved": "true"})])
    client = key_client()
    assert [t.id for t in client.list_downloads()] == [GUID]
    assert [t.id for t in client.list_downloads(include_removed=True)] == [GUID2]


def test_get_download_uses_group_username_when_missing(mock: responses.RequestsMock) -> None:
    obj = transfer()
    del obj["username"]
    mock.get(f"{API}/transfers/downloads/alice/{GUID}", json=obj)
    got = key_client().get_download("alice", GUID)
    assert got.username == "alice" and got.status.kind is Kind.SUCCEEDED


def test_get_download_wrong_shape(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/transfers/downloads/alice/{GUID}", json=[transfer()])
    with pytest.raises(SlskdBadResponse):
        key_client().get_download("alice", GUID)
    mock.replace(responses.GET, f"{API}/transfers/downloads/alice/{GUID}", json={"id": GUID})
    with pytest.raises(SlskdBadResponse, match="lacks an id or filename"):
        key_client().get_download("alice", GUID)


def test_cancel_remove_clear_routes(mock: responses.RequestsMock) -> None:
    mock.delete(f"{API}/transfers/downloads/alice/{GUID}", status=204)
    mock.delete(f"{API}/transfers/downloads/all/completed", status=204)
    client = key_client()
    client.cancel_download("alice", GUID)
    client.remove_download("alice", GUID)
    client.clear_completed()
    assert [c.request.url for c in mock.calls] == [
        f"{API}/transfers/downloads/alice/{GUID}",
        f"{API}/transfers/downloads/alice/{GUID}?remove=true",
        f"{API}/transfers/downloads/all/completed",
    ]
    assert all(c.request.method == "DELETE" for c in mock.calls)


def test_enqueue_024_shape(mock: responses.RequestsMock) -> None:
    mock.post(
        f"{API}/transfers/downloads/alice",
        status=201,
        json={"enqueued": [transfer(state="Queued, Locally"), "junk"], "failed": [{}, {}]},
        match=[matchers.json_params_matcher([{"filename": "a\\01.flac", "size": 10}, {"filename": "a\\02.flac", "size": 0}])],
    )
    result = key_client().enqueue("alice", [("a\\01.flac", 10), ("a\\02.flac", 0)])
    assert [t.id for t in result.enqueued] == [GUID]
    assert result.failed_count == 2 and result.ids_known is True


def test_enqueue_023_empty_body(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/transfers/downloads/alice", status=201, body=b"")
    assert key_client().enqueue("alice", [("x.mp3", 1)]) == EnqueueResult(enqueued=[], failed_count=0, ids_known=False)


def test_enqueue_wrong_shape(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/transfers/downloads/alice", status=201, json=[1, 2])
    with pytest.raises(SlskdBadResponse):
        key_client().enqueue("alice", [("x.mp3", 1)])


@pytest.mark.parametrize("files", [[], [("", 1)], [("x", -1)], [("x", "12")], [("x", True)], ["x"]])
def test_enqueue_rejects_bad_files_locally(mock: responses.RequestsMock, files: Any) -> None:
    with pytest.raises(SlskdInvalidArgument):
        key_client().enqueue("alice", files)
    assert len(mock.calls) == 0


# ----------------------------------------------------------------------------- status


def test_health(mock: responses.RequestsMock) -> None:
    mock.get(f"{BASE}/health", body="Healthy")
    assert key_client().health() is True
    assert "X-API-Key" not in mock.calls[0].request.headers
    mock.replace(responses.GET, f"{BASE}/health", status=503, body="Unhealthy")
    assert key_client().health() is False
    mock.replace(responses.GET, f"{BASE}/health", body=requests.exceptions.ConnectionError("refused"))
    assert key_client().health() is False


APPLICATION = {
    "version": {"full": "0.26.0.0", "current": "0.26.0"},
    "server": {"address": "server.slsknet.org", "state": "Connected, LoggedIn", "isConnected": True,
               "isLoggedIn": True},
}


def test_server_state_from_application(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/application", json=APPLICATION)
    assert key_client().server_state() == ServerState(connected=True, logged_in=True, state="Connected, LoggedIn")


def test_server_state_falls_back_to_server_route(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/application", status=404)
    mock.get(f"{API}/server", json={"state": "Disconnected", "isConnected": False, "isLoggedIn": False})
    assert key_client().server_state() == ServerState(False, False, "Disconnected")
    mock.replace(responses.GET, f"{API}/application", json={"version": {}})  # no server object
    mock.replace(responses.GET, f"{API}/server", json={"state": "Connected", "isConnected": True})
    assert key_client().server_state() == ServerState(True, False, "Connected")


def test_server_state_unreachable_propagates(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/application", body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(SlskdUnreachable):
        key_client().server_state()
    assert len(mock.calls) == 1


def test_version(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/application/version", json="0.26.0.0")
    assert key_client().version() == "0.26.0.0"
    mock.replace(responses.GET, f"{API}/application/version", status=404)
    mock.get(f"{API}/application", json=APPLICATION)
    assert key_client().version() == "0.26.0.0"


def test_application_must_be_object(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/application", json=[])
    with pytest.raises(SlskdBadResponse, match="expected an object"):
        key_client().application()


# ----------------------------------------------------------------------------- searches


def test_start_search_with_and_without_id(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/searches", json={"id": GUID, "searchText": "a b", "state": "Requested"},
              match=[matchers.json_params_matcher({"id": GUID, "searchText": "a b", "searchTimeout": 9000})])
    assert key_client().start_search("a b", search_id=GUID, timeout_ms=9000)["state"] == "Requested"
    mock.post(f"{API}/searches", json={"state": "Requested"})
    key_client().start_search("x")
    sent = json.loads(mock.calls[1].request.body)
    assert slskd_mod._GUID_RE.match(sent["id"]) and sent["searchTimeout"] == 15000


def test_start_search_rejects_blank_text(mock: responses.RequestsMock) -> None:
    with pytest.raises(SlskdInvalidArgument):
        key_client().start_search("  ")
    assert len(mock.calls) == 0


def test_search_routes(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/searches/{GUID}", json={"id": GUID, "isComplete": True},
             match=[matchers.query_param_matcher({"includeResponses": "true"})])
    mock.get(f"{API}/searches/{GUID}/responses", json=[{"username": "u", "files": []}, "junk"])
    mock.delete(f"{API}/searches/{GUID}", status=204)
    client = key_client()
    assert client.get_search(GUID, include_responses=True)["isComplete"] is True
    assert client.search_responses(GUID) == [{"username": "u", "files": []}]
    client.delete_search(GUID)
    assert mock.calls[-1].request.method == "DELETE"


def test_search_responses_wrong_shape(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/searches/{GUID}/responses", json={"responses": []})
    with pytest.raises(SlskdBadResponse):
        key_client().search_responses(GUID)


def test_close_only_closes_own_session() -> None:
    session = requests.Session()
    closed: list[bool] = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    SlskdClient(SlskdConfig(url=BASE), session=session).close()
    assert closed == []
    with SlskdClient(SlskdConfig(url=BASE)) as client:
        assert client.url == BASE


# ----------------------------------------------------------------------------- parsing


def test_parse_nested_shape() -> None:
    body = json.dumps(
        nested(transfer(), transfer(id=GUID2, filename="@@abc\\Music\\Album\\02.flac", state="InProgress"))
        + nested(transfer(id="b-1", username="bob", filename="x/y.mp3"), username="bob")
    )
    got = parse_downloads(body.encode())
    assert [(t.id, t.username) for t in got] == [(GUID, "alice"), (GUID2, "alice"), ("b-1", "bob")]
    assert got[1].status.kind is Kind.IN_PROGRESS


def test_parse_flat_shape_and_single_group() -> None:
    flat = [{"username": "carol", "files": [transfer(username="carol")]}]
    assert [t.username for t in parse_downloads(json.dumps(flat))] == ["carol"]
    single = nested(transfer(username="dave"), username="dave")[0]
    assert [t.username for t in parse_downloads(json.dumps(single))] == ["dave"]


def test_parse_bare_transfer_list() -> None:
    assert [t.id for t in parse_downloads(json.dumps([transfer(), transfer(id=GUID2)]))] == [GUID, GUID2]


def test_parse_empty_list_and_empty_groups() -> None:
    assert parse_downloads(b"[]") == []
    assert parse_downloads(json.dumps([{"username": "a", "directories": []}, {"username": "b"}])) == []


def test_parse_group_username_fills_missing_transfer_username() -> None:
    obj = transfer()
    del obj["username"]
    assert parse_downloads(json.dumps(nested(obj, username="eve")))[0].username == "eve"


def test_parse_skips_junk_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    body = [
        "junk",
        42,
        None,
        {"username": "a", "directories": ["x", {"directory": "d", "files": "nope"}, {"files": [1, {"id": GUID}]}]},
        {"username": "a", "directories": [{"files": [transfer()]}]},
        {"username": "a", "files": [None, transfer(id=GUID2)]},
    ]
    caplog.set_level(logging.DEBUG, logger="trayagent.slskd.parsing")
    got = parse_downloads(json.dumps(body))
    assert [t.id for t in got] == [GUID, GUID2]
    assert got.skipped == 8  # a directory whose files are not a list counts too
    assert "skipped 8 malformed entries, kept 2" in caplog.text


def test_parse_missing_fields_get_defaults() -> None:
    got = parse_downloads(json.dumps(nested({"id": GUID, "filename": "a\\b.mp3"})))
    t = got[0]
    assert (t.username, t.state, t.size, t.bytes_transferred, t.attempts) == ("alice", "None", 0, 0, 0)
    assert t.requested_at is None and t.ended_at is None and t.exception is None


def test_parse_negative_bytes_remaining() -> None:
    got = parse_downloads(json.dumps(nested(transfer(size=100, bytesTransferred=150, bytesRemaining=-50))))
    assert got[0].size == 100 and got[0].bytes_transferred == 150


def test_parse_timestamps_with_and_without_z() -> None:
    t = parse_downloads(json.dumps(nested(transfer())))[0]
    assert t.requested_at == datetime(2026, 8, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert t.started_at == datetime(2026, 8, 1, 10, 0, 1, 500000, tzinfo=timezone.utc)
    assert t.ended_at == datetime(2026, 8, 1, 10, 0, 9, 999999, tzinfo=timezone.utc)


HOSTILE = [
    "@@xyz\\Music\\AC\\DC\\01 - T.N.T..flac",
    "Music/Ünïcødé/日本語/曲.mp3",
    'quote"s and \\"escapes\\".mp3',
    "new\nline\ttab.mp3",
    "..\\..\\..\\etc\\passwd",
    "../../x/../y.flac",
    "\u202eevil\u202c.mp3",
    "nul\u0000byte.mp3",
    "%2F%25 percent.mp3",
    "emoji 🎵\\track.flac",
    "  spaced  \\  .mp3  ",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_parse_preserves_hostile_filenames_exactly(name: str) -> None:
    got = parse_downloads(json.dumps(nested(transfer(filename=name)), ensure_ascii=False).encode("utf-8"))
    assert got[0].filename == name
    got = parse_downloads(json.dumps(nested(transfer(filename=name))))  # \u-escaped form too
    assert got[0].filename == name


def test_parse_with_stdlib_json_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing_mod, "_loads", json.loads)
    monkeypatch.setattr(parsing_mod, "_JSON_ERRORS", (ValueError, TypeError))
    assert [t.filename for t in parse_downloads(json.dumps(nested(transfer(filename=HOSTILE[1]))))] == [HOSTILE[1]]
    with pytest.raises(SlskdBadResponse):
        parse_downloads("[")


@pytest.mark.parametrize("body", [b"", b"[", b"{'single': 'quotes'}", b"\xff\xfe", '"str"', "1", "null"])
def test_parse_bad_bodies_raise_bad_response(body: bytes | str) -> None:
    with pytest.raises(SlskdBadResponse):
        parse_downloads(body)


def test_parse_large_list_is_complete() -> None:
    groups = []
    for u in range(50):
        files = [transfer(id=f"{u:08d}-0000-0000-0000-{i:012d}", username=f"user{u}") for i in range(200)]
        groups.append({"username": f"user{u}", "directories": [{"directory": "d", "files": files}]})
    got = parse_downloads(json.dumps(groups).encode())
    assert len(got) == 10_000
    assert len({t.id for t in got}) == 10_000


@pytest.mark.parametrize("body,needle", [
    (b"{}", "an object (empty)"),
    (b'{"message": "Service Unavailable"}', "an object (keys: message)"),
    (b'"maintenance"', "a string"),
    (b"null", "null"),
    (b'[{"message": "x"}, {"username": "a", "directories": [{"files": [{"filename": "f"}]}]}]', "none is a transfer"),
])
def test_list_downloads_refuses_a_200_that_is_not_a_download_list(mock: responses.RequestsMock, body: bytes,
                                                                  needle: str) -> None:
    """Issue 14.2: read as "slskd lists nothing", such a body failed every download as missing."""
    mock.get(f"{BASE}/api/v0/transfers/downloads", body=body, status=200)
    with pytest.raises(SlskdBadResponse) as info:
        key_client().list_downloads()
    assert needle in str(info.value)


def test_list_downloads_keeps_good_records_and_counts_the_unreadable(mock: responses.RequestsMock) -> None:
    body = nested(transfer(), {"filename": "no id"}) + [{"message": "x"}]
    mock.get(f"{BASE}/api/v0/transfers/downloads", json=body, status=200)
    got = key_client().list_downloads()
    assert [t.id for t in got] == [GUID] and got.skipped == 2


def test_an_empty_download_list_is_fine(mock: responses.RequestsMock) -> None:
    mock.get(f"{BASE}/api/v0/transfers/downloads", body=b"[]", status=200)
    got = key_client().list_downloads()
    assert got == [] and got.skipped == 0


def test_lone_surrogate_does_not_fail_the_whole_list() -> None:
    """Issue 14.6: slskd's .NET strings may hold a lone surrogate; orjson refuses the body."""
    body = json.dumps(nested(transfer(filename="bad \ud800 name.flac"), transfer(id=GUID2)))
    assert "\\ud800" in body
    got = parse_downloads(body.encode(), listing=True)
    assert [t.filename for t in got] == ["bad \ud800 name.flac", transfer()["filename"]]


# ----------------------------------------------------------------- per-peer lists, recorded ends (issue 12)


def test_known_unchanged_ends_are_not_built_but_listed_by_id() -> None:
    done, changed, live = GUID, GUID[:-1] + "1", GUID[:-1] + "2"
    body = json.dumps(nested(transfer(), transfer(id=changed, state="Queued, Locally"),
                             transfer(id=live, state="InProgress")))
    known = {done: Kind.SUCCEEDED, changed: Kind.FAILED}
    got = parse_downloads(body, listing=True, known=known)
    assert [t.id for t in got] == [changed, live]  # a recorded id whose state moved on is built
    assert got.recorded_ids == [done] and got.skipped == 0
    assert [t.id for t in parse_downloads(body, listing=True)] == [done, changed, live]


def test_a_list_of_only_recorded_ends_is_a_list() -> None:
    got = parse_downloads(json.dumps(nested(transfer())), listing=True, known={GUID: Kind.SUCCEEDED})
    assert list(got) == [] and got.recorded_ids == [GUID]


def test_user_list_is_one_group_and_404_means_none(mock: responses.RequestsMock) -> None:
    mock.get(API + "/transfers/downloads/al%20ice", json=nested(transfer(username="al ice"), username="al ice")[0])
    mock.get(API + "/transfers/downloads/bob", status=404)
    mock.get(API + "/transfers/downloads/eve", json=nested(transfer(username="eve")))
    mock.get(API + "/transfers/downloads/mal", json={"message": "proxy says hi"})
    client = key_client()
    assert [t.username for t in client.list_user_downloads("al ice")] == ["al ice"]
    assert client.list_user_downloads("bob") == []
    with pytest.raises(SlskdBadResponse, match="where a peer's download list belongs"):
        client.list_user_downloads("eve")  # a list is not what this endpoint answers
    with pytest.raises(SlskdBadResponse):
        client.list_user_downloads("mal")


def test_the_whole_list_is_read_in_one_piece_with_the_same_bytes() -> None:
    from trayagent.slskd.simulator import Simulator

    with Simulator(api_key=None) as sim:
        for i in range(300):
            sim.add_download(f"peer{i % 7}", f"@@x\\album\\{i:04d} " + "y" * 200 + ".flac", 10 + i)
        expected = sorted(t["id"] for t in sim.transfers())
        with SlskdClient(SlskdConfig(url=sim.url)) as client:
            for _ in range(3):  # the connection is handed back and reused
                assert sorted(t.id for t in client.list_downloads()) == expected
            assert [t.username for t in client.list_user_downloads("peer3")] == ["peer3"] * 43
            assert client.list_user_downloads("nobody") == []


def test_parse_with_the_stdlib_fallback_is_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps(nested(transfer(), transfer(id=GUID[:-1] + "1", state="InProgress")))
    with_orjson = parse_downloads(body, listing=True, known={GUID: Kind.SUCCEEDED})
    monkeypatch.setattr(parsing_mod, "_loads", json.loads)
    monkeypatch.setattr(parsing_mod, "orjson", None)
    fallback = parse_downloads(body, listing=True, known={GUID: Kind.SUCCEEDED})
    assert list(fallback) == list(with_orjson) and fallback.recorded_ids == [GUID]


def _odd_records() -> list[Any]:
    """Recorded and fresh records mixed with every kind of oddity the per-record loop handles."""
    ids = [f"{i:08d}-0000-0000-0000-000000000000" for i in range(8)]
    return [
        transfer(id=ids[0]),  # recorded, unchanged
        transfer(id=ids[1], state="Completed, Errored"),  # recorded as succeeded, now failed: built
        transfer(id=ids[2], state="InProgress"),  # not recorded: built
        transfer(id=ids[3], state=["Completed"]),  # recorded, a state that is not a string
        transfer(id=ids[4], filename=""),  # recorded, no file name: junk
        transfer(id=["not", "hashable"]),
        "not an object",
        transfer(id=ids[5], filename=None),
        transfer(id=ids[6], state={"odd": 1}),
        transfer(id=7),
    ]


@pytest.mark.parametrize("odd", range(3, 10))
def test_recorded_ends_are_sorted_out_as_the_per_record_loop_does(odd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C-level pass (_unrecorded) and the per-record loop give the same answer on any input."""
    records = _odd_records()
    plain = [records[0], records[1], records[2], transfer(id=GUID2)]
    known = {r["id"]: Kind.SUCCEEDED for r in records if type(r) is dict and type(r["id"]) is str}
    for files in (plain, plain + [records[odd]]):
        body = json.dumps([{"username": "u", "directories": [{"directory": "d", "files": files}]},
                           {**transfer(id=GUID, username="bare")}])  # a bare transfer object as well
        fast = parse_downloads(body, listing=True, known={**known, GUID: Kind.SUCCEEDED})
        with monkeypatch.context() as m:
            m.setattr(parsing_mod, "_unrecorded", lambda *a: None)
            loop = parse_downloads(body, listing=True, known={**known, GUID: Kind.SUCCEEDED})
        assert list(fast) == list(loop) and fast.recorded_ids == loop.recorded_ids and fast.skipped == loop.skipped
        assert fast.recorded_ids[:1] == [records[0]["id"]] and fast.recorded_ids[-1] == GUID


# ----------------------------------------------------------------- the whole list read by id (issue 12)

GUID3 = "99999999-8888-7777-6666-555555555555"


def test_listed_ids_finds_every_id_compact_or_indented() -> None:
    records = [transfer(), transfer(id=GUID2, username="bob"), transfer(id=GUID3, filename='has "id":"x" in it')]
    for body in (json.dumps(nested(*records), separators=(",", ":")), json.dumps(nested(*records), indent=2)):
        assert listed_ids(body.encode()) == [GUID, GUID2, GUID3]


@pytest.mark.parametrize("body", [
    b"[]",  # nothing to go by: parsed (cheap), never read as "slskd lists nothing"
    b'{"message": "Service Unavailable"}',
    b'{"username": "alice", "directories": []}',
    json.dumps(nested(transfer(), transfer(id=12345))).encode(),  # an id that is not a string
    json.dumps(nested(transfer(), transfer(id="ab\"c"))).encode(),  # an id with an escape
    json.dumps(nested(transfer(), transfer(id="caf\u00e9"))).encode(),
    json.dumps(nested(transfer(id="café"), transfer()), ensure_ascii=False).encode(),  # not ASCII
    json.dumps(nested(transfer(), transfer(id=""))).encode(),
    json.dumps(nested(transfer(state="id"))).encode(),  # a string value that reads "id"
    json.dumps(nested(transfer(), transfer(id=GUID2)))[:-40].encode(),  # cut short
])
def test_listed_ids_is_unsure_rather_than_short(body: bytes) -> None:
    assert listed_ids(body) is None


@pytest.mark.parametrize("name", HOSTILE)
def test_listed_ids_never_misses_an_id_a_parse_sees(name: str) -> None:
    """Whatever the strings hold, the ids found include every id the parser reads (or it is unsure)."""
    fields = ("filename", "username", "state", "exception", "requestedAt")
    records = [transfer(id=f"{i:08d}-0000-0000-0000-000000000000", **{f: name + f'"id":"{GUID}"'})
               for i, f in enumerate(fields)]
    for ascii_only in (True, False):
        body = json.dumps(nested(*records), ensure_ascii=ascii_only).encode()
        found = listed_ids(body)
        assert found is None or {t.id for t in parse_downloads(body)} <= set(found)


def test_a_list_of_known_ids_comes_back_by_id_and_a_new_id_gets_it_parsed() -> None:
    body = json.dumps(nested(transfer(), transfer(id=GUID2, state="InProgress"))).encode()
    got = known_ids_only(body, {GUID: Kind.SUCCEEDED}, frozenset({GUID2}))
    assert got is not None and got.by_id and list(got) == [] and got.recorded_ids == [GUID, GUID2]
    assert known_ids_only(body, {GUID: Kind.SUCCEEDED}, frozenset()) is None  # GUID2 is new


def test_list_downloads_reads_by_id_only_when_asked_and_nothing_is_new(mock: responses.RequestsMock) -> None:
    body = json.dumps(nested(transfer(), transfer(id=GUID2, state="InProgress")))
    mock.get(f"{BASE}/api/v0/transfers/downloads", body=body, status=200)
    client = key_client()
    known = {GUID: Kind.SUCCEEDED}
    by_id = client.list_downloads(known=known, followed=frozenset({GUID2}))
    assert by_id.by_id and list(by_id) == [] and sorted(by_id.recorded_ids) == sorted([GUID, GUID2])
    built = client.list_downloads(known=known, followed=frozenset())
    assert not built.by_id and [t.id for t in built] == [GUID2] and built.recorded_ids == [GUID]
    assert [t.id for t in client.list_downloads(known=known)] == [GUID2]  # not asked: parsed


def test_a_parse_is_trimmed_after_unless_asked_not_to_and_a_read_by_id_always(
        mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory_mod, "trim_heap", trims.append)
    body = json.dumps(nested(transfer(), transfer(id=GUID2, state="InProgress")))
    mock.get(f"{BASE}/api/v0/transfers/downloads", body=body, status=200)
    client = key_client()
    client.list_downloads(known={GUID: Kind.SUCCEEDED}, trim=False)
    assert trims == []  # while downloads are followed the freed memory serves the next poll
    client.list_downloads(known={GUID: Kind.SUCCEEDED}, followed=frozenset({GUID2}), trim=False)
    client.list_downloads(known={GUID: Kind.SUCCEEDED})
    assert trims == [len(body), len(body)]


def test_the_heap_is_trimmed_only_after_a_body_big_enough_to_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed: list[int] = []
    monkeypatch.setattr(memory_mod, "_malloc_trim", trimmed.append)
    memory_mod.trim_heap(memory_mod.TRIM_AFTER - 1)
    assert trimmed == []
    memory_mod.trim_heap(memory_mod.TRIM_AFTER)
    assert trimmed == [0]  # malloc_trim(0): every free page, whatever its size
    monkeypatch.setattr(memory_mod, "_malloc_trim", None)  # no glibc: nothing to call
    memory_mod.trim_heap(10 * memory_mod.TRIM_AFTER)
