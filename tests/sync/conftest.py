"""Live central service on loopback (SQLite and PostgreSQL) and workstations that sync with it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from app.security.roles import Role
from app.workstation import Workstation, open_workstation
from sync.engine import SyncEngine
from sync.hub.api import create_app
from sync.hub.auth import add_user
from sync.hub.db import open_database
from sync.hub_client import HubClient
from tests.conftest import TEST_PASSPHRASE
from tests.hub.conftest import pg_database  # noqa: F401 - shared fixture

USERS = {"coord": Role.COORDINATOR, "coord2": Role.COORDINATOR, "admin": Role.ADMINISTRATOR, "supply": Role.SUPPLY_MANAGER}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveHub:
    """uvicorn serving the hub app on a loopback port, in a thread; restartable on the same port."""

    def __init__(self, db_url: str, port: int | None = None) -> None:
        self.db_url = db_url
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveHub:
        config = uvicorn.Config(
            create_app(self.db_url, poll_interval=0.05), host="127.0.0.1", port=self.port,
            log_config=None, timeout_keep_alive=35, lifespan="on",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-hub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("hub did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request, tmp_path, pg_database) -> Iterator[str]:  # noqa: F811
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        if pg_database is None:
            pytest.skip("PostgreSQL unreachable")
        import uuid

        import psycopg

        schema = f"s_{uuid.uuid4().hex[:10]}"
        base = pg_database
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{base}?options=-csearch_path%3D{schema}"
    engine = open_database(url)
    for name, role in USERS.items():
        add_user(engine, name, name.title(), role, f"pw-{name}")
    engine.dispose()
    yield url


@pytest.fixture
def live_hub(hub_db) -> Iterator[LiveHub]:
    hub = LiveHub(hub_db).start()
    yield hub
    hub.stop()


@dataclass
class Station:
    ws: Workstation
    engine: SyncEngine
    client: HubClient

    def close(self) -> None:
        self.client.close()
        self.ws.close()


@pytest.fixture
def make_station(tmp_path: Path, monkeypatch) -> Iterator[Callable[..., Station]]:
    monkeypatch.setenv("CAREOPS_PASSPHRASE", TEST_PASSPHRASE)
    made: list[Station] = []

    def make(name: str, url: str, user: str = "coord", **engine_kw) -> Station:
        ws = open_workstation(tmp_path / name)
        ws.users.ensure_demo_users()
        client = HubClient(url, lambda: (user, f"pw-{user}"), ws.workstation_id, timeout=engine_kw.pop("timeout", 10.0))
        st = Station(ws, SyncEngine(ws.cache, client, **engine_kw), client)
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()
