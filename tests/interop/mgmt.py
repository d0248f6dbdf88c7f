"""A small client for RabbitMQ's management HTTP API (and Warren's), on urllib.

    api = Mgmt("http://127.0.0.1:15672", "guest", "guest")
    status, body = api.get("/api/whoami")          # body: parsed JSON, text or None
    api.create_vhost("v"); api.create_user("u", "secret", tags="management")
    api.set_permissions("v", "u", configure="^u\\.", write=".*", read=".*")

Every request returns ``(status, body)`` without raising on 4xx/5xx; the
``create_*``/``set_*``/``delete_*`` helpers assert a 2xx status, since the
tests use them for setup, not as the thing under test.  ``request_raw`` also
returns the response headers.  Names are percent-encoded as path segments
(the default vhost ``/`` is ``%2F``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

HTTP_TIMEOUT = 15
STATS_TIMEOUT = 30.0  # RabbitMQ refreshes its statistics every 5 s

SHA256 = "rabbit_password_hashing_sha256"
SHA512 = "rabbit_password_hashing_sha512"
MD5 = "rabbit_password_hashing_md5"


def q(name: str) -> str:
    """One percent-encoded path segment (``/`` -> ``%2F``)."""
    return urllib.parse.quote(name, safe="")


def password_hash(password: str, salt: Optional[bytes] = None, algorithm: str = SHA256) -> str:
    """RabbitMQ's password_hash: base64(salt4 + H(salt4 + utf8(password)))."""
    salt = os.urandom(4) if salt is None else salt
    assert len(salt) == 4
    h = {SHA256: hashlib.sha256, SHA512: hashlib.sha512, MD5: hashlib.md5}[algorithm]
    return base64.b64encode(salt + h(salt + password.encode("utf-8")).digest()).decode("ascii")


class HTTPResult(tuple):
    """(status, body) with ``.headers`` (an email.message.Message) and ``.raw`` (bytes)."""

    headers: Any
    raw: bytes

    def __new__(cls, status, body, headers, raw):
        self = super().__new__(cls, (status, body))
        self.headers = headers
        self.raw = raw
        return self

    @property
    def status(self) -> int:
        return self[0]

    @property
    def body(self):
        return self[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # report 3xx as they are
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class Mgmt:
    def __init__(self, base_url: str, user: Optional[str] = "guest",
                 password: Optional[str] = "guest", timeout: float = HTTP_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.password = password
        self.timeout = timeout

    def as_user(self, user: Optional[str], password: Optional[str]) -> "Mgmt":
        """The same API with other credentials (``None`` user: no Authorization header)."""
        return Mgmt(self.base_url, user, password, self.timeout)

    # --- plain HTTP ----------------------------------------------------------

    def request_raw(self, method: str, path: str, body: Any = None,
                    headers: Optional[dict] = None, data: Optional[bytes] = None) -> HTTPResult:
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with _opener.open(req, timeout=self.timeout) as resp:
                status, resp_headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, resp_headers, raw = err.code, err.headers, err.read()
        return HTTPResult(status, _decode(raw, resp_headers), resp_headers, raw)

    def request(self, method: str, path: str, body: Any = None, **kw) -> HTTPResult:
        return self.request_raw(method, path, body, **kw)

    def get(self, path: str, **kw) -> HTTPResult:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any = None, **kw) -> HTTPResult:
        return self.request("PUT", path, {} if body is None else body, **kw)

    def post(self, path: str, body: Any = None, **kw) -> HTTPResult:
        return self.request("POST", path, {} if body is None else body, **kw)

    def delete(self, path: str, **kw) -> HTTPResult:
        return self.request("DELETE", path, **kw)

    # --- objects (asserting success) --------------------------------------------

    def _ok(self, result: HTTPResult, what: str) -> HTTPResult:
        assert 200 <= result.status < 300, f"{what}: HTTP {result.status} {result.body!r}"
        return result

    def create_vhost(self, name: str, **props) -> HTTPResult:
        return self._ok(self.put(f"/api/vhosts/{q(name)}", props), f"PUT vhost {name!r}")

    def delete_vhost(self, name: str, missing_ok: bool = False) -> HTTPResult:
        r = self.delete(f"/api/vhosts/{q(name)}")
        if missing_ok and r.status == 404:
            return r
        return self._ok(r, f"DELETE vhost {name!r}")

    def create_user(self, name: str, password: Optional[str] = None, *, tags: str = "",
                    password_hash: Optional[str] = None,
                    hashing_algorithm: Optional[str] = None) -> HTTPResult:
        body: dict = {"tags": tags}
        if password is not None:
            body["password"] = password
        if password_hash is not None:
            body["password_hash"] = password_hash
        if hashing_algorithm is not None:
            body["hashing_algorithm"] = hashing_algorithm
        return self._ok(self.put(f"/api/users/{q(name)}", body), f"PUT user {name!r}")

    def delete_user(self, name: str, missing_ok: bool = False) -> HTTPResult:
        r = self.delete(f"/api/users/{q(name)}")
        if missing_ok and r.status == 404:
            return r
        return self._ok(r, f"DELETE user {name!r}")

    def set_permissions(self, vhost: str, user: str, configure: str = ".*",
                        write: str = ".*", read: str = ".*") -> HTTPResult:
        return self._ok(self.put(f"/api/permissions/{q(vhost)}/{q(user)}",
                                 {"configure": configure, "write": write, "read": read}),
                        f"PUT permissions {vhost!r}/{user!r}")

    def clear_permissions(self, vhost: str, user: str) -> HTTPResult:
        return self._ok(self.delete(f"/api/permissions/{q(vhost)}/{q(user)}"),
                        f"DELETE permissions {vhost!r}/{user!r}")

    def set_topic_permissions(self, vhost: str, user: str, exchange: str,
                              write: str = ".*", read: str = ".*") -> HTTPResult:
        return self._ok(self.put(f"/api/topic-permissions/{q(vhost)}/{q(user)}",
                                 {"exchange": exchange, "write": write, "read": read}),
                        f"PUT topic-permissions {vhost!r}/{user!r}")

    def clear_topic_permissions(self, vhost: str, user: str) -> HTTPResult:
        return self._ok(self.delete(f"/api/topic-permissions/{q(vhost)}/{q(user)}"),
                        f"DELETE topic-permissions {vhost!r}/{user!r}")


def _decode(raw: bytes, headers) -> Any:
    if not raw:
        return None
    ctype = (headers.get("Content-Type") or "") if headers is not None else ""
    text = raw.decode("utf-8", "replace")
    if "json" in ctype or text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def poll(fetch: Callable[[], Any], check: Callable[[Any], Any], timeout: float = STATS_TIMEOUT,
         what: str = "the management API", interval: float = 0.2):
    """fetch() until check(value) is truthy; returns that value.  RabbitMQ
    shows many changes only after its next statistics round, so tests that
    also run against it poll instead of asserting at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        try:
            ok = check(value)
        except (KeyError, TypeError, IndexError, AttributeError, StopIteration):
            ok = False
        if ok:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}")
        time.sleep(interval)
