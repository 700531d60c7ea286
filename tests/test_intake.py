"""Referral intake: suggestions with exact spans from letters of many layouts, patient matching
through the cache with audit, and a draft that holds only what the coordinator reviewed.

All people, numbers and organisations here and in tests/data/referral_letters are synthetic."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.cache.models import OutboxEntry, Patient
from app.errors import AccessDenied, ValidationError
from app.security.roles import Role
from services.context import ServiceContext
from services.intake import (
    FIELDS,
    REVIEW_FIELDS,
    Decision,
    IntakeReview,
    accept,
    extract,
    match_patient,
)

LETTERS = Path(__file__).parent / "data" / "referral_letters"
TODAY = dt.date(2024, 6, 1)
D = dt.date


def letter(name: str) -> str:
    return (LETTERS / name).read_text(encoding="utf-8")


def ex(text: str):
    return extract(text, today=TODAY)


def value(x, field: str):
    f = x.urgency if field == "urgency" else getattr(x, field)
    return None if f is None else f.value


# --- the letters in tests/data ----------------------------------------------------------------

# The best suggestion per field; fields not named are not checked here.
EXPECTED: dict[str, dict[str, object]] = {
    "01_us_letterhead_re_line.txt": dict(
        patient_name="Jane Q. Doe", birth_date=D(1961, 3, 4), mrn="1234567", specialty="Cardiology",
        payer="Great Plains Health Insurance", plan="Great Plains PPO 1500", member_id="GPH-2231098",
        referring_clinician="Alan R. Whitcombe", referring_org="Riverside Family Medicine", urgency="urgent"),
    "02_uk_gp_2ww.txt": dict(
        patient_name="Margaret Ellison", birth_date=D(1948, 7, 14), mrn="9434765919", specialty="Hematology",
        payer=None, referring_clinician="Priya Raman", referring_org="Oakfield Surgery", urgency="urgent"),
    "03_fax_cover_ortho.txt": dict(
        patient_name="Jane Doe", birth_date=D(1961, 3, 4), mrn="00482913", specialty="Orthopedics",
        referring_clinician="Kevin Marsh", referring_org="Lakeview Primary Care", urgency="routine", payer=None),
    "04_pipe_table.txt": dict(
        patient_name="Tomasz Novak", birth_date=D(1957, 11, 2), mrn="HPM-0073311", specialty="Pulmonology",
        payer="Meridian Mutual Health", plan="Meridian Select HMO", member_id="MMH-448812",
        referring_clinician="Linda Osei", referring_org="Harbor Point Medical Group", urgency="urgent"),
    "05_column_table.txt": dict(
        patient_name="Sora Kim", birth_date=D(1979, 8, 21), mrn="5520918", specialty="Endocrinology",
        payer="Cigna", plan="Open Access Plus", member_id="U88213004", referring_clinician="Omar Haddad", urgency=None),
    "06_born_textual_gi.txt": dict(
        patient_name="Oliver Brandt", birth_date=D(1961, 3, 4), specialty="Gastroenterology", payer="Aetna",
        member_id="W448190217", referring_clinician="Nadia Kowalczyk", urgency="urgent",
        reason="iron deficiency anaemia and a positive faecal immunochemical test"),
    "07_not_urgent_derm.txt": dict(
        patient_name="Chloe Ferreira", birth_date=D(1992, 9, 19), specialty="Dermatology", payer=None,
        reason="a changing naevus on her left calf", referring_clinician="Imogen Clarke", urgency="routine"),
    "08_two_names.txt": dict(
        patient_name="Marcus Webb", birth_date=D(1966, 2, 17), specialty="Cardiology",
        reason="recurrent syncope with a 3-second pause on Holter monitoring",
        referring_clinician="Samuel Ortiz", urgency="urgent"),
    "09_two_dates.txt": dict(
        patient_name="Henry Caldwell", birth_date=D(1950, 11, 23), mrn="0049182", specialty="Nephrology",
        reason="progressive chronic kidney disease stage 4", referring_clinician="Rosa Delgado"),
    "10_phone_vs_mrn.txt": dict(
        patient_name="Priya Nair", birth_date=D(1984, 6, 30), mrn="7730215", specialty="Neurology",
        referring_clinician="Ben Adeyemi", urgency="routine"),
    "11_rfr_abbrev_pulm.txt": dict(
        patient_name="Ana Gomez", birth_date=D(1990, 2, 19), mrn="RB-556120", specialty="Pulmonology",
        referring_clinician="Maya Brooks", referring_org="Lakeview Primary Care", urgency="urgent"),
    "12_prose_only_rheum.txt": dict(
        patient_name="Daniel Okafor", birth_date=D(1972, 6, 12), specialty="Rheumatology", payer="Medicare",
        referring_clinician="Fiona Adair", referring_org="Northgate Medical Group", urgency=None),
    "13_emergent_neuro.txt": dict(
        patient_name="Yusuf Demir", birth_date=D(1958, 1, 10), mrn="3381920", specialty="Neurology",
        referring_clinician="Harriet Vance", urgency="emergent"),
    "14_insurance_inline.txt": dict(
        patient_name="Roberto Alvarez", birth_date=D(1949, 7, 8), mrn="8812004", specialty="Urology",
        payer="Blue Cross Blue Shield", plan="PPO", member_id="XZB442198771", referring_clinician="Angela Moretti"),
    "15_surname_forename_uk.txt": dict(
        patient_name="Eleanor Rose Whitfield", birth_date=D(1939, 1, 30), mrn="K0042871", specialty="Ophthalmology",
        referring_clinician="Thomas Ainsley", referring_org="Brookfield Health Centre", urgency="routine"),
    "16_ent_signed.txt": dict(
        patient_name="Lily Tran", specialty="Otolaryngology", payer="UnitedHealthcare", member_id="9931-22817",
        referring_clinician="Rachel Lin", urgency="routine"),
    "17_urgent_care_place.txt": dict(
        patient_name="Walter Jenkins", birth_date=D(1955, 9, 14), specialty="Urology", payer="Medicare",
        plan="Medicare Part B", referring_clinician="Ellen Fairbanks", urgency="routine"),
    "18_behavioral_selfpay.txt": dict(
        patient_name="Sofia Marchetti", mrn="P-0098812", specialty="Psychiatry", payer="Self-pay",
        referring_clinician="Jordan Pike", referring_org="Eastside Community Clinic"),
    "19_two_dates_dayfirst.txt": dict(
        patient_name="Arjun Mehta", birth_date=D(1970, 6, 5), specialty="Gastroenterology",
        reason="dysphagia to solids for two months and 4 kg weight loss", referring_clinician="Helen Ashworth",
        urgency="urgent"),
    "20_diabetes_heading.txt": dict(
        patient_name="Grace Holloway", specialty="Endocrinology", payer="Prairie State Medicaid Health Plan",
        member_id="PSM00912245", referring_clinician="Victor Lamb", plan=None),
    "21_email_nephro.txt": dict(
        patient_name="Grace Adeyemi", birth_date=D(1985, 3, 9), specialty="Nephrology",
        referring_clinician="Thomas Brennan", urgency="routine"),
    "22_minimal_note.txt": dict(
        patient_name="John Smith", birth_date=D(1980, 1, 2), specialty="Orthopedics",
        reason="left shoulder pain after a fall", referring_clinician="Carla Reyes", urgency="routine"),
    "23_demo_style.txt": dict(
        patient_name="Garcia", specialty="Cardiology", reason="exertional chest tightness",
        referring_clinician="Maria Lopez", referring_org="Maple Street Family Medicine", urgency="urgent"),
    "24_care_plan_no_payer.txt": dict(
        patient_name="Edwin Sato", birth_date=D(1944, 12, 12), mrn="1102938", payer=None, plan=None,
        referring_clinician="Nora Quinn", urgency="routine"),
}


def test_every_letter_has_expectations():
    assert sorted(p.name for p in LETTERS.glob("*.txt")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_letter_best_suggestions(name):
    x = ex(letter(name))
    got = {field: value(x, field) for field in EXPECTED[name]}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_letter_spans_point_exactly_at_the_text(name):
    text = letter(name)
    x = ex(text)
    fields = [f for cands in x.candidates.values() for f in cands] + x.urgency_hints
    assert fields
    for f in fields:
        s, e = f.span
        assert 0 <= s < e <= len(text) and text[s:e] == f.source_text
        assert f.source_text == f.source_text.strip() and 0 < f.confidence < 1


def test_reasons_come_from_labelled_sections_and_paragraphs():
    x = ex(letter("04_pipe_table.txt"))
    assert x.reason.value.startswith("Progressive exertional dyspnoea") and x.reason.value.endswith("40 pack-years")
    assert "\n" in x.reason.source_text  # a wrapped paragraph: the span covers it, the value is one line
    x = ex(letter("20_diabetes_heading.txt"))
    assert x.reason.value.startswith("Type 2 diabetes") and "hypoglycaemia" in x.reason.value
    assert "Assessment" not in x.reason.value


# --- the tricky cases ---------------------------------------------------------------------------


def test_patient_and_doctor_names_are_told_apart():
    x = ex(letter("08_two_names.txt"))
    patients = {f.value for f in x.suggestions("patient_name")}
    assert "Marcus Webb" in patients and not patients & {"Samuel Ortiz", "Lena Fischer", "Hollis"}
    assert x.referring_clinician.value == "Samuel Ortiz"
    assert "Hollis" not in {f.value for f in x.suggestions("referring_clinician")}  # "Dear Dr. Hollis" is the recipient


def test_letter_date_and_visit_dates_are_not_the_birth_date():
    x = ex(letter("09_two_dates.txt"))
    assert [f.value for f in x.suggestions("birth_date")] == [D(1950, 11, 23)]
    x = ex(letter("19_two_dates_dayfirst.txt"))
    assert D(2024, 4, 23) not in {f.value for f in x.suggestions("birth_date")}


def test_mrn_is_never_a_phone_or_reference_number():
    x = ex(letter("10_phone_vs_mrn.txt"))
    assert [f.value for f in x.suggestions("mrn")] == ["7730215"]
    assert x.mrn.source_text == "7730215"


def test_ambiguous_numeric_birth_date_offers_both_readings():
    x = ex(letter("01_us_letterhead_re_line.txt"))
    readings = [f.value for f in x.suggestions("birth_date")]
    assert readings == [D(1961, 3, 4), D(1961, 4, 3)]  # American order first in an American letter
    assert x.suggestions("birth_date")[1].confidence < x.birth_date.confidence
    uk = ex(letter("19_two_dates_dayfirst.txt"))  # 23/04/2024 in the same letter settles the order
    assert [f.value for f in uk.suggestions("birth_date")] == [D(1970, 6, 5), D(1970, 5, 6)]


def test_negated_urgency_reads_as_routine():
    x = ex(letter("07_not_urgent_derm.txt"))
    assert {h.value for h in x.urgency_hints} == {"routine"}
    assert "not urgent" in {h.source_text for h in x.urgency_hints}
    assert "no red flags" in {h.source_text for h in x.urgency_hints}


def test_places_and_conditions_are_not_urgency():
    x = ex(letter("17_urgent_care_place.txt"))
    assert [h.value for h in x.urgency_hints] == ["routine"]  # not "urgent care", not "emergency department"
    x = ex("Please see her in clinic. If her symptoms worsen she should attend the emergency department urgently.")
    assert x.urgency is None


def test_no_payer_present_or_stated_as_none():
    for name in ("07_not_urgent_derm.txt", "24_care_plan_no_payer.txt", "02_uk_gp_2ww.txt"):
        x = ex(letter(name))
        assert x.payer is None and x.plan is None and x.member_id is None
    assert "plan" not in ex(letter("24_care_plan_no_payer.txt")).candidates  # "Assessment and Plan:"


def test_specialty_keeps_the_words_used_and_the_canonical_name():
    x = ex(letter("11_rfr_abbrev_pulm.txt"))
    assert (x.specialty.value, x.specialty.source_text) == ("Pulmonology", "Pulm")
    x = ex(letter("18_behavioral_selfpay.txt"))
    assert (x.specialty.value, x.specialty.source_text) == ("Psychiatry", "Behavioral Health")


def test_letterhead_specialty_words_do_not_make_a_specialty():
    x = ex(letter("09_two_dates.txt"))  # "Cedar Grove Pediatrics & Family Health" is the sender
    assert "Pediatrics" not in {f.value for f in x.suggestions("specialty")}


# --- formats, one line each -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "field", "expected"), [
    ("Re: Jane Q. Doe DOB 03/04/1961 MRN 1234567", "patient_name", "Jane Q. Doe"),
    ("Re: Jane Q. Doe DOB 03/04/1961 MRN 1234567", "mrn", "1234567"),
    ("Re: Jane Q. Doe DOB 03/04/1961 MRN 1234567", "birth_date", D(1961, 3, 4)),
    ("Patient: DOE, JANE\n", "patient_name", "Jane Doe"),
    ("Patient: O'BRIEN, MARY-KATE\n", "patient_name", "Mary-Kate O'Brien"),
    ("Patient name: van der Berg, Anna\n", "patient_name", None),  # lower-case particles first: not guessed
    ("Name - Pedro Alvarez Ruiz\n", "patient_name", "Pedro Alvarez Ruiz"),
    ("Pt name:\tLUCIA FERRANTE\n", "patient_name", "Lucia Ferrante"),
    ("Regarding: Ms Hana Sato (F), 52\n", "patient_name", "Hana Sato"),
    ("Re: Cardiology referral for Tobias Reed\n", "patient_name", "Tobias Reed"),
    ("I am writing to refer Mr Liam O'Connell, a 48-year-old man", "patient_name", "Liam O'Connell"),
    ("D.O.B.: 21/11/1975\n", "birth_date", D(1975, 11, 21)),
    ("Date of Birth: 1975-11-21\n", "birth_date", D(1975, 11, 21)),
    ("She was born 4 March 1961 in Leeds.", "birth_date", D(1961, 3, 4)),
    ("Born on March 4th, 1961.", "birth_date", D(1961, 3, 4)),
    ("DOB: Mar 4, 1961", "birth_date", D(1961, 3, 4)),
    ("DOB 04-Mar-61", "birth_date", D(1961, 3, 4)),
    ("DOB: 03/04/2030", "birth_date", None),  # in the future: not a birth date
    ("Date: 02/03/2024\nFirst-born child of the family.", "birth_date", None),
    ("Hospital No: AB12345", "mrn", "AB12345"),
    ("Medical record #: 0099-1123", "mrn", "0099-1123"),
    ("Tel: 555-123-4567\nRef: 1234567", "mrn", None),
    ("Insurance: Aetna Choice POS II\n", "payer", "Aetna"),
    ("Insurance: Aetna Choice POS II\n", "plan", "Choice POS II"),
    ("Payer: Keystone Employers Health Trust\nPlan: Keystone Gold PPO\nMember ID: KEH-77120\n", "plan", "Keystone Gold PPO"),
    ("Payer: Keystone Employers Health Trust\nPlan: Keystone Gold PPO\nMember ID: KEH-77120\n", "member_id", "KEH-77120"),
    ("Insurance: N/A\n", "payer", None),
    ("Care plan: physiotherapy twice weekly\n", "plan", None),
    ("Referring provider: Dr. Anika Shah, Bayview Clinic\n", "referring_clinician", "Anika Shah"),
    ("Referring provider: Dr. Anika Shah, Bayview Clinic\n", "referring_org", "Bayview Clinic"),
    ("Sincerely,\n\nJonas Berg MD\nFjord Valley Medical Group\n", "referring_clinician", "Jonas Berg"),
    ("Sincerely,\n\nJonas Berg MD\nFjord Valley Medical Group\n", "referring_org", "Fjord Valley Medical Group"),
    ("Dear Dr Amara Osei,\nplease see this man.", "referring_clinician", None),
    ("Please see in cardiology clinic.", "specialty", "Cardiology"),
    ("Ortho consult please.", "specialty", "Orthopedics"),
    ("Please refer to GI.", "specialty", "Gastroenterology"),
    ("Referral to ENT for recurrent epistaxis", "specialty", "Otolaryngology"),
    ("He had a GI bleed in 2019 and a normal neuro exam.", "specialty", None),
    ("Please see urgently.", "urgency", "urgent"),
    ("Please see ASAP.", "urgency", "urgent"),
    ("Please see within 2 weeks.", "urgency", "urgent"),
    ("Routine referral.", "urgency", "routine"),
    ("2WW referral: suspected colorectal cancer.", "urgency", "urgent"),
    ("Please see her today; she is waiting in our office.", "urgency", "emergent"),
    ("This is not urgent.", "urgency", "routine"),
    ("Priority: High\n", "urgency", "urgent"),
    ("RFR: right hip pain at night.\n", "reason", "right hip pain at night"),
    ("Reason for referral:\nHaematuria on two occasions.\nNo pain.\n\nPMH: nil", "reason",
     "Haematuria on two occasions. No pain"),
    ("I would be grateful if you could see Ms Ada Lee with recurrent migraine.", "reason", "recurrent migraine"),
])
def test_formats(text, field, expected):
    assert value(ex(text), field) == expected


def test_known_to_a_service_is_weaker_than_a_request_for_it():
    x = ex("She is known to cardiology. I would be grateful for a rheumatology opinion.")
    assert x.specialty.value == "Rheumatology"
    assert [f.value for f in x.suggestions("specialty")] == ["Rheumatology", "Cardiology"]


def test_the_most_severe_hint_is_suggested_and_the_others_are_options():
    x = ex("This is not an emergency, but please see within 2 weeks.")
    assert x.urgency.value == "urgent"
    assert [f.value for f in x.suggestions("urgency")] == ["urgent", "routine"]


def test_extract_logs_nothing(caplog):
    with caplog.at_level(logging.DEBUG):
        ex(letter("01_us_letterhead_re_line.txt"))
    assert caplog.records == []


def test_empty_text():
    x = ex("")
    assert all(getattr(x, f) is None for f in FIELDS) and x.urgency_hints == [] and x.candidates == {}


# --- any text ---------------------------------------------------------------------------------

_FRAGMENTS = [line for p in sorted(LETTERS.glob("*.txt")) for line in p.read_text(encoding="utf-8").splitlines()] + [
    "DOB", "MRN:", "Dr.", "Sincerely,", "Re:", " - ", "|", "\t", "  ", "ß", "İ", "ﬁ", "\u2028", "\r\n", "not urgent",
    "03/04/61", "31/02/2000", "9" * 60, "Patient Name   DOB   MRN", "DOE, JANE   01/02/1970   123456",
]


def _check_spans(text: str) -> None:
    x = extract(text, today=TODAY)
    for f in [f for cands in x.candidates.values() for f in cands] + x.urgency_hints:
        s, e = f.span
        assert 0 <= s < e <= len(text)
        assert text[s:e] == f.source_text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_never_crashes_and_spans_hold(text):
    _check_spans(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=25), st.sampled_from(["\n", " ", "", "\n\n", ", ", ": ", "\t"]))
def test_letter_like_text_never_crashes_and_spans_hold(parts, sep):
    _check_spans(sep.join(parts))


# --- matching against the cache ---------------------------------------------------------------


def _ctx(ws, role=Role.COORDINATOR) -> ServiceContext:
    ws.users.ensure_demo_users()
    return ServiceContext(ws.cache, ws.audit, ws.users.demo_session(role))


@pytest.fixture
def seeded(ws):
    with ws.cache.unit_of_work(user="t", origin="sync") as s:
        s.add_all([
            Patient(id="p-doe", mrn="1234567", name="Jane Doe", birth_date=D(1961, 3, 4)),
            Patient(id="p-doe2", mrn="7654321", name="Janet Doe", birth_date=D(1970, 1, 1)),
            Patient(id="p-webb", mrn="5550001", name="Marcus Webb", birth_date=D(1966, 2, 17)),
            Patient(id="p-other", mrn="9990001", name="Someone Else", birth_date=D(1966, 2, 17)),
            Patient(id="p-swap", mrn="0049182", name="Henrietta Cole", birth_date=D(1940, 5, 5)),
        ])
    return ws


def test_match_by_mrn_and_audit_names_what_was_shown(seeded):
    matches = match_patient(_ctx(seeded), ex(letter("01_us_letterhead_re_line.txt")))
    assert [m.patient.id for m in matches] == ["p-doe"]
    assert matches[0].matched_on == ("mrn", "birth_date", "name") and matches[0].conflicts == ()
    (entry,) = seeded.audit.entries()
    assert (entry.action, entry.entity, list(entry.record_ids)) == ("intake.match", "patients", ["p-doe"])
    assert entry.detail == "by=mrn,birth_date,name"
    dump = json.dumps(entry.__dict__, default=str)
    assert "Doe" not in dump and "1234567" not in dump and "1961" not in dump


def test_match_by_name_and_birth_date_without_mrn(seeded):
    matches = match_patient(_ctx(seeded), ex(letter("08_two_names.txt")))
    assert [m.patient.id for m in matches] == ["p-webb"]  # not the other patient born that day
    assert matches[0].matched_on == ("birth_date", "name")


def test_mrn_match_with_another_name_is_flagged(seeded):
    matches = match_patient(_ctx(seeded), ex(letter("09_two_dates.txt")))
    assert [m.patient.id for m in matches] == ["p-swap"]
    assert set(matches[0].conflicts) == {"birth_date", "name"}


def test_no_identifiers_no_lookup(seeded):
    assert match_patient(_ctx(seeded), ex("Please see this man in cardiology clinic.")) == []
    assert seeded.audit.entries() == []


def test_match_needs_patient_read(seeded):
    with pytest.raises(AccessDenied):
        match_patient(_ctx(seeded, Role.SUPPLY_MANAGER), ex(letter("01_us_letterhead_re_line.txt")))


# --- review and draft -------------------------------------------------------------------------


def _decide_all(x, **overrides):
    decisions = {n: Decision.accepted() for n in REVIEW_FIELDS if x.suggestions(n)}
    decisions.update(overrides)
    return decisions


def test_draft_holds_only_reviewed_values_and_which_were_corrected(ws):
    ctx = _ctx(ws)
    x = ex(letter("01_us_letterhead_re_line.txt"))
    draft = accept(ctx, x, _decide_all(
        x, birth_date=Decision.accepted(1), reason=Decision.corrected("Chest tightness on exertion"),
        plan=Decision.rejected()))
    assert draft["birth_date"] == D(1961, 4, 3)  # the second reading, chosen by the coordinator
    assert draft["reason"] == "Chest tightness on exertion" and draft["plan"] is None
    assert draft["corrected"] == ["reason"] and draft["rejected"] == ["plan"]
    assert "mrn" in draft["accepted"] and draft["mrn"] == "1234567"
    assert draft["sources"]["mrn"] == x.mrn.span and "reason" not in draft["sources"]
    assert draft["urgency"] == "urgent" and draft["specialty"] == "Cardiology"
    assert draft["letter_text"] == x.text and draft["reviewed_by"] == "demo-coordinator"
    assert draft["patient_id"] is None
    (entry,) = ws.audit.entries()
    assert entry.action == "intake.review" and "corrected=reason" in entry.detail
    assert "Tightness" not in entry.detail.title() and "Doe" not in entry.detail


def test_nothing_is_drafted_while_a_suggestion_is_undecided(ws):
    x = ex(letter("01_us_letterhead_re_line.txt"))
    decisions = _decide_all(x)
    del decisions["payer"]
    with pytest.raises(ValidationError, match="payer"):
        accept(_ctx(ws), x, decisions)
    assert ws.audit.entries() == []


def test_draft_writes_nothing_to_the_cache(ws):
    x = ex(letter("03_fax_cover_ortho.txt"))
    with ws.cache.reader() as s:
        before = s.scalar(select(func.count()).select_from(OutboxEntry))
    accept(_ctx(ws), x, _decide_all(x))
    with ws.cache.reader() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == before


@pytest.mark.parametrize(("decisions", "message"), [
    ({"nonsense": Decision.accepted()}, "Unknown intake field"),
    ({"payer": Decision.accepted()}, "no suggestion"),
    ({"urgency": Decision.corrected("whenever")}, "Urgency is one of"),
    ({"birth_date": Decision.corrected("4 March")}, "YYYY-MM-DD"),
    ({"birth_date": Decision.corrected(D(2999, 1, 1))}, "in the past"),
    ({"reason": Decision.corrected("   ")}, "reject the field"),
    ({"specialty": Decision("maybe")}, "Unknown decision"),
])
def test_bad_decisions_are_refused_without_values_in_the_message(ws, decisions, message):
    x = ex("Please see in cardiology clinic.")
    full = {"specialty": Decision.accepted(), "patient_name": Decision.corrected("Nadia Bloom")} | decisions
    with pytest.raises(ValidationError, match=message):
        accept(_ctx(ws), x, full)


def test_a_referral_needs_a_patient_and_a_specialty(ws):
    x = ex("Please see in cardiology clinic.")
    with pytest.raises(ValidationError, match="patient_name"):
        accept(_ctx(ws), x, {"specialty": Decision.accepted()})
    with pytest.raises(ValidationError, match="specialty"):
        accept(_ctx(ws), x, {"specialty": Decision.rejected(), "patient_name": Decision.corrected("Nadia Bloom")})
    draft = accept(_ctx(ws), x, {"specialty": Decision.accepted()}, patient_id="p-known")
    assert draft["patient_id"] == "p-known" and draft["patient_name"] is None


def test_corrections_are_normalised_and_typing_the_suggestion_counts_as_accepting(ws):
    x = ex(letter("22_minimal_note.txt"))
    draft = accept(_ctx(ws), x, _decide_all(
        x, specialty=Decision.corrected("ortho"), urgency=Decision.corrected("URGENT"),
        birth_date=Decision.corrected("1980-02-01")))
    assert draft["specialty"] == "Orthopedics" and "specialty" in draft["accepted"]
    assert draft["urgency"] == "urgent" and draft["birth_date"] == D(1980, 2, 1)
    assert draft["corrected"] == ["urgency"]  # 1980-02-01 is the second reading of 1/2/1980


def test_review_needs_referral_write(ws):
    x = ex(letter("03_fax_cover_ortho.txt"))
    with pytest.raises(AccessDenied):
        accept(_ctx(ws, Role.ANALYST), x, _decide_all(x))


def test_intake_review_flow(seeded):
    ctx = _ctx(seeded)
    x = ex(letter("08_two_names.txt"))
    review = IntakeReview(x)
    assert set(review.pending()) == {n for n in REVIEW_FIELDS if x.suggestions(n)}
    (match,) = match_patient(ctx, x)
    review.choose_patient(match.patient.id)
    for name in review.pending():
        review.accept(name)
    review.correct("urgency", "routine")
    review.reject("referring_org")
    assert review.pending() == []
    draft = review.draft(ctx)
    assert draft["patient_id"] == "p-webb" and draft["urgency"] == "routine" and draft["referring_org"] is None
    assert [e.action for e in seeded.audit.entries()] == ["intake.match", "intake.review"]
    with pytest.raises(ValidationError):
        review.accept("not_a_field")
