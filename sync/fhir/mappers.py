"""FHIR R4 resources -> the column values of the cache's records (minimum necessary).

A mapper takes one parsed resource (see :mod:`sync.fhir.parsing`) and a :class:`Lookup` that
answers questions about records already known (does ``Location/x`` name a unit or a location,
which payer does ``Coverage/y`` point at), validates the resource against FHIR R4 with
``fhir.resources.R4B``, and returns a :class:`MappedResource`: plain dicts of column values for
the target tables. It writes nothing; :mod:`sync.fhir.bulk_import` does.

Rules every mapper follows:

* The FHIR id is the record id (no namespacing is needed: every resource type lands in its own
  table); ``meta.versionId`` becomes ``ehr_version``. Derived rows (a practitioner's credentials)
  get ids derived from the parent's id, so a re-import finds them again.
* Only the fields a function of the application needs are taken; everything else is dropped.
* Datetimes become naive UTC ``datetime``; dates become ``date`` (a partial FHIR date such as
  ``1970`` or ``1970-02`` has no exact day and becomes None).
* Missing optional data is fine; a resource that would make an unusable record (no patient, no
  start time) raises :class:`InboundError`, whose reason names the problem and the field, never a
  value from the resource.
* A reference goes into the row as the target id; :func:`check_references` (called by
  :func:`map_resource`) refuses a row whose foreign key the cache would refuse.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from app.cache.models import Base
from app.logs import Safe
from sync.fhir import systems
from sync.fhir.parsing import InboundError
from sync.fhir.validation import model_validate

logger = logging.getLogger(__name__)

EHR_SOURCE = "ehr"

# Board columns a Task's businessStatus may name (sync.fhir.systems.WORKFLOW).
WORKFLOW_STATUSES = frozenset(
    {"new", "triage", "awaiting-preauth", "ready-to-schedule", "scheduled", "completed", "closed"}
)
PROFESSIONS = frozenset({"RN", "LPN", "CNA", "MD", "NP"})
EMPLOYMENTS = frozenset({"core", "float", "agency"})
ORG_KIND = {"prov": "provider", "pay": "payer", "ins": "payer", "bus": "vendor"}
PHYSICAL_KIND = {"bd": "bed", "ro": "room", "wa": "ward", "bu": "building", "si": "site",
                 "lvl": "level", "wi": "wing", "co": "corridor", "area": "area", "ve": "vehicle",
                 "ho": "house", "ca": "cabinet", "rd": "road", "jdn": "jurisdiction"}
MR_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
# Tables a reference to each FHIR type can land in, in the order they are tried.
_LOCATION_TABLES = ("units", "locations")


# --- results --------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """Column values for one record.

    Attributes:
        table: the target table (``Record.__tablename__``).
        id: the record id.
        values: the columns this resource owns: set on insert and on update.
        insert_defaults: values for required columns another resource owns (a Staff row's
            profession comes from PractitionerRole): used only when the record is new.
        update_only: a partial update of a record another resource created (PractitionerRole ->
            Staff, Task -> Referral). The record must exist; no version check applies.
    """

    table: str
    id: str
    values: dict[str, Any]
    insert_defaults: dict[str, Any] = field(default_factory=dict)
    update_only: bool = False


@dataclass(slots=True)
class Prune:
    """Delete ``table`` rows of ``parent_id`` (by ``parent_column``) not in ``keep``, when the
    parent row is written (credentials a new Practitioner version no longer lists)."""

    table: str
    parent_column: str
    parent_id: str
    keep: frozenset[str]


@dataclass(slots=True)
class MappedResource:
    resource_type: str
    resource_id: str
    version: str | None
    rows: list[Row]
    prune: list[Prune] = field(default_factory=list)
    # Facts for later lookups that are not rows: (table, id, attributes).
    facts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


# --- what a mapper may ask about known records ------------------------------------------------


class Lookup(Protocol):
    """Known records, for references. ``table`` is a cache table, or ``practitioner_roles``."""

    def exists(self, table: str, record_id: str) -> bool: ...

    def attribute(self, table: str, record_id: str, column: str) -> Any: ...


class MemoryLookup:
    """A Lookup over dicts: ``{table: {id: {column: value}}}``. Also the importer's base."""

    # Which columns of which tables mappers ask about.
    TRACKED: dict[str, tuple[str, ...]] = {
        "locations": ("unit_id",),
        "coverages": ("payer_org_id",),
        "staff": ("organization_id",),
        "practitioner_roles": ("practitioner_id", "organization_id"),
        "followup_plans": ("patient_id",),
        "checkins": ("plan_id",),
        "referrals": ("urgency", "urgency_source"),
    }

    def __init__(self, tables: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = tables if tables is not None else {}

    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault(table, {})

    def exists(self, table: str, record_id: str) -> bool:
        return record_id in self._table(table)

    def attribute(self, table: str, record_id: str, column: str) -> Any:
        row = self._table(table).get(record_id)
        return None if row is None else row.get(column)

    def remember(self, mapped: MappedResource) -> None:
        """Make a mapped resource's rows known (before they are written, for rows that follow)."""
        for row in mapped.rows:
            known = self._table(row.table).setdefault(row.id, {})
            for column in self.TRACKED.get(row.table, ()):
                if column in row.values:
                    known[column] = row.values[column]
        for table, record_id, attributes in mapped.facts:
            self._table(table)[record_id] = dict(attributes)

    def forget(self, mapped: MappedResource) -> None:
        """Undo :meth:`remember` for rows that turned out not to land."""
        for row in mapped.rows:
            if not row.update_only:
                self._table(row.table).pop(row.id, None)


class _NoLookup:
    def exists(self, table: str, record_id: str) -> bool:
        return False

    def attribute(self, table: str, record_id: str, column: str) -> Any:
        return None


# --- small extractors -------------------------------------------------------------------------


def _clip(value: Any, length: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:length] if value else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _codings(concept: Any) -> list[dict[str, Any]]:
    return [c for c in _list(_dict(concept).get("coding")) if isinstance(c, dict)]


def _codes(concepts: Iterable[Any], system: str) -> list[str]:
    return [
        c["code"]
        for concept in concepts
        for c in _codings(concept)
        if c.get("system") == system and isinstance(c.get("code"), str)
    ]


def _code(concepts: Iterable[Any], system: str) -> str | None:
    found = _codes(concepts, system)
    return found[0] if found else None


def _concept_text(concept: Any) -> str | None:
    """A CodeableConcept as a person would read it: text, else a display, else a code."""
    concept = _dict(concept)
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    for key in ("display", "code"):
        for coding in _codings(concept):
            if isinstance(coding.get(key), str) and coding[key].strip():
                return coding[key].strip()
    return None


def _first_text(concepts: Any) -> str | None:
    for concept in _list(concepts):
        text = _concept_text(concept)
        if text:
            return text
    return None


_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_MAX_REFERENCE = 2048


def _reference(ref: Any, allowed: tuple[str, ...], path: str, *, required: bool = False) -> tuple[str, str] | None:
    """(type, id) of a literal Reference to one of ``allowed`` types, else None.

    Relative (``Patient/1``), absolute (``https://x/fhir/Patient/1``) and versioned
    (``Patient/1/_history/2``) references resolve. Contained (``#x``), ``urn:`` and
    identifier-only references cannot be resolved against the cache: None (or, when
    ``required``, an InboundError).
    """
    raw = _dict(ref).get("reference")
    found: tuple[str, str] | None = None
    if isinstance(raw, str) and len(raw) <= _MAX_REFERENCE and not raw.startswith(("#", "urn:")):
        parts = raw.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and _TYPE_NAME.fullmatch(parts[-2]) and _FHIR_ID.fullmatch(parts[-1]):
            found = (parts[-2], parts[-1])
    if found is None:
        if required:
            raise InboundError(f"missing or unresolvable reference: {path}")
        return None
    if found[0] not in allowed:
        if required:
            raise InboundError(f"unexpected reference type: {path}")
        return None
    return found


def _ref_id(ref: Any, rtype: str, path: str, *, required: bool = False) -> str | None:
    found = _reference(ref, (rtype,), path, required=required)
    return found[1] if found else None


def _instant(value: Any, path: str, *, required: bool = False) -> dt.datetime | None:
    """A FHIR dateTime/instant as naive UTC. A date alone means midnight UTC that day."""
    if value is None or value == "":
        if required:
            raise InboundError(f"missing {path}")
        return None
    if not isinstance(value, str):
        raise InboundError(f"bad datetime: {path}")
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        if required:
            raise InboundError(f"bad or partial datetime: {path}") from None
        return None  # a partial datetime (year, year-month) of an optional field
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _date(value: Any, path: str) -> dt.date | None:
    """A FHIR date (or the date part of a dateTime); partial dates have no day: None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise InboundError(f"bad date: {path}") from None


def _human_name(names: Any) -> str | None:
    candidates = [n for n in _list(names) if isinstance(n, dict)]
    if not candidates:
        return None
    current = [n for n in candidates if not _dict(n.get("period")).get("end")]
    pool = current or candidates
    chosen = next((n for n in pool if n.get("use") == "official"), None)
    chosen = chosen or next((n for n in pool if n.get("use") in (None, "usual")), pool[0])
    if isinstance(chosen.get("text"), str) and chosen["text"].strip():
        return chosen["text"].strip()
    parts = [g for g in _list(chosen.get("given")) if isinstance(g, str)]
    if isinstance(chosen.get("family"), str):
        parts.append(chosen["family"])
    text = " ".join(p.strip() for p in parts if p.strip())
    return text or None


def _identifier(identifiers: Any, system: str) -> str | None:
    for ident in _list(identifiers):
        ident = _dict(ident)
        if ident.get("system") == system and isinstance(ident.get("value"), str):
            return ident["value"].strip() or None
    return None


def _version(resource: dict[str, Any]) -> str | None:
    return _clip(_dict(resource.get("meta")).get("versionId"), 64)


def _derived_id(parent_id: str, suffix: str) -> str:
    candidate = f"{parent_id}.{suffix}"
    if len(candidate) <= 64 and re.fullmatch(r"[A-Za-z0-9\-.]+", candidate):
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()[:40]


def _location_target(ref: Any, lookup: Lookup, path: str) -> tuple[str | None, str | None]:
    """(unit_id, location_id) for a reference to a Location, which is a ward (a unit) or not."""
    rid = _ref_id(ref, "Location", path)
    if rid is None:
        return None, None
    if lookup.exists("units", rid):
        return rid, None
    return lookup.attribute("locations", rid, "unit_id"), rid


def _practitioner(ref: Any, lookup: Lookup, path: str) -> str | None:
    """A staff id from a reference to a Practitioner, or to a PractitionerRole we know."""
    found = _reference(ref, ("Practitioner", "PractitionerRole"), path)
    if found is None:
        return None
    rtype, rid = found
    if rtype == "Practitioner":
        return rid
    return lookup.attribute("practitioner_roles", rid, "practitioner_id")


# --- validation -------------------------------------------------------------------------------

_SAFE_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")


def _loc_text(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif isinstance(part, str) and _SAFE_PART.fullmatch(part):
            parts.append(("." if parts else "") + part)
        else:
            break
    return "".join(parts) or "resource"


def validation_reason(exc: ValidationError) -> str:
    """A PHI-free summary of a pydantic error: paths and error kinds, never the input."""
    seen: list[str] = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(error.get("loc", ()))
        kind = str(error.get("type", "invalid"))
        if kind == "extra_forbidden":
            # The last part of the path is a key from the resource: not repeated here.
            item = f"{_loc_text(loc[:-1])} (unknown element)"
        else:
            kind = kind if _SAFE_PART.fullmatch(kind.replace("-", "_")) else "invalid"
            item = f"{_loc_text(loc)} ({kind})"
        if item not in seen:
            seen.append(item)
    shown = "; ".join(seen[:3])
    more = f"; +{len(seen) - 3} more" if len(seen) > 3 else ""
    return f"invalid FHIR R4: {shown}{more}"[:400]


def validate(resource: dict[str, Any]) -> None:
    """Validate against FHIR R4 (fhir.resources.R4B). Raises InboundError."""
    rtype = resource.get("resourceType")
    if rtype not in MAPPERS:
        raise InboundError("unsupported resource type")
    try:
        model_validate(rtype, resource)
    except ValidationError as exc:
        raise InboundError(validation_reason(exc)) from None
    except RecursionError:
        raise InboundError("invalid FHIR R4: nesting too deep") from None
    except Exception as exc:  # noqa: BLE001 - the validator's own bugs become a quarantine reason
        raise InboundError(f"invalid FHIR R4 ({type(exc).__name__})") from None


# --- the mappers ------------------------------------------------------------------------------

Mapper = Callable[[dict[str, Any], Lookup], MappedResource]


def _base(resource: dict[str, Any]) -> dict[str, Any]:
    return {"ehr_version": _version(resource)}


def map_patient(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    mrn = _identifier(r.get("identifier"), systems.MRN)
    if mrn is None:  # a vendor MRN system: the identifier typed MR
        for ident in _list(r.get("identifier")):
            ident = _dict(ident)
            if "MR" in _codes([ident.get("type")], MR_TYPE) and isinstance(ident.get("value"), str):
                mrn = ident["value"].strip() or None
                break
    if mrn is None:
        raise InboundError("missing identifier: MRN")
    if len(mrn) > 64:
        raise InboundError("identifier too long: MRN")
    phones = [
        t for t in _list(r.get("telecom"))
        if isinstance(t, dict) and t.get("system") == "phone" and isinstance(t.get("value"), str)
        and not _dict(t.get("period")).get("end") and t.get("use") not in ("old",)
    ]
    phones.sort(key=lambda t: ({"mobile": 0, "home": 1}.get(t.get("use"), 2), t.get("rank", 99)
                               if isinstance(t.get("rank"), int) else 99))
    values = _base(r) | {
        "mrn": mrn,
        "name": _clip(_human_name(r.get("name")), 200) or "",
        "birth_date": _date(r.get("birthDate"), "birthDate"),
        "sex": _clip(r.get("gender"), 16),
        "phone": _clip(phones[0]["value"], 40) if phones else None,
    }
    return MappedResource("Patient", r["id"], values["ehr_version"], [Row("patients", r["id"], values)])


def map_organization(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    code = _code(_list(r.get("type")), systems.ORG_TYPE)
    kind = ORG_KIND.get(code or "", code or "other")
    values = _base(r) | {"name": _clip(r.get("name"), 200) or "", "kind": kind[:32]}
    return MappedResource("Organization", r["id"], values["ehr_version"],
                          [Row("organizations", r["id"], values)])


def map_location(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    physical = _code([r.get("physicalType")], systems.LOCATION_PHYSICAL)
    types = _list(r.get("type"))
    unit_kind = _code(types, systems.UNIT_KIND)
    room_kind = _code(types, systems.SUPPLY_ROOM)
    name = _clip(r.get("name"), 120) or ""
    base = _base(r)
    if physical == "wa" or (physical is None and unit_kind not in (None, "clinic")):
        org = _ref_id(r.get("managingOrganization"), "Organization", "managingOrganization")
        values = base | {"name": name, "kind": (unit_kind or "ward")[:32], "organization_id": org}
        return MappedResource("Location", r["id"], base["ehr_version"], [Row("units", r["id"], values)])
    kind = room_kind or (unit_kind if unit_kind == "clinic" else None) or PHYSICAL_KIND.get(physical or "")
    kind = kind or physical or "other"
    unit_id, parent_id = _location_target(r.get("partOf"), lookup, "partOf")
    status = r.get("status")
    values = base | {
        "name": name,
        "kind": kind[:32],
        "unit_id": unit_id,
        "parent_id": parent_id,
        "status": "active" if status in (None, "active") else "closed",
    }
    return MappedResource("Location", r["id"], base["ehr_version"], [Row("locations", r["id"], values)])


def map_practitioner(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    sid = r["id"]
    npi = _identifier(r.get("identifier"), systems.NPI)
    values = _base(r) | {
        "name": _clip(_human_name(r.get("name")), 200) or "",
        "npi": _clip(npi, 20),
        "active": r.get("active") is not False,
    }
    qualifications = [q for q in _list(r.get("qualification")) if isinstance(q, dict)]
    professions = [c for c in _codes((q.get("code") for q in qualifications), systems.PROFESSION) if c in PROFESSIONS]
    staff = Row("staff", sid, values, insert_defaults={
        "profession": professions[0] if professions else "unknown",
        "employment": "core",
        "fte": 1.0,
    })
    rows = [staff]
    seen: dict[str, int] = {}
    for i, qual in enumerate(qualifications):
        code = _code([qual.get("code")], systems.CREDENTIAL)
        if code is None:
            continue  # a degree or a licence in another system: not one of the roster's credentials
        if len(code) > 32:
            raise InboundError(f"code too long: qualification[{i}].code")
        seen[code] = seen.get(code, 0) + 1
        suffix = f"cred.{code}" if seen[code] == 1 else f"cred.{code}.{seen[code]}"
        period = _dict(qual.get("period"))
        rows.append(Row("credentials", _derived_id(sid, suffix), {
            "ehr_version": values["ehr_version"],
            "staff_id": sid,
            "code": code,
            "issued_on": _date(period.get("start"), f"qualification[{i}].period.start"),
            "expires_on": _date(period.get("end"), f"qualification[{i}].period.end"),
        }))
    prune = [Prune("credentials", "staff_id", sid, frozenset(row.id for row in rows[1:]))]
    return MappedResource("Practitioner", sid, values["ehr_version"], rows, prune)


def map_practitioner_role(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    staff_id = _ref_id(r.get("practitioner"), "Practitioner", "practitioner", required=True)
    assert staff_id is not None
    org = _ref_id(r.get("organization"), "Organization", "organization")
    facts = [("practitioner_roles", r["id"], {"practitioner_id": staff_id, "organization_id": org})]
    if r.get("active") is False:
        # An ended role says nothing about where the person works now.
        return MappedResource("PractitionerRole", r["id"], _version(r), [], facts=facts)
    codes = _list(r.get("code"))
    values: dict[str, Any] = {}
    profession = _code(codes, systems.PROFESSION)
    if profession is not None:
        if profession not in PROFESSIONS:
            raise InboundError("unknown code: code (profession)")
        values["profession"] = profession
    employment = _code(codes, systems.EMPLOYMENT)
    if employment is not None:
        if employment not in EMPLOYMENTS:
            raise InboundError("unknown code: code (employment)")
        values["employment"] = employment
    specialty = _clip(_first_text(r.get("specialty")), 80)
    if specialty:
        values["specialty"] = specialty
    locations = _list(r.get("location"))
    if locations:
        unit_id, _ = _location_target(locations[0], lookup, "location[0]")
        if unit_id:
            values["unit_id"] = unit_id
    if org:
        values["organization_id"] = org
    return MappedResource("PractitionerRole", r["id"], _version(r),
                          [Row("staff", staff_id, values, update_only=True)], facts=facts)


_URGENCY_RANK = {"routine": 0, "urgent": 1, "emergent": 2}


def map_service_request(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    patient = _ref_id(r.get("subject"), "Patient", "subject", required=True)
    requester = _reference(r.get("requester"), ("Practitioner", "PractitionerRole", "Organization"), "requester")
    staff_id = org_id = None
    if requester and requester[0] == "Organization":
        org_id = requester[1]
    elif requester and requester[0] == "Practitioner":
        staff_id = requester[1]
        org_id = lookup.attribute("staff", staff_id, "organization_id")
    elif requester:
        # A PractitionerRole is known only within the import that saw it (the cache has no
        # table for roles): an unknown one leaves the referring clinician empty.
        staff_id = lookup.attribute("practitioner_roles", requester[1], "practitioner_id")
        org_id = lookup.attribute("practitioner_roles", requester[1], "organization_id")
    payer = None
    for i, ins in enumerate(_list(r.get("insurance"))):
        coverage = _ref_id(ins, "Coverage", f"insurance[{i}]")
        payer = coverage and lookup.attribute("coverages", coverage, "payer_org_id")
        if payer:
            break
    priority = r.get("priority")
    notes = [n["text"].strip() for n in _list(r.get("note"))
             if isinstance(n, dict) and isinstance(n.get("text"), str) and n["text"].strip()]
    received = _instant(r.get("authoredOn"), "authoredOn")
    values = _base(r) | {
        "patient_id": patient,
        "urgency": systems.PRIORITY_TO_URGENCY.get(priority) if isinstance(priority, str) else None,
        "specialty": _clip(_concept_text(r.get("performerType")) or _concept_text(r.get("code")), 80) or "",
        "reason": _first_text(r.get("reasonCode")),
        "letter_text": "\n\n".join(notes) or None,
        "referring_staff_id": staff_id,
        "referring_org_id": org_id,
        "payer_org_id": payer or None,
    }
    defaults: dict[str, Any] = {"status": "new"}
    urgency = values["urgency"]
    if lookup.attribute("referrals", r["id"], "urgency_source") is not None:
        # Triaged here: a new EHR version keeps that decision, except that a referrer's escalation
        # (a more urgent priority) always comes through.
        stored = lookup.attribute("referrals", r["id"], "urgency")
        if _URGENCY_RANK.get(urgency, -1) <= _URGENCY_RANK.get(stored, -1):
            del values["urgency"]
    if received is not None:
        values["received_at"] = received
    else:  # first seen now; a later version without authoredOn must not move it
        last = _instant(_dict(r.get("meta")).get("lastUpdated"), "meta.lastUpdated")
        defaults["received_at"] = last or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return MappedResource("ServiceRequest", r["id"], values["ehr_version"],
                          [Row("referrals", r["id"], values, insert_defaults=defaults)])


def map_task(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    referral = _ref_id(r.get("focus"), "ServiceRequest", "focus", required=True)
    assert referral is not None
    values: dict[str, Any] = {"ehr_task_id": r["id"], "ehr_task_status": _clip(r.get("status"), 32)}
    workflow = _code([r.get("businessStatus")], systems.WORKFLOW)
    if workflow is not None:
        if workflow not in WORKFLOW_STATUSES:
            raise InboundError("unknown code: businessStatus")
        values["status"] = workflow
    return MappedResource("Task", r["id"], _version(r),
                          [Row("referrals", referral, values, update_only=True)])


def map_coverage(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    patient = _ref_id(r.get("beneficiary"), "Patient", "beneficiary", required=True)
    payer = None
    for i, payor in enumerate(_list(r.get("payor"))):
        payer = _ref_id(payor, "Organization", f"payor[{i}]")
        if payer:
            break
    plan = None
    for cls in _list(r.get("class")):
        cls = _dict(cls)
        if "plan" in _codes([cls.get("type")], COVERAGE_CLASS) or _concept_text(cls.get("type")) == "plan":
            plan = _clip(cls.get("name"), 120) or _clip(cls.get("value"), 120)
            break
    values = _base(r) | {
        "patient_id": patient,
        "payer_org_id": payer,
        "plan": plan,
        "member_id": _clip(r.get("subscriberId"), 64),
        "status": _clip(r.get("status"), 16) or "active",
    }
    return MappedResource("Coverage", r["id"], values["ehr_version"], [Row("coverages", r["id"], values)])


def map_schedule(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    staff_id = location_id = None
    for i, actor in enumerate(_list(r.get("actor"))):
        found = _reference(actor, ("Practitioner", "PractitionerRole", "Location"), f"actor[{i}]")
        if found and found[0] == "Location" and location_id is None:
            _, location_id = _location_target(actor, lookup, f"actor[{i}]")
        elif found and found[0] != "Location" and staff_id is None:
            staff_id = _practitioner(actor, lookup, f"actor[{i}]")
    values = _base(r) | {
        "staff_id": staff_id,
        "location_id": location_id,
        "service_line": _clip(_first_text(r.get("serviceType")), 80),
    }
    return MappedResource("Schedule", r["id"], values["ehr_version"], [Row("schedules", r["id"], values)])


def map_slot(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    values = _base(r) | {
        "schedule_id": _ref_id(r.get("schedule"), "Schedule", "schedule", required=True),
        "start": _instant(r.get("start"), "start", required=True),
        "end": _instant(r.get("end"), "end", required=True),
        "status": _clip(r.get("status"), 16) or "free",
    }
    return MappedResource("Slot", r["id"], values["ehr_version"], [Row("slots", r["id"], values)])


def map_appointment(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    patient = staff_id = location_id = None
    for i, participant in enumerate(_list(r.get("participant"))):
        actor = _dict(participant).get("actor")
        path = f"participant[{i}].actor"
        found = _reference(actor, ("Patient", "Practitioner", "PractitionerRole", "Location"), path)
        if found is None:
            continue
        if found[0] == "Patient" and patient is None:
            patient = found[1]
        elif found[0] == "Location" and location_id is None:
            _, location_id = _location_target(actor, lookup, path)
        elif found[0] in ("Practitioner", "PractitionerRole") and staff_id is None:
            staff_id = _practitioner(actor, lookup, path)
    if patient is None:
        raise InboundError("missing reference: participant (Patient)")
    referral = None
    for i, based in enumerate(_list(r.get("basedOn"))):
        referral = _ref_id(based, "ServiceRequest", f"basedOn[{i}]")
        if referral:
            break
    slots = _list(r.get("slot"))
    values = _base(r) | {
        "patient_id": patient,
        "referral_id": referral,
        "staff_id": staff_id,
        "slot_id": _ref_id(slots[0], "Slot", "slot[0]") if slots else None,
        "location_id": location_id,
        "service_line": _clip(_first_text(r.get("serviceType")), 80),
        "start": _instant(r.get("start"), "start", required=True),
        "end": _instant(r.get("end"), "end"),
        "status": _clip(r.get("status"), 16) or "booked",
    }
    # A booking this workstation wrote back comes home under the EHR's id with ours as its
    # identifier: it updates the appointment it came from instead of doubling it.
    echo = _identifier(r.get("identifier"), systems.APPOINTMENT)
    row_id = echo if echo and echo != r["id"] and lookup.exists("appointments", echo) else r["id"]
    return MappedResource("Appointment", r["id"], values["ehr_version"],
                          [Row("appointments", row_id, values)])


def map_encounter(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    patient = _ref_id(r.get("subject"), "Patient", "subject", required=True)
    klass_code = _dict(r.get("class")).get("code")
    if not isinstance(klass_code, str) or not klass_code:
        raise InboundError("missing class")
    # Home health, virtual and the like still count as encounters, under "other".
    klass = systems.ENCOUNTER_CLASS.get(klass_code, "other")
    period = _dict(r.get("period"))
    unit_id = bed_id = None
    locations = _list(r.get("location"))
    if locations:
        unit_id, bed_id = _location_target(_dict(locations[0]).get("location"), lookup, "location[0].location")
    hosp = _dict(r.get("hospitalization"))
    service = r.get("serviceType")
    values = _base(r) | {
        "patient_id": patient,
        "klass": klass,
        "status": _clip(r.get("status"), 16) or "finished",
        "service_line": _clip(_concept_text(service) if isinstance(service, dict) else _first_text(service), 80),
        "unit_id": unit_id,
        "bed_id": bed_id,
        "start": _instant(period.get("start"), "period.start", required=True),
        "end": _instant(period.get("end"), "period.end"),
        "admit_source": _clip(_concept_text(hosp.get("admitSource")), 40),
        "discharge_disposition": _clip(_concept_text(hosp.get("dischargeDisposition")), 40),
    }
    return MappedResource("Encounter", r["id"], values["ehr_version"], [Row("encounters", r["id"], values)])


# --- post-discharge follow-up -----------------------------------------------------------------

# CommunicationRequest.status -> CheckIn.status; draft, active and on-hold mean "due", set only on
# insert: a Communication may already have marked the check-in done or missed.
REQUEST_STATUS = {"completed": "done", "revoked": "cancelled", "entered-in-error": "cancelled"}
# A Communication's check-in of its own is "<communication id>.contact" (ids are unique per type only).
CONTACT_SUFFIX = "contact"


def _first_ref(refs: Any, rtype: str, path: str) -> str | None:
    for i, ref in enumerate(_list(refs)):
        rid = _ref_id(ref, rtype, f"{path}[{i}]")
        if rid:
            return rid
    return None


def _channel(r: dict[str, Any]) -> str | None:
    for code in _codes(_list(r.get("medium")), systems.PARTICIPATION_MODE):
        if code in systems.MEDIUM_TO_CHANNEL:
            return systems.MEDIUM_TO_CHANNEL[code]
    return None


def _check_subject(r: dict[str, Any], plan_id: str | None, lookup: Lookup) -> None:
    """Refuse a check-in resource about another patient than its plan's (a wrong-patient call list)."""
    subject = _ref_id(r.get("subject"), "Patient", "subject")
    owner = lookup.attribute("followup_plans", plan_id, "patient_id") if plan_id else None
    if subject and owner and subject != owner:
        raise InboundError("inconsistent reference: subject (not the plan's patient)")


def map_care_plan(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    """CarePlan -> FollowUpPlan (``followup_plans``), for post-discharge follow-up plans only.

    * A follow-up plan has a category coded SNOMED "Discharge care plan" or in
      ``systems.FOLLOWUP_CONDITION``; any other CarePlan maps to no rows (accepted, not stored).
    * condition: the FOLLOWUP_CONDITION code of a category (an unknown one is refused), else a
      condition named in the title or category text (``systems.CONDITION_WORDS``), else "other".
      The text itself is not kept.
    * patient_id: subject (a Patient, required). encounter_id: encounter when the cache holds it
      (the discharge may predate what was pulled; the plan stands without it).
    * starts_on: period.start, else created (required). status: CarePlan.status as it is.
    """
    categories = _list(r.get("category"))
    condition = _code(categories, systems.FOLLOWUP_CONDITION)
    if condition is None and systems.DISCHARGE_CARE_PLAN_CODE not in _codes(categories, systems.SNOMED):
        return MappedResource("CarePlan", r["id"], _version(r), [])
    if condition is None:
        words = " ".join(t.lower() for t in (_clip(r.get("title"), 200), *map(_concept_text, categories)) if t)
        condition = next((code for word, code in systems.CONDITION_WORDS if word in words), "other")
    elif condition not in systems.FOLLOWUP_CONDITIONS:
        raise InboundError("unknown code: category (condition)")
    patient = _ref_id(r.get("subject"), "Patient", "subject", required=True)
    encounter = _ref_id(r.get("encounter"), "Encounter", "encounter")
    starts = _date(_dict(r.get("period")).get("start"), "period.start") or _date(r.get("created"), "created")
    if starts is None:
        raise InboundError("missing period.start")
    values = _base(r) | {
        "patient_id": patient,
        "encounter_id": encounter if encounter and lookup.exists("encounters", encounter) else None,
        "condition": condition,
        "status": _clip(r.get("status"), 16) or "active",
        "starts_on": starts,
    }
    return MappedResource("CarePlan", r["id"], values["ehr_version"],
                          [Row("followup_plans", r["id"], values)])


def map_communication_request(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    """CommunicationRequest -> CheckIn (``checkins``): one scheduled check-in, keyed by the request id.

    * plan_id: the first CarePlan in basedOn (required); a subject other than the plan's patient
      is refused.
    * due_at: occurrenceDateTime, else occurrencePeriod.start (required).
    * channel: medium (v3 ParticipationMode, ``systems.MEDIUM_TO_CHANNEL``), else phone on insert.
    * status: see REQUEST_STATUS. payload (the message) is never read.
    """
    plan = _first_ref(r.get("basedOn"), "CarePlan", "basedOn")
    if plan is None:
        raise InboundError("missing reference: basedOn (CarePlan)")
    _check_subject(r, plan, lookup)
    due = r.get("occurrenceDateTime") or _dict(r.get("occurrencePeriod")).get("start")
    values = _base(r) | {"plan_id": plan, "due_at": _instant(due, "occurrenceDateTime", required=True)}
    channel = _channel(r)
    if channel:
        values["channel"] = channel
    status = r.get("status")
    defaults = {"channel": "phone", "status": "due"}
    if isinstance(status, str) and status in REQUEST_STATUS:
        values["status"] = REQUEST_STATUS[status]
    return MappedResource("CommunicationRequest", r["id"], values["ehr_version"],
                          [Row("checkins", r["id"], values, insert_defaults=defaults)])


def map_communication(r: dict[str, Any], lookup: Lookup) -> MappedResource:
    """Communication -> the outcome of a check-in: whether the contact happened, never what was said.

    payload, note and every other free text are never read (minimum necessary: they are PHI-rich).

    * Which check-in: a CommunicationRequest in basedOn or partOf -> its CheckIn (an update; the
      request must be known). Else a CareOps identifier (``systems.CHECKIN``, our own write-back
      echoed by the EHR) -> that CheckIn if this cache holds it (otherwise the hub brings it: no
      rows). Else a CarePlan in basedOn -> an unscheduled contact (a patient who called in) becomes
      a CheckIn of its own, id ``<communication id>.contact``, due_at = sent (required). Else
      refused ("missing reference").
    * status: completed -> done, or what an outcome code says (``systems.CHECKIN_OUTCOME`` in topic
      or statusReason, see ``systems.OUTCOME_STATUS``; the code itself is not kept); not-done,
      stopped -> missed; entered-in-error -> due again (a request's check-in) or cancelled (one of
      its own); other statuses change nothing (due for a check-in of its own).
    * channel: medium, when it names one.
    """
    status = r.get("status")
    outcome = _code([r.get("topic"), r.get("statusReason")], systems.CHECKIN_OUTCOME)
    if outcome is not None and outcome not in systems.OUTCOME_STATUS:
        raise InboundError("unknown code: topic (outcome)")
    values: dict[str, Any] = {}
    if status == "completed":
        values["status"] = systems.OUTCOME_STATUS[outcome] if outcome else "done"
    elif status in ("not-done", "stopped"):
        values["status"] = "missed"
    channel = _channel(r)
    if channel:
        values["channel"] = channel
    request = (_first_ref(r.get("basedOn"), "CommunicationRequest", "basedOn")
               or _first_ref(r.get("partOf"), "CommunicationRequest", "partOf"))
    echo = _identifier(r.get("identifier"), systems.CHECKIN)
    target = request or (echo if echo and _FHIR_ID.fullmatch(echo) else None)
    if target is not None:
        if status == "entered-in-error":
            values["status"] = "due"
        _check_subject(r, lookup.attribute("checkins", target, "plan_id"), lookup)
        known = request is not None or lookup.exists("checkins", target)
        rows = [Row("checkins", target, values, update_only=True)] if known else []
        return MappedResource("Communication", r["id"], _version(r), rows)
    plan = _first_ref(r.get("basedOn"), "CarePlan", "basedOn")
    if plan is None:
        raise InboundError("missing reference: basedOn (CommunicationRequest or CarePlan)")
    _check_subject(r, plan, lookup)
    values = _base(r) | values | {"plan_id": plan, "due_at": _instant(r.get("sent"), "sent", required=True)}
    if status == "entered-in-error":
        values["status"] = "cancelled"
    row = Row("checkins", _derived_id(r["id"], CONTACT_SUFFIX), values,
              insert_defaults={"channel": "phone", "status": "due"})
    return MappedResource("Communication", r["id"], values["ehr_version"], [row])


MAPPERS: dict[str, Mapper] = {
    "Organization": map_organization,
    "Location": map_location,
    "Practitioner": map_practitioner,
    "PractitionerRole": map_practitioner_role,
    "Patient": map_patient,
    "Coverage": map_coverage,
    "ServiceRequest": map_service_request,
    "Task": map_task,
    "Schedule": map_schedule,
    "Slot": map_slot,
    "Appointment": map_appointment,
    "Encounter": map_encounter,
    "CarePlan": map_care_plan,
    "CommunicationRequest": map_communication_request,
    "Communication": map_communication,
}
"""resourceType -> mapper, in the order a bulk import processes them (references point back)."""


# --- references -------------------------------------------------------------------------------


def _foreign_keys() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            for fk in column.foreign_keys:
                out.setdefault(table.name, {})[column.name] = fk.column.table.name
    return out


FOREIGN_KEYS: dict[str, dict[str, str]] = _foreign_keys()
"""table -> {column: referenced table}, from the models."""


def check_references(mapped: MappedResource, lookup: Lookup) -> None:
    """Raise InboundError("dangling reference: ...") for a row the cache's foreign keys would
    refuse, or an update of a record that does not exist."""
    produced: set[tuple[str, str]] = set()
    for row in mapped.rows:
        if row.update_only and not lookup.exists(row.table, row.id):
            raise InboundError(f"dangling reference: {row.table} (record to update)")
        for column, target in FOREIGN_KEYS.get(row.table, {}).items():
            value = row.values.get(column, row.insert_defaults.get(column))
            if value is None or (target, value) in produced:
                continue
            if not lookup.exists(target, value):
                raise InboundError(f"dangling reference: {row.table}.{column}")
        produced.add((row.table, row.id))


def map_resource(resource: dict[str, Any], lookup: Lookup | None = None, *, check: bool = True) -> MappedResource:
    """Validate and map one parsed resource.

    Args:
        resource: a dict from :func:`sync.fhir.parsing.parse_resource`.
        lookup: known records, to resolve references; without one nothing is known, and
            ``check`` must be False for a resource that references anything.
        check: refuse rows whose references the cache does not hold (see check_references).

    Raises:
        InboundError: the resource cannot be used (unsupported type, invalid, missing a required
            part, a dangling reference). Never anything else.
    """
    lookup = lookup if lookup is not None else _NoLookup()
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    mapper = MAPPERS.get(rtype) if isinstance(rtype, str) else None
    if mapper is None:
        raise InboundError("unsupported resource type")
    rid = resource.get("id")
    if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
        raise InboundError("missing or invalid id")
    validate(resource)
    try:
        mapped = mapper(resource, lookup)
        if check:
            check_references(mapped, lookup)
    except InboundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a mapper bug must quarantine, not stop a sync
        logger.warning("mapper for %s failed with %s", Safe(rtype), Safe(type(exc).__name__), exc_info=True)
        raise InboundError(f"internal mapping error ({type(exc).__name__})") from None
    return mapped


__all__ = [
    "CONTACT_SUFFIX",
    "EHR_SOURCE",
    "FOREIGN_KEYS",
    "MAPPERS",
    "InboundError",
    "Lookup",
    "MappedResource",
    "MemoryLookup",
    "Prune",
    "Row",
    "check_references",
    "map_resource",
    "validate",
    "validation_reason",
]
