"""The central service itself fails during a sync: it restarts, or loses its PostgreSQL connections.

Either way the workstation sees the service unavailable for that request at worst (Transient, a
503), the service recovers by itself on the next request, and the engine finishes the job with
every change on the service exactly once and nothing lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from app.cache.models import Patient
from sync.engine import SyncState
from sync.hub import db
from sync.hub_client import Transient
from tests.sync.tcp_proxy import Fault
from tests.sync.test_faults import (
    PUSH,
    assert_exactly_once,
    content,
    expect_offline,
    hub_state,
    local_records,
    outbox_keys,
    proxy,  # noqa: F401 - fixture
    spy_push,
    wait_until,
)

N_CHANGES = 2000
BATCH = 100


def _create_patients(st, n: int, tag: str = "p") -> list[str]:
    with st.ws.cache.unit_of_work(user="demo-coordinator") as s:
        for i in range(n):
            s.add(Patient(id=f"{tag}-{i}", mrn=f"MRN{tag.upper()}{i:06d}", name=f"Person {tag} {i}"))
    return outbox_keys(st)


# --- the service restarted during a multi-batch push ------------------------------------------------


@pytest.mark.allow_log_warnings  # the service being stopped with a request in flight may log it
def test_service_restarted_during_multi_batch_push(hub_db, live_hub, proxy, make_station):  # noqa: F811
    """2,000 changes in batches of 100. The service stops twice and comes back on the same port:
    once while it is still receiving the 6th request (nothing of that batch applied), once after
    it applied the 13th but before its answer got out (the answer is lost). Each time the engine
    goes offline with nothing lost, and the sync after the restart carries on where it stopped."""
    st = make_station("s", proxy.url, push_batch=BATCH)
    keys = _create_patients(st, N_CHANGES)
    assert len(keys) == N_CHANGES
    answers = spy_push(st)

    def batch(n: int) -> list[str]:  # the keys of the n-th batch (1-based)
        return keys[(n - 1) * BATCH : n * BATCH]

    # 1. Stopped mid-request: the first 8 KiB of the 6th request (~35 KB) have reached it.
    proxy.inject(Fault.DROP, match=PUSH, skip=5, after_bytes=8 * 1024, on_fault=live_hub.stop)
    expect_offline(st)
    assert len(answers) == 5 and proxy.faults_done == 1
    assert outbox_keys(st, "pending") == keys[5 * BATCH :], "nothing unanswered is lost"
    assert set(hub_state(hub_db).keys) == set(keys[: 5 * BATCH]), "nothing of the cut request applied"
    expect_offline(st)  # the service is down: still offline, still nothing lost
    assert outbox_keys(st, "pending") == keys[5 * BATCH :]

    # 2. Back on the same port; stopped again after applying the 13th batch, before answering.
    live_hub.start()
    proxy.inject(Fault.RESET_AFTER_REPLY, match=PUSH, skip=7, on_fault=live_hub.stop)
    expect_offline(st)
    assert proxy.faults_done == 2 and [k for k, _ in answers[5]] == batch(6)
    assert len(answers) == 12 and all(s == "applied" for call in answers for _, s in call)
    assert set(hub_state(hub_db).keys) == set(keys[: 13 * BATCH]), "the 13th batch applied, unanswered"
    assert outbox_keys(st, "pending") == keys[12 * BATCH :]

    # 3. Back again: one sync finishes; the 13th batch is answered "duplicate", not applied twice.
    live_hub.start()
    report = st.engine.sync_once()
    assert st.engine.state is SyncState.ONLINE and report.pushed == N_CHANGES - 12 * BATCH
    assert answers[12] == [(k, "duplicate") for k in batch(13)]
    assert all(s == "applied" for call in answers[13:] for _, s in call) and len(answers) == 20
    hub = hub_state(hub_db)
    assert len(hub.changes) == N_CHANGES
    assert_exactly_once(hub, st, keys)
    assert st.client.health()["seq"] == max(hub.changes)


# --- PostgreSQL connections cut under the service ----------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class _Pg:
    """A separate PostgreSQL session of the test's own, in the service's database and schema."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(_libpq(url), autocommit=True)
        self.pid = self.conn.info.backend_pid

    def close(self) -> None:
        self.conn.close()

    def waiting(self, event: str) -> list[int]:
        """Backends of other sessions waiting on a lock of this kind (``advisory``, ``relation``)."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND wait_event_type = 'Lock' AND wait_event = %s",
            (event,),
        ).fetchall()
        return [r[0] for r in rows]

    def terminate_all(self, keep: int = 0) -> int:
        """Cut every other connection to the database (the service's pool, idle or busy) but
        ``keep``'s, and wait until they are gone. Returns how many were cut."""
        rows = self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            (keep,),
        ).fetchall()
        wait_until(lambda: self.others(keep) == 0, what="the cut connections to go")
        return len(rows)

    def others(self, keep: int = 0) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            (keep,),
        ).fetchone()[0]


@pytest.fixture
def pg_session(hub_db) -> Iterator[Callable[[], _Pg]]:
    """Opens the test's own PostgreSQL sessions; all are closed at the end, so a lock a failed
    test still holds can never block the tests after it."""
    opened: list[_Pg] = []

    def open_session() -> _Pg:
        opened.append(_Pg(hub_db))
        return opened[-1]

    yield open_session
    for p in opened:
        p.close()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, name="sync-under-test", daemon=True)
    t.start()
    return t, out


def _before_call(obj: Any, name: str, call_no: int, hook: Callable[[], None]) -> None:
    """Run ``hook`` (in the caller's thread) just before the ``call_no``-th call of obj.name."""
    real, calls = getattr(obj, name), [0]

    def wrapper(*a: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == call_no:
            hook()
        return real(*a, **kw)

    setattr(obj, name, wrapper)


def _cut_while_blocked(pg: _Pg, holder: _Pg, event: str, started: threading.Event) -> int:
    """Once the service's backend waits on the lock ``holder`` took, cut all the service's
    connections (the waiting one in the middle of its transaction); then end ``holder``'s session
    and its lock with it. Returns how many connections were cut."""
    assert started.wait(10), "the sync did not reach the request"
    wait_until(lambda: bool(pg.waiting(event)), what=f"the service's backend to wait on the {event} lock")
    cut = pg.terminate_all(keep=holder.pid)
    holder.close()
    return cut


@pytest.mark.allow_log_warnings  # the service logs the database error of the request that was cut
@pytest.mark.parametrize("hub_db", ["postgresql"], indirect=True)
def test_postgresql_connections_cut_during_sync(hub_db, live_hub, make_station, pg_session):
    pg = pg_session()
    a = make_station("a", live_hub.url, push_batch=20)
    b = make_station("b", live_hub.url, user="coord2", pull_page=20)
    keys = _create_patients(a, 40, "a")
    answers = spy_push(a)

    # 1. Between requests: every pooled connection of the service is cut while it is idle. The
    # next requests go through as if nothing happened (pool_pre_ping replaces them).
    a.engine.sync_once()  # A's 40 changes go up in 2 batches
    assert outbox_keys(a) == [] and pg.others() > 0
    pg.terminate_all()
    b.engine.sync_once()  # a whole sync on a pool of dead connections: no error
    assert b.engine.state is SyncState.ONLINE and len(local_records(b)) == 40
    assert_exactly_once(hub_state(hub_db), a, keys)

    # 2. During a push: the service's backend is cut in the middle of its transaction (waiting
    # for the appliers' advisory lock, which the test holds), in the 3rd batch of 3.
    more = _create_patients(a, 60, "c")  # the outbox holds only these now
    keys += more
    holder = pg_session()
    started = threading.Event()

    def take_advisory_lock() -> None:
        holder.conn.execute("SELECT pg_advisory_lock(%s)", (db.CHANGES_LOCK,))
        started.set()

    n_before = len(answers)
    _before_call(a.client, "push", 3, take_advisory_lock)
    worker, out = _in_thread(a.engine.sync_once)
    cut = _cut_while_blocked(pg, holder, "advisory", started)
    worker.join(15)
    assert not worker.is_alive()
    assert isinstance(out.get("error"), Transient) and "503" in str(out["error"]), out
    assert cut >= 1 and a.engine.state is SyncState.OFFLINE
    assert len(answers) == n_before + 2
    assert outbox_keys(a, "pending") == more[40:], "the batch that failed is still queued"
    hub = hub_state(hub_db)
    assert not set(more[40:]) & set(hub.keys), "the cut transaction applied nothing"
    a.engine.sync_once()  # recovers on the next request
    assert a.engine.state is SyncState.ONLINE
    assert all(s == "applied" for call in answers[n_before:] for _, s in call)
    assert_exactly_once(hub_state(hub_db), a, keys)

    # 3. During a pull: the service's backend is cut while reading the 3rd page of the feed (the
    # test holds an exclusive lock on the changes table, so the read waits).
    holder = pg_session()
    started = threading.Event()

    def lock_feed() -> None:
        holder.conn.autocommit = False
        holder.conn.execute("LOCK TABLE changes IN ACCESS EXCLUSIVE MODE")
        started.set()

    _before_call(b.client, "pull", 3, lock_feed)
    cursor = b.engine.cursor()
    worker, out = _in_thread(b.engine.sync_once)
    assert _cut_while_blocked(pg, holder, "relation", started) >= 1
    worker.join(15)
    assert not worker.is_alive()
    assert isinstance(out.get("error"), Transient) and "503" in str(out["error"]), out
    assert b.engine.state is SyncState.OFFLINE
    new = sorted(seq for seq in hub_state(hub_db).changes if seq > cursor)
    assert len(new) == 60 and b.engine.cursor() == new[39], "the two pages before the cut are kept"
    b.engine.sync_once()
    hub = hub_state(hub_db)
    assert b.engine.state is SyncState.ONLINE and b.engine.cursor() == max(hub.changes)
    ra, rb = local_records(a), local_records(b)
    assert len(rb) == 100 and {k: content(v) for k, v in rb.items()} == {k: content(v) for k, v in ra.items()}
