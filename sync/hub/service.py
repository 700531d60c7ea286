"""The central service's logic, without HTTP: push with idempotency and conflict detection, the
changes feed, audit ingestion. docs/sync-protocol.md is the contract.

Everything is read from and written to the database inside one transaction per call; nothing is
remembered between calls, so any number of instances over one database agree.

Ordering of the feed (the part that is easy to get wrong on PostgreSQL): a sequence hands out
values when rows are inserted, but transactions commit in their own order. Without care, push A
takes seq 10, push B takes seq 11 and commits first, a reader at ``since=9`` gets 11 and moves its
cursor to 11, then A commits 10 and that reader never sees it. We serialize appliers instead: every
push transaction first takes one transaction-level advisory lock (``pg_advisory_xact_lock``), so
seqs are allocated and committed strictly one push after another, and PostgreSQL makes a
transaction visible before it releases its locks. A reader's snapshot therefore always holds a
prefix of the feed (with at most harmless gaps from rolled-back pushes), and ``since`` never skips.
The price is one applier at a time across all instances; a 500-change push holds the lock for tens
of milliseconds. SQLite has one writer anyway (``BEGIN IMMEDIATE``), with the same effect.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from app.cache.models import RECORD_TYPES
from app.errors import KnownError
from app.logs import Safe
from app.security.audit import GENESIS, entry_hash
from sync.hub import db

logger = logging.getLogger(__name__)

MAX_CHANGES_PER_PUSH = 500
MAX_AUDIT_ENTRIES = 1000
MAX_FEED_LIMIT = 1000
MAX_VALUE_DEPTH = 32
MAX_INT = 2**63 - 1

# Fields that are bookkeeping of a copy, not content: they never cause or count as a conflict.
BOOKKEEPING_FIELDS = frozenset({"id", "source", "remote_version", "dirty", "updated_at"})
# Fields that only mean something inside one workstation's cache: never stored.
LOCAL_FIELDS = frozenset({"dirty", "remote_version"})

_KEY = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_TEXT_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"[0-9]{1,18}")


class ProtocolError(KnownError):
    """A request the protocol does not allow as a whole (-> 422, or 413 when too large)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class AuditRefused(KnownError):
    """Audit entries that do not continue the stored chain (409) or are malformed (422)."""

    def __init__(self, message: str, status: int, head: tuple[int, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.head = head


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- validation of one change ------------------------------------------------------------------

# entity -> {column name -> whether the column holds JSON (objects and lists allowed)}
_COLUMNS: dict[str, dict[str, bool]] = {
    name: {c.key: isinstance(c.type, JSON) for c in cls.__table__.columns if c.key != "dirty"}
    for name, cls in RECORD_TYPES.items()
}


@dataclass(frozen=True)
class Change:
    idempotency_key: str
    entity: str
    entity_id: str
    op: str
    payload: dict[str, Any]
    changed_fields: frozenset[str]
    base_version: int | None


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise _Rejected("text contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Rejected("text is not valid Unicode") from None


def _check_value(value: Any, depth: int = 0) -> None:
    """A JSON value both databases can store: finite numbers, text without NUL, bounded depth."""
    if depth > MAX_VALUE_DEPTH:
        raise _Rejected("a value is nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise _Rejected("a number is out of range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Rejected("a number is not finite")
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Rejected("an object key is not text")
            _check_text(k)
            _check_value(v, depth + 1)
    else:
        raise _Rejected("a value is not JSON")


def _names(fields: Collection[str], limit: int = 5) -> str:
    shown = sorted(fields)[:limit]
    return ", ".join(f[:40] for f in shown) + (", ..." if len(fields) > limit else "")


def change_key(obj: Any) -> str:
    """The idempotency key of a raw change, or ProtocolError: without one no result can be matched."""
    if not isinstance(obj, dict):
        raise ProtocolError("Every change must be a JSON object.")
    key = obj.get("idempotency_key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ProtocolError("Every change needs an idempotency_key of 1-64 letters, digits, '.', ':', '-', '_'.")
    return key


def parse_change(obj: dict[str, Any]) -> Change:
    """Validate one change of a push. Raises _Rejected with a reason that names fields, not values."""
    key = change_key(obj)
    entity = obj.get("entity")
    if not isinstance(entity, str) or entity not in _COLUMNS:
        raise _Rejected("unknown entity")
    columns = _COLUMNS[entity]
    entity_id = obj.get("entity_id")
    if not isinstance(entity_id, str) or not _TEXT_ID.fullmatch(entity_id):
        raise _Rejected("entity_id must be 1-64 characters of text")
    _check_text(entity_id)
    op = obj.get("op")
    if op not in ("upsert", "delete"):
        raise _Rejected("op must be 'upsert' or 'delete'")

    payload = obj.get("payload")
    if payload is None and op == "delete":
        payload = {}
    if not isinstance(payload, dict):
        raise _Rejected("payload must be an object")
    unknown = [k for k in payload if k not in columns]
    if unknown:
        raise _Rejected(f"payload has fields that {entity} does not have: {_names(unknown)}")
    for name, value in payload.items():
        if not columns[name] and isinstance(value, dict | list):
            raise _Rejected(f"field {name} takes a single value, not an object or list")
        _check_value(value)
    if "id" in payload and payload["id"] != entity_id:
        raise _Rejected("payload id differs from entity_id")

    raw_fields = obj.get("changed_fields")
    if raw_fields is None:
        raw_fields = []
    if not isinstance(raw_fields, list) or not all(isinstance(f, str) for f in raw_fields):
        raise _Rejected("changed_fields must be a list of field names")
    bad = [f for f in raw_fields if f not in columns]
    if bad:
        raise _Rejected(f"changed_fields names fields that {entity} does not have: {_names(bad)}")

    return Change(key, entity, entity_id, op, payload, frozenset(raw_fields), _base_version(obj.get("base_version")))


def _base_version(value: Any) -> int | None:
    """The service version a change was made from. Anything that is not one of our versions (null,
    "", or an EHR's version id a record came in with) means "unknown": the change is then checked
    against the record's whole history, so it can still never overwrite silently."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_INT else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


def _content(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in BOOKKEEPING_FIELDS}


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = (set(old) | set(new)) - BOOKKEEPING_FIELDS
    return sorted(k for k in keys if old.get(k) != new.get(k))


# --- push ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PendingSeq:
    """The seq of a change row of this push, known once the rows are inserted (all in one go)."""

    index: int


@dataclass
class _Record:
    version: int
    deleted: bool
    data: dict[str, Any]
    last_seq: int | _PendingSeq
    in_db: bool


def _result(
    key: str | None, status: str, *, version: int | None = None, seq: int | None = None, merged: bool = False,
    server: dict[str, Any] | None = None, reason: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "idempotency_key": key, "status": status, "version": version, "seq": seq, "merged": merged,
        "server": server, "reason": reason,
    }  # fmt: skip


def _server_state(rec: _Record) -> dict[str, Any]:
    return {"version": rec.version, "data": rec.data, "deleted": rec.deleted}


@dataclass(frozen=True)
class FeedPage:
    changes: list[dict[str, Any]]
    last_seq: int
    more: bool

    def as_json(self) -> dict[str, Any]:
        return {"changes": self.changes, "last_seq": self.last_seq, "more": self.more}


class Hub:
    """The service over one database engine. Stateless between calls; safe to share across threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = db.backend(engine)

    # -- push ------------------------------------------------------------------------------

    def check_push_request(self, changes: Any) -> list[str]:
        """Request-level rules (-> ProtocolError): a list of at most 500 objects with valid keys."""
        if not isinstance(changes, list):
            raise ProtocolError("changes must be a list.")
        if len(changes) > MAX_CHANGES_PER_PUSH:
            raise ProtocolError(
                f"At most {MAX_CHANGES_PER_PUSH} changes per push ({len(changes)} sent); send them in batches.",
                status=413,
            )
        return [change_key(c) for c in changes]

    def push(self, *, username: str, workstation: str, changes: Sequence[Any]) -> list[dict[str, Any]]:
        """Apply changes in order; one result per change, in the same order.

        Role checks are the caller's job (api.py refuses the whole request first); this validates
        each change and applies or answers it.
        """
        self.check_push_request(list(changes))
        parsed: list[Change | dict[str, Any]] = []
        for obj in changes:
            try:
                parsed.append(parse_change(obj))
            except _Rejected as exc:
                parsed.append(_result(obj["idempotency_key"], "rejected", reason=exc.reason))
        for attempt in range(3):
            try:
                with db.write_transaction(self.engine) as conn:
                    results = self._push(conn, username, workstation, parsed)
                break
            except IntegrityError:
                # Another instance stored one of these idempotency keys (or created one of these
                # records) between our read and our write: start over; we will see theirs.
                if attempt == 2:
                    raise
                logger.info("push from %s raced another instance; retrying", Safe(workstation))
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        logger.info(
            "push from %s by %s: %d changes, %s", Safe(workstation), Safe(username), len(results),
            Safe(", ".join(f"{k} {v}" for k, v in sorted(counts.items()))),
        )  # fmt: skip
        return results

    def _push(
        self, conn: Connection, username: str, workstation: str, parsed: list[Change | dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if self.backend == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(db.CHANGES_LOCK)))  # see the module docstring
        valid = [c for c in parsed if isinstance(c, Change)]
        stored = {}
        if valid:
            rows = conn.execute(
                select(db.idempotency).where(db.idempotency.c.key.in_({c.idempotency_key for c in valid}))
            )
            stored = {r.key: r for r in rows}
        state = self._load_records(conn, {(c.entity, c.entity_id) for c in valid})
        touched: set[tuple[str, str]] = set()
        pending: list[dict[str, Any]] = []  # change rows, inserted together at the end
        new_keys: dict[str, dict[str, Any]] = {}
        results: list[dict[str, Any]] = []
        for c in parsed:
            if not isinstance(c, Change):
                results.append(c)
                continue
            prior = stored.get(c.idempotency_key)
            if prior is not None:
                if prior.workstation != workstation:
                    results.append(_result(
                        c.idempotency_key, "rejected", reason="this idempotency key was used by another workstation"
                    ))  # fmt: skip
                else:
                    results.append({**prior.result, "idempotency_key": c.idempotency_key, "status": "duplicate"})
                continue
            if c.idempotency_key in new_keys:  # the same key twice in one push
                results.append({**new_keys[c.idempotency_key], "status": "duplicate"})
                continue
            result = self._apply(conn, c, state, touched, pending, username, workstation)
            if result["status"] == "applied":
                new_keys[c.idempotency_key] = result
            results.append(result)
        if pending:
            # One multi-row INSERT ... RETURNING, seqs in the order of the rows. Deferring the rows
            # is safe: conflict checks only look at other workstations' rows, never this push's.
            seqs = list(conn.execute(
                insert(db.changes).returning(db.changes.c.seq, sort_by_parameter_order=True), pending
            ).scalars())  # fmt: skip
            if len(seqs) != len(pending) or any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
                raise RuntimeError("change rows were not numbered in order")  # never expected; refuse to commit

            def resolve(value: Any) -> Any:
                return seqs[value.index] if isinstance(value, _PendingSeq) else value

            for r in results:
                r["seq"] = resolve(r["seq"])
            for key in touched:
                state[key].last_seq = resolve(state[key].last_seq)
        self._save_records(conn, state, touched)
        if new_keys:
            conn.execute(
                insert(db.idempotency),
                [{"key": k, "workstation": workstation, "username": username, "result": r} for k, r in new_keys.items()],
            )
        return results

    def _load_records(self, conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Record]:
        by_entity: dict[str, list[str]] = {}
        for entity, entity_id in keys:
            by_entity.setdefault(entity, []).append(entity_id)
        out: dict[tuple[str, str], _Record] = {}
        t = db.records
        for entity, ids in by_entity.items():
            q = select(t).where(t.c.entity == entity, t.c.entity_id.in_(ids))
            for r in conn.execute(q):
                out[(entity, r.entity_id)] = _Record(r.version, r.deleted, dict(r.data), r.last_seq, in_db=True)
        return out

    def _save_records(self, conn: Connection, state: dict[tuple[str, str], _Record], touched: set) -> None:
        now = db.utcnow()
        new = [
            {"entity": k[0], "entity_id": k[1], "version": r.version, "deleted": r.deleted, "data": r.data,
             "last_seq": r.last_seq, "updated_at": now}
            for k in touched if not (r := state[k]).in_db
        ]  # fmt: skip
        old = [
            {"b_entity": k[0], "b_id": k[1], "b_version": r.version, "b_deleted": r.deleted, "b_data": r.data,
             "b_last_seq": r.last_seq, "b_at": now}
            for k in touched if (r := state[k]).in_db
        ]  # fmt: skip
        t = db.records
        if new:
            conn.execute(insert(t), new)
        if old:
            conn.execute(
                update(t)
                .where(t.c.entity == bindparam("b_entity"), t.c.entity_id == bindparam("b_id"))
                .values(
                    version=bindparam("b_version"), deleted=bindparam("b_deleted"), data=bindparam("b_data"),
                    last_seq=bindparam("b_last_seq"), updated_at=bindparam("b_at"),
                ),  # fmt: skip
                old,
            )

    def _foreign_changes(self, conn: Connection, c: Change, after: int, workstation: str) -> list[Any]:
        """Changes to the record after version ``after`` made by other workstations.

        A workstation's own earlier changes are already in its copy (its outbox made them), so they
        are not concurrent edits: an offline create followed by edits, all pushed with no version
        known yet, applies instead of conflicting with itself.
        """
        t = db.changes
        q = select(t.c.op, t.c.changed_fields).where(
            t.c.entity == c.entity, t.c.entity_id == c.entity_id, t.c.version > after, t.c.workstation != workstation
        )
        return list(conn.execute(q))

    def _apply(
        self, conn: Connection, c: Change, state: dict[tuple[str, str], _Record], touched: set,
        pending: list[dict[str, Any]], username: str, workstation: str,
    ) -> dict[str, Any]:  # fmt: skip
        key = (c.entity, c.entity_id)
        cur = state.get(key)
        base = c.base_version
        k = c.idempotency_key

        if cur is not None and base is not None and base > cur.version:
            return _result(
                k, "conflict", server=_server_state(cur), reason="base_version is newer than the server's version"
            )

        if c.op == "delete":
            if cur is None:
                return _result(k, "applied", reason="not on the server; nothing to delete")
            if cur.deleted:
                return _result(k, "applied", version=cur.version, seq=cur.last_seq, reason="already deleted")
            if base != cur.version and self._foreign_changes(conn, c, base or 0, workstation):
                return _result(k, "conflict", server=_server_state(cur), reason="changed on the server since base_version")
            seq = self._append(pending, c, cur.version + 1, None, [], username, workstation)
            state[key] = _Record(cur.version + 1, True, cur.data, seq, cur.in_db)
            touched.add(key)
            return _result(k, "applied", version=cur.version + 1, seq=seq)

        incoming = {f: v for f, v in c.payload.items() if f not in LOCAL_FIELDS}
        incoming["id"] = c.entity_id
        if cur is None:
            seq = self._append(pending, c, 1, incoming, sorted(_content(incoming)), username, workstation)
            state[key] = _Record(1, False, incoming, seq, in_db=False)
            touched.add(key)
            return _result(k, "applied", version=1, seq=seq)

        merged = False
        foreign = [] if base == cur.version else self._foreign_changes(conn, c, base or 0, workstation)
        if not foreign:
            new_data = {**cur.data, **incoming}
        else:
            declared = set(c.changed_fields or _content(incoming))
            same = all(incoming.get(f) == cur.data.get(f) for f in _content(incoming)) and not cur.deleted
            if same:
                # e.g. a create of an id the server has with identical data (a replayed outbox)
                return _result(k, "applied", version=cur.version, seq=cur.last_seq, reason="already the server's data")
            if cur.deleted or any(r.op == "delete" for r in foreign):
                return _result(k, "conflict", server=_server_state(cur), reason="the record was deleted on the server")
            if base is None:
                return _result(k, "conflict", server=_server_state(cur), reason="a record with this id already exists")
            theirs = set().union(*(set(r.changed_fields or ()) for r in foreign))
            overlap = declared & theirs
            if overlap:
                return _result(
                    k, "conflict", server=_server_state(cur),
                    reason=f"changed on the server since base_version: {_names(overlap)}",
                )  # fmt: skip
            new_data = {**cur.data, **{f: incoming[f] for f in declared if f in incoming}}
            merged = True

        changed = _diff(cur.data, new_data)
        if not changed and not cur.deleted:
            return _result(k, "applied", version=cur.version, seq=cur.last_seq, reason="no change")
        if cur.deleted:  # restored by someone who saw the deletion (or made it)
            changed = sorted(_content(new_data))
        version = cur.version + 1
        seq = self._append(pending, c, version, new_data, changed, username, workstation)
        rec = _Record(version, False, new_data, seq, cur.in_db)
        state[key] = rec
        touched.add(key)
        return _result(k, "applied", version=version, seq=seq, merged=merged, server=_server_state(rec) if merged else None)

    @staticmethod
    def _append(
        pending: list[dict[str, Any]], c: Change, version: int, data: dict[str, Any] | None, changed: list[str],
        username: str, workstation: str,
    ) -> _PendingSeq:  # fmt: skip
        pending.append({
            "entity": c.entity, "entity_id": c.entity_id, "op": c.op, "version": version, "data": data,
            "changed_fields": changed, "workstation": workstation, "username": username, "at": db.utcnow(),
        })  # fmt: skip
        return _PendingSeq(len(pending) - 1)

    # -- feed ------------------------------------------------------------------------------

    def head(self) -> int:
        """The highest committed seq (0 when the feed is empty)."""
        with db.read_transaction(self.engine) as conn:
            return int(conn.scalar(select(func.max(db.changes.c.seq))) or 0)

    def feed(self, *, entities: Collection[str], since: int, limit: int) -> FeedPage:
        """Changes after ``since`` of the given entities, oldest first.

        ``last_seq`` is the cursor to ask from next: the last change returned while there are more,
        else the feed's head, so the cursor also moves past changes the caller may not read.
        """
        limit = max(1, min(int(limit), MAX_FEED_LIMIT))
        t = db.changes
        with db.read_transaction(self.engine) as conn:
            rows = list(conn.execute(
                select(t).where(t.c.seq > since, t.c.entity.in_(sorted(entities))).order_by(t.c.seq).limit(limit + 1)
            )) if entities else []  # fmt: skip
            more = len(rows) > limit
            rows = rows[:limit]
            last = rows[-1].seq if more else int(conn.scalar(select(func.max(t.c.seq))) or 0)
        changes = [
            {"seq": r.seq, "entity": r.entity, "entity_id": r.entity_id, "op": r.op, "version": r.version,
             "data": r.data, "changed_fields": r.changed_fields, "workstation": r.workstation, "user": r.username}
            for r in rows
        ]  # fmt: skip
        return FeedPage(changes, int(last), more)

    def has_changes_after(self, *, entities: Collection[str], since: int) -> int | None:
        """The feed's head if there is a change after ``since`` among ``entities``, else None."""
        if not entities:
            return None
        t = db.changes
        with db.read_transaction(self.engine) as conn:
            found = conn.scalar(
                select(t.c.seq).where(t.c.seq > since, t.c.entity.in_(sorted(entities))).order_by(t.c.seq).limit(1)
            )
            if found is None:
                return None
            return int(conn.scalar(select(func.max(t.c.seq))) or 0)

    # -- audit -----------------------------------------------------------------------------

    def audit_head(self, workstation: str) -> tuple[int, str]:
        with db.read_transaction(self.engine) as conn:
            return self._audit_head(conn, workstation)

    @staticmethod
    def _audit_head(conn: Connection, workstation: str) -> tuple[int, str]:
        t = db.audit_entries
        row = conn.execute(
            select(t.c.seq, t.c.hash).where(t.c.workstation == workstation).order_by(t.c.seq.desc()).limit(1)
        ).first()
        return (int(row.seq), row.hash) if row else (0, GENESIS)

    def ingest_audit(self, *, workstation: str, username: str, entries: Any) -> tuple[int, str]:
        """Store audit entries that continue the workstation's chain; return the acknowledged head.

        Entries already stored are accepted again if identical (a resend after a lost reply).
        Anything else that does not continue the chain is refused with AuditRefused (409).
        """
        if not isinstance(entries, list):
            raise AuditRefused("entries must be a list.", 422)
        if len(entries) > MAX_AUDIT_ENTRIES:
            raise AuditRefused(f"At most {MAX_AUDIT_ENTRIES} audit entries per request; send them in batches.", 413)
        parsed = [_parse_audit_entry(e, workstation, i) for i, e in enumerate(entries)]
        for a, b in zip(parsed, parsed[1:], strict=False):
            if b["seq"] != a["seq"] + 1 or b["prev_hash"] != a["hash"]:
                raise AuditRefused(f"Entry {b['seq']} does not follow entry {a['seq']} in this request.", 422)
        for attempt in range(3):
            try:
                with db.write_transaction(self.engine) as conn:
                    head = self._ingest(conn, workstation, username, parsed)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
                logger.info("audit upload from %s raced another instance; retrying", Safe(workstation))
        logger.info(
            "audit from %s: %d entries received, head now %d", Safe(workstation), len(parsed), head[0]
        )
        return head

    def _ingest(self, conn: Connection, workstation: str, username: str, parsed: list[dict[str, Any]]) -> tuple[int, str]:
        t = db.audit_entries
        head_seq, head_hash = self._audit_head(conn, workstation)
        known = [e for e in parsed if e["seq"] <= head_seq]
        if known:
            stored = dict(conn.execute(
                select(t.c.seq, t.c.hash).where(
                    t.c.workstation == workstation, t.c.seq >= known[0]["seq"], t.c.seq <= known[-1]["seq"]
                )
            ).all())  # fmt: skip
            for e in known:
                if stored.get(e["seq"]) != e["hash"]:
                    raise AuditRefused(
                        f"Entry {e['seq']} differs from the entry the service already acknowledged.", 409,
                        (head_seq, head_hash),
                    )  # fmt: skip
        new = [e for e in parsed if e["seq"] > head_seq]
        if not new:
            return head_seq, head_hash
        if new[0]["seq"] != head_seq + 1:
            raise AuditRefused(
                f"Entries {head_seq + 1} to {new[0]['seq'] - 1} are missing: the service holds up to {head_seq}.",
                409, (head_seq, head_hash),
            )  # fmt: skip
        if new[0]["prev_hash"] != head_hash:
            raise AuditRefused(
                f"Entry {new[0]['seq']} does not continue the chain the service acknowledged.", 409,
                (head_seq, head_hash),
            )  # fmt: skip
        now = db.utcnow()
        conn.execute(insert(t), [{**e, "received_at": now, "received_from": username} for e in new])
        return new[-1]["seq"], new[-1]["hash"]


_AUDIT_TEXT = {"at": 40, "user": 64, "role": 32, "action": 64, "entity": 64, "detail": 400}


def _parse_audit_entry(e: Any, workstation: str, index: int) -> dict[str, Any]:
    def bad(what: str) -> AuditRefused:
        return AuditRefused(f"Audit entry {index + 1}: {what}.", 422)

    if not isinstance(e, dict):
        raise bad("not an object")
    seq = e.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_INT:
        raise bad("seq must be a positive integer")
    out: dict[str, Any] = {"workstation": workstation, "seq": seq}
    for name, limit in _AUDIT_TEXT.items():
        value = e.get(name, "" if name == "detail" else None)
        if not isinstance(value, str) or len(value) > limit:
            raise bad(f"{name} must be text of at most {limit} characters")
        try:
            _check_text(value)
        except _Rejected as exc:
            raise bad(f"{name}: {exc.reason}") from None
        out[name] = value
    if e.get("workstation") != workstation:
        raise bad("workstation differs from the request's workstation")
    record_ids = e.get("record_ids", [])
    if not isinstance(record_ids, list) or not all(isinstance(i, str) for i in record_ids):
        raise bad("record_ids must be a list of text")
    try:
        _check_value(record_ids)
    except _Rejected as exc:
        raise bad(f"record_ids: {exc.reason}") from None
    break_glass = e.get("break_glass", False)
    if not isinstance(break_glass, bool):
        raise bad("break_glass must be true or false")
    for name in ("prev_hash", "hash"):
        if not isinstance(e.get(name), str) or not _HEX64.fullmatch(e[name]):
            raise bad(f"{name} must be 64 lowercase hex digits")
    expected = entry_hash(
        seq, out["at"], out["user"], out["role"], workstation, out["action"], out["entity"], record_ids,
        out["detail"], break_glass, e["prev_hash"],
    )  # fmt: skip
    if expected != e["hash"]:
        raise bad(f"the hash of entry {seq} does not match its content")
    out.update(
        username=out.pop("user"), record_ids=record_ids, break_glass=break_glass, prev_hash=e["prev_hash"], hash=e["hash"]
    )
    return out
