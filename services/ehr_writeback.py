"""Changes the EHR should hear about, and where each one stands.

A service that changes something the EHR keeps too (a referral's workflow status -> its Task, a
completed follow-up check-in -> a Communication, a booked appointment -> an Appointment) calls
:func:`queue_ehr_write` inside the same unit of work, so the change and the promise to send it
commit together. The EHR layer (``sync/fhir/writeback.py``) sends the record as it is at sending
time, when the workstation is online and the vendor accepts that write; when it does not, the row
says why and the UI shows it. The status is not PHI: reading it needs no audit entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cache.models import EhrWrite
from app.cache.store import Cache

# kind -> the cache table of the records it sends
KINDS: dict[str, str] = {"task-status": "referrals", "communication": "checkins", "appointment": "appointments"}
STATUS_TEXT = {
    "pending": "waiting to be sent to the EHR",
    "sent": "in the EHR",
    "not-accepted": "kept here only: the EHR does not accept this change",
    "conflict": "the EHR changed this record meanwhile: review it",
    "failed": "the EHR refused this change",
}


def queue_ehr_write(session: Session, *, kind: str, entity_id: str, user: str) -> None:
    """Promise to send a record to the EHR; one pending promise per record and kind is enough."""
    entity = KINDS[kind]
    pending = session.scalar(
        select(EhrWrite.id).where(
            EhrWrite.entity == entity, EhrWrite.entity_id == entity_id,
            EhrWrite.kind == kind, EhrWrite.status == "pending",
        )
    )
    if pending is None:
        session.add(EhrWrite(kind=kind, entity=entity, entity_id=entity_id, user=user))


@dataclass(frozen=True)
class EhrWriteState:
    kind: str
    entity_id: str
    status: str
    detail: str | None
    updated_at: dt.datetime

    @property
    def text(self) -> str:
        """What the user reads next to the record."""
        base = STATUS_TEXT.get(self.status, self.status)
        return f"{base} ({self.detail})" if self.detail and self.status != "sent" else base


def ehr_write_states(cache: Cache, entity: str, ids: Iterable[str]) -> dict[str, EhrWriteState]:
    """The latest write-back state of each of ``ids`` that has one."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, EhrWriteState] = {}
    with cache.reader() as s:
        for chunk in (wanted[i:i + 500] for i in range(0, len(wanted), 500)):
            rows = s.scalars(
                select(EhrWrite).where(EhrWrite.entity == entity, EhrWrite.entity_id.in_(chunk)).order_by(EhrWrite.id)
            )
            for row in rows:  # ascending id: the newest wins
                out[row.entity_id] = EhrWriteState(row.kind, row.entity_id, row.status, row.detail, row.updated_at)
    return out
