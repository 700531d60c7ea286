"""Audit review: the newest entries, break-glass highlighted, the chain check."""

from __future__ import annotations

from PySide6.QtCore import Qt
from sqlalchemy import text

from app.security.roles import Role
from services.emergency_access import start_break_glass
from views.audit_page import COL_ACTION, COL_BREAK_GLASS, COL_SEQ, BREAK_GLASS_BACKGROUND, AuditTableModel


def test_model_passes_qt_model_tester(qtmodeltester, desk_ws):
    desk_ws.audit.record(user="u", role="coordinator", action="patient.search", entity="patients", record_ids=["a"])
    desk_ws.audit.record(user="u", role="charge_nurse", action="x", entity="patients", break_glass=True)
    m = AuditTableModel()
    m.set_events(desk_ws.audit.entries(newest_first=True))
    qtmodeltester.check(m)
    assert m.data(m.index(0, COL_BREAK_GLASS)) == "YES"
    assert m.data(m.index(0, COL_SEQ), Qt.ItemDataRole.BackgroundRole).color() == BREAK_GLASS_BACKGROUND
    assert m.data(m.index(1, COL_BREAK_GLASS)) == ""
    assert m.data(m.index(1, COL_SEQ), Qt.ItemDataRole.BackgroundRole) is None


def test_entries_shown_and_flagged(qtbot, make_desk, desk_ws):
    desk = make_desk(Role.ADMINISTRATOR)
    nurse = desk.users.demo_session(Role.CHARGE_NURSE)
    from services.context import ServiceContext

    start_break_glass(ServiceContext(desk_ws.cache, desk_ws.audit, nurse), "Patient collapsed in the lobby", 5)
    desk.window.show_page("audit")
    page = desk.window.page("audit")
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5000)
    m = page.proxy
    assert m.data(m.index(0, COL_ACTION)) == "break-glass.start"
    assert m.data(m.index(0, COL_BREAK_GLASS)) == "YES"
    assert page.count_label.text() == "1 entry"
    page.table.selectRow(0)
    assert "EMERGENCY ACCESS" in page.detail_label.text()
    assert "Patient collapsed in the lobby" in page.detail_label.text()

    # Audit appends raise no change signal: Refresh shows new entries at the top.
    desk_ws.audit.record(user="u", role="coordinator", action="patient.search", entity="patients")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.model.rowCount() == 2, timeout=5000)
    assert m.data(m.index(0, COL_ACTION)) == "patient.search"
    assert page.count_label.text() == "2 entries"


def test_verify_chain(qtbot, make_desk, desk_ws):
    for i in range(3):
        desk_ws.audit.record(user="u", role="coordinator", action=f"a{i}", entity="patients")
    desk = make_desk(Role.ADMINISTRATOR)
    desk.window.show_page("audit")
    page = desk.window.page("audit")
    qtbot.mouseClick(page.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.verify_label.property("state") == "ok", timeout=5000)
    assert page.verify_label.text() == "Chain intact: 3 entries"

    with desk_ws.cache.unit_of_work(user="test", origin="system") as s:
        # The log is append-only in the database too: an attacker with the key drops the trigger.
        s.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        s.execute(text("UPDATE audit_log SET action = 'tampered' WHERE seq = 2"))
    qtbot.mouseClick(page.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.verify_label.property("state") == "bad", timeout=5000)
    assert page.verify_label.text().startswith("Chain broken at entry 2: entry 2 was altered.")


def test_refreshes_on_change_signal(qtbot, make_desk, desk_ws):
    desk = make_desk(Role.ADMINISTRATOR)
    desk.window.show_page("audit")
    page = desk.window.page("audit")
    qtbot.waitUntil(lambda: page.count_label.text() == "No entries yet.", timeout=5000)
    desk_ws.audit.record(user="u", role="coordinator", action="a", entity="patients")
    from tests.views.conftest import add_patients

    add_patients(desk_ws, [("Ivy Synthetic", "MRN700050", None, None)])  # raises records_changed
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5000)


def test_not_listed_without_the_permission(make_desk):
    assert "audit" not in make_desk(Role.COORDINATOR).window.page_names()
