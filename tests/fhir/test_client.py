"""FhirClient against the in-memory vendor servers of mock_ehr.py. No real network."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import ssl

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import KnownError
from sync.fhir import client as client_module
from sync.fhir.client import (
    EhrAuthFailed,
    EhrRefused,
    EhrUnavailable,
    FhirClient,
    InsecureEndpoint,
    NotFhirResponse,
    OutcomeWarning,
    SearchContextMissing,
    StaleVersion,
    WriteNotSupported,
)
from sync.fhir.elements import ELEMENTS
from sync.fhir.profiles import get_profile
from tests.fhir.mock_ehr import BASE, CANARY, MockEhr

ATHENA = {"ah-practice": "Organization/a-1.Practice-1"}
PATIENT = "Patient/pat-1"
SYSTEM = "http://careops.example.org/fhir/sid/task"
MARCH = {"date": ["ge2024-03-01", "lt2024-04-01"]}

# vendor -> (mock factory, profile, parameters a patient's Appointment search needs there)
VENDORS = {
    "generic": (MockEhr.generic, lambda: get_profile("generic"), {}),
    "epic": (MockEhr.epic, lambda: get_profile("epic"), {"patient": PATIENT}),
    "oracle": (MockEhr.oracle, lambda: get_profile("oracle"), {"patient": PATIENT, **MARCH}),
    "athena": (MockEhr.athena, lambda: get_profile("athena", params=ATHENA), {"patient": PATIENT}),
}


class FakeTokenSource:
    """A TokenSource that gets its tokens from the mock's token endpoint."""

    def __init__(self, ehr: MockEhr) -> None:
        self._http = httpx.Client(transport=ehr.transport())
        self._url = ehr.token_url
        self._token: str | None = None
        self.invalidations = 0

    def authorization(self) -> str:
        if self._token is None:
            self._token = self._http.post(self._url).json()["access_token"]
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None
        self.invalidations += 1


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(sleeps):
    made: list[FhirClient] = []

    def make(ehr: MockEhr, profile, **kw) -> FhirClient:
        kw.setdefault("transport", ehr.transport())
        kw.setdefault("max_retries", 3)
        c = FhirClient(ehr.base, profile, sleep=sleeps.append, random=lambda: 0.5, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def seed_appointments(ehr: MockEhr, n: int = 25) -> list[str]:
    ids = []
    for i in range(n):
        ehr.add(
            {
                "resourceType": "Appointment",
                "status": "booked",
                "start": f"2024-03-{1 + i % 28:02d}T09:00:00Z",
                "identifier": [{"system": SYSTEM, "value": f"A{i}"}],
                "comment": "synthetic note, not a minimum-necessary element",
                "participant": [{"actor": {"reference": PATIENT}, "status": "accepted"}],
            }
        )
        ids.append(f"appo-{i + 1}")
    return ids


def vendor(name: str) -> tuple[MockEhr, object, dict]:
    factory, profile, params = VENDORS[name]
    return factory(), profile(), dict(params)


# -- paging --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENDORS)
def test_pages_are_followed_by_next_links_only(name, make):
    ehr, profile, params = vendor(name)
    ids = seed_appointments(ehr)
    client = make(ehr, profile)
    got = [r["id"] for r in client.search("Appointment", {**params, "_count": "7"})]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    searches = ehr.api_requests("GET")[1:]  # after /metadata
    assert len(searches) >= 4
    assert [str(r.url) for r in searches[1:]] == ehr.issued_links
    if name == "oracle":
        assert ehr.repeated > 0  # the server did repeat resources; the client dropped them


def test_page_size_is_capped_by_the_profile(make):
    ehr, profile, params = vendor("epic")
    seed_appointments(ehr, 3)
    list(make(ehr, profile).search("Appointment", {**params, "_count": "500"}))
    assert ehr.api_requests("GET")[1].url.params["_count"] == "50"


def test_a_next_link_to_another_host_is_refused(make):
    ehr = MockEhr.generic()
    seed_appointments(ehr)
    ehr.next_link_base = "https://evil.example.net/fhir/r4"
    with pytest.raises(EhrRefused, match="another server"):
        list(make(ehr, get_profile("generic")).search("Appointment", {"_count": "5"}))
    assert {r.url.host for r in ehr.requests} == {"ehr.example.org"}


@pytest.mark.parametrize("foreign", ["http://ehr.example.org/fhir/r4", "https://ehr.example.org:8443/fhir/r4"])
def test_a_next_link_with_another_scheme_or_port_is_refused(make, foreign):
    ehr = MockEhr.generic()
    seed_appointments(ehr)
    ehr.next_link_base = foreign
    with pytest.raises(EhrRefused):
        list(make(ehr, get_profile("generic")).search("Appointment", {"_count": "5"}))


def test_a_paging_loop_is_stopped(make):
    ehr = MockEhr.generic()
    loop = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": BASE + "/Task?page=2"}]}
    ehr.bundle_override = lambda request: httpx.Response(200, json=loop)
    with pytest.raises(EhrRefused, match="circle"):
        list(make(ehr, get_profile("generic")).search("Task"))


# -- required search context ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [("epic", {}), ("oracle", {"patient": PATIENT}), ("oracle", {"patient": PATIENT, "date": "ge2024-03-01"})],
)
def test_the_client_refuses_a_search_without_the_vendors_context_before_sending(name, params, make):
    ehr, profile, _ = vendor(name)
    with pytest.raises(SearchContextMissing):
        make(ehr, profile).search("Appointment", params)
    assert ehr.requests == []


def test_athena_without_a_configured_practice_is_refused_before_sending(make):
    ehr = MockEhr.athena()
    with pytest.raises(SearchContextMissing, match="settings"):
        make(ehr, get_profile("athena")).search("Patient", {"_id": "a-1.E-1"})
    assert ehr.requests == []


@pytest.mark.parametrize(("name", "status"), [("epic", 400), ("oracle", 400), ("athena", 403)])
def test_the_mock_refuses_a_search_without_context_if_sent_anyway(name, status, make):
    ehr, _, _ = vendor(name)
    with pytest.raises(EhrRefused) as err:
        list(make(ehr, get_profile("generic")).search("Appointment", {"patient": PATIENT} if name == "oracle" else {}))
    assert err.value.status == status
    assert CANARY not in err.value.user_text()  # diagnostics may echo PHI: only the issue code is kept


# -- OperationOutcome inside bundles -------------------------------------------------------------


@pytest.mark.parametrize("name", VENDORS)
def test_outcomes_inside_bundles_become_warnings_not_resources(name, make):
    ehr, profile, params = vendor(name)
    ehr.behaviour.bundle_warning = True
    seed_appointments(ehr, 10)
    client = make(ehr, profile)
    got = list(client.search("Appointment", {**params, "_count": "5"}))
    assert {r["resourceType"] for r in got} == {"Appointment"}
    pages = len(ehr.api_requests("GET")) - 1
    assert client.warnings == [OutcomeWarning("warning", "informational")] * pages
    assert CANARY not in repr(client.warnings)


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENDORS)
def test_429_with_retry_after_is_honoured(name, make, sleeps):
    ehr, profile, params = vendor(name)
    ids = seed_appointments(ehr, 12)
    client = make(ehr, profile)
    client.capabilities()
    ehr.fail(429, retry_after="7", method="GET")
    assert len(list(client.search("Appointment", {**params, "_count": "5"}))) == len(ids)
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured_and_capped(make, sleeps):
    ehr = MockEhr.generic()
    client = make(ehr, get_profile("generic"))
    soon = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True)
    ehr.fail(503, retry_after=soon)
    ehr.fail(503, retry_after="86400")
    client.capabilities()
    assert 25 <= sleeps[0] <= 30
    assert sleeps[1] == client_module.MAX_RETRY_AFTER


@pytest.mark.parametrize("name", VENDORS)
def test_5xx_is_retried_with_backoff_then_ehr_unavailable(name, make, sleeps):
    ehr, profile, params = vendor(name)
    client = make(ehr, profile)
    client.capabilities()
    ehr.fail(503, times=10)
    with pytest.raises(EhrUnavailable):
        list(client.search("Appointment", params))
    assert len(ehr.api_requests("GET")) == 1 + 4  # metadata, then the first try and 3 retries
    assert sleeps == [0.25, 0.5, 1.0]  # full jitter (random=0.5) of 0.5 s doubling


def test_a_short_5xx_burst_is_ridden_out(make, sleeps):
    ehr = MockEhr.generic()
    seed_appointments(ehr, 3)
    client = make(ehr, get_profile("generic"))
    client.capabilities()
    ehr.fail(502, times=2)
    assert len(list(client.search("Appointment"))) == 3
    assert len(sleeps) == 2


def test_transport_errors_are_retried_then_unavailable(make, sleeps):
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    client = make(MockEhr.generic(), get_profile("generic"), transport=httpx.MockTransport(refuse))
    with pytest.raises(EhrUnavailable, match="ConnectError"):
        client.capabilities()
    assert len(sleeps) == 3


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VENDORS)
def test_an_expired_token_mid_pull_is_refreshed_once_and_the_pull_completes(name, make):
    factory, profile, params = VENDORS[name]
    ehr = factory(require_auth=True, token_lifetime=4)
    ids = seed_appointments(ehr, 25)
    auth = FakeTokenSource(ehr)
    client = make(ehr, profile(), auth=auth)
    got = {r["id"] for r in client.search("Appointment", {**params, "_count": "5"})}
    assert got == set(ids)
    assert auth.invalidations == 1
    assert sum(1 for r in ehr.requests if str(r.url) == ehr.token_url) == 2


def test_a_second_401_fails_with_ehr_auth_failed(make):
    ehr = MockEhr.generic(require_auth=True, token_lifetime=0)
    auth = FakeTokenSource(ehr)
    with pytest.raises(EhrAuthFailed):
        make(ehr, get_profile("generic"), auth=auth).capabilities()
    assert auth.invalidations == 1


# -- versioned writes ----------------------------------------------------------------------------


def test_epic_stale_task_update_is_stale_version_on_412(make):
    ehr = MockEhr.epic()
    task = ehr.add({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": PATIENT}})
    client = make(ehr, get_profile("epic"))
    current = client.read("Task", task["id"])
    assert client.version_of("Task", task["id"]) == "1"
    updated = client.update({**current, "status": "accepted"})  # the version read is used
    assert updated["meta"]["versionId"] == "2"
    with pytest.raises(StaleVersion):
        client.update({**current, "status": "completed"}, if_match="1")
    assert ehr.store["Task"][task["id"]]["status"] == "accepted"


def test_oracle_stale_appointment_patch_is_stale_version_on_409(make):
    ehr = MockEhr.oracle()
    appt = ehr.add({"resourceType": "Appointment", "status": "booked", "start": "2024-03-01T09:00:00Z"})
    client = make(ehr, get_profile("oracle"))
    ops = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    patched = client.patch("Appointment", appt["id"], ops, if_match="1")
    assert patched["status"] == "cancelled"
    with pytest.raises(StaleVersion):
        client.patch("Appointment", appt["id"], ops, if_match="1")
    patch_request = ehr.api_requests("PATCH")[0]
    assert patch_request.headers["Content-Type"] == "application/json-patch+json"
    assert patch_request.headers["If-Match"] == 'W/"1"'


def test_oracle_412_is_not_taken_for_a_stale_version(make):
    ehr = MockEhr.oracle()
    ehr.behaviour.stale_status = 412  # Oracle answers 412 to a missing If-Match, not a stale one
    appt = ehr.add({"resourceType": "Appointment", "status": "booked"})
    with pytest.raises(EhrRefused) as err:
        make(ehr, get_profile("oracle")).patch("Appointment", appt["id"], [{"op": "remove", "path": "/status"}], if_match="9")
    assert err.value.status == 412 and not isinstance(err.value, StaleVersion)


def test_generic_update_is_retried_with_the_same_if_match(make, sleeps):
    ehr = MockEhr.generic()
    task = ehr.add({"resourceType": "Task", "status": "requested", "intent": "order"})
    client = make(ehr, get_profile("generic"))
    client.capabilities()
    ehr.fail(503, method="PUT")
    client.update({**task, "status": "accepted"}, if_match="1")
    puts = ehr.api_requests("PUT")
    assert len(puts) == 2 and {p.headers["If-Match"] for p in puts} == {'W/"1"'}


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("epic", lambda c: c.create({"resourceType": "Appointment", "status": "proposed"}, identifier=(SYSTEM, "1"))),
        ("epic", lambda c: c.create({"resourceType": "Task", "status": "requested"}, identifier=(SYSTEM, "1"))),
        ("oracle", lambda c: c.update({"resourceType": "Task", "id": "t1"}, if_match="1")),
        ("athena", lambda c: c.create({"resourceType": "Communication", "status": "completed"}, identifier=(SYSTEM, "1"))),
        ("athena", lambda c: c.patch("Appointment", "a1", [{"op": "remove", "path": "/status"}], if_match="1")),
    ],
)
def test_unsupported_writes_are_refused_without_a_request(name, call, make):
    ehr, profile, _ = vendor(name)
    with pytest.raises(WriteNotSupported, match="does not accept"):
        call(make(ehr, profile))
    assert ehr.requests == []


@pytest.mark.parametrize(
    ("name", "resource", "context"),
    [
        ("generic", {"resourceType": "Task", "status": "requested", "intent": "order"}, None),
        ("epic", {"resourceType": "Communication", "status": "completed"}, None),
        (
            "oracle",
            {"resourceType": "Communication", "status": "completed"},
            {"category": "notification", "recipient": "Practitioner/1", "received": "ge2024-01-01", "-email-status": "completed"},
        ),
    ],
)
def test_search_before_create_returns_the_existing_resource_on_retry(name, resource, context, make, sleeps):
    ehr, profile, _ = vendor(name)
    client = make(ehr, profile)
    client.capabilities()
    ehr.fail(503, method="POST", after_apply=True)  # created, but the answer is lost
    resource = {**resource, "identifier": [{"system": SYSTEM, "value": "W-1"}]}
    created = client.create(resource, identifier=(SYSTEM, "W-1"), context=context)
    rtype = resource["resourceType"]
    assert len(ehr.store[rtype]) == 1 and created["id"] in ehr.store[rtype]
    assert len(ehr.api_requests("POST")) == 1
    again = client.create(resource, identifier=(SYSTEM, "W-1"), context=context)
    assert again["id"] == created["id"] and len(ehr.api_requests("POST")) == 1


def test_create_sends_if_none_exist_only_when_the_capability_says_conditional_create(make):
    generic, epic = MockEhr.generic(), MockEhr.epic()
    for ehr, profile, rtype in ((generic, get_profile("generic"), "Task"), (epic, get_profile("epic"), "Communication")):
        make(ehr, profile).create(
            {"resourceType": rtype, "identifier": [{"system": SYSTEM, "value": "a|b"}]}, identifier=(SYSTEM, "a|b")
        )
    assert generic.api_requests("POST")[0].headers["If-None-Exist"].startswith("identifier=")
    assert "If-None-Exist" not in epic.api_requests("POST")[0].headers


def test_create_does_not_trust_a_server_that_ignores_the_identifier_parameter(make):
    ehr = MockEhr.generic()
    ehr.add({"resourceType": "Task", "status": "requested", "identifier": [{"system": SYSTEM, "value": "OTHER"}]})
    ehr.bundle_override = lambda r: httpx.Response(
        200, json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": next(iter(ehr.store["Task"].values()))}]}
    )
    created = make(ehr, get_profile("generic")).create(
        {"resourceType": "Task", "identifier": [{"system": SYSTEM, "value": "MINE"}]}, identifier=(SYSTEM, "MINE")
    )
    assert created["identifier"][0]["value"] == "MINE" and len(ehr.store["Task"]) == 2


def test_no_transactions_are_ever_sent(make):
    ehr = MockEhr.generic()
    make(ehr, get_profile("generic")).create({"resourceType": "Task"}, identifier=(SYSTEM, "1"))
    assert all(r.url.path != "/fhir/r4" and r.url.path != "/fhir/r4/" for r in ehr.requests)


# -- capability overrides ------------------------------------------------------------------------


def test_a_write_the_capability_lacks_is_refused(make):
    ehr = MockEhr.generic()
    ehr.capability = {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "resource": [{"type": "Task", "interaction": [{"code": "read"}, {"code": "search-type"}]}]}],
    }
    client = make(ehr, get_profile("generic"))
    with pytest.raises(WriteNotSupported):
        client.create({"resourceType": "Task"}, identifier=(SYSTEM, "1"))
    assert [r.url.path for r in ehr.requests] == ["/fhir/r4/metadata"]
    with pytest.raises(EhrRefused, match="does not offer"):
        client.search("Encounter")  # not listed: no reads


def test_a_vendor_write_the_capability_lacks_is_refused(make):
    ehr = MockEhr.epic()
    ehr.behaviour.writes = {"Communication": {"create"}}  # this site has Task updates switched off
    client = make(ehr, get_profile("epic"))
    with pytest.raises(WriteNotSupported):
        client.update({"resourceType": "Task", "id": "t1"}, if_match="1")
    assert ehr.api_requests("PUT") == []


def test_elements_are_asked_for_only_when_supported(make):
    generic, epic = MockEhr.generic(), MockEhr.epic()
    for ehr in (generic, epic):
        seed_appointments(ehr, 2)
    got = list(make(generic, get_profile("generic")).search("Appointment"))
    assert generic.api_requests("GET")[1].url.params["_elements"] == ",".join(ELEMENTS["Appointment"])
    assert "comment" not in got[0] and got[0]["participant"]  # the server honoured _elements
    list(make(epic, get_profile("epic")).search("Appointment", {"patient": PATIENT}))
    assert "_elements" not in epic.api_requests("GET")[1].url.params


# -- transport security --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://ehr.example.org/fhir", "http://127.0.0.1.evil.example/fhir", "ftp://ehr.example.org", "https://"]
)
def test_insecure_endpoints_are_refused(url):
    with pytest.raises(InsecureEndpoint):
        FhirClient(url, get_profile("generic"))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/fhir", "http://127.3.4.5/fhir", "http://[::1]:9/fhir", "http://localhost/fhir"])
def test_plain_http_is_accepted_on_loopback(url):
    FhirClient(url, get_profile("generic")).close()


def test_https_verifies_certificates_with_tls_1_2_or_higher(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_self_signed_ca_pem())
    plain = FhirClient("https://ehr.example.org/fhir", get_profile("generic"))
    extra = FhirClient("https://ehr.example.org/fhir", get_profile("generic"), ca_file=str(ca))
    for c in (plain, extra):
        ctx = c.ssl_context
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        c.close()
    assert extra.ssl_context.cert_store_stats()["x509_ca"] == plain.ssl_context.cert_store_stats()["x509_ca"] + 1


def _self_signed_ca_pem() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CareOps test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# -- hostile responses ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
_bundle_parts = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle")},
    optional={
        "entry": _json_values | st.lists(st.fixed_dictionaries({}, optional={"resource": _json_values, "search": _json_values})),
        "link": _json_values
        | st.lists(st.fixed_dictionaries({"relation": st.sampled_from(["next", "self"]), "url": _json_values | st.text(max_size=30)})),
    },
)


def _serve_once(body: bytes) -> FhirClient:
    caps = json.dumps({"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": [{"type": "Task"}]}]})

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=caps.encode() if request.url.path.endswith("metadata") else body)

    return FhirClient(BASE, get_profile("generic"), transport=httpx.MockTransport(handler), max_retries=0, sleep=lambda s: None)


@given(st.one_of(_json_values.map(lambda v: json.dumps(v).encode()), _bundle_parts.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
@settings(max_examples=300, deadline=None)
def test_hostile_search_responses_give_a_known_error_never_a_crash(body):
    with _serve_once(body) as client:
        try:
            for resource in client.search("Task"):
                assert isinstance(resource, dict)
        except KnownError:
            pass


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"resourceType": "Patient"}', b"[" * 5000, b'{"a": 1' + b"0" * 5000 + b"}"])
def test_malformed_or_non_bundle_responses_are_not_fhir(body):
    with _serve_once(body) as client, pytest.raises(NotFhirResponse, match="not FHIR"):
        list(client.search("Task"))


def test_responses_are_capped_in_size(monkeypatch):
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 100)
    with _serve_once(b" " * 200) as client, pytest.raises(EhrRefused, match="too large"):
        list(client.search("Task"))


# -- no PHI in logs or messages ------------------------------------------------------------------


def test_logs_carry_no_token_query_or_body(make, caplog):
    caplog.set_level(logging.DEBUG, logger="sync.fhir.client")
    ehr = MockEhr.epic(require_auth=True, token_lifetime=3)
    seed_appointments(ehr, 12)
    client = make(ehr, get_profile("epic"), auth=FakeTokenSource(ehr))
    ehr.fail(503, method="GET")
    list(client.search("Appointment", {"patient": PATIENT, "_count": "4"}))
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "sync.fhir.client")
    assert "Appointment" in text and "200" in text
    for secret in ("tok-", "pat-1", "Patient/", "?", SYSTEM, CANARY):
        assert secret not in text
