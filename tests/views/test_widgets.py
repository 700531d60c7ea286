"""Shared widgets: plain-text labels, error text, the cancellable progress runner."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QProgressDialog, QPushButton

from app.errors import AccessDenied
from tests.views.conftest import HTML_NAME
from views.widgets import UNEXPECTED, ErrorLabel, error_text, plain_label, run_with_progress, style_sheet
from views.workers import JobRunner


def test_plain_label_shows_html_literally(qtbot):
    plain = plain_label(HTML_NAME)
    rich = QLabel(HTML_NAME)  # Qt's default: interpreted as HTML
    qtbot.addWidget(plain)
    qtbot.addWidget(rich)
    assert plain.textFormat() == Qt.TextFormat.PlainText and plain.text() == HTML_NAME
    # The tags are drawn as characters: the plain label needs room for them.
    assert plain.sizeHint().width() > rich.sizeHint().width()
    image = plain_label('<img src="file:///etc/passwd">')
    qtbot.addWidget(image)
    assert image.sizeHint().width() > 100 and not image.openExternalLinks()


def test_error_text():
    assert error_text(AccessDenied("No.")) == f"No.\n\n{AccessDenied.remedy}"
    assert error_text(RuntimeError("SELECT name FROM patients")) == UNEXPECTED  # bugs say nothing
    assert error_text("Plain words.") == "Plain words."


def test_error_label(qtbot):
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    host = QWidget()
    label = ErrorLabel(host)
    QVBoxLayout(host).addWidget(label)
    qtbot.addWidget(host)
    host.show()
    assert not label.isVisible()
    label.show_error(AccessDenied("<b>x</b>"))
    assert label.isVisible() and label.text().startswith("<b>x</b>")
    assert label.textFormat() == Qt.TextFormat.PlainText and label.property("kind") == "error"
    label.show_notice("Saved.")
    assert label.property("kind") == "notice"
    label.clear_error()
    assert not label.isVisible()


def test_style_sheet_is_loaded():
    qss = style_sheet()
    assert "#breakGlassBanner" in qss and ":focus" in qss


def test_progress_runs_to_the_end(qtbot):
    runner = JobRunner()
    seen = []

    def work(progress, cancel):
        for i in range(5):
            progress(i * 10)
            time.sleep(0.01)
        return "done"

    result, error, cancelled = run_with_progress(
        runner, work, title="t", label="Working", describe=lambda n: seen.append(n) or f"{n}",
    )  # fmt: skip
    assert (result, error, cancelled) == ("done", None, False)
    runner.shutdown()


def test_progress_can_be_cancelled(qtbot):
    runner = JobRunner()

    def work(progress, cancel):
        for i in range(500):
            if cancel():
                return f"stopped at {i}"
            progress(i)
            time.sleep(0.01)
        return "finished"

    def press_cancel():
        dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, QProgressDialog) and w.isVisible()]
        if dialogs:
            dialogs[0].findChild(QPushButton).click()  # what the user does
        else:
            QTimer.singleShot(20, press_cancel)

    QTimer.singleShot(50, press_cancel)
    result, error, cancelled = run_with_progress(runner, work, title="t", label="Working")
    assert cancelled and error is None and result.startswith("stopped at")
    runner.shutdown()
