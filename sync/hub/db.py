"""The central service's database: schema, engines and transactions, for SQLite and PostgreSQL.

One site or a demo runs on a SQLite file (``sqlite:///path``); several workstations and several
service instances share a PostgreSQL database (``postgresql+psycopg://user@host/db``). Everything
the service knows lives here; no instance keeps state of its own.

Schema: this first version creates the tables on start with ``metadata.create_all`` (under a lock,
so instances starting together do not race). That only ever adds missing tables; the first change
to an existing table needs a migration tool (Alembic, as the workstation cache uses) before it
ships.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from app.errors import KnownError

logger = logging.getLogger(__name__)

# Advisory lock keys (PostgreSQL, 64-bit, database-wide). ASCII "COPSHUB1" / "COPSHUB0".
CHANGES_LOCK = 0x434F_5053_4855_4231
SCHEMA_LOCK = 0x434F_5053_4855_4230

JSONValue = JSON().with_variant(JSONB(), "postgresql")
# BIGSERIAL on PostgreSQL; on SQLite an INTEGER PRIMARY KEY (the rowid) is the only autoincrement.
SeqInt = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# The feed. ``seq`` is the server sequence every applied change gets; never reused (AUTOINCREMENT
# on SQLite, a sequence on PostgreSQL). Gaps are possible (a rolled-back push burns its values);
# order is what readers rely on, see service.Hub.push.
changes = Table(
    "changes",
    metadata,
    Column("seq", SeqInt, primary_key=True, autoincrement=True),
    Column("entity", String(64), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("op", String(8), nullable=False),  # upsert, delete
    Column("version", Integer, nullable=False),
    Column("data", JSONValue),  # the record's full state after the change; null for a delete
    Column("changed_fields", JSONValue, nullable=False),
    Column("workstation", String(64), nullable=False),
    Column("username", String(64), nullable=False),
    Column("at", DateTime, nullable=False, default=utcnow),
    Index("ix_changes_record_version", "entity", "entity_id", "version"),
    sqlite_autoincrement=True,
)

# The shared copy of every synchronised record.
records = Table(
    "records",
    metadata,
    Column("entity", String(64), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", JSONValue, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False, default=utcnow),
    PrimaryKeyConstraint("entity", "entity_id"),
)

# Results of applied pushes by idempotency key: a retry gets the stored result back.
idempotency = Table(
    "idempotency",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("workstation", String(64), nullable=False),
    Column("username", String(64), nullable=False),
    Column("result", JSONValue, nullable=False),
    Column("at", DateTime, nullable=False, default=utcnow),
)

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(32), nullable=False),
    Column("verifier", String(300), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False, default=utcnow),
    Column("updated_at", DateTime, nullable=False, default=utcnow),
)

# Service secrets (the token signing key), created once by whichever instance gets there first.
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False, default=utcnow),
)

# Audit entries received from workstations, one hash chain per workstation.
audit_entries = Table(
    "audit_entries",
    metadata,
    Column("workstation", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", String(40), nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("record_ids", JSONValue, nullable=False),
    Column("detail", String(400), nullable=False),
    Column("break_glass", Boolean, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("received_at", DateTime, nullable=False, default=utcnow),
    Column("received_from", String(64), nullable=False),
    PrimaryKeyConstraint("workstation", "seq"),
)


class HubDatabaseError(KnownError):
    remedy = (
        "Check the --db URL: sqlite:///path/to/hub.db for one site, or "
        "postgresql+psycopg://user@host:5432/dbname for a shared database that is running and reachable."
    )


def normalize_url(url: str) -> URL:
    """Parse a database URL; ``postgresql://`` means the psycopg 3 driver. Refuses anything else."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise HubDatabaseError("The database URL cannot be read.") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):  # the default name is psycopg2
            raise HubDatabaseError("Use the psycopg driver for PostgreSQL (postgresql+psycopg://...).")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file::memory"):
            raise HubDatabaseError(
                "An in-memory SQLite database would keep the service's state in one process; use a file."
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise HubDatabaseError(f"Unsupported database {backend!r}: use sqlite or postgresql.")


def create_engine(url: str, key: bytes | None = None) -> Engine:
    """An engine for the service database (no connection is made yet).

    ``key`` (SQLite only) encrypts the file with SQLCipher, as the workstation's cache is: demo
    mode's embedded service keeps its database in the workstation's data folder.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        if key is not None:
            import sqlcipher3

            from app.cache.engine import connect_raw

            engine = sa.create_engine(
                "sqlite+pysqlite://", module=sqlcipher3.dbapi2, creator=lambda: connect_raw(path, key),
                poolclass=QueuePool,  # not the one-connection-per-thread pool of an in-memory URL
            )
        else:
            engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_transactions(engine)
        return engine
    try:
        return sa.create_engine(
            parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args={"connect_timeout": 10}
        )
    except (NoSuchModuleError, ImportError):  # pragma: no cover - psycopg is a dependency
        raise HubDatabaseError("The PostgreSQL driver (psycopg) is not installed.") from None


def _sqlite_transactions(engine: Engine) -> None:
    """Take over BEGIN from the sqlite3 driver: reads get a real snapshot, writers BEGIN IMMEDIATE.

    The driver's legacy mode starts no transaction for SELECT (so two reads in one "transaction"
    may see different states) and would start a deferred one at the first write, where a reader
    that must upgrade to a writer can fail with "database is locked" at once instead of waiting.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("hub_write") else "BEGIN")


def backend(engine: Engine) -> str:
    """``sqlite`` or ``postgresql``."""
    return engine.dialect.name


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write. SQLite: takes the database's write lock at BEGIN."""
    with engine.connect() as conn:
        conn = conn.execution_options(hub_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction whose statements all see one snapshot.

    PostgreSQL's default READ COMMITTED takes a new snapshot per statement: a feed page and the
    head it reports would then come from different moments, and a change committed in between
    could be skipped. REPEATABLE READ gives the whole transaction one snapshot.
    """
    with engine.connect() as conn:
        if backend(engine) == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def create_schema(engine: Engine) -> None:
    """Create missing tables. Safe when several instances start at once."""
    try:
        with write_transaction(engine) as conn:
            if backend(engine) == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            metadata.create_all(conn)
    except OperationalError as exc:
        logger.error("cannot open the hub database (%s)", type(exc.orig).__name__ if exc.orig else "error")
        raise HubDatabaseError("The central service's database cannot be opened.") from None
    except SQLAlchemyError as exc:
        logger.error("cannot create the hub schema (%s)", type(exc).__name__)
        raise HubDatabaseError("The central service's database could not be prepared.") from None


def open_database(url: str, key: bytes | None = None) -> Engine:
    """Engine plus schema: what an instance needs before it serves a request."""
    engine = create_engine(url, key)
    try:
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
