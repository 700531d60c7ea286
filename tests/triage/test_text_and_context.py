"""Tokenisation, abbreviations, typos, and the assertion of findings (negation, family, past, advice)."""

from __future__ import annotations

import pytest

from services.triage.features import analyze
from services.triage.text import correct_word, tokenize


def statuses(text: str, concept: str) -> set[str]:
    return {m.status for m in analyze(text).mentions if m.concept == concept}


def flags(text: str) -> set[str]:
    return {m.concept for m in analyze(text).red_flags}


@pytest.mark.parametrize(("text", "expected"), [
    ("SOB and CP", "shortness of breath and chest pain"),
    ("r/o PE", "rule out pulmonary embolism"),
    ("h/o MI", "history of myocardial infarction"),
    ("c/o haemoptysis", "complains of hemoptysis"),
    ("FHx: IHD", "family history : ihd"),
    ("sats 91% RA", "saturation 91% room air"),
    ("?PE", "query pulmonary embolism"),
    ("62yo M", "62 year old m"),
    ("pain x2/7", "pain 2 days"),
    ("SI joint pain", "sacroiliac joint pain"),
    ("K+ 6.8", "potassium 6.8"),
    ("dolor de pecho", "chest pain"),
])  # fmt: skip
def test_abbreviations_and_shorthand(text, expected):
    assert " ".join(tokenize(text)) == expected


def test_typos_are_corrected_to_lexicon_words_only():
    assert correct_word("breathlesness") == "breathlessness"
    assert correct_word("hematuira") == "hematuria"
    assert correct_word("would") == "would"  # a common word is never "corrected"
    assert " ".join(tokenize("pian in chset")) == "pain in chest"


@pytest.mark.parametrize("text", [
    "Denies chest pain at rest.",
    "No chest pain at rest, no SOB.",
    "Patient denies any chest pain at rest, shortness of breath or palpitations.",
    "Chest pain at rest ruled out as cardiac.",
    "Without chest pain at rest.",
])  # fmt: skip
def test_negated_red_flags_do_not_count(text):
    assert "chest_pain_acute" not in flags(text)
    assert "neg" in statuses(text, "chest_pain_acute")


def test_negation_scope_stops_at_but():
    assert "resp_distress" in flags("No chest pain but SOB at rest since this morning.")
    assert "chest_pain" not in {m.concept for m in analyze("No chest pain but SOB at rest.").affirmed("u")}


def test_suspicion_is_not_negation():
    for text in ("?PE", "r/o PE", "query pulmonary embolism", "PE cannot be excluded", "suspected PE"):
        assert "pulmonary_embolism" in flags(text), text


@pytest.mark.parametrize("text", [
    "Father had MI at 50.", "FHx: father STEMI aged 48.", "Family history of stroke symptoms in her mother.",
    "Her mother had breast cancer.", "Mother died of a subarachnoid haemorrhage.",
])  # fmt: skip
def test_a_relatives_history_is_not_the_patients(text):
    a = analyze(text)
    assert not a.red_flags, [m.concept for m in a.red_flags]


def test_family_scope_ends_at_the_patient():
    assert "chest_pain_acute" in flags("Father had MI at 50 and he now has chest pain at rest.")


def test_relative_as_observer_is_still_the_patient():
    # "wife noticed" reports the patient's finding; it is not the wife's history.
    assert "stroke" in flags("Wife noticed facial droop and slurred speech this morning.")
    assert "confusion_acute" in flags("Mother has noticed acute confusion since yesterday.")


def test_past_history_and_dates():
    assert not flags("PMH: stroke 2015, STEMI 2018.")
    assert not flags("Previous overdose years ago, none since.")
    assert "hist" in statuses("History of GI bleed in 2019.", "gi_bleed_major")


def test_duration_history_is_the_presenting_complaint():
    assert "resp_distress" in flags("3 day history of shortness of breath at rest.")


def test_safety_net_advice_is_hypothetical():
    a = analyze("Safety netted: call 999 if chest pain at rest or facial droop.")
    assert not a.red_flags
    assert "hyp" in statuses("Return if chest pain at rest.", "chest_pain_acute")


def test_transient_symptoms_are_a_tia_not_a_stroke():
    f = flags("Transient slurred speech 3 days ago lasting 10 minutes, fully resolved.")
    assert "tia" in f and "stroke" not in f


def test_vital_signs():
    assert "hypotension" in flags("BP 82/50, HR 120")
    assert "hr_high" in flags("BP 82/50, HR 120")
    assert "low_sats" in flags("sats 88% on air")
    assert not flags("BP 128/76, HR 72, sats 98%, temp 36.8")


def test_no_red_flags_phrase_is_a_routine_marker_not_a_negation_target():
    a = analyze("No red flags. Mechanical back pain.")
    assert "no_red_flags" in {m.concept for m in a.affirmed("r")}
    assert not a.red_flags
