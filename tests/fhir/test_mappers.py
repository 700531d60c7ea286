"""FHIR R4 -> record mappers, on small synthetic resources (fake names only)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.fhir import systems
from sync.fhir.mappers import MAPPERS, InboundError, MappedResource, MemoryLookup, map_resource
from sync.fhir.parsing import parse_resource


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def dataset() -> list[dict[str, Any]]:
    """One small, consistent set of every supported resource type, in dependency order."""
    meta = {"versionId": "1", "lastUpdated": "2024-05-01T08:00:00Z"}
    return [
        {"resourceType": "Organization", "id": "org-hosp", "meta": meta, "name": "Example General",
         "type": [coding(systems.ORG_TYPE, "prov")]},
        {"resourceType": "Organization", "id": "org-pay", "meta": meta, "name": "Acme Health Plan",
         "type": [coding(systems.ORG_TYPE, "pay")]},
        {"resourceType": "Organization", "id": "org-practice", "meta": meta, "name": "Elm Street Practice",
         "type": [coding(systems.ORG_TYPE, "prov")]},
        {"resourceType": "Location", "id": "ward-4w", "meta": meta, "status": "active", "name": "4 West",
         "physicalType": coding(systems.LOCATION_PHYSICAL, "wa"),
         "type": [coding(systems.UNIT_KIND, "med-surg")], "managingOrganization": ref("Organization/org-hosp")},
        {"resourceType": "Location", "id": "room-4w-01", "meta": meta, "name": "4W-01",
         "physicalType": coding(systems.LOCATION_PHYSICAL, "ro"), "partOf": ref("Location/ward-4w")},
        {"resourceType": "Location", "id": "bed-4w-01a", "meta": meta, "name": "4W-01A",
         "physicalType": coding(systems.LOCATION_PHYSICAL, "bd"), "partOf": ref("Location/room-4w-01")},
        {"resourceType": "Location", "id": "store-4w", "meta": meta, "name": "4W supply",
         "physicalType": coding(systems.LOCATION_PHYSICAL, "ro"),
         "type": [coding(systems.SUPPLY_ROOM, "storeroom")], "partOf": ref("Location/ward-4w")},
        {"resourceType": "Location", "id": "clinic-card", "meta": meta, "name": "Cardiology clinic",
         "physicalType": coding(systems.LOCATION_PHYSICAL, "ro"), "type": [coding(systems.UNIT_KIND, "clinic")]},
        {"resourceType": "Practitioner", "id": "pr-rn1", "meta": meta, "active": True,
         "identifier": [{"system": systems.NPI, "value": "1000000001"}],
         "name": [{"family": "Testnurse", "given": ["Alex"]}],
         "qualification": [
             {"code": coding(systems.CREDENTIAL, "BLS"), "period": {"start": "2023-01-10", "end": "2025-01-10"}},
             {"code": coding(systems.CREDENTIAL, "ACLS"), "period": {"start": "2023-02-01"}},
             {"code": {"text": "BSN"}},
         ]},
        {"resourceType": "Practitioner", "id": "pr-md1", "meta": meta,
         "identifier": [{"system": systems.NPI, "value": "1000000002"}],
         "name": [{"use": "official", "family": "Fakedoc", "given": ["Robin", "Q"]}]},
        {"resourceType": "PractitionerRole", "id": "role-rn1", "meta": meta, "active": True,
         "practitioner": ref("Practitioner/pr-rn1"), "organization": ref("Organization/org-hosp"),
         "code": [coding(systems.PROFESSION, "RN"), coding(systems.EMPLOYMENT, "float")],
         "location": [ref("Location/ward-4w")]},
        {"resourceType": "PractitionerRole", "id": "role-md1", "meta": meta,
         "practitioner": ref("Practitioner/pr-md1"), "organization": ref("Organization/org-practice"),
         "code": [coding(systems.PROFESSION, "MD")], "specialty": [{"text": "Cardiology"}]},
        {"resourceType": "Patient", "id": "pat-1", "meta": meta,
         "identifier": [{"system": systems.MRN, "value": "MRN0001"}],
         "name": [{"family": "Sample", "given": ["Pat"]}], "gender": "female", "birthDate": "1961-07-04",
         "telecom": [{"system": "email", "value": "pat@example.org"},
                     {"system": "phone", "value": "555-0100", "use": "home"},
                     {"system": "phone", "value": "555-0199", "use": "mobile"}]},
        {"resourceType": "Coverage", "id": "cov-1", "meta": meta, "status": "active",
         "beneficiary": ref("Patient/pat-1"), "payor": [ref("Organization/org-pay")], "subscriberId": "SUB-1",
         "class": [{"type": coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan"),
                    "value": "GOLD-1", "name": "Gold PPO"}]},
        {"resourceType": "ServiceRequest", "id": "sr-1", "meta": meta, "status": "active", "intent": "order",
         "identifier": [{"system": systems.REFERRAL_NUMBER, "value": "R-1"}],
         "category": [coding(systems.SNOMED, systems.REFERRAL_CATEGORY_CODE)],
         "priority": "asap", "subject": ref("Patient/pat-1"), "requester": ref("Practitioner/pr-md1"),
         "performerType": {"text": "Cardiology"}, "reasonCode": [{"text": "Palpitations"}],
         "note": [{"text": "Please see soon."}, {"text": "Holter attached."}],
         "insurance": [ref("Coverage/cov-1")], "authoredOn": "2024-04-30T14:15:00-04:00"},
        {"resourceType": "Task", "id": "task-1", "meta": meta, "status": "in-progress", "intent": "order",
         "focus": ref("ServiceRequest/sr-1"), "for": ref("Patient/pat-1"),
         "businessStatus": coding(systems.WORKFLOW, "triage")},
        {"resourceType": "Schedule", "id": "sch-1", "meta": meta,
         "actor": [ref("Practitioner/pr-md1"), ref("Location/clinic-card")],
         "serviceType": [{"text": "Cardiology"}]},
        {"resourceType": "Slot", "id": "slot-1", "meta": meta, "schedule": ref("Schedule/sch-1"),
         "status": "busy", "start": "2024-05-10T09:00:00Z", "end": "2024-05-10T09:30:00Z"},
        {"resourceType": "Appointment", "id": "appt-1", "meta": meta, "status": "booked",
         "serviceType": [{"text": "Cardiology"}], "start": "2024-05-10T09:00:00Z", "end": "2024-05-10T09:30:00Z",
         "basedOn": [ref("ServiceRequest/sr-1")], "slot": [ref("Slot/slot-1")],
         "participant": [{"actor": ref("Patient/pat-1"), "status": "accepted"},
                         {"actor": ref("Practitioner/pr-md1"), "status": "accepted"},
                         {"actor": ref("Location/clinic-card"), "status": "accepted"}]},
        {"resourceType": "Encounter", "id": "enc-1", "meta": meta, "status": "finished",
         "class": {"system": systems.ACT_CODE, "code": "IMP"}, "subject": ref("Patient/pat-1"),
         "serviceType": {"text": "Medicine"},
         "period": {"start": "2024-04-01T22:30:00+02:00", "end": "2024-04-04T10:00:00Z"},
         "location": [{"location": ref("Location/bed-4w-01a")}],
         "hospitalization": {"admitSource": {"text": "Emergency department"},
                             "dischargeDisposition": {"text": "Home"}}},
    ]


def followup_dataset() -> list[dict[str, Any]]:
    """Post-discharge follow-up of pat-1 after enc-1 (needs dataset() first): a plan, two
    scheduled check-ins, their contacts, and a call the patient made."""
    meta = {"versionId": "1", "lastUpdated": "2024-05-01T08:00:00Z"}
    phone = [coding(systems.PARTICIPATION_MODE, "PHONE")]
    return [
        {"resourceType": "CarePlan", "id": "cp-1", "meta": meta, "status": "active", "intent": "plan",
         "category": [coding(systems.SNOMED, systems.DISCHARGE_CARE_PLAN_CODE),
                      coding(systems.FOLLOWUP_CONDITION, "heart-failure")],
         "title": "Heart failure follow-up", "subject": ref("Patient/pat-1"), "encounter": ref("Encounter/enc-1"),
         "period": {"start": "2024-04-04", "end": "2024-05-04"}},
        {"resourceType": "CommunicationRequest", "id": "creq-1", "meta": meta, "status": "completed",
         "basedOn": [ref("CarePlan/cp-1")], "subject": ref("Patient/pat-1"), "medium": phone,
         "occurrenceDateTime": "2024-04-06T10:00:00-05:00", "payload": [{"contentString": "How is your breathing?"}]},
        {"resourceType": "CommunicationRequest", "id": "creq-2", "meta": meta, "status": "active",
         "basedOn": [ref("CarePlan/cp-1")], "subject": ref("Patient/pat-1"),
         "medium": [coding(systems.PARTICIPATION_MODE, "SMSWRIT")],
         "occurrencePeriod": {"start": "2024-04-11T09:00:00Z", "end": "2024-04-11T17:00:00Z"}},
        {"resourceType": "Communication", "id": "comm-1", "meta": meta, "status": "completed",
         "basedOn": [ref("CommunicationRequest/creq-1")], "subject": ref("Patient/pat-1"), "medium": phone,
         "sent": "2024-04-06T10:12:00-05:00", "topic": coding(systems.CHECKIN_OUTCOME, "concern"),
         "payload": [{"contentString": "Weight up two kilos, ankles swollen"}], "note": [{"text": "Call back Friday"}]},
        {"resourceType": "Communication", "id": "comm-2", "meta": meta, "status": "not-done",
         "partOf": [ref("CommunicationRequest/creq-2")], "subject": ref("Patient/pat-1"),
         "statusReason": coding(systems.CHECKIN_OUTCOME, "unreachable")},
        {"resourceType": "Communication", "id": "comm-3", "meta": meta, "status": "completed",
         "basedOn": [ref("CarePlan/cp-1")], "subject": ref("Patient/pat-1"),
         "medium": [coding(systems.PARTICIPATION_MODE, "VIDEOCONF")], "sent": "2024-04-08T16:40:00Z",
         "topic": coding(systems.CHECKIN_OUTCOME, "escalated")},
    ]


def every_type() -> list[dict[str, Any]]:
    return dataset() + followup_dataset()


def map_all(resources: list[dict[str, Any]]) -> tuple[MemoryLookup, dict[str, MappedResource]]:
    lookup = MemoryLookup()
    out = {}
    for resource in resources:
        mapped = map_resource(resource, lookup)
        lookup.remember(mapped)
        out[resource["id"]] = mapped
    return lookup, out


def by_id(resources: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    return copy.deepcopy(next(r for r in resources if r["id"] == rid))


@pytest.fixture
def mapped() -> dict[str, MappedResource]:
    return map_all(dataset())[1]


def test_every_resource_type_of_the_dataset_has_a_mapper() -> None:
    assert {r["resourceType"] for r in every_type()} == set(MAPPERS)


def test_patient_minimum_necessary(mapped: dict[str, MappedResource]) -> None:
    (row,) = mapped["pat-1"].rows
    assert row.table == "patients" and row.id == "pat-1"
    assert row.values == {
        "ehr_version": "1", "mrn": "MRN0001", "name": "Pat Sample",
        "birth_date": dt.date(1961, 7, 4), "sex": "female", "phone": "555-0199",
    }


def test_patient_partial_birth_date_and_vendor_mrn() -> None:
    patient = by_id(dataset(), "pat-1")
    patient["birthDate"] = "1961-07"
    patient["identifier"] = [{"type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
                              "system": "urn:oid:1.2.3", "value": "E123"}]
    (row,) = map_resource(patient).rows
    assert row.values["birth_date"] is None
    assert row.values["mrn"] == "E123"


def test_patient_without_mrn_is_refused() -> None:
    patient = by_id(dataset(), "pat-1")
    patient["identifier"] = [{"system": "urn:other", "value": "X"}]
    with pytest.raises(InboundError, match="MRN"):
        map_resource(patient)


def test_organizations(mapped: dict[str, MappedResource]) -> None:
    assert mapped["org-hosp"].rows[0].values["kind"] == "provider"
    assert mapped["org-pay"].rows[0].values["kind"] == "payer"


def test_locations_ward_is_a_unit_beds_follow_the_part_of_chain(mapped: dict[str, MappedResource]) -> None:
    ward = mapped["ward-4w"].rows[0]
    assert (ward.table, ward.values["kind"], ward.values["organization_id"]) == ("units", "med-surg", "org-hosp")
    room = mapped["room-4w-01"].rows[0]
    assert (room.table, room.values["kind"], room.values["unit_id"], room.values["parent_id"]) == (
        "locations", "room", "ward-4w", None)
    bed = mapped["bed-4w-01a"].rows[0]
    assert (bed.values["kind"], bed.values["unit_id"], bed.values["parent_id"]) == ("bed", "ward-4w", "room-4w-01")
    store = mapped["store-4w"].rows[0]
    assert (store.values["kind"], store.values["unit_id"]) == ("storeroom", "ward-4w")
    clinic = mapped["clinic-card"].rows[0]
    assert (clinic.table, clinic.values["kind"], clinic.values["unit_id"]) == ("locations", "clinic", None)


def test_bed_before_its_room_is_a_dangling_reference() -> None:
    data = dataset()
    lookup = MemoryLookup()
    with pytest.raises(InboundError, match="dangling reference: locations.parent_id"):
        map_resource(by_id(data, "bed-4w-01a"), lookup)


def test_practitioner_staff_and_credentials(mapped: dict[str, MappedResource]) -> None:
    staff, *creds = mapped["pr-rn1"].rows
    assert staff.table == "staff"
    assert staff.values == {"ehr_version": "1", "name": "Alex Testnurse", "npi": "1000000001", "active": True}
    assert staff.insert_defaults["profession"] == "unknown"
    assert [(c.table, c.id, c.values["code"], c.values["issued_on"], c.values["expires_on"]) for c in creds] == [
        ("credentials", "pr-rn1.cred.BLS", "BLS", dt.date(2023, 1, 10), dt.date(2025, 1, 10)),
        ("credentials", "pr-rn1.cred.ACLS", "ACLS", dt.date(2023, 2, 1), None),
    ]
    (prune,) = mapped["pr-rn1"].prune
    assert prune.keep == {"pr-rn1.cred.BLS", "pr-rn1.cred.ACLS"}


def test_practitioner_role_updates_staff(mapped: dict[str, MappedResource]) -> None:
    (row,) = mapped["role-rn1"].rows
    assert row.update_only and row.table == "staff" and row.id == "pr-rn1"
    assert row.values == {"profession": "RN", "employment": "float", "unit_id": "ward-4w",
                          "organization_id": "org-hosp"}
    (md,) = mapped["role-md1"].rows
    assert md.values == {"profession": "MD", "specialty": "Cardiology", "organization_id": "org-practice"}


def test_role_for_unknown_practitioner_is_dangling() -> None:
    role = by_id(dataset(), "role-rn1")
    role["practitioner"] = ref("Practitioner/nobody")
    lookup, _ = map_all([r for r in dataset() if r["resourceType"] in ("Organization", "Location")])
    with pytest.raises(InboundError, match="dangling reference: staff"):
        map_resource(role, lookup)


def test_service_request_to_referral(mapped: dict[str, MappedResource]) -> None:
    (row,) = mapped["sr-1"].rows
    assert row.values == {
        "ehr_version": "1", "patient_id": "pat-1", "urgency": "urgent", "specialty": "Cardiology",
        "reason": "Palpitations", "letter_text": "Please see soon.\n\nHolter attached.",
        "referring_staff_id": "pr-md1", "referring_org_id": "org-practice", "payer_org_id": "org-pay",
        "received_at": dt.datetime(2024, 4, 30, 18, 15),
    }
    assert row.insert_defaults == {"status": "new"}


def test_service_request_priorities() -> None:
    lookup, _ = map_all([r for r in dataset() if r["resourceType"] in ("Organization", "Patient", "Practitioner")])
    for priority, urgency in systems.PRIORITY_TO_URGENCY.items():
        sr = by_id(dataset(), "sr-1")
        sr["priority"] = priority
        del sr["insurance"]
        assert map_resource(sr, lookup).rows[0].values["urgency"] == urgency


def test_service_request_without_subject_is_refused() -> None:
    sr = by_id(dataset(), "sr-1")
    sr["subject"] = {"display": "someone"}
    with pytest.raises(InboundError, match="subject"):
        map_resource(sr, check=False)


def test_task_updates_the_referral(mapped: dict[str, MappedResource]) -> None:
    (row,) = mapped["task-1"].rows
    assert row.update_only and (row.table, row.id) == ("referrals", "sr-1")
    assert row.values == {"status": "triage", "ehr_task_id": "task-1", "ehr_task_status": "in-progress"}


def test_task_with_unknown_workflow_code_is_refused() -> None:
    task = by_id(dataset(), "task-1")
    task["businessStatus"] = coding(systems.WORKFLOW, "lost-in-space")
    with pytest.raises(InboundError, match="businessStatus"):
        map_resource(task, check=False)


def test_coverage(mapped: dict[str, MappedResource]) -> None:
    (row,) = mapped["cov-1"].rows
    assert row.values == {"ehr_version": "1", "patient_id": "pat-1", "payer_org_id": "org-pay",
                          "plan": "Gold PPO", "member_id": "SUB-1", "status": "active"}


def test_schedule_slot_appointment(mapped: dict[str, MappedResource]) -> None:
    assert mapped["sch-1"].rows[0].values == {"ehr_version": "1", "staff_id": "pr-md1",
                                              "location_id": "clinic-card", "service_line": "Cardiology"}
    assert mapped["slot-1"].rows[0].values == {
        "ehr_version": "1", "schedule_id": "sch-1", "start": dt.datetime(2024, 5, 10, 9),
        "end": dt.datetime(2024, 5, 10, 9, 30), "status": "busy"}
    assert mapped["appt-1"].rows[0].values == {
        "ehr_version": "1", "patient_id": "pat-1", "referral_id": "sr-1", "staff_id": "pr-md1",
        "slot_id": "slot-1", "location_id": "clinic-card", "service_line": "Cardiology",
        "start": dt.datetime(2024, 5, 10, 9), "end": dt.datetime(2024, 5, 10, 9, 30), "status": "booked"}


def test_appointment_needs_a_patient_and_a_start() -> None:
    appt = by_id(dataset(), "appt-1")
    appt["participant"] = appt["participant"][1:]
    with pytest.raises(InboundError, match="Patient"):
        map_resource(appt, check=False)
    appt = by_id(dataset(), "appt-1")
    del appt["start"]
    with pytest.raises(InboundError, match="start"):
        map_resource(appt, check=False)


def test_encounter(mapped: dict[str, MappedResource]) -> None:
    assert mapped["enc-1"].rows[0].values == {
        "ehr_version": "1", "patient_id": "pat-1", "klass": "inpatient", "status": "finished",
        "service_line": "Medicine", "unit_id": "ward-4w", "bed_id": "bed-4w-01a",
        "start": dt.datetime(2024, 4, 1, 20, 30), "end": dt.datetime(2024, 4, 4, 10),
        "admit_source": "Emergency department", "discharge_disposition": "Home"}


@pytest.mark.parametrize(("code", "klass"), [("AMB", "outpatient"), ("EMER", "emergency"), ("VR", "other")])
def test_encounter_classes(code: str, klass: str) -> None:
    enc = by_id(dataset(), "enc-1")
    enc["class"] = {"system": systems.ACT_CODE, "code": code}
    assert map_resource(enc, check=False).rows[0].values["klass"] == klass


def test_encounter_at_ward_level_has_a_unit_and_no_bed() -> None:
    lookup, _ = map_all(dataset()[:8] + [by_id(dataset(), "pat-1")])
    enc = by_id(dataset(), "enc-1")
    enc["location"] = [{"location": ref("Location/ward-4w")}]
    values = map_resource(enc, lookup).rows[0].values
    assert (values["unit_id"], values["bed_id"]) == ("ward-4w", None)


def test_dangling_patient_reference_is_refused() -> None:
    lookup, _ = map_all(dataset()[:8])
    enc = by_id(dataset(), "enc-1")
    with pytest.raises(InboundError, match="dangling reference: encounters.patient_id"):
        map_resource(enc, lookup)


def test_unsupported_type() -> None:
    with pytest.raises(InboundError, match="unsupported resource type"):
        map_resource({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}})


def test_validation_error_names_the_field_never_the_value() -> None:
    patient = by_id(dataset(), "pat-1")
    patient["birthDate"] = "CANARY-19"
    patient["secretCANARY"] = "CANARY"
    with pytest.raises(InboundError) as info:
        map_resource(patient)
    assert "birthDate" in info.value.reason and "unknown element" in info.value.reason
    assert "CANARY" not in info.value.reason


def test_r5_only_shapes_are_invalid_r4() -> None:
    enc = by_id(dataset(), "enc-1")
    enc["class"] = [coding(systems.ACT_CODE, "IMP")]  # R5 made class a list of CodeableConcept
    with pytest.raises(InboundError, match="invalid FHIR R4"):
        map_resource(enc, check=False)


# --- post-discharge follow-up -----------------------------------------------------------------


@pytest.fixture
def followup() -> tuple[MemoryLookup, dict[str, MappedResource]]:
    return map_all(every_type())


def test_care_plan_to_followup_plan(followup: tuple[MemoryLookup, dict[str, MappedResource]]) -> None:
    (row,) = followup[1]["cp-1"].rows
    assert (row.table, row.id) == ("followup_plans", "cp-1")
    assert row.values == {"ehr_version": "1", "patient_id": "pat-1", "encounter_id": "enc-1",
                          "condition": "heart-failure", "status": "active", "starts_on": dt.date(2024, 4, 4)}


@pytest.mark.parametrize(("title", "category_text", "condition"), [
    ("COPD discharge follow-up", None, "copd"),
    (None, "Post-surgical recovery", "post-surgical"),
    ("Follow-up after pneumonia", "Discharge care plan", "pneumonia"),
    ("Transitions of care", None, "other"),
])
def test_care_plan_condition_from_its_text(title: str | None, category_text: str | None, condition: str) -> None:
    plan = by_id(followup_dataset(), "cp-1")
    plan["category"] = [coding(systems.SNOMED, systems.DISCHARGE_CARE_PLAN_CODE)]
    plan.pop("title")
    if title:
        plan["title"] = title
    if category_text:
        plan["category"][0]["text"] = category_text
    (row,) = map_resource(plan, check=False).rows
    assert row.values["condition"] == condition
    assert title is None or title not in row.values.values()  # the text is not kept


def test_care_plan_rules() -> None:
    plan = by_id(followup_dataset(), "cp-1")
    plan["category"] = [{"text": "Long-term nursing care plan"}]
    assert map_resource(plan, check=False).rows == []  # not a follow-up plan: accepted, not stored
    plan = by_id(followup_dataset(), "cp-1")
    plan["category"][1] = coding(systems.FOLLOWUP_CONDITION, "time-travel")
    with pytest.raises(InboundError, match="unknown code: category"):
        map_resource(plan, check=False)
    plan = by_id(followup_dataset(), "cp-1")
    del plan["period"]
    with pytest.raises(InboundError, match="period.start"):
        map_resource(plan, check=False)
    plan["created"] = "2024-04-05T09:00:00Z"
    (row,) = map_resource(plan, check=False).rows
    assert row.values["starts_on"] == dt.date(2024, 4, 5)
    assert row.values["encounter_id"] is None  # an encounter the cache does not hold is left out


def test_communication_requests_are_check_ins(followup: tuple[MemoryLookup, dict[str, MappedResource]]) -> None:
    (done,) = followup[1]["creq-1"].rows
    assert (done.table, done.id, done.update_only) == ("checkins", "creq-1", False)
    assert done.values == {"ehr_version": "1", "plan_id": "cp-1", "due_at": dt.datetime(2024, 4, 6, 15),
                           "channel": "phone", "status": "done"}
    (due,) = followup[1]["creq-2"].rows
    assert due.values == {"ehr_version": "1", "plan_id": "cp-1", "due_at": dt.datetime(2024, 4, 11, 9),
                          "channel": "sms"}
    assert due.insert_defaults == {"channel": "phone", "status": "due"}  # never undoes a recorded contact


def test_communication_request_rules(followup: tuple[MemoryLookup, dict[str, MappedResource]]) -> None:
    lookup = followup[0]
    request = by_id(followup_dataset(), "creq-2")
    request["status"] = "revoked"
    assert map_resource(request, lookup).rows[0].values["status"] == "cancelled"
    request["subject"] = ref("Patient/someone-else")
    with pytest.raises(InboundError, match="inconsistent reference: subject"):
        map_resource(request, lookup)
    request = by_id(followup_dataset(), "creq-2")
    request["basedOn"] = [ref("ServiceRequest/sr-1")]
    with pytest.raises(InboundError, match=r"missing reference: basedOn \(CarePlan\)"):
        map_resource(request, lookup)
    request = by_id(followup_dataset(), "creq-2")
    request["basedOn"] = [ref("CarePlan/unknown")]
    with pytest.raises(InboundError, match="dangling reference: checkins.plan_id"):
        map_resource(request, lookup)


def test_communications_record_whether_the_contact_happened(
    followup: tuple[MemoryLookup, dict[str, MappedResource]],
) -> None:
    mapped = followup[1]
    (done,) = mapped["comm-1"].rows
    assert (done.table, done.id, done.update_only) == ("checkins", "creq-1", True)
    assert done.values == {"status": "done", "channel": "phone"}  # no payload, note or sent time
    (missed,) = mapped["comm-2"].rows
    assert (missed.id, missed.update_only, missed.values) == ("creq-2", True, {"status": "missed"})
    (own,) = mapped["comm-3"].rows
    assert (own.table, own.id, own.update_only) == ("checkins", "comm-3.contact", False)
    assert own.values == {"ehr_version": "1", "plan_id": "cp-1", "due_at": dt.datetime(2024, 4, 8, 16, 40),
                          "status": "escalated", "channel": "video"}


def test_communication_rules(followup: tuple[MemoryLookup, dict[str, MappedResource]]) -> None:
    lookup = followup[0]
    comm = by_id(followup_dataset(), "comm-1")
    comm["status"] = "entered-in-error"
    assert map_resource(comm, lookup).rows[0].values["status"] == "due"  # the request stands
    comm["status"] = "in-progress"
    assert "status" not in map_resource(comm, lookup).rows[0].values
    comm = by_id(followup_dataset(), "comm-1")
    comm["basedOn"] = [ref("CommunicationRequest/unknown")]
    with pytest.raises(InboundError, match="dangling reference: checkins"):
        map_resource(comm, lookup)
    comm["basedOn"] = [ref("ServiceRequest/sr-1")]
    with pytest.raises(InboundError, match="missing reference: basedOn"):
        map_resource(comm, lookup)
    comm = by_id(followup_dataset(), "comm-1")
    comm["topic"] = coding(systems.CHECKIN_OUTCOME, "abducted")
    with pytest.raises(InboundError, match="unknown code: topic"):
        map_resource(comm, lookup)
    comm = by_id(followup_dataset(), "comm-3")
    comm["subject"] = ref("Patient/someone-else")
    with pytest.raises(InboundError, match="inconsistent reference: subject"):
        map_resource(comm, lookup)


def test_our_own_write_back_echoed_updates_the_check_in(
    followup: tuple[MemoryLookup, dict[str, MappedResource]],
) -> None:
    lookup = followup[0]
    echo = {"resourceType": "Communication", "id": "ehr-77", "status": "completed",
            "identifier": [{"system": systems.CHECKIN, "value": "comm-3.contact"}],
            "basedOn": [ref("CarePlan/cp-1")], "subject": ref("Patient/pat-1"), "sent": "2024-04-09T10:00:00Z"}
    (row,) = map_resource(echo, lookup).rows
    assert (row.id, row.update_only, row.values) == ("comm-3.contact", True, {"status": "done"})
    echo["identifier"][0]["value"] = "made-on-another-workstation"
    assert map_resource(echo, lookup).rows == []  # the hub brings that check-in


# --- property tests ---------------------------------------------------------------------------

json_leaf = (
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
RESOURCE_TYPES = sorted(MAPPERS) + ["Observation", "Bundle"]


def _mutations(
    resource: dict[str, Any], values: st.SearchStrategy[Any] = json_value
) -> st.SearchStrategy[dict[str, Any]]:
    """The resource with some leaves or members replaced by arbitrary JSON."""
    paths: list[tuple[Any, ...]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(resource, ())
    candidates = [p for p in paths if p and p[0] not in ("resourceType",)]

    @st.composite
    def mutate(draw: Any) -> dict[str, Any]:
        out = copy.deepcopy(resource)
        for path in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3)):
            target = out
            try:
                for part in path[:-1]:
                    target = target[part]
                if draw(st.booleans()) and isinstance(target, dict):
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = draw(values)
            except (KeyError, IndexError, TypeError):
                continue
        return out

    return mutate()


def _check(resource: Any, lookup: MemoryLookup | None) -> None:
    raw = json.dumps(resource).encode()
    try:
        parsed = parse_resource(raw)
        mapped = map_resource(parsed, lookup)
    except InboundError as exc:
        assert not exc.reason.startswith("internal"), exc.reason
        return
    assert isinstance(mapped, MappedResource)
    for row in mapped.rows:
        assert isinstance(row.values, dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(RESOURCE_TYPES), st.dictionaries(st.text(max_size=12), json_value, max_size=6),
       st.one_of(st.none(), st.text(max_size=70)))
def test_arbitrary_objects_map_or_raise_inbound_error(rtype: str, body: dict[str, Any], rid: str | None) -> None:
    resource = {**body, "resourceType": rtype}
    if rid is not None:
        resource["id"] = rid
    _check(resource, None)


_FULL_LOOKUP = map_all(every_type())[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_resources_map_or_raise_inbound_error(data: st.DataObject) -> None:
    resource = data.draw(st.sampled_from(every_type()))
    mutated = data.draw(_mutations(resource))
    _check(mutated, data.draw(st.sampled_from([None, _FULL_LOOKUP])))


CANARY = "Canaryjane"
canary_values = st.recursive(
    st.sampled_from([CANARY, f"{CANARY}-1970-01-01", f"Patient/{CANARY}", 1, None]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from([CANARY, f"_{CANARY}", "family", "reference", "text", "code"]), children,
                      max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_reasons_never_repeat_values_or_keys_from_the_resource(data: st.DataObject) -> None:
    resource = data.draw(st.sampled_from(every_type()))
    mutated = data.draw(_mutations(resource, canary_values))
    try:
        map_resource(parse_resource(json.dumps(mutated).encode()), _FULL_LOOKUP)
    except InboundError as exc:
        assert CANARY.lower() not in exc.reason.lower()
