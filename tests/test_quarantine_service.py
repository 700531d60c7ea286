"""Quarantine review: list without raw bytes, admin only, audited; retry through the importer; discard."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from app.cache.models import Encounter, Patient, Quarantined
from app.errors import AccessDenied, ValidationError
from app.security.roles import Role
from services.context import ServiceContext
from services.quarantine import RETRYING, QuarantineService
from sync.fhir import systems
from sync.fhir.bulk_import import BulkImporter


def reimport(cache, source):
    return BulkImporter(cache, source=source)

META = {"versionId": "1", "lastUpdated": "2024-05-01T08:00:00Z"}


def patient(pid: str, mrn: str | None = "MRN0701") -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid, "meta": META, "name": [{"family": "Synthetic", "given": ["Quinn"]}]}
    if mrn:
        p["identifier"] = [{"system": systems.MRN, "value": mrn}]
    return p


def encounter(eid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": eid, "meta": META, "status": "finished",
        "class": {"system": systems.ACT_CODE, "code": "AMB"}, "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2024-04-01T09:00:00Z", "end": "2024-04-01T10:00:00Z"},
    }  # fmt: skip


def line(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()


def feed(ws, *lines: bytes) -> None:
    importer = BulkImporter(ws.cache, source="ehr")
    for raw in lines:
        importer.add(raw)
    importer.finish()


def ctx_for(ws, role: Role) -> ServiceContext:
    ws.users.ensure_demo_users()
    return ServiceContext(ws.cache, ws.audit, ws.users.demo_session(role))


def rows(ws) -> dict[str, Quarantined]:
    with ws.cache.reader() as s:
        return {q.resource_id or "?": q for q in s.scalars(select(Quarantined))}


@pytest.fixture
def seeded(ws):
    feed(
        ws,
        line(encounter("enc-orphan", "pat-late")),  # its patient has not arrived yet
        line(patient("pat-nomrn", mrn=None)),
        b'{"resourceType": "Patient", "id": "pat-broken", ',
    )
    assert set(rows(ws)) == {"enc-orphan", "pat-nomrn", "pat-broken"}
    return ws


def test_overview_newest_first_with_counts_and_no_raw(seeded):
    admin = ctx_for(seeded, Role.ADMINISTRATOR)
    overview = QuarantineService(admin, reimport).overview()
    assert overview.total == 3 and len(overview.items) == 3
    assert [i.id for i in overview.items] == sorted((i.id for i in overview.items), reverse=True)
    assert dict(overview.by_reason) == {
        "dangling reference: encounters.patient_id": 1, "missing identifier: MRN": 1, "invalid JSON": 1,
    }  # fmt: skip
    item = overview.items[0]
    assert not hasattr(item, "raw") and item.source == "ehr"
    (entry,) = [e for e in seeded.audit.entries() if e.action == "quarantine.read"]
    assert entry.user == admin.user.username and set(entry.record_ids) == {str(i.id) for i in overview.items}


def test_coordinator_is_refused_and_nothing_changes(seeded):
    service = QuarantineService(ctx_for(seeded, Role.COORDINATOR), reimport)
    ids = [q.id for q in rows(seeded).values()]
    with pytest.raises(AccessDenied):
        service.overview()
    with pytest.raises(AccessDenied):
        service.discard(ids)
    with pytest.raises(AccessDenied):
        service.retry(ids)
    assert len(rows(seeded)) == 3
    assert not [e for e in seeded.audit.entries() if e.action.startswith("quarantine.")]


def test_retry_accepts_a_fixed_resource_and_keeps_the_rest(seeded):
    changes = []
    seeded.cache.add_listener(changes.append)
    feed(seeded, line(patient("pat-late", mrn="MRN0702")))  # the missing patient arrives
    service = QuarantineService(ctx_for(seeded, Role.ADMINISTRATOR), reimport)
    before = rows(seeded)
    result = service.retry([before["enc-orphan"].id, before["pat-broken"].id, 999_999])
    assert (result.accepted, result.still_quarantined, result.missing) == (1, 1, 1)
    after = rows(seeded)
    assert set(after) == {"pat-nomrn", "pat-broken"}
    assert after["pat-broken"].reason == "invalid JSON" and after["pat-broken"].source == "ehr"
    with seeded.cache.reader() as s:
        assert s.get(Encounter, "enc-orphan").patient_id == "pat-late"
    assert any("quarantine" in c.changed for c in changes)
    (entry,) = [e for e in seeded.audit.entries() if e.action == "quarantine.retry"]
    assert set(entry.record_ids) == {str(before["enc-orphan"].id), str(before["pat-broken"].id), "999999"}


def test_retry_resolves_references_between_retried_records(ws):
    # Two good records quarantined (say, refused by an older version), the dependent one first.
    with ws.cache.unit_of_work(user="test", origin="sync") as s:
        for r in (encounter("enc-2", "pat-2"), patient("pat-2", "MRN0703")):
            s.add(Quarantined(source="ehr", resource_type=r["resourceType"], resource_id=r["id"],
                              reason="refused by the cache (constraint)", raw=line(r)))  # fmt: skip
    result = QuarantineService(ctx_for(ws, Role.ADMINISTRATOR), reimport).retry(q.id for q in rows(ws).values())
    assert (result.accepted, result.still_quarantined) == (2, 0) and rows(ws) == {}
    with ws.cache.reader() as s:
        assert s.get(Patient, "pat-2").mrn == "MRN0703" and s.get(Encounter, "enc-2") is not None


def test_a_retry_interrupted_before_the_end_stays_visible_and_retryable(seeded):
    # What a crash between marking and re-import leaves: marked rows, still listed, still retryable.
    with seeded.cache.unit_of_work(user="test", origin="sync") as s:
        for q in s.scalars(select(Quarantined)):
            q.source = "ehr" + RETRYING
    service = QuarantineService(ctx_for(seeded, Role.ADMINISTRATOR), reimport)
    assert service.overview().total == 3
    result = service.retry(i.id for i in service.overview().items)
    assert (result.accepted, result.still_quarantined) == (0, 3)
    assert {q.source for q in rows(seeded).values()} == {"ehr"} and len(rows(seeded)) == 3


def test_discard_is_audited(seeded):
    service = QuarantineService(ctx_for(seeded, Role.ADMINISTRATOR), reimport)
    target = rows(seeded)["pat-nomrn"].id
    assert service.discard([target]) == 1
    assert "pat-nomrn" not in rows(seeded) and len(rows(seeded)) == 2
    (entry,) = [e for e in seeded.audit.entries() if e.action == "quarantine.discard"]
    assert entry.record_ids == (str(target),) and entry.role == "administrator"
    with pytest.raises(ValidationError):
        service.discard([])


def test_retry_without_the_inbound_pipeline_is_refused_with_a_message(seeded):
    service = QuarantineService(ctx_for(seeded, Role.ADMINISTRATOR))
    with pytest.raises(ValidationError, match="not available"):
        service.retry([q.id for q in rows(seeded).values()])
    assert len(rows(seeded)) == 3
