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
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cache.models import EhrWrite
from app.cache.store import Cache

TABLE = "ehr_writes"
# kind -> the cache table of the records it sends
KINDS: dict[str, str] = {"task-status": "referrals", "communication": "checkins", "appointment": "appointments"}
KIND_TEXT = {"task-status": "Referral status", "communication": "Follow-up check-in", "appointment": "Appointment"}
# The states a person has to look at: the change stays local until someone acts on it.
NEEDS_A_PERSON = ("not-accepted", "conflict", "failed")
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
        row = EhrWrite(kind=kind, entity=entity, entity_id=entity_id, user=user)
        session.add(row)
        session.flush()
        pending = row.id
    # Announced even when a promise was pending already: the record it sends has changed.
    mark_changed(session, [pending])


def mark_changed(session: Session, ids: Iterable[int]) -> None:
    """Announce changed write-backs with the unit of work's ChangeSet (the EHR sync wakes on it,
    views refresh); ``ehr_writes`` rows are not records, so the cache does not track them itself."""
    session.info.setdefault("changed", {}).setdefault(TABLE, set()).update(str(i) for i in ids)


@dataclass(frozen=True)
class EhrWriteState:
    kind: str
    entity_id: str
    status: str
    detail: str | None
    updated_at: dt.datetime

    @property
    def text(self) -> str:
        """What the user reads next to the record: the status, and what the reason adds to it."""
        base = STATUS_TEXT.get(self.status, self.status)
        if not self.detail or self.status == "sent":
            return base
        detail = self.detail.rstrip(".")
        # Reasons often open with what the status says already ("The EHR does not accept this
        # change (create Task)."): the user reads it once.
        for said in base.split(": "):
            if detail.lower().startswith(said.lower()):
                detail = detail[len(said):].strip(" ()")
                break
        return f"{base} ({detail})" if detail else base


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


@dataclass(frozen=True)
class EhrWriteOverview:
    """Where the write-backs stand, by the latest write of each record and kind."""

    counts: dict[str, int] = field(default_factory=dict)  # status -> records
    needing_a_person: list[EhrWriteState] = field(default_factory=list)  # newest first, at most ``limit``

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


def ehr_write_overview(cache: Cache, *, limit: int = 200) -> EhrWriteOverview:
    """Counts by status and the write-backs that need a person; record ids and statuses only.

    An older row of a record that a newer one supersedes (the record was sent again since) is
    history, not work: only each record and kind's latest row counts.
    """
    latest = (
        select(func.max(EhrWrite.id).label("id")).group_by(EhrWrite.entity, EhrWrite.entity_id, EhrWrite.kind)
        .subquery()
    )  # fmt: skip
    with cache.reader() as s:
        counts = dict(
            s.execute(select(EhrWrite.status, func.count()).join(latest, EhrWrite.id == latest.c.id)
                      .group_by(EhrWrite.status)).all()
        )  # fmt: skip
        rows = s.scalars(
            select(EhrWrite).join(latest, EhrWrite.id == latest.c.id)
            .where(EhrWrite.status.in_(NEEDS_A_PERSON))
            .order_by(EhrWrite.updated_at.desc(), EhrWrite.id.desc()).limit(limit)
        )  # fmt: skip
        states = [EhrWriteState(r.kind, r.entity_id, r.status, r.detail, r.updated_at) for r in rows]
    return EhrWriteOverview({k: int(v) for k, v in counts.items()}, states)


def pending_write_ids(cache: Cache) -> list[int]:
    """The write-backs still to send."""
    with cache.reader() as s:
        return list(s.scalars(select(EhrWrite.id).where(EhrWrite.status == "pending")))
