"""Bulk Data ($export ndjson) import into an encrypted cache."""

from __future__ import annotations

import copy
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.cache.models import Encounter, OutboxEntry, Quarantined, Referral, Staff
from app.cache.store import Cache, ChangeSet
from sync.fhir import systems
from sync.fhir.bulk_import import BulkImporter, import_ndjson_dir, iter_lines, ndjson_files
from sync.fhir.mappers import InboundError, validate
from sync.fhir.parsing import MAX_RESOURCE_BYTES
from sync.fhir.validation import ElementMemo, memoized

from .test_mappers import by_id, dataset, ref

TABLES = ["organizations", "units", "locations", "staff", "credentials", "patients", "coverages",
          "referrals", "schedules", "slots", "appointments", "encounters", "quarantine"]


@pytest.fixture
def cache(tmp_path: Path):
    c = Cache.open(tmp_path / "cache.db", os.urandom(32))
    yield c
    c.close()


def write_folder(folder: Path, resources: list[dict[str, Any]], extra: dict[str, list[bytes]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[bytes]] = {}
    for r in resources:
        lines.setdefault(f"{r['resourceType']}.ndjson", []).append(json.dumps(r).encode())
    for name, more in (extra or {}).items():
        lines.setdefault(name, []).extend(more)
    for name, content in lines.items():
        (folder / name).write_bytes(b"\n".join(content) + b"\n")
    return folder


def snapshot(cache: Cache) -> dict[str, list[tuple[Any, ...]]]:
    with cache.reader() as s:
        return {t: [tuple(r) for r in s.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2"))] for t in TABLES}


def count(cache: Cache, model: Any) -> int:
    with cache.reader() as s:
        source = text(model) if isinstance(model, str) else model
        return s.scalar(select(func.count()).select_from(source))


def test_dataset_imports_completely(cache: Cache, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "export", dataset())
    changes: list[ChangeSet] = []
    cache.add_listener(changes.append)
    result = import_ndjson_dir(cache, folder)
    assert result.quarantined == 0
    assert result.counts == {"Organization": 3, "Location": 5, "Practitioner": 2, "PractitionerRole": 2,
                             "Patient": 1, "Coverage": 1, "ServiceRequest": 1, "Task": 1, "Schedule": 1,
                             "Slot": 1, "Appointment": 1, "Encounter": 1}
    assert result.lines == 20 and not result.cancelled
    with cache.reader() as s:
        referral = s.get(Referral, "sr-1")
        assert (referral.status, referral.urgency, referral.payer_org_id, referral.ehr_task_id) == (
            "triage", "urgent", "org-pay", "task-1")
        assert (referral.source, referral.ehr_version, referral.dirty) == ("ehr", "1", False)
        nurse = s.get(Staff, "pr-rn1")
        assert (nurse.profession, nurse.employment, nurse.unit_id) == ("RN", "float", "ward-4w")
        assert s.get(Encounter, "enc-1").unit_id == "ward-4w"
    assert count(cache, OutboxEntry) == 0  # origin "sync": nothing to push
    assert changes and all(c.origin == "sync" for c in changes)
    assert {"patients", "referrals", "staff", "credentials"} <= set().union(*(c.entities for c in changes))


def test_files_in_dependency_order(tmp_path: Path) -> None:
    names = ["Encounter.ndjson", "Observation.ndjson", "Patient_2.ndjson", "1.Patient.ndjson", "Slot.ndjson.gz",
             "Organization.ndjson", "notes.txt", "mixed.ndjson"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in ndjson_files(tmp_path)] == [
        "Organization.ndjson", "1.Patient.ndjson", "Patient_2.ndjson", "Slot.ndjson.gz", "Encounter.ndjson",
        "Observation.ndjson", "mixed.ndjson"]


def test_mixed_folder_good_lands_bad_is_quarantined_and_reimport_changes_nothing(
    cache: Cache, tmp_path: Path
) -> None:
    data = dataset()
    # a bed listed before its room, in the same file: retried after the file, lands
    locations = [r for r in data if r["resourceType"] == "Location"]
    others = [r for r in data if r["resourceType"] != "Location"]
    bed = next(r for r in locations if r["id"] == "bed-4w-01a")
    locations = [bed] + [r for r in locations if r is not bed]
    orphan_enc = by_id(data, "enc-1") | {"id": "enc-orphan", "subject": ref("Patient/nobody")}
    orphan_slot = by_id(data, "slot-1") | {"id": "slot-orphan", "schedule": ref("Schedule/none")}
    orphan_task = by_id(data, "task-1") | {"id": "task-orphan", "focus": ref("ServiceRequest/none")}
    orphan_bed = by_id(data, "bed-4w-01a") | {"id": "bed-orphan", "partOf": ref("Location/none")}
    no_start = by_id(data, "appt-1") | {"id": "appt-nostart"}
    del no_start["start"]
    extra = {
        "Patient.ndjson": [
            b"this is not json",
            b'{"resourceType":"Patient","id":"p-dup","id":"p-dup2"}',
            b'{"resourceType":"Patient","id":"p-nan","birthDate":NaN}',
            b'{"resourceType":"Patient","id":"p-deep","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
            b"[" * 100_000,
            b"\xff\xfe\x00garbage",
            b"",  # blank lines are skipped, not quarantined
            b'{"resourceType":"Patient","id":"p-nomrn","name":[{"family":"Nomrn"}]}',
        ],
        "Encounter.ndjson": [json.dumps(orphan_enc).encode()],
        "Slot.ndjson": [json.dumps(orphan_slot).encode()],
        "Task.ndjson": [json.dumps(orphan_task).encode()],
        "Appointment.ndjson": [json.dumps(no_start).encode()],
        "Observation.ndjson": [b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}'],
    }
    folder = write_folder(tmp_path / "export", others + locations + [orphan_bed], extra)
    result = import_ndjson_dir(cache, folder, batch_size=4)
    assert result.accepted == 20
    assert result.quarantined == 13 and count(cache, Quarantined) == 13
    with cache.reader() as s:
        quarantined = {(q.resource_type, q.resource_id): q.reason for q in s.scalars(select(Quarantined))}
        assert all(q.source == "ehr" and q.raw for q in s.scalars(select(Quarantined)))
    assert quarantined[("Encounter", "enc-orphan")] == "dangling reference: encounters.patient_id"
    assert quarantined[("Slot", "slot-orphan")] == "dangling reference: slots.schedule_id"
    assert quarantined[("Task", "task-orphan")] == "dangling reference: referrals (record to update)"
    assert quarantined[("Location", "bed-orphan")] == "dangling reference: locations.parent_id"
    assert quarantined[("Appointment", "appt-nostart")] == "missing start"
    assert quarantined[("Observation", "o1")] == "unsupported resource type"
    assert quarantined[("Patient", "p-dup")] == "duplicate key"
    assert quarantined[("Patient", "p-nan")] == "NaN or Infinity"
    assert quarantined[("Patient", "p-deep")] == "nesting too deep"
    assert quarantined[("Patient", "p-nomrn")] == "missing identifier: MRN"
    with cache.reader() as s:
        reasons = sorted(s.scalars(select(Quarantined.reason).where(Quarantined.resource_type.is_(None))))
    assert reasons == ["invalid JSON", "invalid UTF-8", "nesting too deep"]
    with cache.reader() as s:
        assert s.scalar(text("SELECT unit_id FROM locations WHERE id = 'bed-4w-01a'")) == "ward-4w"

    before = snapshot(cache)
    changes: list[ChangeSet] = []
    cache.add_listener(changes.append)
    again = import_ndjson_dir(cache, folder, batch_size=4)
    assert snapshot(cache) == before
    assert changes == []
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 20)
    assert again.quarantined == 13 and again.counts == result.counts


def test_versions_newer_updates_older_and_same_are_skipped(cache: Cache, tmp_path: Path) -> None:
    patient = by_id(dataset(), "pat-1")
    patient["meta"]["versionId"] = "5"
    import_ndjson_dir(cache, write_folder(tmp_path / "v5", [patient]))

    older = copy.deepcopy(patient)
    older["meta"]["versionId"] = "4"
    older["name"] = [{"family": "Older", "given": ["Pat"]}]
    result = import_ndjson_dir(cache, write_folder(tmp_path / "v4", [older]))
    assert result.unchanged == 1
    newer = copy.deepcopy(patient)
    newer["meta"]["versionId"] = "12"  # numeric order, not string order
    newer["name"] = [{"family": "Newer", "given": ["Pat"]}]
    result = import_ndjson_dir(cache, write_folder(tmp_path / "v12", [newer]))
    assert result.updated == 1
    with cache.reader() as s:
        assert s.execute(text("SELECT name, ehr_version FROM patients")).one() == ("Pat Newer", "12")

    unversioned = copy.deepcopy(newer)
    del unversioned["meta"]
    result = import_ndjson_dir(cache, write_folder(tmp_path / "nov", [unversioned]))
    assert result.unchanged == 1  # same content, no version: nothing to do
    unversioned["gender"] = "other"
    result = import_ndjson_dir(cache, write_folder(tmp_path / "nov2", [unversioned]))
    assert result.updated == 1


def test_duplicate_ids_in_one_batch(cache: Cache, tmp_path: Path) -> None:
    v1 = by_id(dataset(), "pat-1")
    v2 = copy.deepcopy(v1)
    v2["meta"]["versionId"] = "2"
    v2["gender"] = "male"
    result = import_ndjson_dir(cache, write_folder(tmp_path / "e", [v1, v2]))
    assert (result.inserted, result.updated) == (1, 1)
    with cache.reader() as s:
        assert s.execute(text("SELECT sex, ehr_version FROM patients")).one() == ("male", "2")


def test_unsent_local_change_is_kept(cache: Cache, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "e1", dataset())
    import_ndjson_dir(cache, folder)
    with cache.unit_of_work(user="coordinator") as s:
        s.get(Referral, "sr-1").status = "awaiting-preauth"
    sr = by_id(dataset(), "sr-1")
    sr["meta"]["versionId"] = "2"
    sr["priority"] = "stat"
    task = by_id(dataset(), "task-1")
    task["businessStatus"] = {"coding": [{"system": systems.WORKFLOW, "code": "scheduled"}]}
    result = import_ndjson_dir(cache, write_folder(tmp_path / "e2", [sr, task]))
    assert result.conflicts == 2
    with cache.reader() as s:
        referral = s.get(Referral, "sr-1")
        assert (referral.status, referral.urgency, referral.dirty) == ("awaiting-preauth", "urgent", True)


def test_credentials_follow_the_practitioner_version(cache: Cache, tmp_path: Path) -> None:
    import_ndjson_dir(cache, write_folder(tmp_path / "e1", dataset()))
    nurse = by_id(dataset(), "pr-rn1")
    nurse["meta"]["versionId"] = "2"
    nurse["qualification"] = nurse["qualification"][:1]  # ACLS lapsed from the record
    import_ndjson_dir(cache, write_folder(tmp_path / "e2", [nurse]))
    with cache.reader() as s:
        assert s.scalars(text("SELECT code FROM credentials WHERE staff_id = 'pr-rn1'")).all() == ["BLS"]
        # the role's fields survive a new Practitioner version
        assert s.execute(text("SELECT profession, employment FROM staff WHERE id='pr-rn1'")).one() == ("RN", "float")


@pytest.mark.allow_log_warnings
def test_a_refused_row_does_not_lose_the_rest_of_its_batch(cache: Cache, tmp_path: Path) -> None:
    data = dataset()
    import_ndjson_dir(cache, write_folder(tmp_path / "base", [r for r in data if r["resourceType"] != "Encounter"]))
    encounters = [by_id(data, "enc-1") | {"id": f"enc-{i}"} for i in range(5)]
    encounters[2]["subject"] = ref("Patient/ghost")
    importer = BulkImporter(cache, batch_size=100)
    importer.index.exists("patients", "x")  # load the known patients, then plant a lie:
    importer.index.tables["patients"]["ghost"] = {}  # the cache will refuse this reference
    for enc in encounters:
        importer.add(json.dumps(enc).encode())
    result = importer.finish()
    assert result.counts == {"Encounter": 4} and result.quarantined == 1
    with cache.reader() as s:
        assert sorted(s.scalars(select(Encounter.id))) == ["enc-0", "enc-1", "enc-3", "enc-4"]
        q = s.scalars(select(Quarantined)).one()
        assert (q.resource_id, q.reason) == ("enc-2", "refused by the cache (constraint)")


def test_progress_and_cancel_between_batches(cache: Cache, tmp_path: Path) -> None:
    patients = []
    for i in range(23):
        p = by_id(dataset(), "pat-1")
        p["id"] = f"pat-{i}"
        patients.append(p)
    folder = write_folder(tmp_path / "e", patients)
    seen: list[int] = []
    result = import_ndjson_dir(cache, folder, batch_size=5, progress=seen.append, cancel=lambda: len(seen) >= 2)
    assert result.cancelled
    assert seen == [5, 10]
    assert count(cache, "patients") == 10  # what was committed stays committed
    result = import_ndjson_dir(cache, folder, batch_size=5, progress=seen.append)
    assert not result.cancelled and count(cache, "patients") == 23 and result.inserted == 13


def test_gzip_and_oversized_lines(cache: Cache, tmp_path: Path) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    patient = json.dumps(by_id(dataset(), "pat-1")).encode()
    huge = b'{"resourceType":"Patient","id":"p-huge","x":"' + b"a" * (MAX_RESOURCE_BYTES + 10) + b'"}'
    with gzip.open(folder / "Patient.ndjson.gz", "wb") as f:
        f.write(huge + b"\n" + patient + b"\n")
    result = import_ndjson_dir(cache, folder)
    assert result.counts == {"Patient": 1} and result.quarantined == 1
    with cache.reader() as s:
        q = s.scalars(select(Quarantined)).one()
        assert (q.resource_type, q.resource_id, q.reason) == ("Patient", "p-huge", "resource too large")
        assert len(q.raw) <= 64 * 1024


def test_iter_lines_streams(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"a\r\n\n  \n" + b"b" * 50 + b"\nc")
    assert list(iter_lines(path, max_bytes=20)) == [(b"a", False), (b"b" * 22, True), (b"c", False)]


def _validation_reason(resource: dict[str, Any]) -> str | None:
    try:
        validate(resource)
    except InboundError as exc:
        return exc.reason
    return None


def test_memoized_validation_reports_what_full_validation_does() -> None:
    data = dataset()
    memo = ElementMemo()
    with memoized(memo):
        for _ in range(2):  # the second sighting of an element is remembered
            assert [_validation_reason(r) for r in data] == [None] * len(data)
    broken = []
    for r in data:
        for name, value in r.items():
            if isinstance(value, dict):
                broken += [r | {name: value | {"bogus": 1}}, r | {name: 5}, r | {name: [value]}]
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                broken += [r | {name: [*value, None]}, r | {name: [value[0] | {"zz": [1]}, *value[1:]]},
                           r | {name: value[0]}, r | {name: [*value, {"id": []}]}]  # fmt: skip
        broken += [r | {"unknownElement": 1}, {k: v for k, v in r.items() if k != "status"}]
    expected = [_validation_reason(r) for r in broken]
    assert sum(reason is not None for reason in expected) > len(broken) // 2
    with memoized(memo):
        assert [_validation_reason(r) for r in broken] == expected
        assert [_validation_reason(r) for r in data] == [None] * len(data)
