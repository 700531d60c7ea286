"""The real FHIR server (SEKMET, tools/fhir-server) does what the EHR client tests will rely on.

Plain httpx on purpose: these tests pin down the server's behaviour, so that a later client test against it
fails for the client's reasons, not the server's. Tests that record a gap (something real EHRs differ on)
say so in their names and docstrings. Every test tags or identifies its own resources, since the server is
shared by the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fhir.real_server import FHIR_JSON, RealFhirServer, unique

TAG_SYSTEM = "urn:careops:test-run"
MRN_SYSTEM = "urn:careops:test:mrn"
REFERRAL_SYSTEM = "urn:careops:test:referral"
EXPORT_TIMEOUT = 30.0


@pytest.fixture
def fhir(real_fhir_server: RealFhirServer) -> Iterator[httpx.Client]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=real_fhir_server.base_url, headers=headers, timeout=10.0) as client:
        yield client


def _patient(tag: str, mrn: str, family: str = "Synthetic") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]},
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "unknown",
        "birthDate": "1970-01-01",
    }


def _create(fhir: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = fhir.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def _next(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)


def test_starts_on_loopback_and_serves_an_r4_capability_statement(
    real_fhir_server: RealFhirServer, fhir: httpx.Client
) -> None:
    assert real_fhir_server.base_url.startswith("http://127.0.0.1:")
    r = fhir.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(FHIR_JSON)
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["software"]["name"] == "SEKMET FHIR R4 Tester"
    rest = cs["rest"][0]
    assert {"export", "validate"} <= {op["name"] for op in rest.get("operation", [])}
    assert {"transaction", "batch"} <= {i["code"] for i in rest.get("interaction", [])}
    by_type = {res["type"]: res for res in rest["resource"]}
    for rtype in ("Patient", "ServiceRequest", "Task"):
        res = by_type[rtype]
        assert {"read", "vread", "update", "create", "search-type", "history-instance"} <= {
            i["code"] for i in res["interaction"]
        }
        assert res["versioning"] == "versioned-update"  # advertises If-Match support
        assert {"_lastUpdated", "identifier"} <= {p["name"] for p in res["searchParam"]}


def test_create_read_with_version_meta_location_and_etag(fhir: httpx.Client) -> None:
    r = fhir.post("/Patient", json=_patient(unique("tag"), unique("mrn")))
    assert r.status_code == 201
    created = r.json()
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"].endswith("Z")  # UTC, millisecond precision
    assert r.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["last-modified"]

    r = fhir.get(f"/Patient/{pid}")
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"1"'
    assert r.json()["meta"] == created["meta"]
    assert fhir.get(f"/Patient/{pid}/_history/1").status_code == 200

    missing = fhir.get(f"/Patient/{unique('missing')}")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_referral_patient_service_request_and_task(fhir: httpx.Client) -> None:
    tag = unique("tag")
    patient = _create(fhir, _patient(tag, unique("mrn")))
    referral_id = unique("ref")
    sr = _create(fhir, {
        "resourceType": "ServiceRequest",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]},
        "identifier": [{"system": REFERRAL_SYSTEM, "value": referral_id}],
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "code": {"text": "Referral to physiotherapy"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": "2026-01-05T09:30:00Z",
    })
    task = _create(fhir, {
        "resourceType": "Task",
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]},
        "status": "requested",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{sr['id']}"},
        "for": {"reference": f"Patient/{patient['id']}"},
    })

    r = fhir.get("/ServiceRequest", params={"identifier": f"{REFERRAL_SYSTEM}|{referral_id}"})
    assert _ids(r.json()) == [sr["id"]]
    r = fhir.get("/Task", params={"focus": f"ServiceRequest/{sr['id']}", "_include": "Task:focus"})
    bundle = r.json()
    assert _ids(bundle) == [task["id"]]
    included = [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert included == [sr["id"]]
    # Server-side simulator is off (tools/fhir-server/settings.yaml): nobody else touches our Task.
    assert fhir.get(f"/Task/{task['id']}").json()["meta"]["versionId"] == "1"


def test_search_count_pages_through_next_links(fhir: httpx.Client) -> None:
    tag = unique("tag")
    created = {_create(fhir, _patient(tag, unique("mrn")))["id"] for _ in range(5)}

    r = fhir.get("/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "_count": 2})
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 5
    pages: list[list[str]] = []
    while True:
        pages.append(_ids(bundle))
        url = _next(bundle)
        if url is None:
            break
        assert url.startswith(str(fhir.base_url).rstrip("/") + "/Patient?")  # absolute, same base
        assert "_offset=" in url  # offset paging: no server-side snapshot of the result set
        bundle = fhir.get(url).json()
        assert len(pages) < 10
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [pid for page in pages for pid in page]
    assert len(seen) == len(set(seen)) and set(seen) == created


def test_last_updated_gt_and_ge(fhir: httpx.Client) -> None:
    tag = unique("tag")
    first = _create(fhir, _patient(tag, unique("mrn")))
    time.sleep(0.01)  # lastUpdated has millisecond precision
    later = {_create(fhir, _patient(tag, unique("mrn")))["id"] for _ in range(2)}
    t = first["meta"]["lastUpdated"]

    def search(value: str) -> set[str]:
        r = fhir.get("/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "_lastUpdated": value, "_count": 100})
        assert r.status_code == 200, r.text
        return set(_ids(r.json()))

    assert search(f"gt{t}") == later
    assert search(f"ge{t}") == later | {first["id"]}
    assert search(f"lt{t}") == set()
    # Precision is honoured as a range: gt a whole second excludes everything inside that second.
    second = t[:19]
    assert first["id"] not in search(f"gt{second}Z")
    assert first["id"] in search(f"ge{second}Z")
    # A timezone offset is accepted (httpx percent-encodes the '+').
    assert first["id"] in search(f"ge{second}+00:00")
    # An updated resource moves past the cursor: the basis of incremental polling.
    updated = {**first, "active": True}
    assert fhir.put(f"/Patient/{first['id']}", json=updated).status_code == 200
    newest = max(fhir.get(f"/Patient/{i}").json()["meta"]["lastUpdated"] for i in later)
    assert search(f"gt{newest}") == {first["id"]}
    bad = fhir.get("/Patient", params={"_lastUpdated": "gtyesterday"})
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"


def test_update_with_if_match_stale_version_is_412(fhir: httpx.Client) -> None:
    p = _create(fhir, _patient(unique("tag"), unique("mrn")))
    pid = p["id"]
    r = fhir.put(f"/Patient/{pid}", json={**p, "active": True}, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'

    stale = fhir.put(f"/Patient/{pid}", json={**p, "active": False}, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    outcome = stale.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "conflict"
    assert fhir.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "2"  # nothing written

    assert fhir.put(f"/Patient/{pid}", json={**p, "active": False}, headers={"If-Match": '"2"'}).status_code == 200
    # If-Match is optional: an update without it is last-writer-wins (as on most EHRs).
    r = fhir.put(f"/Patient/{pid}", json={**p, "active": True})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "4"
    assert fhir.get(f"/Patient/{pid}/_history").json()["total"] == 4


def test_identifier_search(fhir: httpx.Client) -> None:
    mrn = unique("mrn")
    p = _create(fhir, _patient(unique("tag"), mrn))

    def total(value: str) -> int:
        r = fhir.get("/Patient", params={"identifier": value})
        assert r.status_code == 200
        return r.json()["total"]

    assert total(f"{MRN_SYSTEM}|{mrn}") == 1
    assert _ids(fhir.get("/Patient", params={"identifier": f"{MRN_SYSTEM}|{mrn}"}).json()) == [p["id"]]
    assert total(mrn) == 1  # value alone, any system
    assert total(f"urn:other|{mrn}") == 0
    assert total(f"{MRN_SYSTEM}|{unique('absent')}") == 0


def test_conditional_create_and_update_by_identifier(fhir: httpx.Client) -> None:
    tag, mrn = unique("tag"), unique("mrn")
    ident = f"{MRN_SYSTEM}|{mrn}"
    first = fhir.post("/Patient", json=_patient(tag, mrn), headers={"If-None-Exist": f"identifier={ident}"})
    assert first.status_code == 201
    again = fhir.post("/Patient", json=_patient(tag, mrn), headers={"If-None-Exist": f"identifier={ident}"})
    assert again.status_code == 200  # matched: nothing created
    assert again.json()["id"] == first.json()["id"]
    r = fhir.put("/Patient", params={"identifier": ident}, json={**_patient(tag, mrn), "active": False})
    assert r.status_code == 200
    assert r.json()["id"] == first.json()["id"] and r.json()["meta"]["versionId"] == "2"


def test_bulk_data_export_kick_off_poll_and_ndjson(fhir: httpx.Client) -> None:
    p = _create(fhir, _patient(unique("tag"), unique("mrn")))
    no_prefer = fhir.get("/$export")
    assert no_prefer.status_code == 400  # Bulk Data requires Prefer: respond-async

    r = fhir.get("/$export", params={"_type": "Patient", "_since": p["meta"]["lastUpdated"]},
                 headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    status_url = r.headers["content-location"]
    deadline = time.monotonic() + EXPORT_TIMEOUT
    while True:
        s = fhir.get(status_url, headers={"Accept": "application/json"})
        if s.status_code != 202:
            break
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.1)
    assert s.status_code == 200, s.text
    manifest = s.json()
    assert manifest["requiresAccessToken"] is False
    assert manifest["transactionTime"]
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    f = fhir.get(manifest["output"][0]["url"])
    assert f.status_code == 200
    assert f.headers["content-type"].startswith("application/fhir+ndjson")
    assert p["id"] in {line.split('"id":"', 1)[1].split('"', 1)[0] for line in f.text.splitlines() if '"id":"' in line}

    assert fhir.delete(status_url).status_code == 202
    assert fhir.get(status_url).status_code == 404


# -- Gaps: where this server is laxer than a production EHR. The client must not rely on these. --


def test_gap_unknown_search_parameters_are_silently_ignored(fhir: httpx.Client) -> None:
    """Like HAPI's default (handling=lenient): an unknown parameter widens the search instead of failing."""
    tag = unique("tag")
    _create(fhir, _patient(tag, unique("mrn")))
    r = fhir.get("/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "no-such-param": "x"})
    assert r.status_code == 200
    assert r.json()["total"] == 1
    self_link = next(link["url"] for link in r.json()["link"] if link["relation"] == "self")
    assert "no-such-param" not in self_link  # the self link shows what was actually applied


def test_gap_no_referential_integrity_or_code_validation(fhir: httpx.Client) -> None:
    """HAPI rejects dangling references by default and Epic/Cerner reject bad codes; this server stores both."""
    dangling = fhir.post("/Task", json={
        "resourceType": "Task", "status": "requested", "intent": "order",
        "for": {"reference": f"Patient/{unique('missing')}"},
    })
    assert dangling.status_code == 201
    bad_code = fhir.post("/Task", json={"resourceType": "Task", "status": "not-a-status", "intent": "order"})
    assert bad_code.status_code == 201
    # Structure is validated, though: unknown elements are a 400 with an OperationOutcome.
    bad_shape = fhir.post("/Patient", json={"resourceType": "Patient", "notAnElement": 1})
    assert bad_shape.status_code == 400
    assert bad_shape.json()["issue"][0]["expression"] == ["Patient.notAnElement"]
