"""Booking a referral's appointment: free slots, book, reschedule, cancel, no-show.

Each change runs inside the caller's unit of work (``services.referrals.ReferralService`` opens it,
checks the role and writes the audit entry): the slot, the appointment, the timeline event, the
referral's move and the EHR write-back commit together or not at all.

Appointments use FHIR Appointment.status codes (booked, cancelled, noshow, fulfilled ...), since
write-back sends the status as it is. Slots: free, busy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache.models import Appointment, Location, Referral, Schedule, Slot, Staff
from app.errors import KnownError
from services import referral_workflow as wf
from services.ehr_writeback import queue_ehr_write
from services.referral_records import (
    BOOKED,
    EHR,
    add_event,
    apply_move,
    load_facts,
    local_date,
)

MAX_SLOTS = 500


class BookingRefused(KnownError):
    """A booking change that cannot be made as asked (the slot went, it is in the past ...)."""

    remedy = "Choose another slot, or refresh the list of free slots."


@dataclass(frozen=True)
class SlotView:
    id: str
    schedule_id: str
    start: dt.datetime  # naive UTC
    end: dt.datetime
    service_line: str | None
    staff_id: str | None
    staff_name: str | None
    location_id: str | None
    location_name: str | None


@dataclass(frozen=True)
class AppointmentView:
    id: str
    referral_id: str | None
    patient_id: str
    slot_id: str | None
    start: dt.datetime
    end: dt.datetime | None
    status: str  # booked, cancelled, noshow, fulfilled, ...
    service_line: str | None
    staff_id: str | None
    location_id: str | None
    source: str


def appointment_view(a: Appointment) -> AppointmentView:
    return AppointmentView(a.id, a.referral_id, a.patient_id, a.slot_id, a.start, a.end, a.status,
                           a.service_line, a.staff_id, a.location_id, a.source)  # fmt: skip


def same_service(service_line: str | None, specialty: str) -> bool:
    return (service_line or "").strip().casefold() == specialty.strip().casefold()


def find_open_slots(
    s: Session, specialty: str, start: dt.datetime, end: dt.datetime, now: dt.datetime, limit: int = MAX_SLOTS
) -> list[SlotView]:
    """Free slots of schedules whose service line is ``specialty`` (case-insensitive), from
    ``start`` (never before now) to ``end``, earliest first."""
    q = (
        select(Slot, Schedule.service_line, Schedule.staff_id, Staff.name, Schedule.location_id, Location.name)
        .join(Schedule, Schedule.id == Slot.schedule_id)
        .outerjoin(Staff, Staff.id == Schedule.staff_id)
        .outerjoin(Location, Location.id == Schedule.location_id)
        .where(func.lower(func.trim(Schedule.service_line)) == specialty.strip().lower())
        .where(Slot.status == "free", Slot.start >= max(start, now), Slot.start < end)
        .order_by(Slot.start, Slot.id)
        .limit(min(limit, MAX_SLOTS))
    )  # fmt: skip
    return [
        SlotView(slot.id, slot.schedule_id, slot.start, slot.end, line, staff_id, staff_name, loc_id, loc_name)
        for slot, line, staff_id, staff_name, loc_id, loc_name in s.execute(q)
    ]


def _free_slot(s: Session, slot_id: str, referral: Referral, now: dt.datetime) -> tuple[Slot, Schedule | None]:
    slot = s.get(Slot, slot_id)
    if slot is None:
        raise BookingRefused("This slot no longer exists.")
    if slot.status != "free":
        raise BookingRefused("This slot was taken meanwhile: choose another one.")
    if slot.start <= now:
        raise BookingRefused("This slot is in the past: choose a later one.")
    schedule = s.get(Schedule, slot.schedule_id)
    line = schedule.service_line if schedule else None
    if line and referral.specialty and not same_service(line, referral.specialty):
        raise BookingRefused("This slot belongs to another service line than the referral's specialty.")
    return slot, schedule


def _queue_appointment(s: Session, appointment: Appointment, referral: Referral, user: str) -> None:
    # The EHR hears about bookings of its own referrals and appointments; a local referral's
    # patient and request may be unknown to it, so those stay with the central service.
    if appointment.source == EHR or referral.source == EHR:
        queue_ehr_write(s, kind="appointment", entity_id=appointment.id, user=user)


def _release(s: Session, slot_id: str | None, now: dt.datetime) -> None:
    """Give a future slot back; a past one stays as it was (the time was used, or lost)."""
    slot = s.get(Slot, slot_id) if slot_id else None
    if slot is not None and slot.status == "busy" and slot.start > now:
        slot.status = "free"


def book(
    s: Session, workflow: wf.Workflow, referral: Referral, slot_id: str, user: str, now: dt.datetime
) -> Appointment:
    """Book ``slot_id`` for the referral and move it to Scheduled.

    Raises:
        BookingRefused: the slot is gone, taken, past, or of another service; the referral already
            has a booked appointment.
        MoveRefused: the referral may not go to Scheduled (untriaged, pre-authorization ...).
    """
    facts = load_facts(s, referral, workflow, now)
    if facts.booked_appointments:
        raise BookingRefused("The referral already has a booked appointment: reschedule it instead.",
                             remedy="Use Reschedule on the booked appointment.")  # fmt: skip
    if referral.status != wf.SCHEDULED:
        # Booking is "move to Scheduled with an appointment": the same guards apply.
        refusal = workflow.check_move(dataclasses.replace(facts, booked_appointments=1), wf.SCHEDULED,
                                      today=local_date(now))  # fmt: skip
        if refusal:
            raise wf.MoveRefused(refusal)
    slot, schedule = _free_slot(s, slot_id, referral, now)
    slot.status = "busy"
    appointment = Appointment(
        patient_id=referral.patient_id, referral_id=referral.id, slot_id=slot.id,
        staff_id=schedule.staff_id if schedule else None,
        location_id=schedule.location_id if schedule else None,
        service_line=(schedule.service_line if schedule else None) or referral.specialty,
        start=slot.start, end=slot.end, status=BOOKED,
    )  # fmt: skip
    s.add(appointment)
    s.flush()
    add_event(s, referral.id, user, "booked", now,
              data={"appointment_id": appointment.id, "slot_id": slot.id, "start": slot.start.isoformat()})  # fmt: skip
    _queue_appointment(s, appointment, referral, user)
    if referral.status != wf.SCHEDULED:
        apply_move(s, referral, wf.SCHEDULED, user, now, cause="booked")
    return appointment


def reschedule(
    s: Session, workflow: wf.Workflow, appointment: Appointment, referral: Referral, new_slot_id: str,
    user: str, now: dt.datetime, reason: str | None = None,
) -> Appointment:  # fmt: skip
    """Move a booked appointment to another free slot, giving the old one back."""
    if appointment.status != BOOKED:
        raise BookingRefused("Only a booked appointment can be rescheduled.", remedy="Book a new appointment.")
    if appointment.slot_id == new_slot_id:
        raise BookingRefused("The appointment is already in this slot.")
    slot, schedule = _free_slot(s, new_slot_id, referral, now)
    old_slot, old_start = appointment.slot_id, appointment.start
    _release(s, old_slot, now)
    slot.status = "busy"
    appointment.slot_id = slot.id
    appointment.start, appointment.end = slot.start, slot.end
    if schedule is not None:
        appointment.staff_id = schedule.staff_id
        appointment.location_id = schedule.location_id
        appointment.service_line = schedule.service_line or appointment.service_line
    add_event(s, referral.id, user, "rescheduled", now, text=reason, data={
        "appointment_id": appointment.id, "from_slot_id": old_slot, "to_slot_id": slot.id,
        "from": old_start.isoformat(), "to": slot.start.isoformat(),
    })  # fmt: skip
    _queue_appointment(s, appointment, referral, user)
    return appointment


def cancel(
    s: Session, workflow: wf.Workflow, appointment: Appointment, referral: Referral, reason: str,
    user: str, now: dt.datetime,
) -> Appointment:  # fmt: skip
    if appointment.status != BOOKED:
        raise BookingRefused("Only a booked appointment can be cancelled.", remedy="")
    appointment.status = "cancelled"
    _release(s, appointment.slot_id, now)
    add_event(s, referral.id, user, "cancelled", now, text=reason,
              data={"appointment_id": appointment.id, "start": appointment.start.isoformat()})  # fmt: skip
    _queue_appointment(s, appointment, referral, user)
    _back_to_scheduling(s, workflow, referral, user, now, cause="cancelled")
    return appointment


def no_show(
    s: Session, workflow: wf.Workflow, appointment: Appointment, referral: Referral, user: str, now: dt.datetime
) -> Appointment:
    if appointment.status != BOOKED:
        raise BookingRefused("Only a booked appointment can be marked as a no-show.", remedy="")
    if appointment.start > now:
        raise BookingRefused("A no-show can be recorded only after the appointment's start time.", remedy="")
    appointment.status = "noshow"
    add_event(s, referral.id, user, "no-show", now,
              data={"appointment_id": appointment.id, "start": appointment.start.isoformat()})  # fmt: skip
    _queue_appointment(s, appointment, referral, user)
    _back_to_scheduling(s, workflow, referral, user, now, cause="no-show")
    return appointment


def _back_to_scheduling(
    s: Session, workflow: wf.Workflow, referral: Referral, user: str, now: dt.datetime, *, cause: str
) -> None:
    """A Scheduled referral whose last booked appointment went returns to Ready to schedule, or
    to Awaiting pre-auth when its pre-authorization no longer allows scheduling."""
    if referral.status != wf.SCHEDULED:
        return
    s.flush()
    facts = load_facts(s, referral, workflow, now)
    for target in (wf.READY, wf.AWAITING_PREAUTH):
        if workflow.check_move(facts, target, today=local_date(now)) is None:
            apply_move(s, referral, target, user, now, cause=cause)
            return
