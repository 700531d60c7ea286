"""FHIR Bulk Data import: a folder of ``$export`` ndjson files into the cache.

Files are processed in dependency order (a Slot needs its Schedule, an Encounter its Patient),
line by line (a line is read with a size limit, so neither a huge file nor a huge line is ever in
memory whole), and written in batches, one transaction each, with ``origin="sync"``: no outbox
rows, and the cache's change signal fires after each batch.

Writes are idempotent upserts by id. Each batch reads the stored rows it touches, decides per
record in Python (new -> insert; stored row has an unsent local change -> keep it and count a
conflict; incoming version not newer -> unchanged; else update the columns this resource owns)
and then writes with one executemany per table and statement shape. This does what an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` would, and also yields exact counts, protects dirty
rows, and compares opaque version ids.

A line that cannot be used (parse error, invalid FHIR, missing required part, a reference the
foreign keys would refuse) goes to the ``quarantine`` table with a PHI-free reason and its raw
bytes, and the import goes on. References are checked against known ids before writing; a line
whose target comes later (a bed listed before its room) is retried after its file and again at
the end of the import before it is quarantined. Should the database still refuse a batch, the batch
is replayed record by record in savepoints so that only the offending record is quarantined.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cache.models import Base, Quarantined, utcnow
from sync.fhir.mappers import MappedResource, MemoryLookup, Row, map_resource
from sync.fhir.parsing import MAX_RESOURCE_BYTES, InboundError, parse_resource, peek_identity
from sync.fhir.validation import ElementMemo, memoized

logger = logging.getLogger(__name__)

IMPORT_USER = "ehr-sync"
# Measured on the demo set: ~4% faster than 2,000 (fewer commits); still under a second a batch.
BATCH_SIZE = 5000
ORDER: tuple[str, ...] = (
    "Organization", "Location", "Practitioner", "PractitionerRole", "Patient", "Coverage",
    "ServiceRequest", "Task", "Schedule", "Slot", "Appointment", "Encounter",
    "CarePlan", "CommunicationRequest", "Communication",
)
# How much of an oversized line is kept in quarantine (the rest is never read into memory).
QUARANTINE_RAW_LIMIT = 64 * 1024
# Lines waiting for a reference that may come later; beyond this they are quarantined at once.
MAX_DEFERRED = 100_000

_TABLES: dict[str, Table] = {t.name: t for t in Base.metadata.sorted_tables}
_TABLE_ORDER: dict[str, int] = {t.name: i for i, t in enumerate(Base.metadata.sorted_tables)}
_QUARANTINE = Quarantined.__table__
_FILE_NAME = re.compile(r"^(?:\d+[._-])?([A-Z][A-Za-z]+)(?:[._-]\d+)?\.ndjson(?:\.gz)?$")

ProgressCallback = Callable[[int], None]
CancelCallback = Callable[[], bool]


@dataclass
class ImportResult:
    """What an import did.

    Attributes:
        counts: resources accepted, by resourceType (written, or already current).
        quarantined: lines put in quarantine (including ones already there from an earlier run).
        quarantined_by_type: the same by resourceType ("unknown" when it could not be read).
        inserted / updated / unchanged: accepted resources by outcome.
        conflicts: accepted resources whose cached record has an unsent local change, kept.
        lines: non-blank lines read.
        cancelled: the cancel callback stopped the import between batches.
        seconds: wall time.
    """

    counts: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    quarantined_by_type: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    lines: int = 0
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Lines per second."""
        return self.lines / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Outcome:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    changed: dict[str, set[str]] = field(default_factory=dict)

    def add(self, other: _Outcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.conflicts += other.conflicts
        for table, ids in other.changed.items():
            self.changed.setdefault(table, set()).update(ids)


class _Index(MemoryLookup):
    """Known ids (and the attributes mappers ask about), loaded from the cache table by table on
    first use and kept up to date as resources are mapped."""

    def __init__(self, session_factory: Callable[[], Any]) -> None:
        super().__init__()
        self._reader = session_factory

    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        known = self.tables.get(table)
        if known is None:
            known = self.tables[table] = {}
            sa_table = _TABLES.get(table)
            if sa_table is not None:
                columns = [sa_table.c.id, *(sa_table.c[c] for c in self.TRACKED.get(table, ()))]
                with self._reader() as session:
                    for row in session.execute(select(*columns)):
                        known[row[0]] = dict(zip(self.TRACKED.get(table, ()), row[1:], strict=True))
        return known


def _version_is_newer(incoming: str | None, stored: str | None) -> bool:
    if stored is None:
        return True
    if incoming is None:
        return False  # decided by comparing the values instead
    if incoming.isdigit() and stored.isdigit():
        return int(incoming) > int(stored)
    return incoming != stored  # opaque version ids: any other one is a new version


class _Writer:
    """Applies mapped resources in one session (one transaction)."""

    def __init__(self, session: Session, source: str) -> None:
        self.session = session
        self.source = source

    def apply(self, items: list[MappedResource]) -> _Outcome:
        """Write ``items``; return what happened.

        Raises IntegrityError when the database refuses something (the caller's savepoint then
        rolls the whole call back).
        """
        outcome = _Outcome()
        state = self._prefetch(items)
        now = utcnow()
        inserts: dict[str, list[dict[str, Any]]] = {}
        updates: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        prunes = []
        for item in items:
            kind = "unchanged"
            for i, row in enumerate(item.rows):
                result = self._decide(row, state, now, inserts, updates)
                if i == 0:
                    kind = result
                if result in ("inserted", "updated"):
                    outcome.changed.setdefault(row.table, set()).add(row.id)
            if kind in ("inserted", "updated"):
                prunes.extend(item.prune)
            if kind == "inserted":
                outcome.inserted += 1
            elif kind == "updated":
                outcome.updated += 1
            elif kind == "conflict":
                outcome.conflicts += 1
            else:
                outcome.unchanged += 1
        conn = self.session.connection()
        for table in sorted(inserts, key=_TABLE_ORDER.__getitem__):
            by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for values in inserts[table]:
                by_shape.setdefault(tuple(values), []).append(values)
            for rows in by_shape.values():
                conn.execute(insert(_TABLES[table]), rows)
        for (table, columns), params in sorted(updates.items(), key=lambda kv: _TABLE_ORDER[kv[0][0]]):
            sa_table = _TABLES[table]
            stmt = (
                update(sa_table)
                .where(sa_table.c.id == bindparam("k_id"))
                .values({c: bindparam(f"v_{c}") for c in columns})
            )
            conn.execute(stmt, params)
        for prune in prunes:
            sa_table = _TABLES[prune.table]
            parent = sa_table.c[prune.parent_column]
            doomed = set(conn.scalars(
                select(sa_table.c.id).where(
                    parent == prune.parent_id,
                    sa_table.c.source == self.source,
                    sa_table.c.dirty.is_(False),
                )
            )) - prune.keep
            if doomed:
                conn.execute(delete(sa_table).where(sa_table.c.id.in_(sorted(doomed))))
                outcome.changed.setdefault(prune.table, set()).update(doomed)
        return outcome

    def _prefetch(self, items: list[MappedResource]) -> dict[str, dict[str, dict[str, Any]]]:
        wanted: dict[str, set[str]] = {}
        for item in items:
            for row in item.rows:
                wanted.setdefault(row.table, set()).add(row.id)
        state: dict[str, dict[str, dict[str, Any]]] = {}
        conn = self.session.connection()
        for table, ids in wanted.items():
            sa_table = _TABLES[table]
            found = state[table] = {}
            id_list = sorted(ids)
            for start in range(0, len(id_list), 500):
                chunk = id_list[start:start + 500]
                for row in conn.execute(select(sa_table).where(sa_table.c.id.in_(chunk))).mappings():
                    found[row["id"]] = dict(row)
        return state

    def _decide(
        self,
        row: Row,
        state: dict[str, dict[str, dict[str, Any]]],
        now: dt.datetime,
        inserts: dict[str, list[dict[str, Any]]],
        updates: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]],
    ) -> str:
        stored = state.setdefault(row.table, {}).get(row.id)
        if stored is None:
            if row.update_only:
                # check_references saw it; the database no longer has it.
                raise IntegrityError("update of a missing record", None, Exception("missing"))
            values = {"id": row.id, "source": self.source, "dirty": False, "updated_at": now,
                      **row.insert_defaults, **row.values}
            inserts.setdefault(row.table, []).append(values)
            state[row.table][row.id] = dict(values)
            return "inserted"
        changes = {k: v for k, v in row.values.items() if stored.get(k) != v}
        if not row.update_only:
            # The EHR's version, apart from the central service's (remote_version): a record that
            # went round the service keeps both, and its origin (source).
            incoming = row.values.get("ehr_version")
            if incoming is None:
                changes.pop("ehr_version", None)  # keep the last version the EHR named
            elif not _version_is_newer(incoming, stored.get("ehr_version")):
                return "unchanged"
        if not changes:
            return "unchanged"
        if stored.get("dirty"):
            # An unsent local change: the sync engine's conflict handling decides, not an import.
            return "conflict"
        changes["updated_at"] = now
        columns = tuple(sorted(changes))
        params = {"k_id": row.id, **{f"v_{c}": v for c, v in changes.items()}}
        updates.setdefault((row.table, columns), []).append(params)
        stored.update(changes)
        return "updated"


def _file_type(path: Path) -> str | None:
    match = _FILE_NAME.match(path.name)
    return match.group(1) if match else None


def ndjson_files(folder: Path) -> list[Path]:
    """The ndjson files of an export folder, in the order they are imported."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and (p.name.endswith(".ndjson") or p.name.endswith(".ndjson.gz"))
    ]

    def rank(p: Path) -> tuple[int, str]:
        ftype = _file_type(p)
        return (ORDER.index(ftype) if ftype in ORDER else len(ORDER), p.name)

    return sorted(files, key=rank)


def iter_lines(path: Path, max_bytes: int = MAX_RESOURCE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, oversized) for each non-blank line; never holds more than ``max_bytes`` of one.

    An oversized line yields only its first QUARANTINE_RAW_LIMIT bytes (for the quarantine row).
    """
    limit = max_bytes + 2  # room for "\r\n"
    opener: Callable[[], IO[bytes]] = (
        (lambda: gzip.open(path, "rb")) if path.name.endswith(".gz") else (lambda: open(path, "rb"))  # noqa: SIM115
    )
    with opener() as handle:
        while True:
            line = handle.readline(limit)
            if not line:
                return
            if len(line) >= limit and not line.endswith(b"\n"):
                prefix = line[:QUARANTINE_RAW_LIMIT]
                while True:  # skip the rest of the line without keeping it
                    chunk = handle.readline(1 << 20)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                yield prefix, True
                continue
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line, False


class BulkImporter:
    """Feeds resources through parse -> map -> batch -> write. ``import_ndjson_dir`` drives it;
    an incremental EHR pull can use it the same way (``add`` each resource, then ``finish``)."""

    def __init__(
        self,
        cache: Any,
        *,
        source: str = "ehr",
        batch_size: int = BATCH_SIZE,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> None:
        self.cache = cache
        self.source = source
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.cancel = cancel
        self.result = ImportResult()
        self.index = _Index(cache.reader)
        self._memo = ElementMemo()
        self._batch: list[tuple[MappedResource, bytes]] = []
        self._quarantine: list[dict[str, Any]] = []
        self._deferred: list[bytes] = []
        self._file_deferred: list[bytes] = []
        self._seen_quarantine = self._load_quarantine_keys()
        self._started = time.perf_counter()

    # -- feeding ---------------------------------------------------------------------------

    def add(self, raw: bytes, *, oversized: bool = False) -> None:
        """One ndjson line. Returns once it is batched, deferred or quarantined."""
        self.result.lines += 1
        if oversized:
            rtype, rid = peek_identity(raw)
            self._quarantine_line(raw, rtype, rid, "resource too large")
        else:
            self._process(raw, defer=True)
        if len(self._batch) + len(self._quarantine) >= self.batch_size:
            self.flush()

    def end_file(self) -> None:
        """Retry lines of the file just read whose reference came later in it."""
        pending, self._file_deferred = self._file_deferred, []
        pending = self._retry(pending)
        self._deferred.extend(pending)

    def finish(self) -> ImportResult:
        """Retry what still waits for a reference, quarantine the rest, write, return counts."""
        if not self.result.cancelled:
            self.end_file()
            pending, self._deferred = self._deferred, []
            for raw in self._retry(pending):
                self._process(raw, defer=False)
            self.flush(last=True)
        self.result.seconds = time.perf_counter() - self._started
        return self.result

    @property
    def cancelled(self) -> bool:
        return self.result.cancelled

    # -- internals -------------------------------------------------------------------------

    def _retry(self, pending: list[bytes]) -> list[bytes]:
        while pending:
            before = len(pending)
            self._file_deferred = []
            for raw in pending:
                self._process(raw, defer=True)
                if len(self._batch) + len(self._quarantine) >= self.batch_size:
                    self.flush()
            pending, self._file_deferred = self._file_deferred, []
            if len(pending) >= before:
                break
        return pending

    def _process(self, raw: bytes, *, defer: bool) -> None:
        try:
            resource = parse_resource(raw)
        except InboundError as exc:
            rtype, rid = peek_identity(raw)
            self._quarantine_line(raw, rtype, rid, exc.reason)
            return
        rtype, rid = resource["resourceType"], resource["id"]
        try:
            with memoized(self._memo):
                mapped = map_resource(resource, self.index)
        except InboundError as exc:
            if (
                defer
                and exc.reason.startswith("dangling reference")
                and len(self._deferred) + len(self._file_deferred) < MAX_DEFERRED
            ):
                self._file_deferred.append(raw)
                return
            self._quarantine_line(raw, rtype, rid, exc.reason)
            return
        self.index.remember(mapped)
        self._batch.append((mapped, raw))

    def _quarantine_line(self, raw: bytes, rtype: str | None, rid: str | None, reason: str) -> None:
        self.result.quarantined += 1
        bucket = rtype or "unknown"
        self.result.quarantined_by_type[bucket] = self.result.quarantined_by_type.get(bucket, 0) + 1
        key = (rtype, rid, reason, hashlib.sha256(raw).digest())
        if key in self._seen_quarantine:
            return  # already in quarantine from an earlier run (or this one)
        self._seen_quarantine.add(key)
        self._quarantine.append({
            "source": self.source,
            "resource_type": rtype,
            "resource_id": rid,
            "reason": reason[:400],
            "raw": raw,
            "at": utcnow(),
        })

    def _load_quarantine_keys(self) -> set[tuple[Any, ...]]:
        keys: set[tuple[Any, ...]] = set()
        q = _QUARANTINE.c
        with self.cache.reader() as session:
            rows = session.execute(
                select(q.resource_type, q.resource_id, q.reason, q.raw).where(q.source == self.source)
            )
            for rtype, rid, reason, raw in rows:
                keys.add((rtype, rid, reason, hashlib.sha256(raw or b"").digest()))
        return keys

    def flush(self, *, last: bool = False) -> None:
        """Write the current batch and quarantine rows in one transaction."""
        if self.result.cancelled:
            return
        batch, self._batch = self._batch, []
        quarantine, self._quarantine = self._quarantine, []
        if batch or quarantine:
            with self.cache.unit_of_work(user=IMPORT_USER, origin="sync") as session:
                outcome = self._write(session, batch)
                late = self._quarantine  # records the database refused, quarantined just now
                self._quarantine = []
                rows = quarantine + late
                if rows:
                    session.connection().execute(insert(_QUARANTINE), rows)
                    outcome.changed.setdefault("quarantine", set())
                changed = session.info.setdefault("changed", {})
                for table, ids in outcome.changed.items():
                    changed.setdefault(table, set()).update(ids)
            self.result.inserted += outcome.inserted
            self.result.updated += outcome.updated
            self.result.unchanged += outcome.unchanged
            self.result.conflicts += outcome.conflicts
        if self.progress is not None:
            self.progress(self.result.lines)
        if not last and self.cancel is not None and self.cancel():
            self.result.cancelled = True

    def _write(self, session: Session, batch: list[tuple[MappedResource, bytes]]) -> _Outcome:
        outcome = _Outcome()
        if not batch:
            return outcome
        writer = _Writer(session, self.source)
        try:
            with session.begin_nested():
                done = writer.apply([m for m, _ in batch])
        except IntegrityError:
            logger.warning("a batch of %d was refused by the cache; retrying one by one", len(batch))
        else:
            self._count(batch)
            outcome.add(done)
            return outcome
        for mapped, raw in batch:
            try:
                with session.begin_nested():
                    done = writer.apply([mapped])
            except IntegrityError:
                self.index.forget(mapped)
                self._quarantine_line(raw, mapped.resource_type, mapped.resource_id,
                                      "refused by the cache (constraint)")
            else:
                self._count([(mapped, raw)])
                outcome.add(done)
        return outcome

    def _count(self, batch: list[tuple[MappedResource, bytes]]) -> None:
        counts = self.result.counts
        for mapped, _ in batch:
            counts[mapped.resource_type] = counts.get(mapped.resource_type, 0) + 1


def import_ndjson_dir(
    cache: Any,
    folder: Path,
    *,
    source: str = "ehr",
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import a FHIR Bulk Data export folder (``*.ndjson``, ``*.ndjson.gz``) into the cache.

    Args:
        cache: an open :class:`app.cache.store.Cache`.
        folder: the export folder; files are named after their resource type
            (``Patient.ndjson``, ``Patient_2.ndjson``, ``1.Patient.ndjson``); other names go last.
        source: the records' ``source`` and the quarantine rows' ``source``.
        progress: called after each batch with the number of lines read so far.
        cancel: asked after each batch; True stops the import (what is written stays written;
            lines waiting for a later reference are neither written nor quarantined).
        batch_size: resources per transaction.

    Returns:
        An :class:`ImportResult` with counts by resource type and the number quarantined.
    """
    importer = BulkImporter(cache, source=source, batch_size=batch_size, progress=progress, cancel=cancel)
    for path in ndjson_files(Path(folder)):
        for raw, oversized in iter_lines(path):
            importer.add(raw, oversized=oversized)
            if importer.cancelled:
                break
        if importer.cancelled:
            break
        importer.end_file()
    result = importer.finish()
    logger.info(
        "bulk import: %d lines, %d accepted, %d quarantined in %.1f s",
        result.lines, result.accepted, result.quarantined, result.seconds,
    )
    if result.cancelled:
        logger.info("bulk import cancelled by the user")
    return result


__all__ = [
    "BATCH_SIZE",
    "ORDER",
    "BulkImporter",
    "ImportResult",
    "import_ndjson_dir",
    "iter_lines",
    "ndjson_files",
]
