"""Audit review for administrators: the newest entries and a chain check, behind AUDIT_READ.

Reading the audit log is not itself audited: entries hold ids, never PHI values, and an entry per
look would make the review screen write to the log it is watching.
"""

from __future__ import annotations

from app.security.audit import AuditEvent, VerifyResult
from app.security.roles import Permission
from services.context import ServiceContext

DEFAULT_LIMIT = 500


class AuditReviewService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def recent(self, limit: int = DEFAULT_LIMIT) -> list[AuditEvent]:
        """The newest ``limit`` entries, newest first. Raises AccessDenied without AUDIT_READ."""
        self._ctx.user.check(Permission.AUDIT_READ)
        return self._ctx.audit.entries(limit=max(1, limit), newest_first=True)

    def count(self) -> int:
        self._ctx.user.check(Permission.AUDIT_READ)
        return self._ctx.audit.count()

    def verify(self) -> VerifyResult:
        """Walk the whole hash chain; see ``AuditLog.verify``."""
        self._ctx.user.check(Permission.AUDIT_READ)
        return self._ctx.audit.verify()
