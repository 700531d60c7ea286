"""Quarantine review for an administrator: what inbound records could not be used and why, and
what to do with them (retry them through the importer once the cause is fixed, or discard them).

The raw bytes of a quarantined record may hold PHI: nothing here returns them. Every list, retry
and discard is permission-checked and audited (by quarantine row id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.cache.models import Quarantined
from app.cache.store import Cache
from app.errors import ValidationError
from app.security.roles import Permission
from services.context import ServiceContext

DEFAULT_LIMIT = 1000
# Marks the source of rows being retried. The importer skips lines already in quarantine *for its
# source*, so marked rows do not count: a line that fails again is quarantined afresh with today's
# reason, and the marked rows are deleted afterwards. A crash in between leaves them visible and
# retryable (nothing is lost), never silently gone.
RETRYING = ":retrying"
# bulk_import keeps only a prefix of an oversized line: re-reading it must not turn the reason
# into "invalid JSON".
TOO_LARGE = "resource too large"
_CHUNK = 500


class Importer(Protocol):
    """The inbound pipeline (``sync.fhir.bulk_import.BulkImporter``): parse, validate, map, write."""

    def add(self, raw: bytes, *, oversized: bool = False) -> None: ...

    def finish(self) -> Any: ...  # an ImportResult: ``accepted`` and ``quarantined`` counts


ImporterFactory = Callable[[Cache, str], Importer]


@dataclass(frozen=True)
class QuarantinedItem:
    id: int
    source: str
    resource_type: str | None
    resource_id: str | None
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class QuarantineOverview:
    items: tuple[QuarantinedItem, ...]  # newest first, at most the limit asked for
    total: int
    by_reason: tuple[tuple[str, int], ...]  # most frequent first


@dataclass(frozen=True)
class RetryResult:
    accepted: int  # now in the cache
    still_quarantined: int  # failed again (kept, with the reason of this attempt)
    missing: int  # no longer in quarantine (discarded or retried meanwhile)


def _ids(ids: Iterable[int]) -> list[int]:
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        raise ValidationError("Select the quarantined records first.")
    return wanted


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    return (ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK))


def _origin_source(source: str) -> str:
    return source.removesuffix(RETRYING)


def _mark_changed(session: Session) -> None:
    session.info.setdefault("changed", {}).setdefault("quarantine", set())


class QuarantineService:
    def __init__(self, ctx: ServiceContext, importer_factory: ImporterFactory | None = None) -> None:
        """``importer_factory`` is the inbound pipeline (given by the composition root: services
        may not import ``sync``); without one, retry is refused."""
        self._ctx = ctx
        self._importer_factory = importer_factory

    def overview(self, limit: int = DEFAULT_LIMIT) -> QuarantineOverview:
        """The newest quarantined records (never their raw bytes) and the counts by reason."""
        q = Quarantined
        with self._ctx.cache.reader() as s:
            rows = s.execute(
                select(q.id, q.source, q.resource_type, q.resource_id, q.reason, q.at)
                .order_by(q.at.desc(), q.id.desc())
                .limit(limit)
            ).all()
            counts = s.execute(
                select(q.reason, func.count()).group_by(q.reason).order_by(func.count().desc(), q.reason)
            ).all()
        self._ctx.guard(Permission.QUARANTINE_READ, "quarantine.read", "quarantine", [str(r.id) for r in rows])
        return QuarantineOverview(
            items=tuple(QuarantinedItem(*r) for r in rows),
            total=sum(n for _, n in counts),
            by_reason=tuple((reason, n) for reason, n in counts),
        )

    def discard(self, ids: Iterable[int]) -> int:
        """Delete quarantined records for good; returns how many were still there."""
        wanted = _ids(ids)
        with self._ctx.cache.unit_of_work(user=self._ctx.user.username, origin="review") as s:
            self._ctx.guard(
                Permission.QUARANTINE_REVIEW, "quarantine.discard", "quarantine", [str(i) for i in wanted], session=s
            )
            removed = sum(s.execute(delete(Quarantined).where(Quarantined.id.in_(chunk))).rowcount for chunk in _chunks(wanted))
            _mark_changed(s)
        return removed

    def retry(self, ids: Iterable[int]) -> RetryResult:
        """Feed the records through the importer again; those it accepts leave quarantine."""
        if self._importer_factory is None:
            raise ValidationError("Retrying quarantined records is not available in this window.")
        wanted = _ids(ids)
        self._ctx.guard(Permission.QUARANTINE_REVIEW, "quarantine.retry", "quarantine", [str(i) for i in wanted])
        q = Quarantined
        by_source: dict[str, list[int]] = {}
        with self._ctx.cache.unit_of_work(user=self._ctx.user.username, origin="review") as s:
            for chunk in _chunks(wanted):
                for row_id, source in s.execute(select(q.id, q.source).where(q.id.in_(chunk))):
                    by_source.setdefault(_origin_source(source), []).append(row_id)
            for source, row_ids in by_source.items():
                for chunk in _chunks(row_ids):
                    s.execute(update(q).where(q.id.in_(chunk)).values(source=source + RETRYING))
            _mark_changed(s)
        found = sum(len(v) for v in by_source.values())
        accepted = still = 0
        for source, row_ids in by_source.items():
            importer = self._importer_factory(self._ctx.cache, source)
            for chunk in _chunks(row_ids):
                with self._ctx.cache.reader() as s:
                    lines = s.execute(select(q.raw, q.reason).where(q.id.in_(chunk)).order_by(q.id)).all()
                for raw, reason in lines:
                    importer.add(raw, oversized=reason == TOO_LARGE)
            result = importer.finish()
            accepted += result.accepted
            still += result.quarantined
            with self._ctx.cache.unit_of_work(user=self._ctx.user.username, origin="review") as s:
                for chunk in _chunks(row_ids):
                    s.execute(delete(q).where(q.id.in_(chunk)))
                _mark_changed(s)
        return RetryResult(accepted=accepted, still_quarantined=still, missing=len(wanted) - found)
