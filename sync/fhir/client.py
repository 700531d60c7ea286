"""The FHIR R4 client: capability, read, search by next links, versioned writes; over httpx.

Rules it keeps (DESIGN.md, "Security model"; docs/ehr-layer.md):

* TLS 1.2 or higher with certificate verification; plain http only to loopback hosts.
* Pages are followed by the server's ``next`` links only, and only to the base URL's own scheme,
  host and port: a link elsewhere would carry the bearer token there.
* Retries with capped exponential backoff and full jitter on 429/502/503/504 and transport
  errors, honouring Retry-After; writes only where a repeat cannot duplicate (If-Match), and a
  create only through search-before-create.
* Nothing with PHI leaves this module in a message or a log line: no token, no query string, no
  response body, no OperationOutcome diagnostics (they may echo the request) -- only method,
  resource type, status, elapsed time, issue severity and code.

One client serves one thread (the sync engine's); it starts no threads of its own.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random as _random
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from app.errors import ConfigError, KnownError
from app.logs import Safe
from sync.fhir.elements import ELEMENTS
from sync.fhir.parsing import MAX_DEPTH, nesting_exceeds
from sync.fhir.profiles import Capabilities, VendorProfile

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER = 120.0  # seconds; a server asking for longer is treated as unavailable for now
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_WARNINGS = 1000
RETRY_STATUS = frozenset({429, 502, 503, 504})
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
_BUNDLE_DEPTH = MAX_DEPTH + 8  # a bundle wraps resources in a few levels of its own
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_CODE = re.compile(r"[a-z][a-z\-]{0,39}")
_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


class EhrError(KnownError):
    """Base of the EHR client's errors: messages are for users and carry no PHI."""


class EhrUnavailable(EhrError):
    remedy = "The EHR is busy or cannot be reached. The sync tries again later; nothing was lost."

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EhrRefused(EhrError):
    remedy = "The EHR refused the request. If it keeps happening, send the log to support."

    def __init__(self, message: str, status: int | None = None, issue_codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.issue_codes = issue_codes


class NotFhirResponse(EhrRefused):
    def __init__(self, status: int | None = None) -> None:
        super().__init__("The EHR sent a response that is not FHIR.", status)


class EhrAuthFailed(EhrError):
    remedy = "Check the EHR connection's client registration and key, then try again."


class StaleVersion(EhrError):
    remedy = "Someone changed this record in the EHR meanwhile. Reload it and apply the change again."


class WriteNotSupported(EhrError):
    remedy = "Make this change in the EHR itself."


class SearchContextMissing(EhrError):
    remedy = "This is a bug in how the search is built; send the log to support."


class InsecureEndpoint(ConfigError):
    remedy = "Use an https:// address for the EHR (plain http is accepted only for this computer)."


class SupportsToken(Protocol):
    """What the client needs of ``sync.fhir.auth.TokenSource``."""

    def authorization(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class OutcomeWarning:
    """An OperationOutcome issue the server put into a search bundle (no diagnostics: PHI risk)."""

    severity: str
    code: str


@dataclass
class Reply:
    """An answer. ``response`` is the open, unread response of a streamed 2xx answer."""

    status: int
    headers: httpx.Headers
    body: bytes
    response: httpx.Response | None = None

    def json(self) -> Any:
        """The body as JSON, within the client's nesting limit; NotFhirResponse otherwise."""
        return _json(self)


Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """System trust plus an optional extra CA, certificate and host name checked, TLS 1.2+."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_endpoint(url: httpx.URL) -> None:
    """https anywhere; http only to a loopback host; anything else is refused."""
    if url.scheme == "https" and url.host:
        return
    if url.scheme == "http" and _is_loopback(url.host):
        return
    raise InsecureEndpoint("The EHR address must use https (plain http only to this computer).")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FhirClient:
    """A FHIR R4 client for one EHR base URL.

    Args:
        base_url: the FHIR base, e.g. ``https://ehr.example.org/fhir/r4``.
        profile: the vendor's default profile; ``client.profile`` becomes the effective one after
            :meth:`capabilities` (called on first use).
        auth: gives the Authorization header; None for an open server.
        transport: an httpx transport (tests pass a MockTransport).
        sleep, random: injectable for backoff tests.
        ca_file: an extra CA certificate (PEM) to trust besides the system's.
    """

    def __init__(
        self,
        base_url: str,
        profile: VendorProfile,
        auth: SupportsToken | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        ca_file: str | None = None,
    ) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/"))
        check_endpoint(self.base_url)
        self.profile = profile
        self.warnings: list[OutcomeWarning] = []
        self.ssl_context = tls_context(ca_file)
        self._auth = auth
        self._max_retries = max_retries
        self._sleep = sleep
        self._random = random
        self._caps: Capabilities | None = None
        self._versions: dict[tuple[str, str], str] = {}
        self._http = httpx.Client(
            transport=transport,
            verify=self.ssl_context,
            timeout=timeout,
            follow_redirects=False,  # a redirect could lead the token elsewhere
            headers={"Accept": FHIR_JSON},
        )

    def close(self) -> None:
        """Close the connection, and the sign-in's own (its token endpoint client) if it has one."""
        self._http.close()
        close_auth = getattr(self._auth, "close", None)
        if close_auth is not None:
            close_auth()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """The server's CapabilityStatement (cached); makes ``self.profile`` the effective profile."""
        if self._caps is None:
            reply = self._request("GET", self._url("metadata"), rtype="CapabilityStatement")
            try:
                caps = Capabilities.parse(_json(reply))
            except ValueError:
                raise NotFhirResponse(reply.status) from None
            self.profile = self.profile.with_capabilities(caps)
            self._caps = caps
        return self._caps

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        """One resource by id; its version is remembered for a later :meth:`update`."""
        _check_type(rtype)
        _check_id(rid)
        self.capabilities()
        if not self.profile.allows(rtype, "read"):
            raise EhrRefused(f"The EHR does not offer {rtype} records.")
        reply = self._request("GET", self._url(rtype, rid), rtype=rtype)
        resource = _json(reply)
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            raise NotFhirResponse(reply.status)
        self._remember(rtype, rid, resource, reply)
        return resource

    def version_of(self, rtype: str, rid: str) -> str | None:
        """The version of a resource last read or written by this client."""
        return self._versions.get((rtype, rid))

    def search(self, rtype: str, params: Params | None = None) -> Iterator[dict[str, Any]]:
        """Resources matching ``params``, page by page, following the server's next links only.

        Where the server supports ``_elements``, only the elements of ``elements.ELEMENTS`` are
        asked for. OperationOutcome entries go to ``self.warnings``, not to the caller. Raises
        :class:`SearchContextMissing` before any request when the vendor requires a parameter
        the search lacks.
        """
        _check_type(rtype)
        return self._pages(rtype, self._search_query(rtype, params, subset=True))

    def _search_query(self, rtype: str, params: Params | None, *, subset: bool) -> list[tuple[str, str]]:
        query = _pairs(params)
        given = {k for k, _ in query}
        query += [(k, v) for k, v in self.profile.fixed_params if k not in given]
        self._check_context(rtype, query)  # before any request, the capability fetch included
        self.capabilities()
        if not self.profile.allows(rtype, "search"):
            raise EhrRefused(f"The EHR does not offer {rtype} records.")
        query = [(k, v) for k, v in query if k != "_count"] + [("_count", str(self._page_size(query)))]
        if subset and "_elements" not in given and self.profile.elements_supported(rtype) and rtype in ELEMENTS:
            query.append(("_elements", ",".join(ELEMENTS[rtype])))
        return query

    def _check_context(self, rtype: str, query: list[tuple[str, str]]) -> None:
        broken = self.profile.missing_context(rtype, query)
        if broken:
            rule, missing = broken
            where = "in the EHR settings" if rule.from_config else "in the search"
            raise SearchContextMissing(f"The EHR needs {missing} {where} to search {rtype} records.")

    def _page_size(self, query: list[tuple[str, str]]) -> int:
        asked = [int(v) for k, v in query if k == "_count" and v.isdigit() and len(v) < 7]
        return min([self.profile.max_page_size, *asked])

    def _pages(self, rtype: str, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        url: httpx.URL | None = self._url(rtype).copy_with(params=query)
        visited: set[str] = set()
        seen: set[tuple[Any, ...]] = set()
        while url is not None:
            visited.add(str(url))
            reply = self._request("GET", url, rtype=rtype)
            bundle = _json(reply)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise NotFhirResponse(reply.status)
            for resource in self._entries(bundle, reply.status):
                if self.profile.repeats_across_pages:
                    key = _identity(resource)
                    if key in seen:
                        continue
                    seen.add(key)
                yield resource
            url = self._next_link(bundle, reply.status)
            if url is not None and str(url) in visited:
                raise EhrRefused("The EHR's result pages lead in a circle.", reply.status)

    def _entries(self, bundle: dict[str, Any], status: int) -> Iterator[dict[str, Any]]:
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            raise NotFhirResponse(status)
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise NotFhirResponse(status)
            search = entry.get("search")
            mode = search.get("mode") if isinstance(search, dict) else None
            if mode == "outcome" or resource.get("resourceType") == "OperationOutcome":
                self._collect_outcome(resource)
            else:
                yield resource

    def _collect_outcome(self, outcome: dict[str, Any]) -> None:
        issues = outcome.get("issue")
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict) and len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(OutcomeWarning(_code(issue.get("severity")), _code(issue.get("code"))))

    def _next_link(self, bundle: dict[str, Any], status: int) -> httpx.URL | None:
        links = bundle.get("link", [])
        if not isinstance(links, list):
            raise NotFhirResponse(status)
        nexts = [l.get("url") for l in links if isinstance(l, dict) and l.get("relation") == "next"]
        if not nexts:
            return None
        if not isinstance(nexts[0], str):
            raise NotFhirResponse(status)
        try:
            url = self.base_url.join(nexts[0])  # a relative link is resolved, never built
        except (httpx.InvalidURL, ValueError):
            raise NotFhirResponse(status) from None
        if not self.same_origin(url):
            raise EhrRefused("The EHR pointed to a next page on another server; it was not followed.", status)
        return url

    def same_origin(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on the base URL's scheme, host and port (where the token may go)."""
        return (url.scheme, url.host, url.port) == (self.base_url.scheme, self.base_url.host, self.base_url.port)

    # -- writing --------------------------------------------------------------------------------

    def create(
        self, resource: dict[str, Any], *, identifier: tuple[str, str], context: Params | None = None
    ) -> dict[str, Any]:
        """Create ``resource`` unless one with the business ``identifier`` exists; return it.

        ``context`` adds the search parameters the vendor requires (e.g. ``patient``) to the
        search-before-create. A failed POST is retried only through that search, so a create that
        reached the EHR before its answer was lost is found, not repeated.
        """
        rtype = _resource_type(resource)
        self._check_write(rtype, "create")
        system, value = identifier
        token = f"{_escape(system)}|{_escape(value)}"
        query = [*_pairs(context), ("identifier", token)]
        headers = {"Content-Type": FHIR_JSON}
        if rtype in self.profile.conditional_create:
            headers["If-None-Exist"] = "identifier=" + quote(token, safe="")
        for attempt in range(self._max_retries + 1):
            existing = self._find_by_identifier(rtype, query, identifier)
            if existing is not None:
                return existing
            try:
                reply = self._request(
                    "POST", self._url(rtype), rtype=rtype, headers=headers, body=_dump(resource), retry=False
                )
            except EhrUnavailable as exc:
                if attempt == self._max_retries:
                    raise
                self._wait(attempt, exc.retry_after, rtype)
                continue
            return self._written(rtype, resource, reply)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _find_by_identifier(
        self, rtype: str, query: list[tuple[str, str]], identifier: tuple[str, str]
    ) -> dict[str, Any] | None:
        # Whole resources (the identifier may not be among the elements), and checked here:
        # a server may ignore a search parameter it does not support.
        found = self._pages(rtype, self._search_query(rtype, query, subset=False))
        matches = [r for r in found if _has_identifier(r, identifier)]
        if len(matches) > 1:
            raise EhrRefused(f"The EHR holds more than one {rtype} with the same identifier.")
        return matches[0] if matches else None

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        """Replace a resource, only if the EHR still holds version ``if_match`` (else StaleVersion).

        Without ``if_match`` the version last read by this client is used. A retried PUT carries
        the same If-Match, so it cannot overwrite a newer version.
        """
        rtype = _resource_type(resource)
        rid = resource.get("id")
        _check_id(rid)
        self._check_write(rtype, "update")
        version = if_match or self.version_of(rtype, rid)
        if version is None:
            raise ValueError("update needs the version the change was based on")
        headers = {"Content-Type": FHIR_JSON, "If-Match": _weak_etag(version)}
        url = self._url(rtype, rid)
        reply = self._request("PUT", url, rtype=rtype, headers=headers, body=_dump(resource), stale=True)
        return self._written(rtype, resource, reply)

    def patch(self, rtype: str, rid: str, operations: list[dict[str, Any]], *, if_match: str) -> dict[str, Any] | None:
        """Apply a JSON Patch to a resource, only if the EHR still holds version ``if_match``."""
        _check_type(rtype)
        _check_id(rid)
        if not operations or not all(isinstance(o, dict) and o.get("op") in _PATCH_OPS for o in operations):
            raise ValueError("not a JSON Patch")
        self._check_write(rtype, "patch")
        headers = {"Content-Type": JSON_PATCH, "If-Match": _weak_etag(if_match)}
        reply = self._request(
            "PATCH", self._url(rtype, rid), rtype=rtype, headers=headers, body=_dump(operations), stale=True
        )
        if not reply.body:
            version = _etag_version(reply.headers.get("ETag"))
            if version:
                self._versions[(rtype, rid)] = version
            return None
        return self._written(rtype, {"resourceType": rtype, "id": rid}, reply)

    def _check_write(self, rtype: str, interaction: str) -> None:
        _check_type(rtype)
        # Vendor rules can refuse before anything is sent; the generic profile waits for the capability.
        if self._caps is None and not self.profile.capability_is_truth and not self.profile.allows(rtype, interaction):
            raise WriteNotSupported(f"The EHR does not accept this change ({interaction} {rtype}).")
        self.capabilities()
        if not self.profile.allows(rtype, interaction):
            raise WriteNotSupported(f"The EHR does not accept this change ({interaction} {rtype}).")

    def _written(self, rtype: str, sent: dict[str, Any], reply: Reply) -> dict[str, Any]:
        stored = _json(reply) if reply.body else None
        if stored is None:
            stored = dict(sent)
            rid, version = _location(reply.headers.get("Location"), rtype)
            if rid:
                stored["id"] = rid
            version = _etag_version(reply.headers.get("ETag")) or version
            if version:
                stored["meta"] = {**(sent.get("meta") or {}), "versionId": version}
        if not isinstance(stored, dict) or stored.get("resourceType") != rtype:
            raise NotFhirResponse(reply.status)
        rid = stored.get("id")
        if isinstance(rid, str):
            self._remember(rtype, rid, stored, reply)
        return stored

    def _remember(self, rtype: str, rid: str, resource: dict[str, Any], reply: Reply) -> None:
        meta = resource.get("meta")
        version = meta.get("versionId") if isinstance(meta, dict) else None
        version = version if isinstance(version, str) else _etag_version(reply.headers.get("ETag"))
        if version:
            self._versions[(rtype, rid)] = version

    # -- raw requests (Bulk Data: kick-off, status, files) ---------------------------------------

    def send(
        self,
        method: str,
        url: httpx.URL,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> Reply:
        """One request to a URL on this EHR's server, with the client's retries, token refresh and
        errors; the body is read (capped). ``label`` names it in logs (e.g. ``$export``)."""
        self._check_origin(url)
        return self._request(method, url, rtype=label, headers=headers, retry=retry)

    @contextmanager
    def stream(
        self,
        url: httpx.URL,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        authorize: bool = True,
    ) -> Iterator[httpx.Response]:
        """GET ``url`` like :meth:`send` but yield the 2xx response unread, to be streamed.

        ``authorize=False`` sends no Authorization header (a file that needs no token should not
        get one). A connection lost while reading raises EhrUnavailable.
        """
        self._check_origin(url)
        reply = self._request("GET", url, rtype=label, headers=headers, stream=True, authorize=authorize)
        assert reply.response is not None  # a streamed 2xx keeps its response
        try:
            yield reply.response
        except httpx.TransportError as exc:
            logger.info("EHR GET %s broke off: %s", Safe(label), Safe(type(exc).__name__))
            raise EhrUnavailable(f"The EHR connection broke off ({type(exc).__name__}).") from None
        except httpx.DecodingError:
            raise NotFhirResponse(reply.status) from None
        finally:
            reply.response.close()

    def _check_origin(self, url: httpx.URL) -> None:
        if not self.same_origin(url):
            raise EhrRefused("The EHR pointed to another server; the request was not sent.")

    # -- transport ------------------------------------------------------------------------------

    def _url(self, *segments: str) -> httpx.URL:
        return self.base_url.copy_with(path=self.base_url.path.rstrip("/") + "/" + "/".join(segments))

    def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        rtype: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        retry: bool = True,
        stale: bool = False,
        stream: bool = False,
        authorize: bool = True,
    ) -> Reply:
        """Send with retries and one token refresh; map failures to the client's errors."""
        attempt = 0
        refreshed = False
        while True:
            try:
                reply = self._send_once(method, url, rtype, headers, body, stream=stream, authorize=authorize)
            except EhrUnavailable as exc:
                if not retry or attempt >= self._max_retries:
                    raise
                self._wait(attempt, exc.retry_after, rtype)
                attempt += 1
                continue
            if reply.status == 401:
                if self._auth is None or refreshed or not authorize:
                    raise EhrAuthFailed("The EHR did not accept this workstation's credentials.")
                self._auth.invalidate()
                refreshed = True
                continue
            if 200 <= reply.status < 300:
                return reply
            raise self._error(reply, stale)

    def _send_once(
        self,
        method: str,
        url: httpx.URL,
        rtype: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        *,
        stream: bool = False,
        authorize: bool = True,
    ) -> Reply:
        all_headers = dict(headers or {})
        if self._auth is not None and authorize:
            all_headers["Authorization"] = self._auth.authorization()
        started = time.monotonic()
        try:
            request = self._http.build_request(method, url, headers=all_headers, content=body)
            response = self._http.send(request, stream=True)
            keep = stream and 200 <= response.status_code < 300  # the caller streams and closes it
            try:
                data = b"" if keep else _read_capped(response)
            finally:
                if not keep:
                    response.close()
        except httpx.TransportError as exc:
            logger.info("EHR %s %s failed: %s", Safe(method), Safe(rtype), Safe(type(exc).__name__))
            raise EhrUnavailable(f"The EHR could not be reached ({type(exc).__name__}).") from None
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("EHR %s %s -> %d in %.0f ms", Safe(method), Safe(rtype), response.status_code, elapsed_ms)
        if response.status_code in RETRY_STATUS:
            raise EhrUnavailable(
                f"The EHR is busy (HTTP {response.status_code}).",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        return Reply(response.status_code, response.headers, data, response if keep else None)

    def _wait(self, attempt: int, retry_after: float | None, rtype: str) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = self._random() * min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)  # full jitter
        logger.info("EHR %s: retry %d in %.1f s", Safe(rtype), attempt + 1, delay)
        self._sleep(delay)

    def _error(self, reply: Reply, stale: bool) -> EhrError:
        if stale and reply.status in self.profile.stale_version_status:
            return StaleVersion("The record was changed in the EHR since it was read.")
        if reply.status >= 500:
            return EhrUnavailable(f"The EHR failed to answer (HTTP {reply.status}).")
        codes = _issue_codes(reply)
        detail = f" ({', '.join(codes)})" if codes else ""
        return EhrRefused(f"The EHR refused the request (HTTP {reply.status}){detail}.", reply.status, codes)


def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise EhrRefused("The EHR's response is too large to accept.", response.status_code)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise EhrRefused("The EHR's response is too large to accept.", response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _json(reply: Reply) -> Any:
    if nesting_exceeds(reply.body, _BUNDLE_DEPTH):
        raise NotFhirResponse(reply.status)
    try:
        return json.loads(reply.body)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and over-long integers
        raise NotFhirResponse(reply.status) from None


def _issue_codes(reply: Reply) -> tuple[str, ...]:
    try:
        outcome = _json(reply)
    except NotFhirResponse:
        return ()
    if not isinstance(outcome, dict) or not isinstance(outcome.get("issue"), list):
        return ()
    return tuple(_code(i.get("code")) for i in outcome["issue"][:5] if isinstance(i, dict))


def _code(value: Any) -> str:
    """A FHIR code as is when it looks like one; anything else could be free text."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "unknown"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta or HTTP-date), capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return min(seconds, MAX_RETRY_AFTER)


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            values = [value] if isinstance(value, str) else list(value)
            out += [(key, v) for v in values]
        return out
    return [(k, v) for k, v in params]


def _identity(resource: dict[str, Any]) -> tuple[Any, ...]:
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return (resource.get("resourceType"), resource.get("id"), version if isinstance(version, str) else None)


def _has_identifier(resource: dict[str, Any], identifier: tuple[str, str]) -> bool:
    system, value = identifier
    ids = resource.get("identifier")
    return any(
        isinstance(i, dict) and i.get("system") == system and i.get("value") == value
        for i in (ids if isinstance(ids, list) else [])
    )


def _escape(value: str) -> str:
    """Escape a token part for a FHIR search (https://hl7.org/fhir/R4/search.html#escaping)."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


def _weak_etag(version: str) -> str:
    return version if version.startswith('W/"') else f'W/"{version}"'


def _etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    match = re.fullmatch(r'(?:W/)?"([A-Za-z0-9\-.]{1,64})"', etag.strip())
    return match.group(1) if match else None


def _location(location: str | None, rtype: str) -> tuple[str | None, str | None]:
    """Id and version from ``.../Type/id/_history/vid`` (a create's Location header)."""
    match = re.search(rf"/{rtype}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/([A-Za-z0-9\-.]{{1,64}}))?/?$", location or "")
    return (match.group(1), match.group(2)) if match else (None, None)


def _resource_type(resource: dict[str, Any]) -> str:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    _check_type(rtype)
    return rtype  # type: ignore[return-value]


def _check_type(rtype: Any) -> None:
    if not isinstance(rtype, str) or not _TYPE.fullmatch(rtype):
        raise ValueError("not a FHIR resource type")


def _check_id(rid: Any) -> None:
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise ValueError("not a FHIR id")


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
