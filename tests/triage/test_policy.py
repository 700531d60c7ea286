"""Routing: red flags and low confidence go to a person; routine is never auto-routed when uncertain."""

from __future__ import annotations

import json

import pytest

from app.errors import KnownError
from services.triage import (
    AUTO,
    HUMAN,
    EndpointNotCovered,
    TriagePolicy,
    classify,
    model_version,
)
from services.triage.classify import check_endpoint, decide, normalize_endpoint
from services.triage.features import analyze
from services.triage.model import CLASSES, TriageModel

ROUTINE = ("Routine referral for review of well controlled hypertension, stable for years on amlodipine. "
           "No new symptoms. Please see at your convenience.")
EMERGENT = "67M central crushing chest pain at rest for 1 hour radiating to the left arm, sweaty. Ambulance called."


KNOWN_TEXTS = [ROUTINE, EMERGENT, "New breast lump, 2 cm, hard, noticed 2 weeks ago. Please see.",
               "Breast lump, firm, new. Routine please.", "TIA 3 days ago with left arm weakness lasting 15 minutes, fully resolved."]


def fixed_model(routine: float, urgent: float, emergent: float) -> TriageModel:
    """A model that ignores the text: its bias gives these probabilities."""
    import math

    known = {f: (0.0, 0.0, 0.0) for t in KNOWN_TEXTS for f in analyze(t).features}  # recognised, no say
    return TriageModel(CLASSES, (math.log(routine), math.log(urgent), math.log(emergent)), known, 1.0,
                       version="triage-lr-test")  # fmt: skip


def test_red_flag_goes_to_a_person_and_floors_the_urgency():
    s = classify(EMERGENT, model=fixed_model(0.98, 0.01, 0.01))
    assert s.urgency == "emergent"
    assert s.queue == HUMAN
    assert [f.concept for f in s.red_flags][:1] == ["chest_pain_acute"]
    assert any("red flag" in r for r in s.reasons)


def test_urgent_red_flag_floors_routine_to_urgent():
    s = classify("TIA 3 days ago with left arm weakness lasting 15 minutes, fully resolved.", model=fixed_model(0.97, 0.02, 0.01))
    assert s.urgency == "urgent" and s.queue == HUMAN


def test_confident_routine_is_auto():
    s = classify(ROUTINE, TriagePolicy(0.8, 0.9), model=fixed_model(0.96, 0.03, 0.01))
    assert (s.urgency, s.queue) == ("routine", AUTO)


@pytest.mark.parametrize("p_routine", [0.5, 0.7, 0.85, 0.899])
def test_routine_below_its_threshold_goes_to_a_person(p_routine):
    rest = 1 - p_routine
    s = classify(ROUTINE, TriagePolicy(0.5, 0.9), model=fixed_model(p_routine, rest * 0.7, rest * 0.3))
    assert s.urgency == "routine" and s.queue == HUMAN


def test_urgent_below_threshold_goes_to_a_person():
    text = "New breast lump, 2 cm, hard, noticed 2 weeks ago. Please see."
    s = classify(text, TriagePolicy(0.8, 0.9), model=fixed_model(0.1, 0.6, 0.3))
    assert s.queue == HUMAN
    s = classify(text, TriagePolicy(0.5, 0.9), model=fixed_model(0.1, 0.6, 0.3))
    assert (s.urgency, s.queue) == ("urgent", AUTO)


def test_routine_against_an_urgency_indicator_goes_to_a_person():
    s = classify("Breast lump, firm, new. Routine please.", model=fixed_model(0.99, 0.005, 0.005))
    assert s.urgency == "routine" and s.queue == HUMAN
    assert any("indicator" in r for r in s.reasons)


@pytest.mark.parametrize("text", ["", "   ", "see pt", "?", "\x00\x01", "zzqx vbnm qwpo"])
def test_too_little_or_unknown_text_goes_to_a_person(text):
    s = classify(text, model=fixed_model(0.99, 0.005, 0.005))
    assert s.queue == HUMAN


def test_never_auto_routine_when_uncertain_over_a_grid():
    a = analyze(ROUTINE)
    for r in range(1, 100):
        p_r = r / 100
        probs = {"routine": p_r, "urgent": (1 - p_r) / 2, "emergent": (1 - p_r) / 2}
        for thr in (0.5, 0.7, 0.9):
            s = decide(a, probs, TriagePolicy(thr, max(thr, 0.9)))
            if s.urgency == "routine" and s.queue == AUTO:
                assert p_r >= 0.9


def test_missing_model_sends_everything_to_a_person(monkeypatch):
    import importlib

    from services.triage.model import ModelUnavailable

    mod = importlib.import_module("services.triage.classify")

    def unavailable(*_a, **_k):
        raise ModelUnavailable("missing")

    monkeypatch.setattr(mod, "load_model", unavailable)
    s = classify(ROUTINE)
    assert s.queue == HUMAN and s.urgency == "urgent" and s.confidence == 0.0
    assert mod.model_version() == "unavailable"


def test_damaged_model_file_is_a_known_error(tmp_path):
    from services.triage.model import ModelUnavailable, load_model

    for body in ("", "[]", '{"classes": ["a"]}', "{" * 5000):
        path = tmp_path / f"m{len(body)}.json"
        path.write_text(body)
        with pytest.raises(ModelUnavailable):
            load_model(path)


def test_suggestion_is_serialisable_and_names_the_model():
    s = classify(EMERGENT)
    d = s.to_dict()
    assert set(s.summary()) == {"urgency", "confidence", "queue", "reasons"}
    assert json.loads(json.dumps(d))["model_version"].startswith("triage-lr-")
    assert d["model_version"] == model_version()
    assert d["red_flags"][0]["level"] == "emergent"
    assert abs(sum(d["probabilities"].values()) - 1) < 1e-3


def test_reasons_never_echo_the_text():
    canary = "Zebulonius Quackenbush MRN 99887766"
    s = classify(f"{canary} has chest pain at rest. {canary}")
    assert not any("Zebulonius" in r or "Quackenbush" in r or "99887766" in r for r in s.reasons)


# --- external endpoints ------------------------------------------------------------------------------------


def test_external_endpoint_without_baa_is_refused():
    with pytest.raises(EndpointNotCovered):
        TriagePolicy(endpoint="https://llm.example.com/v1/triage")
    with pytest.raises(EndpointNotCovered):
        TriagePolicy(endpoint="https://llm.example.com/v1/triage", baa_endpoints=("https://other.example.com/v1/triage",))


def test_external_endpoint_must_be_https():
    with pytest.raises(EndpointNotCovered):
        check_endpoint("http://llm.example.com/triage", ("http://llm.example.com/triage",))
    check_endpoint("http://127.0.0.1:8080/triage", ("http://127.0.0.1:8080/triage",))  # loopback is fine


def test_endpoint_matching_is_normalised_but_exact():
    assert normalize_endpoint("HTTPS://LLM.Example.com:443/v1/") == "https://llm.example.com/v1"
    check_endpoint("https://llm.example.com/v1/", ("https://LLM.example.com:443/v1",))
    with pytest.raises(EndpointNotCovered):
        check_endpoint("https://llm.example.com/v2", ("https://llm.example.com/v1",))
    with pytest.raises(EndpointNotCovered):
        check_endpoint("https://llm.example.com.evil.test/v1", ("https://llm.example.com/v1",))


def test_covered_endpoint_uses_the_injected_client_and_keeps_the_local_rules():
    policy = TriagePolicy(endpoint="https://llm.example.com/v1", baa_endpoints=("https://llm.example.com/v1",))
    seen = []

    def remote(text):
        seen.append(text)
        return {"routine": 0.97, "urgent": 0.02, "emergent": 0.01}

    s = classify(EMERGENT, policy, remote=remote)
    assert seen == [EMERGENT]
    assert s.urgency == "emergent" and s.queue == HUMAN and s.model_version == "external"
    s = classify(ROUTINE, policy, remote=remote)
    assert s.queue == AUTO and s.urgency == "routine"


def test_covered_endpoint_without_a_client_is_refused():
    policy = TriagePolicy(endpoint="https://llm.example.com/v1", baa_endpoints=("https://llm.example.com/v1",))
    with pytest.raises(KnownError):
        classify(ROUTINE, policy)


def test_a_failing_external_model_goes_to_a_person():
    policy = TriagePolicy(endpoint="https://llm.example.com/v1", baa_endpoints=("https://llm.example.com/v1",))

    def broken(_text):
        raise TimeoutError("remote timed out")

    for remote in (broken, lambda _t: {"routine": 2.0}, lambda _t: {"routine": 0.9, "urgent": 0.9, "emergent": 0.9}):
        s = classify(ROUTINE, policy, remote=remote)
        assert s.queue == HUMAN


def test_policy_from_settings(tmp_path):
    from app.config import Paths, load_settings

    (tmp_path / "config.toml").write_text('baa_endpoints = ["https://llm.example.com/v1"]\n'
                                          '[triage]\nthreshold = 0.7\nroutine_threshold = 0.95\n'
                                          'endpoint = "https://llm.example.com/v1"\n')  # fmt: skip
    p = TriagePolicy.from_settings(load_settings(Paths(tmp_path)))
    assert (p.threshold, p.routine_threshold, p.endpoint) == (0.7, 0.95, "https://llm.example.com/v1")


@pytest.mark.parametrize("body", [
    "[triage]\nthreshold = 1.5\n", "[triage]\nthreshold = 0\n", "[triage]\nthreshold = 0.9\nroutine_threshold = 0.5\n",
    "[triage]\nthreshhold = 0.9\n", '[triage]\nthreshold = "high"\n',
])  # fmt: skip
def test_bad_triage_settings_are_refused(tmp_path, body):
    from app.config import Paths, load_settings
    from app.errors import ConfigError

    (tmp_path / "config.toml").write_text(body)
    with pytest.raises(ConfigError):
        load_settings(Paths(tmp_path))


def test_endpoint_without_baa_in_config_is_refused_when_building_the_policy(tmp_path):
    from app.config import Paths, load_settings

    (tmp_path / "config.toml").write_text('[triage]\nendpoint = "https://llm.example.com/v1"\n')
    with pytest.raises(EndpointNotCovered):
        TriagePolicy.from_settings(load_settings(Paths(tmp_path)))
