"""Vendor profiles: the facts each holds, search context rules, CapabilityStatement overrides."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ConfigError
from sync.fhir import profiles
from sync.fhir.profiles import Capabilities, get_profile

ATHENA = {"ah-practice": "Organization/a-1.Practice-1"}


def caps(*resources: dict, rest_params: tuple[str, ...] = ()) -> Capabilities:
    return Capabilities.parse(
        {
            "resourceType": "CapabilityStatement",
            "fhirVersion": "4.0.1",
            "rest": [{"mode": "server", "resource": list(resources), "searchParam": [{"name": p} for p in rest_params]}],
        }
    )


def res(rtype: str, *codes: str, params: tuple[str, ...] = (), conditional: bool = False) -> dict:
    return {
        "type": rtype,
        "interaction": [{"code": c} for c in ("read", "search-type", *codes)],
        "searchParam": [{"name": p} for p in params],
        "conditionalCreate": conditional,
    }


def test_every_named_profile_exists_and_unknown_names_list_the_valid_ones():
    assert [get_profile(n).name for n in profiles.PROFILE_NAMES] == ["generic", "epic", "oracle", "athena"]
    with pytest.raises(ConfigError) as err:
        get_profile("meditech")
    assert all(n in str(err.value) for n in profiles.PROFILE_NAMES)


def test_only_athena_takes_a_configured_search_parameter():
    assert get_profile("athena", params=ATHENA).fixed_params == (("ah-practice", ATHENA["ah-practice"]),)
    with pytest.raises(ConfigError):
        get_profile("epic", params=ATHENA)
    with pytest.raises(ConfigError):
        get_profile("athena", params={"practice": "1"})


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("epic").max_page_size = 1000  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "rtype", "interaction", "allowed"),
    [
        ("epic", "Task", "update", True),
        ("epic", "Task", "create", False),
        ("epic", "Communication", "create", True),
        ("epic", "Appointment", "create", False),  # booked through $book, not a create
        ("oracle", "Appointment", "create", True),
        ("oracle", "Appointment", "patch", True),
        ("oracle", "Communication", "create", True),
        ("oracle", "Task", "create", False),
        ("oracle", "Task", "update", False),
        ("athena", "Task", "create", False),
        ("athena", "Appointment", "update", False),
        ("generic", "Task", "create", True),
        ("generic", "Appointment", "update", True),
    ],
)
def test_default_writes(name, rtype, interaction, allowed):
    assert get_profile(name).allows(rtype, interaction) is allowed


@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_nobody_accepts_transactions_and_reads_are_open_until_the_capability_is_known(name):
    profile = get_profile(name)
    assert not profile.allows("Bundle", "transaction")
    assert profile.allows("Patient", "read") and profile.allows("Encounter", "search")


def test_vendor_differences():
    generic, epic, oracle, athena = (get_profile(n) for n in profiles.PROFILE_NAMES)
    assert (generic.stale_version_status, epic.stale_version_status, oracle.stale_version_status) == (
        {409, 412}, {412}, {409},
    )  # fmt: skip
    assert oracle.repeats_across_pages and not (generic.repeats_across_pages or epic.repeats_across_pages)
    assert epic.max_page_size < generic.max_page_size
    assert "https://fhir.athena.io/StructureDefinition/ah-practice" in athena.notable_extensions


@pytest.mark.parametrize(
    ("name", "rtype", "params", "complete"),
    [
        ("epic", "Encounter", [], False),
        ("epic", "Encounter", [("patient", "Patient/p1")], True),
        ("epic", "Task", [("_id", "t1")], True),
        ("epic", "Patient", [("identifier", "x|1")], True),
        ("oracle", "Appointment", [("patient", "p1")], False),
        ("oracle", "Appointment", [("patient", "p1"), ("date", "ge2024-03-01")], False),
        ("oracle", "Appointment", [("location", "l1"), ("date", "ge2024-03-01"), ("date", "lt2024-04-01")], True),
        ("oracle", "Appointment", [("date", "ge2024-03-01"), ("date", "lt2024-04-01")], False),
        ("oracle", "Encounter", [("subject:Patient", "p1")], True),
        ("oracle", "Communication", [("category", "notification"), ("recipient", "Practitioner/1")], False),
        ("athena", "Patient", [("_id", "a-1.E-1")], False),  # the practice is needed even by id
        ("athena", "Patient", [("ah-practice", "Organization/a-1.Practice-1")], True),
        ("generic", "Appointment", [], True),
    ],
)
def test_search_context(name, rtype, params, complete):
    assert (get_profile(name).missing_context(rtype, params) is None) is complete


def test_missing_context_says_what_is_missing():
    rule, missing = get_profile("oracle").missing_context("Appointment", [("patient", "p1")])
    assert "date" in missing and not rule.from_config
    rule, missing = get_profile("athena").missing_context("Patient", [])
    assert "ah-practice" in missing and rule.from_config


def test_capability_narrows_vendor_writes_and_reads():
    effective = get_profile("oracle").with_capabilities(caps(res("Appointment", "create"), res("Patient")))
    assert effective.allows("Appointment", "create")
    assert not effective.allows("Appointment", "patch")  # the vendor allows it, this server does not
    assert not effective.allows("Encounter", "read")  # not listed: no reads
    assert effective.allows("Patient", "search")


def test_capability_cannot_widen_vendor_rules():
    effective = get_profile("epic").with_capabilities(caps(res("Appointment", "create", "update"), res("Task", "create")))
    assert not effective.allows("Appointment", "create")
    assert not effective.allows("Task", "create")


def test_for_the_generic_profile_the_capability_is_the_truth():
    effective = get_profile("generic").with_capabilities(caps(res("Task", "patch"), res("Communication")))
    assert effective.allows("Task", "patch")
    assert not effective.allows("Task", "create")
    assert not effective.allows("Communication", "create")


def test_elements_summary_and_conditional_create_come_from_the_capability():
    base = get_profile("generic")
    assert not base.elements_supported("Patient")  # unknown until the capability says so
    effective = base.with_capabilities(
        caps(res("Patient", params=("_elements",)), res("Task", "create", conditional=True), rest_params=("_summary",))
    )
    assert effective.elements_supported("Patient") and not effective.elements_supported("Task")
    assert effective.summary_supported("Patient") and effective.summary_supported("Task")
    assert effective.conditional_create == {"Task"}
    fixed = dataclasses.replace(base, supports_elements=False).with_capabilities(caps(res("Patient", params=("_elements",))))
    assert not fixed.elements_supported("Patient")  # a vendor rule outranks the capability


_KEYS = st.sampled_from(["rest", "resource", "type", "interaction", "code", "mode", "searchParam", "name", "conditionalCreate"])
_CAPABILITY_PARTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)


@given(_CAPABILITY_PARTS)
@settings(max_examples=200, deadline=None)
def test_hostile_capability_statements_parse_or_raise_value_error(body):
    doc = {"resourceType": "CapabilityStatement", "rest": body}
    parsed = Capabilities.parse(doc)  # odd parts are skipped, never a crash
    get_profile("generic").with_capabilities(parsed)
    with pytest.raises(ValueError):
        Capabilities.parse(body if not isinstance(body, dict) else {**body, "resourceType": "Bundle"})


@pytest.mark.parametrize(
    ("factory", "domains"),
    [
        (profiles.epic_profile, ("open.epic.com",)),
        (profiles.oracle_profile, ("fhir.cerner.com", "docs.oracle.com")),
        (profiles.athena_profile, ("fhir.athena.io",)),
    ],
)
def test_each_vendor_profile_cites_its_documentation(factory, domains):
    doc = inspect.getdoc(factory) or ""
    assert all(d in doc for d in domains)
