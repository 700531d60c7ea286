"""The referral board's data: one query (joins, no per-card look-ups) that turns referrals into
:class:`Card` values, and the filter options. Called through :class:`services.referrals.ReferralService`,
which checks the role and writes the audit entry before any card is returned.

A card is frozen and holds no ORM object, so it can cross threads in a signal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.cache.models import (
    Appointment,
    Organization,
    Patient,
    PreAuthorization,
    Referral,
)
from app.logs import phi_registry
from services import referral_workflow as wf
from services.referral_records import BOOKED, STARTED_STATUSES, preauth_needed

# The cache tables whose changes can change a card: a board reloads when a ChangeSet names one.
BOARD_TABLES: frozenset[str] = frozenset(
    {"referrals", "patients", "preauthorizations", "appointments", "organizations"}
)


@dataclass(frozen=True)
class BoardFilter:
    """What the board shows. Every field left at its default means "any".

    Attributes:
        specialty: exact specialty, case-insensitive.
        urgency: emergent, urgent, routine, or "untriaged" (no urgency yet).
        owner: a username; "" for unassigned referrals.
        payer: a payer organisation id.
        breached_only: only cards past their SLA.
        text: words found in the specialty or the referral reason, and (for roles that may read
            patients) the patient's name or MRN; case-insensitive, every word must match.
        mine: only referrals owned by the signed-in user.
        include_closed: also Completed and Closed referrals.
    """

    specialty: str | None = None
    urgency: str | None = None
    owner: str | None = None
    payer: str | None = None
    breached_only: bool = False
    text: str | None = None
    mine: bool = False
    include_closed: bool = False


@dataclass(frozen=True)
class Card:
    """One referral on the board.

    ``patient_name``, ``mrn`` and ``patient_age`` are None for roles that may not read patients
    (the analyst sees the flow, not the people). ``urgency`` None means untriaged.
    ``preauth_status`` is the latest pre-authorization's status ("expired" once an approval's
    expiry date has passed), None when there is none on record.
    """

    id: str
    patient_id: str
    patient_name: str | None
    patient_age: int | None
    mrn: str | None
    specialty: str
    urgency: str | None
    status: str
    days_waiting: int
    sla_days: float
    breached: bool
    preauth_status: str | None
    preauth_required: bool
    preauth_expires_on: dt.date | None
    owner: str | None
    payer_id: str | None
    payer_name: str | None
    received_at: dt.datetime
    triage_queue: str | None  # the latest suggestion's queue: human, auto
    suggested_urgency: str | None  # the latest triage suggestion's urgency
    urgency_source: str | None  # None (the referrer), model, coordinator
    appointment_at: dt.datetime | None  # the earliest booked appointment
    booked_appointments: int
    appointment_started: bool
    source: str  # ehr, local, hub
    closed_reason: str | None = None

    def facts(self) -> wf.Facts:
        """What the workflow guards need, as of when the card was read."""
        return wf.Facts(
            status=self.status, urgency=self.urgency, preauth_needed=self.preauth_required,
            preauth_status=self.preauth_status, preauth_expires_on=self.preauth_expires_on,
            booked_appointments=self.booked_appointments, appointment_started=self.appointment_started,
        )  # fmt: skip


@dataclass(frozen=True)
class Board:
    columns: tuple[wf.Column, ...]
    cards: tuple[Card, ...]  # in column order, then most pressing first
    as_of: dt.datetime  # naive UTC
    patients_shown: bool

    def in_column(self, code: str) -> list[Card]:
        return [c for c in self.cards if c.status == code]

    def counts(self) -> dict[str, int]:
        out = {c.code: 0 for c in self.columns}
        for card in self.cards:
            out[card.status] = out.get(card.status, 0) + 1
        return out


@dataclass(frozen=True)
class FilterOptions:
    specialties: tuple[str, ...]
    owners: tuple[str, ...]
    payers: tuple[tuple[str, str], ...]  # (organisation id, name)
    urgencies: tuple[str, ...] = field(default=(*wf.URGENCIES, wf.UNTRIAGED))


def age_on(birth: dt.date | None, today: dt.date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def query_cards(
    s: Session,
    workflow: wf.Workflow,
    filters: BoardFilter,
    *,
    user: str,
    now: dt.datetime,
    today: dt.date,
    with_patients: bool,
    ids: list[str] | None = None,
) -> list[Card]:
    """The cards matching ``filters`` (or exactly ``ids``), sorted for the board."""
    preauth = (
        select(
            PreAuthorization.referral_id, PreAuthorization.status, PreAuthorization.expires_on,
            func.row_number().over(
                partition_by=PreAuthorization.referral_id,
                order_by=(PreAuthorization.updated_at.desc(), PreAuthorization.id.desc()),
            ).label("rn"),
        ).subquery("pa")
    )  # fmt: skip
    is_booked = Appointment.status == BOOKED
    appts = (
        select(
            Appointment.referral_id,
            func.sum(case((is_booked, 1), else_=0)).label("booked"),
            func.min(case((is_booked, Appointment.start))).label("next_start"),
            func.max(case((and_(Appointment.status.in_(STARTED_STATUSES), Appointment.start <= now), 1), else_=0))
            .label("started"),
        ).where(Appointment.referral_id.is_not(None)).group_by(Appointment.referral_id).subquery("ap")
    )  # fmt: skip
    payer = aliased(Organization)
    q = (
        select(
            Referral.id, Referral.patient_id, Patient.name, Patient.mrn, Patient.birth_date, Referral.specialty,
            Referral.urgency, Referral.status, Referral.received_at, Referral.owner, Referral.payer_org_id,
            payer.name, Referral.triage_queue, Referral.triage_urgency, Referral.urgency_source, Referral.source,
            Referral.closed_reason, preauth.c.status, preauth.c.expires_on, appts.c.booked, appts.c.next_start, appts.c.started,
        )
        .select_from(Referral)
        .outerjoin(Patient, Patient.id == Referral.patient_id)
        .outerjoin(payer, payer.id == Referral.payer_org_id)
        .outerjoin(preauth, and_(preauth.c.referral_id == Referral.id, preauth.c.rn == 1))
        .outerjoin(appts, appts.c.referral_id == Referral.id)
    )  # fmt: skip
    if ids is not None:
        q = q.where(Referral.id.in_(ids))
    else:
        if not filters.include_closed:
            q = q.where(Referral.status.not_in(wf.TERMINAL))
        if filters.specialty:
            q = q.where(func.lower(Referral.specialty) == filters.specialty.strip().lower())
        if filters.urgency == wf.UNTRIAGED:
            q = q.where(Referral.urgency.is_(None))
        elif filters.urgency:
            q = q.where(Referral.urgency == filters.urgency)
        if filters.owner == "":
            q = q.where(Referral.owner.is_(None))
        elif filters.owner:
            q = q.where(Referral.owner == filters.owner)
        if filters.mine:
            q = q.where(Referral.owner == user)
        if filters.payer:
            q = q.where(Referral.payer_org_id == filters.payer)
        for word in (filters.text or "").split():
            like = _like(word)
            fields = [Referral.specialty, Referral.reason]
            if with_patients:  # a role that may not read patients must not find them by name either
                fields += [Patient.name, Patient.mrn]
            q = q.where(or_(*(f.like(like, escape="\\") for f in fields)))
    cards: list[Card] = []
    phi: list[str] = []
    needs: dict[tuple[str | None, str | None, str | None], bool] = {}  # few payers, many cards
    # Core rows, not ORM ones: the board needs values, and the ORM layer costs a third of the time.
    for row in s.connection().execute(q):
        (rid, patient_id, name, mrn, birth, specialty, urgency, status, received, owner, payer_id, payer_name,
         queue, suggested, urgency_source, source, closed_reason, pa_status, pa_expires, booked, next_start,
         started) = row  # fmt: skip
        if pa_status == "approved" and pa_expires is not None and pa_expires < today:
            pa_status = "expired"
        booked = int(booked or 0)
        waited = now - received
        sla = workflow.sla_days(urgency)
        due = received + dt.timedelta(days=sla)
        if status in wf.TERMINAL:
            breached = False
        elif status == wf.SCHEDULED and next_start is not None:
            breached = next_start > due  # booked, but later than the SLA allows
        else:
            breached = now > due
        if with_patients:
            phi.append(f"{name or ''} {mrn or ''}")
        key = (payer_id, payer_name, pa_status)
        if key not in needs:
            needs[key] = preauth_needed(workflow, payer_id, payer_name, pa_status)
        cards.append(Card(
            id=rid, patient_id=patient_id,
            patient_name=name if with_patients else None,
            patient_age=age_on(birth, today) if with_patients else None,
            mrn=mrn if with_patients else None,
            specialty=specialty, urgency=urgency, status=status,
            days_waiting=max(0, waited.days), sla_days=sla, breached=breached,
            preauth_status=pa_status,
            preauth_required=needs[key],
            preauth_expires_on=pa_expires, owner=owner, payer_id=payer_id, payer_name=payer_name,
            received_at=received, triage_queue=queue, suggested_urgency=suggested,
            urgency_source=urgency_source, appointment_at=next_start, booked_appointments=booked,
            appointment_started=bool(started), source=source, closed_reason=closed_reason,
        ))  # fmt: skip
    if phi:  # read without the ORM's load event: register for log redaction here, in one go
        phi_registry.add(" ".join(phi))
    if ids is None and filters.breached_only:
        cards = [c for c in cards if c.breached]
    order = {c: i for i, c in enumerate(wf.COLUMNS)}
    cards.sort(key=lambda c: (order.get(c.status, 99), not c.breached, wf.URGENCY_RANK.get(c.urgency, 2), c.received_at))
    return cards


def query_filter_options(s: Session) -> FilterOptions:
    """Distinct values over all referrals (open or not), for the filter boxes; no PHI."""
    specialties = s.scalars(select(Referral.specialty).where(Referral.specialty != "").distinct())
    owners = s.scalars(select(Referral.owner).where(Referral.owner.is_not(None)).distinct())
    payers = s.execute(
        select(Organization.id, Organization.name)
        .where(Organization.id.in_(select(Referral.payer_org_id).where(Referral.payer_org_id.is_not(None))))
        .order_by(Organization.name)
    )  # fmt: skip
    spellings: dict[str, str] = {}
    for name in sorted(set(specialties)):  # the board filters case-insensitively: one entry each
        spellings.setdefault(name.casefold(), name)
    return FilterOptions(
        specialties=tuple(sorted(spellings.values(), key=str.casefold)),
        owners=tuple(sorted(owners)),
        payers=tuple((pid, pname) for pid, pname in payers),
    )
