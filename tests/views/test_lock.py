"""Locking: by button, by shortcut, by idle time; the lock screen shows no PHI; unlocking."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt

from app.security.roles import Role
from app.security.users import UserDirectory
from tests.views.conftest import assert_no_phi
from views.login_dialog import LoginMode


def search(qtbot, desk, text="MRN7", rows=5):
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, text)
    qtbot.waitUntil(lambda: page.proxy.rowCount() == rows, timeout=5000)
    return page


def assert_locked(desk):
    w = desk.window
    assert w.is_locked()
    assert not w.page_stack.isVisible()
    assert not w.workspace.isVisible()
    assert w.lock_screen.isVisible()
    assert_no_phi(w)
    page = w.page("patients")
    assert page.model.rowCount() == 0 and page.search_edit.text() == ""


def unlock(qtbot, desk, password):
    form = desk.window.lock_screen.form
    form.password_edit.clear()
    qtbot.keyClicks(form.password_edit, password)
    qtbot.keyClick(form.password_edit, Qt.Key.Key_Return)


def test_lock_button_hides_pages_and_phi(qtbot, make_desk):
    desk = make_desk()
    search(qtbot, desk)
    qtbot.mouseClick(desk.window.lock_button, Qt.MouseButton.LeftButton)
    assert_locked(desk)
    assert desk.window.lock_screen.form.mode is LoginMode.UNLOCK
    assert desk.window.lock_screen.form.username_edit.text() == "demo-coordinator"


def test_ctrl_l_locks(qtbot, make_desk):
    desk = make_desk()
    search(qtbot, desk)
    desk.window.activateWindow()
    qtbot.waitUntil(desk.window.isActiveWindow)
    qtbot.keyClick(desk.window.page("patients").search_edit, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert_locked(desk)


def test_idle_timeout_locks(qtbot, make_desk):
    desk = make_desk(idle_minutes=10)
    search(qtbot, desk)
    desk.clock.advance(9 * 60)
    qtbot.wait(60)
    assert not desk.window.is_locked()
    desk.clock.advance(61)
    qtbot.waitUntil(desk.window.is_locked, timeout=2000)
    assert_locked(desk)
    assert "without activity" in desk.window.lock_screen.reason_label.text()


def test_input_counts_as_activity(qtbot, make_desk):
    desk = make_desk(idle_minutes=10)
    page = desk.window.page("patients")
    desk.clock.advance(9 * 60)
    qtbot.keyClick(page.search_edit, Qt.Key.Key_X)  # the application-wide filter sees it
    desk.clock.advance(2 * 60)
    qtbot.wait(60)
    assert not desk.window.is_locked()


def test_wrong_password_is_refused_right_one_unlocks(qtbot, make_desk, demo_password, monkeypatch):
    desk = make_desk()
    threads = []
    original = UserDirectory.reverify

    def spy(self, session, password):
        threads.append(threading.current_thread())
        return original(self, session, password)

    monkeypatch.setattr(UserDirectory, "reverify", spy)
    search(qtbot, desk)
    desk.window.lock()
    form = desk.window.lock_screen.form

    unlock(qtbot, desk, "not-the-password")
    qtbot.waitUntil(lambda: form.error_label.isVisible(), timeout=5000)
    assert form.error_label.text() == "Wrong password."
    assert desk.window.is_locked() and form.password_edit.text() == ""
    assert_locked(desk)

    with qtbot.waitSignal(desk.window.unlocked, timeout=5000):
        unlock(qtbot, desk, demo_password)
    assert not desk.window.is_locked()
    assert desk.window.page_stack.isVisible() and desk.window.workspace.isVisible()
    assert not desk.window.lock_screen.isVisible()
    assert all(t is not threading.main_thread() for t in threads) and len(threads) == 2
    # The same session goes on; the page is empty until the next (audited) search.
    search(qtbot, desk, "Sample", rows=1)


def test_full_login_after_twelve_hours(qtbot, make_desk, demo_password):
    desk = make_desk(idle_minutes=15)
    old_session = desk.ctx.user
    for _ in range(12 * 4 + 1):  # keep busy all day: never idle, but the 12-hour limit comes
        desk.clock.advance(15 * 60 - 1)
        desk.idle.touch()
    qtbot.waitUntil(desk.window.is_locked, timeout=2000)
    assert_locked(desk)
    form = desk.window.lock_screen.form
    assert form.mode is LoginMode.RELOGIN
    assert "sign in again" in desk.window.lock_screen.reason_label.text()
    with qtbot.waitSignal(desk.window.unlocked, timeout=5000):
        unlock(qtbot, desk, demo_password)
    assert desk.ctx.user is not old_session and desk.ctx.user.username == old_session.username
    assert not desk.idle.full_login_due()


def test_locking_closes_dialogs(qtbot, make_desk):
    desk = make_desk(Role.CHARGE_NURSE)
    page = desk.window.page("patients")
    qtbot.mouseClick(page.emergency_button, Qt.MouseButton.LeftButton)
    from views.break_glass_dialog import BreakGlassDialog

    qtbot.waitUntil(lambda: page.findChild(BreakGlassDialog) is not None)
    desk.window.lock()
    dialog = page.findChild(BreakGlassDialog)
    assert dialog is None or not dialog.isVisible()


def test_sign_out_is_offered(qtbot, make_desk):
    desk = make_desk()
    desk.window.lock()
    with qtbot.waitSignal(desk.window.sign_out_requested, timeout=1000):
        qtbot.mouseClick(desk.window.lock_screen.sign_out_button, Qt.MouseButton.LeftButton)


def test_shortcuts_do_nothing_while_locked(qtbot, make_desk):
    desk = make_desk(Role.ADMINISTRATOR)
    desk.window.lock()
    desk.window.show_page_index(1)
    assert desk.window.current_page_name() == "patients"
    assert not desk.window.page_stack.isVisible()
