"""The hash-chained audit log, through the service layer and the `careops audit` commands."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from app.cache.models import Patient
from app.cli import main
from app.errors import AccessDenied, AuditUnavailable
from app.security.roles import Role
from services.context import ServiceContext
from services.emergency_access import start_break_glass
from services.patients import PatientService


def _ctx(ws, role=Role.COORDINATOR):
    ws.users.ensure_demo_users()
    return ServiceContext(ws.cache, ws.audit, ws.users.demo_session(role))


def _seed(ws, n=3):
    with ws.cache.unit_of_work(user="t", origin="sync") as s:
        for i in range(n):
            s.add(Patient(id=f"p{i}", mrn=f"MRN{i:07d}", name=f"Auditson Number{i}"))


def _tamper(ws, sql: str):
    with ws.cache.unit_of_work(user="attacker", origin="x") as s:
        s.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        s.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        s.execute(text(sql))


def _fill(ws, n=6):
    for i in range(n):
        ws.audit.record(user="u", role="coordinator", action="patient.read", entity="patients", record_ids=[f"p{i}"])


def test_reads_are_audited_with_who_what_which_and_where(ws):
    _seed(ws)
    found = PatientService(_ctx(ws)).search("Auditson")
    assert len(found) == 3
    (entry,) = ws.audit.entries()
    assert (entry.user, entry.role, entry.action) == ("demo-coordinator", "coordinator", "patient.search")
    assert set(entry.record_ids) == {"p0", "p1", "p2"} and entry.workstation == ws.workstation_id
    assert "Auditson" not in json.dumps(entry.__dict__)


def test_no_audit_no_access(ws, monkeypatch):
    _seed(ws)
    svc = PatientService(_ctx(ws))

    def broken(*a, **k):
        raise AuditUnavailable("The audit log could not be written.")

    monkeypatch.setattr(ws.audit, "record", broken)
    with pytest.raises(AuditUnavailable):
        svc.search("Auditson")


def test_role_without_permission_is_refused_then_break_glass_is_flagged(ws):
    _seed(ws)
    ctx = _ctx(ws, Role.SUPPLY_MANAGER)
    with pytest.raises(AccessDenied):
        PatientService(ctx).search("Auditson")
    start_break_glass(ctx, "Patient collapsed in the supply corridor", 15)
    assert len(PatientService(ctx).search("Auditson")) == 3
    entries = ws.audit.entries()
    assert [e.action for e in entries] == ["break-glass.start", "patient.search"]
    assert all(e.break_glass for e in entries)
    assert "collapsed" in entries[1].detail


def test_break_glass_expires(ws):
    _seed(ws)
    now = [1000.0]
    ws.users.ensure_demo_users()
    session = ws.users.demo_session(Role.ANALYST)
    session.clock = lambda: now[0]
    ctx = ServiceContext(ws.cache, ws.audit, session)
    start_break_glass(ctx, "Rapid response, need identity", 5)
    PatientService(ctx).search("Auditson")
    now[0] += 5 * 60 + 1
    with pytest.raises(AccessDenied):
        PatientService(ctx).search("Auditson")


def test_append_only_in_the_database(ws):
    _fill(ws, 2)
    with pytest.raises(Exception, match="append-only"):
        with ws.cache.unit_of_work(user="x", origin="x") as s:
            s.execute(text("DELETE FROM audit_log WHERE seq = 1"))


@pytest.mark.parametrize(
    ("sql", "bad", "problem"),
    [
        ("UPDATE audit_log SET user = 'someone-else' WHERE seq = 4", 4, "altered"),
        ("UPDATE audit_log SET record_ids = '[\"p9\"]' WHERE seq = 2", 2, "altered"),
        ("DELETE FROM audit_log WHERE seq = 3", 3, "missing"),
        ("UPDATE audit_log SET seq = seq + 100 WHERE seq IN (3, 4); "
         "UPDATE audit_log SET seq = 7 WHERE seq = 103", 3, "missing"),
    ],
)
def test_verify_names_first_bad_entry(ws, capsys, sql, bad, problem):
    _fill(ws)
    for stmt in sql.split("; "):
        _tamper(ws, stmt)
    result = ws.audit.verify()
    assert not result.ok and result.first_bad_seq == bad and problem in result.problem
    ws.close()
    assert main(["audit", "verify"]) == 1
    assert f"entry {bad}" in capsys.readouterr().err


def test_reordered_entries_are_caught(ws):
    _fill(ws)
    # swap the content of entries 2 and 3 while keeping sequence numbers
    _tamper(ws, "UPDATE audit_log SET seq = 100 WHERE seq = 2")
    _tamper(ws, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _tamper(ws, "UPDATE audit_log SET seq = 3 WHERE seq = 100")
    result = ws.audit.verify()
    assert not result.ok and result.first_bad_seq == 2


def test_truncated_tail_caught_against_anchor(ws):
    _fill(ws)
    head = ws.audit.entries()[-1]
    ws.cache.set_meta("audit_anchor", f"{head.seq}:{head.hash}")
    _tamper(ws, "DELETE FROM audit_log WHERE seq >= 5")
    result = ws.audit.verify()
    assert not result.ok and result.first_bad_seq == 5 and "removed" in result.problem


def test_intact_chain_verifies_via_cli(ws, capsys):
    _fill(ws)
    ws.close()
    assert main(["audit", "verify"]) == 0
    assert "intact: 6 entries" in capsys.readouterr().out


def test_export_csv_and_json_since(ws, capsys, tmp_path):
    _fill(ws, 3)
    ws.close()
    assert main(["audit", "export", "--format", "csv", "--since", "2000-01-01"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["seq"] for r in rows] == ["1", "2", "3"] and rows[0]["record_ids"] == "p0"
    out = tmp_path / "a.json"
    assert main(["audit", "export", "--format", "json", "--since", "2999-01-01", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == []
    assert main(["audit", "export", "--since", "yesterday"]) == 2
