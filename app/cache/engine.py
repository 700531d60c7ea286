"""SQLAlchemy engines over SQLCipher (encrypted) or plain SQLite (benchmarks only).

The raw 256-bit key is applied with ``PRAGMA key = "x'<hex>'"`` in a custom ``creator``: this skips
SQLCipher's PBKDF2 on every connection (~2 ms instead of ~230 ms, see DESIGN.md). SQLite's errors
are translated here into the user-facing errors of :mod:`app.errors`.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from pathlib import Path
from typing import Any

import sqlcipher3
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from app.errors import CacheDamaged, DataFolderUnwritable, DiskFull, KnownError, WrongKey

KEY_BYTES = 32
WRITE_OPTION = "careops_write"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def key_pragma(key: bytes) -> str:
    hexkey = key.hex()
    # The key goes into SQL text: only ever exactly 64 lowercase hex characters.
    if len(key) != KEY_BYTES or not _HEX64.fullmatch(hexkey):
        raise ValueError("database key must be 32 bytes")
    return f"PRAGMA key = \"x'{hexkey}'\""


def rekey_pragma(key: bytes) -> str:
    return key_pragma(key).replace("PRAGMA key", "PRAGMA rekey", 1)


def _configure(conn: Any) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")


def connect_raw(path: Path, key: bytes | None) -> Any:
    """One DB-API connection, keyed and configured. ``key=None`` opens plain SQLite."""
    module = sqlcipher3 if key is not None else sqlite3
    conn = module.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        if key is not None:
            # SQLCipher writes its own decrypt errors to stderr; we report them ourselves.
            conn.execute("PRAGMA cipher_log_level = NONE")
            conn.execute(key_pragma(key))
        # The first read is where a wrong key or damaged file shows up.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _configure(conn)
    except Exception:
        conn.close()
        raise
    return conn


def make_engine(path: Path, key: bytes | None) -> Engine:
    """An engine whose every pooled connection is keyed. ``key=None`` only for benchmarks."""
    module = sqlcipher3.dbapi2 if key is not None else sqlite3
    # An explicit QueuePool: with a creator and no file name SQLAlchemy would assume an in-memory
    # database and share one connection per thread, so a read opened inside a unit of work would
    # join (and on close roll back) that unit's transaction.
    engine = create_engine(
        "sqlite+pysqlite://",
        module=module,
        creator=lambda: connect_raw(path, key),
        poolclass=QueuePool,
        pool_size=5,
        max_overflow=10,
    )

    # pysqlite's own transaction handling is broken for SAVEPOINT; take it over (SQLAlchemy docs,
    # "Serializable isolation / Savepoints / Transactional DDL"). A unit of work that will write
    # takes the write lock at BEGIN (and waits busy_timeout for it): a deferred transaction that
    # read first would fail at once with "database is locked" if another thread wrote meanwhile.
    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")

    return engine


def translate(exc: BaseException, *, key_check_ok: bool | None = None) -> KnownError | None:
    """Map a SQLite/OS error to a user-facing error, or None when it is not one we know."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig).lower()
    if isinstance(orig, OSError):
        if orig.errno == errno.ENOSPC:
            return DiskFull("The disk is full.")
        if orig.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return DataFolderUnwritable("The data folder is read-only.")
        return None
    if "database or disk is full" in text or "disk i/o error" in text and "full" in text:
        return DiskFull("The disk is full.")
    if "readonly" in text or "read-only" in text or "unable to open database" in text:
        return DataFolderUnwritable("The cache cannot be written: the data folder is read-only.")
    if "file is not a database" in text or "malformed" in text or "not a database" in text:
        if key_check_ok is False:
            return WrongKey("The cache cannot be opened with this workstation's key.")
        return CacheDamaged("The local cache file is damaged.")
    return None
