"""What a person does with sync trouble: conflicts (mine / theirs / edit) and refused changes.

A conflict holds the local record as the user left it and the server's current state. Resolving it
never loses either silently: "mine" and "edit" lay the chosen values over the server's record and
send them with the server's version as base; "theirs" takes the server's record. Every view and
decision is audited (conflict values can be PHI).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from app.cache.models import RECORD_TYPES, OutboxEntry, SyncConflict, new_id, utcnow
from app.errors import ValidationError
from app.security.roles import Permission
from services.context import ServiceContext

CHOICES = ("mine", "theirs", "edit")


@dataclass(frozen=True)
class ConflictView:
    id: int
    entity: str
    entity_id: str
    fields: tuple[str, ...]
    mine: dict[str, Any]
    theirs: dict[str, Any]
    server_deleted: bool
    reason: str
    created_at: dt.datetime


@dataclass(frozen=True)
class FailedChange:
    seq: int
    entity: str
    entity_id: str
    op: str
    reason: str
    attempts: int


class SyncConflictService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def open_conflicts(self) -> list[ConflictView]:
        with self._ctx.cache.reader() as s:
            rows = list(s.scalars(select(SyncConflict).where(SyncConflict.resolved_at.is_(None)).order_by(SyncConflict.id)))
        self._ctx.guard(Permission.SYNC_RESOLVE, "sync.conflicts.read", "sync_conflicts", [r.entity_id for r in rows])
        return [_view(r) for r in rows]

    def failed_changes(self) -> list[FailedChange]:
        with self._ctx.cache.reader() as s:
            rows = list(s.scalars(select(OutboxEntry).where(OutboxEntry.status == "failed").order_by(OutboxEntry.seq)))
        self._ctx.guard(Permission.SYNC_RESOLVE, "sync.failed.read", "outbox", [r.entity_id for r in rows])
        return [FailedChange(r.seq, r.entity, r.entity_id, r.op, r.last_error or "", r.attempts) for r in rows]

    def retry(self, seq: int) -> None:
        """Send a refused change again (after the cause was fixed, e.g. a role granted)."""
        with self._ctx.cache.unit_of_work(user=self._ctx.user.username, origin="resolution") as s:
            row = s.get(OutboxEntry, seq)
            if row is None or row.status != "failed":
                raise ValidationError("That change is no longer waiting for a decision.")
            self._ctx.guard(Permission.SYNC_RESOLVE, "sync.retry", row.entity, [row.entity_id], session=s)
            row.status, row.last_error = "pending", None
            s.info.setdefault("changed", {}).setdefault("outbox", set()).add(str(seq))

    def resolve(self, conflict_id: int, choice: str, edited: dict[str, Any] | None = None) -> None:
        if choice not in CHOICES:
            raise ValidationError(f"Choose one of {', '.join(CHOICES)}.")
        user = self._ctx.user.username
        with self._ctx.cache.unit_of_work(user=user, origin="resolution") as s:
            c = s.get(SyncConflict, conflict_id)
            if c is None or c.resolved_at is not None:
                raise ValidationError("This conflict was already resolved.")
            model = RECORD_TYPES.get(c.entity)
            if model is None:
                raise ValidationError("This conflict is about a kind of record this version does not know.")
            self._ctx.guard(
                Permission.SYNC_RESOLVE, f"sync.resolve.{choice}", c.entity, [c.entity_id], session=s
            )
            s.execute(
                delete(OutboxEntry).where(
                    OutboxEntry.entity == c.entity, OutboxEntry.entity_id == c.entity_id, OutboxEntry.status == "conflict"
                )
            )
            server = dict(c.server_data or {})
            record = s.get(model, c.entity_id)
            if choice == "theirs":
                if c.server_deleted:
                    if record is not None:
                        s.delete(record)
                else:
                    values = model.values_from_payload(server)
                    if record is None:
                        record = model(id=c.entity_id)
                        s.add(record)
                    for k, v in values.items():
                        setattr(record, k, v)
                    if record.source is None:  # new here; an existing record keeps its origin
                        record.source = "hub"
                    record.remote_version, record.dirty = c.server_version, False
            else:
                if choice == "mine":
                    chosen = {f: c.mine.get(f) for f in c.mine_fields}
                else:
                    unknown = set(edited or {}) - set(c.mine_fields) - set(server)
                    if not edited or unknown:
                        raise ValidationError("An edit sets values for the fields in conflict.")
                    chosen = dict(edited)
                merged = {**server, **chosen, "id": c.entity_id}
                values = model.values_from_payload(merged)
                if record is None:
                    record = model(id=c.entity_id)
                    s.add(record)
                for k, v in values.items():
                    setattr(record, k, v)
                record.remote_version, record.dirty = c.server_version, True
                s.flush()
                s.add(
                    OutboxEntry(
                        idempotency_key=new_id(), entity=c.entity, entity_id=c.entity_id, op="upsert",
                        payload=record.to_payload(), changed_fields=sorted(chosen), base_version=c.server_version,
                        user=user, status="pending", attempts=0,
                    )  # fmt: skip
                )
            c.resolved_at, c.resolution, c.resolved_by = utcnow(), choice, user
            s.info.setdefault("changed", {}).setdefault(c.entity, set()).add(c.entity_id)


def _view(c: SyncConflict) -> ConflictView:
    fields = tuple(c.mine_fields or ())
    server = c.server_data or {}
    return ConflictView(
        id=c.id, entity=c.entity, entity_id=c.entity_id, fields=fields,
        mine={f: c.mine.get(f) for f in fields}, theirs={f: server.get(f) for f in fields},
        server_deleted=c.server_deleted, reason=c.reason, created_at=c.created_at,
    )  # fmt: skip
