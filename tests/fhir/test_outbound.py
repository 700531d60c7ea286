"""Write-back builders: cache records -> FHIR R4 that validates, and that maps back to the same record."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.cache.models import Appointment, CheckIn, FollowUpPlan, Referral
from sync.fhir import systems
from sync.fhir.mappers import map_resource
from sync.fhir.outbound import appointment_to_fhir, checkin_to_communication, referral_to_task_patch, task_status_fields

from .test_mappers import by_id, dataset, every_type, map_all


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def plan(source: str = "ehr") -> FollowUpPlan:
    return FollowUpPlan(id="cp-1", source=source, patient_id="pat-1", condition="heart-failure",
                        status="active", starts_on=dt.date(2024, 4, 4))


def checkin(status: str, *, id: str = "creq-2", source: str = "ehr", channel: str = "sms") -> CheckIn:
    return CheckIn(id=id, source=source, plan_id="cp-1", due_at=dt.datetime(2024, 4, 11, 9), channel=channel,
                   status=status, answers={"breathless": "CANARY"}, note="CANARY",
                   updated_at=dt.datetime(2024, 4, 11, 9, 20, 5, 123))


def test_a_done_check_in_of_an_ehr_request() -> None:
    comm = valid(checkin_to_communication(checkin("done"), plan(), "pat-1"))
    assert comm == {
        "resourceType": "Communication",
        "identifier": [{"system": systems.CHECKIN, "value": "creq-2"}],
        "status": "completed",
        "subject": {"reference": "Patient/pat-1"},
        "basedOn": [{"reference": "CommunicationRequest/creq-2"}, {"reference": "CarePlan/cp-1"}],
        "medium": [{"coding": [{"system": systems.PARTICIPATION_MODE, "code": "SMSWRIT"}]}],
        "sent": "2024-04-11T09:20:05Z",
    }


def test_escalated_missed_and_local_check_ins() -> None:
    escalated = valid(checkin_to_communication(checkin("escalated", channel="phone"), plan(), "pat-1"))
    assert escalated["topic"] == {"coding": [{"system": systems.CHECKIN_OUTCOME, "code": "escalated"}]}
    missed = valid(checkin_to_communication(checkin("missed"), plan(), "pat-1"))
    assert missed["status"] == "not-done" and "sent" not in missed
    assert missed["statusReason"]["coding"][0]["code"] == "unreachable"
    local = valid(checkin_to_communication(checkin("done", id="a" * 32, source="local"), plan("local"), "pat-1"))
    assert "basedOn" not in local  # nothing in the EHR to point at
    contact = valid(checkin_to_communication(checkin("done", id="comm-3.contact"), plan(), "pat-1"))
    assert contact["basedOn"] == [{"reference": "CarePlan/cp-1"}]  # not a request's check-in
    for status in ("due", "cancelled"):
        with pytest.raises(ValueError):
            checkin_to_communication(checkin(status), plan(), "pat-1")


def test_the_ehr_echo_of_a_written_check_in_maps_back_onto_it() -> None:
    lookup = map_all(every_type())[0]
    for status in ("done", "missed", "escalated"):
        comm = checkin_to_communication(checkin(status), plan(), "pat-1") | {"id": "ehr-1"}
        (row,) = map_resource(comm, lookup).rows
        assert (row.id, row.update_only, row.values["status"]) == ("creq-2", True, status)
    local = checkin_to_communication(checkin("done", id="comm-3.contact"), plan(), "pat-1") | {"id": "ehr-2"}
    (row,) = map_resource(local, lookup).rows
    assert (row.id, row.update_only, row.values) == ("comm-3.contact", True, {"status": "done", "channel": "sms"})


def test_no_answers_or_notes_leave() -> None:
    for status in ("done", "missed", "escalated"):
        assert "CANARY" not in repr(checkin_to_communication(checkin(status), plan(), "pat-1"))


@pytest.mark.parametrize("column", sorted(systems.WORKFLOW_TO_TASK_STATUS))
def test_task_status_for_every_board_column(column: str) -> None:
    referral = Referral(id="sr-1", status=column)
    fields = task_status_fields(referral)
    task = copy.deepcopy(by_id(dataset(), "task-1"))
    for op in referral_to_task_patch(referral):  # RFC 6902 "add" on an object member sets it
        assert op["op"] == "add" and op["path"].count("/") == 1
        task[op["path"][1:]] = op["value"]
    assert task["status"] == fields["status"] == systems.WORKFLOW_TO_TASK_STATUS[column]
    valid(task)
    row = map_resource(task, check=False).rows[0]
    assert (row.values["status"], row.values["ehr_task_status"]) == (column, fields["status"])


def test_task_status_refuses_an_unknown_column() -> None:
    with pytest.raises(ValueError):
        task_status_fields(Referral(id="sr-1", status="lost"))


def appointment(**changes: Any) -> Appointment:
    values = {"id": "a" * 32, "source": "local", "patient_id": "pat-1", "referral_id": "sr-1",
              "staff_id": "pr-md1", "slot_id": "slot-1", "location_id": "clinic-card", "service_line": "Cardiology",
              "start": dt.datetime(2024, 5, 10, 9), "end": dt.datetime(2024, 5, 10, 9, 30), "status": "booked"}
    return Appointment(**(values | changes))


def test_an_appointment_booking() -> None:
    resource = valid(appointment_to_fhir(appointment()))
    assert resource == {
        "resourceType": "Appointment",
        "identifier": [{"system": systems.APPOINTMENT, "value": "a" * 32}],
        "status": "booked",
        "start": "2024-05-10T09:00:00Z",
        "end": "2024-05-10T09:30:00Z",
        "participant": [{"actor": {"reference": "Patient/pat-1"}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/pr-md1"}, "status": "accepted"},
                        {"actor": {"reference": "Location/clinic-card"}, "status": "accepted"}],
        "serviceType": [{"text": "Cardiology"}],
        "slot": [{"reference": "Slot/slot-1"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
    }
    lookup, mapped = map_all(dataset())
    (row,) = map_resource(resource | {"id": "a" * 32}, lookup).rows  # the EHR's copy maps back the same
    assert row.values == mapped["appt-1"].rows[0].values | {"ehr_version": None}


def test_an_ehr_appointment_keeps_its_id_and_optional_parts_stay_out() -> None:
    resource = valid(appointment_to_fhir(appointment(id="appt-1", source="ehr", staff_id=None, location_id=None,
                                                     slot_id=None, referral_id=None, end=None, service_line=None,
                                                     status="cancelled")))
    assert resource["id"] == "appt-1" and resource["status"] == "cancelled"
    assert [p["actor"]["reference"] for p in resource["participant"]] == ["Patient/pat-1"]
    assert not {"end", "slot", "basedOn", "serviceType"} & set(resource)
