"""Roles and the one permission table. Deny by default: what is not listed is refused.

The central service checks the same table on every request (the client is never the only guard).
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    COORDINATOR = "coordinator"
    CHARGE_NURSE = "charge_nurse"
    SUPPLY_MANAGER = "supply_manager"
    FOLLOWUP_NURSE = "followup_nurse"
    ANALYST = "analyst"
    ADMINISTRATOR = "administrator"

    @property
    def title(self) -> str:
        return ROLE_TITLES[self]


ROLE_TITLES = {
    Role.COORDINATOR: "Referral coordinator",
    Role.CHARGE_NURSE: "Charge nurse",
    Role.SUPPLY_MANAGER: "Supply manager",
    Role.FOLLOWUP_NURSE: "Follow-up nurse",
    Role.ANALYST: "Operations analyst",
    Role.ADMINISTRATOR: "Administrator",
}


class Permission(enum.StrEnum):
    PATIENT_READ = "patient.read"
    REFERRAL_READ = "referral.read"
    REFERRAL_WRITE = "referral.write"
    REFERRAL_TRIAGE = "referral.triage"
    ROSTER_READ = "roster.read"
    ROSTER_WRITE = "roster.write"
    SUPPLY_READ = "supply.read"
    SUPPLY_WRITE = "supply.write"
    ANALYTICS_READ = "analytics.read"
    FOLLOWUP_READ = "followup.read"
    FOLLOWUP_WRITE = "followup.write"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    USERS_MANAGE = "users.manage"
    KEYS_ROTATE = "keys.rotate"
    QUARANTINE_READ = "quarantine.read"
    QUARANTINE_REVIEW = "quarantine.review"
    SYNC_RESOLVE = "sync.resolve"


_R = Role
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.PATIENT_READ: frozenset({_R.COORDINATOR, _R.FOLLOWUP_NURSE}),
    Permission.REFERRAL_READ: frozenset({_R.COORDINATOR, _R.ANALYST}),
    Permission.REFERRAL_WRITE: frozenset({_R.COORDINATOR}),
    Permission.REFERRAL_TRIAGE: frozenset({_R.COORDINATOR}),
    Permission.ROSTER_READ: frozenset({_R.CHARGE_NURSE, _R.ANALYST}),
    Permission.ROSTER_WRITE: frozenset({_R.CHARGE_NURSE}),
    Permission.SUPPLY_READ: frozenset({_R.SUPPLY_MANAGER, _R.ANALYST}),
    Permission.SUPPLY_WRITE: frozenset({_R.SUPPLY_MANAGER}),
    Permission.ANALYTICS_READ: frozenset({_R.ANALYST, _R.ADMINISTRATOR}),
    Permission.FOLLOWUP_READ: frozenset({_R.FOLLOWUP_NURSE}),
    Permission.FOLLOWUP_WRITE: frozenset({_R.FOLLOWUP_NURSE}),
    Permission.AUDIT_READ: frozenset({_R.ADMINISTRATOR}),
    Permission.AUDIT_EXPORT: frozenset({_R.ADMINISTRATOR}),
    Permission.USERS_MANAGE: frozenset({_R.ADMINISTRATOR}),
    Permission.KEYS_ROTATE: frozenset({_R.ADMINISTRATOR}),
    Permission.QUARANTINE_READ: frozenset({_R.ADMINISTRATOR}),
    Permission.QUARANTINE_REVIEW: frozenset({_R.ADMINISTRATOR}),  # retry or discard quarantined records
    Permission.SYNC_RESOLVE: frozenset({_R.ADMINISTRATOR, _R.COORDINATOR}),
}
# Permissions that emergency access ("break-glass") may grant for a limited time.
BREAK_GLASS_GRANTS = frozenset({Permission.PATIENT_READ, Permission.REFERRAL_READ, Permission.FOLLOWUP_READ})


def allowed(role: Role | str, permission: Permission) -> bool:
    return Role(role) in PERMISSIONS.get(permission, frozenset())
