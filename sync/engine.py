"""The sync engine core: push the outbox, pull the feed, push the audit chain. No Qt.

Guarantees, and how:

* Nothing lost: an outbox entry is deleted only in the transaction that records the service's
  answer. A crash before that re-sends it; its idempotency key makes the retry a "duplicate".
* Nothing applied twice from the feed: the cursor is stored in the same transaction as the data
  the page carried.
* Nothing silently overwritten: a feed change for a record with unsent local changes is not applied
  over them; the local change goes up with its base version and the service merges disjoint
  fields or answers "conflict", which is kept in ``sync_conflicts`` for a person.
* A batch never holds two entries for one record: the second is sent after the first's new version
  is known, so a workstation never conflicts with itself.

``SyncEngine.run`` is the loop the Qt adapter runs on its thread: it syncs when woken (a local
change, or the live hint that the feed moved) or every ``poll_seconds``, with capped exponential
backoff and jitter while the service cannot be reached.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.cache.models import RECORD_TYPES, AuditEntry, Meta, OutboxEntry, SyncConflict, utcnow
from app.cache.store import Cache, ChangeSet
from app.logs import Safe
from sync.hub_client import HubClient, Permanent, Transient

logger = logging.getLogger(__name__)

CURSOR_KEY = "hub_cursor"
ANCHOR_KEY = "audit_anchor"
LAST_SYNC_KEY = "hub_last_sync"
OPEN_STATES = ("pending", "conflict", "failed")
# Transactions that may have queued outbox entries: a user's change, a conflict resolution.
OUTBOUND_ORIGINS = frozenset({"local", "resolution"})


class SyncState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class SyncStatus:
    state: SyncState
    pending: int = 0
    conflicts: int = 0
    failed: int = 0
    last_sync: dt.datetime | None = None
    last_error: str = ""


@dataclass
class SyncReport:
    pushed: int = 0
    conflicts: int = 0
    rejected: int = 0
    pulled: int = 0
    audit_acknowledged: int = 0
    changed: dict[str, set[str]] = field(default_factory=dict)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class SyncEngine:
    """Push, pull and audit sync against one central service. Thread-confined: one thread runs it."""

    def __init__(
        self,
        cache: Cache,
        client: HubClient,
        *,
        push_batch: int = 500,
        pull_page: int = 1000,
        poll_seconds: float = 30.0,
        backoff_cap: float = 60.0,
        on_status: Callable[[SyncStatus], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache = cache
        self.client = client
        self.push_batch = push_batch
        self.pull_page = pull_page
        self.poll_seconds = poll_seconds
        self.backoff_cap = backoff_cap
        self._on_status = on_status
        self._sleep = sleep
        self.state = SyncState.OFFLINE
        self.last_error = ""
        self.wake = threading.Event()

    # -- one cycle ----------------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """Push, pull, push audit. Raises Transient when the service cannot be reached."""
        report = SyncReport()
        try:
            self.push_outbox(report)
            self.pull_feed(report)
            self.push_audit(report)
        except Transient as exc:
            self.state, self.last_error = SyncState.OFFLINE, f"central service unreachable ({exc})"
            self._emit()
            raise
        except Permanent as exc:
            self.state, self.last_error = SyncState.DEGRADED, str(exc)
            self._emit()
            raise
        self.state = SyncState.DEGRADED if report.rejected else SyncState.ONLINE
        self.last_error = f"{report.rejected} change(s) refused by the service" if report.rejected else ""
        self.cache.set_meta(LAST_SYNC_KEY, utcnow().isoformat())
        self._emit()
        return report

    # -- push ---------------------------------------------------------------------------------

    def _next_batch(self, ceiling: int) -> list[OutboxEntry]:
        with self.cache.reader() as s:
            rows = list(
                s.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.status == "pending", OutboxEntry.seq <= ceiling)
                    .order_by(OutboxEntry.seq)
                    .limit(self.push_batch)
                )
            )
        batch, seen = [], set()
        for row in rows:
            key = (row.entity, row.entity_id)
            if key in seen:
                break  # its base version is the reply to the earlier entry: next round
            seen.add(key)
            batch.append(row)
        return batch

    def push_outbox(self, report: SyncReport | None = None) -> int:
        report = report or SyncReport()
        # Push what was queued when the cycle began; later edits wait for the next cycle, so a
        # steady stream of local writes cannot starve the pull.
        with self.cache.reader() as s:
            ceiling = s.scalar(select(func.max(OutboxEntry.seq))) or 0
        while batch := self._next_batch(ceiling):
            changes = [
                {
                    "idempotency_key": e.idempotency_key,
                    "entity": e.entity,
                    "entity_id": e.entity_id,
                    "op": e.op,
                    "payload": e.payload,
                    "changed_fields": e.changed_fields,
                    "base_version": e.base_version,
                }
                for e in batch
            ]
            try:
                results = self.client.push(changes)
            except Permanent as exc:
                # The whole request was refused (e.g. a role that may write nothing): keep every
                # entry as failed with the reason, for a person to retry; pulling goes on.
                results = [{"status": "rejected", "reason": str(exc)} for _ in batch]
            if len(results) != len(batch):
                raise Transient("reply does not match the request")
            with self.cache.unit_of_work(user="sync", origin="sync") as s:
                self._record_push_results(s, batch, results, report)
        return report.pushed

    def _record_push_results(
        self, s: Session, batch: list[OutboxEntry], results: list[dict[str, Any]], report: SyncReport
    ) -> None:
        """Record the service's answers for one batch, a few set-based statements per batch.

        A batch holds at most one entry per record (``_next_batch``), so answers never interact.
        """
        still_there = set(s.scalars(select(OutboxEntry.seq).where(OutboxEntry.seq.in_([e.seq for e in batch]))))
        done: list[tuple[OutboxEntry, str | None]] = []
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for entry, result in zip(batch, results, strict=True):
            if entry.seq not in still_there:  # a previous run already committed this answer
                continue
            status = result.get("status")
            if status in ("applied", "duplicate"):
                version = result.get("version")
                done.append((entry, str(version) if version is not None else None))
                server = result.get("server") or {}
                if result.get("merged") and isinstance(server.get("data"), dict):
                    merged[(entry.entity, entry.entity_id)] = server["data"]
            elif status == "conflict":
                self._keep_conflict(s, entry, result)
                report.conflicts += 1
            else:
                row = s.get(OutboxEntry, entry.seq)
                row.status = "failed"
                row.attempts += 1
                row.last_error = str(result.get("reason") or status or "refused")[:400]
                report.rejected += 1
                logger.info("push of a %s change refused", Safe(entry.entity))
        if not done:
            return
        s.execute(delete(OutboxEntry).where(OutboxEntry.seq.in_([e.seq for e, _ in done])))
        ids = {e.entity_id for e, _ in done}
        open_after = {
            tuple(row)
            for row in s.execute(
                select(OutboxEntry.entity, OutboxEntry.entity_id).where(
                    OutboxEntry.entity_id.in_(ids), OutboxEntry.status.in_(OPEN_STATES)
                )
            )
        }
        by_entity: dict[str, list[dict[str, Any]]] = {}
        rebase: list[dict[str, Any]] = []
        for entry, version in done:
            if version is None or entry.entity not in RECORD_TYPES:
                continue
            key = (entry.entity, entry.entity_id)
            # dirty stays set while later local edits of the record are still unsent.
            by_entity.setdefault(entry.entity, []).append(
                {"b_id": entry.entity_id, "b_version": version, "b_dirty": key in open_after}
            )
            if key in open_after:
                rebase.append({"b_entity": entry.entity, "b_id": entry.entity_id, "b_version": version})
            elif key in merged:
                # The service laid our fields over newer ones: take the merged record, or the
                # other side's fields would be skipped later as "already at this version".
                table = RECORD_TYPES[entry.entity].__table__
                values = RECORD_TYPES[entry.entity].values_from_payload(merged[key])
                values.pop("id", None)
                if values:
                    s.execute(update(table).where(table.c.id == entry.entity_id).values(**values))
                s.info.setdefault("changed", {}).setdefault(entry.entity, set()).add(entry.entity_id)
        for entity, rows in by_entity.items():
            table = RECORD_TYPES[entity].__table__
            s.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(remote_version=bindparam("b_version"), dirty=bindparam("b_dirty")),
                rows,
            )
        if rebase:
            # Later edits of these records were made on top of the pushed one: they now base on it.
            t = OutboxEntry.__table__
            s.execute(
                update(t)
                .where(t.c.entity == bindparam("b_entity"), t.c.entity_id == bindparam("b_id"), t.c.status == "pending")
                .values(base_version=bindparam("b_version")),
                rebase,
            )
        report.pushed += len(done)

    def _keep_conflict(self, s: Session, entry: OutboxEntry, result: dict[str, Any]) -> None:
        open_rows = list(
            s.scalars(
                select(OutboxEntry).where(
                    OutboxEntry.entity == entry.entity, OutboxEntry.entity_id == entry.entity_id,
                    OutboxEntry.status == "pending",
                )
            )
        )  # fmt: skip
        fields = sorted({f for r in open_rows for f in (r.changed_fields or [])})
        for r in open_rows:
            r.status = "conflict"
        model = RECORD_TYPES.get(entry.entity)
        local = s.get(model, entry.entity_id) if model else None
        server = result.get("server") or {}
        s.add(
            SyncConflict(
                entity=entry.entity,
                entity_id=entry.entity_id,
                mine=local.to_payload() if local is not None else {"deleted": True},
                mine_fields=fields,
                base_version=entry.base_version,
                server_version=str(server["version"]) if server.get("version") is not None else None,
                server_data=server.get("data"),
                server_deleted=bool(server.get("deleted")),
                reason=str(result.get("reason") or "changed on another workstation")[:400],
            )
        )
        s.info.setdefault("changed", {}).setdefault("sync_conflicts", set()).add(entry.entity_id)
        logger.info("sync conflict kept for a %s record", Safe(entry.entity))

    # -- pull ---------------------------------------------------------------------------------

    def cursor(self) -> int:
        return int(self.cache.get_meta(CURSOR_KEY) or 0)

    def pull_feed(self, report: SyncReport | None = None) -> int:
        report = report or SyncReport()
        cursor = self.cursor()
        while True:
            page = self.client.pull(cursor, self.pull_page)
            changes = page.get("changes") or []
            last = int(page.get("last_seq", cursor))
            with self.cache.unit_of_work(user="sync", origin="sync", foreign_keys=False) as s:
                self._apply_page(s, changes, report)
                s.merge(Meta(key=CURSOR_KEY, value=str(last)))  # same transaction as the data
            report.pulled += len(changes)
            if last <= cursor or not page.get("more"):
                return report.pulled
            cursor = last

    def _apply_page(self, s: Session, changes: list[dict[str, Any]], report: SyncReport) -> None:
        """Apply one feed page: the latest change per record, set-based per table.

        A record with unsent local changes is left alone: the local change goes up with its base
        version and the service merges disjoint fields or answers "conflict".
        """
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for change in changes:
            entity, rid = change.get("entity") or "", change.get("entity_id")
            if not rid or entity not in RECORD_TYPES:
                logger.info("feed change for an unknown entity skipped")
                continue
            latest[(entity, rid)] = change  # the feed is in order: the later change wins
        if not latest:
            return
        held = {
            tuple(row)
            for row in s.execute(
                select(OutboxEntry.entity, OutboxEntry.entity_id).where(
                    OutboxEntry.entity_id.in_({rid for _, rid in latest}), OutboxEntry.status.in_(OPEN_STATES)
                )
            )
        }
        local_versions = self._local_versions(s, latest)
        upserts: dict[str, list[dict[str, Any]]] = {}
        deletes: dict[str, list[str]] = {}
        for (entity, rid), change in latest.items():
            if (entity, rid) in held:
                continue
            mine = local_versions.get((entity, rid))
            if mine is not None and _as_int(change.get("version")) is not None and mine >= _as_int(change.get("version")):
                continue  # our copy is already newer (our own push answered it before this page)
            if change.get("op") == "delete":
                deletes.setdefault(entity, []).append(rid)
            else:
                values = RECORD_TYPES[entity].values_from_payload(change.get("data") or {})
                values.update(id=rid, remote_version=str(change.get("version")), dirty=False, source="hub")
                upserts.setdefault(entity, []).append(values)
            s.info.setdefault("changed", {}).setdefault(entity, set()).add(rid)
            report.changed.setdefault(entity, set()).add(rid)
        for entity, ids in deletes.items():
            table = RECORD_TYPES[entity].__table__
            s.execute(delete(table).where(table.c.id.in_(ids)))
        for entity, rows in upserts.items():
            table = RECORD_TYPES[entity].__table__
            # Rows can carry different column sets (payloads of older versions): one statement each.
            by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                by_shape.setdefault(tuple(sorted(row)), []).append(row)
            for shape, group in by_shape.items():
                stmt = sqlite_insert(table)
                stmt = stmt.on_conflict_do_update(  # a record keeps its origin (source) once stored
                    index_elements=["id"], set_={k: stmt.excluded[k] for k in shape if k not in ("id", "source")}
                )
                s.execute(stmt, group)

    @staticmethod
    def _local_versions(s: Session, latest: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], int]:
        """The service version each local copy already has."""
        by_entity: dict[str, list[str]] = {}
        for entity, rid in latest:
            by_entity.setdefault(entity, []).append(rid)
        out: dict[tuple[str, str], int] = {}
        for entity, ids in by_entity.items():
            table = RECORD_TYPES[entity].__table__
            q = select(table.c.id, table.c.remote_version).where(table.c.id.in_(ids))
            for rid, version in s.execute(q):
                if (n := _as_int(version)) is not None:
                    out[(entity, rid)] = n
        return out

    # -- audit ----------------------------------------------------------------------------------

    def push_audit(self, report: SyncReport | None = None, batch: int = 500) -> int:
        report = report or SyncReport()
        while True:
            with self.cache.reader() as s:
                rows = list(s.scalars(select(AuditEntry).where(AuditEntry.synced.is_(False)).order_by(AuditEntry.seq).limit(batch)))
            if not rows:
                return report.audit_acknowledged
            entries = [
                {k: getattr(r, k) for k in ("seq", "at", "user", "role", "workstation", "action", "entity",
                                             "record_ids", "detail", "break_glass", "prev_hash", "hash")}
                for r in rows
            ]  # fmt: skip
            ack = self.client.push_audit(entries)
            seq, head = int(ack["acknowledged_seq"]), str(ack["acknowledged_hash"])
            with self.cache.unit_of_work(user="sync", origin="audit") as s:
                s.execute(update(AuditEntry).where(AuditEntry.seq <= seq, AuditEntry.synced.is_(False)).values(synced=True))
                s.merge(Meta(key=ANCHOR_KEY, value=f"{seq}:{head}"))
            report.audit_acknowledged = seq
            if seq < rows[-1].seq:
                raise Permanent("The central service did not acknowledge the audit chain.")

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> SyncStatus:
        with self.cache.reader() as s:
            counts = dict(s.execute(select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)).all())
            conflicts = s.scalar(select(func.count()).select_from(SyncConflict).where(SyncConflict.resolved_at.is_(None)))
            last = s.scalar(select(Meta.value).where(Meta.key == LAST_SYNC_KEY))
        return SyncStatus(
            state=self.state,
            pending=counts.get("pending", 0),
            conflicts=conflicts or 0,
            failed=counts.get("failed", 0),
            last_sync=dt.datetime.fromisoformat(last) if last else None,
            last_error=self.last_error,
        )

    def _emit(self) -> None:
        if self._on_status:
            self._on_status(self.status())

    # -- the loop -----------------------------------------------------------------------------------

    def on_cache_change(self, change: ChangeSet) -> None:
        """Cache listener: a local change wakes the loop so it is pushed at once."""
        if change.origin in OUTBOUND_ORIGINS:
            self.wake.set()

    def run(self, stop: threading.Event) -> None:
        """Sync until ``stop`` is set. Never raises for network trouble; backs off instead."""
        failures = 0
        while not stop.is_set():
            self.wake.clear()
            try:
                self.sync_once()
                failures = 0
                delay = self.poll_seconds
            except (Transient, Permanent):
                failures += 1
                delay = min(self.backoff_cap, 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
            except Exception:
                logger.exception("sync cycle failed")
                failures += 1
                delay = self.backoff_cap
            # Sleep until woken (local change, live hint, stop) or the delay runs out.
            woken = self.wake.wait(timeout=delay)
            if woken and failures:
                self._sleep(min(1.0, delay))  # don't hammer a failing service on every keystroke

    def run_live_hint(
        self, stop: threading.Event, timeout: float = 25.0, on_hint: Callable[[], None] | None = None
    ) -> None:
        """Long-poll the feed and wake the loop as soon as another workstation's change lands."""
        failures, seen = 0, 0
        on_hint = on_hint or self.wake.set
        while not stop.is_set():
            try:
                # Wait past what was already hinted, so a pull still in progress is not re-hinted.
                seen = max(seen, self.cursor())
                last = self.client.wait(seen, timeout)
                failures = 0
                if last > seen:
                    seen = last
                    on_hint()
            except Exception as exc:  # the hint is an optimisation: it must never die or crash the app
                if not isinstance(exc, Transient | Permanent):
                    logger.info("live hint failed (%s); retrying", Safe(type(exc).__name__))
                failures += 1
                stop.wait(min(self.backoff_cap, 2 ** min(failures, 6)) * random.uniform(0.5, 1.0))
