"""Sync with the central service: push and pull throughput, and how fast a change reaches another
workstation. On SQLite and on PostgreSQL (a fresh database made through the ``test`` database and
dropped afterwards; skipped with a note when no server answers at CAREOPS_TEST_PG).

* push: 10,000 outbox changes made on workstation A (5,000 patients + 5,000 referrals, local units of
  work of 500 records), then a timed ``engine.push_outbox()`` with the engine's default batch (500).
  Goal: >= 2,000 changes/s.
* pull: the same 10,000 changes from the feed into a fresh workstation B, timed
  ``engine.pull_feed()`` with the default page (1000). Goal: >= 2,000 changes/s.
* latency: both engines run their real loops on threads (``engine.run``; B also
  ``engine.run_live_hint``; A is woken by ``engine.on_cache_change`` as a cache listener), and 30
  edits made on A at random intervals are timed from A's commit to B's cache change listener firing
  for that record. Goal: median <= 2 s.

When a throughput goal is missed, the note says where the time went: HTTP requests (including the
service's own work; it runs in this process), the cache's SQL (and its costliest statement), and the
rest, which is the engine's Python.

The central service is the real one (``sync.hub.server.build_config``: uvicorn, production settings)
on a loopback port in this process. Both workstations use encrypted caches with a passphrase key.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import event

from app.cache.models import Patient, Referral
from app.cache.store import ChangeSet
from app.security.roles import Role
from app.workstation import Workstation, open_workstation
from sync.engine import SyncEngine
from sync.hub.auth import add_user
from sync.hub.db import open_database
from sync.hub.server import build_config
from sync.hub_client import HubClient
from tests.bench.common import Result

RECORDS = int(os.environ.get("CAREOPS_BENCH_SYNC_RECORDS", "5000"))  # patients, and as many referrals: 10,000 changes
LOCAL_BATCH = 500
LATENCY_CHANGES = 30
LATENCY_GAP = (0.05, 0.6)  # seconds between two edits on A
LATENCY_TIMEOUT = 15.0
PASSPHRASE = "bench only"
PG_ADMIN = os.environ.get("CAREOPS_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
GOAL_RATE = 2_000
GOAL_LATENCY = 2.0


# --- the central service ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _hub(db_url: str) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(build_config(db_url, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="bench-hub", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the central service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def _database(kind: str, folder: Path) -> Iterator[str | None]:
    """A hub database URL: a SQLite file, or a fresh PostgreSQL database (None when unreachable)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'hub.db'}"
        return
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    name = f"bench_sync_{uuid.uuid4().hex[:10]}"
    params = psycopg.conninfo.conninfo_to_dict(PG_ADMIN)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
                   f"{params.get('port', '5432')}/{name}")  # fmt: skip
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- workstations ---------------------------------------------------------------------------------------


class _TimedClient(HubClient):
    """Adds up the time spent in push and pull requests (HTTP, the service's work, JSON)."""

    http = 0.0

    def push(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            return super().push(changes)
        finally:
            self.http += time.perf_counter() - started

    def pull(self, since: int, limit: int) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return super().pull(since, limit)
        finally:
            self.http += time.perf_counter() - started


class _SqlTimer:
    """Time the cache spends executing SQL, by statement (its first words)."""

    def __init__(self, engine: Any) -> None:
        self.by_statement: dict[str, list[float]] = {}
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cursor: Any, _statement: str, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        took = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        entry = self.by_statement.setdefault(" ".join(statement.split()[:5]), [0, 0.0])
        entry[0] += 1
        entry[1] += took

    def reset(self) -> None:
        self.by_statement.clear()

    @property
    def total(self) -> float:
        return sum(t for _, t in self.by_statement.values())

    def top(self) -> str:
        (stmt, (count, took)), *_ = sorted(self.by_statement.items(), key=lambda kv: -kv[1][1])
        return f"{took:.1f} s in {count:,}x {stmt} ..."

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)
        event.remove(self._engine, "after_cursor_execute", self._after)


def _breakdown(total: float, client: _TimedClient, sql: _SqlTimer) -> str:
    """Where the time of a timed push/pull went."""
    rest = total - client.http - sql.total
    return (f"{client.http:.1f} s in HTTP requests (incl. the service's work, same process), "
            f"{sql.total:.1f} s in cache SQL (top: {sql.top()}), {rest:.1f} s in the engine's Python "
            "(SQLAlchemy statement building, ORM)")  # fmt: skip


class _Station:
    def __init__(self, home: Path, url: str) -> None:
        self.ws: Workstation = open_workstation(home, passphrase=PASSPHRASE)
        self.client = _TimedClient(url, lambda: ("coord", "pw-coord"), self.ws.workstation_id)
        self.engine = SyncEngine(self.ws.cache, self.client)
        self.client.wait(0, 0)  # log in now: the timed parts measure sync, not the password check

    def close(self) -> None:
        self.client.close()
        self.ws.close()


def _make_changes(station: _Station, rng: random.Random) -> None:
    for start in range(0, RECORDS, LOCAL_BATCH):
        with station.ws.cache.unit_of_work(user="bench") as s:
            for i in range(start, min(start + LOCAL_BATCH, RECORDS)):
                pid = f"bench-p{i}"
                s.add(Patient(id=pid, mrn=f"MRN{i:07d}", name=f"Given{rng.randrange(999)} Family{rng.randrange(9999)}",
                              birth_date=dt.date(1930 + rng.randrange(90), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                              sex=rng.choice(["female", "male"]), phone=f"555-01{rng.randrange(100):02d}"))
                s.add(Referral(id=f"bench-r{i}", patient_id=pid, status="new", urgency=rng.choice(["routine", "urgent"]),
                               specialty="Cardiology", reason="Chest pain on exertion " * 3,
                               letter_text="Dear colleague, " * 40))  # fmt: skip


# --- latency ------------------------------------------------------------------------------------------------


def _latency(a: _Station, b: _Station, rng: random.Random) -> tuple[list[float], int]:
    """Seconds from A's commit to B's change listener, per edit; and how many never arrived."""
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    lock = threading.Lock()
    all_in = threading.Event()

    def on_b_change(change: ChangeSet) -> None:
        now = time.perf_counter()
        with lock:
            for rid in change.changed.get("patients", ()):
                if rid in committed and rid not in arrived:
                    arrived[rid] = now
            if len(arrived) == LATENCY_CHANGES:
                all_in.set()

    stop = threading.Event()
    b.ws.cache.add_listener(on_b_change)
    a.ws.cache.add_listener(a.engine.on_cache_change)
    threads = [
        threading.Thread(target=a.engine.run, args=(stop,), name="sync-a", daemon=True),
        threading.Thread(target=b.engine.run, args=(stop,), name="sync-b", daemon=True),
        # A short long-poll so that the hint thread ends soon after ``stop``; a hint still comes the
        # moment the feed moves, so the timeout does not change the latency.
        threading.Thread(target=b.engine.run_live_hint, args=(stop, 2.0), name="hint-b", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # both loops through their first cycle, B's long poll waiting
        ids = rng.sample(range(RECORDS), LATENCY_CHANGES)
        for n, i in enumerate(ids):
            time.sleep(rng.uniform(*LATENCY_GAP))
            rid = f"bench-p{i}"
            with a.ws.cache.unit_of_work(user="bench") as s:
                s.get(Patient, rid).name = f"Latency Probe{n}"
            with lock:
                committed[rid] = time.perf_counter()
        all_in.wait(LATENCY_TIMEOUT)
    finally:
        stop.set()
        a.engine.wake.set()
        b.engine.wake.set()
        a.ws.cache.remove_listener(a.engine.on_cache_change)
        b.ws.cache.remove_listener(on_b_change)
        for t in threads:
            t.join(timeout=30)
    with lock:
        return [arrived[r] - committed[r] for r in committed if r in arrived], len(committed) - len(arrived)


# --- one backend ------------------------------------------------------------------------------------------------


def _one(kind: str, label: str) -> list[Result]:
    with tempfile.TemporaryDirectory() as d, _database(kind, Path(d)) as url:
        if url is None:
            return [Result(f"sync, {label} hub", "skipped", note=f"no PostgreSQL at {PG_ADMIN!r}")]
        engine = open_database(url)
        add_user(engine, "coord", "Coordinator", Role.COORDINATOR, "pw-coord")
        engine.dispose()
        rng = random.Random(11)
        with _hub(url) as hub_url:
            a, b = _Station(Path(d) / "a", hub_url), _Station(Path(d) / "b", hub_url)
            try:
                _make_changes(a, rng)
                n = a.ws.cache.pending_outbox()
                sql = _SqlTimer(a.ws.cache.engine)
                a.client.http = 0.0
                started = time.perf_counter()
                pushed = a.engine.push_outbox()
                push_s = time.perf_counter() - started
                push_where = _breakdown(push_s, a.client, sql)
                sql.close()
                assert pushed == n == 2 * RECORDS, (pushed, n)

                sql = _SqlTimer(b.ws.cache.engine)
                b.client.http = 0.0
                started = time.perf_counter()
                pulled = b.engine.pull_feed()
                pull_s = time.perf_counter() - started
                pull_where = _breakdown(pull_s, b.client, sql)
                sql.close()
                assert pulled == 2 * RECORDS, pulled
                a.engine.pull_feed()  # A's own changes come back once: not part of the latency test

                latencies, lost = _latency(a, b, rng)
            finally:
                a.close()
                b.close()
    push_rate, pull_rate = pushed / push_s, pulled / pull_s
    med = statistics.median(latencies) if latencies else float("inf")
    p90 = statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 2 else med
    return [
        Result(f"sync push, {label} hub", f"{push_rate:,.0f} changes/s", f">= {GOAL_RATE:,}/s", push_rate >= GOAL_RATE,
               f"{pushed:,} changes in {push_s:.2f} s, batches of {a.engine.push_batch}: {push_where}"),
        Result(f"sync pull, {label} hub", f"{pull_rate:,.0f} changes/s", f">= {GOAL_RATE:,}/s", pull_rate >= GOAL_RATE,
               f"{pulled:,} changes in {pull_s:.2f} s, pages of {b.engine.pull_page}: {pull_where}"),
        Result(f"sync latency A->B, {label} hub", f"{med:.2f} s median", f"<= {GOAL_LATENCY:g} s",
               med <= GOAL_LATENCY and not lost,
               f"{len(latencies)} of {LATENCY_CHANGES} edits arrived; p90 {p90:.2f} s, max "
               f"{max(latencies, default=float('nan')):.2f} s" + (f"; {lost} never arrived" if lost else "")),
    ]  # fmt: skip


def run() -> list[Result]:
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())  # never the developer's keychain: a passphrase-wrapped key
    return _one("sqlite", "SQLite") + _one("postgresql", "PostgreSQL")
