"""An in-memory FHIR R4 server for tests, as an ``httpx.MockTransport`` handler.

Usage::

    ehr = MockEhr.oracle()                    # or .generic(), .epic(), .athena(), MockEhr(Behaviour(...))
    ehr.add({"resourceType": "Appointment", "start": "2024-03-01T09:00:00Z", ...})
    client = FhirClient(ehr.base, profile, transport=ehr.transport())

Knobs (attributes; set them before the requests they should affect):

* ``behaviour`` (:class:`Behaviour`): the vendor's rules -- paging style, page size cap, required
  search parameters, fixed parameters, OperationOutcome warnings in bundles, stale-version status,
  the writes accepted and the status for the others, conditional create, ``_elements``.
* ``fail(status, times=, retry_after=, method=, after_apply=)``: the next matching requests get
  ``status`` (429 with Retry-After, 503 bursts, ...); ``after_apply=True`` carries the request out
  first, like a reply lost after a write.
* ``require_auth`` / ``token_lifetime``: requests need ``Bearer <token>`` from ``POST
  {base}/token``; a token is good for ``token_lifetime`` requests, then gets 401.
* ``next_link_base``: the base of the next links (a foreign host, to test the client refuses it).
* ``capability``: a CapabilityStatement to serve instead of the generated one (which lists the
  stored and writable types plus ``Behaviour.types``).
* ``bundle_override``: a callable (request) -> ``httpx.Response`` | None answering searches first.

Records: ``requests`` (every request), ``api_requests()`` (all but the token endpoint),
``issued_links`` (every next link handed out), ``repeated`` (entries sent again on a later page),
``store`` (type -> id -> resource). Data is synthetic; OperationOutcome diagnostics carry the
canary :data:`CANARY` so tests can prove it never reaches a message.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

BASE = "https://ehr.example.org/fhir/r4"
CANARY = "ZZCANARYPHI"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_PREFIXES = ("ge", "gt", "le", "lt", "eq", "sa", "eb")


@dataclass
class Behaviour:
    """How a vendor's server behaves; the class methods of :class:`MockEhr` hold the presets."""

    name: str = "generic"
    paging: str = "offset"  # offset | context (Oracle-like, repeats a resource) | cursor (athena-like)
    default_count: int = 10
    max_count: int = 100
    required: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type -> one of these (or _id)
    closed_date_range: frozenset[str] = frozenset()  # types whose searches need date=ge..&date=lt..
    fixed: dict[str, str] = field(default_factory=dict)  # parameter -> value every search must carry
    bundle_warning: bool = False  # add an OperationOutcome warning entry to successful bundles
    stale_status: int = 412
    writes: dict[str, set[str]] = field(default_factory=dict)  # type -> create/update/patch
    unsupported_write_status: int = 405
    conditional_create: bool = False
    advertise_elements: bool = False
    types: tuple[str, ...] = (  # served besides those stored or written
        "Patient", "Practitioner", "Location", "ServiceRequest", "Encounter", "Coverage", "Appointment", "Task",
        "Communication",
    )  # fmt: skip


@dataclass
class Fault:
    status: int
    times: int = 1
    retry_after: str | None = None
    method: str | None = None
    after_apply: bool = False


class MockEhr:
    """An in-memory FHIR server; call :meth:`transport` for the httpx transport."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        base: str = BASE,
        require_auth: bool = False,
        token_lifetime: int | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.base = base
        self.require_auth = require_auth
        self.token_lifetime = token_lifetime
        self.next_link_base: str | None = None
        self.capability: dict[str, Any] | None = None
        self.bundle_override: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.issued_links: list[str] = []
        self.repeated = 0
        self._faults: list[Fault] = []
        self._tokens: dict[str, int] = {}
        self._snapshots: dict[str, tuple[str, list[dict[str, Any]], int]] = {}
        self._clock = 0
        self._ids = 0

    # -- presets --------------------------------------------------------------------------------

    @classmethod
    def generic(cls, **kw: Any) -> MockEhr:
        rw = {"create", "update", "patch"}
        return cls(
            Behaviour(
                writes={"Task": set(rw), "Communication": set(rw), "Appointment": set(rw)},
                conditional_create=True,
                advertise_elements=True,
            ),
            **kw,
        )

    @classmethod
    def epic(cls, **kw: Any) -> MockEhr:
        patient = ("patient",)
        return cls(
            Behaviour(
                name="epic",
                max_count=50,
                required={t: patient for t in ("ServiceRequest", "Task", "Appointment", "Encounter", "Coverage")},
                bundle_warning=True,
                stale_status=412,
                writes={"Task": {"update"}, "Communication": {"create"}},
            ),
            **kw,
        )

    @classmethod
    def oracle(cls, **kw: Any) -> MockEhr:
        return cls(
            Behaviour(
                name="oracle",
                paging="context",
                required={"Appointment": ("patient", "practitioner", "location"), "Encounter": ("patient", "subject")},
                closed_date_range=frozenset({"Appointment"}),
                stale_status=409,
                writes={"Appointment": {"create", "patch"}, "Communication": {"create"}},
            ),
            **kw,
        )

    @classmethod
    def athena(cls, practice: str = "Organization/a-1.Practice-1", **kw: Any) -> MockEhr:
        return cls(
            Behaviour(name="athena", paging="cursor", fixed={"ah-practice": practice}, unsupported_write_status=403),
            **kw,
        )

    # -- test API -------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def token_url(self) -> str:
        return self.base + "/token"

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a resource as if it had been written: id, versionId and lastUpdated assigned."""
        resource = copy.deepcopy(resource)
        resource.setdefault("id", self._new_id(resource["resourceType"]))
        self._stamp(resource, "1")
        self.store.setdefault(resource["resourceType"], {})[resource["id"]] = resource
        return copy.deepcopy(resource)

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        method: str | None = None,
        after_apply: bool = False,
    ) -> None:
        self._faults.append(Fault(status, times, retry_after, method, after_apply))

    def api_requests(self, method: str | None = None) -> list[httpx.Request]:
        return [
            r for r in self.requests
            if str(r.url) != self.token_url and (method is None or r.method == method)
        ]  # fmt: skip

    # -- dispatch -------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url).split("?")[0] == self.token_url and request.method == "POST":
            return self._issue_token()
        base = httpx.URL(self.base)
        if (request.url.scheme, request.url.host) != (base.scheme, base.host):
            return _outcome(502, "exception", "wrong host")  # never reached by a well-behaved client
        fault = self._take_fault(request)
        if fault and not fault.after_apply:
            return _fault_response(fault)
        if self.require_auth and not self._authorized(request):
            return _outcome(401, "login", "token expired or missing")
        response = self._route(request, request.url.path[len(base.path) :].strip("/").split("/"))
        return _fault_response(fault) if fault else response

    def _take_fault(self, request: httpx.Request) -> Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method in (None, request.method):
                fault.times -= 1
                return fault
        return None

    def _issue_token(self) -> httpx.Response:
        token = f"tok-{len(self._tokens) + 1}"
        self._tokens[token] = len(self.api_requests())
        return httpx.Response(200, json={"access_token": token, "token_type": "bearer", "expires_in": 3600})

    def _authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        issued = self._tokens.get(header.removeprefix("Bearer "))
        if issued is None:
            return False
        used = len(self.api_requests()) - issued  # this request included
        return self.token_lifetime is None or used <= self.token_lifetime

    def _route(self, request: httpx.Request, parts: list[str]) -> httpx.Response:
        method = request.method
        if parts == ["metadata"] and method == "GET":
            return httpx.Response(200, json=self.capability or self._capability())
        if parts == [""] or not parts:
            return _outcome(405, "not-supported", "transactions are not accepted")
        rtype = parts[0]
        if len(parts) == 1 and method == "GET":
            return self._search(request, rtype)
        if len(parts) == 1 and method == "POST":
            return self._create(request, rtype)
        if len(parts) == 2 and method == "GET":
            return self._read(rtype, parts[1])
        if len(parts) == 2 and method in ("PUT", "PATCH"):
            return self._write(request, rtype, parts[1])
        return _outcome(400, "not-supported", "unknown interaction")

    # -- capability -----------------------------------------------------------------------------

    def _capability(self) -> dict[str, Any]:
        b = self.behaviour
        types = sorted(set(self.store) | set(b.writes) | set(b.types))
        resources = []
        for t in types:
            writes = sorted(b.writes.get(t, ()))
            res: dict[str, Any] = {
                "type": t,
                "interaction": [{"code": c} for c in ("read", "search-type", *writes)],
                "conditionalCreate": b.conditional_create and "create" in writes,
            }
            if b.advertise_elements:
                res["searchParam"] = [{"name": "_elements", "type": "string"}]
            resources.append(res)
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "resource": resources}],
        }

    # -- reads ----------------------------------------------------------------------------------

    def _read(self, rtype: str, rid: str) -> httpx.Response:
        resource = self.store.get(rtype, {}).get(rid)
        if resource is None:
            return _outcome(404, "not-found", f"no {rtype} {rid}")
        return _resource_response(200, resource)

    def _search(self, request: httpx.Request, rtype: str) -> httpx.Response:
        if self.bundle_override:
            override = self.bundle_override(request)
            if override is not None:
                return override
        q = request.url.params
        continued = self._continuation(q)
        if continued is not None:
            token, start = continued
            if token not in self._snapshots:
                return _outcome(410, "expired", "paging context expired")
            _, matches, count = self._snapshots[token]
        else:
            refusal = self._refusal(rtype, q)
            if refusal:
                return refusal
            matches = [self._elements(r, q.get("_elements")) for r in self._matches(rtype, q)]
            count = min(int(q.get("_count", self.behaviour.default_count)), self.behaviour.max_count)
            token = f"s{len(self._snapshots) + 1}"
            self._snapshots[token] = (rtype, matches, count)
            start = 0
        page = matches[start : start + count]
        entries: list[dict[str, Any]] = [
            {"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page
        ]
        if self.behaviour.bundle_warning:
            warning = _outcome_body("warning", "informational", "some results hidden")
            entries.append({"resource": warning, "search": {"mode": "outcome"}})
        links = [{"relation": "self", "url": str(request.url)}]
        if start + count < len(matches):
            repeat = self.behaviour.paging == "context" and count > 1
            following = start + count - (1 if repeat else 0)
            self.repeated += 1 if repeat else 0
            link = self._next_link(rtype, token, following)
            self.issued_links.append(link)
            links.append({"relation": "next", "url": link})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "link": links, "entry": entries}
        return httpx.Response(200, json=bundle)

    def _next_link(self, rtype: str, token: str, start: int) -> str:
        base = self.next_link_base or self.base
        if self.behaviour.paging == "context":
            opaque = base64.urlsafe_b64encode(f"{token}:{start}".encode()).decode()
            return f"{base}/{rtype}?-pageContext={opaque}"
        if self.behaviour.paging == "cursor":
            opaque = base64.urlsafe_b64encode(json.dumps([token, start]).encode()).decode()
            return f"{base}/{rtype}?_cursor={opaque}"
        return f"{base}/{rtype}?_getpages={token}&_offset={start}"

    @staticmethod
    def _continuation(q: httpx.QueryParams) -> tuple[str, int] | None:
        if "_getpages" in q:
            return q["_getpages"], int(q.get("_offset", "0"))
        if "-pageContext" in q:
            token, start = base64.urlsafe_b64decode(q["-pageContext"]).decode().split(":")
            return token, int(start)
        if "_cursor" in q:
            token, start = json.loads(base64.urlsafe_b64decode(q["_cursor"]))
            return token, int(start)
        return None

    def _refusal(self, rtype: str, q: httpx.QueryParams) -> httpx.Response | None:
        b = self.behaviour
        for name, value in b.fixed.items():
            if q.get(name) != value:
                return _outcome(403, "security", f"{name} required")
        needed = b.required.get(rtype)
        if needed and "_id" not in q and not any(n in q for n in needed):
            return _outcome(400, "required", f"{rtype} search needs {needed[0]} for {CANARY}")
        if rtype in b.closed_date_range and "_id" not in q:
            dates = q.get_list("date")
            if not (any(d[:2] in ("ge", "gt") for d in dates) and any(d[:2] in ("lt", "le") for d in dates)):
                return _outcome(400, "required", "a closed date range is required")
        return None

    def _matches(self, rtype: str, q: httpx.QueryParams) -> list[dict[str, Any]]:
        found = []
        for resource in self.store.get(rtype, {}).values():
            if all(_match(resource, name, q.get_list(name)) for name in set(q.keys())):
                found.append(copy.deepcopy(resource))
        return sorted(found, key=lambda r: (r["meta"]["lastUpdated"], r["id"]))

    @staticmethod
    def _elements(resource: dict[str, Any], elements: str | None) -> dict[str, Any]:
        if not elements:
            return resource
        keep = {"resourceType", "id", "meta", *elements.split(",")}
        out = {k: v for k, v in resource.items() if k in keep}
        subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
        out["meta"] = {**out["meta"], "tag": [subsetted]}
        return out

    # -- writes ---------------------------------------------------------------------------------

    def _allowed(self, rtype: str, interaction: str) -> httpx.Response | None:
        if interaction in self.behaviour.writes.get(rtype, set()):
            return None
        status = self.behaviour.unsupported_write_status
        return _outcome(status, "not-supported", f"{interaction} {rtype} not supported")

    def _create(self, request: httpx.Request, rtype: str) -> httpx.Response:
        refused = self._allowed(rtype, "create")
        if refused:
            return refused
        condition = request.headers.get("If-None-Exist")
        if condition and self.behaviour.conditional_create:
            q = httpx.QueryParams(condition)
            existing = self._matches(rtype, q)
            if existing:
                return _resource_response(200, existing[0])
        resource = json.loads(request.content)
        resource["id"] = self._new_id(rtype)
        self._stamp(resource, "1")
        self.store.setdefault(rtype, {})[resource["id"]] = resource
        return _resource_response(201, resource, location=f"{self.base}/{rtype}/{resource['id']}/_history/1")

    def _write(self, request: httpx.Request, rtype: str, rid: str) -> httpx.Response:
        interaction = "update" if request.method == "PUT" else "patch"
        refused = self._allowed(rtype, interaction)
        if refused:
            return refused
        current = self.store.get(rtype, {}).get(rid)
        if current is None:
            return _outcome(404, "not-found", f"no {rtype} {rid}")
        match = re.fullmatch(r'W/"([^"]+)"', request.headers.get("If-Match", ""))
        if match is None:
            return _outcome(428, "required", "If-Match required")
        if match.group(1) != current["meta"]["versionId"]:
            return _outcome(self.behaviour.stale_status, "conflict", f"version conflict on {CANARY}")
        if interaction == "update":
            updated = json.loads(request.content)
        else:
            if request.headers.get("Content-Type") != "application/json-patch+json":
                return _outcome(415, "not-supported", "JSON Patch expected")
            try:
                updated = _apply_patch(current, json.loads(request.content))
            except (KeyError, IndexError, ValueError):
                return _outcome(422, "processing", "patch failed")
        updated["id"] = rid
        self._stamp(updated, str(int(current["meta"]["versionId"]) + 1))
        self.store[rtype][rid] = updated
        return _resource_response(200, updated)

    def _stamp(self, resource: dict[str, Any], version: str) -> None:
        self._clock += 1
        when = (_EPOCH + timedelta(seconds=self._clock)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resource["meta"] = {**resource.get("meta", {}), "versionId": version, "lastUpdated": when}

    def _new_id(self, rtype: str) -> str:
        self._ids += 1
        return f"{rtype.lower()[:4]}-{self._ids}"


# -- search matching -----------------------------------------------------------------------------

_IGNORED = {"_count", "_elements", "_summary", "ah-practice", "_sort"}


def _match(resource: dict[str, Any], name: str, values: list[str]) -> bool:
    """Whether ``resource`` passes search parameter ``name`` (all ``values`` ANDed)."""
    base = name.split(":")[0]
    if base in _IGNORED:
        return True
    return all(_match_one(resource, base, v) for v in values)


def _match_one(resource: dict[str, Any], name: str, value: str) -> bool:
    if name == "_id":
        return resource["id"] in value.split(",")
    if name == "identifier":
        system, _, code = _split_token(value)
        return any(
            (not system or i.get("system") == system) and i.get("value") == code
            for i in resource.get("identifier", [])
        )  # fmt: skip
    if name == "_lastUpdated":
        return _compare(resource["meta"]["lastUpdated"], value)
    if name == "date":
        when = _date_of(resource)
        return when is not None and _compare(when, value)
    if name in ("patient", "subject", "practitioner", "location"):
        wanted = value.split("/")[-1]
        return wanted in {ref.split("/")[-1] for ref in _references(resource)}
    if name == "status":
        return resource.get("status") in value.split(",")
    return True  # like many servers, unknown parameters are ignored


def _split_token(value: str) -> tuple[str, str, str]:
    parts = re.split(r"(?<!\\)\|", value, maxsplit=1)
    unescape = lambda s: re.sub(r"\\(.)", r"\1", s)  # noqa: E731
    if len(parts) == 1:
        return "", "", unescape(parts[0])
    return unescape(parts[0]), "|", unescape(parts[1])


def _references(resource: dict[str, Any]) -> list[str]:
    keys = ("subject", "for", "patient", "beneficiary")
    refs = [resource[k].get("reference", "") for k in keys if isinstance(resource.get(k), dict)]
    refs += [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
    return refs


def _date_of(resource: dict[str, Any]) -> str | None:
    period_start = (resource.get("period") or {}).get("start")
    return resource.get("start") or period_start or resource.get("authoredOn") or resource.get("sent")


def _compare(actual: str, condition: str) -> bool:
    prefix = condition[:2] if condition[:2] in _PREFIXES else "eq"
    wanted = _instant(condition[2:] if condition[:2] in _PREFIXES else condition)
    have = _instant(actual)
    return {
        "gt": have > wanted, "sa": have > wanted, "ge": have >= wanted,
        "lt": have < wanted, "eb": have < wanted, "le": have <= wanted, "eq": have == wanted,
    }[prefix]  # fmt: skip


def _instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text if "T" in text else text + "T00:00:00+00:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- JSON Patch (the subset the tests use: add, replace, remove, test on object paths) ----------


def _apply_patch(resource: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(resource)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) and last != "-" else last
        if op["op"] == "test":
            if target[key] != op["value"]:
                raise ValueError("test failed")
        elif op["op"] in ("add", "replace"):
            if isinstance(target, list) and key == "-":
                target.append(op["value"])
            else:
                target[key] = op["value"]
        elif op["op"] == "remove":
            del target[key]
        else:
            raise ValueError("unsupported op")
    return doc


# -- responses -----------------------------------------------------------------------------------


def _outcome_body(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": f"{diagnostics} ({CANARY})"}],
    }


def _outcome(status: int, code: str, diagnostics: str) -> httpx.Response:
    return httpx.Response(status, json=_outcome_body("error", code, diagnostics))


def _fault_response(fault: Fault) -> httpx.Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    body = _outcome_body("error", "transient" if fault.status >= 500 or fault.status == 429 else "exception", "fault")
    return httpx.Response(fault.status, headers=headers, json=body)


def _resource_response(status: int, resource: dict[str, Any], location: str | None = None) -> httpx.Response:
    headers = {"ETag": f'W/"{resource["meta"]["versionId"]}"'}
    if location:
        headers["Location"] = location
    return httpx.Response(status, headers=headers, json=resource)
