"""One authenticated HTTP connection to slskd: the session, the login, one exchange, the status.

The plumbing under SlskdClient (trayagent/slskd/client.py), which adds slskd's endpoints:
- Every failure is one typed SlskdError with a one-line, secret-free message the tray can show.
- Nothing is retried except the single re-login after a 401 on a JWT session (a 401 means the
  request was not executed). POST/DELETE are never repeated after a network error, because
  slskd may have acted on them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping, Self, Sequence, TypedDict, Unpack
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from trayagent.config import SlskdConfig
from trayagent.logs import register_secret, scrub
from trayagent.slskd.errors import (
    SlskdBadResponse,
    SlskdBusy,
    SlskdError,
    SlskdNotFound,
    SlskdUnauthorized,
    SlskdUnreachable,
    shorten,
)
from trayagent.slskd.parsing import JSON, JSONObject, error_message, load_json

log = logging.getLogger(__name__)

API = "/api/v0"
CONNECT_TIMEOUT_CAP = 5.0
_insecure_warned = False


#: What we send slskd as a JSON body: JSON built of plain values (read back as `JSON`).
RequestBody = None | bool | int | float | str | Sequence["RequestBody"] | Mapping[str, "RequestBody"]


class Exchange(TypedDict, total=False):
    """What one request carries besides its method, path and credentials."""

    params: Mapping[str, str] | None
    json_body: RequestBody
    stream: bool  # True leaves the body unread (see SlskdConnection._get_whole)
    timeout: tuple[float, float] | None  # (connect, read); None: [slskd] timeout


def _classify_network_error(exc: BaseException, timeout: float) -> str:
    """A short reason for a requests exception, without its URL-laden repr."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (slskd's HTTPS certificate is self-signed by default: set [slskd] verify_tls = false or use http)"
    if isinstance(exc, (requests.exceptions.ConnectTimeout,)):
        return f"connection timed out after {min(timeout, CONNECT_TIMEOUT_CAP):g}s"
    if isinstance(exc, (requests.exceptions.ReadTimeout, requests.exceptions.Timeout)):
        return f"no answer within {timeout:g}s"
    chain: list[BaseException] = []
    current: object = exc
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



class SlskdConnection:
    """HTTP to one slskd instance with its credentials. Safe to share between threads."""

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
        self._env_settings: Mapping[str, Any] | None = None  # requests' own settings: its value types
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires: float | None = None
        self._secrets = tuple(s for s in (cfg.api_key, cfg.password) if s)
        if not self._verify:
            _quiet_insecure_warning()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    __str__ = __repr__

    def __enter__(self) -> Self:
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
        answer = load_json(resp.content, what)
        body: JSONObject = answer if isinstance(answer, dict) else {}
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise SlskdBadResponse(f"slskd's {what} answer has no token", resp.status_code)
        register_secret(token)
        expires = body.get("expires")
        expiry = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None
        log.debug("logged in to slskd as %s (token expires %s)", self._cfg.username, expiry)
        return token, expiry

    def _send(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **exchange: Unpack[Exchange],
    ) -> requests.Response:
        """One HTTP exchange; network failures become SlskdUnreachable. Never retries.

        `stream=True` leaves the body unread (see _get_whole).
        """
        params, json_body = exchange.get("params"), exchange.get("json_body")
        stream, timeout = exchange.get("stream", False), exchange.get("timeout")
        full_path = self._base_path + path
        url = self._origin + full_path
        req = requests.Request(method, url, params=params, json=json_body, headers=dict(headers or {}))
        prepared = self._session.prepare_request(req)
        # requests re-quotes URLs and would turn our %2E back into '.', so put the exact
        # path we encoded back in (it is already pure, fully quoted ASCII).
        p = urlsplit(prepared.url or url)
        prepared.url = urlunsplit((p.scheme, p.netloc, full_path, p.query, p.fragment))
        settings = self._env_settings
        if settings is None:  # proxies and CA bundle from the environment: one host, read once
            settings = self._session.merge_environment_settings(prepared.url, {}, None, self._verify, None)
            self._env_settings = settings
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
        self, method: str, path: str, *, auth: bool = True, **exchange: Unpack[Exchange],
    ) -> requests.Response:
        """Send with auth; on a 401 with a JWT, log in again once and repeat once."""
        headers = self._auth_headers() if auth else {}
        resp = self._send(method, path, headers=headers, **exchange)
        if resp.status_code == 401 and auth and "Authorization" in headers:
            log.info("slskd rejected the session token; logging in again")
            resp.close()
            headers = {"Authorization": f"Bearer {self._ensure_token(force=True)}"}
            resp = self._send(method, path, headers=headers, **exchange)
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
        detail = error_message(resp.content[:4096])
        suffix = f": {detail}" if detail else ""
        if code == 404:
            raise SlskdNotFound(self._scrub(f"slskd has no such resource (404) for {what}{suffix}"), code)
        if code == 429:
            raise SlskdBusy(self._scrub(f"slskd is busy (429) for {what}; try again shortly"), code)
        if 300 <= code < 400:
            location = resp.headers.get("Location", "")
            where = f" to {shorten(location, 120)}" if location else ""
            raise SlskdBadResponse(
                self._scrub(f"slskd redirected {what} ({code}){where}: set [slskd] url to the final address"), code)
        if code >= 500:
            raise SlskdBadResponse(self._scrub(f"slskd failed ({code}) on {what}{suffix}"), code)
        raise SlskdBadResponse(self._scrub(f"unexpected status {code} from slskd for {what}{suffix}"), code)

    def _get_json(self, path: str, *, params: Mapping[str, str] | None = None, auth: bool = True) -> JSON:
        """GET `path` and decode its body; any failure is a SlskdError."""
        resp = self._request("GET", path, params=params, auth=auth)
        return load_json(resp.content, f"GET {path}")

    @staticmethod
    def _expect_dict(value: JSON, what: str) -> JSONObject:
        """`value` as a JSON object, or SlskdBadResponse naming `what`."""
        if not isinstance(value, dict):
            raise SlskdBadResponse(f"slskd sent {type(value).__name__} for {what}, expected an object")
        return value



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


__all__ = ["API", "CONNECT_TIMEOUT_CAP", "Exchange", "SlskdConnection"]
