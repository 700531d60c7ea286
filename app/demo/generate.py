"""Deterministic synthetic FHIR R4 demo data set, written as FHIR Bulk Data ``$export`` ndjson.

``generate(out_dir)`` writes one ``<Type>.ndjson`` per resource type (one compact JSON resource
per line, sorted keys, UTF-8, trailing newline) and a ``manifest.json`` shaped like a Bulk Data
export output manifest. Everything comes from ``random.Random(seed)`` and a fixed anchor date
(2026-11-01, local midnight, America/Chicago rules), never from the clock, so two runs with the
same seed and scale produce byte-identical files.

All data is synthetic: names are combinations from small fixed lists, phone numbers are in the
fictional 555-01xx range, MRNs and NPIs are random. Datetimes carry the local UTC offset
(-05:00 while daylight saving time is in effect, -06:00 otherwise).

``scale`` shrinks the volume (patients, referrals, encounters, appointments, slot horizon) for
fast tests; the facility itself (organizations, units, beds, clinics, staff) stays full size.

Run it with ``python -m app.demo.generate [--out DIR] [--seed N] [--scale F]``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import math
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from sync.fhir.systems import (
    ACT_CODE,
    CHECKIN_OUTCOME,
    CHANNEL_TO_MEDIUM,
    CREDENTIAL,
    DISCHARGE_CARE_PLAN_CODE,
    EMPLOYMENT,
    FOLLOWUP_CONDITION,
    LOCATION_PHYSICAL,
    MRN,
    NPI,
    ORG_TYPE,
    PARTICIPATION_MODE,
    PROFESSION,
    REFERRAL_CATEGORY_CODE,
    REFERRAL_NUMBER,
    SNOMED,
    SUPPLY_ROOM,
    UNIT_KIND,
    WORKFLOW,
    WORKFLOW_TO_TASK_STATUS,
)

__all__ = ["ANCHOR_DATE", "DEFAULT_OUT", "DEFAULT_SEED", "generate", "main"]

logger = logging.getLogger(__name__)

DEFAULT_SEED = 20261125
ANCHOR_DATE = date(2026, 11, 1)
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "resources" / "demo"
EXPORT_REQUEST = "https://ehr.demo.careops.example.org/fhir/$export"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"

# --------------------------------------------------------------------------------------------
# Time: internal instants are naive UTC datetimes; local wall time follows US Central rules.
# --------------------------------------------------------------------------------------------

_CDT = timedelta(hours=-5)
_CST = timedelta(hours=-6)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(weekday - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


def _last_weekday(year: int, month: int, weekday: int) -> date:
    d = _nth_weekday(year, month, weekday, 4)
    return d + timedelta(weeks=1) if (d + timedelta(weeks=1)).month == month else d


@lru_cache(maxsize=None)
def _dst_bounds_utc(year: int) -> tuple[datetime, datetime]:
    # DST: second Sunday of March 02:00 CST (08:00Z) to first Sunday of November 02:00 CDT (07:00Z).
    start = datetime.combine(_nth_weekday(year, 3, 6, 2), time(8))
    end = datetime.combine(_nth_weekday(year, 11, 6, 1), time(7))
    return start, end


def _offset(utc: datetime) -> timedelta:
    start, end = _dst_bounds_utc(utc.year)
    return _CDT if start <= utc < end else _CST


def _to_utc(local: datetime) -> datetime:
    """Local wall time to UTC. An ambiguous hour maps to its first occurrence, a skipped one forward."""
    candidate = local - _CDT
    if _offset(candidate) == _CDT:
        return candidate
    return local - _CST


def _to_local(utc: datetime) -> datetime:
    return utc + _offset(utc)


def _iso(utc: datetime) -> str:
    off = _offset(utc)
    return (utc + off).isoformat(timespec="seconds") + ("-05:00" if off == _CDT else "-06:00")


ANCHOR = _to_utc(datetime.combine(ANCHOR_DATE, time(0)))  # 2026-11-01T05:00:00Z
LAST_UPDATED = ANCHOR.isoformat(timespec="seconds") + "Z"
_FOREVER = datetime(9999, 1, 1)


@lru_cache(maxsize=None)
def _holidays(year: int) -> frozenset[date]:
    def observed(d: date) -> date:
        return d - timedelta(days=1) if d.weekday() == 5 else d + timedelta(days=1) if d.weekday() == 6 else d

    return frozenset(
        {
            observed(date(year, 1, 1)),
            _last_weekday(year, 5, 0),  # Memorial Day
            observed(date(year, 7, 4)),
            _nth_weekday(year, 9, 0, 1),  # Labor Day
            _nth_weekday(year, 11, 3, 4),  # Thanksgiving
            observed(date(year, 12, 25)),
        }
    )


def _is_clinic_day(d: date) -> bool:
    return d.weekday() < 5 and d not in _holidays(d.year)


# --------------------------------------------------------------------------------------------
# Fixed vocabularies
# --------------------------------------------------------------------------------------------

GIVEN_FEMALE = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Nancy", "Lisa", "Margaret", "Sandra", "Ashley", "Emily", "Donna", "Michelle", "Carol",
    "Amanda", "Melissa", "Deborah", "Laura", "Rebecca", "Sharon", "Maria", "Rosa", "Aisha", "Mei",
    "Priya", "Fatima", "Olivia", "Emma", "Sofia", "Grace", "Hannah",
)
GIVEN_MALE = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul",
    "Andrew", "Joshua", "Kevin", "Brian", "George", "Edward", "Jose", "Luis", "Ahmed", "Wei",
    "Raj", "Omar", "Liam", "Noah", "Ethan", "Samuel", "Henry", "Jacob",
)
FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Patel", "Kim", "Chen", "Khan", "Okafor", "Novak",
)
AREA_CODES = ("312", "773", "630", "847", "708", "815")

SPECIALTIES = (
    "Cardiology", "Orthopedics", "Neurology", "Gastroenterology", "Oncology", "Pulmonology",
    "Endocrinology", "Dermatology", "Rheumatology", "Urology", "Nephrology", "Psychiatry",
)
# Relative referral volume and outpatient volume per specialty.
SPECIALTY_WEIGHT = {
    "Cardiology": 14, "Orthopedics": 13, "Neurology": 9, "Gastroenterology": 10, "Oncology": 7,
    "Pulmonology": 8, "Endocrinology": 8, "Dermatology": 9, "Rheumatology": 5, "Urology": 7,
    "Nephrology": 4, "Psychiatry": 6,
}
# No-show rate among attended + no-show visits, by service line (8-15 %).
NOSHOW_RATE = {
    "Cardiology": 0.085, "Orthopedics": 0.095, "Neurology": 0.11, "Gastroenterology": 0.12,
    "Oncology": 0.08, "Pulmonology": 0.105, "Endocrinology": 0.13, "Dermatology": 0.14,
    "Rheumatology": 0.11, "Urology": 0.10, "Nephrology": 0.105, "Psychiatry": 0.145,
}
CLINICS = (
    ("Heart & Lung Clinic", ("Cardiology", "Pulmonology")),
    ("Bone & Joint Clinic", ("Orthopedics", "Rheumatology")),
    ("Neuroscience & Behavioral Health Clinic", ("Neurology", "Psychiatry")),
    ("Digestive & Endocrine Clinic", ("Gastroenterology", "Endocrinology")),
    ("Cancer & Skin Clinic", ("Oncology", "Dermatology")),
    ("Kidney & Urology Clinic", ("Nephrology", "Urology")),
)
WARDS = (
    # id, name, unit kind, bed prefix, bed label, beds
    ("loc-4w", "4 West Medical-Surgical", "med-surg", "4W", "Bed", 32),
    ("loc-icu", "ICU", "icu", "ICU", "Bed", 16),
    ("loc-ed", "Emergency Department", "ed", "ED", "Bay", 24),
)
STOREROOMS = (
    ("loc-store-central", "Central Supply Storeroom"),
    ("loc-store-4w", "4 West Clean Supply Room"),
    ("loc-store-ed", "Emergency Department Supply Room"),
)
HOSPITAL = ("org-hosp", "Riverbend General Hospital")
PRACTICES = (
    "Maple Street Family Medicine", "Lakeview Primary Care", "Northside Internal Medicine",
    "Cedar Grove Pediatrics & Family Health", "Harbor Point Medical Group",
    "Willow Creek Family Practice", "Summit Community Health Center", "Oak Ridge Primary Care Associates",
)
PAYERS = (
    # name, subscriber prefix, plans (class value, class name), segment
    ("Heartland Medicare Advantage", "HMA",
     (("MA-HMO-01", "Heartland Advantage HMO"), ("MA-PPO-02", "Heartland Advantage PPO")), "medicare"),
    ("Prairie State Medicaid Health Plan", "PSM", (("MCD-STD", "Prairie Medicaid Standard"),), "medicaid"),
    ("Great Plains Health Insurance", "GPH",
     (("GP-PPO-1500", "Great Plains PPO 1500"), ("GP-HDHP-3000", "Great Plains HDHP 3000")), "commercial"),
    ("Meridian Mutual Health", "MMH", (("MM-HMO", "Meridian Select HMO"), ("MM-EPO", "Meridian Choice EPO")), "commercial"),
    ("Keystone Employers Health Trust", "KEH",
     (("KE-GOLD", "Keystone Gold PPO"), ("KE-SILVER", "Keystone Silver PPO")), "commercial"),
    ("Lakeshore Community Health Plan", "LCH", (("LC-MKT-SILVER", "Lakeshore Marketplace Silver"),), "marketplace"),
)

CREDENTIAL_YEARS = {"RN-LICENSE": 2, "BLS": 2, "ACLS": 2, "PALS": 2, "NRP": 2, "CHEMO": 2, "CCRN": 3, "TNCC": 4}
# Probability of each optional credential for an RN, by home unit kind.
RN_CREDENTIALS = {
    "med-surg": {"ACLS": 0.45, "CHEMO": 0.2, "PALS": 0.05},
    "icu": {"ACLS": 0.97, "CCRN": 0.7, "PALS": 0.1, "CHEMO": 0.05},
    "ed": {"ACLS": 0.96, "PALS": 0.88, "TNCC": 0.8, "NRP": 0.15, "CCRN": 0.08},
}

ED_ARRIVAL_BY_HOUR = (
    2.2, 1.8, 1.5, 1.2, 1.0, 1.0, 1.3, 2.0, 3.0, 3.8, 4.3, 4.6,
    4.8, 5.0, 5.2, 5.4, 5.6, 5.8, 5.8, 5.5, 5.0, 4.4, 3.6, 2.8,
)
ED_BY_WEEKDAY = (1.12, 1.03, 1.0, 0.98, 0.98, 0.93, 0.96)
CLINIC_START_BY_HOUR = {8: 1.0, 9: 1.3, 10: 1.4, 11: 1.2, 12: 0.35, 13: 1.1, 14: 1.3, 15: 1.1, 16: 0.5}
# 30-minute clinic slot start times: 08:00-11:30 and 13:00-15:30.
SLOT_TIMES = tuple(time(h, m) for h in (8, 9, 10, 11, 13, 14, 15) for m in (0, 30))

ADMIT_SOURCES = (("Emergency department", 0.6), ("Physician referral", 0.3), ("Transfer from another hospital", 0.1))
DISPOSITIONS = (
    ("Home", 62), ("Home with home health services", 14), ("Skilled nursing facility", 11),
    ("Inpatient rehabilitation facility", 5), ("Transferred to another acute care hospital", 3),
    ("Left against medical advice", 2), ("Hospice", 1), ("Expired", 2),
)
MEDSURG_SERVICES = (
    ("Internal Medicine", 40), ("General Surgery", 20), ("Orthopedics", 12), ("Cardiology", 12),
    ("Pulmonology", 10), ("Oncology", 6),
)
MEDSURG_LOS = (8, 14, 15, 13, 11, 9, 7, 5, 4, 4, 3, 3, 2, 2)  # weights for 1..14 days
ICU_LOS = (8, 14, 15, 13, 11, 9, 7, 5, 4, 3)  # weights for 1..10 days

PRIORITIES = (("routine", 65), ("urgent", 25), ("asap", 7), ("stat", 3))
# How fast a referral moves through the office, relative to routine.
PRIORITY_SPEED = {"routine": 1.0, "urgent": 0.45, "asap": 0.2, "stat": 0.04}
APPOINTMENT_LEAD_DAYS = {"routine": (12, 50), "urgent": (4, 14), "asap": (1, 5), "stat": (0, 1)}
SR_STATUS = {"completed": "completed", "closed": "revoked"}  # everything else: active

# Post-discharge follow-up: who is enrolled (home discharges of these services, by condition) ...
FOLLOWUP_DISPOSITIONS = ("Home", "Home with home health services")
FOLLOWUP_WINDOW_DAYS = 75  # discharges this recent have a plan (active, or completed after 30 days)
FOLLOWUP_SHARE = 0.6
FOLLOWUP_BY_SERVICE = {
    "Cardiology": (("heart-failure", 8), ("other", 2)),
    "Pulmonology": (("copd", 6), ("pneumonia", 4)),
    "Internal Medicine": (("heart-failure", 3), ("copd", 2), ("pneumonia", 3), ("diabetes", 2)),
    "General Surgery": (("post-surgical", 1),),
    "Orthopedics": (("post-surgical", 1),),
    "Critical Care": (("pneumonia", 2), ("heart-failure", 2), ("copd", 1)),
}
# ... and their check-ins, in days after discharge.
CHECKIN_DAYS = {
    "heart-failure": (2, 7, 14, 30), "copd": (2, 7, 30), "pneumonia": (2, 10), "post-surgical": (1, 3, 14),
    "diabetes": (3, 14, 30), "other": (3, 14),
}
FOLLOWUP_TITLES = {
    "heart-failure": "Heart failure transition-of-care follow-up", "copd": "COPD post-discharge follow-up",
    "pneumonia": "Pneumonia recovery follow-up", "post-surgical": "Post-surgical recovery follow-up",
    "diabetes": "Diabetes post-discharge follow-up", "other": "Post-discharge follow-up",
}
CHANNELS = (("phone", 65), ("sms", 20), ("portal", 15))
CONTACT_OUTCOMES = (("stable", 75), ("concern", 18), ("escalated", 7))

# Referral reasons: (reason for routine/urgent/asap, red flags for stat/asap).
REASONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Cardiology": (
        ("exertional chest discomfort", "intermittent palpitations", "a new systolic murmur",
         "hypertension not controlled on three agents", "newly detected atrial fibrillation",
         "heart failure with worsening exercise tolerance"),
        ("chest pressure at rest with a mildly elevated troponin in the office",
         "exertional syncope with a new harsh systolic murmur"),
    ),
    "Orthopedics": (
        ("chronic right knee pain with radiographic osteoarthritis", "left shoulder pain with reduced range of motion",
         "low back pain radiating into the left leg", "hip pain limiting walking to one block",
         "a suspected rotator cuff tear"),
        ("a hot swollen knee with fever and inability to bear weight, concerning for septic arthritis",
         "new saddle anesthesia and urinary retention, concerning for cauda equina syndrome"),
    ),
    "Neurology": (
        ("recurrent migraine headaches despite preventive therapy", "numbness and tingling in both feet",
         "a resting tremor of the right hand", "progressive memory complaints", "a first unprovoked seizure"),
        ("a sudden severe headache with neck stiffness", "new left-sided weakness that has not fully resolved"),
    ),
    "Gastroenterology": (
        ("reflux symptoms despite twice-daily PPI therapy", "iron deficiency anemia without an obvious source",
         "a change in bowel habits over three months", "persistently elevated liver enzymes",
         "screening colonoscopy with a family history of colon cancer"),
        ("black tarry stools with a hemoglobin drop to 8.1 g/dL", "progressive painless jaundice with weight loss"),
    ),
    "Oncology": (
        ("a 2.1 cm spiculated lung nodule on CT", "newly diagnosed breast cancer", "unexplained generalized lymphadenopathy",
         "a monoclonal protein on serum electrophoresis", "a rising CEA after colon cancer resection"),
        ("hypercalcemia of 13.2 mg/dL with confusion in a patient with known malignancy",
         "a rapidly enlarging neck mass with new stridor"),
    ),
    "Pulmonology": (
        ("a chronic cough for more than eight weeks", "COPD with three exacerbations this year",
         "suspected obstructive sleep apnea", "abnormal pulmonary function tests",
         "an incidental ground-glass opacity on CT"),
        ("hemoptysis with unintentional weight loss", "an oxygen saturation of 87% on room air at rest"),
    ),
    "Endocrinology": (
        ("poorly controlled type 2 diabetes with an HbA1c of 9.8%", "a 1.8 cm thyroid nodule on ultrasound",
         "hypothyroidism with persistent symptoms", "osteoporosis with a fragility fracture",
         "suspected primary hyperparathyroidism"),
        ("a glucose above 500 mg/dL with ketones in the urine", "severe hyponatremia of 121 mmol/L"),
    ),
    "Dermatology": (
        ("a changing pigmented lesion on the upper back", "moderate-to-severe plaque psoriasis",
         "chronic eczema not responding to topical therapy", "recurrent skin abscesses",
         "a non-healing lesion on the nose"),
        ("a rapidly spreading blistering rash with mucosal involvement",
         "a bleeding, rapidly enlarging pigmented lesion"),
    ),
    "Rheumatology": (
        ("inflammatory joint pain with morning stiffness", "a positive ANA with fatigue and a facial rash",
         "gout with recurrent flares despite allopurinol", "suspected polymyalgia rheumatica",
         "suspected ankylosing spondylitis"),
        ("new jaw claudication and visual disturbance concerning for giant cell arteritis",
         "a hot swollen wrist with fever"),
    ),
    "Urology": (
        ("an elevated PSA of 6.4 ng/mL", "persistent microscopic hematuria", "recurrent kidney stones",
         "lower urinary tract symptoms", "a complex renal cyst on ultrasound"),
        ("acute urinary retention", "gross hematuria with clots"),
    ),
    "Nephrology": (
        ("chronic kidney disease stage 3b", "proteinuria on repeat urinalysis", "a declining eGFR over the past year",
         "resistant hypertension with chronic kidney disease", "recurrent hyperkalemia on an ACE inhibitor"),
        ("a creatinine rise from 1.3 to 3.6 mg/dL within a week", "a potassium of 6.4 mmol/L with ECG changes"),
    ),
    "Psychiatry": (
        ("depression not responding to two SSRIs", "generalized anxiety disorder", "bipolar disorder medication management",
         "an adult ADHD evaluation", "insomnia with panic attacks"),
        ("active suicidal ideation with a plan", "acute psychosis with command hallucinations"),
    ),
}
PMH = (
    "hypertension", "type 2 diabetes", "hyperlipidemia", "COPD", "chronic kidney disease stage 3",
    "hypothyroidism", "obesity", "depression", "osteoarthritis", "GERD", "asthma", "atrial fibrillation",
)
MEDS = (
    "lisinopril", "metformin", "atorvastatin", "amlodipine", "levothyroxine", "omeprazole",
    "sertraline", "albuterol as needed", "apixaban", "metoprolol", "gabapentin", "losartan",
)
ALLERGIES = (
    "No known drug allergies.", "No known drug allergies.", "Allergic to penicillin (rash).",
    "Allergic to sulfa drugs (hives).", "Intolerant of codeine (nausea).",
)
OPENINGS = (
    "Dear colleague,", "Dear {specialty} team,", "To the {specialty} clinic:", "Dear Doctor,",
    "Re: {title} {family}, DOB {dob}",
)
INTROS = (
    "Thank you for seeing {title} {family}, a {age}-year-old {sexword}, whom I am referring for {reason}.",
    "I would be grateful if you could evaluate {given} {family} ({age} y, {sexletter}) regarding {reason}.",
    "I am referring my patient {title} {family}, age {age}, for further assessment of {reason}.",
    "Please see this {age}-year-old {sexword} with {reason}.",
    "I am writing to request {a_specialty_l} consultation for {given} {family}, a {age}-year-old {sexword} with {reason}.",
)
COURSE = (
    "Symptoms began about {n} weeks ago and have gradually worsened.",
    "{Pronoun} first mentioned this at a visit {n} weeks ago; it has not improved with initial management.",
    "This has been present for several months but is now interfering with work and sleep.",
    "Recent labs and imaging are attached for your review.",
    "{Pronoun} {has} been seen twice in our office for this in the past {n} weeks.",
    "Initial treatment in primary care has produced only partial improvement.",
)
COURSE_ACUTE = (
    "This developed over the past {h} hours.",
    "{Pronoun} {is} usually well and was last seen here {n} months ago for a routine check.",
    "This is a new finding at today's visit.",
    "Family members report a clear change over the last day or two.",
)
URGENCY = {
    "routine": (
        "There are no red-flag features at this time; a routine appointment would be appropriate.",
        "Please schedule at your earliest routine availability.",
        "This is not urgent, but I would value your opinion within the next couple of months.",
        "{Pronoun} {is} stable and happy to wait for a routine appointment.",
    ),
    "urgent": (
        "I would appreciate an appointment within the next two weeks.",
        "Symptoms are progressing, and I would be grateful if {pronoun} could be seen soon.",
        "Please treat this as urgent; {pronoun} {has} deteriorated over the past month.",
        "Given the trajectory, I would prefer that {pronoun} not wait for a routine slot.",
    ),
    "asap": (
        "Please see as soon as possible, ideally within the next few days.",
        "I am concerned about rapid progression and would appreciate an expedited appointment this week.",
        "Could your office contact the patient directly to arrange the earliest available visit?",
    ),
    "stat": (
        "These are red-flag features. Please see today; I have advised {object} to go to the emergency department"
        " if anything worsens before then.",
        "This is an emergency referral; I have already spoken with the on-call {specialty_l} physician by phone.",
        "URGENT SAME-DAY REVIEW REQUESTED. {Pronoun} {is} currently waiting in our office and I will arrange"
        " transport as needed.",
        "I am worried this cannot wait: please call me back within the hour so we can agree where {pronoun}"
        " should be seen today.",
    ),
}
ASKS = (
    "diagnostic work-up and management recommendations", "co-management going forward",
    "whether further imaging is indicated", "optimization of the current medication regimen",
    "an opinion on whether a procedure is warranted", "a treatment plan we can continue in primary care",
)
ASKS_ACUTE = (
    "assessment today and advice on whether {pronoun} should go straight to the emergency department",
    "same-day evaluation and direct admission if you think it is needed",
    "an urgent call back to agree on the safest place for {object} to be seen",
)
CLOSINGS = (
    "Thank you for your help with {possessive} care.", "Please do not hesitate to call me with any questions.",
    "Records, a medication list and recent results are attached.", "I look forward to your recommendations.",
)


# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------


def _ref(kind: str, rid: str) -> dict:
    return {"reference": f"{kind}/{rid}"}


def _cc(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _cum(weights) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _scaled(n: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(n * scale))


def _luhn_npi(base9: str) -> str:
    total = 0
    for i, ch in enumerate(reversed("80840" + base9)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return base9 + str((10 - total % 10) % 10)


@dataclass
class _Patient:
    rid: str
    gender: str
    given: str
    family: str
    birth: date
    coverage: str | None = None
    stays: list[tuple[datetime, datetime]] = field(default_factory=list)

    def age_on(self, d: date) -> int:
        return d.year - self.birth.year - ((d.month, d.day) < (self.birth.month, self.birth.day))

    def busy(self, start: datetime, end: datetime) -> bool:
        return any(start < e and s < end for s, e in self.stays)


@dataclass
class _Specialist:
    rid: str
    specialty: str
    clinic: str
    family: str
    weekdays: tuple[int, ...]
    past_days: list[date] = field(default_factory=list)


@dataclass
class _Slot:
    rid: str
    schedule: str
    practitioner: str
    clinic: str
    start: datetime
    status: str = "free"


class _Builder:
    """Builds the whole data set in memory, in dependency order, from one seeded generator.

    Internal instants are naive UTC datetimes; only ``_iso`` turns them into FHIR strings.
    The order of the steps in ``build`` is part of the output: changing it changes the data.
    """

    def __init__(self, seed: int, scale: float) -> None:
        self.rng = random.Random(seed)
        # Its own generator, so that the follow-up data leaves the rest of the data set unchanged.
        self.followup_rng = random.Random(f"{seed}-followup")
        self.scale = scale
        self.out: dict[str, list[dict]] = {}
        self.meta = {"versionId": "1", "lastUpdated": LAST_UPDATED}
        self.used_clinic_times: set[tuple[str, datetime]] = set()
        self.noshow_debt = {line: 0.0 for line in SPECIALTIES}

    # -- plumbing --------------------------------------------------------------------------

    def add(self, resource: dict) -> dict:
        resource["meta"] = dict(self.meta)
        self.out.setdefault(resource["resourceType"], []).append(resource)
        return resource

    def name(self, gender: str) -> tuple[str, str]:
        rng = self.rng
        if gender == "female" or (gender not in ("male", "female") and rng.random() < 0.5):
            given = rng.choice(GIVEN_FEMALE)
        else:
            given = rng.choice(GIVEN_MALE)
        return given, rng.choice(FAMILY)

    def phone(self) -> str:
        return f"{self.rng.choice(AREA_CODES)}-555-01{self.rng.randrange(100):02d}"

    def build(self) -> dict[str, list[dict]]:
        self.organizations()
        self.locations()
        self.practitioners()
        self.patients()
        self.coverages()
        self.schedules()
        self.inpatient_stays()
        self.referrals()
        self.outpatient_appointments()
        self.ed_and_clinic_encounters()
        self.finish()
        self.followups()
        return self.out

    # -- facility ----------------------------------------------------------------------------

    def organizations(self) -> None:
        hid, hname = HOSPITAL
        self.add({"resourceType": "Organization", "id": hid, "name": hname, "type": [_cc(ORG_TYPE, "prov")]})
        self.practices = []
        for i, name in enumerate(PRACTICES, 1):
            rid = f"org-prac-{i:02d}"
            self.practices.append((rid, name))
            self.add({"resourceType": "Organization", "id": rid, "name": name, "type": [_cc(ORG_TYPE, "prov")]})
        self.payers = []
        for i, (name, prefix, plans, segment) in enumerate(PAYERS, 1):
            rid = f"org-payer-{i:02d}"
            self.payers.append((rid, prefix, plans, segment))
            self.add({"resourceType": "Organization", "id": rid, "name": name, "type": [_cc(ORG_TYPE, "pay")]})

    def location(self, rid: str, name: str, physical: str, extra: dict) -> None:
        self.add({
            "resourceType": "Location", "id": rid, "name": name, "status": "active",
            "physicalType": _cc(LOCATION_PHYSICAL, physical),
            "managingOrganization": _ref("Organization", HOSPITAL[0]), **extra,
        })

    def locations(self) -> None:
        self.beds: dict[str, list[str]] = {}
        for wid, name, kind, prefix, label, n in WARDS:
            self.location(wid, name, "wa", {"type": [_cc(UNIT_KIND, kind)]})
            self.beds[kind] = []
            for b in range(1, n + 1):
                bid = f"{wid}-{b:02d}"
                self.beds[kind].append(bid)
                self.location(bid, f"{prefix} {label} {b:02d}", "bd", {"partOf": _ref("Location", wid)})
        self.ward_of = {kind: wid for wid, _, kind, *_ in WARDS}
        self.clinic_of: dict[str, str] = {}
        for i, (name, lines) in enumerate(CLINICS, 1):
            cid = f"loc-clinic-{i:02d}"
            self.location(cid, name, "ro", {"type": [_cc(UNIT_KIND, "clinic")]})
            for line in lines:
                self.clinic_of[line] = cid
        for rid, name in STOREROOMS:
            self.location(rid, name, "ro", {"type": [_cc(SUPPLY_ROOM, "storeroom")]})

    # -- staff -------------------------------------------------------------------------------

    def practitioner(self, gender: str, qualification: list | None = None) -> tuple[str, str, str]:
        self.prac_seq += 1
        rid = f"prac-{self.prac_seq:04d}"
        given, family = self.name(gender)
        while True:
            npi = _luhn_npi(str(self.rng.randrange(100_000_000, 300_000_000)))
            if npi not in self.npis:
                self.npis.add(npi)
                break
        res = {
            "resourceType": "Practitioner", "id": rid,
            "identifier": [{"system": NPI, "value": npi}],
            "name": [{"family": family, "given": [given]}],
        }
        if qualification:
            res["qualification"] = qualification
        self.add(res)
        return rid, given, family

    def role(self, prac: str, org: str, locations: list[str], profession: str, employment: str,
             specialty: str | None = None) -> None:
        res = {
            "resourceType": "PractitionerRole", "id": "role-" + prac.removeprefix("prac-"),
            "practitioner": _ref("Practitioner", prac), "organization": _ref("Organization", org),
            "code": [_cc(PROFESSION, profession), _cc(EMPLOYMENT, employment)],
        }
        if locations:
            res["location"] = [_ref("Location", loc) for loc in locations]
        if specialty:
            res["specialty"] = [{"text": specialty}]
        self.add(res)

    def credential_list(self, profession: str, units: list[str], sink: list[dict]) -> list[dict]:
        rng = self.rng
        codes = ["RN-LICENSE", "BLS"] if profession == "RN" else ["BLS"]
        if profession == "RN":
            chances: dict[str, float] = {}
            for unit in units:
                for code, p in RN_CREDENTIALS[unit].items():
                    chances[code] = max(chances.get(code, 0.0), p if len(units) == 1 else p * 0.8)
            codes += [code for code, p in chances.items() if rng.random() < p]
        quals = []
        for code in codes:
            years = CREDENTIAL_YEARS[code]
            # Issued so that it is still valid for more than 30 days after the anchor.
            start = ANCHOR_DATE - timedelta(days=rng.randrange(0, years * 365 - 40))
            qual = {"code": _cc(CREDENTIAL, code), "period": {}}
            self._set_period(qual, start, years)
            quals.append(qual)
            sink.append(qual)
        return quals

    @staticmethod
    def _set_period(qual: dict, start: date, years: int) -> None:
        try:
            end = start.replace(year=start.year + years)
        except ValueError:  # 29 February
            end = start.replace(year=start.year + years, day=28)
        qual["period"] = {"start": start.isoformat(), "end": (end - timedelta(days=1)).isoformat()}

    def practitioners(self) -> None:
        rng = self.rng
        self.prac_seq = 0
        self.npis: set[str] = set()
        hosp = HOSPITAL[0]
        # Specialists: two per specialty, each with three clinic weekdays.
        self.specialists: dict[str, list[_Specialist]] = {}
        for specialty in SPECIALTIES:
            for _ in range(2):
                rid, _, family = self.practitioner(rng.choice(("female", "male")))
                clinic = self.clinic_of[specialty]
                self.role(rid, hosp, [clinic], "MD", "core", specialty)
                weekdays = tuple(sorted(rng.sample(range(5), 3)))
                self.specialists.setdefault(specialty, []).append(_Specialist(rid, specialty, clinic, family, weekdays))
        # Referring clinicians: two per community practice.
        self.referrers: list[tuple[str, str, str, str, str]] = []
        for org, pname in self.practices:
            for k in range(2):
                rid, given, family = self.practitioner(rng.choice(("female", "male")))
                profession = "NP" if k == 1 and rng.random() < 0.5 else "MD"
                if "Pediatrics" in pname and k == 0:
                    specialty = "Pediatrics"
                else:
                    specialty = rng.choice(("Family Medicine", "Internal Medicine"))
                self.role(rid, org, [], profession, "core", specialty)
                self.referrers.append((rid, given, family, profession, pname))
        # Nursing staff: 120 over the three units.
        plan = (
            [("med-surg", "core", p) for p in ["RN"] * 28 + ["LPN"] * 6 + ["CNA"] * 8]
            + [("icu", "core", p) for p in ["RN"] * 27 + ["CNA"] * 3]
            + [("ed", "core", p) for p in ["RN"] * 24 + ["CNA"] * 6]
            + [(None, "float", p) for p in ["RN"] * 12 + ["CNA"] * 2]
            + [(u, "agency", "RN") for u in ("icu", "icu", "ed", "med-surg")]
        )
        quals: list[dict] = []
        for unit, employment, profession in plan:
            if unit is None:  # float pool: cross-trained for two or three units
                units = ["med-surg"] + sorted(rng.sample(["icu", "ed"], rng.choice((1, 1, 2))))
            else:
                units = [unit]
            gender = "female" if rng.random() < 0.86 else "male"
            q = self.credential_list(profession, units, quals)
            rid, _, _ = self.practitioner(gender, q)
            self.role(rid, hosp, [self.ward_of[u] for u in units], profession, employment)
        # 2-3 % of credentials need attention: half already expired, half expiring within 30 days.
        flagged = rng.sample(quals, max(2, round(len(quals) * 0.025)))
        for i, qual in enumerate(flagged):
            years = CREDENTIAL_YEARS[qual["code"]["coding"][0]["code"]]
            end = ANCHOR_DATE + (timedelta(days=-rng.randint(1, 75)) if i % 2 == 0 else timedelta(days=rng.randint(0, 29)))
            start_end = end + timedelta(days=1)
            try:
                start = start_end.replace(year=start_end.year - years)
            except ValueError:
                start = start_end.replace(year=start_end.year - years, day=28)
            qual["period"] = {"start": start.isoformat(), "end": end.isoformat()}

    # -- patients ----------------------------------------------------------------------------

    def patients(self) -> None:
        rng = self.rng
        n = _scaled(600, self.scale, 5)
        bands = ((1, 4, 3), (5, 17, 7), (18, 34, 14), (35, 49, 16), (50, 64, 22), (65, 79, 25), (80, 96, 13))
        lo, hi = date(1930, 1, 1).toordinal(), date(2024, 12, 31).toordinal()
        mrns = rng.sample(range(1_000_000, 10_000_000), n)
        self.patients_list: list[_Patient] = []
        weights = []
        for i in range(n):
            a0, a1, _ = rng.choices(bands, weights=[b[2] for b in bands])[0]
            first = max(lo, (ANCHOR_DATE.replace(year=ANCHOR_DATE.year - a1 - 1) + timedelta(days=1)).toordinal())
            last = min(hi, ANCHOR_DATE.replace(year=ANCHOR_DATE.year - a0).toordinal())
            birth = date.fromordinal(rng.randint(first, last))
            r = rng.random()
            gender = "female" if r < 0.52 else "male" if r < 0.992 else "other" if r < 0.996 else "unknown"
            given, family = self.name(gender)
            if rng.random() < 0.3:  # a middle name now and then
                given = [given, self.name(gender)[0]]
            else:
                given = [given]
            rid = f"pat-{i + 1:06d}"
            pat = _Patient(rid, gender, given[0], family, birth)
            self.patients_list.append(pat)
            age = pat.age_on(ANCHOR_DATE)
            weights.append((0.5 if age < 18 else 1.0 if age < 65 else 1.7) * rng.lognormvariate(0, 0.7))
            self.add({
                "resourceType": "Patient", "id": rid,
                "identifier": [{"system": MRN, "value": f"MRN{mrns[i]:07d}"}],
                "name": [{"family": family, "given": given}],
                "birthDate": birth.isoformat(), "gender": gender,
                "telecom": [{"system": "phone", "value": self.phone()}],
            })
        self.patient_cum = _cum(weights)

    def pick_patient(self, start: datetime, end: datetime, adult: bool = False) -> _Patient:
        pats, cum = self.patients_list, self.patient_cum
        for _ in range(40):
            pat = self.rng.choices(pats, cum_weights=cum)[0]
            if adult and pat.age_on(start.date()) < 18:
                continue
            if not pat.busy(start, end):
                return pat
        return pat

    def coverages(self) -> None:
        rng = self.rng
        by_segment: dict[str, list] = {}
        for payer in self.payers:
            by_segment.setdefault(payer[3], []).append(payer)
        subscriber_numbers = iter(rng.sample(range(100_000_000, 1_000_000_000), len(self.patients_list)))
        seq = 0
        for pat in self.patients_list:
            number = next(subscriber_numbers)
            if rng.random() < 0.07:
                continue  # self-pay / uninsured
            age = pat.age_on(ANCHOR_DATE)
            if age >= 65:
                segment = rng.choices(("medicare", "commercial", "medicaid"), (75, 20, 5))[0]
            elif age < 18:
                segment = rng.choices(("medicaid", "commercial", "marketplace"), (40, 55, 5))[0]
            else:
                segment = rng.choices(("medicaid", "commercial", "marketplace"), (15, 70, 15))[0]
            org, prefix, plans, _ = rng.choice(by_segment[segment])
            value, plan_name = rng.choice(plans)
            seq += 1
            pat.coverage = f"cov-{seq:06d}"
            self.add({
                "resourceType": "Coverage", "id": pat.coverage, "status": "active",
                "beneficiary": _ref("Patient", pat.rid), "payor": [_ref("Organization", org)],
                "subscriberId": f"{prefix}{number}",
                "class": [{"type": _cc(COVERAGE_CLASS, "plan"), "value": value, "name": plan_name}],
            })

    # -- specialist schedules ----------------------------------------------------------------

    def schedules(self) -> None:
        rng = self.rng
        weeks = max(1, min(6, math.ceil(6 * self.scale)))
        horizon = [ANCHOR_DATE + timedelta(days=d) for d in range(1, 7 * weeks + 1)]
        past = [ANCHOR_DATE - timedelta(days=d) for d in range(365, 0, -1)]
        self.slots_by_specialty: dict[str, list[_Slot]] = {}
        seq = 0
        for specialty in SPECIALTIES:
            slots: list[_Slot] = []
            for spec in self.specialists[specialty]:
                sid = f"sch-{spec.rid.removeprefix('prac-')}"
                self.add({
                    "resourceType": "Schedule", "id": sid, "active": True,
                    "actor": [_ref("Practitioner", spec.rid), _ref("Location", spec.clinic)],
                    "serviceType": [{"text": specialty}],
                })
                spec.past_days = [d for d in past if d.weekday() in spec.weekdays and _is_clinic_day(d)]
                for d in horizon:
                    if d.weekday() in spec.weekdays and _is_clinic_day(d):
                        for t in SLOT_TIMES:
                            slots.append(_Slot("", sid, spec.rid, spec.clinic, _to_utc(datetime.combine(d, t))))
            # Bookings held outside this data set: busy near term, emptier further out.
            for slot in slots:
                days_out = (slot.start - ANCHOR).days
                if rng.random() < 0.62 - 0.9 * days_out / 100:
                    slot.status = "busy"
            slots.sort(key=lambda s: (s.start, s.practitioner))
            self.slots_by_specialty[specialty] = slots
        # ids in schedule, time order
        all_slots = sorted((s for lst in self.slots_by_specialty.values() for s in lst), key=lambda s: (s.schedule, s.start))
        for s in all_slots:
            seq += 1
            s.rid = f"slot-{seq:06d}"
        self.all_slots = all_slots

    def clinic_time(self, specialty: str, on_or_after: date) -> tuple[_Specialist, datetime] | None:
        """A free past clinic slot of this specialty on or after the day, or None if none left."""
        rng = self.rng
        candidates = []
        for spec in self.specialists[specialty]:
            i = bisect.bisect_left(spec.past_days, on_or_after)
            if i < len(spec.past_days):
                candidates.append((spec.past_days[i], i, spec))
        candidates.sort(key=lambda c: (c[0], c[2].rid))
        for _, i, spec in candidates:
            for day in spec.past_days[i:i + 5]:
                times = list(SLOT_TIMES)
                rng.shuffle(times)
                for t in times:
                    start = _to_utc(datetime.combine(day, t))
                    if (spec.rid, start) not in self.used_clinic_times:
                        self.used_clinic_times.add((spec.rid, start))
                        return spec, start
        return None

    # -- inpatient flow ----------------------------------------------------------------------

    def inpatient_stays(self) -> None:
        rng = self.rng
        n_enc = _scaled(20000, self.scale, 20)
        self.n_imp = round(n_enc * 0.12)
        self.n_emer = round(n_enc * 0.18)
        self.n_amb = n_enc - self.n_imp - self.n_emer
        self.encounters: list[tuple[datetime, str, dict]] = []  # (start, location, resource)
        self.ed_visits: list[tuple[datetime, datetime, _Patient, bool]] = []
        days = [ANCHOR_DATE - timedelta(days=d) for d in range(365, 0, -1)]
        season = [1 + 0.15 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 20) / 365) for d in days]
        ed_day_cum = _cum(s * ED_BY_WEEKDAY[d.weekday()] for d, s in zip(days, season))
        elective_day_cum = _cum(s if _is_clinic_day(d) else 0 for d, s in zip(days, season))
        ed_hour_cum = _cum(ED_ARRIVAL_BY_HOUR)
        sources = [s for s, _ in ADMIT_SOURCES]
        source_cum = _cum(w for _, w in ADMIT_SOURCES)
        requests = []
        for _ in range(self.n_imp):
            source = rng.choices(sources, cum_weights=source_cum)[0]
            if source == "Emergency department":
                d = rng.choices(days, cum_weights=ed_day_cum)[0]
                arrival = self.ed_arrival(d, ed_hour_cum)
                # Decision to admit after 3-8 h in the ED; the bed may take longer (boarding).
                desired = arrival + timedelta(minutes=rng.randint(180, 480))
                icu = rng.random() < 0.3
            elif source == "Physician referral":
                d = rng.choices(days, cum_weights=elective_day_cum)[0]
                arrival = None
                desired = _to_utc(datetime.combine(d, time(rng.randint(6, 10), rng.choice((0, 15, 30, 45)))))
                icu = rng.random() < 0.12
            else:
                d = rng.choices(days, cum_weights=ed_day_cum)[0]
                arrival = None
                desired = _to_utc(datetime.combine(d, time(rng.randrange(24), rng.randrange(60))))
                icu = rng.random() < 0.5
            if desired >= ANCHOR:
                desired = ANCHOR - timedelta(hours=rng.randint(2, 20))
                arrival = desired - timedelta(hours=4) if arrival else None
            kind = "icu" if icu else "med-surg"
            los = rng.choices(range(1, 11), ICU_LOS)[0] if icu else rng.choices(range(1, 15), MEDSURG_LOS)[0]
            requests.append((desired, arrival, source, kind, los))
        requests.sort(key=lambda r: r[0])
        free_at = {bed: datetime.min for kind in ("med-surg", "icu") for bed in self.beds[kind]}
        service_names = [s for s, _ in MEDSURG_SERVICES]
        service_cum = _cum(w for _, w in MEDSURG_SERVICES)
        dispo_names = [s for s, _ in DISPOSITIONS]
        dispo_cum = _cum(w for _, w in DISPOSITIONS)
        for desired, arrival, source, kind, los in requests:
            beds = self.beds[kind]
            free = [b for b in beds if free_at[b] <= desired]
            if free:
                bed, start = rng.choice(free), desired
            else:  # unit full: the patient boards until the first bed opens
                bed = min(beds, key=lambda b: (free_at[b], b))
                start = free_at[bed] + timedelta(minutes=rng.randint(45, 120))
                other = self.beds["icu" if kind == "med-surg" else "med-surg"]
                overflow = [b for b in other if free_at[b] <= desired + timedelta(hours=6)]
                if start - desired > timedelta(hours=10) and overflow:  # off-unit placement instead
                    bed = rng.choice(overflow)
                    start = max(desired, free_at[bed] + timedelta(minutes=rng.randint(45, 120)))
                elif start - desired > timedelta(hours=20):  # whichever bed in the house opens first
                    bed = min(beds + other, key=lambda b: (free_at[b], b))
                    start = max(desired, free_at[bed] + timedelta(minutes=rng.randint(45, 120)))
                if start >= ANCHOR:
                    continue
            local = _to_local(start)
            discharge_time = time(rng.randint(10, 16), rng.randrange(60))
            discharge = _to_utc(datetime.combine(local.date() + timedelta(days=los), discharge_time))
            if discharge <= start + timedelta(hours=8):
                discharge = start + timedelta(hours=rng.randint(20, 30))
            current = discharge > ANCHOR
            free_at[bed] = _FOREVER if current else discharge + timedelta(minutes=rng.randint(60, 180))
            busy_from = arrival or start
            busy_until = _FOREVER if current else discharge + timedelta(hours=12)
            pat = self.pick_patient(busy_from - timedelta(hours=12), busy_until)
            pat.stays.append((busy_from, _FOREVER if current else discharge))
            hosp: dict = {"admitSource": {"text": source}}
            if not current:
                hosp["dischargeDisposition"] = {"text": rng.choices(dispo_names, cum_weights=dispo_cum)[0]}
            service = "Critical Care" if kind == "icu" else rng.choices(service_names, cum_weights=service_cum)[0]
            self.encounter("IMP", pat, start, None if current else discharge, bed, service, hosp)
            if arrival is not None:
                self.ed_visits.append((arrival, start, pat, True))

    def ed_arrival(self, day: date, hour_cum: list[float]) -> datetime:
        hour = self.rng.choices(range(24), cum_weights=hour_cum)[0]
        return _to_utc(datetime.combine(day, time(hour, self.rng.randrange(60))))

    def encounter(self, cls: str, pat: _Patient, start: datetime, end: datetime | None, loc: str,
                  service: str, hosp: dict | None = None) -> None:
        period = {"start": _iso(start)}
        if end is not None:
            period["end"] = _iso(end)
        res = {
            "resourceType": "Encounter", "status": "finished" if end is not None else "in-progress",
            "class": {"system": ACT_CODE, "code": cls}, "serviceType": {"text": service},
            "subject": _ref("Patient", pat.rid), "period": period,
            "location": [{"location": _ref("Location", loc)}],
            "serviceProvider": _ref("Organization", HOSPITAL[0]),
        }
        if hosp:
            res["hospitalization"] = hosp
        self.encounters.append((start, loc, res))

    # -- referrals ---------------------------------------------------------------------------

    def referrals(self) -> None:
        rng = self.rng
        n = _scaled(1000, self.scale, 5)
        self.appointments: list[tuple[datetime, str, dict]] = []
        self.fulfilled_visits: list[tuple[datetime, _Patient, str, str]] = []
        spec_cum = _cum(SPECIALTY_WEIGHT[s] for s in SPECIALTIES)
        prio_names = [p for p, _ in PRIORITIES]
        prio_cum = _cum(w for _, w in PRIORITIES)
        authored = []
        for _ in range(n):
            while True:
                d = ANCHOR_DATE - timedelta(days=rng.randint(1, 120))
                if d.weekday() < 5 or rng.random() < 0.15:
                    break
            authored.append(_to_utc(datetime.combine(d, time(rng.randint(7, 17), rng.randrange(60), rng.randrange(60)))))
        authored.sort()
        for i, t0 in enumerate(authored, 1):
            specialty = rng.choices(SPECIALTIES, cum_weights=spec_cum)[0]
            priority = rng.choices(prio_names, cum_weights=prio_cum)[0]
            state, last, visits, target = self.referral_path(t0, priority, specialty)
            slot = None
            if state == "scheduled" and target != _FOREVER:
                # (target unset: the last visit was a no-show the office has not acted on yet)
                slot = self.book_slot(specialty, target)
                if slot is None:  # no capacity left in the horizon: still waiting to be booked
                    state = "ready-to-schedule"
            sr_id, task_id = f"sr-{i:06d}", f"task-{i:06d}"
            check = slot.start if slot else visits[-1][0] if visits else t0
            pat = self.pick_patient(check - timedelta(hours=2), check + timedelta(hours=2), adult=specialty != "Dermatology")
            booked = [(start, prac, clinic, status, None) for start, prac, clinic, status in visits]
            if slot is not None:
                booked.append((slot.start, slot.practitioner, slot.clinic, "booked", slot.rid))
            for start, prac, clinic, status, slot_id in booked:
                appt = {
                    "resourceType": "Appointment", "status": status, "serviceType": [{"text": specialty}],
                    "start": _iso(start), "end": _iso(start + timedelta(minutes=30)),
                    "participant": self.participants(pat.rid, prac, clinic),
                    "basedOn": [_ref("ServiceRequest", sr_id)],
                }
                if slot_id:
                    appt["slot"] = [_ref("Slot", slot_id)]
                self.appointments.append((start, prac, appt))
                if status == "fulfilled":
                    self.fulfilled_visits.append((start, pat, clinic, specialty))
            requester = rng.choice(self.referrers)
            reason, letter = self.letter(specialty, priority, pat, requester, t0)
            sr = {
                "resourceType": "ServiceRequest", "id": sr_id,
                "identifier": [{"system": REFERRAL_NUMBER, "value": f"REF-{_to_local(t0).year % 100:02d}-{i:06d}"}],
                "status": SR_STATUS.get(state, "active"), "intent": "order",
                "category": [_cc(SNOMED, REFERRAL_CATEGORY_CODE, "Patient referral")],
                "priority": priority, "code": {"text": f"Referral to {specialty}"},
                "performerType": {"text": specialty},
                "subject": _ref("Patient", pat.rid), "requester": _ref("Practitioner", requester[0]),
                "authoredOn": _iso(t0), "reasonCode": [{"text": reason}],
                "note": [{"text": letter}],
            }
            if pat.coverage:
                sr["insurance"] = [_ref("Coverage", pat.coverage)]
            self.add(sr)
            self.add({
                "resourceType": "Task", "id": task_id, "status": WORKFLOW_TO_TASK_STATUS[state], "intent": "order",
                "focus": _ref("ServiceRequest", sr_id), "for": _ref("Patient", pat.rid),
                "businessStatus": _cc(WORKFLOW, state),
                "authoredOn": _iso(t0), "lastModified": _iso(last),
            })

    def no_show(self, line: str) -> bool:
        """Random, but held close to the service line's no-show rate (a quota, not a coin toss)."""
        self.noshow_debt[line] += NOSHOW_RATE[line]
        if self.rng.random() < self.noshow_debt[line]:
            self.noshow_debt[line] -= 1
            return True
        return False

    @staticmethod
    def participants(patient: str, practitioner: str, clinic: str) -> list[dict]:
        return [
            {"actor": _ref("Patient", patient), "status": "accepted"},
            {"actor": _ref("Practitioner", practitioner), "status": "accepted"},
            {"actor": _ref("Location", clinic), "status": "accepted"},
        ]

    def office_hours(self, t: datetime) -> datetime:
        """The first moment at or after t that the referral office is open (weekdays 08-17)."""
        local = _to_local(t)
        if _is_clinic_day(local.date()) and 8 <= local.hour < 17:
            return t
        d = local.date() + timedelta(days=0 if local.hour < 8 else 1)
        while not _is_clinic_day(d):
            d += timedelta(days=1)
        return _to_utc(datetime.combine(d, time(8, self.rng.randrange(60))) + timedelta(minutes=self.rng.randrange(240)))

    def referral_path(self, t0: datetime, priority: str, specialty: str):
        """Walk one referral through the office up to the anchor.

        Returns (state at the anchor, when it entered it, past visits as (start, practitioner,
        clinic, fulfilled|noshow), and the wanted visit time if the state is "scheduled").
        """
        rng = self.rng
        speed = PRIORITY_SPEED[priority] * (3.0 if rng.random() < 0.12 else 1.0)  # some sit in a queue
        state, last = "new", t0
        visits: list[tuple[datetime, str, str, str]] = []

        def wait(mean_days: float) -> timedelta:
            return timedelta(hours=max(0.25, rng.expovariate(1 / (mean_days * 24 * speed))))

        def step(new_state: str, when: datetime) -> bool:
            nonlocal state, last
            when = self.office_hours(when) if priority in ("routine", "urgent") else when
            if when > ANCHOR:
                return False
            state, last = new_state, when
            return True

        def result(target: datetime = _FOREVER):
            return state, last, visits, target

        t = t0 + wait(4)
        if not step("triage", t):
            return result()
        t = last + wait(3)
        if rng.random() < 0.06:  # declined at triage: duplicate, wrong service, missing information
            step("closed", t)
            return result()
        if rng.random() < (0.15 if priority == "stat" else 0.45):
            if not step("awaiting-preauth", t):
                return result()
            t = last + timedelta(hours=max(4, rng.expovariate(1 / (9 * 24 * max(speed, 0.2)))))
            if rng.random() < 0.07:  # pre-authorization denied
                step("closed", t)
                return result()
        for attempt in range(3):
            if not step("ready-to-schedule", t):
                return result()
            t = last + wait(6)
            if rng.random() < 0.04:  # patient never reached after several attempts
                step("closed", t + timedelta(days=14))
                return result()
            if not step("scheduled", t):
                return result()
            lo, hi = APPOINTMENT_LEAD_DAYS[priority]
            target = last + timedelta(days=rng.uniform(lo, hi))
            found = None
            if target < ANCHOR:
                day = max(_to_local(target).date(), _to_local(last).date() + timedelta(days=1))
                found = self.clinic_time(specialty, day)
            if found is None:
                return result(target)
            spec, start = found
            noshow = attempt < 2 and self.no_show(specialty)
            visits.append((start, spec.rid, spec.clinic, "noshow" if noshow else "fulfilled"))
            t = start + timedelta(minutes=rng.randint(40, 240))
            if not noshow:
                if not step("completed", t):
                    state, last = "completed", ANCHOR
                return result()
            if rng.random() < 0.2:  # no-show, then declines to rebook
                step("closed", t + timedelta(days=7))
                return result()
            if not step("ready-to-schedule", t):
                return result()
        return result()

    def book_slot(self, specialty: str, target: datetime) -> _Slot | None:
        slots = self.slots_by_specialty[specialty]
        free = [s for s in slots if s.status == "free"]
        if not free:
            return None
        after = [s for s in free if s.start >= target]
        slot = after[0] if after else free[-1]
        slot.status = "busy"
        return slot

    def letter(self, specialty: str, priority: str, pat: _Patient, referrer: tuple, t0: datetime) -> tuple[str, str]:
        rng = self.rng
        routine_reasons, red_flags = REASONS[specialty]
        redflag = rng.choice(red_flags) if priority == "stat" or (priority == "asap" and rng.random() < 0.4) else None
        reason = redflag if priority == "stat" else rng.choice(routine_reasons)
        female = pat.gender == "female"
        male = pat.gender == "male"
        pronoun = "she" if female else "he" if male else "they"
        age = pat.age_on(_to_local(t0).date())
        spec_l = specialty.lower()
        words = {
            "specialty": specialty, "specialty_l": spec_l,
            "a_specialty_l": ("an " if spec_l[0] in "aeiou" else "a ") + spec_l,
            "family": pat.family, "given": pat.given,
            "title": "Ms." if female else "Mr." if male else "Mx.", "age": age,
            "sexword": ("girl" if female else "boy" if male else "child") if age < 18
            else ("woman" if female else "man" if male else "adult"),
            "sexletter": "F" if female else "M" if male else "X", "pronoun": pronoun, "Pronoun": pronoun.capitalize(),
            "object": "her" if female else "him" if male else "them",
            "possessive": "her" if female else "his" if male else "their",
            "is": "is" if female or male else "are", "has": "has" if female or male else "have",
            "reason": reason, "n": rng.randint(2, 10), "h": rng.randint(3, 36), "dob": pat.birth.strftime("%m/%d/%Y"),
            "redflag": redflag or "",
        }
        acute = priority == "stat" or redflag is not None
        body = [rng.choice(INTROS), rng.choice(COURSE_ACUTE if acute else COURSE)]
        if rng.random() < 0.7:
            body.append("Past history includes " + self.listing(rng.sample(PMH, rng.randint(1, 3))) + ".")
        if rng.random() < 0.6:
            body.append("Current medications include " + self.listing(rng.sample(MEDS, rng.randint(1, 4))) + ".")
        if rng.random() < 0.5:
            body.append(rng.choice(ALLERGIES))
        if redflag and priority == "asap":
            body.append("Of note, {pronoun} now also {has} {redflag}.")
        body.append(rng.choice(URGENCY[priority]))
        body.append(f"Specifically, I would appreciate {rng.choice(ASKS_ACUTE if priority == 'stat' else ASKS)}.")
        if pat.coverage and rng.random() < 0.3:
            body.append("Insurance details are attached in case pre-authorization is required.")
        body.append(rng.choice(CLOSINGS))
        _, given, family, profession, practice = referrer
        text = "\n\n".join((
            rng.choice(OPENINGS).format(**words),
            " ".join(p.format(**words) for p in body),
            f"Sincerely,\n{given} {family}, {profession}\n{practice}",
        ))
        return reason[:1].upper() + reason[1:], text

    @staticmethod
    def listing(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    # -- other outpatient visits ---------------------------------------------------------------

    def outpatient_appointments(self) -> None:
        rng = self.rng
        target = _scaled(3000, self.scale, 5)
        n = max(0, target - len(self.appointments))
        spec_cum = _cum(SPECIALTY_WEIGHT[s] for s in SPECIALTIES)
        first = ANCHOR_DATE - timedelta(days=365)
        for _ in range(n):
            specialty = rng.choices(SPECIALTIES, cum_weights=spec_cum)[0]
            found = None
            for _ in range(10):
                found = self.clinic_time(specialty, first + timedelta(days=rng.randrange(365)))
                if found:
                    break
            if not found:
                continue
            spec, start = found
            adult = specialty not in ("Dermatology", "Endocrinology")
            pat = self.pick_patient(start - timedelta(hours=1), start + timedelta(hours=2), adult=adult)
            if rng.random() < 0.05:
                status = "cancelled"
            elif self.no_show(specialty):
                status = "noshow"
            else:
                status = "fulfilled"
                self.fulfilled_visits.append((start, pat, spec.clinic, specialty))
            self.appointments.append((start, spec.rid, {
                "resourceType": "Appointment", "status": status, "serviceType": [{"text": specialty}],
                "start": _iso(start), "end": _iso(start + timedelta(minutes=30)),
                "participant": self.participants(pat.rid, spec.rid, spec.clinic),
            }))

    # -- emergency and clinic encounters -------------------------------------------------------

    def ed_and_clinic_encounters(self) -> None:
        rng = self.rng
        days = [ANCHOR_DATE - timedelta(days=d) for d in range(365, 0, -1)]
        season = [1 + 0.15 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 20) / 365) for d in days]
        ed_day_cum = _cum(s * ED_BY_WEEKDAY[d.weekday()] for d, s in zip(days, season))
        ed_hour_cum = _cum(ED_ARRIVAL_BY_HOUR)
        # Stand-alone ED visits (the ones that led to an admission already exist).
        for _ in range(max(0, self.n_emer - len(self.ed_visits))):
            d = rng.choices(days, cum_weights=ed_day_cum)[0]
            arrival = self.ed_arrival(d, ed_hour_cum)
            stay = timedelta(minutes=min(720, max(50, round(rng.lognormvariate(math.log(200), 0.45)))))
            if arrival + stay >= ANCHOR:
                arrival -= timedelta(days=1)
            pat = self.pick_patient(arrival - timedelta(hours=1), arrival + stay + timedelta(hours=1))
            self.ed_visits.append((arrival, arrival + stay, pat, False))
        self.ed_visits.sort(key=lambda v: (v[0], v[2].rid))
        bays = self.beds["ed"]
        free_at = {bay: datetime.min for bay in bays}
        for arrival, leave, pat, _admitted in self.ed_visits:
            free = [b for b in bays if free_at[b] <= arrival]
            bay = rng.choice(free) if free else min(bays, key=lambda b: (free_at[b], b))
            free_at[bay] = leave + timedelta(minutes=rng.randint(15, 40))
            self.encounter("EMER", pat, arrival, leave, bay, "Emergency Medicine")
        # Clinic visits: the attended appointments, plus visits booked outside this data set.
        for start, pat, clinic, specialty in self.fulfilled_visits:
            begin = start + timedelta(minutes=rng.randint(-10, 20))
            self.encounter("AMB", pat, begin, begin + timedelta(minutes=rng.randint(20, 55)), clinic, specialty)
        open_days = [(d, s) for d, s in zip(days, season) if d.weekday() < 6 and d not in _holidays(d.year)]
        clinic_days = [d for d, _ in open_days]
        day_cum = _cum((1.0 if d.weekday() < 5 else 0.12) * s for d, s in open_days)
        hours = list(CLINIC_START_BY_HOUR)
        hour_cum = _cum(CLINIC_START_BY_HOUR.values())
        spec_cum = _cum(SPECIALTY_WEIGHT[s] for s in SPECIALTIES)
        remaining = max(0, self.n_amb - len(self.fulfilled_visits))
        picked_days = rng.choices(clinic_days, cum_weights=day_cum, k=remaining)
        for d in picked_days:
            hour = rng.choices(hours, cum_weights=hour_cum)[0]
            if d.weekday() == 5:
                hour = min(hour, 11)
            start = _to_utc(datetime.combine(d, time(hour, rng.choice((0, 15, 30, 45)))))
            end = start + timedelta(minutes=rng.randint(20, 60))
            specialty = rng.choices(SPECIALTIES, cum_weights=spec_cum)[0]
            pat = self.pick_patient(start - timedelta(hours=1), end + timedelta(hours=1))
            self.encounter("AMB", pat, start, end, self.clinic_of[specialty], specialty)

    # -- ids and output order ----------------------------------------------------------------

    def finish(self) -> None:
        self.encounters.sort(key=lambda e: (e[0], e[1], e[2]["subject"]["reference"]))
        for i, (_, _, res) in enumerate(self.encounters, 1):
            res["id"] = f"enc-{i:06d}"
            self.add(res)
        self.appointments.sort(key=lambda a: (a[0], a[1]))
        for i, (_, _, res) in enumerate(self.appointments, 1):
            res["id"] = f"appt-{i:06d}"
            self.add(res)
        for s in self.all_slots:
            self.add({
                "resourceType": "Slot", "id": s.rid, "schedule": _ref("Schedule", s.schedule),
                "status": s.status, "start": _iso(s.start), "end": _iso(s.start + timedelta(minutes=30)),
            })

    # -- post-discharge follow-up --------------------------------------------------------------

    def followups(self) -> None:
        """CarePlans for recent home discharges, a CommunicationRequest per check-in, and a
        Communication for each past check-in attempt (plus now and then a patient calling in)."""
        rng = self.followup_rng
        channels, channel_cum = [c for c, _ in CHANNELS], _cum(w for _, w in CHANNELS)
        outcomes, outcome_cum = [o for o, _ in CONTACT_OUTCOMES], _cum(w for _, w in CONTACT_OUTCOMES)
        since = ANCHOR - timedelta(days=FOLLOWUP_WINDOW_DAYS)
        n = 0
        for enc in self.out["Encounter"]:
            service = enc["serviceType"]["text"]
            disposition = enc.get("hospitalization", {}).get("dischargeDisposition", {}).get("text")
            if enc["class"]["code"] != "IMP" or disposition not in FOLLOWUP_DISPOSITIONS:
                continue
            discharge = datetime.fromisoformat(enc["period"]["end"]).astimezone(UTC).replace(tzinfo=None)
            if discharge < since or service not in FOLLOWUP_BY_SERVICE or rng.random() >= FOLLOWUP_SHARE:
                continue
            n += 1
            conditions = FOLLOWUP_BY_SERVICE[service]
            condition = rng.choices([c for c, _ in conditions], [w for _, w in conditions])[0]
            first = _to_local(discharge).date()
            plan_id, patient = f"cp-{n:06d}", enc["subject"]
            plan = self.add({
                "resourceType": "CarePlan", "id": plan_id, "intent": "plan",
                "status": "completed" if first + timedelta(days=30) < ANCHOR_DATE else "active",
                "category": [_cc(SNOMED, DISCHARGE_CARE_PLAN_CODE, "Discharge care plan"),
                             _cc(FOLLOWUP_CONDITION, condition)],
                "title": FOLLOWUP_TITLES[condition], "subject": patient,
                "encounter": _ref("Encounter", enc["id"]),
                "period": {"start": first.isoformat(), "end": (first + timedelta(days=30)).isoformat()},
            })
            preferred = rng.choices(channels, cum_weights=channel_cum)[0]
            called_off = False
            for k, days in enumerate(CHECKIN_DAYS[condition], 1):
                channel = "phone" if k == 1 else preferred  # the first call after discharge is a call
                medium = [_cc(PARTICIPATION_MODE, CHANNEL_TO_MEDIUM[channel])]
                due = _to_utc(datetime.combine(first + timedelta(days=days), time(rng.choice((9, 10, 11, 13, 14, 15)))))
                sent = due + timedelta(minutes=rng.randint(0, 240))
                request = {
                    "resourceType": "CommunicationRequest", "id": f"creq-{n:06d}-{k}", "status": "active",
                    "basedOn": [_ref("CarePlan", plan_id)], "subject": patient, "medium": medium,
                    "occurrenceDateTime": _iso(due),
                }
                self.add(request)
                if called_off or (sent < ANCHOR and k > 1 and rng.random() < 0.04):
                    # Readmitted or withdrew: this check-in and the rest are called off.
                    called_off = True
                    request["status"] = plan["status"] = "revoked"
                    continue
                if sent >= ANCHOR:
                    continue  # still to come
                contact = {
                    "resourceType": "Communication", "id": f"comm-{n:06d}-{k}",
                    "basedOn": [_ref("CommunicationRequest", request["id"])], "subject": patient, "medium": medium,
                }
                if rng.random() < 0.16:
                    contact["status"] = "not-done"
                    contact["statusReason"] = _cc(CHECKIN_OUTCOME, "unreachable" if rng.random() < 0.85 else "declined")
                else:
                    request["status"] = "completed"
                    contact["status"] = "completed"
                    contact["sent"] = _iso(sent)
                    contact["topic"] = _cc(CHECKIN_OUTCOME, rng.choices(outcomes, cum_weights=outcome_cum)[0])
                self.add(contact)
            call = discharge + timedelta(hours=rng.randint(20, 24 * 20))
            if rng.random() < 0.1 and call < ANCHOR:  # the patient called in between check-ins
                self.add({
                    "resourceType": "Communication", "id": f"comm-{n:06d}-call", "status": "completed",
                    "basedOn": [_ref("CarePlan", plan_id)], "subject": patient,
                    "medium": [_cc(PARTICIPATION_MODE, "PHONE")], "sent": _iso(call),
                    "topic": _cc(CHECKIN_OUTCOME, rng.choice(("concern", "escalated"))),
                })


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _dumps(resource: dict) -> str:
    return json.dumps(resource, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def generate(out_dir: Path, seed: int = DEFAULT_SEED, *, scale: float = 1.0) -> dict[str, int]:
    """Write the synthetic demo data set as FHIR R4 bulk-export ndjson.

    Each file goes to a temporary file in ``out_dir`` first and is then moved into place with
    ``os.replace``; ``manifest.json`` is written last. A run that dies part-way leaves only
    complete files (from this run or the previous one) and the previous manifest.

    Args:
        out_dir: Folder to write into; created if missing. Existing files of the same names are
            replaced.
        seed: Seed for ``random.Random``. Same seed and scale give byte-identical files.
        scale: Volume factor for patients, referrals, encounters, appointments and the slot
            horizon (for example 0.05 for fast tests). The facility and staff stay full size.

    Returns:
        Number of resources written, by resource type (sorted by type name).

    Raises:
        ValueError: ``scale`` is not in (0, 10].
        OSError: The folder or a file cannot be written.
    """
    if not (isinstance(scale, (int, float)) and 0 < scale <= 10):
        raise ValueError(f"scale must be in (0, 10], got {scale!r}")
    resources = _Builder(seed, float(scale)).build()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Serialize everything first: a failure here leaves the folder untouched.
    payloads = {
        rtype: ("\n".join(_dumps(r) for r in items) + "\n").encode("utf-8")
        for rtype, items in sorted(resources.items())
    }
    counts = {rtype: len(resources[rtype]) for rtype in payloads}
    manifest = {
        "transactionTime": LAST_UPDATED,
        "request": EXPORT_REQUEST,
        "requiresAccessToken": False,
        "output": [{"type": rtype, "url": f"{rtype}.ndjson", "count": counts[rtype]} for rtype in payloads],
        "error": [],
    }
    for rtype, data in payloads.items():
        _write_atomic(out_dir / f"{rtype}.ndjson", data)
    _write_atomic(out_dir / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    logger.info("demo data set written: %d resources, seed %d, scale %g", sum(counts.values()), seed, scale)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m app.demo.generate [--out DIR] [--seed N] [--scale F]``."""
    parser = argparse.ArgumentParser(prog="python -m app.demo.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    counts = generate(args.out, args.seed, scale=args.scale)
    for rtype, n in counts.items():
        print(f"{rtype:<18} {n:>7}")
    print(f"{'total':<18} {sum(counts.values()):>7}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
