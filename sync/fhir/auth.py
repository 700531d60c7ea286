"""SMART on FHIR authorization on Authlib's httpx client: a ``TokenSource`` for the FHIR client.

* :class:`BackendServicesAuth`: the sync service's own access (SMART Backend Services):
  ``client_credentials`` with a ``private_key_jwt`` client assertion signed by the workstation's
  :class:`~sync.fhir.signing_key.SigningKey`.
* :class:`AppLaunchAuth`: a person's standalone launch: a public client, authorization code with
  PKCE (S256), ``state`` checked, ``aud`` = the FHIR base; the refresh token renews the access
  token and may be kept in the OS keychain (:class:`KeyringTokenStore`).
* :func:`discover` reads ``[base]/.well-known/smart-configuration``.

Access tokens live in memory only and are renewed 60 s before ``expires_in`` runs out, measured on
a monotonic clock. No token, assertion, code or refresh token is ever logged or put in an error
message; an error names at most the server's OAuth error code (``invalid_client``).
"""

from __future__ import annotations

import hmac
import http.server
import logging
import re
import threading
import time
import urllib.parse
import warnings
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign

from app.errors import KeychainUnavailable, KnownError
from app.security.keys import KeyringKeyStore
from sync.fhir.signing_key import SigningKey

with warnings.catch_warnings():
    # Authlib 1.9 prefers the "httpx2" fork and warns on import that plain httpx is deprecated.
    # This project runs on httpx (pyproject); the notice is expected, not something to log.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

logger = logging.getLogger(__name__)

REFRESH_LEEWAY = 60.0  # renew a token this many seconds before it expires
ASSERTION_LIFETIME = 300  # SMART: the client assertion's exp at most five minutes ahead
DEFAULT_EXPIRES_IN = 300  # for a token response without expires_in
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
KEYRING_SERVICE = "careops-desk-ehr"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HTTP_ERRORS = (AuthlibBaseError, httpx.HTTPError, ValueError)


class SmartAuthError(KnownError):
    """The EHR's authorization server refused the request or answered something unusable."""

    remedy = (
        "Check the EHR connection settings and the client registration (client id, public key "
        "set, scopes) with the EHR team."
    )


class SmartAuthUnavailable(SmartAuthError):
    remedy = "Check the network connection; the sync tries again later."


class SignInRequired(SmartAuthError):
    remedy = "Sign in to the EHR again."


class TokenSource(Protocol):
    """What the FHIR client asks for the ``Authorization`` header."""

    def authorization(self) -> str:
        """``"Bearer <token>"``, fetching or renewing first when missing or within 60 s of expiry."""
        ...

    def invalidate(self) -> None:
        """Forget the access token (the server answered 401); the next call gets a new one."""
        ...


def _code(value: object) -> str:
    """An OAuth error code fit for a message: the server's own text only if it is a plain code."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "unspecified error"


def _translate(exc: Exception, what: str) -> SmartAuthError:
    if isinstance(exc, AuthlibBaseError):
        return SmartAuthError(f"The EHR refused {what} ({_code(exc.error)}).")
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status >= 500 or status == 429:
            return SmartAuthUnavailable(f"The EHR's authorization server is not available (HTTP {status}).")
        return SmartAuthError(f"The EHR refused {what} (HTTP {status}).")
    if isinstance(exc, httpx.HTTPError):
        return SmartAuthUnavailable(f"The EHR's authorization server cannot be reached ({type(exc).__name__}).")
    return SmartAuthError(f"The EHR answered {what} with something that is not a token response.")


def _checked_url(url: str, what: str) -> str:
    """TLS always; plain http only to this computer (a test server, a local proxy)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return url
    raise SmartAuthError(f"The EHR's {what} must be an https address.")


def _seconds(value: Any) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return DEFAULT_EXPIRES_IN
    return seconds if seconds > 0 else DEFAULT_EXPIRES_IN


# -- discovery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmartConfiguration:
    """What ``.well-known/smart-configuration`` says (the parts this client uses)."""

    token_endpoint: str
    authorization_endpoint: str | None
    capabilities: tuple[str, ...]
    code_challenge_methods: tuple[str, ...]
    signing_algs: tuple[str, ...]  # token_endpoint_auth_signing_alg_values_supported


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def discover(base_url: str, transport: httpx.BaseTransport | None = None) -> SmartConfiguration:
    """Read the FHIR server's SMART configuration (token and authorization endpoints)."""
    url = _checked_url(base_url.rstrip("/") + "/.well-known/smart-configuration", "FHIR address")
    try:
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            response = client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _translate(exc, "the SMART configuration request") from None
    token = data.get("token_endpoint") if isinstance(data, dict) else None
    if not isinstance(token, str):
        raise SmartAuthError("The EHR's SMART configuration names no token endpoint.")
    authorize = data.get("authorization_endpoint")
    return SmartConfiguration(
        token_endpoint=_checked_url(token, "token endpoint"),
        authorization_endpoint=_checked_url(authorize, "authorization endpoint") if isinstance(authorize, str) else None,
        capabilities=_strings(data.get("capabilities")),
        code_challenge_methods=_strings(data.get("code_challenge_methods_supported")),
        signing_algs=_strings(data.get("token_endpoint_auth_signing_alg_values_supported")),
    )


# -- the token cache both flows share ------------------------------------------------------------


class _BearerTokens:
    """The current access token and when to renew it; one fetch at a time across threads."""

    def __init__(self, client: OAuth2Client, clock: Callable[[], float]) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._renew_at = 0.0

    def authorization(self) -> str:
        with self._lock:
            if self._access is None or self._clock() >= self._renew_at:
                started = self._clock()  # before the request: the lifetime counts from here at the latest
                self._accept(self._obtain(), started)
            return f"Bearer {self._access}"

    def invalidate(self) -> None:
        with self._lock:
            self._access = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> _BearerTokens:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _obtain(self) -> dict[str, Any]:
        raise NotImplementedError

    def _accept(self, token: dict[str, Any], started: float) -> None:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise SmartAuthError("The EHR's token response holds no access token.")
        if str(token.get("token_type", "bearer")).lower() != "bearer":
            raise SmartAuthError("The EHR issued a token that is not a bearer token.")
        lifetime = _seconds(token.get("expires_in"))
        self._access = access
        self._renew_at = started + lifetime - REFRESH_LEEWAY
        logger.info("EHR access token obtained, valid for %d s", lifetime)


# -- SMART Backend Services ----------------------------------------------------------------------


class _SmartPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's private_key_jwt with SMART's rules for the assertion: ``kid`` and ``typ``
    headers, ``exp`` at most five minutes ahead (Authlib's default is an hour), a new ``jti``
    each time (Authlib draws one per call when no claims are passed)."""

    def __init__(self, token_endpoint: str, key: SigningKey) -> None:
        super().__init__(token_endpoint, alg=key.alg)
        self._kid = key.kid

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(
            auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint, alg=self.alg,
            header={"kid": self._kid, "typ": "JWT"}, expires_in=ASSERTION_LIFETIME,
        )  # fmt: skip


class BackendServicesAuth(_BearerTokens):
    """SMART Backend Services: ``client_credentials`` with a signed client assertion.

    Args:
        token_url: the token endpoint (from :func:`discover`); also the assertion's ``aud``.
        client_id: the id the EHR registered for this workstation's key set.
        key: the signing key whose public JWK Set the EHR holds.
        scope: e.g. ``"system/Patient.rs system/Appointment.cruds"``.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
        clock: a monotonic clock in seconds.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        key: SigningKey,
        scope: str,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = _checked_url(token_url, "token endpoint")
        client = OAuth2Client(
            client_id=client_id, client_secret=key.jwk, token_endpoint_auth_method=_SmartPrivateKeyJWT.name,
            scope=scope, transport=transport, timeout=TIMEOUT,
        )  # fmt: skip
        client.register_client_auth_method(_SmartPrivateKeyJWT(self.token_url, key))
        super().__init__(client, clock)

    def _obtain(self) -> dict[str, Any]:
        try:
            return self._client.fetch_token(self.token_url, grant_type="client_credentials")
        except _HTTP_ERRORS as exc:
            raise _translate(exc, "the token request") from None


# -- SMART App Launch (standalone) ---------------------------------------------------------------


class RefreshTokenStore(Protocol):
    """Where a refresh token outlives the process (the OS keychain); optional."""

    def load(self) -> str | None: ...

    def save(self, refresh_token: str) -> None: ...

    def clear(self) -> None: ...


class KeyringTokenStore:
    """The refresh token in the OS keychain; only the real secret stores ``app.security.keys`` accepts."""

    def __init__(self, account: str, *, service: str = KEYRING_SERVICE, backend: object | None = None) -> None:
        import keyring

        self._keyring = backend or keyring.get_keyring()
        self._service = service
        self._account = account

    def _ring(self) -> Any:
        if not KeyringKeyStore.usable(self._keyring):
            raise KeychainUnavailable("No usable system keychain was found for the EHR sign-in.")
        return self._keyring

    def load(self) -> str | None:
        ring = self._ring()
        try:
            return ring.get_password(self._service, self._account) or None
        except Exception as exc:  # keyring raises backend-specific errors (locked, no D-Bus)
            raise KeychainUnavailable(f"The system keychain cannot be read ({type(exc).__name__}).") from None

    def save(self, refresh_token: str) -> None:
        ring = self._ring()
        try:
            ring.set_password(self._service, self._account, refresh_token)
        except Exception as exc:
            raise KeychainUnavailable(f"The system keychain cannot be written ({type(exc).__name__}).") from None

    def clear(self) -> None:
        try:
            self._ring().delete_password(self._service, self._account)
        except Exception:  # absent already, or no keychain: nothing to delete
            pass


class AppLaunchAuth(_BearerTokens):
    """SMART standalone launch for a public client: authorization code + PKCE (S256).

    Either call :meth:`authorization_url`, send the user there and pass the redirect to
    :meth:`complete`, or let :meth:`launch` do all three with the system browser and a loopback
    redirect. Afterwards :meth:`authorization` renews the access token with the refresh token.

    Args:
        aud: the FHIR base URL the token is for (SMART's ``aud`` parameter).
        token_store: keeps the refresh token across runs; without one it lives in memory only.
    """

    def __init__(
        self,
        authorize_url: str,
        token_url: str,
        client_id: str,
        redirect_uri: str,
        scope: str,
        *,
        aud: str,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        token_store: RefreshTokenStore | None = None,
    ) -> None:
        self.authorize_url = _checked_url(authorize_url, "authorization endpoint")
        self.token_url = _checked_url(token_url, "token endpoint")
        self.aud = aud
        self._store = token_store
        self._refresh: str | None = None
        self._pending: tuple[str, str] | None = None  # (state, code_verifier) of the sign-in under way
        client = OAuth2Client(
            client_id=client_id, token_endpoint_auth_method="none", scope=scope, redirect_uri=redirect_uri,
            code_challenge_method="S256", transport=transport, timeout=TIMEOUT,
        )  # fmt: skip
        super().__init__(client, clock)

    @property
    def redirect_uri(self) -> str:
        return str(self._client.redirect_uri)

    def authorization_url(self) -> tuple[str, str]:
        """Where to send the user, and the ``state`` the redirect must carry back."""
        verifier = generate_token(64)
        url, state = self._client.create_authorization_url(self.authorize_url, code_verifier=verifier, aud=self.aud)
        self._pending = (state, verifier)
        return url, state

    def complete(self, redirect_response_url: str) -> None:
        """Exchange the code of the redirect for tokens; a redirect is accepted once, with its state."""
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect_response_url).query))
        pending, self._pending = self._pending, None
        if "error" in params:
            raise SmartAuthError(f"The EHR did not grant access ({_code(params['error'])}).")
        state = params.get("state", "").encode()
        if pending is None or not hmac.compare_digest(state, pending[0].encode()):
            raise SignInRequired("The sign-in answer does not belong to the sign-in under way (state mismatch).")
        if not params.get("code"):
            raise SmartAuthError("The sign-in answer holds no authorization code.")
        with self._lock:
            started = self._clock()
            try:
                token = self._client.fetch_token(
                    self.token_url, authorization_response=redirect_response_url, state=pending[0],
                    code_verifier=pending[1],
                )  # fmt: skip
            except _HTTP_ERRORS as exc:
                raise _translate(exc, "the sign-in") from None
            self._accept(token, started)

    def launch(self, open_browser: Callable[[str], object] = webbrowser.open, *, timeout: float = 300.0) -> None:
        """Sign in with the system browser; the redirect is caught on this computer's loopback.

        The redirect URI must be ``http://127.0.0.1:<port>/<path>``; port 0 picks a free port
        (for EHRs that accept any loopback port, RFC 8252).
        """
        with LoopbackRedirect(self.redirect_uri) as loopback:
            self._client.redirect_uri = loopback.redirect_uri
            url, _state = self.authorization_url()
            if open_browser(url) is False:
                raise SmartAuthError("No web browser could be opened for the EHR sign-in.")
            self.complete(loopback.wait(timeout))

    def _obtain(self) -> dict[str, Any]:
        refresh = self._refresh or (self._store.load() if self._store is not None else None)
        if not refresh:
            raise SignInRequired("This workstation is not signed in to the EHR.")
        try:
            return self._client.refresh_token(self.token_url, refresh_token=refresh)
        except AuthlibBaseError as exc:
            if exc.error == "invalid_grant":  # expired or revoked: only a new sign-in helps
                self._refresh = None
                if self._store is not None:
                    self._store.clear()
                raise SignInRequired("The EHR sign-in has expired.") from None
            raise _translate(exc, "the token refresh") from None
        except _HTTP_ERRORS as exc:
            raise _translate(exc, "the token refresh") from None

    def _accept(self, token: dict[str, Any], started: float) -> None:
        super()._accept(token, started)
        refresh = token.get("refresh_token")
        if isinstance(refresh, str) and refresh and refresh != self._refresh:
            self._refresh = refresh
            if self._store is not None:
                self._store.save(refresh)


# -- loopback redirect ---------------------------------------------------------------------------

_DONE_PAGE = b"Signed in to the EHR. You can close this tab and return to CareOps Desk.\n"


class LoopbackRedirect:
    """A one-shot HTTP server on 127.0.0.1 that catches the authorization redirect.

    Use it as a context manager: the server runs on its own thread, which is stopped and joined on
    exit. :attr:`redirect_uri` names the port actually bound.
    """

    def __init__(self, redirect_uri: str = "http://127.0.0.1:0/callback") -> None:
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1":
            raise SmartAuthError("The sign-in redirect address must be http://127.0.0.1:<port>/<path>.")
        self._path = parts.path or "/"
        self._received = threading.Event()
        self._url: str | None = None
        try:
            self._server = http.server.HTTPServer(("127.0.0.1", parts.port or 0), self._handler())
        except OSError as exc:
            raise SmartAuthError(f"The sign-in redirect port cannot be opened ({exc.strerror}).") from None
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_port}{self._path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="smart-redirect", daemon=True
        )

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a browser's idle pre-connection must not block the one-shot server

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if urllib.parse.urlsplit(self.path).path != owner._path or owner._received.is_set():
                    self.send_error(404)
                    return
                owner._url = f"http://127.0.0.1:{owner._server.server_port}{self.path}"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(_DONE_PAGE)))
                self.end_headers()
                self.wfile.write(_DONE_PAGE)
                owner._received.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the request line holds the authorization code: never log it

        return Handler

    def __enter__(self) -> LoopbackRedirect:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def wait(self, timeout: float) -> str:
        """The full redirect URL the browser was sent to (with ``code`` and ``state``)."""
        if not self._received.wait(timeout) or self._url is None:
            raise SignInRequired("The EHR sign-in was not completed in time.")
        return self._url

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


__all__ = [
    "AppLaunchAuth",
    "BackendServicesAuth",
    "KeyringTokenStore",
    "LoopbackRedirect",
    "RefreshTokenStore",
    "SignInRequired",
    "SmartAuthError",
    "SmartAuthUnavailable",
    "SmartConfiguration",
    "TokenSource",
    "discover",
]
