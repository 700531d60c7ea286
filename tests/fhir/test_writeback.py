"""Write-back of queued local changes to EHRs with each vendor's rules (MockTransport servers)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cache.models import Appointment, CheckIn, EhrWrite, Referral
from app.cache.store import Cache
from services.ehr_writeback import ehr_write_states, queue_ehr_write
from sync.fhir import systems
from sync.fhir.pull import EhrPull
from sync.fhir.writeback import EhrWriter

from .mock_ehr import MockEhr
from .test_pull import client_for, loaded, population


@pytest.fixture
def cache(tmp_path: Path):
    c = Cache.open(tmp_path / "cache.db", os.urandom(32))
    yield c
    c.close()


def pulled(cache: Cache, ehr: MockEhr, vendor: str) -> MockEhr:
    if vendor == "epic":
        population(cache, ehr, *ehr.store["Patient"])
    with client_for(ehr, vendor) as client:
        assert EhrPull(client, cache).run().imported.quarantined == 0
    return ehr


def move_referral(cache: Cache, referral_id: str, status: str) -> None:
    """What the referral service does: the change and the promise to send it, in one transaction."""
    with cache.unit_of_work(user="casey") as s:
        s.get(Referral, referral_id).status = status
        queue_ehr_write(s, kind="task-status", entity_id=referral_id, user="casey")


def write_back(cache: Cache, ehr: MockEhr, vendor: str):
    with client_for(ehr, vendor) as client:
        return EhrWriter(client, cache).run()


def state(cache: Cache, entity: str, rid: str):
    return ehr_write_states(cache, entity, [rid])[rid]


@pytest.mark.parametrize("vendor", ["generic", "epic"])
def test_a_referral_move_reaches_its_task(cache, vendor):
    ehr = pulled(cache, loaded(getattr(MockEhr, vendor)()), vendor)
    move_referral(cache, "sr-1", "ready-to-schedule")
    move_referral(cache, "sr-1", "scheduled")  # two moves offline: one write of the latest
    result = write_back(cache, ehr, vendor)
    assert result.counts == {"sent": 1}
    task = ehr.store["Task"]["task-1"]
    assert task["businessStatus"]["coding"][0] == {"system": systems.WORKFLOW, "code": "scheduled"}
    assert task["status"] == systems.WORKFLOW_TO_TASK_STATUS["scheduled"]
    assert task["meta"]["versionId"] == "2"
    assert [r.headers.get("If-Match") for r in ehr.api_requests() if r.method in ("PUT", "PATCH")] == ['W/"1"']
    assert state(cache, "referrals", "sr-1").status == "sent"
    assert write_back(cache, ehr, vendor).counts == {}  # nothing left to send


def test_epic_does_not_create_tasks_and_the_user_is_told(cache):
    ehr = pulled(cache, loaded(MockEhr.epic()), "epic")
    with cache.unit_of_work(user="sync", origin="sync") as s:
        s.get(Referral, "sr-1").ehr_task_id = None  # a referral the EHR has no Task for
    move_referral(cache, "sr-1", "triage")
    before = len(ehr.api_requests())
    assert write_back(cache, ehr, "epic").counts == {"not-accepted": 1}
    assert not [r for r in ehr.api_requests()[before:] if r.method == "POST"]
    st = state(cache, "referrals", "sr-1")
    assert st.status == "not-accepted" and "does not accept" in st.text


def test_athena_is_read_only(cache):
    ehr = pulled(cache, loaded(MockEhr.athena()), "athena")
    move_referral(cache, "sr-1", "scheduled")
    assert write_back(cache, ehr, "athena").counts == {"not-accepted": 1}
    assert not [r for r in ehr.api_requests() if r.method in ("POST", "PUT", "PATCH")]


def test_a_task_the_ehr_closed_meanwhile_is_a_conflict_not_overwritten(cache):
    ehr = pulled(cache, loaded(MockEhr.generic()), "generic")
    ehr.store["Task"]["task-1"]["status"] = "cancelled"
    move_referral(cache, "sr-1", "scheduled")
    assert write_back(cache, ehr, "generic").counts == {"conflict": 1}
    assert ehr.store["Task"]["task-1"]["status"] == "cancelled"


def test_an_unreachable_ehr_leaves_the_change_pending(cache):
    ehr = pulled(cache, loaded(MockEhr.generic()), "generic")
    move_referral(cache, "sr-1", "scheduled")
    ehr.fail(503, times=50)
    result = write_back(cache, ehr, "generic")
    assert result.stopped and result.counts == {}
    with cache.reader() as s:
        row = s.scalars(select(EhrWrite)).one()
        assert (row.status, row.attempts) == ("pending", 1)
    ehr._faults.clear()
    assert write_back(cache, ehr, "generic").counts == {"sent": 1}


def book(cache: Cache) -> str:
    with cache.unit_of_work(user="casey") as s:
        appt = Appointment(patient_id="pat-1", referral_id="sr-1", staff_id="pr-md1", location_id="clinic-card",
                           start=dt.datetime(2024, 6, 3, 14, 0), end=dt.datetime(2024, 6, 3, 14, 30),
                           service_line="Cardiology", status="booked")
        s.add(appt)
        s.flush()
        queue_ehr_write(s, kind="appointment", entity_id=appt.id, user="casey")
        return appt.id


def test_oracle_books_once_even_when_the_reply_is_lost_and_the_copy_comes_home(cache):
    ehr = pulled(cache, loaded(MockEhr.oracle()), "oracle")
    local_id = book(cache)
    ehr.fail(503, method="POST", after_apply=True)  # created, but the answer never arrives
    assert write_back(cache, ehr, "oracle").counts == {"sent": 1}
    created = [a for a in ehr.store["Appointment"].values()
               if {"system": systems.APPOINTMENT, "value": local_id} in a.get("identifier", [])]
    assert len(created) == 1
    # The next pull brings the EHR's copy home onto the same appointment, not a second one.
    pulled(cache, ehr, "oracle")
    with cache.reader() as s:
        ids = set(s.scalars(select(Appointment.id).where(Appointment.patient_id == "pat-1")))
    assert local_id in ids and created[0]["id"] not in ids

    # A later change to the booking patches the EHR's appointment on its version (Oracle patches).
    with cache.unit_of_work(user="casey") as s:
        s.get(Appointment, local_id).status = "cancelled"
        queue_ehr_write(s, kind="appointment", entity_id=local_id, user="casey")
    assert write_back(cache, ehr, "oracle").counts == {"sent": 1}
    assert ehr.store["Appointment"][created[0]["id"]]["status"] == "cancelled"
    assert [r.method for r in ehr.api_requests() if r.method in ("PUT", "PATCH")] == ["PATCH"]


def test_a_completed_check_in_becomes_one_communication(cache):
    ehr = pulled(cache, loaded(MockEhr.generic()), "generic")
    with cache.unit_of_work(user="fran") as s:
        due = s.get(CheckIn, "creq-2")
        due.status = "done"
        queue_ehr_write(s, kind="communication", entity_id=due.id, user="fran")
    assert write_back(cache, ehr, "generic").counts == {"sent": 1}
    comms = [c for c in ehr.store["Communication"].values()
             if {"system": systems.CHECKIN, "value": due.id} in c.get("identifier", [])]
    assert len(comms) == 1 and comms[0]["status"] == "completed"
