"""Incremental pull from an EHR (MockTransport servers with each vendor's rules) into the cache."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.cache.models import Patient, Quarantined, Referral
from app.cache.store import Cache
from sync.fhir.client import FhirClient
from sync.fhir.profiles import get_profile
from sync.fhir.bulk_import import BulkImporter
from sync.fhir.pull import EhrPull

from .mock_ehr import MockEhr
from .test_client import FakeTokenSource
from .test_mappers import every_type as dataset, ref


@pytest.fixture
def cache(tmp_path: Path):
    c = Cache.open(tmp_path / "cache.db", os.urandom(32))
    yield c
    c.close()


def loaded(ehr: MockEhr) -> MockEhr:
    for resource in dataset():
        resource.pop("meta", None)
        ehr.add(resource)
    return ehr


def client_for(ehr: MockEhr, vendor: str, **kw) -> FhirClient:
    params = {"ah-practice": "Organization/a-1.Practice-1"} if vendor == "athena" else None
    return FhirClient(ehr.base, get_profile(vendor, params=params), transport=ehr.transport(), sleep=lambda s: None, **kw)


def searches(ehr: MockEhr, rtype: str):
    return [r for r in ehr.api_requests("GET") if r.url.path.endswith("/" + rtype)]


def test_generic_pull_lands_everything_and_the_next_pull_asks_only_for_changes(cache):
    ehr = loaded(MockEhr.generic())
    with client_for(ehr, "generic") as client:
        first = EhrPull(client, cache).run()
    expected = {r["resourceType"] for r in dataset()}
    assert set(first.imported.counts) == expected
    assert first.imported.quarantined == 0
    assert first.as_counts()["ServiceRequest"] == 1 and first.as_counts()["quarantined"] == 0
    assert all("_lastUpdated" not in r.url.params for r in searches(ehr, "ServiceRequest"))

    # The EHR changes one referral; the next pull asks by _lastUpdated and updates just that one.
    sr = copy.deepcopy(ehr.store["ServiceRequest"]["sr-1"])
    sr["priority"] = "stat"
    ehr._stamp(sr, "2")
    ehr.store["ServiceRequest"]["sr-1"] = sr
    ehr.requests.clear()
    with client_for(ehr, "generic") as client:
        second = EhrPull(client, cache).run()
    asked = searches(ehr, "ServiceRequest")
    assert asked and all(r.url.params["_lastUpdated"].startswith("ge") for r in asked)
    assert second.imported.updated == 1
    with cache.reader() as s:
        assert s.get(Referral, "sr-1").urgency == "emergent"


def test_the_overlap_window_rereads_recent_changes_without_duplicating_them(cache):
    ehr = loaded(MockEhr.generic())
    with client_for(ehr, "generic") as client:
        EhrPull(client, cache).run()
    with client_for(ehr, "generic") as client:
        again = EhrPull(client, cache).run()  # the newest resources sit inside the 5-minute overlap
    assert again.imported.inserted == 0 and again.imported.updated == 0
    assert again.imported.unchanged == again.imported.accepted > 0


def population(cache, ehr: MockEhr, *ids: str) -> None:
    """What a Group Bulk export gives an Epic site first: the patients (Epic lists none by search)."""
    importer = BulkImporter(cache)
    for rid in ids:
        importer.add(json.dumps(ehr.store["Patient"][rid]).encode())
    importer.finish()


def test_epic_is_asked_per_known_patient_and_a_new_patient_gets_their_whole_history(cache):
    ehr = loaded(MockEhr.epic())
    population(cache, ehr, "pat-1")
    with client_for(ehr, "epic") as client:
        result = EhrPull(client, cache).run()
    assert result.imported.quarantined == 0
    assert all(r.url.params.get("patient") for r in searches(ehr, "ServiceRequest"))
    assert not [r for r in ehr.requests if r.url.path.endswith("/ServiceRequest") and "patient" not in r.url.params]
    assert result.warnings  # Epic's OperationOutcome warnings inside bundles are reported, not imported
    patient_searches = searches(ehr, "Patient")
    assert patient_searches and all(r.url.params.get("_id") for r in patient_searches)
    with cache.reader() as s:
        assert s.get(Referral, "sr-1") is not None

    # A patient the EHR had before the mark, with an old referral: the next pull gets both.
    ehr.add({"resourceType": "Patient", "id": "pat-new", "name": [{"family": "Newcomb"}],
             "identifier": [{"system": "http://careops.example.org/fhir/sid/mrn", "value": "MRN7700001"}]})
    old = ehr.add({"resourceType": "ServiceRequest", "id": "sr-old", "status": "active", "intent": "order",
                   "subject": ref("Patient/pat-new"), "code": {"text": "Cardiology"}, "priority": "routine"})
    old["meta"]["lastUpdated"] = "2000-01-01T00:00:00Z"
    ehr.store["ServiceRequest"]["sr-old"] = old
    population(cache, ehr, "pat-new")
    with client_for(ehr, "epic") as client:
        EhrPull(client, cache).run()
    with cache.reader() as s:
        assert s.get(Patient, "pat-new") is not None
        assert s.get(Referral, "sr-old") is not None


def test_oracle_appointments_are_asked_with_a_closed_date_range(cache):
    ehr = loaded(MockEhr.oracle())
    with client_for(ehr, "oracle") as client:
        result = EhrPull(client, cache).run()
    asked = searches(ehr, "Appointment")
    assert asked
    for request in asked:
        dates = request.url.params.get_list("date")
        assert any(d.startswith("ge") for d in dates) and any(d.startswith("lt") for d in dates)
    assert result.imported.quarantined == 0


def test_athena_searches_carry_the_practice(cache):
    ehr = loaded(MockEhr.athena())
    with client_for(ehr, "athena") as client:
        EhrPull(client, cache).run()
    gets = [r for r in ehr.api_requests("GET") if not r.url.path.endswith("/metadata")]
    assert gets and all(r.url.params.get("ah-practice") == "Organization/a-1.Practice-1" for r in gets)


def test_a_bad_resource_is_quarantined_stripped_and_the_rest_lands(cache):
    ehr = loaded(MockEhr.generic())
    ehr.add({"resourceType": "Patient", "id": "pat-bad", "birthDate": "31/02/1990",  # not a FHIR date
             "identifier": [{"system": "http://careops.example.org/fhir/sid/mrn", "value": "MRN7700002"}],
             "address": [{"line": ["12 Quarantine Lane"]}]})
    with client_for(ehr, "generic") as client:
        result = EhrPull(client, cache).run()
    assert result.imported.quarantined == 1
    with cache.reader() as s:
        row = s.scalars(select(Quarantined)).one()
        assert (row.resource_type, row.resource_id) == ("Patient", "pat-bad")
        assert b"Quarantine Lane" not in row.raw  # minimum necessary: stripped before anything is kept
        assert s.get(Referral, "sr-1") is not None


def test_an_expired_token_mid_pull_is_refreshed_and_the_pull_completes(cache):
    ehr = loaded(MockEhr.generic(require_auth=True, token_lifetime=3))
    tokens = FakeTokenSource(ehr)
    with client_for(ehr, "generic", auth=tokens) as client:
        result = EhrPull(client, cache).run()
    assert result.imported.quarantined == 0
    assert set(result.imported.counts) == {r["resourceType"] for r in dataset()}
    assert tokens.invalidations > 0  # the server said 401 at least once mid-pull


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_hostile = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Patient", "ServiceRequest", "Task", "Encounter", "Appointment", "Slot"])},
    optional={"status": _json, "subject": _json, "identifier": _json, "name": _json, "start": _json,
              "focus": _json, "period": _json, "contained": _json, "text": _json},
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(_hostile, min_size=1, max_size=6))
def test_hostile_resources_in_search_results_are_quarantined_and_nothing_else_is_lost(tmp_path_factory, junk):
    ehr = loaded(MockEhr.generic())
    for resource in junk:
        ehr.add(resource)
    cache = Cache.open(tmp_path_factory.mktemp("c") / "cache.db", os.urandom(32))
    try:
        with client_for(ehr, "generic") as client:
            result = EhrPull(client, cache).run()
        assert result.imported.accepted + result.imported.quarantined == result.imported.lines
        with cache.reader() as s:
            assert s.get(Referral, "sr-1") is not None and s.get(Patient, "pat-1") is not None
    finally:
        cache.close()


def test_a_coordinators_triage_survives_a_new_ehr_version_but_an_escalation_comes_through(cache):
    ehr = loaded(MockEhr.generic())
    with client_for(ehr, "generic") as client:
        EhrPull(client, cache).run()
    with cache.unit_of_work(user="casey") as s:
        referral = s.get(Referral, "sr-1")
        referral.urgency, referral.urgency_source = "urgent", "coordinator"
    with cache.unit_of_work(user="sync", origin="sync") as s:
        s.get(Referral, "sr-1").dirty = False  # pushed to the central service meanwhile

    def new_version(priority: str) -> None:
        sr = copy.deepcopy(ehr.store["ServiceRequest"]["sr-1"])
        sr["priority"] = priority
        ehr._stamp(sr, str(int(sr["meta"]["versionId"]) + 1))
        ehr.store["ServiceRequest"]["sr-1"] = sr
        with client_for(ehr, "generic") as client:
            EhrPull(client, cache).run()

    new_version("routine")  # the referrer's form changed, not the triage decision
    with cache.reader() as s:
        assert s.get(Referral, "sr-1").urgency == "urgent"
    new_version("stat")  # the referrer escalates: that always comes through
    with cache.reader() as s:
        assert s.get(Referral, "sr-1").urgency == "emergent"
