"""Network faults between a workstation and the central service: nothing lost, nothing applied twice.

Every workstation here talks to the live service (SQLite and PostgreSQL, see ``hub_db``) through
``FaultProxy`` (tests/sync/tcp_proxy.py), which fails one chosen request in one of four ways:
the network goes away (connections refused), the request is cut short, the request stalls until
the client's timeout, or the service answers and the answer is lost. For each, during a push and
during a pull, the engine must raise Transient and go offline; once the fault clears, one
``sync_once`` must finish the job, with every local change on the service exactly once (one
``changes`` row per idempotency key, and the records holding the data the workstation wrote),
nothing lost locally (outbox empty, records present) and, where the answer was lost after the
service applied the batch, the retry answered "duplicate".
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from app.cache.models import AuditEntry, OutboxEntry, Patient, Referral, SyncConflict
from sync.engine import SyncState
from sync.hub import db
from sync.hub_client import Transient
from tests.sync.conftest import LiveHub, Station
from tests.sync.tcp_proxy import Fault, FaultProxy

TIMEOUT = 1.0  # the stations' HTTP timeout: a stall costs this much
BOOKKEEPING = {"id", "source", "remote_version", "dirty", "updated_at"}
PUSH = "POST /v1/changes "
PULL = "GET /v1/changes?"
AUDIT = "POST /v1/audit "
OFFLINE = "offline"  # not a proxy Fault: the network goes away at the chosen request
MODES = [OFFLINE, Fault.DROP, Fault.STALL, Fault.RESET_AFTER_REPLY]


# --- helpers shared with test_service_recovery ---------------------------------------------------


@pytest.fixture
def proxy(live_hub: LiveHub) -> Iterator[FaultProxy]:
    with FaultProxy(live_hub.port, stall_limit=10 * TIMEOUT) as p:
        yield p
    assert not p.errors, p.errors


def arm(proxy: FaultProxy, mode: str, match: str, *, skip: int = 0, after_bytes: int = 0, **kw: Any) -> None:
    """Fault the (skip+1)-th request whose line starts with ``match``."""
    if mode == OFFLINE:
        # The network drops just as that request goes out: it and every later connection fail.
        proxy.inject(Fault.DROP, match=match, skip=skip, on_fault=lambda: proxy.offline(refuse=True), **kw)
    else:
        proxy.inject(Fault(mode), match=match, skip=skip, after_bytes=after_bytes, **kw)


@dataclass(frozen=True)
class HubState:
    changes: dict[int, tuple[str, str, str, int, str]]  # seq -> (entity, entity_id, op, version, workstation)
    keys: dict[str, tuple[str, dict[str, Any]]]  # idempotency key -> (workstation, stored result)
    records: dict[tuple[str, str], tuple[int, bool, dict[str, Any]]]  # -> (version, deleted, data)
    audit: dict[str, int]  # workstation -> highest audit seq held
    audit_rows: dict[str, int]  # workstation -> number of audit rows held


def hub_state(db_url: str) -> HubState:
    """Read the service's database directly (not through the API under test)."""
    engine = db.create_engine(db_url)
    try:
        with engine.connect() as conn:
            c, i, r, a = db.changes.c, db.idempotency.c, db.records.c, db.audit_entries.c
            changes = {
                row.seq: (row.entity, row.entity_id, row.op, row.version, row.workstation)
                for row in conn.execute(select(c.seq, c.entity, c.entity_id, c.op, c.version, c.workstation))
            }
            keys = {row.key: (row.workstation, row.result) for row in conn.execute(select(i.key, i.workstation, i.result))}
            records = {
                (row.entity, row.entity_id): (row.version, row.deleted, row.data)
                for row in conn.execute(select(r.entity, r.entity_id, r.version, r.deleted, r.data))
            }
            audit: dict[str, int] = {}
            rows: dict[str, int] = {}
            for row in conn.execute(select(a.workstation, a.seq)):
                audit[row.workstation] = max(audit.get(row.workstation, 0), row.seq)
                rows[row.workstation] = rows.get(row.workstation, 0) + 1
    finally:
        engine.dispose()
    return HubState(changes, keys, records, audit, rows)


def outbox_keys(st: Station, status: str | None = None) -> list[str]:
    with st.ws.cache.reader() as s:
        q = select(OutboxEntry.idempotency_key).order_by(OutboxEntry.seq)
        if status:
            q = q.where(OutboxEntry.status == status)
        return list(s.scalars(q))


def local_records(st: Station, models: tuple[type, ...] = (Patient, Referral)) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    with st.ws.cache.reader() as s:
        for model in models:
            for rec in s.scalars(select(model)):
                out[(model.__tablename__, rec.id)] = rec.to_payload() | {"dirty": rec.dirty}
    return out


def content(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in BOOKKEEPING}


def assert_exactly_once(hub: HubState, st: Station, keys: list[str]) -> None:
    """Every key the workstation sent is stored once, as applied, with its own change row; the
    workstation has no other change rows; nothing is left in its outbox; the service's records
    hold what the workstation holds."""
    ws = st.ws.workstation_id
    mine = {k: v for k, v in hub.keys.items() if v[0] == ws}
    assert set(mine) == set(keys), "every change on the service, and no other"
    seqs = [result["seq"] for _ws, result in mine.values()]
    assert all(result["status"] == "applied" for _ws, result in mine.values())
    assert None not in seqs and len(set(seqs)) == len(keys), "one change row per idempotency key"
    assert {seq for seq, row in hub.changes.items() if row[4] == ws} == set(seqs), "no change row twice"
    assert outbox_keys(st) == [], "outbox drained"
    for (entity, rid), local in local_records(st).items():
        version, deleted, data = hub.records[(entity, rid)]
        assert not deleted and content(data) == content(local), f"{entity}/{rid} differs"
        assert local["remote_version"] == str(version) and local["dirty"] is False


def make_changes(st: Station, tag: str, n: int = 20, edits: int = 5) -> list[str]:
    """``n`` new patients, then ``edits`` of them renamed (a second outbox entry for the same
    record, pushed only after the first one's version is known). Returns the outbox keys."""
    with st.ws.cache.unit_of_work(user="demo-coordinator") as s:
        for i in range(n):
            s.add(Patient(id=f"{tag}-{i}", mrn=f"MRN{tag.upper()}{i:05d}", name=f"Person {tag} {i}",
                          birth_date=dt.date(1970 + i % 30, 1 + i % 12, 1 + i % 28)))  # fmt: skip
    with st.ws.cache.unit_of_work(user="demo-coordinator") as s:
        for i in range(edits):
            s.get(Patient, f"{tag}-{i}").name = f"Renamed {tag} {i}"
    st.ws.audit.record(user="demo-coordinator", role="coordinator", action="patient.create", entity="patients",
                       record_ids=[f"{tag}-{i}" for i in range(n)])  # fmt: skip
    return outbox_keys(st)


def spy_push(st: Station) -> list[list[tuple[str, str]]]:
    """Record (key, status) of every push answer the client receives."""
    calls: list[list[tuple[str, str]]] = []
    real = st.client.push

    def push(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = real(changes)
        calls.append([(r["idempotency_key"], r["status"]) for r in results])
        return results

    st.client.push = push  # type: ignore[method-assign]
    return calls


def expect_offline(st: Station) -> None:
    with pytest.raises(Transient):
        st.engine.sync_once()
    assert st.engine.state is SyncState.OFFLINE and "unreachable" in st.engine.last_error


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --- one fault mode, during a push and during a pull ------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_fault_during_push_and_pull(mode, hub_db, proxy, make_station):
    a = make_station("a", proxy.url, timeout=TIMEOUT, push_batch=10)
    b = make_station("b", proxy.url, user="coord2", timeout=TIMEOUT, pull_page=10)
    keys = make_changes(a, "a")  # 25 entries: batches of 10 creates, 10 creates, 5 renames
    assert len(keys) == 25
    answers = spy_push(a)

    # -- push: the second batch fails ------------------------------------------------------------
    arm(proxy, mode, PUSH, skip=1, after_bytes=700)  # 700 bytes: past the head, inside the body
    expect_offline(a)
    assert proxy.faults_done == 1
    hub = hub_state(hub_db)
    first, second = keys[:10], keys[10:20]
    assert [k for k, _ in answers[0]] == first and len(answers) == 1
    # Nothing lost locally: what the service did not answer is still pending, records untouched.
    assert outbox_keys(a, "pending") == keys[10:]
    assert len(local_records(a)) == 20
    if mode == Fault.RESET_AFTER_REPLY:
        # The service applied the second batch; the workstation never heard.
        assert set(hub.keys) == set(first + second)
    else:
        # Cut short, stalled or never sent: the service applied nothing of it.
        assert set(hub.keys) == set(first)
    if mode == OFFLINE:
        expect_offline(a)  # still offline: connections refused
        proxy.offline(refuse=False)
        expect_offline(a)  # or accepted and reset at once
        assert proxy.refused >= 1 and proxy.faults_done == 1
        assert outbox_keys(a, "pending") == keys[10:]

    proxy.clear()
    report = a.engine.sync_once()
    assert a.engine.state is SyncState.ONLINE and report.pushed == 15
    retry = answers[1]
    assert [k for k, _ in retry] == second
    expected = "duplicate" if mode == Fault.RESET_AFTER_REPLY else "applied"
    assert {status for _, status in retry} == {expected}, "a lost answer is answered again, not applied twice"
    assert {status for _, status in answers[2]} == {"applied"}
    assert_exactly_once(hub_state(hub_db), a, keys)

    # -- pull: the second page fails -------------------------------------------------------------
    arm(proxy, mode, PULL, skip=1, after_bytes=20)  # 20 bytes: inside the request line
    expect_offline(b)
    assert proxy.faults_done == 2
    first_page = sorted(hub_state(hub_db).changes)[9]
    assert b.engine.cursor() == first_page, "the first page is kept with its cursor"
    assert len(local_records(b)) == 10
    proxy.clear()
    b.engine.sync_once()
    assert b.engine.state is SyncState.ONLINE
    hub = hub_state(hub_db)
    assert b.engine.cursor() == max(hub.changes)
    mine_a, mine_b = local_records(a), local_records(b)
    assert {k: content(v) for k, v in mine_b.items()} == {k: content(v) for k, v in mine_a.items()}
    assert all(v["remote_version"] == str(hub.records[k][0]) for k, v in mine_b.items())
    assert outbox_keys(b) == []

    # The audit chains went up too, each entry once.
    a.engine.sync_once()
    hub = hub_state(hub_db)
    for st in (a, b):
        assert hub.audit_rows.get(st.ws.workstation_id, 0) == hub.audit.get(st.ws.workstation_id, 0) == st.ws.audit.count()


# --- two workstations editing through the faulty link converge ----------------------------------------


def _edit(st: Station, tag: str, rnd: int, shared_field: str) -> None:
    with st.ws.cache.unit_of_work(user="demo-coordinator") as s:
        for i in range(3):
            s.add(Patient(id=f"{tag}{rnd}-{i}", mrn=f"MRN{tag.upper()}{rnd}{i:04d}", name=f"Person {tag}{rnd} {i}"))
        s.get(Patient, f"{tag}0-0").phone = f"555-{rnd:04d}"  # own record, edited every round
        ref = s.get(Referral, "ref-shared")
        setattr(ref, shared_field, f"{shared_field}-{tag}-{rnd}")  # shared record, disjoint fields
    st.ws.audit.record(user="demo-coordinator", role="coordinator", action="referral.edit", entity="referrals",
                       record_ids=["ref-shared"])  # fmt: skip


def _sync(st: Station, proxy: FaultProxy, attempts: int = 4) -> int:
    """Sync until it succeeds (the fault clears after the first failure, like a network that comes back)."""
    failures = 0
    for _ in range(attempts):
        try:
            st.engine.sync_once()
            return failures
        except Transient:
            failures += 1
            proxy.clear()
    raise AssertionError("sync did not recover")


# (station, fault, request, skip): every fault mode, on push, pull and audit, on both stations.
SCHEDULE = [
    [("a", Fault.RESET_AFTER_REPLY, PUSH, 0), ("b", Fault.DROP, PULL, 0)],
    [("a", Fault.DROP, PUSH, 0), ("b", Fault.RESET_AFTER_REPLY, PULL, 1)],
    [("a", OFFLINE, PULL, 0), ("b", Fault.RESET_AFTER_REPLY, AUDIT, 0)],
    [("a", Fault.RESET_AFTER_REPLY, AUDIT, 0), ("b", Fault.STALL, PUSH, 0)],
    [("a", Fault.RESET_AFTER_REPLY, PULL, 0), ("b", Fault.RESET_AFTER_REPLY, PUSH, 0)],
]


def test_two_workstations_converge_through_faults(hub_db, proxy, make_station):
    a = make_station("a", proxy.url, timeout=TIMEOUT, push_batch=4, pull_page=5)
    b = make_station("b", proxy.url, user="coord2", timeout=TIMEOUT, push_batch=4, pull_page=5)
    stations = {"a": a, "b": b}
    with a.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.add(Patient(id="pat-shared", mrn="MRN0000001", name="Shared Patient"))
        s.add(Referral(id="ref-shared", patient_id="pat-shared", specialty="Cardiology", urgency="routine", status="new"))
        s.add(Patient(id="a0-0", mrn="MRNA0", name="Alpha Zero"))
    with b.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.add(Patient(id="b0-0", mrn="MRNB0", name="Beta Zero"))
    sent: dict[str, list[str]] = {"a": outbox_keys(a), "b": outbox_keys(b)}
    a.engine.sync_once()
    b.engine.sync_once()
    a.engine.sync_once()

    failures = 0
    for rnd, faults in enumerate(SCHEDULE, start=1):
        _edit(a, "a", rnd, "status")
        _edit(b, "b", rnd, "owner")
        for name in ("a", "b"):
            sent[name] += [k for k in outbox_keys(stations[name]) if k not in sent[name]]
        for name, mode, request, skip in faults:
            arm(proxy, mode, request, skip=skip, after_bytes=300)
            failures += _sync(stations[name], proxy)
            proxy.clear()
    assert failures == proxy.faults_done == sum(len(f) for f in SCHEDULE), "every fault hit a sync and was overcome"

    # Quiet network: one more round each and both are on the service's state.
    b.engine.sync_once()
    a.engine.sync_once()
    hub = hub_state(hub_db)
    for name, st in stations.items():
        assert_exactly_once(hub, st, sent[name])
        assert st.engine.status().conflicts == 0 and st.engine.cursor() == max(hub.changes)
        assert hub.audit_rows[st.ws.workstation_id] == st.ws.audit.count()
        with st.ws.cache.reader() as s:
            assert s.scalar(select(AuditEntry).where(AuditEntry.synced.is_(False))) is None
            assert s.scalars(select(SyncConflict)).all() == []
    ra, rb = local_records(a), local_records(b)
    assert {k: content(v) for k, v in ra.items()} == {k: content(v) for k, v in rb.items()}
    assert len(ra) == 2 + 2 + 3 * 2 * len(SCHEDULE)
    shared = ra[("referrals", "ref-shared")]
    last = len(SCHEDULE)
    assert shared["status"] == f"status-a-{last}" and shared["owner"] == f"owner-b-{last}"
    assert ra[("patients", "a0-0")]["phone"] == ra[("patients", "b0-0")]["phone"] == f"555-{last:04d}"
