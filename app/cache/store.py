"""The cache: opening it safely, units of work with the outbox, and the change signal.

A unit of work opened with ``origin="local"`` is a user's change: every record it inserts, updates
or deletes gets an outbox row in the same transaction (written in ``after_flush`` on the same
connection), and is marked dirty. ``origin="sync"`` is the sync engine applying what a server said:
no outbox rows. Either way, listeners hear which records changed once the transaction commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.cache.engine import WRITE_OPTION, connect_raw, make_engine, translate
from app.cache.models import Meta, OutboxEntry, Record, new_id
from app.errors import DataFolderUnwritable, KnownError
from app.logs import phi_registry

logger = logging.getLogger(__name__)

_KEYCHECK_LABEL = b"careops-keycheck-v1"


def key_check_value(key: bytes) -> str:
    """A value that tells whether a key is the cache's key, and reveals nothing about it."""
    return hmac.new(key, _KEYCHECK_LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChangeSet:
    """What one committed transaction changed: table name -> record ids."""

    origin: str
    changed: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def entities(self) -> frozenset[str]:
        return frozenset(self.changed)


Listener = Callable[[ChangeSet], None]


def check_writable(folder: Path) -> None:
    """Fail early and clearly when the data folder cannot be written."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        known = translate(exc)
        raise (known or DataFolderUnwritable(f"The data folder cannot be written ({exc.strerror}).")) from None


class Cache:
    """An open, migrated, encrypted cache."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = path
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        event.listen(self._sessions, "before_flush", _before_flush)
        event.listen(self._sessions, "after_flush", _after_flush)
        event.listen(self._sessions, "after_commit", self._after_commit)
        event.listen(self._sessions, "after_rollback", _after_rollback)

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, key: bytes | None, *, key_check: str | None = None) -> Cache:
        """Open (creating if needed) and migrate the cache at ``path``.

        Args:
            path: the database file.
            key: the raw 32-byte key; None only for the plain-SQLite benchmark baseline.
            key_check: the stored key-check value, used to tell a wrong key from a damaged file.
        """
        check_writable(path.parent)
        try:
            connect_raw(path, key).close()
            # Only the user may read the (encrypted) file; SQLite gives -wal/-shm the same mode.
            path.chmod(0o600)
        except (DBAPIError, OSError, Exception) as exc:  # noqa: BLE001 - translated or re-raised
            ok = None if key is None or key_check is None else key_check == key_check_value(key)
            known = translate(exc, key_check_ok=ok)
            if known:
                raise known from None
            raise
        engine = make_engine(path, key)
        cache = cls(engine, path)
        try:
            cache.migrate()
        except (DBAPIError, OSError) as exc:
            engine.dispose()
            known = translate(exc)
            if known:
                raise known from None
            raise
        return cache

    def migrate(self) -> None:
        from app.cache.migrate import upgrade

        with self.engine.begin() as conn:
            upgrade(conn)

    def close(self) -> None:
        self.engine.dispose()

    # -- units of work ----------------------------------------------------------------------

    @contextlib.contextmanager
    def unit_of_work(self, *, user: str, origin: str = "local", foreign_keys: bool = True) -> Iterator[Session]:
        """A transaction; commits on success. Local changes write the outbox in the same one.

        ``foreign_keys=False`` is for mirroring a server that owns referential integrity (the
        central service's feed may hold a record whose parent this user's role may not read).
        """
        conn = None
        if not foreign_keys:
            conn = self.engine.connect().execution_options(**{WRITE_OPTION: True})
            # Must run outside a transaction to take effect, so on the raw connection.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        session = self._sessions(bind=conn) if conn is not None else self._sessions()
        session.info.update(origin=origin, user=user, changed={})
        if conn is None:
            session.connection(execution_options={WRITE_OPTION: True})  # BEGIN IMMEDIATE
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            if isinstance(exc, OperationalError | OSError):
                known = translate(exc)
                if known:
                    raise known from None
            raise
        finally:
            session.close()
            if conn is not None:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
                conn.close()

    @contextlib.contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session; loaded objects stay usable (detached) after it closes."""
        session = self._sessions()
        session.info.update(origin="read", user="", changed={})
        try:
            yield session
        finally:
            session.close()

    def raw_connection(self) -> Any:
        return self.engine.raw_connection()

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.reader() as s:
            return s.scalar(select(Meta.value).where(Meta.key == key))

    def set_meta(self, key: str, value: str) -> None:
        with self.unit_of_work(user="system", origin="system") as s:
            s.merge(Meta(key=key, value=value))

    def pending_outbox(self) -> int:
        with self.reader() as s:
            return s.scalar(
                select(text("count(*)")).select_from(OutboxEntry).where(OutboxEntry.status == "pending")
            ) or 0

    # -- change signal ----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _after_commit(self, session: Session) -> None:
        changed: dict[str, set[str]] = session.info.get("changed") or {}
        session.info["changed"] = {}
        if not changed:
            return
        change = ChangeSet(
            origin=session.info.get("origin", "local"),
            changed={k: frozenset(v) for k, v in changed.items()},
        )
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:  # a broken listener must not undo a committed change
                logger.exception("change listener failed")


def _register_phi(obj: Any, *_args: Any) -> None:
    for name in type(obj).phi_fields:
        phi_registry.add(getattr(obj, name, None))


event.listen(Record, "load", _register_phi, propagate=True)
event.listen(Record, "refresh", _register_phi, propagate=True)


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    local = session.info.get("origin") == "local"
    queued: list[tuple[Record, str, list[str]]] = session.info.setdefault("outbox_queue", [])
    changed: dict[str, set[str]] = session.info.setdefault("changed", {})
    for obj in session.new:
        if isinstance(obj, Record):
            _register_phi(obj)
            if obj.id is None:
                obj.id = new_id()
            if local:
                obj.dirty = True
                obj.source = obj.source or "local"
                queued.append((obj, "upsert", []))
            changed.setdefault(obj.__tablename__, set()).add(obj.id)
    for obj in session.dirty:
        if isinstance(obj, Record) and session.is_modified(obj, include_collections=False):
            state = inspect(obj)
            fields = sorted(
                a.key for a in state.attrs if a.key not in ("dirty", "updated_at") and a.history.has_changes()
            )
            if local and fields:
                obj.dirty = True
                queued.append((obj, "upsert", fields))
            _register_phi(obj)
            changed.setdefault(obj.__tablename__, set()).add(obj.id)
    for obj in session.deleted:
        if isinstance(obj, Record):
            if local:
                queued.append((obj, "delete", []))
            changed.setdefault(obj.__tablename__, set()).add(obj.id)


def _after_flush(session: Session, _ctx: Any) -> None:
    queued: list[tuple[Record, str, list[str]]] = session.info.get("outbox_queue") or []
    if not queued:
        return
    session.info["outbox_queue"] = []
    rows = [
        {
            "idempotency_key": new_id(),
            "entity": obj.__tablename__,
            "entity_id": obj.id,
            "op": op,
            "payload": obj.to_payload() if op == "upsert" else {},
            "changed_fields": fields,
            "base_version": obj.remote_version,
            "user": session.info.get("user") or "unknown",
            "status": "pending",
            "attempts": 0,
        }
        for obj, op, fields in queued
    ]
    session.connection().execute(insert(OutboxEntry), rows)


def _after_rollback(session: Session) -> None:
    session.info["changed"] = {}
    session.info["outbox_queue"] = []


__all__ = ["Cache", "ChangeSet", "KnownError", "check_writable", "key_check_value"]
