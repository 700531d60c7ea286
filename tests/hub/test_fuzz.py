"""Arbitrary JSON at POST /v1/changes: always a 2xx or 4xx JSON answer, never a 500."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hub import WS, login

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
fields = st.sampled_from(["id", "status", "specialty", "urgency", "patient_id", "checklist", "nope", "\x00", ""])
shaped_change = st.fixed_dictionaries(
    {},
    optional={
        "idempotency_key": st.text(max_size=70) | st.integers() | st.uuids().map(lambda u: u.hex),
        "entity": st.sampled_from(["referrals", "care_transitions", "vendors", "patients", "x"]) | json_values,
        "entity_id": st.text(max_size=70) | json_values,
        "op": st.sampled_from(["upsert", "delete"]) | json_values,
        "payload": st.dictionaries(fields, json_values, max_size=5) | json_values,
        "changed_fields": st.lists(fields, max_size=4) | json_values,
        "base_version": st.none() | st.integers() | st.text(max_size=5) | json_values,
    },
)
bodies = (
    json_values
    | st.fixed_dictionaries(
        {"workstation": st.just(WS) | json_values, "changes": st.lists(shaped_change, max_size=5) | json_values}
    )
    | st.fixed_dictionaries({"workstation": st.just(WS), "changes": st.lists(shaped_change, min_size=1, max_size=5)})
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_json_body_gets_a_json_answer_not_a_500(client, body):
    headers = _headers(client)
    r = client.post("/v1/changes", content=json.dumps(body).encode(), headers=headers)
    assert 200 <= r.status_code < 500 and r.status_code not in range(300, 400), (r.status_code, r.text)
    assert isinstance(r.json(), dict)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_get_a_json_answer_not_a_500(client, raw):
    r = client.post("/v1/changes", content=raw, headers=_headers(client))
    assert 400 <= r.status_code < 500
    assert "detail" in r.json()


def _headers(client) -> dict[str, str]:
    """One login per service instance (hypothesis calls the test many times with one fixture)."""
    state = client.app.state
    if not hasattr(state, "fuzz_headers"):
        state.fuzz_headers = login(client, "coord")
    return state.fuzz_headers
