"""The cache passphrase: chosen (with confirmation) on first run, asked for afterwards.

The dialog does not know what a workstation is: it is given an ``opener`` that takes the
passphrase and opens the cache (scrypt and migrations: seconds, on a worker). A wrong passphrase
or any other known problem shows its message and remedy inline, and the user tries again or quits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.errors import KnownError, WrongPassphrase
from views.widgets import ErrorLabel, plain_label
from views.workers import JobRunner

logger = logging.getLogger(__name__)

MIN_PASSPHRASE = 8


class PassphraseDialog(QDialog):
    """Asks for the cache passphrase and opens the cache with it off the GUI thread.

    After ``exec()`` returns Accepted, ``opened`` holds what the opener returned.
    """

    def __init__(
        self,
        runner: JobRunner,
        opener: Callable[[str], Any],
        parent: QWidget | None = None,
        *,
        first_run: bool = False,
        message: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("passphraseDialog")
        self.setWindowTitle(f"Unlock — {APP_NAME}")
        self.setMinimumWidth(460)
        self._runner = runner
        self._opener = opener
        self._first_run = first_run
        self._busy = False
        self.opened: Any = None

        brand = plain_label(APP_NAME, object_name="dialogBrand")
        if first_run:
            intro = (
                "Choose a passphrase for this workstation's encrypted cache. It is asked for each "
                "time the application starts. It cannot be recovered: if it is lost, the cache is "
                "rebuilt from the central service."
            )
        else:
            intro = "Enter the passphrase of this workstation's encrypted cache."
        intro_label = plain_label(intro, object_name="dialogIntro", word_wrap=True)

        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("passphrase")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName("Passphrase")
        self.confirm_edit = QLineEdit(self)
        self.confirm_edit.setObjectName("passphraseConfirm")
        self.confirm_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm_edit.setAccessibleName("Repeat the passphrase")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("&Passphrase", self.passphrase_edit)
        if first_run:
            form.addRow("&Repeat", self.confirm_edit)
        else:
            self.confirm_edit.setVisible(False)

        self.error_label = ErrorLabel(self, object_name="passphraseError")
        if message:
            self.error_label.show_error(message)

        self.unlock_button = QPushButton("Create" if first_run else "Unlock", self)
        self.unlock_button.setObjectName("unlockButton")
        self.unlock_button.setDefault(True)
        self.quit_button = QPushButton("Quit", self)
        self.quit_button.setObjectName("quitButton")
        self.quit_button.setAutoDefault(False)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.quit_button)
        buttons.addWidget(self.unlock_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 20)
        layout.setSpacing(12)
        layout.addWidget(brand)
        layout.addWidget(intro_label)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addLayout(buttons)

        self.unlock_button.clicked.connect(self.submit)
        self.quit_button.clicked.connect(self.reject)
        self.passphrase_edit.returnPressed.connect(self._return_on_first)
        self.confirm_edit.returnPressed.connect(self.submit)
        self.passphrase_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def _return_on_first(self) -> None:
        if self._first_run:
            self.confirm_edit.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.submit()

    @Slot()
    def submit(self) -> None:
        if self._busy:
            return
        passphrase = self.passphrase_edit.text()
        if not passphrase:
            self.error_label.show_error("Enter the passphrase.")
            return
        if self._first_run:
            if len(passphrase) < MIN_PASSPHRASE:
                self.error_label.show_error(f"Use at least {MIN_PASSPHRASE} characters.")
                return
            if passphrase != self.confirm_edit.text():
                self.error_label.show_error("The two passphrases differ. Type them again.")
                self.confirm_edit.clear()
                self.confirm_edit.setFocus(Qt.FocusReason.OtherFocusReason)
                return
        self._set_busy(True)
        self.error_label.clear_error()
        self._runner.submit(
            self._opener, passphrase, on_result=self._opened, on_error=self._failed, owner=self,
            name="workstation.open",
        )  # fmt: skip

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        for w in (self.passphrase_edit, self.confirm_edit, self.unlock_button, self.quit_button):
            w.setEnabled(not busy)
        if busy:
            self.unlock_button.setText("Opening…")
        else:
            self.unlock_button.setText("Create" if self._first_run else "Unlock")

    def _opened(self, result: Any) -> None:
        self._set_busy(False)
        self.opened = result
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self._set_busy(False)
        self.passphrase_edit.clear()
        self.confirm_edit.clear()
        if isinstance(error, KnownError):
            self.error_label.show_error(error)
        else:
            self.error_label.show_error("The cache could not be opened. The details were written to the log.")
        if isinstance(error, WrongPassphrase) or not isinstance(error, KnownError):
            self.passphrase_edit.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.quit_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def reject(self) -> None:
        if self._busy:
            return  # the cache is being opened; wait for the answer
        super().reject()
