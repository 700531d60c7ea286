"""The entity -> permission map: complete, deny by default, built on the one permission table."""

from __future__ import annotations

from app.cache.models import RECORD_TYPES
from app.security.roles import Permission, Role
from sync.hub.permissions import ENTITY_ACCESS, may_read, may_write, readable_entities, writable_entities


def test_every_synchronised_table_is_mapped_and_nothing_else():
    assert set(ENTITY_ACCESS) == set(RECORD_TYPES)
    for access in ENTITY_ACCESS.values():
        assert access.read and all(isinstance(p, Permission) for p in access.read | access.write)


def test_unknown_entities_are_denied():
    for role in Role:
        assert not may_read(role, "no_such_table")
        assert not may_write(role, "no_such_table")
        assert not may_write(role, "outbox") and not may_read(role, "users")


def test_who_writes_what():
    assert writable_entities(Role.ANALYST) == frozenset()
    assert writable_entities(Role.ADMINISTRATOR) == frozenset()
    assert may_write(Role.COORDINATOR, "referrals") and not may_write(Role.SUPPLY_MANAGER, "referrals")
    assert may_write(Role.SUPPLY_MANAGER, "stock") and not may_write(Role.CHARGE_NURSE, "stock")
    assert may_write(Role.CHARGE_NURSE, "assignments") and may_write(Role.FOLLOWUP_NURSE, "checkins")
    assert not any(may_write(r, "encounters") for r in Role)


def test_phi_tables_are_read_only_by_the_roles_that_need_them():
    assert {r for r in Role if may_read(r, "patients")} == {Role.COORDINATOR, Role.FOLLOWUP_NURSE}
    assert {r for r in Role if may_read(r, "checkins")} == {Role.FOLLOWUP_NURSE}
    assert "patients" not in readable_entities(Role.ANALYST)
    assert all(readable_entities(r) for r in Role)  # everyone has a feed


def test_writers_can_read_what_they_write():
    for role in Role:
        assert writable_entities(role) <= readable_entities(role), role
