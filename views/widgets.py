"""Small shared widgets and helpers: plain-text labels, error display, the style sheet.

Qt interprets a label's text as HTML when it looks like HTML: a patient called ``<h1>x</h1>`` or
``<img src=file:...>`` would be rendered, not shown. Every label here is forced to plain text;
use these helpers for anything that shows PHI or inbound text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QObject, Qt, Signal, Slot
from PySide6.QtCore import QAbstractItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QTableView,
    QWidget,
)

from app.errors import KnownError
from views.workers import JobRunner, wait_for

logger = logging.getLogger(__name__)

STYLE_SHEET = Path(__file__).with_name("style.qss")
UNEXPECTED = "Something went wrong. The details were written to the log; please tell your support team."


def make_plain(label: QLabel) -> QLabel:
    """Force ``label`` to show its text literally, with no links or rich text."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setOpenExternalLinks(False)
    flags = label.textInteractionFlags() & ~Qt.TextInteractionFlag.LinksAccessibleByMouse
    label.setTextInteractionFlags(flags & ~Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
    return label


def plain_label(
    text: str = "",
    parent: QWidget | None = None,
    *,
    object_name: str | None = None,
    word_wrap: bool = False,
    selectable: bool = False,
) -> QLabel:
    """A QLabel that always renders ``text`` literally.

    Args:
        text: the text, shown as is (``<b>`` stays ``<b>``).
        parent: the parent widget.
        object_name: for the style sheet and tests.
        word_wrap: wrap long text.
        selectable: let the user select and copy the text with mouse and keyboard.
    """
    label = QLabel(parent)
    make_plain(label)
    if selectable:
        label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
    label.setWordWrap(word_wrap)
    if object_name:
        label.setObjectName(object_name)
    label.setText(text)
    return label


def record_table(
    parent: QWidget,
    model: QAbstractItemModel,
    *,
    object_name: str,
    accessible_name: str,
    multi_select: bool = False,
    row_height: int = 26,
) -> QTableView:
    """A read-only table of records, rows selected whole; Tab leaves it, arrows move inside it."""
    table = QTableView(parent)
    table.setObjectName(object_name)
    table.setModel(model)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(
        QAbstractItemView.SelectionMode.ExtendedSelection if multi_select
        else QAbstractItemView.SelectionMode.SingleSelection
    )
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setWordWrap(False)
    table.setTabKeyNavigation(False)
    table.setAccessibleName(accessible_name)
    vheader = table.verticalHeader()
    vheader.setVisible(False)
    vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    vheader.setDefaultSectionSize(row_height)
    header = table.horizontalHeader()
    header.setHighlightSections(False)
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return table


def error_text(error: BaseException | str) -> str:
    """What to tell the user: a KnownError's message and remedy; for a bug, a generic line."""
    if isinstance(error, str):
        return error
    if isinstance(error, KnownError):
        return error.user_text()
    return UNEXPECTED


def repolish(widget: QWidget) -> None:
    """Re-apply the style sheet after a dynamic property that it selects on has changed."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


class ErrorLabel(QLabel):
    """An inline, plain-text error or notice line that hides itself when empty."""

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "errorLabel") -> None:
        super().__init__(parent)
        make_plain(self)
        self.setObjectName(object_name)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setProperty("kind", "error")
        self.setVisible(False)

    def show_error(self, error: BaseException | str) -> None:
        self._show(error_text(error), "error")

    def show_notice(self, text: str) -> None:
        self._show(text, "notice")

    def _show(self, text: str, kind: str) -> None:
        if self.property("kind") != kind:
            self.setProperty("kind", kind)
            repolish(self)
        self.setText(text)
        self.setVisible(bool(text))
        self._fit_dialog()

    def clear_error(self) -> None:
        self.clear()
        self.setVisible(False)
        self._fit_dialog()

    def _fit_dialog(self) -> None:
        # A shown dialog keeps its size when a line appears: grow it, or wrapped text gets clipped.
        window = self.window()
        if isinstance(window, QDialog) and window.isVisible():
            window.adjustSize()


def message_box(
    parent: QWidget | None,
    title: str,
    text: str,
    icon: QMessageBox.Icon = QMessageBox.Icon.Warning,
    buttons: QMessageBox.StandardButton = QMessageBox.StandardButton.Ok,
) -> QMessageBox:
    """A QMessageBox whose text is plain (never interpreted as HTML)."""
    box = QMessageBox(icon, title, "", buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(text)
    return box


def show_error(parent: QWidget | None, error: BaseException | str, title: str = "CareOps Desk") -> None:
    """Tell the user about ``error`` in a modal message box (message and remedy, never a traceback)."""
    message_box(parent, title, error_text(error)).exec()


def ask_retry(parent: QWidget | None, error: BaseException | str, title: str = "CareOps Desk") -> bool:
    """Show ``error`` with Retry and Quit; True when the user chose Retry."""
    box = message_box(
        parent, title, error_text(error), QMessageBox.Icon.Critical,
        QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Close,
    )  # fmt: skip
    box.button(QMessageBox.StandardButton.Close).setText("Quit")
    box.setDefaultButton(QMessageBox.StandardButton.Retry)
    return box.exec() == QMessageBox.StandardButton.Retry


def style_sheet() -> str:
    """The application's one style sheet (views/style.qss); empty if it cannot be read."""
    try:
        return STYLE_SHEET.read_text(encoding="utf-8")
    except OSError:
        logger.warning("style sheet not found; using the platform style")
        return ""


ProgressCallback = Callable[[int], None]
CancelCallback = Callable[[], bool]


class _ProgressRelay(QObject):
    """Carries progress from the worker to the dialog on the GUI thread (a queued slot).

    Signals:
        progressed(int): emitted from the worker with the work's own progress count.
    """

    progressed = Signal(int)

    def __init__(self, dialog: QProgressDialog, describe: Callable[[int], str]) -> None:
        super().__init__(dialog)
        self._dialog = dialog
        self._describe = describe
        self.progressed.connect(self._show)

    @Slot(int)
    def _show(self, n: int) -> None:
        if not self._dialog.wasCanceled():
            self._dialog.setLabelText(self._describe(n))


def run_with_progress(
    runner: JobRunner,
    work: Callable[[ProgressCallback, CancelCallback], Any],
    *,
    title: str,
    label: str,
    describe: Callable[[int], str] | None = None,
    parent: QWidget | None = None,
) -> tuple[Any, BaseException | None, bool]:
    """Run long ``work(progress, cancel)`` on a worker behind a modal, cancellable progress dialog.

    ``progress(n)`` may be called from the worker (it is relayed to the GUI thread); ``cancel()``
    says whether the user pressed Cancel. Returns ``(result, error, cancelled)``.
    """
    dialog = QProgressDialog(label, "Cancel", 0, 0, parent)
    dialog.setObjectName("progressDialog")
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setMinimumWidth(420)
    relay = _ProgressRelay(dialog, describe or (lambda n: f"{label} ({n:,})"))
    cancelled = threading.Event()

    def on_cancel() -> None:
        cancelled.set()
        dialog.setLabelText("Cancelling: finishing the current batch…")
        dialog.show()  # QProgressDialog hides itself on cancel; keep it up until the worker stops

    dialog.canceled.connect(on_cancel)
    loop = QEventLoop()
    outcome: dict[str, Any] = {}

    def finish(key: str, value: Any) -> None:
        outcome[key] = value
        loop.quit()

    dialog.show()
    runner.submit(
        work, relay.progressed.emit, cancelled.is_set,
        on_result=lambda r: finish("result", r), on_error=lambda e: finish("error", e), name="progress-job",
    )  # fmt: skip
    wait_for(runner, loop, outcome)
    was_cancelled = cancelled.is_set()
    dialog.canceled.disconnect(on_cancel)  # closing the dialog emits canceled too
    dialog.close()
    dialog.deleteLater()
    return outcome.get("result"), outcome.get("error"), was_cancelled
