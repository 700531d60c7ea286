"""Cache records -> FHIR R4 for write-back (Communication, Task, Appointment): the reverse of
:mod:`sync.fhir.mappers`, and as sparing: no names, notes, letters or check-in answers leave.

References use cache ids, which are the EHR's ids for records that came from it ("the FHIR id is
the record id"); write-back sends a record before anything that refers to it. Each created
resource carries an identifier in a CareOps system so that a retried create finds the first one
(search-before-create). Datetimes in the cache are naive UTC.
"""

from __future__ import annotations

from typing import Any

from app.cache.models import Appointment, CheckIn, FollowUpPlan, Referral
from sync.fhir import systems
from sync.fhir.instants import format_instant
from sync.fhir.mappers import CONTACT_SUFFIX, EHR_SOURCE

# CheckIn.status -> Communication.status; a check-in still due (or cancelled) has nothing to report.
CHECKIN_EVENT_STATUS = {"done": "completed", "escalated": "completed", "missed": "not-done"}


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def checkin_to_communication(checkin: CheckIn, plan: FollowUpPlan, patient_id: str) -> dict[str, Any]:
    """A Communication recording that a check-in took place (or that the patient was not reached).

    * identifier: ``systems.CHECKIN`` = the check-in id (the EHR echoes it back; the mapper then
      updates this check-in instead of creating another).
    * status: done, escalated -> completed; missed -> not-done with statusReason "unreachable".
      An escalation says so in topic (``systems.CHECKIN_OUTCOME``).
    * basedOn: the CommunicationRequest the check-in came from, and the plan's CarePlan, when those
      came from the EHR. medium: the channel. sent: when the check-in was last recorded.

    Raises:
        ValueError: the check-in is neither done, escalated nor missed.
    """
    status = CHECKIN_EVENT_STATUS.get(checkin.status)
    if status is None:
        raise ValueError("only a done, escalated or missed check-in is written back")
    based_on = []
    if checkin.source == EHR_SOURCE and not checkin.id.endswith(f".{CONTACT_SUFFIX}"):
        based_on.append(_ref("CommunicationRequest", checkin.id))
    if plan.source == EHR_SOURCE:
        based_on.append(_ref("CarePlan", plan.id))
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": systems.CHECKIN, "value": checkin.id}],
        "status": status,
        "subject": _ref("Patient", patient_id),
    }
    if based_on:
        resource["basedOn"] = based_on
    medium = systems.CHANNEL_TO_MEDIUM.get(checkin.channel)
    if medium:
        resource["medium"] = [_concept(systems.PARTICIPATION_MODE, medium)]
    if status == "not-done":
        resource["statusReason"] = _concept(systems.CHECKIN_OUTCOME, "unreachable")
    else:
        resource["sent"] = format_instant(checkin.updated_at)
        if checkin.status == "escalated":
            resource["topic"] = _concept(systems.CHECKIN_OUTCOME, "escalated")
    return resource


def task_status_fields(referral: Referral) -> dict[str, Any]:
    """Task.status and businessStatus (``systems.WORKFLOW``) for a referral's board column.

    Raises:
        ValueError: the referral's status is not a board column.
    """
    task_status = systems.WORKFLOW_TO_TASK_STATUS.get(referral.status)
    if task_status is None:
        raise ValueError("not a referral board column")
    return {"status": task_status, "businessStatus": _concept(systems.WORKFLOW, referral.status)}


def new_task(referral: Referral) -> dict[str, Any]:
    """A Task for a referral the EHR has no Task for yet (where the vendor lets us create one):
    the referral's ServiceRequest in focus, its patient in ``for``, ``systems.TASK`` = the
    referral id (search-before-create)."""
    return {
        "resourceType": "Task",
        "identifier": [{"system": systems.TASK, "value": referral.id}],
        "intent": "order",
        "focus": _ref("ServiceRequest", referral.id),
        "for": _ref("Patient", referral.patient_id),
        **task_status_fields(referral),
    }


def referral_to_task_patch(referral: Referral) -> list[dict[str, Any]]:
    """A JSON Patch (RFC 6902) moving the referral's Task to its board column."""
    fields = task_status_fields(referral)
    # "add" replaces a member that exists and creates one that does not (businessStatus is optional).
    return [{"op": "add", "path": f"/{name}", "value": value} for name, value in fields.items()]


def appointment_to_fhir(appointment: Appointment) -> dict[str, Any]:
    """An Appointment booking: patient, practitioner and location as participants, the slot, the
    referral's ServiceRequest in basedOn, start and end, and ``systems.APPOINTMENT`` = the
    appointment id. An appointment that came from the EHR keeps its id (an update)."""
    participants = [("Patient", appointment.patient_id), ("Practitioner", appointment.staff_id),
                    ("Location", appointment.location_id)]
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": [{"system": systems.APPOINTMENT, "value": appointment.id}],
        "status": appointment.status,
        "start": format_instant(appointment.start),
        "participant": [{"actor": _ref(rtype, rid), "status": "accepted"} for rtype, rid in participants if rid],
    }
    if appointment.source == EHR_SOURCE:
        resource["id"] = appointment.id
    if appointment.end is not None:
        resource["end"] = format_instant(appointment.end)
    if appointment.service_line:
        resource["serviceType"] = [{"text": appointment.service_line}]
    if appointment.slot_id:
        resource["slot"] = [_ref("Slot", appointment.slot_id)]
    if appointment.referral_id:
        resource["basedOn"] = [_ref("ServiceRequest", appointment.referral_id)]
    return resource


__all__ = [
    "CHECKIN_EVENT_STATUS",
    "appointment_to_fhir",
    "checkin_to_communication",
    "new_task",
    "referral_to_task_patch",
    "task_status_fields",
]
