"""The main window: navigation by role, keyboard, status bar, pending changes, plain text."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from app.cache.models import Patient
from app.security.roles import Role
from views.main_window import OFFLINE_TEXT


def test_pages_follow_the_role(make_desk):
    assert make_desk(Role.COORDINATOR).window.page_names() == ["referrals", "patients", "sync"]
    assert make_desk(Role.ANALYST).window.page_names() == ["referrals", "patients"]
    assert make_desk(Role.ADMINISTRATOR).window.page_names() == ["patients", "sync", "audit", "quarantine"]
    assert make_desk(Role.FOLLOWUP_NURSE).window.page_names() == ["patients"]


def test_ctrl_number_switches_page(qtbot, make_desk):
    desk = make_desk(Role.ADMINISTRATOR)
    w = desk.window
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    assert w.current_page_name() == "patients"
    qtbot.keyClick(w.navigation, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert w.current_page_name() == "audit"
    assert w.page_stack.currentWidget() is w.page("audit")
    assert w.windowTitle() == "CareOps Desk — Audit log"
    qtbot.keyClick(w.page("audit").table, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert w.current_page_name() == "patients"
    assert w.page("patients").search_edit.hasFocus()


def test_navigation_list_is_keyboard_driven(qtbot, make_desk):
    desk = make_desk(Role.ADMINISTRATOR)
    w = desk.window
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    w.navigation.setFocus()
    assert w.navigation.hasFocus()
    qtbot.keyClick(w.navigation, Qt.Key.Key_Down)
    assert w.current_page_name() == "sync"
    qtbot.keyClick(w.navigation, Qt.Key.Key_Up)
    assert w.current_page_name() == "patients"
    # Tab leaves the navigation for the page: the search box comes first.
    qtbot.keyClick(w.navigation, Qt.Key.Key_Tab)
    assert w.page("patients").search_edit.hasFocus()


def test_status_bar(qtbot, make_desk):
    desk = make_desk(Role.COORDINATOR)
    w = desk.window
    assert w.user_label.text() == "Casey Coordinator (demo) · Referral coordinator"
    assert w.sync_label.text() == OFFLINE_TEXT
    qtbot.waitUntil(lambda: w.pending_label.text() == "No pending changes", timeout=5000)
    assert w.lock_button.toolTip() == "Lock the workstation (Ctrl+L)"


def test_pending_changes_follow_local_commits(qtbot, make_desk, desk_ws):
    desk = make_desk()
    w = desk.window
    qtbot.waitUntil(lambda: w.pending_label.text() == "No pending changes", timeout=5000)
    calls = []
    original = desk_ws.cache.pending_outbox
    w._pending_changes = lambda: calls.append(1) or original()  # count refreshes: no polling
    qtbot.wait(100)
    assert calls == []
    with desk_ws.cache.unit_of_work(user="demo-coordinator", origin="local") as s:
        s.add(Patient(mrn="MRN700099", name="Frida Local"))
    qtbot.waitUntil(lambda: w.pending_label.text() == "1 pending change", timeout=5000)
    with desk_ws.cache.unit_of_work(user="demo-coordinator", origin="local") as s:
        s.add(Patient(mrn="MRN700098", name="Gus Local"))
        s.add(Patient(mrn="MRN700097", name="Hana Local"))
    qtbot.waitUntil(lambda: w.pending_label.text() == "3 pending changes", timeout=5000)
    assert len(calls) >= 2


def test_every_label_is_plain_text(qtbot, make_desk):
    desk = make_desk(Role.ADMINISTRATOR)
    w = desk.window
    w.show_page("audit")
    w.lock()
    labels = w.findChildren(QLabel)
    assert labels
    offenders = [lb.objectName() or lb.text() for lb in labels if lb.textFormat() != Qt.TextFormat.PlainText]
    # QFormLayout's own row labels ("&User name") are static text, not data.
    offenders = [o for o in offenders if o not in ("&User name", "&Password")]
    assert offenders == []


def test_build_main_window_from_the_composition_root(qtbot, desk_ws):
    from app.gui import build_main_window

    window = build_main_window(desk_ws, desk_ws.users.demo_session(Role.ADMINISTRATOR))
    qtbot.addWidget(window)
    assert window.page_names() == ["patients", "sync", "audit", "quarantine"]
    assert (window.width(), window.height()) == (1280, 800)
    window.shutdown()


STATIC_FORM_LABELS = {"&User name", "&Password", "&Passphrase", "&Repeat", "&Reason", "&Duration"}


def test_every_dialog_label_is_plain_text(qtbot, desk_ws):
    from views.break_glass_dialog import BreakGlassDialog
    from views.login_dialog import LoginDialog
    from views.passphrase_dialog import PassphraseDialog
    from views.workers import ImmediateExecutor, JobRunner

    runner = JobRunner(ImmediateExecutor())
    dialogs = [
        LoginDialog(desk_ws.users, runner, hint="<b>hint</b>"),
        PassphraseDialog(runner, lambda p: None, first_run=True, message="<i>message</i>"),
        BreakGlassDialog(),
    ]
    for dialog in dialogs:
        qtbot.addWidget(dialog)
        bad = [
            lb.text() for lb in dialog.findChildren(QLabel)
            if lb.textFormat() != Qt.TextFormat.PlainText and lb.text() not in STATIC_FORM_LABELS
        ]  # fmt: skip
        assert bad == [], type(dialog).__name__
