"""Referral intake with a documentation assistant: suggest, then a person decides.

``extract`` reads a pasted or imported referral letter and suggests structured fields, each with
the exact span of the letter it came from; ``match_patient`` looks the patient up in the cache
(audited); ``accept`` turns the coordinator's decisions into a referral draft. A value reaches the
draft only if the coordinator accepted or corrected it, and the draft is refused while any
suggestion is still undecided. Nothing here writes to the cache: the referral service creates the
referral from the draft. Extraction is rule-based and local (no model, no network), so letters
never leave the workstation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from app.cache.models import Patient
from app.errors import ValidationError
from app.security.roles import Permission
from services.context import ServiceContext
from services.intake_rules import find_candidates, normalise_specialty
from services.intake_terms import URGENCY_ORDER, URGENCY_SEVERITY
from services.intake_text import Field, name_key, plausible_birth, squash
from services.patients import MAX_RESULTS, PatientSummary

__all__ = [
    "FIELDS", "REVIEW_FIELDS", "Decision", "Extraction", "Field", "IntakeReview", "PatientMatch",
    "accept", "extract", "match_patient",
]

FIELDS = ("patient_name", "birth_date", "mrn", "specialty", "reason", "payer", "plan", "member_id",
          "referring_clinician", "referring_org")
# What the coordinator reviews: the extracted fields plus the urgency suggested from the hints.
REVIEW_FIELDS = FIELDS[:5] + ("urgency",) + FIELDS[5:]
_MAX_LEN = {"reason": 4000, "patient_name": 200, "referring_clinician": 200, "referring_org": 200,
            "payer": 200, "plan": 120, "specialty": 80, "mrn": 64, "member_id": 64, "urgency": 16}


@dataclass(frozen=True)
class Extraction:
    """Suggestions for one letter. Each field is the best candidate or None; ``candidates`` keeps
    every distinct candidate per field, best first, so an ambiguous value (two readings of
    03/04/1961, two names) can be chosen from instead of guessed."""

    text: str
    patient_name: Field | None
    birth_date: Field | None
    mrn: Field | None
    specialty: Field | None  # value: the canonical specialty; source_text: the words used
    reason: Field | None
    urgency_hints: list[Field]  # value: "emergent" | "urgent" | "routine", in text order
    urgency: Field | None  # the most severe confident hint
    payer: Field | None
    plan: Field | None
    member_id: Field | None
    referring_clinician: Field | None
    referring_org: Field | None
    candidates: dict[str, list[Field]]

    def suggestions(self, name: str) -> list[Field]:
        return self.candidates.get(name, [])


def extract(text: str, *, today: dt.date | None = None) -> Extraction:
    """Suggest referral fields from a letter. Pure: no I/O, no cache, no logging."""
    today = today or dt.date.today()
    found, hints = find_candidates(text, today)
    ranked = {name: _rank(found.get(name, [])) for name in FIELDS}
    # Two names in a letter: the one that is also the referrer's is not the patient's.
    doctors = {name_key(f.value) for f in ranked["referring_clinician"]}
    ranked["patient_name"] = [f for f in ranked["patient_name"] if f.confidence >= 0.9 or name_key(f.value) not in doctors]
    ranked["urgency"] = _urgency_options(hints)
    return Extraction(
        text=text,
        urgency_hints=hints,
        candidates={k: v for k, v in ranked.items() if v},
        **{name: (ranked[name][0] if ranked[name] else None) for name in (*FIELDS, "urgency")},
    )


def _key(value: Any) -> Any:
    """Values that differ only in case, spacing or punctuation are the same suggestion."""
    return " ".join(re.findall(r"\w+", value.casefold())) if isinstance(value, str) else value


def _rank(fields: list[Field]) -> list[Field]:
    """Distinct values, best first; a value found in several places gains a little confidence."""
    best: dict[Any, Field] = {}
    seen: dict[Any, int] = {}
    for f in fields:
        k = _key(f.value)
        if not k:
            continue
        seen[k] = seen.get(k, 0) + 1
        if k not in best or (f.confidence, -f.span[0]) > (best[k].confidence, -best[k].span[0]):
            best[k] = f
    out = [dataclasses.replace(f, confidence=round(min(0.99, f.confidence + 0.05 * min(seen[k] - 1, 2)), 2))
           for k, f in best.items()]
    return sorted(out, key=lambda f: (-f.confidence, f.span[0]))


def _urgency_options(hints: list[Field]) -> list[Field]:
    """One option per category, each shown with its strongest hint; the suggestion is the most
    severe category with a confident hint (erring towards sooner: a person confirms it)."""
    by_cat: dict[str, Field] = {}
    for h in hints:
        if h.value not in by_cat or h.confidence > by_cat[h.value].confidence:
            by_cat[h.value] = h
    return sorted(by_cat.values(), key=lambda h: (h.confidence < 0.5, -URGENCY_SEVERITY[h.value], -h.confidence))


# --- patient matching -------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientMatch:
    patient: PatientSummary
    matched_on: tuple[str, ...]  # "mrn", "birth_date", "name"
    conflicts: tuple[str, ...]  # where the letter disagrees with the record: check before choosing
    score: float


def _id_key(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def match_patient(ctx: ServiceContext, extraction: Extraction) -> list[PatientMatch]:
    """Patients in the cache that the letter may be about, by MRN, or by name with birth date.

    Every candidate the letter offers is used, not only the best one. A birth date alone finds
    nobody: showing everyone born that day would disclose more than the match needs."""
    mrns = {_id_key(f.value) for f in extraction.suggestions("mrn")} - {""}
    dobs = {f.value for f in extraction.suggestions("birth_date")}
    names = [k for f in extraction.suggestions("patient_name") if (k := name_key(f.value))]
    if not mrns and not names:
        return []
    conds = []
    if mrns:
        conds.append(func.upper(func.replace(func.replace(Patient.mrn, "-", ""), " ", "")).in_(mrns))
    if dobs and names:
        conds.append(Patient.birth_date.in_(dobs))
    if names:
        word = max(names[0], key=len).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(Patient.name.like(f"%{word}%", escape="\\"))
    with ctx.cache.reader() as s:
        rows = [PatientSummary(p.id, p.mrn, p.name, p.birth_date, p.sex)
                for p in s.scalars(select(Patient).where(or_(*conds)).limit(MAX_RESULTS))]
    out = [m for p in rows if (m := _judge(p, mrns, dobs, names)) is not None]
    out.sort(key=lambda m: (-m.score, m.patient.name))
    used = [k for k, v in (("mrn", mrns), ("birth_date", dobs), ("name", names)) if v]
    # The audit entry names every record about to be shown, and is committed first.
    ctx.guard(Permission.PATIENT_READ, "intake.match", "patients", [m.patient.id for m in out], detail="by=" + ",".join(used))
    return out


def _judge(p: PatientSummary, mrns: set[str], dobs: set[dt.date], names: list[frozenset[str]]) -> PatientMatch | None:
    key = name_key(p.name)
    overlap = max((len(k & key) for k in names), default=0)
    full = any(k == key or len(k & key) >= 2 for k in names)
    mrn_hit = _id_key(p.mrn or "") in mrns
    dob_hit = p.birth_date in dobs
    if not (mrn_hit or (dob_hit and overlap) or (full and not dobs)):
        return None
    matched = [k for k, hit in (("mrn", mrn_hit), ("birth_date", dob_hit), ("name", full)) if hit]
    conflicts = [k for k, bad in (("mrn", mrns and not mrn_hit), ("birth_date", dobs and p.birth_date and not dob_hit),
                                  ("name", names and not overlap)) if bad]
    score = 0.5 * mrn_hit + 0.25 * dob_hit + (0.25 if full else 0.1 if overlap else 0.0) - 0.2 * len(conflicts)
    return PatientMatch(p, tuple(matched), tuple(conflicts), round(max(score, 0.0), 2))


# --- review -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The coordinator's decision on one field: take a suggestion, type the right value, or
    leave the field out of the referral."""

    action: str  # "accept" | "correct" | "reject"
    value: Any = None
    candidate: int = 0  # which suggestion was accepted (0: the best)

    @classmethod
    def accepted(cls, candidate: int = 0) -> Decision:
        return cls("accept", candidate=candidate)

    @classmethod
    def corrected(cls, value: Any) -> Decision:
        return cls("correct", value=value)

    @classmethod
    def rejected(cls) -> Decision:
        return cls("reject")


class IntakeReview:
    """The decisions being made on one extraction, for a review form to drive."""

    def __init__(self, extraction: Extraction) -> None:
        self.extraction = extraction
        self.decisions: dict[str, Decision] = {}
        self.patient_id: str | None = None

    def accept(self, name: str, candidate: int = 0) -> None:
        self.decisions[_known(name)] = Decision.accepted(candidate)

    def correct(self, name: str, value: Any) -> None:
        self.decisions[_known(name)] = Decision.corrected(value)

    def reject(self, name: str) -> None:
        self.decisions[_known(name)] = Decision.rejected()

    def choose_patient(self, patient_id: str | None) -> None:
        self.patient_id = patient_id

    def pending(self) -> list[str]:
        """Fields with a suggestion and no decision yet: the draft waits for these."""
        return [n for n in REVIEW_FIELDS if self.extraction.suggestions(n) and n not in self.decisions]

    def draft(self, ctx: ServiceContext) -> dict[str, Any]:
        return accept(ctx, self.extraction, self.decisions, patient_id=self.patient_id)


def _known(name: str) -> str:
    if name not in REVIEW_FIELDS:
        raise ValidationError(f"Unknown intake field: {name[:40]}.")
    return name


def accept(ctx: ServiceContext, extraction: Extraction, decisions: Mapping[str, Decision], *,
           patient_id: str | None = None) -> dict[str, Any]:
    """The referral draft from the coordinator's decisions, for the referral service to create.

    Every field with a suggestion needs a decision; a value is in the draft only if it was
    accepted or corrected. The draft has every field of REVIEW_FIELDS (None where left out),
    ``patient_id`` (an existing patient the coordinator chose, or None for a new one),
    ``letter_text``, ``accepted`` / ``corrected`` / ``rejected`` (field names), ``sources`` (the
    span each accepted value came from) and ``reviewed_by``. Raises ValidationError, whose
    message names fields but never their values."""
    for name in decisions:
        _known(name)
    undecided = [n for n in REVIEW_FIELDS if extraction.suggestions(n) and n not in decisions]
    if undecided:
        raise ValidationError("Accept, correct or reject every suggestion first: " + ", ".join(undecided) + ".")
    draft: dict[str, Any] = dict.fromkeys(REVIEW_FIELDS)
    accepted: list[str] = []
    corrected: list[str] = []
    rejected: list[str] = []
    sources: dict[str, tuple[int, int]] = {}
    for name, d in decisions.items():
        options = extraction.suggestions(name)
        if d.action == "accept":
            if not 0 <= d.candidate < len(options):
                raise ValidationError(f"There is no suggestion to accept for {name}.")
            chosen = options[d.candidate]
            draft[name], sources[name] = chosen.value, chosen.span
            accepted.append(name)
        elif d.action == "correct":
            draft[name] = _clean(name, d.value, today=dt.date.today())
            same = next((f for f in options if _key(f.value) == _key(draft[name])), None)
            if same is not None:  # typed what was suggested: that is an acceptance
                sources[name] = same.span
                accepted.append(name)
            else:
                corrected.append(name)
        elif d.action == "reject":
            rejected.append(name)
        else:
            raise ValidationError(f"Unknown decision for {name}.")
    missing = [n for n, ok in (("specialty", draft["specialty"]), ("patient_name", patient_id or draft["patient_name"])) if not ok]
    if missing:
        raise ValidationError("A referral needs: " + ", ".join(missing) + ".")
    ctx.guard(Permission.REFERRAL_WRITE, "intake.review", "patients", [patient_id] if patient_id else [],
              detail=f"accepted={','.join(sorted(accepted))};corrected={','.join(sorted(corrected))}")
    draft.update(
        patient_id=patient_id, letter_text=extraction.text, accepted=sorted(accepted), corrected=sorted(corrected),
        rejected=sorted(rejected), sources=sources, reviewed_by=ctx.user.username,
    )
    return draft


def _clean(name: str, value: Any, *, today: dt.date) -> Any:
    """A value the coordinator typed, checked and normalised for its field."""
    if name == "birth_date":
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value.strip())
            except ValueError:
                raise ValidationError("Enter the birth date as YYYY-MM-DD.") from None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date) or not plausible_birth(value, today):
            raise ValidationError("Enter a birth date in the past.")
        return value
    if not isinstance(value, str) or not squash(value):
        raise ValidationError(f"Enter a value for {name}, or reject the field.")
    value = squash(value)
    if len(value) > _MAX_LEN[name]:
        raise ValidationError(f"The {name} is longer than {_MAX_LEN[name]} characters.")
    if name == "urgency":
        if value.casefold() not in URGENCY_ORDER:
            raise ValidationError("Urgency is one of: " + ", ".join(URGENCY_ORDER) + ".")
        return value.casefold()
    if name == "specialty":
        return normalise_specialty(value) or value
    return value
