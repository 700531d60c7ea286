"""Bulk Data $export into the cache: against the real FHIR server (SEKMET) for the whole round trip,
and against a MockTransport handler for the failure paths. Synthetic data only."""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from app.cache.models import Patient, Quarantined, Referral
from app.cache.store import Cache
from sync.fhir import systems
from sync.fhir.bulk_export import (
    ExportFile,
    ExportTimedOut,
    export_into_cache,
    split_lines,
)
from sync.fhir.bulk_import import ORDER, QUARANTINE_RAW_LIMIT
from sync.fhir.client import EhrRefused, EhrUnavailable, FhirClient
from sync.fhir.profiles import get_profile
from sync.fhir.pull import mark_key
from tests.fhir.mock_ehr import CANARY
from tests.fhir.real_server import FHIR_JSON, RealFhirServer
from tests.fhir.test_mappers import by_id, dataset, every_type

BASE = "https://ehr.example.org/fhir/r4"
STATUS = f"{BASE}/bulk-status/job-1"
NOW = "2024-06-01T12:00:00.000Z"


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache.open(tmp_path / "cache.db", os.urandom(32))
    yield c
    c.close()


def line(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode()


def patient(pid: str, mrn: str | None = None) -> dict[str, Any]:
    p = by_id(dataset(), "pat-1")
    p["id"] = pid
    p["identifier"] = [{"system": systems.MRN, "value": mrn or f"MRN-{pid}"}]
    return p


def quarantined(cache: Cache) -> list[Quarantined]:
    with cache.reader() as s:
        return list(s.scalars(select(Quarantined)))


# -- against the real server ----------------------------------------------------------------------


@pytest.fixture
def fhir(real_fhir_server: RealFhirServer) -> Iterator[httpx.Client]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=real_fhir_server.base_url, headers=headers, timeout=10.0) as client:
        yield client


@pytest.fixture
def real_client(real_fhir_server: RealFhirServer) -> Iterator[FhirClient]:
    with FhirClient(real_fhir_server.base_url, get_profile("generic")) as client:
        yield client


def _suffixed(resources: list[dict[str, Any]], sfx: str) -> list[dict[str, Any]]:
    """The resources with ids (and the references to them) unique to one test: the store is shared."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items() if k != "meta"}
            if isinstance(out.get("reference"), str):
                out["reference"] += f"-{sfx}"
            return out
        return [walk(v) for v in value] if isinstance(value, list) else value

    out = [walk(r) for r in resources]
    for r in out:
        r["id"] += f"-{sfx}"
    return out


def _put_all(fhir: httpx.Client, resources: list[dict[str, Any]]) -> str:
    """PUT (update-as-create) each resource; the first one's lastUpdated, to export from."""
    stamps = []
    for r in resources:
        reply = fhir.put(f"/{r['resourceType']}/{r['id']}", json=r)
        assert reply.status_code in (200, 201), reply.text
        stamps.append(reply.json()["meta"]["lastUpdated"])
    return stamps[0]


def test_real_export_lands_everything_then_only_changes(fhir, real_client, cache, real_fhir_server) -> None:
    sfx = uuid.uuid4().hex[:8]
    resources = _suffixed(every_type(), sfx)
    since = _put_all(fhir, resources)

    first = export_into_cache(real_client, cache, since=since, poll_timeout=60)
    assert first.since == since
    assert first.imported.quarantined == 0
    assert first.imported.counts == Counter(r["resourceType"] for r in resources)
    assert [f.type for f in first.files] == sorted({f.type for f in first.files}, key=ORDER.index)
    assert first.errors == 0 and not first.cancelled
    with cache.reader() as s:
        assert s.get(Patient, f"pat-1-{sfx}").mrn == "MRN0001"
        assert s.get(Referral, f"sr-1-{sfx}").patient_id == f"pat-1-{sfx}"
    base = real_fhir_server.base_url
    assert cache.get_meta(mark_key(base, "Patient", what="export.system")) == first.transaction_time

    second = export_into_cache(real_client, cache, poll_timeout=60)
    assert second.since == first.transaction_time
    assert second.imported.lines == 0 and second.files == []

    task = fhir.get(f"/Task/task-1-{sfx}").json()
    assert fhir.put(f"/Task/{task['id']}", json={**task, "status": "completed"}).status_code == 200
    third = export_into_cache(real_client, cache, poll_timeout=60)
    assert third.since == second.transaction_time
    assert third.imported.counts == {"Task": 1} and third.imported.updated == 1


def test_real_export_quarantines_what_our_mapper_refuses(fhir, real_client, cache) -> None:
    sfx = uuid.uuid4().hex[:8]
    org = by_id(dataset(), "org-hosp")
    no_mrn = patient("pat-nomrn")
    no_mrn["identifier"] = [{"system": "urn:other", "value": "X-1"}]  # the server takes it; we need an MRN
    since = _put_all(fhir, _suffixed([org, patient("pat-ok"), no_mrn], sfx))

    result = export_into_cache(real_client, cache, types=["Patient", "Organization"], since=since, poll_timeout=60)
    assert result.imported.counts == {"Organization": 1, "Patient": 1}
    assert result.imported.quarantined_by_type == {"Patient": 1}
    (row,) = quarantined(cache)
    assert row.resource_id == f"pat-nomrn-{sfx}" and "MRN" in row.reason


def test_real_group_export_brings_only_the_members(fhir, real_client, cache) -> None:
    sfx = uuid.uuid4().hex[:8]
    group = {"resourceType": "Group", "id": "grp", "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/pat-in"}}]}
    since = _put_all(fhir, _suffixed([patient("pat-in"), patient("pat-out"), group], sfx))

    result = export_into_cache(
        real_client, cache, level="group", group_id=f"grp-{sfx}", types=["Patient"], since=since, poll_timeout=60
    )
    assert result.imported.counts == {"Patient": 1}
    with cache.reader() as s:
        assert s.get(Patient, f"pat-in-{sfx}") is not None and s.get(Patient, f"pat-out-{sfx}") is None


# -- failure paths against a MockTransport ----------------------------------------------------------


class BulkEhr:
    """A scripted Bulk Data server: kick-off, status (script first, then the manifest), files."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.kickoff = httpx.Response(202, headers={"Content-Location": STATUS})
        self.status: list[httpx.Response] = []  # answered before the manifest, one per poll
        self.pending_forever = False
        self.manifest: dict[str, Any] = {"transactionTime": NOW, "request": f"{BASE}/$export",
                                         "requiresAccessToken": True, "output": [], "error": []}
        self.files: dict[str, tuple[Callable[[], Iterable[bytes]], dict[str, str]]] = {}

    def add(self, rtype: str, lines: list[bytes] | Callable[[], Iterable[bytes]], *,
            error: bool = False, url: str | None = None, gzipped: bool = False) -> None:
        name = f"{len(self.files)}.{rtype}.ndjson"
        headers = {"Content-Type": "application/fhir+ndjson"}
        if callable(lines):
            body = lines
        else:
            data = b"".join(x + b"\n" for x in lines)
            if gzipped:
                data = gzip.compress(data)
                headers["Content-Encoding"] = "gzip"
            body = lambda: [data]
        self.files[name] = (body, headers)
        entry = {"type": rtype, "url": url or f"{BASE}/bulk-files/{name}"}
        self.manifest["error" if error else "output"].append(entry)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/$export"):
            return self.kickoff
        if str(request.url) == STATUS:
            if request.method == "DELETE":
                return httpx.Response(202)
            if self.pending_forever:
                return httpx.Response(202, headers={"Retry-After": "10"})
            return self.status.pop(0) if self.status else httpx.Response(200, json=self.manifest)
        name = path.rsplit("/", 1)[-1]
        if "/bulk-files/" in path and name in self.files:
            body, headers = self.files[name]
            return httpx.Response(200, headers=headers, content=iter(body()))
        return httpx.Response(404)

    def sent(self, method: str = "GET", part: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and part in str(r.url)]


class Clock:
    """Time that passes only by sleeping, for the client's and the export's waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Tokens:
    def __init__(self) -> None:
        self.invalidations = 0

    def authorization(self) -> str:
        return f"Bearer synthetic-token-{self.invalidations}"

    def invalidate(self) -> None:
        self.invalidations += 1


@pytest.fixture
def ehr() -> BulkEhr:
    return BulkEhr()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def run(ehr: BulkEhr, clock: Clock, tokens: Tokens, cache: Cache):
    clients: list[FhirClient] = []

    def run(**kw: Any):
        client = FhirClient(BASE, get_profile("generic"), auth=tokens, transport=httpx.MockTransport(ehr.handler),
                            sleep=clock.sleep, random=lambda: 0.5, max_retries=3)
        clients.append(client)
        kw.setdefault("types", ["Organization", "Patient"])
        return export_into_cache(client, cache, sleep=clock.sleep, clock=clock, **kw)

    yield run
    for c in clients:
        c.close()


def test_kick_off_asks_for_async_ndjson_of_the_types_in_dependency_order(ehr, run, cache) -> None:
    ehr.add("Organization", [line(by_id(dataset(), "org-hosp"))])
    ehr.add("Patient", [line(patient("p-1"))])
    result = run(types=["Patient", "Organization"])
    (kick,) = ehr.sent(part="$export")
    assert kick.headers["Prefer"] == "respond-async" and kick.headers["Accept"] == FHIR_JSON
    assert kick.url.params["_type"] == "Organization,Patient" and "_since" not in kick.url.params
    assert [r.headers["Accept"] for r in ehr.sent(part="/bulk-files/")] == ["application/fhir+ndjson"] * 2
    assert result.files == [ExportFile("Organization", 1), ExportFile("Patient", 1)]
    assert result.imported.counts == {"Organization": 1, "Patient": 1}
    assert result.transaction_time == NOW
    assert len(ehr.sent("DELETE", STATUS)) == 1

    run()  # the stored transactionTime is the next _since ...
    assert ehr.sent(part="$export")[-1].url.params["_since"] == NOW
    run(full=True)  # ... unless a full export is asked for
    assert "_since" not in ehr.sent(part="$export")[-1].url.params


@pytest.mark.parametrize(("level", "group_id", "path"), [
    ("patient", None, "/fhir/r4/Patient/$export"),
    ("group", "grp-1", "/fhir/r4/Group/grp-1/$export"),
])
def test_kick_off_url_per_level(ehr, run, level, group_id, path) -> None:
    run(level=level, group_id=group_id)
    assert ehr.sent(part="$export")[0].url.path == path


def test_a_group_export_needs_a_valid_group_id(ehr, run) -> None:
    with pytest.raises(ValueError, match="Group id"):
        run(level="group", group_id="../x")
    assert ehr.requests == []


def test_kick_off_refused_without_leaking_diagnostics(ehr, run, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"bad _type for {CANARY}"}]}
    ehr.kickoff = httpx.Response(400, json=outcome)
    with pytest.raises(EhrRefused) as err:
        run()
    assert "refused to start the export" in str(err.value) and "invalid" in str(err.value)
    assert err.value.status == 400 and err.value.issue_codes == ("invalid",)
    assert CANARY not in err.value.user_text() and CANARY not in caplog.text
    assert ehr.sent(part="bulk-status") == []


@pytest.mark.parametrize("kickoff", [
    httpx.Response(200, json={"resourceType": "Bundle"}),
    httpx.Response(202),
    httpx.Response(202, headers={"Content-Location": "https://files.example.net/bulk-status/job-1"}),
])
def test_kick_off_needs_202_and_a_status_url_on_the_same_server(ehr, run, kickoff) -> None:
    ehr.kickoff = kickoff
    with pytest.raises(EhrRefused):
        run()
    assert {r.url.host for r in ehr.requests} == {"ehr.example.org"}
    assert len(ehr.requests) == 1


def test_polling_honours_retry_after_through_429_and_503(ehr, run, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ehr.add("Patient", [line(patient("p-1"))])
    ehr.status = [
        httpx.Response(202, headers={"Retry-After": "5", "X-Progress": f"collecting {CANARY}"}),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, headers={"Retry-After": "3"}),
        httpx.Response(202),  # no Retry-After: the export's own backoff (second wait: 2 s)
    ]
    result = run()
    assert clock.sleeps == [5.0, 7.0, 3.0, 2.0]
    assert result.imported.counts == {"Patient": 1}
    assert CANARY not in caplog.text


def test_an_expired_token_mid_poll_is_refreshed(ehr, run, tokens) -> None:
    ehr.add("Patient", [line(patient("p-1"))])
    ehr.status = [httpx.Response(401)]
    assert run().imported.counts == {"Patient": 1}
    assert tokens.invalidations == 1
    assert ehr.sent(part="bulk-status")[-1].headers["Authorization"] == "Bearer synthetic-token-1"


def test_poll_timeout_gives_a_clear_error_and_deletes_the_job(ehr, run, clock, cache) -> None:
    ehr.pending_forever = True
    with pytest.raises(ExportTimedOut, match="did not finish the export"):
        run(poll_timeout=35)
    assert clock.sleeps == [10.0, 10.0, 10.0, 5.0]
    assert len(ehr.sent("DELETE", STATUS)) == 1
    assert cache.get_meta(mark_key(BASE, "Patient", what="export.system")) is None


def test_cancel_while_the_server_prepares(ehr, run, clock) -> None:
    ehr.pending_forever = True
    result = run(cancel=lambda: True)
    assert result.cancelled and result.transaction_time is None
    assert len(ehr.sent(part="bulk-status")) == 1 and len(ehr.sent("DELETE", STATUS)) == 1
    assert clock.sleeps == [] and ehr.sent(part="bulk-files") == []


@pytest.mark.parametrize("foreign", [
    "https://files.example.net/bulk-files/p.ndjson",
    "https://ehr.example.org:8443/bulk-files/p.ndjson",
    "http://ehr.example.org/bulk-files/p.ndjson",
])
def test_an_output_url_on_another_server_refuses_the_whole_manifest(ehr, run, cache, foreign) -> None:
    ehr.add("Organization", [line(by_id(dataset(), "org-hosp"))])
    ehr.add("Patient", [line(patient("p-1"))], url=foreign)
    with pytest.raises(EhrRefused, match="another server"):
        run()
    assert ehr.sent(part="bulk-files") == []  # not even the file on the right server
    assert len(ehr.sent("DELETE", STATUS)) == 1
    assert cache.get_meta(mark_key(BASE, "Patient", what="export.system")) is None


@pytest.mark.parametrize("required", [False, True])
def test_the_token_goes_to_the_files_only_when_the_manifest_requires_it(ehr, run, required) -> None:
    ehr.manifest["requiresAccessToken"] = required
    ehr.add("Patient", [line(patient("p-1"))])
    ehr.add("OperationOutcome", [line({"resourceType": "OperationOutcome", "issue": []})], error=True)
    run()
    assert all("Authorization" in r.headers for r in ehr.sent(part="$export") + ehr.sent(part="bulk-status"))
    files = ehr.sent(part="bulk-files")
    assert len(files) == 2 and all(("Authorization" in r.headers) == required for r in files)


def test_error_file_lines_are_counted_not_kept(ehr, run, cache, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ehr.add("Patient", [line(patient("p-1"))])
    issue = {"severity": "error", "code": "processing", "diagnostics": f"Patient {CANARY} could not be exported"}
    ehr.add("OperationOutcome", [line({"resourceType": "OperationOutcome", "issue": [issue]})] * 2, error=True)
    result = run()
    assert result.errors == 2 and result.imported.counts == {"Patient": 1}
    assert quarantined(cache) == [] and CANARY not in caplog.text


def test_a_garbled_line_is_quarantined_and_the_rest_lands(ehr, run, cache) -> None:
    no_mrn = patient("p-nomrn")
    no_mrn["identifier"] = []
    no_mrn["address"] = [{"line": [f"1 {CANARY} Street"]}]  # not needed: stripped before anything is kept
    ehr.add("Patient", [line(patient("p-1")), b'{"resourceType":"Patient","id":"p-cut","identifier":[{"sys',
                        b"", line(no_mrn), line(patient("p-2"))], gzipped=True)
    result = run()
    assert result.imported.counts == {"Patient": 2} and result.imported.quarantined == 2
    assert result.files == [ExportFile("Patient", 4)]
    rows = {q.resource_id: q for q in quarantined(cache)}
    assert rows["p-cut"].reason == "invalid JSON"
    assert b"Sample" in rows["p-nomrn"].raw and CANARY.encode() not in rows["p-nomrn"].raw


@pytest.mark.parametrize("cancel_at", [1, 2])
def test_cancel_between_files_and_batches(ehr, run, cache, cancel_at) -> None:
    read: list[int] = []

    def patients() -> Iterator[bytes]:
        for i in range(10):
            read.append(i)
            yield line(patient(f"p-{i}")) + b"\n"

    ehr.add("Organization", [line(by_id(dataset(), "org-hosp"))])
    ehr.add("Patient", patients)
    asked: list[bool] = []

    def cancel() -> bool:
        asked.append(True)
        return len(asked) >= cancel_at  # asked after the first file, then after each batch of 3

    result = run(cancel=cancel, batch_size=3)
    assert result.cancelled
    if cancel_at == 1:
        assert ehr.sent(part="Patient.ndjson") == [] and result.imported.counts == {"Organization": 1}
    else:
        assert result.imported.counts == {"Organization": 1, "Patient": 3} and len(read) < 10
    assert len(ehr.sent("DELETE", STATUS)) == 1
    assert cache.get_meta(mark_key(BASE, "Patient", what="export.system")) is None


def test_a_download_broken_off_is_unavailable_and_keeps_no_mark(ehr, run, cache) -> None:
    def body() -> Iterator[bytes]:
        yield line(patient("p-1")) + b"\n"
        raise httpx.ReadError("connection reset")

    ehr.add("Patient", body)
    with pytest.raises(EhrUnavailable, match="broke off"):
        run()
    assert len(ehr.sent("DELETE", STATUS)) == 1
    assert cache.get_meta(mark_key(BASE, "Patient", what="export.system")) is None


def test_an_oversized_line_is_quarantined_without_being_held_whole(ehr, run, cache) -> None:
    chunk = 64 * 1024
    size = 8 * 1024 * 1024

    def body() -> Iterator[bytes]:
        yield line(patient("p-1")) + b"\n"
        yield b'{"resourceType":"Patient","id":"p-huge","name":[{"text":"'
        for _ in range(size // chunk):
            yield b"A" * chunk
        yield b'"}]}\n' + line(patient("p-2")) + b"\n"

    ehr.add("Patient", body)
    tracemalloc.start()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 2
    assert result.imported.counts == {"Patient": 2}
    (row,) = quarantined(cache)
    assert (row.resource_id, row.reason) == ("p-huge", "resource too large")
    assert len(row.raw) == QUARANTINE_RAW_LIMIT


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    crlf=st.booleans(),
)
def test_split_lines_matches_splitting_the_whole_text(lines, cuts, crlf) -> None:
    text = b"".join(x + (b"\r\n" if crlf else b"\n") for x in lines)
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    expected = [(x.rstrip(b"\r"), False) for x in text.split(b"\n") if x.strip()]
    assert list(split_lines(chunks, max_bytes=64)) == expected


def test_split_lines_cuts_an_oversized_line_to_a_prefix() -> None:
    chunks = [b"ok\n", b"x" * 50, b"y" * 50, b"\nlast"]
    assert list(split_lines(chunks, max_bytes=64)) == [
        (b"ok", False), (b"x" * 50 + b"y" * 16, True), (b"last", False)  # kept: at most max_bytes + 2
    ]
