"""An ``[ehr]`` configuration -> a signed-in FhirClient: the one place the CLI, the workstation's EHR
sync and the tests turn settings into a connection (profile, SMART sign-in, TLS)."""

from __future__ import annotations

import logging
import webbrowser
from collections.abc import Callable
from typing import Any

import httpx

from app.config import EhrSettings
from app.errors import ConfigError, KeychainUnavailable
from sync.fhir.auth import (
    AppLaunchAuth,
    BackendServicesAuth,
    KeyringTokenStore,
    RefreshTokenStore,
    SignInRequired,
    discover,
)
from sync.fhir.client import FhirClient
from sync.fhir.profiles import get_profile
from sync.fhir.signing_key import load_or_create

logger = logging.getLogger(__name__)

# RFC 8252 loopback redirect; port 0 picks a free one (EHRs that register a fixed port need it set).
LAUNCH_REDIRECT = "http://127.0.0.1:0/careops/callback"
ATHENA_PRACTICE = "Organization/a-1.Practice-{}"


def _profile_params(ehr: EhrSettings) -> dict[str, str] | None:
    if ehr.vendor != "athena":
        return None
    if not ehr.practice:
        raise ConfigError("athenahealth needs the practice: set [ehr] practice or pass --practice.")
    practice = ehr.practice if "/" in ehr.practice else ATHENA_PRACTICE.format(ehr.practice)
    return {"ah-practice": practice}


def _token_store(account: str) -> RefreshTokenStore | None:
    store = KeyringTokenStore(account)
    try:
        store.load()
    except KeychainUnavailable:
        logger.info("no usable keychain: the EHR sign-in lasts for this run only")
        return None
    return store


def connect(
    ehr: EhrSettings,
    cache: Any,
    *,
    transport: httpx.BaseTransport | None = None,
    open_browser: Callable[[str], object] | None = webbrowser.open,
    sleep: Callable[[float], None] | None = None,
) -> FhirClient:
    """A client for the configured EHR, signed in as ``ehr.auth`` says.

    ``open_browser`` is used for a SMART App Launch sign-in when no refresh token is kept; None
    refuses to sign in interactively (SignInRequired), as a background sync must.
    """
    if not ehr.base_url:
        raise ConfigError("No EHR is configured: set [ehr] base_url in config.toml or pass --base.")
    profile = get_profile(ehr.vendor, params=_profile_params(ehr))
    auth: Any = None
    if ehr.auth != "none":
        if not ehr.client_id:
            raise ConfigError("SMART sign-in needs the client id the EHR registered: set [ehr] client_id.")
        smart = discover(ehr.base_url, transport)
        if ehr.auth == "backend":
            auth = BackendServicesAuth(smart.token_endpoint, ehr.client_id, load_or_create(cache, ehr.key_alg),
                                       ehr.scope, transport=transport)
        else:
            if not smart.authorization_endpoint:
                raise ConfigError("The EHR does not offer SMART App Launch (no authorization endpoint).")
            auth = AppLaunchAuth(smart.authorization_endpoint, smart.token_endpoint, ehr.client_id, LAUNCH_REDIRECT,
                                 ehr.scope, aud=ehr.base_url, transport=transport,
                                 token_store=_token_store(f"{ehr.client_id}@{ehr.base_url}"))
            try:
                auth.authorization()  # a kept refresh token signs in without a browser
            except SignInRequired:
                if open_browser is None:
                    raise
                auth.launch(open_browser)
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    return FhirClient(ehr.base_url, profile, auth, transport=transport, ca_file=ehr.ca_file or None, **extra)
