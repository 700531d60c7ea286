"""Emergency ("break-glass") access: a stated reason, a time limit, a high-priority audit event.

It works offline: the grant lives in the user's session and the audit entry in the local chain,
which syncs to the central service when it can.
"""

from __future__ import annotations

from app.errors import ValidationError
from app.security.users import BreakGlassGrant
from services.context import ServiceContext

MIN_REASON = 10
MAX_MINUTES = 60.0


def start_break_glass(ctx: ServiceContext, reason: str, minutes: float) -> BreakGlassGrant:
    reason = " ".join(reason.split())
    if len(reason) < MIN_REASON:
        raise ValidationError(f"State why emergency access is needed (at least {MIN_REASON} characters).")
    minutes = max(1.0, min(minutes, MAX_MINUTES))
    grant = BreakGlassGrant(reason=reason, expires_at=ctx.user.clock() + minutes * 60.0)
    # Audited before the grant takes effect; if the entry cannot be written there is no access.
    ctx.audit.record(
        user=ctx.user.username,
        role=ctx.user.role.value,
        action="break-glass.start",
        entity="session",
        detail=f"{minutes:.0f} min: {reason}",
        break_glass=True,
    )
    ctx.user.add_grant(grant)
    return grant
