"""HTTP client for the central service (docs/sync-protocol.md), with errors classified.

Transient failures (connection refused, dropped or stalled, 429, 5xx) raise ``Transient`` and are
retried by the engine with backoff; an expired token is renewed once; anything else is
``Permanent``. TLS is always verified; plain HTTP is allowed only to a loopback address.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.errors import KnownError
from app.logs import Safe

logger = logging.getLogger(__name__)


class Transient(Exception):
    """Worth retrying later: the network or the service is unavailable for now."""


class Permanent(KnownError):
    """The service refused the request and will refuse it again."""


class AuthFailed(Permanent):
    remedy = "Check the user name and password for the central service."


def check_transport(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = (parts.hostname or "").strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise Permanent("The central service must be reached over https (plain http only on loopback).")


Credentials = Callable[[], tuple[str, str]]


class HubClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        workstation: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_transport(base_url)
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.workstation = workstation
        self._http = http or httpx.Client(timeout=timeout, verify=True)
        self._token: str | None = None
        self._token_expires = 0.0
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: bool = True, timeout: float | None = None, **kw: Any) -> Any:
        for attempt in (1, 2):
            headers = {}
            if auth:
                headers["Authorization"] = f"Bearer {self._ensure_token()}"
            try:
                extra = {"timeout": timeout} if timeout is not None else {}
                r = self._http.request(method, self.base_url + path, headers=headers, **kw, **extra)
            except httpx.TransportError as exc:  # refused, reset, timed out, TLS failure
                raise Transient(type(exc).__name__) from None
            except RuntimeError:
                if self._http.is_closed:  # closed by stop() while this thread was about to send
                    raise Transient("client closed") from None
                raise
            if r.status_code == 401 and auth and attempt == 1:
                self._token = None  # expired or the service restarted with another key: log in again
                continue
            if r.status_code == 429 or r.status_code >= 500:
                raise Transient(f"HTTP {r.status_code}")
            if r.status_code == 401:
                raise AuthFailed("The central service did not accept the login.")
            if r.status_code >= 400:
                raise Permanent(f"The central service refused the request (HTTP {r.status_code}).")
            try:
                return r.json()
            except ValueError:
                raise Transient("malformed reply") from None
        raise AuthFailed("The central service did not accept the login.")  # pragma: no cover

    def _ensure_token(self) -> str:
        if self._token and self._clock() < self._token_expires - 30:
            return self._token
        username, password = self._credentials()
        body = self._send(
            "POST", "/v1/login", auth=False,
            json={"username": username, "password": password, "workstation": self.workstation},
        )  # fmt: skip
        self._token = str(body["token"])
        self._token_expires = self._clock() + float(body.get("expires_in", 300))
        logger.info("logged in to the central service as %s", Safe(username))
        return self._token

    # -- protocol ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/v1/health", auth=False)

    def push(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = self._send("POST", "/v1/changes", json={"workstation": self.workstation, "changes": changes})
        return list(body["results"])

    def pull(self, since: int, limit: int) -> dict[str, Any]:
        return self._send("GET", "/v1/changes", params={"since": since, "limit": limit})

    def wait(self, since: int, timeout: float) -> int:
        body = self._send(
            "GET", "/v1/changes/wait", params={"since": since, "timeout": timeout}, timeout=timeout + 10
        )
        return int(body["last_seq"])

    def push_audit(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return self._send("POST", "/v1/audit", json={"workstation": self.workstation, "entries": entries})
