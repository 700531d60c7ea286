"""The referral workflow service: the board, moves, triage, pre-authorization, booking, the care
transition and new referrals from intake.

Every change is one unit of work (``Cache.unit_of_work(user=...)``): the change, its timeline
event (:class:`app.cache.models.ReferralEvent`), the outbox rows, the EHR write-back promise and the
audit entry commit together, online or not. Every read of PHI is audited before it is returned.
Permissions (``app.security.roles``): reading needs REFERRAL_READ (coordinator, analyst); changing
needs REFERRAL_WRITE, triage REFERRAL_TRIAGE (coordinator). Patient names, MRNs and ages are shown
only to roles that may read patients (PATIENT_READ): an analyst sees the flow, not the people.

The Qt board calls this from worker threads (one service per thread is fine; it keeps no state
besides its settings). Results are frozen dataclasses, never ORM objects. Refusals are
``KnownError`` subclasses with a message for the user: :class:`MoveRefused` (the workflow),
:class:`BookingRefused` (slots), ``ValidationError`` (a field), :class:`ReferralNotFound`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache.models import (
    Appointment,
    CareTransition,
    Coverage,
    Organization,
    Patient,
    PreAuthorization,
    Referral,
    ReferralEvent,
    Staff,
    utcnow,
)
from app.config import ReferralSettings
from app.errors import ValidationError
from app.logs import Safe
from app.security.roles import Permission
from services import referral_scheduling as scheduling
from services import referral_workflow as wf
from services.context import ServiceContext
from services.ehr_writeback import EhrWriteState, ehr_write_states
from services.patients import PatientSummary
from services.referral_board import (
    Board,
    BoardFilter,
    Card,
    FilterOptions,
    query_cards,
    query_filter_options,
)
from services.referral_records import (
    ReferralNotFound,
    add_event,
    apply_move,
    as_date,
    as_datetime,
    clean_text,
    get_referral,
    latest_preauth,
    load_facts,
    local_date,
)
from services.referral_scheduling import (
    AppointmentView,
    BookingRefused,
    SlotView,
    appointment_view,
)
from services.referral_workflow import MoveRefused, Refusal
from services.triage.classify import TriagePolicy, classify

logger = logging.getLogger(__name__)

NOTE_MAX = 4000
REASON_MAX = 200  # Referral.closed_reason
SUMMARY_MAX = 8000
TRIAGE_REASONS_MAX = 20
TRIAGE_REASON_MAX = 500
TRIAGE_QUEUES = ("human", "auto")
PREAUTH_FIELDS = frozenset(
    {"status", "requested_on", "decided_on", "expires_on", "auth_number", "documents_requested", "plan", "payer_org_id"}
)
INTAKE_FIELDS = frozenset({
    "patient_id", "patient", "specialty", "reason", "letter_text", "urgency", "referring_staff_id",
    "referring_org_id", "payer_org_id", "received_at", "owner",
    "referring_clinician", "referring_org", "plan", "member_id",  # reviewed texts from the letter
})  # fmt: skip
INTAKE_PATIENT_FIELDS = frozenset({"name", "birth_date", "mrn", "sex", "phone"})
INFORMED_FIELDS = frozenset({"who", "how", "at"})
CLOCK_SKEW = dt.timedelta(minutes=5)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    """A timeline entry. ``text`` is what a person typed (PHI); ``data`` codes, ids and dates."""

    id: str
    at: dt.datetime
    user: str
    kind: str
    text: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class PreAuthView:
    id: str
    status: str
    payer_id: str | None
    plan: str | None
    auth_number: str | None
    requested_on: dt.date | None
    decided_on: dt.date | None
    expires_on: dt.date | None
    documents_requested: str | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class TransitionView:
    id: str
    summary: str | None
    checklist: dict[str, bool]
    informed: tuple[dict[str, str], ...]  # {who, how, at (ISO 8601)}
    updated_at: dt.datetime


@dataclass(frozen=True)
class TriageView:
    """The latest triage suggestion on record."""

    urgency: str | None
    confidence: float | None
    queue: str | None
    model: str | None
    reasons: tuple[str, ...]
    at: dt.datetime | None


@dataclass(frozen=True)
class ReferralDetail:
    card: Card
    reason: str | None
    letter_text: str | None
    closed_reason: str | None
    urgency_decided_by: str | None
    urgency_decided_at: dt.datetime | None
    triage: TriageView | None
    referring_staff_name: str | None
    referring_org_name: str | None
    patient: PatientSummary | None  # None for roles that may not read patients
    events: tuple[EventView, ...]  # newest first
    preauth: PreAuthView | None
    appointments: tuple[AppointmentView, ...]  # newest first
    transition: TransitionView | None
    ehr_task: EhrWriteState | None  # the referral's status write-back, EHR referrals only
    ehr_appointments: dict[str, EhrWriteState]  # appointment id -> its write-back
    allowed_moves: tuple[str, ...]


@dataclass(frozen=True)
class Booking:
    """An appointment change and the referral's card after it (it may have moved column)."""

    appointment: AppointmentView
    card: Card


# --- the service --------------------------------------------------------------------------------


class ReferralService:
    """The referral board's operations for the signed-in user.

    Args:
        ctx: cache, audit log and the user.
        settings: the organisation's ``[referrals]`` settings; None for the defaults.
        clock: naive-UTC "now" (tests pin it).
    """

    def __init__(
        self, ctx: ServiceContext, settings: ReferralSettings | None = None,
        *, clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:  # fmt: skip
        self._ctx = ctx
        self.workflow = wf.Workflow(settings)
        self._clock = clock

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def _user(self) -> str:
        return self._ctx.user.username

    def _now(self) -> dt.datetime:
        return self._clock()

    def _uow(self) -> contextlib.AbstractContextManager[Session]:
        return self._ctx.cache.unit_of_work(user=self._user)

    def _patients_visible(self) -> bool:
        return self._ctx.user.may(Permission.PATIENT_READ)

    def _cards(self, s: Session, ids: list[str], now: dt.datetime) -> list[Card]:
        return query_cards(
            s, self.workflow, BoardFilter(), user=self._user, now=now, today=local_date(now),
            with_patients=self._patients_visible(), ids=ids,
        )  # fmt: skip

    def _card_after(self, referral_id: str) -> Card:
        """The card as committed, after a change whose audit entry already names the referral."""
        now = self._now()
        with self._ctx.cache.reader() as s:
            cards = self._cards(s, [referral_id], now)
        if not cards:  # pragma: no cover - deleted by a sync in between
            raise ReferralNotFound("This referral no longer exists here.")
        return cards[0]

    # -- the board ----------------------------------------------------------------------------------

    def columns(self, *, include_closed: bool = True) -> tuple[wf.Column, ...]:
        return self.workflow.columns(include_closed=include_closed)

    def board(self, filters: BoardFilter | None = None) -> Board:
        """Every open referral (or all, with ``include_closed``) matching ``filters``, as cards.

        Audited as "referral.board" with the ids of the referrals shown.
        """
        filters = filters or BoardFilter()
        self._ctx.user.check(Permission.REFERRAL_READ)
        now = self._now()
        with_patients = self._patients_visible()
        with self._ctx.cache.reader() as s:
            cards = query_cards(s, self.workflow, filters, user=self._user, now=now, today=local_date(now),
                                with_patients=with_patients)  # fmt: skip
        self._ctx.guard(
            Permission.REFERRAL_READ, "referral.board", "referrals", [c.id for c in cards],
            detail=f"{len(cards)} cards" + ("; patient names shown" if with_patients else ""),
        )  # fmt: skip
        return Board(self.workflow.columns(include_closed=filters.include_closed), tuple(cards), now, with_patients)

    def card(self, referral_id: str) -> Card:
        """One referral's card (to refresh one card after a sync changed it); audited."""
        self._ctx.user.check(Permission.REFERRAL_READ)
        now = self._now()
        with self._ctx.cache.reader() as s:
            cards = self._cards(s, [referral_id], now)
        if not cards:
            raise ReferralNotFound("This referral no longer exists here.")
        self._ctx.guard(Permission.REFERRAL_READ, "referral.read", "referrals", [referral_id], detail="card")
        return cards[0]

    def filter_options(self) -> FilterOptions:
        """Distinct specialties, owners and payers of all referrals (no PHI: not audited)."""
        self._ctx.user.check(Permission.REFERRAL_READ)
        with self._ctx.cache.reader() as s:
            return query_filter_options(s)

    # -- moves --------------------------------------------------------------------------------------

    def can_move(self, card_or_id: Card | str, to: str, *, reason: str | None = None) -> Refusal | None:
        """None when the referral may move to column ``to`` now; else the refusal and its reason.

        With a Card this decides on the card's facts, without the database (for drag-over); with
        an id it reads fresh facts. ``move`` checks again on fresh facts either way.
        """
        now = self._now()
        if isinstance(card_or_id, Card):
            return self.workflow.check_move(card_or_id.facts(), to, reason=reason, today=local_date(now))
        self._ctx.user.check(Permission.REFERRAL_READ)
        with self._ctx.cache.reader() as s:
            facts = load_facts(s, get_referral(s, card_or_id), self.workflow, now)
        return self.workflow.check_move(facts, to, reason=reason, today=local_date(now))

    def allowed_moves(self, card: Card) -> tuple[str, ...]:
        """The columns ``card`` may be dropped on (a reason assumed where one is asked for)."""
        return self.workflow.allowed_moves(card.facts(), today=local_date(self._now()))

    def move(self, referral_id: str, to: str, *, reason: str | None = None) -> Card:
        """Move a referral to column ``to``; returns its card afterwards.

        Writes the status, a "moved" timeline event and, for a referral from the EHR, the Task
        status write-back, in one unit of work; audited "referral.move".

        Raises:
            MoveRefused: the workflow does not allow it; ``.reason`` says why.
            AccessDenied: the role may not change referrals.
            ValidationError: the reason is too long.
        """
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        reason = clean_text(reason, "The reason", REASON_MAX)
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            frm = referral.status
            refusal = self.workflow.check_move(load_facts(s, referral, self.workflow, now), to, reason=reason,
                                               today=local_date(now))  # fmt: skip
            if refusal:
                raise MoveRefused(refusal)
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.move", "referrals", [referral_id],
                            detail=f"{frm} -> {to}", session=s)  # fmt: skip
            apply_move(s, referral, to, self._user, now, reason=reason)
        logger.info("referral %s moved %s -> %s", Safe(referral_id), Safe(frm), Safe(to))
        return self._card_after(referral_id)

    # -- detail -------------------------------------------------------------------------------------

    def detail(self, referral_id: str) -> ReferralDetail:
        """Everything about one referral for its detail pane; audited "referral.read"."""
        self._ctx.user.check(Permission.REFERRAL_READ)
        now = self._now()
        today = local_date(now)
        with_patients = self._patients_visible()
        with self._ctx.cache.reader() as s:
            referral = get_referral(s, referral_id)
            card = self._cards(s, [referral_id], now)[0]
            patient = s.get(Patient, referral.patient_id) if with_patients else None
            staff = s.get(Staff, referral.referring_staff_id) if referral.referring_staff_id else None
            org = s.get(Organization, referral.referring_org_id) if referral.referring_org_id else None
            events = s.scalars(
                select(ReferralEvent).where(ReferralEvent.referral_id == referral_id)
                .order_by(ReferralEvent.at.desc(), ReferralEvent.updated_at.desc())
            ).all()  # fmt: skip
            pa = latest_preauth(s, referral_id)
            appointments = s.scalars(
                select(Appointment).where(Appointment.referral_id == referral_id).order_by(Appointment.start.desc())
            ).all()  # fmt: skip
            transition = self._transition(s, referral_id)
            facts = load_facts(s, referral, self.workflow, now)
        ehr_task = ehr_write_states(self._ctx.cache, "referrals", [referral_id]).get(referral_id)
        ehr_appts = ehr_write_states(self._ctx.cache, "appointments", [a.id for a in appointments])
        self._ctx.guard(Permission.REFERRAL_READ, "referral.read", "referrals", [referral_id],
                        detail="detail" + ("; patient shown" if patient else ""))  # fmt: skip
        triage = None
        if referral.triage_at is not None or referral.triage_urgency is not None:
            triage = TriageView(referral.triage_urgency, referral.triage_confidence, referral.triage_queue,
                                referral.triage_model, tuple(referral.triage_reasons or ()), referral.triage_at)  # fmt: skip
        return ReferralDetail(
            card=card,
            reason=referral.reason,
            letter_text=referral.letter_text,
            closed_reason=referral.closed_reason,
            urgency_decided_by=referral.urgency_decided_by,
            urgency_decided_at=referral.urgency_decided_at,
            triage=triage,
            referring_staff_name=staff.name if staff else None,
            referring_org_name=org.name if org else None,
            patient=PatientSummary(patient.id, patient.mrn, patient.name, patient.birth_date, patient.sex)
            if patient else None,
            events=tuple(_event_view(e) for e in events),
            preauth=_preauth_view(pa) if pa else None,
            appointments=tuple(appointment_view(a) for a in appointments),
            transition=_transition_view(transition) if transition else None,
            ehr_task=ehr_task if referral.source == "ehr" else None,
            ehr_appointments=ehr_appts,
            allowed_moves=self.workflow.allowed_moves(facts, today=today),
        )

    # -- notes, owner --------------------------------------------------------------------------------

    def add_note(self, referral_id: str, text: str) -> EventView:
        """Add a note to the referral's timeline; audited "referral.note"."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        note = clean_text(text, "The note", NOTE_MAX, required=True)
        now = self._now()
        with self._uow() as s:
            get_referral(s, referral_id)
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.note", "referrals", [referral_id], session=s)
            event = add_event(s, referral_id, self._user, "note", now, text=note)
            s.flush()
            view = _event_view(event)
        return view

    def assign(self, referral_id: str, owner: str | None) -> Card:
        """Give the referral to a coordinator (a username), or unassign it with None."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        owner = clean_text(owner, "The owner", 64)
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            previous = referral.owner
            if previous != owner:
                self._ctx.guard(Permission.REFERRAL_WRITE, "referral.assign", "referrals", [referral_id],
                                detail=f"{previous or '-'} -> {owner or '-'}", session=s)  # fmt: skip
                referral.owner = owner
                add_event(s, referral_id, self._user, "assigned", now, data={"from": previous, "to": owner})
        return self._card_after(referral_id)

    # -- triage -------------------------------------------------------------------------------------

    def record_triage_suggestion(self, referral_id: str, suggestion: dict[str, Any]) -> Card:
        """Keep a triage model's suggestion ``{urgency, confidence, queue, reasons, model}``.

        A suggestion from the "human" queue never sets the urgency; one from the "auto" queue
        sets it only on an untriaged referral, and only when the organisation allows it
        (``auto_accept_triage``). Other keys of ``suggestion`` are ignored. Audited "triage.suggest".
        """
        self._ctx.user.check(Permission.REFERRAL_TRIAGE)
        urgency, confidence, queue, model, reasons = _check_suggestion(suggestion)
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            applied = queue == "auto" and self.workflow.auto_accept_triage and referral.urgency is None \
                and referral.status not in wf.TERMINAL  # fmt: skip
            self._ctx.guard(
                Permission.REFERRAL_TRIAGE, "triage.suggest", "referrals", [referral_id], session=s,
                detail=f"urgency={urgency} confidence={_fmt_conf(confidence)} queue={queue} "
                       f"model={model or '-'} applied={'yes' if applied else 'no'}",
            )  # fmt: skip
            referral.triage_urgency, referral.triage_confidence = urgency, confidence
            referral.triage_queue, referral.triage_model = queue, model
            referral.triage_reasons, referral.triage_at = list(reasons), now
            if applied:
                referral.urgency, referral.urgency_source = urgency, "model"
                referral.urgency_decided_by, referral.urgency_decided_at = None, now
            add_event(s, referral_id, self._user, "triage-suggested", now, text="\n".join(reasons) or None, data={
                "urgency": urgency, "confidence": confidence, "queue": queue, "model": model, "applied": applied,
            })  # fmt: skip
        return self._card_after(referral_id)

    def suggest_urgency(self, referral_id: str, policy: TriagePolicy | None = None) -> Card:
        """Run the local triage model on the referral's own text (reason and letter; nothing
        leaves this machine) and keep its suggestion as :meth:`record_triage_suggestion` does."""
        self._ctx.user.check(Permission.REFERRAL_TRIAGE)
        with self._ctx.cache.reader() as s:
            referral = get_referral(s, referral_id)
            text = "\n\n".join(t for t in (referral.specialty, referral.reason, referral.letter_text) if t)
        suggestion = classify(text, policy)
        return self.record_triage_suggestion(referral_id, suggestion.to_dict() | {"model": suggestion.model_version})

    def decide_urgency(self, referral_id: str, urgency: str, reason: str | None = None) -> Card:
        """A coordinator decides the urgency. A reason is needed to decide differently from the
        triage suggestion, or to change an urgency a person decided. Audited "triage.decide" with
        the suggestion it agreed or disagreed with."""
        self._ctx.user.check(Permission.REFERRAL_TRIAGE)
        if urgency not in wf.URGENCIES:
            raise ValidationError(f"Urgency must be one of {', '.join(wf.URGENCIES)}.")
        reason = clean_text(reason, "The reason", NOTE_MAX)
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            if referral.status in wf.TERMINAL:
                raise ValidationError("The referral is closed: reopen it before triaging it again.")
            suggested = referral.triage_urgency
            agreed = None if suggested is None else suggested == urgency
            previous = referral.urgency
            if agreed is False and not reason:
                raise ValidationError("Give a reason for deciding differently from the triage suggestion.")
            if referral.urgency_source == "coordinator" and previous != urgency and not reason:
                raise ValidationError("Give a reason for changing an urgency that was already decided.")
            verdict = "no suggestion" if agreed is None else "agreed" if agreed else "disagreed"
            self._ctx.guard(
                Permission.REFERRAL_TRIAGE, "triage.decide", "referrals", [referral_id], session=s,
                detail=f"decided={urgency} previous={previous or '-'} suggested={suggested or '-'} "
                       f"confidence={_fmt_conf(referral.triage_confidence)} model={referral.triage_model or '-'} "
                       f"{verdict}",
            )  # fmt: skip
            referral.urgency, referral.urgency_source = urgency, "coordinator"
            referral.urgency_decided_by, referral.urgency_decided_at = self._user, now
            add_event(s, referral_id, self._user, "urgency-decided", now, text=reason, data={
                "urgency": urgency, "previous": previous, "suggested": suggested,
                "confidence": referral.triage_confidence, "model": referral.triage_model, "agreed": agreed,
            })  # fmt: skip
        return self._card_after(referral_id)

    # -- pre-authorization --------------------------------------------------------------------------

    def save_preauth(self, referral_id: str, **fields: Any) -> PreAuthView:
        """Record the pre-authorization's state; fields not given keep their values.

        Fields: status (not-requested, requested, approved, denied, appeal, expired,
        not-required: the payer needs none for this referral), requested_on, decided_on,
        expires_on (dates or ISO strings), auth_number, documents_requested, plan, payer_org_id.
        Audited "referral.preauth".

        Raises:
            ValidationError: a field or a combination the payer's process does not allow, e.g. a
                decision dated before the request.
        """
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        unknown = sorted(set(fields) - PREAUTH_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown pre-authorization fields: {', '.join(unknown)}.")
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            pa = latest_preauth(s, referral_id)
            previous = pa.status if pa else None
            if pa is None:
                pa = PreAuthorization(referral_id=referral_id, payer_org_id=referral.payer_org_id, status="not-requested")
                s.add(pa)
            values = _check_preauth(s, pa, fields, previous, local_date(now))
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.preauth", "referrals", [referral_id],
                            detail=f"{previous or '-'} -> {values['status']}", session=s)  # fmt: skip
            for key, value in values.items():
                setattr(pa, key, value)
            add_event(s, referral_id, self._user, "preauth", now, data={
                "status": pa.status, "previous": previous,
                "requested_on": _iso(pa.requested_on), "decided_on": _iso(pa.decided_on),
                "expires_on": _iso(pa.expires_on), "documents_requested": bool(pa.documents_requested),
            })  # fmt: skip
            s.flush()
            view = _preauth_view(pa)
        return view

    # -- scheduling ---------------------------------------------------------------------------------

    def open_slots(
        self, referral_id: str, *, start: dt.datetime, end: dt.datetime, limit: int = 200
    ) -> list[SlotView]:
        """Free future slots from ``start`` to ``end`` (naive UTC) of the schedules whose service
        line is the referral's specialty, earliest first. No PHI: not audited."""
        self._ctx.user.check(Permission.REFERRAL_READ)
        if end <= start:
            raise ValidationError("The end of the search range must be after its start.")
        with self._ctx.cache.reader() as s:
            referral = get_referral(s, referral_id)
            return scheduling.find_open_slots(s, referral.specialty, start, end, self._now(), limit)

    def book(self, referral_id: str, slot_id: str) -> Booking:
        """Book a free slot for the referral; the referral moves to Scheduled. The slot becomes
        busy, the timeline says "booked", the EHR hears of it (EHR referrals); audited.

        Raises:
            BookingRefused: the slot is gone, taken meanwhile, past, or of another service; the
                referral already has a booked appointment.
            MoveRefused: the referral may not be scheduled yet (untriaged, pre-authorization ...).
        """
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        now = self._now()
        with self._uow() as s:
            referral = get_referral(s, referral_id)
            if referral.status in wf.TERMINAL:
                raise BookingRefused("The referral is closed: reopen it before booking.", remedy="")
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.book", "referrals", [referral_id],
                            detail=f"slot {slot_id}", session=s)  # fmt: skip
            appointment = scheduling.book(s, self.workflow, referral, slot_id, self._user, now)
            view = appointment_view(appointment)
        return Booking(view, self._card_after(referral_id))

    def reschedule(self, appointment_id: str, new_slot_id: str, *, reason: str | None = None) -> Booking:
        """Move a booked appointment to another free slot (the old slot is given back)."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        reason = clean_text(reason, "The reason", NOTE_MAX)
        return self._appointment_change(
            appointment_id, "referral.reschedule", f"slot {new_slot_id}",
            lambda s, a, r, now: scheduling.reschedule(s, self.workflow, a, r, new_slot_id, self._user, now, reason),
        )  # fmt: skip

    def cancel(self, appointment_id: str, reason: str) -> Booking:
        """Cancel a booked appointment (a reason is needed); a Scheduled referral goes back to
        Ready to schedule (or Awaiting pre-auth when its pre-authorization lapsed)."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        text = clean_text(reason, "The reason for cancelling", NOTE_MAX, required=True)
        assert text is not None
        return self._appointment_change(
            appointment_id, "referral.cancel", "",
            lambda s, a, r, now: scheduling.cancel(s, self.workflow, a, r, text, self._user, now),
        )  # fmt: skip

    def no_show(self, appointment_id: str) -> Booking:
        """Record that the patient did not come; the referral goes back to be rebooked."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        return self._appointment_change(
            appointment_id, "referral.no-show", "",
            lambda s, a, r, now: scheduling.no_show(s, self.workflow, a, r, self._user, now),
        )  # fmt: skip

    def _appointment_change(
        self, appointment_id: str, action: str, detail: str,
        change: Callable[[Session, Appointment, Referral, dt.datetime], Appointment],
    ) -> Booking:  # fmt: skip
        now = self._now()
        with self._uow() as s:
            appointment = s.get(Appointment, appointment_id)
            if appointment is None:
                raise BookingRefused("This appointment no longer exists here.", remedy="Refresh the referral.")
            if appointment.referral_id is None:
                raise BookingRefused("This appointment belongs to no referral.", remedy="")
            referral = get_referral(s, appointment.referral_id)
            self._ctx.guard(Permission.REFERRAL_WRITE, action, "referrals", [referral.id],
                            detail=f"appointment {appointment_id}" + (f"; {detail}" if detail else ""), session=s)  # fmt: skip
            view = appointment_view(change(s, appointment, referral, now))
            referral_id = referral.id
        return Booking(view, self._card_after(referral_id))

    # -- care transition ----------------------------------------------------------------------------

    def save_transition(
        self, referral_id: str, summary: str | None, checklist: dict[str, bool], informed: Iterable[dict[str, Any]]
    ) -> TransitionView:
        """Document the care transition: a summary, a checklist (item -> done) and who was
        informed how and when (``[{who, how, at}]``, ``at`` a datetime or ISO string). Replaces the
        referral's previous transition record; audited "referral.transition"."""
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        summary = clean_text(summary, "The summary", SUMMARY_MAX)
        checks = _check_checklist(checklist)
        people = _check_informed(informed, self._now())
        now = self._now()
        with self._uow() as s:
            get_referral(s, referral_id)
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.transition", "referrals", [referral_id], session=s)
            record = self._transition(s, referral_id)
            if record is None:
                record = CareTransition(referral_id=referral_id)
                s.add(record)
            record.summary, record.checklist, record.informed = summary, checks, people
            add_event(s, referral_id, self._user, "transition", now, data={
                "done": sum(checks.values()), "items": len(checks), "informed": len(people),
            })  # fmt: skip
            s.flush()
            view = _transition_view(record)
        return view

    @staticmethod
    def _transition(s: Session, referral_id: str) -> CareTransition | None:
        return s.scalars(
            select(CareTransition).where(CareTransition.referral_id == referral_id)
            .order_by(CareTransition.updated_at.desc()).limit(1)
        ).first()  # fmt: skip

    # -- intake -------------------------------------------------------------------------------------

    def create_from_intake(self, draft: dict[str, Any]) -> Card:
        """Create a referral (source "local", status "new") from a reviewed intake draft.

        ``draft`` keys: ``specialty`` (required); the patient as ``patient_id`` of an existing
        patient, or ``patient`` = {name, birth_date, mrn, sex?, phone?} (an existing patient with
        that MRN is used when name and birth date agree, refused when they do not); optional
        ``reason``, ``letter_text``, ``urgency`` (the referrer's, as an EHR priority would be),
        ``referring_staff_id``, ``referring_org_id``, ``payer_org_id`` (default: the patient's
        active coverage), ``received_at`` (default now), ``owner`` (default: the signed-in user;
        None for unassigned). Reviewed texts from the letter: ``referring_clinician`` and
        ``referring_org`` are linked to the one known clinician / organisation of that name (else
        kept on the "created" event), ``plan`` and ``member_id`` become the patient's coverage with
        the payer (when there is a payer). Unknown keys are refused, so no reviewed value is dropped
        silently. Audited "referral.create".
        """
        self._ctx.user.check(Permission.REFERRAL_WRITE)
        if not isinstance(draft, dict):
            raise ValidationError("The intake draft must be a set of named values.")
        unknown = sorted(set(draft) - INTAKE_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown intake fields: {', '.join(unknown)}.")
        now = self._now()
        specialty = clean_text(draft.get("specialty"), "The specialty", 80, required=True)
        reason = clean_text(draft.get("reason"), "The reason for referral", NOTE_MAX)
        letter = clean_text(draft.get("letter_text"), "The letter text", 200_000)
        urgency = draft.get("urgency") or None
        if urgency is not None and urgency not in wf.URGENCIES:
            raise ValidationError(f"Urgency must be one of {', '.join(wf.URGENCIES)}, or empty.")
        received = as_datetime(draft.get("received_at"), "The date received") or now
        if received > now + CLOCK_SKEW:
            raise ValidationError("The date received is in the future.")
        owner = clean_text(draft["owner"], "The owner", 64) if "owner" in draft else self._user
        with self._uow() as s:
            patient, created = self._intake_patient(s, draft)
            for key, what in (("referring_staff_id", "referring clinician"), ("referring_org_id", "referring organisation"),
                              ("payer_org_id", "payer")):  # fmt: skip
                value = draft.get(key)
                model = Staff if key == "referring_staff_id" else Organization
                if value and s.get(model, value) is None:
                    raise ValidationError(f"The {what} is not known here.")
            payer = draft.get("payer_org_id") or s.scalar(
                select(Coverage.payer_org_id).where(Coverage.patient_id == patient.id, Coverage.status == "active",
                                                    Coverage.payer_org_id.is_not(None)).limit(1)
            )  # fmt: skip
            unmatched: list[str] = []
            staff_id = draft.get("referring_staff_id") or _named(
                s, Staff, clean_text(draft.get("referring_clinician"), "The referring clinician", 200), unmatched)
            org_id = draft.get("referring_org_id") or _named(
                s, Organization, clean_text(draft.get("referring_org"), "The referring practice", 200), unmatched)
            if payer:
                _intake_coverage(s, patient.id, payer, clean_text(draft.get("plan"), "The plan", 120),
                                 clean_text(draft.get("member_id"), "The member ID", 64))
            referral = Referral(
                source="local", status=wf.NEW, patient_id=patient.id, specialty=specialty, reason=reason,
                letter_text=letter, urgency=urgency, referring_staff_id=staff_id or None,
                referring_org_id=org_id or None, payer_org_id=payer or None,
                owner=owner, received_at=received,
            )  # fmt: skip
            s.add(referral)
            s.flush()
            self._ctx.guard(Permission.REFERRAL_WRITE, "referral.create", "referrals", [referral.id], session=s,
                            detail=f"patient {patient.id} ({'new' if created else 'existing'})")  # fmt: skip
            add_event(s, referral.id, self._user, "created", now,
                      text="Referred by (not matched to a known record): " + "; ".join(unmatched) if unmatched else None,
                      data={"from": "intake", "new_patient": created, "patient_id": patient.id})  # fmt: skip
            referral_id = referral.id
        return self._card_after(referral_id)

    def _intake_patient(self, s: Session, draft: dict[str, Any]) -> tuple[Patient, bool]:
        if draft.get("patient_id"):
            patient = s.get(Patient, draft["patient_id"])
            if patient is None:
                raise ValidationError("The chosen patient is not known here.")
            return patient, False
        raw = draft.get("patient")
        if not isinstance(raw, dict):
            raise ValidationError("Choose an existing patient or enter the patient's name, birth date and MRN.")
        unknown = sorted(set(raw) - INTAKE_PATIENT_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown patient fields: {', '.join(unknown)}.")
        name = clean_text(raw.get("name"), "The patient's name", 200, required=True)
        birth = as_date(raw.get("birth_date"), "The birth date")
        if birth is None:
            raise ValidationError("The patient's birth date is needed.")
        if birth > local_date(self._now()):
            raise ValidationError("The birth date is in the future.")
        mrn = clean_text(raw.get("mrn"), "The MRN", 64, required=True)
        sex = clean_text(raw.get("sex"), "Sex", 16)
        phone = clean_text(raw.get("phone"), "The phone number", 40)
        assert name is not None and mrn is not None
        same = s.scalars(select(Patient).where(Patient.mrn == mrn)).all()
        if same:
            match = [p for p in same if p.birth_date == birth and p.name.strip().casefold() == name.casefold()]
            if not match:
                raise ValidationError(
                    "This MRN belongs to a patient with another name or birth date.",
                    remedy="Check the MRN, or choose the existing patient.",
                )
            return match[0], False
        patient = Patient(source="local", mrn=mrn, name=name, birth_date=birth, sex=sex, phone=phone)
        s.add(patient)
        s.flush()
        return patient, True


# --- checks and views -----------------------------------------------------------------------------


def _named(s: Session, model: type[Staff] | type[Organization], name: str | None, unmatched: list[str]) -> str | None:
    """The id of the one record called ``name`` (case-insensitive); otherwise the name is noted."""
    if not name:
        return None
    ids = list(s.scalars(select(model.id).where(func.lower(model.name) == name.lower()).limit(2)))
    if len(ids) == 1:
        return ids[0]
    unmatched.append(name)
    return None


def _intake_coverage(s: Session, patient_id: str, payer_id: str, plan: str | None, member_id: str | None) -> None:
    """Keep the reviewed plan and member id as the patient's coverage with the payer."""
    if not plan and not member_id:
        return
    coverage = s.scalar(select(Coverage).where(Coverage.patient_id == patient_id, Coverage.payer_org_id == payer_id,
                                               Coverage.status == "active").limit(1))  # fmt: skip
    if coverage is None:
        s.add(Coverage(patient_id=patient_id, payer_org_id=payer_id, plan=plan, member_id=member_id, status="active"))
        return
    coverage.plan = coverage.plan or plan
    coverage.member_id = coverage.member_id or member_id


def _check_suggestion(suggestion: object) -> tuple[str, float | None, str, str | None, tuple[str, ...]]:
    if not isinstance(suggestion, dict):
        raise ValidationError("A triage suggestion must be a set of named values.")
    urgency = suggestion.get("urgency")
    if urgency not in wf.URGENCIES:
        raise ValidationError("The triage suggestion has no known urgency.")
    queue = suggestion.get("queue")
    if queue not in TRIAGE_QUEUES:
        raise ValidationError("The triage suggestion's queue must be human or auto.")
    confidence = suggestion.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not math.isfinite(confidence) \
                or not 0 <= confidence <= 1:  # fmt: skip
            raise ValidationError("The triage suggestion's confidence must be between 0 and 1.")
        confidence = float(confidence)
    model = suggestion.get("model")
    if model is not None and (not isinstance(model, str) or len(model) > 64):
        raise ValidationError("The triage model's name must be text of at most 64 characters.")
    raw = suggestion.get("reasons") or []
    if isinstance(raw, str) or not isinstance(raw, list | tuple) or not all(isinstance(r, str) for r in raw):
        raise ValidationError("The triage suggestion's reasons must be a list of texts.")
    reasons = tuple(r.strip()[:TRIAGE_REASON_MAX] for r in raw if r.strip())[:TRIAGE_REASONS_MAX]
    return urgency, confidence, queue, model or None, reasons


def _check_preauth(
    s: Session, pa: PreAuthorization, fields: dict[str, Any], previous: str | None, today: dt.date
) -> dict[str, Any]:
    """The pre-authorization's values after ``fields``, checked as a whole."""
    v: dict[str, Any] = {
        "status": pa.status, "requested_on": pa.requested_on, "decided_on": pa.decided_on,
        "expires_on": pa.expires_on, "auth_number": pa.auth_number,
        "documents_requested": pa.documents_requested, "plan": pa.plan, "payer_org_id": pa.payer_org_id,
    }  # fmt: skip
    for key in ("requested_on", "decided_on", "expires_on"):
        if key in fields:
            v[key] = as_date(fields[key], {"requested_on": "The request date", "decided_on": "The decision date",
                                           "expires_on": "The expiry date"}[key])  # fmt: skip
    if "status" in fields:
        v["status"] = fields["status"]
    if "auth_number" in fields:
        v["auth_number"] = clean_text(fields["auth_number"], "The authorization number", 64)
    if "documents_requested" in fields:
        v["documents_requested"] = clean_text(fields["documents_requested"], "The documents requested", NOTE_MAX)
    if "plan" in fields:
        v["plan"] = clean_text(fields["plan"], "The plan", 120)
    if "payer_org_id" in fields:
        v["payer_org_id"] = fields["payer_org_id"] or None
        if v["payer_org_id"] and s.get(Organization, v["payer_org_id"]) is None:
            raise ValidationError("The payer is not known here.")
    status = v["status"]
    if status not in wf.PREAUTH_STATUSES:
        raise ValidationError(f"Pre-authorization status must be one of {', '.join(wf.PREAUTH_STATUSES)}.")
    requested, decided, expires = v["requested_on"], v["decided_on"], v["expires_on"]
    if requested and requested > today:
        raise ValidationError("The request date is in the future.")
    if decided and decided > today:
        raise ValidationError("The decision date is in the future.")
    if status in ("requested", "appeal", "approved", "denied") and requested is None:
        raise ValidationError("Enter the date the pre-authorization was requested.")
    if status in ("approved", "denied") and decided is None:
        raise ValidationError("Enter the date of the payer's decision.")
    if requested and decided and decided < requested:
        raise ValidationError("The decision date is before the request date.")
    if status == "approved" and not v["auth_number"]:
        raise ValidationError("Enter the payer's authorization number.")
    if expires and decided and expires < decided:
        raise ValidationError("The authorization expires before it was decided.")
    if expires and requested and expires < requested:
        raise ValidationError("The authorization expires before it was requested.")
    if status == "expired" and expires is None:
        raise ValidationError("Enter the date the authorization expired.")
    if status == "expired" and expires > today:
        raise ValidationError("The authorization's expiry date has not come yet.")
    if status == "appeal" and previous not in ("denied", "appeal"):
        raise ValidationError("An appeal follows a denial: record the payer's denial first.")
    return v


def _check_checklist(checklist: object) -> dict[str, bool]:
    if not isinstance(checklist, dict):
        raise ValidationError("The checklist must map each item to done or not done.")
    out: dict[str, bool] = {}
    for item, done in checklist.items():
        label = clean_text(item, "A checklist item", 200, required=True)
        if not isinstance(done, bool):
            raise ValidationError("Each checklist item must be done or not done.")
        assert label is not None
        out[label] = done
    return out


def _check_informed(informed: object, now: dt.datetime) -> list[dict[str, str]]:
    if isinstance(informed, dict | str) or not isinstance(informed, Iterable):
        raise ValidationError("'Informed' must be a list of who was told, how and when.")
    out: list[dict[str, str]] = []
    for entry in informed:
        if not isinstance(entry, dict):
            raise ValidationError("Each 'informed' entry needs who, how and when.")
        unknown = sorted(set(entry) - INFORMED_FIELDS)
        if unknown:
            raise ValidationError(f"Unknown fields in an 'informed' entry: {', '.join(unknown)}.")
        who = clean_text(entry.get("who"), "Who was informed", 200, required=True)
        how = clean_text(entry.get("how"), "How they were informed", 80, required=True)
        at = as_datetime(entry.get("at"), "When they were informed")
        if at is None:
            raise ValidationError("Enter when they were informed.")
        if at > now + CLOCK_SKEW:
            raise ValidationError("The time they were informed is in the future.")
        assert who is not None and how is not None
        out.append({"who": who, "how": how, "at": at.isoformat()})
    return out


def _event_view(e: ReferralEvent) -> EventView:
    return EventView(e.id, e.at, e.user, e.kind, e.text, dict(e.data or {}))


def _preauth_view(p: PreAuthorization) -> PreAuthView:
    return PreAuthView(p.id, p.status, p.payer_org_id, p.plan, p.auth_number, p.requested_on, p.decided_on,
                       p.expires_on, p.documents_requested, p.updated_at)  # fmt: skip


def _transition_view(t: CareTransition) -> TransitionView:
    return TransitionView(t.id, t.summary, dict(t.checklist or {}), tuple(dict(i) for i in (t.informed or ())),
                          t.updated_at)  # fmt: skip


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def _fmt_conf(confidence: float | None) -> str:
    return "-" if confidence is None else f"{confidence:.2f}"


__all__ = [
    "AppointmentView",
    "Board",
    "BoardFilter",
    "Booking",
    "BookingRefused",
    "Card",
    "EventView",
    "FilterOptions",
    "MoveRefused",
    "PreAuthView",
    "ReferralDetail",
    "ReferralNotFound",
    "ReferralService",
    "Refusal",
    "SlotView",
    "TransitionView",
    "TriageView",
]  # fmt: skip
