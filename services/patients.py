"""Patient look-up: the minimum-necessary demographics, audited before they are returned."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select

from app.cache.models import Patient
from app.errors import ValidationError
from app.security.roles import Permission
from services.context import ServiceContext

MAX_RESULTS = 200


@dataclass(frozen=True)
class PatientSummary:
    id: str
    mrn: str
    name: str
    birth_date: dt.date | None
    sex: str | None

    def age(self, today: dt.date | None = None) -> int | None:
        if self.birth_date is None:
            return None
        today = today or dt.date.today()
        b = self.birth_date
        return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


class PatientService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def search(self, text: str, limit: int = MAX_RESULTS) -> list[PatientSummary]:
        """Find patients by MRN prefix or name fragment (at least 2 characters)."""
        text = text.strip()
        if len(text) < 2:
            raise ValidationError("Type at least two characters of a name or MRN.")
        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = (
            select(Patient)
            .where(or_(Patient.mrn.like(f"{like}%", escape="\\"), Patient.name.like(f"%{like}%", escape="\\")))
            .order_by(Patient.name)
            .limit(min(limit, MAX_RESULTS))
        )
        with self._ctx.cache.reader() as s:
            found = [_summary(p) for p in s.scalars(q)]
        # The audit entry names every record about to be shown, and is committed first.
        self._ctx.guard(Permission.PATIENT_READ, "patient.search", "patients", [p.id for p in found])
        return found

    def get(self, patient_id: str) -> PatientSummary | None:
        with self._ctx.cache.reader() as s:
            p = s.get(Patient, patient_id)
            found = _summary(p) if p else None
        self._ctx.guard(Permission.PATIENT_READ, "patient.read", "patients", [patient_id])
        return found


def _summary(p: Patient) -> PatientSummary:
    return PatientSummary(p.id, p.mrn, p.name, p.birth_date, p.sex)
