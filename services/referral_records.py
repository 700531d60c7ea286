"""What the referral services share inside one unit of work: loading a referral, the facts the
workflow guards need, moving it (status, timeline event, EHR write-back together), and the
timeline itself. Internal to ``services.referrals`` and its sibling modules.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache.models import (
    Appointment,
    Organization,
    PreAuthorization,
    Referral,
    ReferralEvent,
)
from app.errors import KnownError, ValidationError
from services import referral_workflow as wf
from services.ehr_writeback import queue_ehr_write

EHR = "ehr"
# Appointment statuses (FHIR Appointment.status) meaning the visit happened or is happening.
STARTED_STATUSES = ("booked", "arrived", "checked-in", "fulfilled")
BOOKED = "booked"


class ReferralNotFound(KnownError):
    remedy = "The board may be out of date: refresh it."


def get_referral(s: Session, referral_id: str) -> Referral:
    referral = s.get(Referral, referral_id)
    if referral is None:
        raise ReferralNotFound("This referral no longer exists here.")
    return referral


def latest_preauth(s: Session, referral_id: str) -> PreAuthorization | None:
    return s.scalars(
        select(PreAuthorization).where(PreAuthorization.referral_id == referral_id)
        .order_by(PreAuthorization.updated_at.desc(), PreAuthorization.id.desc()).limit(1)
    ).first()  # fmt: skip


def preauth_needed(workflow: wf.Workflow, payer_id: str | None, payer_name: str | None, status: str | None) -> bool:
    """The payer's rule, or a pre-authorization already under way for this referral."""
    return workflow.needs_preauth(payer_id, payer_name) or status not in (None, "not-requested", "not-required")


def load_facts(s: Session, referral: Referral, workflow: wf.Workflow, now: dt.datetime) -> wf.Facts:
    """The referral's facts as the database has them now (inside the caller's transaction)."""
    pa = latest_preauth(s, referral.id)
    payer_name = s.scalar(select(Organization.name).where(Organization.id == referral.payer_org_id)) \
        if referral.payer_org_id else None  # fmt: skip
    booked = s.scalar(
        select(func.count()).select_from(Appointment)
        .where(Appointment.referral_id == referral.id, Appointment.status == BOOKED)
    ) or 0  # fmt: skip
    started = s.scalar(
        select(func.count()).select_from(Appointment).where(
            Appointment.referral_id == referral.id, Appointment.status.in_(STARTED_STATUSES),
            Appointment.start <= now,
        )
    ) or 0  # fmt: skip
    status = pa.status if pa else None
    return wf.Facts(
        status=referral.status,
        urgency=referral.urgency,
        preauth_needed=preauth_needed(workflow, referral.payer_org_id, payer_name, status),
        preauth_status=status,
        preauth_expires_on=pa.expires_on if pa else None,
        booked_appointments=int(booked),
        appointment_started=bool(started),
    )


def add_event(
    s: Session, referral_id: str, user: str, kind: str, now: dt.datetime,
    *, text: str | None = None, data: dict[str, Any] | None = None,
) -> ReferralEvent:  # fmt: skip
    """Append one timeline entry. Entries of one unit of work get increasing times, a microsecond
    apart, so "booked" sorts before the "moved" it caused."""
    if kind not in wf.EVENT_KINDS:  # pragma: no cover - a programming error
        raise ValueError(f"unknown event kind {kind}")
    seq = s.info.get("referral_event_seq", 0)
    s.info["referral_event_seq"] = seq + 1
    event = ReferralEvent(
        referral_id=referral_id, at=now + dt.timedelta(microseconds=seq), user=user, kind=kind,
        text=text, data=data or {},
    )  # fmt: skip
    s.add(event)
    return event


def apply_move(
    s: Session, referral: Referral, to: str, user: str, now: dt.datetime, *, reason: str | None = None,
    cause: str | None = None,
) -> None:  # fmt: skip
    """Write a move the workflow allowed: status, timeline, and the EHR's Task for EHR referrals."""
    frm = referral.status
    referral.status = to
    if to == wf.CLOSED:
        referral.closed_reason = reason
    elif frm == wf.CLOSED:
        referral.closed_reason = None
    data: dict[str, Any] = {"from": frm, "to": to}
    if cause:
        data["cause"] = cause  # what moved it, when not a person dragging it (booked, cancelled ...)
    add_event(s, referral.id, user, "moved", now, text=reason, data=data)
    if referral.source == EHR:
        queue_ehr_write(s, kind="task-status", entity_id=referral.id, user=user)


def local_date(now: dt.datetime) -> dt.date:
    """The workstation's calendar date at ``now`` (naive UTC): pre-authorization dates, ages."""
    return now.replace(tzinfo=dt.UTC).astimezone().date()


def clean_text(value: object, what: str, limit: int, *, required: bool = False) -> str | None:
    """A person's free text, stripped; None when empty (or refused when required)."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValidationError(f"{what} must be text.")
    if not text:
        if required:
            raise ValidationError(f"{what} is needed.")
        return None
    if len(text) > limit:
        raise ValidationError(f"{what} can be at most {limit:,} characters.")
    return text


def as_date(value: object, what: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ValidationError(f"{what} is not a date (YYYY-MM-DD).")


def as_datetime(value: object, what: str) -> dt.datetime | None:
    """A naive UTC datetime from a datetime (aware ones converted) or an ISO-8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(f"{what} is not a date and time (ISO 8601).") from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{what} is not a date and time.")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
