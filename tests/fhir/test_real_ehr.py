"""The EHR layer end to end against a real FHIR server process on loopback (SEKMET, from PyPI):
`careops ehr pull`, write-back with `careops ehr push`, stale versions, `careops ehr jwks`."""

from __future__ import annotations

import json

import httpx
import pytest

from app.cli import main
from app.cache.models import Referral
from app.config import EhrSettings
from app.workstation import open_workstation
from services.ehr_writeback import ehr_write_states, queue_ehr_write
from sync.fhir import systems
from sync.fhir.client import StaleVersion
from sync.fhir.connect import connect

from .real_server import FHIR_JSON, RealFhirServer
from .test_mappers import every_type


def seed(server: RealFhirServer) -> dict[str, int]:
    """The consistent synthetic set, stored under its own ids (update-as-create)."""
    counts: dict[str, int] = {}
    with httpx.Client(base_url=server.base_url, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}) as http:
        for resource in every_type():
            resource.pop("meta", None)
            r = http.put(f"/{resource['resourceType']}/{resource['id']}", content=json.dumps(resource))
            assert r.status_code in (200, 201), r.text
            counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
    return counts


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_pull_then_write_back_a_task_status(home, capsys, fresh_fhir_server):
    base = fresh_fhir_server.base_url
    expected = seed(fresh_fhir_server)

    code, out = run(capsys, "ehr", "pull", "--base", base, "--vendor", "generic", "--json")
    assert code == 0
    counts = json.loads(out)
    assert counts == dict(sorted(expected.items())) | {"quarantined": 0}

    # A coordinator moves the referral; the change is queued with it and pushed to the EHR's Task.
    ws = open_workstation(home)
    try:
        with ws.cache.unit_of_work(user="casey") as s:
            s.get(Referral, "sr-1").status = "scheduled"
            queue_ehr_write(s, kind="task-status", entity_id="sr-1", user="casey")
    finally:
        ws.close()
    code, out = run(capsys, "ehr", "push", "--base", base, "--vendor", "generic", "--json")
    assert (code, json.loads(out)) == (0, {"sent": 1})
    task = httpx.get(f"{base}/Task/task-1", headers={"Accept": FHIR_JSON}).json()
    assert task["businessStatus"]["coding"][0] == {"system": systems.WORKFLOW, "code": "scheduled"}
    assert task["meta"]["versionId"] == "2"

    # The next pull brings the Task's new version home without changing anything else.
    code, out = run(capsys, "ehr", "pull", "--base", base, "--vendor", "generic", "--json")
    assert code == 0 and json.loads(out)["quarantined"] == 0
    ws = open_workstation(home)
    try:
        with ws.cache.reader() as s:
            referral = s.get(Referral, "sr-1")
            assert (referral.status, referral.ehr_task_status) == ("scheduled", task["status"])
        assert ehr_write_states(ws.cache, "referrals", ["sr-1"])["sr-1"].status == "sent"
        assert any(e.action == "ehr.pull" for e in ws.audit.entries())
    finally:
        ws.close()


def test_a_stale_if_match_is_refused_by_the_real_server(ws, fresh_fhir_server):
    seed(fresh_fhir_server)
    with connect(EhrSettings(base_url=fresh_fhir_server.base_url), ws.cache) as client:
        task = client.read("Task", "task-1")
        client.update(task | {"status": "accepted"}, if_match="1")
        with pytest.raises(StaleVersion):
            client.update(task | {"status": "ready"}, if_match="1")  # version 1 is gone
        assert client.read("Task", "task-1")["status"] == "accepted"


def test_jwks_prints_only_the_public_key(home, capsys):
    code, out = run(capsys, "ehr", "jwks", "--alg", "ES384")
    assert code == 0
    (key,) = json.loads(out)["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-384" and key["kid"] and "d" not in key
    code, again = run(capsys, "ehr", "jwks", "--alg", "ES384")
    assert json.loads(again) == json.loads(out)  # the same key each time: it is what the EHR registered


def test_import_a_bulk_folder_prints_counts(home, capsys, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    expected: dict[str, int] = {}
    for resource in every_type():
        with (folder / f"{resource['resourceType']}.ndjson").open("a") as f:
            f.write(json.dumps(resource) + "\n")
        expected[resource["resourceType"]] = expected.get(resource["resourceType"], 0) + 1
    (folder / "Patient.ndjson").open("a").write('{"resourceType": "Patient", "id": "broken"\n')
    code, out = run(capsys, "ehr", "import", str(folder), "--json")
    assert code == 0
    assert json.loads(out) == dict(sorted(expected.items())) | {"quarantined": 1}


@pytest.mark.parametrize(("argv", "message"), [
    (["ehr", "pull"], "No EHR is configured"),
    (["ehr", "pull", "--base", "http://ehr.example.org/fhir"], "https"),
    (["ehr", "pull", "--base", "https://ehr.example.org/fhir", "--vendor", "athena"], "practice"),
    (["ehr", "pull", "--base", "https://ehr.example.org/fhir", "--auth", "backend"], "client id"),
])
def test_bad_connection_settings_get_a_message_not_a_traceback(home, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
