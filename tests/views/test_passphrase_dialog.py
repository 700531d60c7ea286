"""The passphrase dialog: choose and confirm on first run, retry after a wrong one."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from app.errors import WrongPassphrase
from app.workstation import open_workstation
from views.passphrase_dialog import PassphraseDialog
from views.workers import JobRunner


def test_first_run_needs_matching_passphrases(qtbot, tmp_path):
    runner = JobRunner()
    threads = []

    def opener(passphrase):
        threads.append(threading.current_thread())
        return open_workstation(tmp_path / "home", passphrase=passphrase)

    dialog = PassphraseDialog(runner, opener, first_run=True)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.passphrase_edit, "short")
    qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    assert dialog.error_label.text() == "Use at least 8 characters."
    dialog.passphrase_edit.setText("a long passphrase")
    dialog.confirm_edit.setText("a long passphrase?")
    qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    assert "differ" in dialog.error_label.text()
    assert threads == []
    dialog.confirm_edit.setText("a long passphrase")
    with qtbot.waitSignal(dialog.accepted, timeout=10000):
        qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    ws = dialog.opened
    assert ws is not None and (tmp_path / "home" / "cache.key").exists()
    assert threads[0] is not threading.main_thread()
    ws.close()
    runner.shutdown()


def test_wrong_passphrase_is_shown_and_can_be_retried(qtbot):
    runner = JobRunner()
    tries = []

    def opener(passphrase):
        tries.append(passphrase)
        if passphrase != "right one":
            raise WrongPassphrase("The passphrase is wrong.")
        return "opened"

    dialog = PassphraseDialog(runner, opener, message="CAREOPS_PASSPHRASE did not open the cache.")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.error_label.isVisible()
    assert not dialog.confirm_edit.isVisible()
    qtbot.keyClicks(dialog.passphrase_edit, "<b>wrong</b>")
    qtbot.keyClick(dialog.passphrase_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "The passphrase is wrong." in dialog.error_label.text(), timeout=5000)
    assert WrongPassphrase.remedy in dialog.error_label.text()
    assert dialog.error_label.textFormat() == Qt.TextFormat.PlainText
    assert dialog.isVisible() and dialog.passphrase_edit.text() == ""
    qtbot.keyClicks(dialog.passphrase_edit, "right one")
    with qtbot.waitSignal(dialog.accepted, timeout=5000):
        qtbot.keyClick(dialog.passphrase_edit, Qt.Key.Key_Return)
    assert dialog.opened == "opened" and tries == ["<b>wrong</b>", "right one"]
    runner.shutdown()


def test_quit(qtbot):
    runner = JobRunner()
    dialog = PassphraseDialog(runner, lambda p: None)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.mouseClick(dialog.quit_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Rejected
    runner.shutdown()
