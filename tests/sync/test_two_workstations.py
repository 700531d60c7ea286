"""Two workstations, one central service: offline edits converge; conflicts are kept, never lost."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.cache.models import OutboxEntry, Patient, Referral, SyncConflict
from app.security.roles import Role
from services.context import ServiceContext
from services.sync_conflicts import SyncConflictService


def _referral_state(st, rid):
    with st.ws.cache.reader() as s:
        r = s.get(Referral, rid)
        return {k: v for k, v in r.to_payload().items() if k not in ("updated_at", "source")}


def _seed(a):
    with a.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.add(Patient(id="pat-1", mrn="MRN0000101", name="Synthia Example", birth_date=dt.date(1980, 5, 6)))
        s.add(Referral(id="ref-1", patient_id="pat-1", specialty="Cardiology", urgency="routine", status="new"))


def test_offline_edits_converge_and_conflicts_are_kept(live_hub, make_station):
    a, b = make_station("a", live_hub.url), make_station("b", live_hub.url)
    _seed(a)
    a.engine.sync_once()
    b.engine.sync_once()
    assert _referral_state(a, "ref-1") == _referral_state(b, "ref-1")

    # Both offline: different fields on each side merge.
    with a.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.get(Referral, "ref-1").status = "triage"
    with b.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.get(Referral, "ref-1").owner = "demo-coordinator"
    a.engine.sync_once()
    report = b.engine.sync_once()
    assert report.conflicts == 0
    a.engine.sync_once()
    b.engine.sync_once()
    sa, sb = _referral_state(a, "ref-1"), _referral_state(b, "ref-1")
    assert sa == sb and sa["status"] == "triage" and sa["owner"] == "demo-coordinator"

    # Same field on both sides: the second is a conflict, kept with both values, nothing overwritten.
    with a.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.get(Referral, "ref-1").urgency = "urgent"
    with b.ws.cache.unit_of_work(user="demo-coordinator") as s:
        s.get(Referral, "ref-1").urgency = "emergent"
    a.engine.sync_once()
    report = b.engine.sync_once()
    assert report.conflicts == 1
    assert _referral_state(b, "ref-1")["urgency"] == "emergent"  # B's work is still there
    assert b.engine.status().conflicts == 1
    ctx = ServiceContext(b.ws.cache, b.ws.audit, b.ws.users.demo_session(Role.COORDINATOR))
    (conflict,) = SyncConflictService(ctx).open_conflicts()
    assert conflict.fields == ("urgency",)
    assert conflict.mine == {"urgency": "emergent"} and conflict.theirs == {"urgency": "urgent"}

    # B's coordinator keeps hers; both converge on it.
    SyncConflictService(ctx).resolve(conflict.id, "mine")
    b.engine.sync_once()
    a.engine.sync_once()
    sa, sb = _referral_state(a, "ref-1"), _referral_state(b, "ref-1")
    assert sa == sb and sa["urgency"] == "emergent" and sa["status"] == "triage"
    for st in (a, b):
        with st.ws.cache.reader() as s:
            assert s.scalars(select(OutboxEntry)).all() == []
    assert [e.action for e in b.ws.audit.entries()][-1] == "sync.resolve.mine"


def test_resolve_theirs_and_edit(live_hub, make_station):
    a, b = make_station("a", live_hub.url), make_station("b", live_hub.url)
    _seed(a)
    a.engine.sync_once()
    b.engine.sync_once()
    ctx = ServiceContext(b.ws.cache, b.ws.audit, b.ws.users.demo_session(Role.COORDINATOR))
    svc = SyncConflictService(ctx)
    for choice, a_val, b_val, expect in (("theirs", "Neurology", "Oncology", "Neurology"),
                                         ("edit", "Urology", "Nephrology", "Urology/Nephrology")):  # fmt: skip
        with a.ws.cache.unit_of_work(user="u") as s:
            s.get(Referral, "ref-1").specialty = a_val
        with b.ws.cache.unit_of_work(user="u") as s:
            s.get(Referral, "ref-1").specialty = b_val
        a.engine.sync_once()
        assert b.engine.sync_once().conflicts == 1
        (c,) = svc.open_conflicts()
        svc.resolve(c.id, choice, {"specialty": expect} if choice == "edit" else None)
        b.engine.sync_once()
        a.engine.sync_once()
        assert _referral_state(a, "ref-1") == _referral_state(b, "ref-1")
        assert _referral_state(a, "ref-1")["specialty"] == expect
    with b.ws.cache.reader() as s:
        assert all(c.resolved_at for c in s.scalars(select(SyncConflict)))


def test_create_offline_on_both_then_converge(live_hub, make_station):
    a, b = make_station("a", live_hub.url), make_station("b", live_hub.url)
    with a.ws.cache.unit_of_work(user="u") as s:
        for i in range(30):
            s.add(Patient(id=f"a-{i}", mrn=f"MRNA{i:06d}", name=f"Alpha Person{i}"))
    with b.ws.cache.unit_of_work(user="u") as s:
        for i in range(30):
            s.add(Patient(id=f"b-{i}", mrn=f"MRNB{i:06d}", name=f"Beta Person{i}"))
    a.engine.sync_once()
    b.engine.sync_once()
    a.engine.sync_once()
    for st in (a, b):
        with st.ws.cache.reader() as s:
            assert len(s.scalars(select(Patient.id)).all()) == 60
        assert st.engine.status().pending == 0


def test_role_refusal_is_kept_as_failed_and_can_be_retried(live_hub, make_station):
    st = make_station("s", live_hub.url, user="supply")
    _seed(st)
    report = st.engine.sync_once()
    assert report.rejected == 2 and st.engine.state == "degraded"
    ctx = ServiceContext(st.ws.cache, st.ws.audit, st.ws.users.demo_session(Role.COORDINATOR))
    failed = SyncConflictService(ctx).failed_changes()
    assert [f.entity for f in failed] == ["patients", "referrals"]
    assert all(f.reason for f in failed)
