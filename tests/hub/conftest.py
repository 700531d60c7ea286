"""Fixtures for the central service: every test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL: one database ``hub_test_<random>`` per test run (created through the ``test`` database,
dropped at the end), and a fresh schema per test (``search_path`` in the URL). When no server answers
at CAREOPS_TEST_PG (default: 127.0.0.1:5432, user postgres), the PostgreSQL variants are skipped
with the reason.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

with warnings.catch_warnings():
    # Starlette nudges towards httpx2; the test client works the same.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import app.security.users as users_module  # noqa: E402
from sync.hub.api import create_app  # noqa: E402
from sync.hub.auth import add_user  # noqa: E402
from tests.hub import USERS  # noqa: E402

PG_ADMIN = os.environ.get("CAREOPS_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")

_PG: dict[str, str] = {}


def _pg_params() -> dict[str, str]:
    return psycopg.conninfo.conninfo_to_dict(PG_ADMIN)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A URL of a fresh PostgreSQL database for this run, or None (the reason in pg_database.reason)."""
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        _PG["reason"] = f"PostgreSQL unreachable at {PG_ADMIN!r} ({type(exc).__name__}); set CAREOPS_TEST_PG"
        yield None
        return
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        p = _pg_params()
        yield (
            f"postgresql+psycopg://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{name}"
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path, pg_database) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    if pg_database is None:
        pytest.skip(pg_database_reason())
    yield from _pg_schema(pg_database)


@pytest.fixture
def pg_url(pg_database) -> Iterator[str]:
    """PostgreSQL only (tests of behaviour that SQLite's single writer makes moot)."""
    if pg_database is None:
        pytest.skip(pg_database_reason())
    yield from _pg_schema(pg_database)


def pg_database_reason() -> str:
    return _PG.get("reason", "PostgreSQL unreachable")


def _pg_schema(base: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base}?options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _fast_verifiers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap scrypt for tests (verifiers carry their own parameters, so checking still works)."""
    monkeypatch.setattr(users_module, "VERIFIER_N", 2**8)


@pytest.fixture
def make_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., TestClient]]:
    """Start an instance of the service (any number; all closed at the end).

    Without a URL it serves the test's ``db_url`` (the test must use ``client`` or ``db_url``).
    """
    clients: list[TestClient] = []

    def make(url: str | None = None, **kwargs: Any) -> TestClient:
        c = TestClient(create_app(url or request.getfixturevalue("db_url"), **kwargs))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client, db_url: str) -> TestClient:
    c = make_client(db_url)
    engine = c.app.state.engine
    for username, role in USERS.items():
        add_user(engine, username, f"{username.title()} (test)", role, f"pw-{username}")
    return c
