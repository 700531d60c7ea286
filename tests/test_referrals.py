"""The referral workflow service on a real (encrypted) workstation cache with synthetic data:
board cards and filters, roles, audit, moves with EHR write-back, triage, pre-authorization,
booking, the care transition, intake, and the outbox behind every change."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from app.cache.models import (
    AuditEntry,
    Coverage,
    EhrWrite,
    Organization,
    OutboxEntry,
    Patient,
    PreAuthorization,
    Referral,
    ReferralEvent,
    Schedule,
    Slot,
    Staff,
)
from app.config import ReferralSettings
from app.errors import AccessDenied, ValidationError
from app.security.roles import Role
from services.context import ServiceContext
from services.referral_board import BoardFilter
from services.referrals import BookingRefused, MoveRefused, ReferralService

NOW = dt.datetime(2026, 3, 2, 12, 0)  # naive UTC, midday: the same calendar date in most time zones
DAY = dt.timedelta(days=1)


class Clock:
    """A pinned clock that still moves a millisecond per reading, as a real one would between
    two actions (timeline order depends on it)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=1)
        return self.now


@dataclass
class Seed:
    acme: str = "org-acme"  # a payer: needs pre-authorization by default
    selfpay: str = "org-selfpay"
    alice: str = "pat-alice"  # born 1980-06-15: 45 on NOW
    bob: str = "pat-bob"


def seed(ws) -> Seed:
    """A small synthetic referral office, written as a sync would (no outbox rows)."""
    ids = Seed()
    with ws.cache.unit_of_work(user="seed", origin="sync") as s:
        s.add_all([
            Organization(id=ids.acme, name="Acme Health", kind="payer", source="ehr"),
            Organization(id=ids.selfpay, name="Self Pay Plan", kind="payer", source="ehr"),
            Organization(id="org-clinic", name="Riverside Practice", kind="practice", source="ehr"),
            Patient(id=ids.alice, mrn="MRN0000101", name="Alice Synthetic", birth_date=dt.date(1980, 6, 15), source="ehr"),
            Patient(id=ids.bob, mrn="MRN0000102", name="Bob Example", birth_date=dt.date(2010, 3, 3), source="ehr"),
            Staff(id="dr-heart", name="Dr Synthetic Heart", profession="MD", specialty="Cardiology", source="ehr"),
        ])  # fmt: skip
        s.flush()  # parents first: the models declare foreign keys, not relationships
        s.add_all([
            Coverage(id="cov-bob", patient_id=ids.bob, payer_org_id=ids.acme, status="active", source="ehr"),
            Schedule(id="sch-cardio", staff_id="dr-heart", service_line="cardiology", source="ehr"),
            Schedule(id="sch-derm", service_line="Dermatology", source="ehr"),
        ])  # fmt: skip
        s.flush()
        for i in range(1, 6):  # cardiology slots on the next five days, 10:00
            start = NOW.replace(hour=10) + i * DAY
            s.add(Slot(id=f"slot-c{i}", schedule_id="sch-cardio", start=start, end=start + dt.timedelta(minutes=30),
                       status="free", source="ehr"))  # fmt: skip
        s.add(Slot(id="slot-busy", schedule_id="sch-cardio", start=NOW + 2 * DAY, end=NOW + 2 * DAY + DAY / 48,
                   status="busy", source="ehr"))  # fmt: skip
        s.add(Slot(id="slot-past", schedule_id="sch-cardio", start=NOW - DAY, end=NOW - DAY + DAY / 48,
                   status="free", source="ehr"))  # fmt: skip
        s.add(Slot(id="slot-derm", schedule_id="sch-derm", start=NOW + DAY, end=NOW + DAY + DAY / 48,
                   status="free", source="ehr"))  # fmt: skip
        referrals = [
            # id, patient, status, urgency, specialty, payer, owner, received days ago, source
            ("ref-new", ids.alice, "new", None, "Cardiology", ids.acme, None, 3, "ehr"),
            ("ref-triage", ids.alice, "triage", "urgent", "Cardiology", None, "demo-coordinator", 5, "local"),
            ("ref-preauth", ids.bob, "awaiting-preauth", "routine", "Dermatology", ids.acme, "casey2", 10, "ehr"),
            ("ref-ready", ids.bob, "ready-to-schedule", "urgent", "Cardiology", None, "demo-coordinator", 2, "ehr"),
            ("ref-local", ids.alice, "ready-to-schedule", "routine", "cardiology", None, None, 1, "local"),
            ("ref-closed", ids.bob, "closed", "routine", "Cardiology", None, None, 40, "ehr"),
        ]
        for rid, pid, status, urgency, specialty, payer, owner, days, source in referrals:
            s.add(Referral(
                id=rid, patient_id=pid, status=status, urgency=urgency, specialty=specialty, payer_org_id=payer,
                owner=owner, received_at=NOW - days * DAY, source=source, reason=f"Synthetic reason {rid}",
                letter_text="Dear colleague, synthetic letter.",
            ))  # fmt: skip
        s.flush()
        s.add(PreAuthorization(id="pa-1", referral_id="ref-preauth", payer_org_id=ids.acme, status="requested",
                               requested_on=(NOW - 9 * DAY).date(), source="local"))  # fmt: skip
    return ids


def ctx_for(ws, role: Role) -> ServiceContext:
    ws.users.ensure_demo_users()
    return ServiceContext(ws.cache, ws.audit, ws.users.demo_session(role))


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def office(ws, clock):
    seed(ws)
    return ReferralService(ctx_for(ws, Role.COORDINATOR), clock=clock)


def audit(ws, action: str) -> list[AuditEntry]:
    with ws.cache.reader() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def outbox(ws, entity: str | None = None) -> list[OutboxEntry]:
    with ws.cache.reader() as s:
        q = select(OutboxEntry).order_by(OutboxEntry.seq)
        if entity:
            q = q.where(OutboxEntry.entity == entity)
        return list(s.scalars(q))


def ehr_writes(ws) -> list[tuple[str, str]]:
    with ws.cache.reader() as s:
        return [(w.kind, w.entity_id) for w in s.scalars(select(EhrWrite).order_by(EhrWrite.id))]


def events(ws, referral_id: str) -> list[str]:
    with ws.cache.reader() as s:
        return list(s.scalars(select(ReferralEvent.kind).where(ReferralEvent.referral_id == referral_id)
                              .order_by(ReferralEvent.at, ReferralEvent.updated_at)))  # fmt: skip


# --- the board ---------------------------------------------------------------------------------


def test_board_cards_carry_what_the_board_shows(ws, office):
    board = office.board()
    assert [c.code for c in board.columns][:2] == ["new", "triage"] and len(board.columns) == 5
    cards = {c.id: c for c in board.cards}
    assert "ref-closed" not in cards and len(cards) == 5  # open referrals only
    new = cards["ref-new"]
    assert (new.patient_name, new.mrn, new.patient_age) == ("Alice Synthetic", "MRN0000101", 45)
    assert (new.urgency, new.status, new.days_waiting, new.sla_days, new.breached) == (None, "new", 3, 2, True)
    assert (new.payer_name, new.preauth_required, new.preauth_status) == ("Acme Health", True, None)
    assert cards["ref-triage"].breached is False and cards["ref-triage"].sla_days == 7
    preauth = cards["ref-preauth"]
    assert (preauth.preauth_status, preauth.patient_age, preauth.owner) == ("requested", 15, "casey2")
    assert cards["ref-ready"].preauth_required is False and cards["ref-ready"].payer_name is None
    assert board.patients_shown
    # column order, then most pressing first
    assert [c.id for c in board.in_column("ready-to-schedule")] == ["ref-ready", "ref-local"]
    assert board.counts()["ready-to-schedule"] == 2
    assert {c.id for c in office.board(BoardFilter(include_closed=True)).cards} >= {"ref-closed"}


@pytest.mark.parametrize(("filters", "expected"), [
    (BoardFilter(specialty="CARDIOLOGY"), {"ref-new", "ref-triage", "ref-ready", "ref-local"}),
    (BoardFilter(urgency="untriaged"), {"ref-new"}),
    (BoardFilter(urgency="routine"), {"ref-preauth", "ref-local"}),
    (BoardFilter(owner="casey2"), {"ref-preauth"}),
    (BoardFilter(owner=""), {"ref-new", "ref-local"}),
    (BoardFilter(mine=True), {"ref-triage", "ref-ready"}),
    (BoardFilter(payer="org-acme"), {"ref-new", "ref-preauth"}),
    (BoardFilter(breached_only=True), {"ref-new"}),
    (BoardFilter(text="alice"), {"ref-new", "ref-triage", "ref-local"}),
    (BoardFilter(text="MRN0000102"), {"ref-preauth", "ref-ready"}),
    (BoardFilter(text="derma"), {"ref-preauth"}),
    (BoardFilter(text="reason ref-ready"), {"ref-ready"}),
    (BoardFilter(text="100%_"), set()),
    (BoardFilter(specialty="cardiology", urgency="urgent", mine=True), {"ref-triage", "ref-ready"}),
])  # fmt: skip
def test_board_filters(office, filters, expected):
    assert {c.id for c in office.board(filters).cards} == expected


def test_filter_options(office):
    options = office.filter_options()
    assert options.specialties == ("Cardiology", "Dermatology")
    assert options.owners == ("casey2", "demo-coordinator")
    assert options.payers == (("org-acme", "Acme Health"),)
    assert "untriaged" in options.urgencies


def test_board_and_detail_are_audited_before_they_are_returned(ws, office):
    board = office.board()
    entry = audit(ws, "referral.board")[-1]
    assert sorted(entry.record_ids) == sorted(c.id for c in board.cards) and entry.entity == "referrals"
    assert "Alice" not in entry.detail  # ids, never PHI
    detail = office.detail("ref-new")
    assert audit(ws, "referral.read")[-1].record_ids == ["ref-new"]
    assert detail.letter_text == "Dear colleague, synthetic letter." and detail.patient.name == "Alice Synthetic"
    assert detail.allowed_moves == ("triage", "closed")


# --- roles -------------------------------------------------------------------------------------


def test_an_analyst_sees_the_flow_but_not_the_people_and_cannot_move(ws, office, clock):
    analyst = ReferralService(ctx_for(ws, Role.ANALYST), clock=clock)
    board = analyst.board()
    card = next(c for c in board.cards if c.id == "ref-new")
    assert (card.patient_name, card.mrn, card.patient_age) == (None, None, None) and not board.patients_shown
    assert card.days_waiting == 3 and card.breached
    assert analyst.board(BoardFilter(text="alice")).cards == ()  # cannot find people by name either
    assert analyst.detail("ref-new").patient is None
    for attempt in (
        lambda: analyst.move("ref-new", "triage"),
        lambda: analyst.add_note("ref-new", "x"),
        lambda: analyst.decide_urgency("ref-new", "urgent"),
        lambda: analyst.book("ref-ready", "slot-c1"),
        lambda: analyst.create_from_intake({"specialty": "Cardiology", "patient_id": "pat-alice"}),
    ):
        with pytest.raises(AccessDenied):
            attempt()
    assert events(ws, "ref-new") == [] and outbox(ws, "referrals") == []


def test_roles_without_referral_access_are_refused(ws, office, clock):
    nurse = ReferralService(ctx_for(ws, Role.CHARGE_NURSE), clock=clock)
    with pytest.raises(AccessDenied):
        nurse.board()
    with pytest.raises(AccessDenied):
        nurse.detail("ref-new")


# --- moves ------------------------------------------------------------------------------------


def test_moving_an_ehr_referral_writes_status_event_outbox_audit_and_ehr_write_together(ws, office):
    card = office.move("ref-new", "triage")
    assert card.status == "triage"
    assert events(ws, "ref-new") == ["moved"]
    assert ("task-status", "ref-new") in ehr_writes(ws)
    assert [e.entity_id for e in outbox(ws, "referrals")] == ["ref-new"]
    assert outbox(ws, "referrals")[0].changed_fields == ["status"]
    assert len(outbox(ws, "referral_events")) == 1
    assert audit(ws, "referral.move")[-1].detail == "new -> triage"


def test_a_local_referral_queues_no_ehr_write(ws, office):
    office.move("ref-triage", "closed", reason="duplicate of another referral")
    assert ehr_writes(ws) == []
    detail = office.detail("ref-triage")
    assert detail.closed_reason == "duplicate of another referral" and detail.card.status == "closed"
    assert detail.events[0].text == "duplicate of another referral" and detail.events[0].data["to"] == "closed"
    # reopening needs a reason too, and clears the closing reason
    with pytest.raises(MoveRefused, match="Reopening needs a reason"):
        office.move("ref-triage", "triage")
    office.move("ref-triage", "triage", reason="not a duplicate after all")
    assert office.detail("ref-triage").closed_reason is None


@pytest.mark.parametrize(("referral", "to", "reason", "message"), [
    ("ref-new", "ready-to-schedule", None, "An untriaged referral cannot skip Triage"),
    ("ref-preauth", "ready-to-schedule", None, "Pre-authorization is still pending"),
    ("ref-ready", "scheduled", None, "Book an appointment before moving to Scheduled"),
    ("ref-ready", "closed", None, "Closing needs a reason"),
    ("ref-closed", "scheduled", None, "Reopen a closed referral"),
    ("ref-ready", "completed", None, "Only a referral in Scheduled can be completed"),
])  # fmt: skip
def test_refused_moves_change_nothing(ws, office, referral, to, reason, message):
    assert office.can_move(referral, to, reason=reason).reason.startswith(message)
    card = next(c for c in office.board(BoardFilter(include_closed=True)).cards if c.id == referral)
    assert office.can_move(card, to, reason=reason).reason.startswith(message)
    with pytest.raises(MoveRefused) as refused:
        office.move(referral, to, reason=reason)
    assert refused.value.reason.startswith(message) and refused.value.user_text().startswith(message)
    assert outbox(ws) == [] and ehr_writes(ws) == [] and audit(ws, "referral.move") == []


# --- triage ------------------------------------------------------------------------------------


def test_a_human_queue_suggestion_never_sets_the_urgency(ws, office):
    card = office.record_triage_suggestion("ref-new", {
        "urgency": "emergent", "confidence": 0.55, "queue": "human", "reasons": ["chest pain on exertion"],
        "model": "triage-lr-1",
    })  # fmt: skip
    assert (card.urgency, card.suggested_urgency, card.triage_queue) == (None, "emergent", "human")
    entry = audit(ws, "triage.suggest")[-1]
    assert entry.record_ids == ["ref-new"] and "applied=no" in entry.detail and "chest" not in entry.detail
    detail = office.detail("ref-new")
    assert detail.triage.reasons == ("chest pain on exertion",) and detail.events[0].kind == "triage-suggested"


def test_an_auto_queue_suggestion_sets_the_urgency_of_an_untriaged_referral_only(ws, office, clock):
    card = office.record_triage_suggestion("ref-new", {"urgency": "routine", "confidence": 0.97, "queue": "auto"})
    assert (card.urgency, card.urgency_source) == ("routine", "model")
    card = office.record_triage_suggestion("ref-triage", {"urgency": "routine", "confidence": 0.99, "queue": "auto"})
    assert card.urgency == "urgent"  # already decided: kept
    off = ReferralService(ctx_for(ws, Role.COORDINATOR), ReferralSettings(auto_accept_triage=False), clock=clock)
    with ws.cache.unit_of_work(user="seed", origin="sync") as s:
        s.get(Referral, "ref-new").urgency = None
    assert off.record_triage_suggestion("ref-new", {"urgency": "urgent", "queue": "auto"}).urgency is None
    with pytest.raises(ValidationError):
        office.record_triage_suggestion("ref-new", {"urgency": "soon", "queue": "auto"})
    with pytest.raises(ValidationError):
        office.record_triage_suggestion("ref-new", {"urgency": "urgent", "queue": "auto", "confidence": 1.5})


def test_deciding_the_urgency_records_what_it_agreed_or_disagreed_with(ws, office):
    office.record_triage_suggestion("ref-new", {"urgency": "routine", "confidence": 0.62, "queue": "human",
                                                "model": "triage-lr-1"})  # fmt: skip
    with pytest.raises(ValidationError, match="reason for deciding differently"):
        office.decide_urgency("ref-new", "urgent")
    card = office.decide_urgency("ref-new", "urgent", "referrer phoned: symptoms worse")
    assert (card.urgency, card.urgency_source) == ("urgent", "coordinator")
    entry = audit(ws, "triage.decide")[-1]
    assert "decided=urgent" in entry.detail and "suggested=routine" in entry.detail
    assert "disagreed" in entry.detail and "model=triage-lr-1" in entry.detail and "phoned" not in entry.detail
    office.move("ref-new", "triage")
    assert office.can_move("ref-new", "awaiting-preauth") is None
    agreed = office.decide_urgency("ref-preauth", "routine")  # no suggestion on record: no reason needed
    assert agreed.urgency == "routine" and "no suggestion" in audit(ws, "triage.decide")[-1].detail
    with pytest.raises(ValidationError, match="already decided"):
        office.decide_urgency("ref-preauth", "emergent")


# --- pre-authorization -------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"status": "approved", "requested_on": "2026-02-10", "decided_on": "2026-02-01", "auth_number": "A1"},
     "decision date is before the request date"),
    ({"status": "approved", "requested_on": "2026-02-10", "decided_on": "2026-02-12"}, "authorization number"),
    ({"status": "approved", "requested_on": "2026-02-10", "decided_on": "2026-02-12", "auth_number": "A1",
          "expires_on": "2026-02-11"}, "expires before it was decided"),
    ({"status": "denied", "requested_on": "2026-02-10"}, "date of the payer's decision"),
    ({"status": "requested", "requested_on": "2026-04-01"}, "in the future"),
    ({"status": "appeal", "requested_on": "2026-02-10"}, "An appeal follows a denial"),
    ({"status": "maybe"}, "must be one of"),
    ({"requested_on": "10/02/2026"}, "not a date"),
    ({"colour": "blue"}, "Unknown pre-authorization fields: colour"),
])  # fmt: skip
def test_preauth_validation(ws, office, fields, message):
    with pytest.raises(ValidationError, match=message):
        office.save_preauth("ref-new", **fields)
    assert outbox(ws) == []


def test_preauth_decision_unblocks_scheduling(ws, office):
    view = office.save_preauth("ref-preauth", status="approved", decided_on="2026-02-25", auth_number="AUTH-77",
                               expires_on=dt.date(2026, 5, 31), documents_requested="clinic notes")  # fmt: skip
    assert (view.status, view.requested_on, view.auth_number) == ("approved", dt.date(2026, 2, 21), "AUTH-77")
    assert office.move("ref-preauth", "ready-to-schedule").status == "ready-to-schedule"
    assert [e.changed_fields for e in outbox(ws, "preauthorizations")] == [
        ["auth_number", "decided_on", "documents_requested", "expires_on", "status"]]
    assert audit(ws, "referral.preauth")[-1].detail == "requested -> approved"
    # a denial then an appeal on another referral
    office.move("ref-new", "triage")
    office.decide_urgency("ref-new", "urgent")
    office.move("ref-new", "awaiting-preauth")
    office.save_preauth("ref-new", status="denied", requested_on="2026-02-26", decided_on="2026-02-27")
    assert "denied" in office.can_move("ref-new", "ready-to-schedule").reason
    office.save_preauth("ref-new", status="appeal")
    assert office.can_move("ref-new", "ready-to-schedule").code == "preauth-pending"
    office.save_preauth("ref-new", status="not-required")  # the payer said none is needed after all
    assert office.can_move("ref-new", "ready-to-schedule") is None


# --- scheduling --------------------------------------------------------------------------------


def test_open_slots_are_free_future_slots_of_the_specialty(office):
    slots = office.open_slots("ref-ready", start=NOW - 5 * DAY, end=NOW + 30 * DAY)
    assert [s.id for s in slots] == ["slot-c1", "slot-c2", "slot-c3", "slot-c4", "slot-c5"]
    assert slots[0].staff_name == "Dr Synthetic Heart"
    assert [s.id for s in office.open_slots("ref-preauth", start=NOW, end=NOW + 30 * DAY)] == ["slot-derm"]
    assert [s.id for s in office.open_slots("ref-ready", start=NOW, end=NOW + DAY)] == ["slot-c1"]


def test_book_reschedule_cancel(ws, office):
    booking = office.book("ref-ready", "slot-c1")
    assert booking.card.status == "scheduled" and booking.appointment.status == "booked"
    assert booking.card.appointment_at == booking.appointment.start == NOW.replace(hour=10) + DAY
    appointment = booking.appointment.id
    assert ("appointment", appointment) in ehr_writes(ws) and ("task-status", "ref-ready") in ehr_writes(ws)
    assert events(ws, "ref-ready") == ["booked", "moved"]
    with pytest.raises(BookingRefused, match="reschedule it instead"):
        office.book("ref-ready", "slot-c2")
    booking = office.reschedule(appointment, "slot-c3", reason="patient asked for a later day")
    assert booking.appointment.slot_id == "slot-c3" and booking.card.status == "scheduled"
    with ws.cache.reader() as s:
        assert (s.get(Slot, "slot-c1").status, s.get(Slot, "slot-c3").status) == ("free", "busy")
    with pytest.raises(ValidationError, match="reason for cancelling"):
        office.cancel(appointment, "  ")
    booking = office.cancel(appointment, "patient unwell")
    assert booking.appointment.status == "cancelled" and booking.card.status == "ready-to-schedule"
    with ws.cache.reader() as s:
        assert s.get(Slot, "slot-c3").status == "free"
    assert events(ws, "ref-ready") == ["booked", "moved", "rescheduled", "cancelled", "moved"]
    detail = office.detail("ref-ready")
    assert detail.events[0].data == {"from": "scheduled", "to": "ready-to-schedule", "cause": "cancelled"}
    assert detail.appointments[0].status == "cancelled" and appointment in detail.ehr_appointments
    assert detail.ehr_task is not None and detail.ehr_task.status == "pending"
    for action in ("referral.book", "referral.reschedule", "referral.cancel"):
        assert audit(ws, action)[-1].record_ids == ["ref-ready"]


def test_booking_refusals(ws, office):
    with pytest.raises(BookingRefused, match="taken meanwhile"):
        office.book("ref-ready", "slot-busy")
    with pytest.raises(BookingRefused, match="in the past"):
        office.book("ref-ready", "slot-past")
    with pytest.raises(BookingRefused, match="another service line"):
        office.book("ref-ready", "slot-derm")
    with pytest.raises(MoveRefused, match="Pre-authorization is still pending"):
        office.book("ref-preauth", "slot-derm")
    with pytest.raises(MoveRefused, match="cannot skip Triage"):
        office.book("ref-new", "slot-c1")
    assert outbox(ws) == [] and ehr_writes(ws) == []


def test_a_slot_taken_by_another_workstation_meanwhile(ws, office):
    slots = office.open_slots("ref-ready", start=NOW, end=NOW + 30 * DAY)
    with ws.cache.unit_of_work(user="sync", origin="sync") as s:  # a sync pulls someone else's booking
        s.get(Slot, slots[0].id).status = "busy"
    with pytest.raises(BookingRefused, match="taken meanwhile"):
        office.book("ref-ready", slots[0].id)
    assert office.book("ref-ready", slots[1].id).card.status == "scheduled"


def test_no_show_and_completion(ws, office, clock):
    appointment = office.book("ref-local", "slot-c2").appointment
    assert ehr_writes(ws) == []  # a local referral's booking stays with the central service
    with pytest.raises(BookingRefused, match="after the appointment"):
        office.no_show(appointment.id)
    assert office.can_move("ref-local", "completed").reason == "The appointment has not taken place yet"
    clock.now = appointment.start + dt.timedelta(hours=1)
    booking = office.no_show(appointment.id)
    assert (booking.appointment.status, booking.card.status) == ("noshow", "ready-to-schedule")
    assert events(ws, "ref-local")[-2:] == ["no-show", "moved"]
    again = office.book("ref-local", "slot-c4").appointment
    clock.now = again.start + dt.timedelta(hours=1)
    assert office.move("ref-local", "completed").status == "completed"


# --- care transition, intake -------------------------------------------------------------------


def test_care_transition(ws, office):
    view = office.save_transition(
        "ref-ready", "Seen in clinic; follow-up in 6 weeks.",
        {"Letter sent to referrer": True, "Patient given instructions": False},
        [{"who": "referring GP", "how": "letter", "at": "2026-03-01T09:30:00"}],
    )  # fmt: skip
    assert view.checklist == {"Letter sent to referrer": True, "Patient given instructions": False}
    assert view.informed == ({"who": "referring GP", "how": "letter", "at": "2026-03-01T09:30:00"},)
    again = office.save_transition("ref-ready", "Updated summary.", {"Letter sent to referrer": True}, [])
    assert again.id == view.id  # one transition record per referral
    detail = office.detail("ref-ready")
    assert detail.transition.summary == "Updated summary." and detail.events[0].kind == "transition"
    assert len(outbox(ws, "care_transitions")) == 2
    for bad in ({"x": "yes"}, ["x"]):
        with pytest.raises(ValidationError):
            office.save_transition("ref-ready", None, bad, [])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="in the future"):
        office.save_transition("ref-ready", None, {}, [{"who": "GP", "how": "phone", "at": NOW + 2 * DAY}])
    with pytest.raises(ValidationError, match="Unknown fields"):
        office.save_transition("ref-ready", None, {}, [{"who": "GP", "how": "phone", "at": NOW, "note": "x"}])


def test_create_from_intake_with_a_new_patient(ws, office):
    card = office.create_from_intake({
        "patient": {"name": "Carol Synthetic", "birth_date": "1990-01-20", "mrn": "MRN0000999"},
        "specialty": "Cardiology", "reason": "palpitations", "letter_text": "Dear colleague ...",
        "referring_org_id": "org-clinic", "received_at": "2026-03-01T08:00:00+00:00",
    })  # fmt: skip
    assert (card.status, card.urgency, card.source, card.owner) == ("new", None, "local", "demo-coordinator")
    assert (card.patient_name, card.patient_age, card.days_waiting) == ("Carol Synthetic", 36, 1)
    assert {e.entity for e in outbox(ws)} == {"patients", "referrals", "referral_events"}
    assert audit(ws, "referral.create")[-1].record_ids == [card.id]
    assert events(ws, card.id) == ["created"] and ehr_writes(ws) == []
    # the same person again by MRN is the same patient; a different one with that MRN is refused
    again = office.create_from_intake({"patient": {"name": "carol synthetic ", "birth_date": dt.date(1990, 1, 20),
                                                   "mrn": "MRN0000999"}, "specialty": "Dermatology"})  # fmt: skip
    assert again.patient_id == card.patient_id
    with pytest.raises(ValidationError, match="another name or birth date"):
        office.create_from_intake({"patient": {"name": "Dan Other", "birth_date": "1990-01-20", "mrn": "MRN0000999"},
                                   "specialty": "Cardiology"})  # fmt: skip
    with ws.cache.reader() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 3


def test_create_from_intake_for_an_existing_patient_takes_the_payer_from_coverage(office):
    card = office.create_from_intake({"patient_id": "pat-bob", "specialty": "Cardiology", "urgency": "urgent",
                                      "owner": None})  # fmt: skip
    assert (card.payer_id, card.preauth_required, card.owner, card.urgency) == ("org-acme", True, None, "urgent")
    for draft, message in (
        ({"patient_id": "pat-bob"}, "specialty is needed"),
        ({"patient_id": "nobody", "specialty": "Cardiology"}, "not known here"),
        ({"patient_id": "pat-bob", "specialty": "Cardiology", "diagnosis": "x"}, "Unknown intake fields: diagnosis"),
        ({"patient": {"name": "X Y", "mrn": "M1"}, "specialty": "Cardiology"}, "birth date is needed"),
        ({"patient_id": "pat-bob", "specialty": "Cardiology", "urgency": "soon"}, "Urgency must be"),
        ({"patient_id": "pat-bob", "specialty": "Cardiology", "payer_org_id": "org-none"}, "payer is not known"),
    ):
        with pytest.raises(ValidationError, match=message):
            office.create_from_intake(draft)


def test_reviewed_referrer_names_are_linked_and_plan_and_member_id_kept_as_coverage(ws, office):
    card = office.create_from_intake({
        "patient": {"name": "Erin Synthetic", "birth_date": "1975-05-05", "mrn": "MRN0000998"},
        "specialty": "Cardiology", "payer_org_id": "org-acme", "plan": "Acme Silver", "member_id": "AC-55102",
        "referring_clinician": "dr synthetic heart", "referring_org": "Riverside Practice",
    })  # fmt: skip
    with ws.cache.reader() as s:
        referral = s.get(Referral, card.id)
        assert (referral.referring_staff_id, referral.referring_org_id) == ("dr-heart", "org-clinic")
        coverage = s.scalars(select(Coverage).where(Coverage.patient_id == card.patient_id)).one()
        assert (coverage.payer_org_id, coverage.plan, coverage.member_id) == ("org-acme", "Acme Silver", "AC-55102")
    other = office.create_from_intake({"patient_id": card.patient_id, "specialty": "Dermatology",
                                       "referring_clinician": "Dr Nobody Known"})  # fmt: skip
    detail = office.detail(other.id)
    assert detail.referring_staff_name is None
    assert "Dr Nobody Known" in (detail.events[-1].text or "")  # kept on the record, not dropped


# --- offline-first -----------------------------------------------------------------------------


def test_every_change_is_in_the_outbox(ws, office, clock):
    office.move("ref-new", "triage")
    office.add_note("ref-new", "called the referrer")
    office.assign("ref-new", "casey2")
    office.record_triage_suggestion("ref-new", {"urgency": "urgent", "queue": "human"})
    office.decide_urgency("ref-new", "urgent")
    office.save_preauth("ref-new", status="requested", requested_on="2026-03-01")
    booking = office.book("ref-ready", "slot-c1")
    office.reschedule(booking.appointment.id, "slot-c2")
    office.cancel(booking.appointment.id, "clinic closed")
    office.save_transition("ref-ready", None, {"done": True}, [])
    office.create_from_intake({"patient_id": "pat-bob", "specialty": "Cardiology"})
    entities = [e.entity for e in outbox(ws)]
    # one event per action, and one more for each move a booking or cancellation caused
    assert entities.count("referral_events") == 13
    assert {"referrals", "preauthorizations", "appointments", "slots", "care_transitions"} <= set(entities)
    assert all(e.status == "pending" and e.user == "demo-coordinator" for e in outbox(ws))
    with ws.cache.reader() as s:
        assert s.scalar(select(func.count()).select_from(Referral).where(Referral.dirty.is_(True))) == 3
    # the note is PHI: it is in the event's text, never in the audit detail
    assert all("referrer" not in a.detail for a in audit(ws, "referral.note"))


def test_detail_timeline_is_newest_first(office):
    office.add_note("ref-new", "first")
    office.add_note("ref-new", "second")
    office.move("ref-new", "triage")
    detail = office.detail("ref-new")
    assert [e.kind for e in detail.events] == ["moved", "note", "note"]
    assert [e.text for e in detail.events[1:]] == ["second", "first"]


# --- scale -------------------------------------------------------------------------------------


def test_board_query_for_5000_referrals(ws, clock, capsys):
    """Prints the timing (not asserted: shared CI cores vary)."""
    seed(ws)
    statuses = ["new", "triage", "awaiting-preauth", "ready-to-schedule", "scheduled", "completed", "closed"]
    with ws.cache.unit_of_work(user="seed", origin="sync") as s:
        s.add_all(Patient(id=f"p{i}", mrn=f"MRN{i:07d}", name=f"Synthetic Person {i}",
                          birth_date=dt.date(1940 + i % 60, 1 + i % 12, 1 + i % 28), source="ehr")
                  for i in range(2000))  # fmt: skip
        s.flush()
        s.add_all(Referral(
            id=f"r{i}", patient_id=f"p{i % 2000}", status=statuses[i % 6], specialty=("Cardiology", "Dermatology")[i % 2],
            urgency=(None, "routine", "urgent", "emergent")[i % 4], payer_org_id="org-acme" if i % 3 else None,
            owner=("casey2", None)[i % 2], received_at=NOW - (i % 90) * DAY, source="ehr",
        ) for i in range(5000))  # fmt: skip
        s.flush()
        s.add_all(PreAuthorization(referral_id=f"r{i}", status="requested", requested_on=dt.date(2026, 2, 1),
                                   source="ehr") for i in range(2, 5000, 6))  # fmt: skip
    office = ReferralService(ctx_for(ws, Role.COORDINATOR), clock=clock)
    from services.referral_board import query_cards
    from services.referral_records import local_date

    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        with ws.cache.reader() as s:
            cards = query_cards(s, office.workflow, BoardFilter(), user="demo-coordinator", now=NOW,
                                today=local_date(NOW), with_patients=True)  # fmt: skip
        timings.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    board = office.board()
    full = time.perf_counter() - t0
    assert len(cards) == len(board.cards) > 4000
    with capsys.disabled():
        print(f"\n[referral board] {len(cards)} cards: query+cards best {min(timings) * 1000:.0f} ms, "
              f"board() with audit {full * 1000:.0f} ms")  # fmt: skip


def test_the_local_model_suggests_from_the_referrals_own_text(ws, office):
    with ws.cache.unit_of_work(user="seed", origin="sync") as s:
        referral = s.get(Referral, "ref-new")
        referral.reason = "Crushing central chest pain at rest for 40 minutes, sweaty, BP 84/50"
        referral.letter_text = None
    card = office.suggest_urgency("ref-new")
    assert card.suggested_urgency == "emergent" and card.triage_queue == "human"  # a red flag: a person decides
    assert card.urgency is None
    entry = audit(ws, "triage.suggest")[-1]
    assert "queue=human" in entry.detail and "chest" not in entry.detail.lower()
