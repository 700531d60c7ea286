"""Which permission of the one table (``app.security.roles``) lets a role read or write an entity.

The central service checks this on every request; the workstation's services check the same
permissions before a change ever reaches the outbox. Deny by default: an entity missing here is
neither readable nor writable by anyone, and a test keeps this map in step with the cache's
synchronised tables (``app.cache.models.RECORD_TYPES``).

Each side is a set meaning "any of": reference data (units, locations, staff, organisations) is
needed by several jobs. An empty write set means no role pushes that entity to the service
(encounters come from the EHR only).
"""

from __future__ import annotations

from typing import NamedTuple

from app.security.roles import Permission as P
from app.security.roles import Role, allowed


class Access(NamedTuple):
    read: frozenset[P]
    write: frozenset[P]


def _a(read: set[P], write: set[P]) -> Access:
    return Access(frozenset(read), frozenset(write))


_REFERRAL = _a({P.REFERRAL_READ}, {P.REFERRAL_WRITE})
_ROSTER = _a({P.ROSTER_READ}, {P.ROSTER_WRITE})
_SUPPLY = _a({P.SUPPLY_READ}, {P.SUPPLY_WRITE})
_FOLLOWUP = _a({P.FOLLOWUP_READ}, {P.FOLLOWUP_WRITE})

ENTITY_ACCESS: dict[str, Access] = {
    # people, places
    "patients": _a({P.PATIENT_READ}, {P.REFERRAL_WRITE}),  # registered by coordinators with a referral
    "organizations": _a({P.REFERRAL_READ, P.ROSTER_READ, P.ANALYTICS_READ}, {P.REFERRAL_WRITE}),
    "units": _a({P.ROSTER_READ, P.SUPPLY_READ, P.REFERRAL_READ, P.ANALYTICS_READ}, {P.ROSTER_WRITE}),
    "locations": _a(
        {P.ROSTER_READ, P.SUPPLY_READ, P.REFERRAL_READ, P.ANALYTICS_READ}, {P.ROSTER_WRITE, P.SUPPLY_WRITE}
    ),
    "staff": _a({P.ROSTER_READ, P.REFERRAL_READ}, {P.ROSTER_WRITE}),
    "credentials": _ROSTER,
    # referrals
    "referrals": _REFERRAL,
    "referral_events": _REFERRAL,  # the referral timeline (notes are PHI, like the letter)
    "preauthorizations": _REFERRAL,
    "coverages": _REFERRAL,
    "schedules": _a({P.REFERRAL_READ, P.ANALYTICS_READ}, {P.REFERRAL_WRITE}),
    "slots": _a({P.REFERRAL_READ, P.ANALYTICS_READ}, {P.REFERRAL_WRITE}),
    "appointments": _a({P.REFERRAL_READ, P.ANALYTICS_READ, P.FOLLOWUP_READ}, {P.REFERRAL_WRITE}),
    "care_transitions": _a({P.REFERRAL_READ, P.FOLLOWUP_READ}, {P.REFERRAL_WRITE}),
    "encounters": _a({P.ANALYTICS_READ, P.FOLLOWUP_READ}, set()),
    # roster
    "shifts": _ROSTER,
    "assignments": _ROSTER,
    # supply
    "vendors": _SUPPLY,
    "supply_items": _SUPPLY,
    "stock": _SUPPLY,
    "lots": _SUPPLY,
    "purchase_orders": _SUPPLY,
    "purchase_order_lines": _SUPPLY,
    # follow-up
    "followup_plans": _FOLLOWUP,
    "checkins": _FOLLOWUP,
}

# Every role records audit events on its workstation, so every role hands its chain in (only for
# the workstation its token was issued to; see api.py).
AUDIT_INGEST_ROLES: frozenset[Role] = frozenset(Role)


def _any(role: Role | str, permissions: frozenset[P]) -> bool:
    return any(allowed(role, p) for p in permissions)


def may_read(role: Role | str, entity: str) -> bool:
    access = ENTITY_ACCESS.get(entity)
    return access is not None and _any(role, access.read)


def may_write(role: Role | str, entity: str) -> bool:
    access = ENTITY_ACCESS.get(entity)
    return access is not None and _any(role, access.write)


def readable_entities(role: Role | str) -> frozenset[str]:
    return frozenset(e for e in ENTITY_ACCESS if may_read(role, e))


def writable_entities(role: Role | str) -> frozenset[str]:
    return frozenset(e for e in ENTITY_ACCESS if may_write(role, e))
