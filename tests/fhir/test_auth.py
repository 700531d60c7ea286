"""SMART auth against a fake authorization server (httpx.MockTransport): Backend Services' signed
client assertion, App Launch with PKCE and state, renewal before expiry, errors, no secrets in logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import urllib.parse
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from app.errors import KnownError
from sync.fhir.auth import (
    ASSERTION_LIFETIME,
    AppLaunchAuth,
    BackendServicesAuth,
    KeyringTokenStore,
    LoopbackRedirect,
    SignInRequired,
    SmartAuthError,
    SmartAuthUnavailable,
    discover,
)
from sync.fhir.signing_key import META_KEY, SigningKey, jwks_json, load_or_create
from tests.test_keys import MemoryKeyring, PlaintextLikeKeyring

BASE = "https://ehr.example/fhir/R4"
TOKEN_URL = "https://ehr.example/oauth2/token"
AUTHORIZE_URL = "https://ehr.example/oauth2/authorize"
CLIENT_ID = "careops-test-client"
SCOPE = "system/Patient.rs system/Appointment.rs"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeAuthServer:
    """A token endpoint that checks what a SMART server checks, issuing canary-marked tokens."""

    def __init__(self, key: SigningKey | None = None, expires_in: int = 300) -> None:
        self.keys = KeySet.import_key_set(key.jwks()) if key else None
        self.expires_in = expires_in
        self.issued: list[str] = []  # every secret handed out or received, for the log check
        self.assertions: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.grants: list[str] = []
        self.codes: dict[str, dict[str, str]] = {}  # code -> challenge, redirect_uri
        self.refresh_tokens: set[str] = set()
        self.fail: tuple[int, Any] | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def authorize(self, url: str) -> str:
        """What the EHR's sign-in page does: remember the challenge, redirect with a code."""
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID and q["aud"] == BASE
        assert q["code_challenge_method"] == "S256" and q["scope"] == SCOPE
        code = self._secret("CODE")
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"]}
        return f"{q['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': q['state']})}"

    def _secret(self, kind: str) -> str:
        value = f"SECRET{kind}{len(self.issued)}x{time.monotonic_ns()}"
        self.issued.append(value)
        return value

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/fhir/R4/.well-known/smart-configuration":
            return httpx.Response(200, json={
                "token_endpoint": TOKEN_URL, "authorization_endpoint": AUTHORIZE_URL,
                "capabilities": ["client-confidential-asymmetric", "launch-standalone"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            })  # fmt: skip
        assert str(request.url) == TOKEN_URL and request.method == "POST"
        if self.fail is not None:
            status, body = self.fail
            return httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        grant = form["grant_type"]
        self.grants.append(grant)
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in, "scope": SCOPE}
        if grant == "client_credentials":
            assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            assert form["scope"] == SCOPE and "client_secret" not in form
            self.issued.append(form["client_assertion"])
            token = jwt.decode(form["client_assertion"], self.keys, algorithms=["RS384", "ES384"])
            self.assertions.append((token.header, token.claims))
        elif grant == "authorization_code":
            issued = self.codes.pop(form["code"], None)
            if issued is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            digest = hashlib.sha256(form["code_verifier"].encode("ascii")).digest()
            assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == issued["challenge"]
            assert form["redirect_uri"] == issued["redirect_uri"] and form["client_id"] == CLIENT_ID
            body["refresh_token"] = self._secret("REFRESH")
            self.refresh_tokens.add(body["refresh_token"])
        elif grant == "refresh_token":
            if form["refresh_token"] not in self.refresh_tokens:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired"})
            assert form["client_id"] == CLIENT_ID
        body["access_token"] = self._secret("ACCESS")
        return httpx.Response(200, json=body)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.generate("RS384")  # RSA 3072 takes a moment: once per module


@pytest.fixture
def es_key() -> SigningKey:
    return SigningKey.generate("ES384")


# -- signing key ----------------------------------------------------------------------------------


def test_signing_key_jwks_and_pem_round_trip(rsa_key, es_key):
    for key, kty in ((rsa_key, "RSA"), (es_key, "EC")):
        (jwk,) = key.jwks()["keys"]
        assert jwk["kty"] == kty and jwk["alg"] == key.alg and jwk["kid"] == key.kid
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)  # public only
        again = SigningKey.from_pem(key.to_pem(), key.alg)
        assert again.kid == key.kid  # RFC 7638 thumbprint: stable for the key
    assert rsa_key.jwk.private_key.key_size == 3072 and es_key.jwk.as_dict()["crv"] == "P-384"
    with pytest.raises(KnownError, match="does not fit RS384"):
        SigningKey.from_pem(es_key.to_pem(), "RS384")


def test_key_is_kept_in_the_encrypted_cache(ws):
    first = load_or_create(ws.cache, "ES384")
    assert load_or_create(ws.cache, "ES384").kid == first.kid
    printed = json.loads(jwks_json(ws.cache, "ES384"))
    assert printed["keys"][0]["kid"] == first.kid and "d" not in printed["keys"][0]
    stored = json.loads(ws.cache.get_meta(META_KEY))
    assert set(stored) == {"ES384"} and stored["ES384"].startswith("-----BEGIN PRIVATE KEY-----")
    # The cache file is SQLCipher-encrypted: the PEM is nowhere in it in the clear.
    ws.close()
    files = [p for p in ws.cache.path.parent.iterdir() if p.name.startswith(ws.cache.path.name)]
    assert files and not any(b"PRIVATE KEY" in p.read_bytes() for p in files)


# -- Backend Services -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_assertion_verifies_with_the_published_key(alg, rsa_key, es_key):
    key = rsa_key if alg == "RS384" else es_key
    server = FakeAuthServer(key)
    with BackendServicesAuth(TOKEN_URL, CLIENT_ID, key, SCOPE, transport=server.transport()) as auth:
        assert auth.authorization() == f"Bearer {server.issued[-1]}"
        auth.invalidate()
        auth.authorization()
    (h1, c1), (_h2, c2) = server.assertions
    assert h1["alg"] == alg and h1["kid"] == key.kid and h1["typ"] == "JWT"
    assert c1["iss"] == c1["sub"] == CLIENT_ID and c1["aud"] == TOKEN_URL
    assert 0 < c1["exp"] - time.time() <= ASSERTION_LIFETIME
    assert c1["jti"] and c1["jti"] != c2["jti"]


def test_token_reused_until_a_minute_before_expiry(es_key):
    server, clock = FakeAuthServer(es_key, expires_in=300), FakeClock()
    auth = BackendServicesAuth(TOKEN_URL, CLIENT_ID, es_key, SCOPE, transport=server.transport(), clock=clock)
    first = auth.authorization()
    clock.now += 239
    assert auth.authorization() == first and len(server.grants) == 1
    clock.now += 1  # 60 s left: renew
    second = auth.authorization()
    assert second != first and len(server.grants) == 2
    auth.invalidate()  # after a 401
    assert auth.authorization() not in (first, second) and len(server.grants) == 3
    auth.close()


def test_discovery(es_key):
    server = FakeAuthServer(es_key)
    config = discover(BASE + "/", transport=server.transport())
    assert config.token_endpoint == TOKEN_URL and config.authorization_endpoint == AUTHORIZE_URL
    assert "ES384" in config.signing_algs and config.code_challenge_methods == ("S256",)
    with pytest.raises(SmartAuthError, match="https"):
        discover("http://ehr.example/fhir")


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (400, {"error": "invalid_client", "error_description": "SECRET detail"}, SmartAuthError, "(invalid_client)"),
        (401, "<html>no</html>", SmartAuthError, "(HTTP 401)"),
        (503, "down", SmartAuthUnavailable, "(HTTP 503)"),
        (200, "not json", SmartAuthError, "not a token response"),
        (200, {"token_type": "bearer"}, SmartAuthError, "no access token"),
    ],
)
def test_token_endpoint_errors_are_known_errors(es_key, status, body, error, text):
    server = FakeAuthServer(es_key)
    server.fail = (status, body)
    auth = BackendServicesAuth(TOKEN_URL, CLIENT_ID, es_key, SCOPE, transport=server.transport())
    with pytest.raises(error) as info:
        auth.authorization()
    assert text in str(info.value) and "SECRET" not in str(info.value)
    # Nothing of the server's answer rides along as a chained exception.
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_unreachable_server(es_key):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    auth = BackendServicesAuth(TOKEN_URL, CLIENT_ID, es_key, SCOPE, transport=httpx.MockTransport(refuse))
    with pytest.raises(SmartAuthUnavailable, match="cannot be reached"):
        auth.authorization()


# -- App Launch ---------------------------------------------------------------------------------------


def _app(server: FakeAuthServer, clock=None, store=None, redirect="http://127.0.0.1:8765/callback") -> AppLaunchAuth:
    return AppLaunchAuth(
        AUTHORIZE_URL, TOKEN_URL, CLIENT_ID, redirect, SCOPE, aud=BASE, transport=server.transport(),
        clock=clock or FakeClock(), token_store=store,
    )  # fmt: skip


def test_app_launch_pkce_and_refresh_before_expiry():
    server, clock = FakeAuthServer(expires_in=600), FakeClock()
    auth = _app(server, clock)
    url, state = auth.authorization_url()
    assert f"state={state}" in url
    auth.complete(server.authorize(url))  # the fake server checks S256(verifier) == challenge
    first = auth.authorization()
    assert server.grants == ["authorization_code"]
    clock.now += 541
    second = auth.authorization()
    assert second != first and server.grants == ["authorization_code", "refresh_token"]
    auth.invalidate()
    assert auth.authorization() != second and server.grants[-1] == "refresh_token"


def test_app_launch_refuses_a_foreign_state_and_a_replayed_redirect():
    server = FakeAuthServer()
    auth = _app(server)
    url, state = auth.authorization_url()
    redirect = server.authorize(url)
    forged = redirect.replace(f"state={state}", "state=someone-elses")
    with pytest.raises(SignInRequired, match="state mismatch"):
        auth.complete(forged)
    with pytest.raises(SignInRequired):  # the attempt is used up; the genuine redirect is late now
        auth.complete(redirect)
    assert server.grants == []
    with pytest.raises(SignInRequired, match="not signed in"):
        auth.authorization()


def test_app_launch_denied_and_expired_refresh():
    server = FakeAuthServer()
    auth = _app(server)
    url, state = auth.authorization_url()
    with pytest.raises(SmartAuthError, match=r"\(access_denied\)"):
        auth.complete(f"http://127.0.0.1:8765/callback?error=access_denied&state={state}")
    store = KeyringTokenStore("test-account", backend=MemoryKeyring())
    store.save("SECRETREFRESH-revoked")
    auth = _app(server, store=store)
    with pytest.raises(SignInRequired, match="expired"):
        auth.authorization()
    assert store.load() is None  # a dead refresh token is not kept


def test_refresh_token_kept_in_the_keychain():
    server, ring = FakeAuthServer(), MemoryKeyring()
    auth = _app(server, store=KeyringTokenStore("test-account", backend=ring))
    url, _ = auth.authorization_url()
    auth.complete(server.authorize(url))
    # A new process: no access token, the refresh token from the keychain.
    later = _app(server, store=KeyringTokenStore("test-account", backend=ring))
    assert later.authorization().startswith("Bearer SECRETACCESS")
    assert server.grants == ["authorization_code", "refresh_token"]
    with pytest.raises(KnownError, match="keychain"):
        KeyringTokenStore("test-account", backend=PlaintextLikeKeyring()).save("x")


def test_launch_end_to_end_through_the_loopback_redirect():
    server = FakeAuthServer()
    auth = _app(server, redirect="http://127.0.0.1:0/callback")
    pages: list[str] = []

    def fake_browser(url: str) -> bool:
        # The user signs in at the EHR; the browser follows the redirect to the loopback server.
        with httpx.Client(trust_env=False) as browser:
            assert browser.get(auth.redirect_uri.replace("/callback", "/favicon.ico")).status_code == 404
            response = browser.get(server.authorize(url))
        pages.append(response.text)
        return True

    auth.launch(fake_browser, timeout=10)
    assert not any(t.name == "smart-redirect" for t in threading.enumerate())  # stopped and joined
    assert "You can close this tab" in pages[0]
    assert auth.redirect_uri.startswith("http://127.0.0.1:") and not auth.redirect_uri.endswith(":0/callback")
    assert auth.authorization().startswith("Bearer SECRETACCESS")


def test_loopback_times_out_and_stops():
    with LoopbackRedirect() as loopback, pytest.raises(SignInRequired, match="not completed in time"):
        loopback.wait(0.05)
    with pytest.raises(SmartAuthError):
        LoopbackRedirect("https://127.0.0.1:0/callback")


# -- secrets never reach the log ---------------------------------------------------------------------


def test_no_token_assertion_or_code_in_any_log_record(caplog, es_key):
    caplog.set_level(logging.DEBUG)
    server = FakeAuthServer(es_key, expires_in=120)
    clock = FakeClock()
    with BackendServicesAuth(TOKEN_URL, CLIENT_ID, es_key, SCOPE, transport=server.transport(), clock=clock) as b:
        b.authorization()
        clock.now += 100
        b.authorization()
    app = _app(server, clock)
    url, _ = app.authorization_url()
    redirect = server.authorize(url)
    app.complete(redirect)
    clock.now += 100
    app.authorization()
    server.fail = (400, {"error": "invalid_grant"})
    app.invalidate()
    with pytest.raises(SignInRequired):
        app.authorization()
    texts = [r.getMessage() + repr(r.args) for r in caplog.records]
    assert any("EHR access token obtained" in t for t in texts)
    assert len(server.issued) >= 6
    signatures = [s.rsplit(".", 1)[1] for s in server.issued if s.count(".") == 2]  # assertions
    for secret in [*server.issued, *signatures, redirect]:
        assert not any(secret in t for t in texts)
