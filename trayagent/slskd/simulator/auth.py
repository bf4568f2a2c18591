"""slskd's authentication: the X-API-Key header, `POST session` logins and the JWTs they issue.

Why here and strict: a client that sends its key wrongly, or keeps using an expired token, must be
refused exactly as slskd refuses it (401 with the same WWW-Authenticate challenge).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import uuid

from trayagent.slskd.simulator.wire import Headers, Response, dumps, empty, json_object_body, json_response

TOKEN_LIFETIME = 7 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def make_jwt(secret: bytes, name: str, issued: int, expires: int) -> str:
    """A real HS256 JWT shaped like slskd's (clients should treat it as opaque)."""
    header = _b64(dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(dumps({
        "name": name, "role": "Administrator", "jti": uuid.uuid4().hex,
        "nbf": issued, "exp": expires, "iat": issued, "iss": "slskd",
    }))
    sig = _b64(hmac.new(secret, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


class TokenStore:
    """The JWTs issued since slskd started (its signing key is new at every start)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._secret = os.urandom(32)

    def issue(self, name: str) -> tuple[str, int, int]:
        """A new token for `name`: (token, issued, expires), epoch seconds."""
        issued = int(time.time())
        expires = issued + TOKEN_LIFETIME
        with self._lock:
            token = make_jwt(self._secret, name, issued, expires)
            self._tokens[token] = float(expires)
        return token, issued, expires

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()

    def forget_all(self) -> None:
        """Every issued token stops working, as when slskd restarts with a new signing key."""
        with self._lock:
            self._tokens.clear()
            self._secret = os.urandom(32)


def authenticate(api_key: str | None, tokens: TokenStore, headers: Headers) -> tuple[bool, str | None]:
    """(accepted, credential kind): "none" with auth off, "api-key", "bearer"; when refused,
    "invalid-bearer", "invalid-key" or None (no credential at all)."""
    if api_key is None:
        return True, "none"
    key = headers.get("X-API-Key")
    if key is not None and _same(key, api_key):
        return True, "api-key"
    authz = headers.get("Authorization") or ""
    if authz[:7].lower() == "bearer ":
        if tokens.valid(authz[7:].strip()):
            return True, "bearer"
        return False, "invalid-bearer"
    return False, "invalid-key" if key is not None else None


def refusal(kind: str | None) -> Response:
    """The 401 for a refused credential, with the challenge slskd's JwtBearer handler sends."""
    challenge = 'Bearer error="invalid_token"' if kind == "invalid-bearer" else "Bearer"
    return Response(401, headers={"WWW-Authenticate": challenge}, auth="invalid" if kind else None)


def login(username: str, password: str, tokens: TokenStore, headers: Headers, body: bytes) -> Response:
    """`POST session`: a token for the right username and password, else 400/401."""
    data = json_object_body(headers, body)
    if isinstance(data, Response):
        return data
    user, given = data.get("username"), data.get("password")
    if not isinstance(user, str) or not user or not isinstance(given, str) or not given:
        return empty(400)
    if not (_same(user, username) and _same(given, password)):
        return empty(401)
    token, issued, expires = tokens.issue(user)
    return json_response(200, {
        "expires": expires, "issued": issued, "name": user, "notBefore": issued,
        "token": token, "tokenType": "Bearer",
    })
