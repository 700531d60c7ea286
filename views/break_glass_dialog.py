"""Emergency ("break-glass") access: the reason and the duration, asked before anything is shown."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from services.emergency_access import MAX_MINUTES, MIN_REASON
from views.widgets import plain_label

logger = logging.getLogger(__name__)

DURATIONS = (5, 10, 15, 30, 45, 60)


def normalised(reason: str) -> str:
    return " ".join(reason.split())


class BreakGlassDialog(QDialog):
    """Asks why emergency access is needed and for how long.

    The dialog only collects the answer; the caller starts the grant (``start_break_glass``, on a
    worker) after ``accepted``, so the audit entry is written before any record is shown.
    """

    def __init__(self, parent: QWidget | None = None, *, default_minutes: float = 30.0) -> None:
        super().__init__(parent)
        self.setObjectName("breakGlassDialog")
        self.setWindowTitle("Emergency access")
        self.setModal(True)
        self.setMinimumWidth(460)

        intro = plain_label(
            "Your role does not include access to patient records. In an emergency you can open them "
            "for a limited time. The reason is recorded in the audit log as a high-priority event "
            "and is reviewed.",
            word_wrap=True,
            object_name="dialogIntro",
        )
        self.reason_edit = QPlainTextEdit(self)
        self.reason_edit.setObjectName("breakGlassReason")
        self.reason_edit.setPlaceholderText(f"Why is access needed? (at least {MIN_REASON} characters)")
        self.reason_edit.setTabChangesFocus(True)  # Tab moves on; keyboard users are not trapped
        self.reason_edit.setFixedHeight(80)
        self.reason_edit.setAccessibleName("Reason for emergency access")

        self.minutes_combo = QComboBox(self)
        self.minutes_combo.setObjectName("breakGlassMinutes")
        self.minutes_combo.setAccessibleName("Duration")
        for minutes in DURATIONS:
            self.minutes_combo.addItem(f"{minutes} minutes", minutes)
        self.set_minutes(int(default_minutes))

        form = QFormLayout()
        form.addRow("&Reason", self.reason_edit)
        form.addRow("&Duration", self.minutes_combo)
        for field in (self.reason_edit, self.minutes_combo):
            label = form.labelForField(field)
            if label is not None:
                label.setBuddy(field)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Start emergency access")
        self.ok_button.setObjectName("dangerButton")
        self.ok_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 16)
        layout.setSpacing(12)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.buttons)

        self.reason_edit.textChanged.connect(self._validate)
        self.reason_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def reason(self) -> str:
        return normalised(self.reason_edit.toPlainText())

    def minutes(self) -> int:
        return int(self.minutes_combo.currentData())

    def set_minutes(self, minutes: int) -> None:
        """Select ``minutes`` (clamped to 1..60), adding it to the list when it is not a preset."""
        minutes = max(1, min(int(minutes), int(MAX_MINUTES)))
        index = self.minutes_combo.findData(minutes)
        if index < 0:
            values = [self.minutes_combo.itemData(i) for i in range(self.minutes_combo.count())]
            index = sum(1 for v in values if v < minutes)
            self.minutes_combo.insertItem(index, f"{minutes} minutes", minutes)
        self.minutes_combo.setCurrentIndex(index)

    @Slot()
    def _validate(self) -> None:
        self.ok_button.setEnabled(len(self.reason()) >= MIN_REASON)

    def accept(self) -> None:
        if len(self.reason()) < MIN_REASON:
            return
        super().accept()
