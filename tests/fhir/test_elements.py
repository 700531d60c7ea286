"""Minimum necessary: strip() keeps what the mappers read and drops the rest (synthetic data only)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.demo.generate import generate
from sync.fhir.bulk_import import ORDER
from sync.fhir.elements import ELEMENTS, strip
from sync.fhir.mappers import MAPPERS, MappedResource, MemoryLookup, map_resource

from .test_mappers import every_type, json_value, map_all

EXTENSION = [{"url": "http://example.org/fhir/StructureDefinition/secret", "valueString": "CANARY"}]
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">CANARY</div>'}


def enrich(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with what an EHR adds beyond what CareOps reads: all of it valid R4."""
    rich = copy.deepcopy(resource)
    rich["text"] = NARRATIVE
    rich["extension"] = EXTENSION
    rich["meta"] = {**rich.get("meta", {}), "source": "#CANARY", "tag": [{"code": "CANARY"}]}
    rich["implicitRules"] = "http://example.org/CANARY"
    if rich["resourceType"] == "Patient":
        rich["address"] = [{"line": ["1 CANARY Lane"], "city": "Springfield"}]
        rich["photo"] = [{"contentType": "image/png", "data": "Q0FOQVJZ"}]
        rich["contact"] = [{"name": {"family": "CANARY"}}]
        rich["telecom"] = [*rich["telecom"], {"system": "email", "value": "CANARY@example.org"}]
        rich["name"][0]["extension"] = EXTENSION
        rich["_birthDate"] = {"extension": EXTENSION}
    return rich


def test_every_mapped_type_has_its_elements() -> None:
    assert set(ELEMENTS) == set(MAPPERS)


def test_a_rich_resource_maps_the_same_once_stripped_and_loses_the_rest() -> None:
    lookup = map_all(every_type())[0]
    for resource in every_type():
        stripped = strip(enrich(resource))
        assert map_resource(stripped, lookup) == map_resource(resource, lookup), resource["id"]
        assert "CANARY" not in json.dumps(stripped), resource["id"]
        assert set(stripped) <= {"resourceType", "id", "meta", *ELEMENTS[resource["resourceType"]]}
        assert set(stripped["meta"]) <= {"versionId", "lastUpdated"}


def test_a_patient_keeps_phone_numbers_only() -> None:
    patient = next(r for r in every_type() if r["resourceType"] == "Patient")
    stripped = strip(enrich(patient))
    assert [t["system"] for t in stripped["telecom"]] == ["phone", "phone"]
    assert "address" not in stripped and "photo" not in stripped and "_birthDate" not in stripped
    assert "telecom" not in strip({**patient, "telecom": [{"system": "email", "value": "a@example.org"}]})


def test_unknown_types_and_odd_shapes() -> None:
    assert strip({"resourceType": "Observation", "id": "o1", "meta": {"versionId": "2"}, "status": "final"}) == {
        "resourceType": "Observation", "id": "o1"}
    assert strip({"resourceType": ["Patient"], "id": 3, "name": "x"}) == {"resourceType": ["Patient"], "id": 3}
    assert strip({"resourceType": "Patient", "meta": "odd", "telecom": "odd"}) == {
        "resourceType": "Patient", "telecom": "odd"}


def test_strip_leaves_its_input_alone() -> None:
    rich = enrich(every_type()[0])
    before = copy.deepcopy(rich)
    strip(rich)
    assert rich == before


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, scale=0.05)
    return out


def _map_in_order(resources: list[dict[str, Any]]) -> list[MappedResource]:
    lookup = MemoryLookup()
    out = []
    for resource in resources:
        mapped = map_resource(resource, lookup)
        lookup.remember(mapped)
        out.append(mapped)
    return out


def test_every_demo_resource_maps_the_same_once_stripped(demo: Path) -> None:
    resources = [
        json.loads(line)
        for rtype in ORDER
        for line in (demo / f"{rtype}.ndjson").read_text(encoding="utf-8").splitlines()
    ]
    stripped = [strip(r) for r in resources]
    assert _map_in_order(stripped) == _map_in_order(resources)
    assert sum(s != r for s, r in zip(stripped, resources, strict=True)) > 1000  # Encounter.serviceProvider, ...


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*ELEMENTS, "Observation", None, 7]),
       st.dictionaries(st.sampled_from(["id", "meta", "text", "telecom", "name", "status", "extension", "_x"])
                       | st.text(max_size=10), json_value, max_size=8))
def test_strip_never_raises_and_is_idempotent(rtype: Any, body: dict[str, Any]) -> None:
    resource = {**body, "resourceType": rtype}
    out = strip(resource)
    assert set(out) <= {"resourceType", "id", "meta", *ELEMENTS.get(rtype if isinstance(rtype, str) else "", ())}
    assert strip(out) == out
