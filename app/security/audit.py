"""The append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so altering, removing or
reordering any entry breaks the chain from that point: ``verify`` names the first bad entry. A
truncated tail is caught against an outside anchor (the chain head the central service
acknowledged), stored under the ``audit_anchor`` meta key.

Entries hold ids, never PHI values. An entry is written (committed, or in the same transaction as a
write) before the PHI it covers is returned; if it cannot be written the action fails.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.cache.models import AuditEntry
from app.cache.store import Cache
from app.errors import AuditUnavailable, KnownError

GENESIS = "0" * 64
EXPORT_FIELDS = (
    "seq", "at", "user", "role", "workstation", "action", "entity", "record_ids", "detail",
    "break_glass", "prev_hash", "hash",
)  # fmt: skip


def entry_hash(
    seq: int, at: str, user: str, role: str, workstation: str, action: str, entity: str,
    record_ids: Sequence[str], detail: str, break_glass: bool, prev_hash: str,
) -> str:  # fmt: skip
    content = [seq, at, user, role, workstation, action, entity, list(record_ids), detail, bool(break_glass), prev_hash]
    data = json.dumps(content, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(data).hexdigest()


def _hash_of(e: AuditEntry) -> str:
    return entry_hash(
        e.seq, e.at, e.user, e.role, e.workstation, e.action, e.entity,
        e.record_ids, e.detail, e.break_glass, e.prev_hash,
    )  # fmt: skip


@dataclass(frozen=True)
class AuditEvent:
    """A read-only view of one entry, for review screens and exports."""

    seq: int
    at: str
    user: str
    role: str
    workstation: str
    action: str
    entity: str
    record_ids: tuple[str, ...]
    detail: str
    break_glass: bool
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEvent:
        return cls(
            e.seq, e.at, e.user, e.role, e.workstation, e.action, e.entity,
            tuple(e.record_ids), e.detail, e.break_glass, e.prev_hash, e.hash,
        )  # fmt: skip


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


class AuditLog:
    def __init__(self, cache: Cache, workstation: str) -> None:
        self._cache = cache
        self._workstation = workstation
        self._lock = threading.Lock()

    def record(
        self,
        *,
        user: str,
        role: str,
        action: str,
        entity: str,
        record_ids: Iterable[str] = (),
        detail: str = "",
        break_glass: bool = False,
        session: Session | None = None,
    ) -> int:
        """Append one entry and return its sequence number.

        With ``session`` the entry joins that transaction (a write and its audit commit together);
        otherwise it is committed on its own before this returns. Raises AuditUnavailable when the
        entry cannot be written, so the caller's action fails rather than going unaudited.
        """
        ids = [str(i) for i in record_ids]
        with self._lock:
            for attempt in range(3):
                try:
                    if session is not None:
                        return self._append(session, user, role, action, entity, ids, detail, break_glass)
                    with self._cache.unit_of_work(user=user, origin="audit") as s:
                        return self._append(s, user, role, action, entity, ids, detail, break_glass)
                except IntegrityError:
                    # another process appended the same seq first: re-read the head and retry
                    if session is not None or attempt == 2:
                        raise AuditUnavailable("The audit log could not be written (concurrent writer).") from None
                except (SQLAlchemyError, OSError, KnownError) as exc:
                    raise AuditUnavailable(f"The audit log could not be written ({type(exc).__name__}).") from None
        raise AuditUnavailable("The audit log could not be written.")  # pragma: no cover

    def _append(
        self, s: Session, user: str, role: str, action: str, entity: str,
        ids: list[str], detail: str, break_glass: bool,
    ) -> int:  # fmt: skip
        head = s.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        detail = detail[:400]
        h = entry_hash(seq, at, user, role, self._workstation, action, entity, ids, detail, break_glass, prev)
        s.add(
            AuditEntry(
                seq=seq, at=at, user=user, role=role, workstation=self._workstation, action=action,
                entity=entity, record_ids=ids, detail=detail, break_glass=break_glass,
                prev_hash=prev, hash=h, synced=False,
            )  # fmt: skip
        )
        s.flush()
        # Audit entries are not Records; name them in the change set so review screens refresh.
        s.info.setdefault("changed", {}).setdefault("audit_log", set()).add(str(seq))
        return seq

    # -- review ---------------------------------------------------------------------------

    def count(self) -> int:
        with self._cache.reader() as s:
            return s.scalar(select(func.count()).select_from(AuditEntry)) or 0

    def entries(
        self, *, since: dt.datetime | None = None, after_seq: int = 0, limit: int | None = None, newest_first: bool = False
    ) -> list[AuditEvent]:
        q = select(AuditEntry).where(AuditEntry.seq > after_seq)
        if since is not None:
            q = q.where(AuditEntry.at >= since.astimezone(dt.UTC).isoformat(timespec="microseconds"))
        q = q.order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq)
        if limit:
            q = q.limit(limit)
        with self._cache.reader() as s:
            return [AuditEvent.of(e) for e in s.scalars(q)]

    def _iter_all(self, batch: int = 5000) -> Iterator[AuditEntry]:
        last = 0
        while True:
            with self._cache.reader() as s:
                rows = list(s.scalars(select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)))
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def verify(self) -> VerifyResult:
        """Walk the chain; report the first entry that was altered, removed or moved."""
        prev, expected_seq, checked = GENESIS, 1, 0
        for e in self._iter_all():
            if e.seq != expected_seq:
                return VerifyResult(False, checked, expected_seq, f"entry {expected_seq} is missing")
            if e.prev_hash != prev:
                return VerifyResult(False, checked, e.seq, f"entry {e.seq} does not follow entry {e.seq - 1}")
            if _hash_of(e) != e.hash:
                return VerifyResult(False, checked, e.seq, f"entry {e.seq} was altered")
            prev, expected_seq, checked = e.hash, expected_seq + 1, checked + 1
        anchor = self._cache.get_meta("audit_anchor")
        if anchor:
            seq_s, _, h = anchor.partition(":")
            seq = int(seq_s)
            if seq >= expected_seq:
                return VerifyResult(False, checked, expected_seq, f"entries from {expected_seq} to {seq} were removed")
            with self._cache.reader() as s:
                stored = s.get(AuditEntry, seq)
            if stored is None or stored.hash != h:
                return VerifyResult(False, checked, seq, f"entry {seq} does not match the acknowledged chain head")
        return VerifyResult(True, checked)

    def export(self, fmt: str, since: dt.datetime | None = None) -> str:
        rows = self.entries(since=since)
        if fmt == "json":
            return json.dumps(
                [{f: (list(v) if isinstance(v := getattr(r, f), tuple) else v) for f in EXPORT_FIELDS} for r in rows],
                indent=1,
            )
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(EXPORT_FIELDS)
            for r in rows:
                w.writerow([";".join(r.record_ids) if f == "record_ids" else getattr(r, f) for f in EXPORT_FIELDS])
            return buf.getvalue()
        raise ValueError("format must be csv or json")
