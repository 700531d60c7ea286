"""Minimum necessary: the elements of each inbound resource type that CareOps reads.

:func:`strip` is applied to every inbound resource before it is parsed into the cache or
quarantined; everything else (narrative, address, contact, photo, extensions, contained
resources) is dropped first. ``ELEMENTS`` is also the ``_elements`` list a client asks a server
for. Each list is what :mod:`sync.fhir.mappers` reads, plus the elements R4 requires (status,
intent, ...) so that a stripped resource still validates.
"""

from __future__ import annotations

from typing import Any

ELEMENTS: dict[str, tuple[str, ...]] = {
    "Organization": ("name", "type"),
    "Location": ("name", "status", "type", "physicalType", "managingOrganization", "partOf"),
    "Practitioner": ("identifier", "active", "name", "qualification"),
    "PractitionerRole": ("active", "practitioner", "organization", "code", "specialty", "location"),
    "Patient": ("identifier", "name", "telecom", "gender", "birthDate"),
    "Coverage": ("status", "subscriberId", "beneficiary", "payor", "class"),
    "ServiceRequest": ("status", "intent", "code", "priority", "subject", "authoredOn", "requester",
                       "performerType", "reasonCode", "insurance", "note"),
    "Task": ("status", "businessStatus", "intent", "focus"),
    "Schedule": ("serviceType", "actor"),
    "Slot": ("schedule", "status", "start", "end"),
    "Appointment": ("identifier", "status", "serviceType", "start", "end", "slot", "basedOn", "participant"),
    "Encounter": ("status", "class", "serviceType", "subject", "period", "hospitalization", "location"),
    "CarePlan": ("status", "intent", "category", "title", "subject", "encounter", "period", "created"),
    "CommunicationRequest": ("basedOn", "status", "medium", "subject", "occurrenceDateTime",
                             "occurrencePeriod"),
    "Communication": ("identifier", "basedOn", "partOf", "status", "statusReason", "medium", "subject",
                      "topic", "sent"),
}
"""resourceType -> the top-level elements kept."""

_META = ("versionId", "lastUpdated")


def _without_extensions(value: Any) -> Any:
    """``value`` with every ``extension`` (and primitive ``_x`` extension) removed, at any depth."""
    if isinstance(value, dict):
        return {k: _without_extensions(v) for k, v in value.items()
                if not (isinstance(k, str) and (k == "extension" or k.startswith("_")))}
    if isinstance(value, list):
        return [_without_extensions(v) for v in value]
    return value


def strip(resource: dict[str, Any]) -> dict[str, Any]:
    """The minimum-necessary copy of ``resource``: resourceType, id, meta (versionId and
    lastUpdated only) and ``ELEMENTS[type]``, without extensions; a Patient keeps phone numbers
    only. An unknown type keeps resourceType and id. Never raises; the input is not changed."""
    if not isinstance(resource, dict):
        return {}
    rtype = resource.get("resourceType")
    out = {k: resource[k] for k in ("resourceType", "id") if k in resource}
    if isinstance(rtype, str) and rtype in ELEMENTS:
        meta = resource.get("meta")
        if isinstance(meta, dict) and any(k in meta for k in _META):
            out["meta"] = {k: meta[k] for k in _META if k in meta}
        for element in ELEMENTS[rtype]:
            if element in resource:
                out[element] = _without_extensions(resource[element])
        if rtype == "Patient" and isinstance(out.get("telecom"), list):
            # The cache keeps one phone number; e-mail and other contact points are not needed.
            phones = [t for t in out.pop("telecom") if isinstance(t, dict) and t.get("system") == "phone"]
            if phones:
                out["telecom"] = phones
    return out


__all__ = ["ELEMENTS", "strip"]
