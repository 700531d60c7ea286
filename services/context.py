"""What every service needs: the cache, who is acting, and the audit log.

``guard`` is the one place where a service checks a permission and writes the audit entry that
must exist before PHI is shown or changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.cache.store import Cache
from app.security.audit import AuditLog
from app.security.roles import Permission
from app.security.users import UserSession


@dataclass
class ServiceContext:
    cache: Cache
    audit: AuditLog
    user: UserSession

    def guard(
        self,
        permission: Permission,
        action: str,
        entity: str,
        record_ids: Iterable[str] = (),
        *,
        detail: str = "",
        session: Session | None = None,
    ) -> None:
        """Check ``permission`` (role or break-glass) and audit the action; raise if either fails."""
        by_role = self.user.check(permission)
        if not by_role:
            grant = self.user.active_grant(permission)
            detail = f"break-glass: {grant.reason}"[:400] if grant else detail
        self.audit.record(
            user=self.user.username,
            role=self.user.role.value,
            action=action,
            entity=entity,
            record_ids=record_ids,
            detail=detail,
            break_glass=not by_role,
            session=session,
        )
