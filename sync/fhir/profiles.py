"""Vendor profiles: only what differs between the EHRs we talk to, with the source of each fact.

A profile is a frozen value. :func:`get_profile` returns a vendor's defaults; once the client has
read the server's CapabilityStatement, :meth:`VendorProfile.with_capabilities` returns the
effective profile. The rule for writes: the capability says what the server can do, the profile
says what the vendor's rules allow, and a write is allowed only when both allow it -- except for
the generic profile, where the CapabilityStatement is the only truth there is.

Facts that could not be confirmed from the vendor's public documentation are marked "not
confirmed" in the docstrings: they are conservative defaults, and the CapabilityStatement (or a
failing request) has the last word.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import ConfigError
from sync.fhir import systems

WRITE_INTERACTIONS = frozenset({"create", "update", "patch"})
_LOWER = ("ge", "gt", "sa")
_UPPER = ("lt", "le", "eb")


@dataclass(frozen=True)
class SearchRule:
    """The parameters a search of one resource type must carry (``*``: every type).

    Attributes:
        any_of: at least one of these parameters must be present.
        all_of: every one of these parameters must be present.
        date_range: this date parameter needs a lower (ge/gt) and an upper (lt/le) bound.
        unless: a search carrying one of these (a lookup by id) needs none of the above.
        from_config: the value comes from configuration (athenahealth's practice), not the caller.
    """

    any_of: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()
    date_range: str | None = None
    unless: tuple[str, ...] = ("_id",)
    from_config: bool = False

    def missing(self, params: Iterable[tuple[str, str]]) -> str | None:
        """What the search lacks, in words for a person, or None when it is complete."""
        params = list(params)
        names = {_base_name(k) for k, _ in params}
        if names & set(self.unless):
            return None
        if self.any_of and not names & set(self.any_of):
            return "one of: " + ", ".join(self.any_of)
        absent = [n for n in self.all_of if n not in names]
        if absent:
            return "all of: " + ", ".join(absent)
        if self.date_range:
            values = [v for k, v in params if _base_name(k) == self.date_range]
            if not (any(v.startswith(_LOWER) for v in values) and any(v.startswith(_UPPER) for v in values)):
                return f"a closed {self.date_range} range ({self.date_range}=ge...&{self.date_range}=lt...)"
        return None


def _base_name(param: str) -> str:
    return param.split(":", 1)[0]  # "subject:Patient" is a subject search


@dataclass(frozen=True)
class ResourceCapability:
    interactions: frozenset[str]
    search_params: frozenset[str]
    conditional_create: bool


@dataclass(frozen=True)
class Capabilities:
    """The part of a server's CapabilityStatement the client acts on."""

    fhir_version: str
    resources: Mapping[str, ResourceCapability]
    search_params: frozenset[str]  # rest-level (all types)

    def types_with_param(self, name: str) -> frozenset[str]:
        """Resource types whose searches take ``name``, listed per type or for all types."""
        everywhere = name in self.search_params
        return frozenset(t for t, r in self.resources.items() if everywhere or name in r.search_params)

    @classmethod
    def parse(cls, doc: Any) -> Capabilities:
        """Read a CapabilityStatement; ValueError when ``doc`` is not one. Odd parts are skipped."""
        if not isinstance(doc, dict) or doc.get("resourceType") != "CapabilityStatement":
            raise ValueError("not a CapabilityStatement")
        rest = next((r for r in _dicts(doc.get("rest")) if r.get("mode") == "server"), None)
        if rest is None:
            rest = next(iter(_dicts(doc.get("rest"))), {})
        resources: dict[str, ResourceCapability] = {}
        for res in _dicts(rest.get("resource")):
            rtype = res.get("type")
            if not isinstance(rtype, str):
                continue
            resources[rtype] = ResourceCapability(
                interactions=_codes(res.get("interaction"), "code"),
                search_params=_codes(res.get("searchParam"), "name"),
                conditional_create=res.get("conditionalCreate") is True,
            )
        version = doc.get("fhirVersion")
        return cls(
            fhir_version=version if isinstance(version, str) else "",
            resources=resources,
            search_params=_codes(rest.get("searchParam"), "name"),
        )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _codes(items: Any, key: str) -> frozenset[str]:
    return frozenset(i[key] for i in _dicts(items) if isinstance(i.get(key), str))


@dataclass(frozen=True)
class VendorProfile:
    """What differs between EHR vendors. Built by :func:`get_profile`; see the module docstring.

    Attributes:
        name: ``generic``, ``epic``, ``oracle`` or ``athena``.
        max_page_size: the ``_count`` to ask for.
        repeats_across_pages: a resource may come back on more than one page (de-duplicate).
        search_context: resource type (or ``*``) -> the parameters its searches must carry.
        stale_version_status: HTTP statuses meaning "the If-Match version is not current".
        writes: resource type -> the writes the vendor accepts (create, update, patch).
        mrn_systems: identifier systems of the MRN; empty: use the identifier of type MR.
        supports_elements, supports_summary: None asks the CapabilityStatement.
        fixed_params: parameters from configuration added to every search.
        notable_extensions: vendor extension URLs the mappers may meet.
        capability_is_truth: the CapabilityStatement alone decides the writes (generic).
        readable: resource types the server serves; None until a CapabilityStatement is read.
        conditional_create: types whose create accepts If-None-Exist (from the capability).
        elements_types, summary_types: types for which the capability lists _elements/_summary.
    """

    name: str
    max_page_size: int
    repeats_across_pages: bool
    search_context: Mapping[str, SearchRule]
    stale_version_status: frozenset[int]
    writes: Mapping[str, frozenset[str]]
    mrn_systems: tuple[str, ...] = ()
    supports_elements: bool | None = None
    supports_summary: bool | None = None
    fixed_params: tuple[tuple[str, str], ...] = ()
    notable_extensions: tuple[str, ...] = ()
    capability_is_truth: bool = False
    readable: frozenset[str] | None = None
    conditional_create: frozenset[str] = frozenset()
    elements_types: frozenset[str] = frozenset()
    summary_types: frozenset[str] = frozenset()

    def allows(self, rtype: str, interaction: str) -> bool:
        """Whether ``interaction`` (read, search, create, update, patch) on ``rtype`` may be tried."""
        if interaction in ("read", "search"):
            return self.readable is None or rtype in self.readable
        if interaction in WRITE_INTERACTIONS:
            return interaction in self.writes.get(rtype, frozenset())
        return False  # transactions and anything else: nobody accepts them

    def can_read(self, rtype: str) -> bool:
        return self.allows(rtype, "read")

    def missing_context(self, rtype: str, params: Iterable[tuple[str, str]]) -> tuple[SearchRule, str] | None:
        """The first search rule ``params`` break, with what is missing; None when complete."""
        params = list(params)
        for key in ("*", rtype):
            rule = self.search_context.get(key)
            problem = rule.missing(params) if rule else None
            if problem:
                return rule, problem  # type: ignore[return-value]
        return None

    def elements_supported(self, rtype: str) -> bool:
        if self.supports_elements is not None:
            return self.supports_elements
        return rtype in self.elements_types

    def summary_supported(self, rtype: str) -> bool:
        if self.supports_summary is not None:
            return self.supports_summary
        return rtype in self.summary_types

    def with_capabilities(self, caps: Capabilities) -> VendorProfile:
        """The effective profile once the server's CapabilityStatement is known."""
        writes: dict[str, frozenset[str]] = {}
        for rtype, res in caps.resources.items():
            offered = res.interactions & WRITE_INTERACTIONS
            allowed = offered if self.capability_is_truth else offered & self.writes.get(rtype, frozenset())
            if allowed:
                writes[rtype] = allowed
        return dataclasses.replace(
            self,
            writes=writes,
            readable=frozenset(caps.resources),
            conditional_create=frozenset(t for t, r in caps.resources.items() if r.conditional_create),
            elements_types=caps.types_with_param("_elements"),
            summary_types=caps.types_with_param("_summary"),
        )


def _writes(**by_type: Iterable[str]) -> dict[str, frozenset[str]]:
    return {t: frozenset(w) for t, w in by_type.items()}


def generic_profile() -> VendorProfile:
    """A plain FHIR R4 server: the CapabilityStatement decides (https://hl7.org/fhir/R4/http.html).

    - Stale version: R4 says a server answers 412 to a stale If-Match; 409 is also used for
      version conflicts (https://hl7.org/fhir/R4/http.html#concurrency), so both mean stale.
    - Writes before the CapabilityStatement is read: create/update of Task, Communication and
      Appointment; after it, whatever the capability lists.
    - MRN: the demo data set's system (sync/fhir/systems.py), else the identifier of type MR.
    """
    return VendorProfile(
        name="generic",
        max_page_size=100,
        repeats_across_pages=False,
        search_context={},
        stale_version_status=frozenset({409, 412}),
        writes=_writes(
            Task=("create", "update"), Communication=("create", "update"), Appointment=("create", "update")
        ),
        mrn_systems=(systems.MRN,),
        capability_is_truth=True,
    )


def epic_profile() -> VendorProfile:
    """Epic (open.epic / fhir.epic.com).

    - Booking: Epic schedules appointments through its own operations ($find/$book), not a plain
      create: https://open.epic.com/Scheduling/FHIR ("These prototype services demonstrate
      scheduling an appointment using FHIR"). So no Appointment create here.
    - Task: update only, no create; Communication: create -- not confirmed (the Task and
      Communication specification pages on fhir.epic.com were not available to check).
    - Required ``patient``: Epic's FHIR error list has "Required search parameter missing from
      request -- a request missing a required parameter (such as the patient):
      Condition?category=diagnosis" (https://fhir.epic.com/Documentation?docId=errorcodes, seen
      quoted). Which resources need it is per resource on fhir.epic.com/Specifications; that it is
      ServiceRequest, Task, Appointment, Encounter and Coverage is not confirmed. A search by
      ``_id`` is exempt. Patient search needs a minimum data set (FHIR id, identifier, or name and
      birth date...) since May 2019 (fhir.epic.com test patients documentation, seen quoted): a
      pull refreshes the patients it knows by ``_id``; a population comes from Bulk Data.
    - Page size 50: not confirmed; Epic limits large result sets, so ask for modest pages.
    - Stale version 412 (the R4 rule, https://hl7.org/fhir/R4/http.html#concurrency): not confirmed
      for Epic specifically.
    - OperationOutcome entries inside successful search bundles (search.mode "outcome"): seen in
      Epic responses quoted publicly (an Appointment/$find bundle ending in an OperationOutcome,
      https://stackoverflow.com/questions/71430024); the client collects them as warnings.
    - MRN system: Epic's identifier systems are OIDs under Epic's root ``urn:oid:1.2.840.114350``
      and differ per organisation, so no fixed system: the identifier of type MR decides.
    """
    patient = SearchRule(any_of=("patient",))
    return VendorProfile(
        name="epic",
        max_page_size=50,
        repeats_across_pages=False,
        search_context={
            **{t: patient for t in ("ServiceRequest", "Task", "Appointment", "Encounter", "Coverage")},
            "Patient": SearchRule(any_of=("_id", "identifier", "family", "given", "birthdate")),
        },
        stale_version_status=frozenset({412}),
        writes=_writes(Task=("update",), Communication=("create",)),
    )


def oracle_profile() -> VendorProfile:
    """Oracle Health (Cerner) Millennium R4 (fhir.cerner.com, docs.oracle.com .../mfrap).

    - Repeats across pages: "When results are returned in a series of pages, you may see the same
      resource id on subsequent pages ... filter by resource id and only return the latest version"
      (Cerner FHIR Developers, https://groups.google.com/g/cerner-fhir-developers/c/manl3nY2yQw).
    - Appointment search: "Date is required when searching by patient, practitioner, or location";
      one of them (or ``_id``) is required
      (https://fhir.cerner.com/millennium/r4/base/workflow/appointment/). That the date must be a
      closed range (ge and lt) is not confirmed; we send one because open ranges are unbounded.
    - Encounter search: ``_id`` or ``patient`` or ``subject``
      (https://github.com/cerner/fhir.cerner.com/pull/238, Encounter R4 parameters).
    - Communication search: ``_id``, or category + recipient + received + -email-status together
      (https://fhir.cerner.com/millennium/r4/clinical/request-and-response/communication/).
    - Stale version 409: "If the resource has been updated since you read it ... you'll get a
      409/conflict"; a missing or invalid If-Match gets 412
      (https://groups.google.com/g/cerner-fhir-developers/c/Trf2eHQiOp0).
    - Writes: Appointment create and patch
      (https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-appointment-id-patch.html;
      "write new appointments, and update the status of existing appointments",
      fhir.cerner.com Appointment page above); Communication create
      (https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-communication-post.html).
      No Task: not confirmed (no Task in the Millennium R4 resource pages found).
    - Page size: Millennium's "maximum values vary across resources"
      (https://docs.oracle.com/en/industries/health/health-ai-application-suite/aifcl/change-log.html);
      100 is not confirmed for every resource.
    - Extensions: https://fhir-ehr.cerner.com/r4/StructureDefinition/{is-cancelable,
      is-reschedulable} on Appointment (fhir.cerner.com Appointment page).
    - MRN system: per-client OIDs (examples use urn:oid:1.1.1.1.1.1), so the identifier of type MR
      decides; a fixed ``urn:oid:2.16.840.1.113883.6.1000`` system is not confirmed.
    """
    return VendorProfile(
        name="oracle",
        max_page_size=100,
        repeats_across_pages=True,
        search_context={
            "Appointment": SearchRule(any_of=("patient", "practitioner", "location"), date_range="date"),
            "Encounter": SearchRule(any_of=("patient", "subject")),
            "Communication": SearchRule(all_of=("category", "recipient", "received", "-email-status")),
        },
        stale_version_status=frozenset({409}),
        writes=_writes(Appointment=("create", "patch"), Communication=("create",)),
        notable_extensions=(
            "https://fhir-ehr.cerner.com/r4/StructureDefinition/is-cancelable",
            "https://fhir-ehr.cerner.com/r4/StructureDefinition/is-reschedulable",
        ),
    )


def athena_profile(fixed_params: tuple[tuple[str, str], ...] = ()) -> VendorProfile:
    """athenahealth FHIR R4 (docs.athenahealth.com, fhir.athena.io).

    - Practice scoping: athenahealth is multi-tenant; every practice is an Organization with id
      ``a-1.Practice-{PID}`` and resources carry it in the ah-practice extension
      (https://fhir.athena.io/athenacoreext/StructureDefinition-ah-practice.html). That every
      search must carry ``ah-practice=Organization/a-1.Practice-<id>`` is not confirmed from the
      docs (docs.athenahealth.com could not be read); it is modelled as a parameter supplied in
      configuration and added to every search.
    - Read only: no writes. Not confirmed for the R4 API as a whole; athenaPractice's profiles
      say "The create and update operations are NOT supported"
      (https://mydata.athenahealth.com/static/apidoc/ig-ge-organization.html).
    - Page size 100, stale status 412: not confirmed (no writes are made anyway).
    - Extensions: https://fhir.athena.io/StructureDefinition/ah-practice.
    """
    return VendorProfile(
        name="athena",
        max_page_size=100,
        repeats_across_pages=False,
        search_context={"*": SearchRule(any_of=("ah-practice",), unless=(), from_config=True)},
        stale_version_status=frozenset({412}),
        writes={},
        fixed_params=fixed_params,
        notable_extensions=("https://fhir.athena.io/StructureDefinition/ah-practice",),
    )


_CONFIG_PARAMS = {"athena": ("ah-practice",)}
PROFILE_NAMES = ("generic", "epic", "oracle", "athena")


def get_profile(name: str, *, params: Mapping[str, str] | None = None) -> VendorProfile:
    """The default profile of a vendor; ``params`` are its configured fixed search parameters."""
    params = dict(params or {})
    if name not in PROFILE_NAMES:
        raise ConfigError(f"Unknown EHR vendor profile. Valid profiles: {', '.join(PROFILE_NAMES)}.")
    unknown = sorted(set(params) - set(_CONFIG_PARAMS.get(name, ())))
    if unknown:
        raise ConfigError(f"The {name} profile takes no search parameter named {', '.join(unknown)}.")
    if name == "athena":
        return athena_profile(tuple(sorted(params.items())))
    return {"generic": generic_profile, "epic": epic_profile, "oracle": oracle_profile}[name]()


__all__ = [
    "PROFILE_NAMES",
    "Capabilities",
    "ResourceCapability",
    "SearchRule",
    "VendorProfile",
    "get_profile",
]
