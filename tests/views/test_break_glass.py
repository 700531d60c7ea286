"""A role without patient access: refused, then emergency access with a reason, audited as such."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.security.roles import Role
from tests.views.conftest import HTML_NAME
from views.break_glass_dialog import BreakGlassDialog


def open_dialog(qtbot, page) -> BreakGlassDialog:
    qtbot.mouseClick(page.emergency_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.findChild(BreakGlassDialog) is not None and page.findChild(BreakGlassDialog).isVisible())
    return page.findChild(BreakGlassDialog)


def test_access_denied_then_break_glass(qtbot, make_desk):
    desk = make_desk(Role.CHARGE_NURSE)
    window = desk.window
    assert window.page_names() == ["patients"]  # listed for everyone, for emergency access
    page = window.page("patients")
    assert page.emergency_button.isVisible()
    before = desk.ws.audit.count()

    qtbot.keyClicks(page.search_edit, "Test")
    qtbot.waitUntil(lambda: page.message.isVisible(), timeout=5000)
    assert "The Charge nurse role may not do this (patient.read)." in page.message.text()
    assert "emergency access" in page.message.text()
    assert page.proxy.rowCount() == 0
    assert desk.ws.audit.count() == before  # nothing was shown, nothing was read

    dialog = open_dialog(qtbot, page)
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.reason_edit, "short")
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.reason_edit, " - unconscious patient in ED, <i>no</i> ID")
    dialog.set_minutes(15)
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: page.proxy.rowCount() == 3, timeout=5000)
    assert window.banner.isVisible()
    assert window.banner.textFormat() == Qt.TextFormat.PlainText
    assert "<i>no</i>" in window.banner.text() and "15 min left" in window.banner.text()
    assert not page.emergency_button.isEnabled()

    entries = desk.ws.audit.entries(newest_first=True, limit=2)
    search, start = entries
    assert start.action == "break-glass.start" and start.break_glass
    assert "unconscious patient" in start.detail
    assert search.action == "patient.search" and search.break_glass
    assert search.detail.startswith("break-glass:")
    assert len(search.record_ids) == 3


def test_grant_runs_out(qtbot, make_desk):
    desk = make_desk(Role.SUPPLY_MANAGER)
    page = desk.window.page("patients")
    dialog = open_dialog(qtbot, page)
    qtbot.keyClicks(dialog.reason_edit, "Mass casualty drill, identifying a patient")
    dialog.set_minutes(1)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: desk.window.banner.isVisible(), timeout=5000)
    qtbot.keyClicks(page.search_edit, "Bold")
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1, timeout=5000)
    assert page.proxy.data(page.proxy.index(0, 0)) == HTML_NAME

    desk.idle.touch()
    desk.clock.advance(61)  # the grant ends; the idle lock (10 min) does not
    qtbot.waitUntil(lambda: not desk.window.banner.isVisible(), timeout=5000)
    assert not desk.window.is_locked()
    assert page.proxy.rowCount() == 0  # what the grant allowed goes away with it
    assert page.emergency_button.isEnabled()
    assert page.message.text() == "Emergency access has ended."


def test_cancel_grants_nothing(qtbot, make_desk):
    desk = make_desk(Role.ANALYST)
    page = desk.window.page("patients")
    before = desk.ws.audit.count()
    dialog = open_dialog(qtbot, page)
    qtbot.keyClicks(dialog.reason_edit, "I would like to look around")
    dialog.reject()
    qtbot.wait(50)
    assert desk.ctx.user.grants == []
    assert desk.ws.audit.count() == before
    assert not desk.window.banner.isVisible()


def test_coordinator_has_no_emergency_button(make_desk):
    desk = make_desk(Role.COORDINATOR)
    assert not desk.window.page("patients").emergency_button.isVisible()
