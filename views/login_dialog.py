"""Sign-in: the login dialog, and the same form as the unlock form of the lock screen.

Checking a password is scrypt (about 50 ms, on purpose): it always runs on a worker, never on the
GUI thread. The form is disabled while a check runs, so a double Return is one attempt.
"""

from __future__ import annotations

import enum
import logging
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
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
from app.errors import KnownError
from app.security.users import UserSession
from views.widgets import ErrorLabel, plain_label
from views.workers import JobRunner

if TYPE_CHECKING:
    from app.security.users import UserDirectory

logger = logging.getLogger(__name__)


class LoginMode(enum.Enum):
    LOGIN = "login"  # any known user: authenticate(), a new session
    UNLOCK = "unlock"  # the locked user, same session: reverify()
    RELOGIN = "relogin"  # the locked user, a full login: authenticate(), a new session


class LoginForm(QWidget):
    """User name, password, Sign in, and a plain-text error line.

    Signals:
        authenticated(object): a new ``UserSession`` (LOGIN and RELOGIN modes).
        unlocked(): the locked user gave the right password (UNLOCK mode).
        refused(): an attempt failed; the error line says why.
    """

    authenticated = Signal(object)
    unlocked = Signal()
    refused = Signal()

    def __init__(
        self,
        users: UserDirectory,
        runner: JobRunner,
        parent: QWidget | None = None,
        *,
        mode: LoginMode = LoginMode.LOGIN,
        session: UserSession | None = None,
        username: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("loginForm")
        self._users = users
        self._runner = runner
        self._mode = mode
        self._session = session
        self._busy = False
        self._attempt = 0

        self.username_edit = QLineEdit(self)
        self.username_edit.setObjectName("username")
        self.username_edit.setAccessibleName("User name")
        self.username_edit.setMaxLength(64)
        self.username_edit.setText(username)
        self.password_edit = QLineEdit(self)
        self.password_edit.setObjectName("password")
        self.password_edit.setAccessibleName("Password")
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setMaxLength(256)
        self.sign_in_button = QPushButton("Sign in", self)
        self.sign_in_button.setObjectName("signInButton")
        self.sign_in_button.setDefault(True)
        self.sign_in_button.setAutoDefault(True)
        self.error_label = ErrorLabel(self, object_name="loginError")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(10)
        form.addRow("&User name", self.username_edit)
        form.addRow("&Password", self.password_edit)

        # Public so a host can put its own buttons (Quit, Sign out) next to Sign in.
        self.button_row = QHBoxLayout()
        self.button_row.addStretch(1)
        self.button_row.addWidget(self.sign_in_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addLayout(self.button_row)

        self.sign_in_button.clicked.connect(self.submit)
        self.username_edit.returnPressed.connect(self.password_edit.setFocus)
        self.password_edit.returnPressed.connect(self.submit)
        self.set_mode(mode, session)

    # -- configuration --------------------------------------------------------------------------

    @property
    def mode(self) -> LoginMode:
        return self._mode

    def set_mode(self, mode: LoginMode, session: UserSession | None = None) -> None:
        """Switch between a free login and unlocking ``session``'s user (user name fixed)."""
        if mode is not LoginMode.LOGIN and session is None:
            raise ValueError("unlock and re-login need the locked session")
        self._mode = mode
        self._session = session
        self._attempt += 1  # an answer for the previous mode is ignored
        self._set_busy(False)
        fixed = mode is not LoginMode.LOGIN
        if fixed and session is not None:
            self.username_edit.setText(session.username)
        self.username_edit.setReadOnly(fixed)
        self.username_edit.setFocusPolicy(Qt.FocusPolicy.ClickFocus if fixed else Qt.FocusPolicy.StrongFocus)
        self.sign_in_button.setText("Unlock" if mode is LoginMode.UNLOCK else "Sign in")
        self.reset()

    def reset(self) -> None:
        """Clear the password and the error line."""
        self.password_edit.clear()
        self.error_label.clear_error()

    def focus_first(self) -> None:
        target = self.password_edit if self.username_edit.isReadOnly() or self.username_edit.text() else self.username_edit
        target.setFocus(Qt.FocusReason.OtherFocusReason)

    def is_busy(self) -> bool:
        return self._busy

    # -- submitting -----------------------------------------------------------------------------

    @Slot()
    def submit(self) -> None:
        if self._busy:
            return
        username = self.username_edit.text().strip()
        password = self.password_edit.text()
        if not username:
            self.error_label.show_error("Enter your user name.")
            self.username_edit.setFocus(Qt.FocusReason.OtherFocusReason)
            return
        if not password:
            self.error_label.show_error("Enter your password.")
            self.password_edit.setFocus(Qt.FocusReason.OtherFocusReason)
            return
        self._attempt += 1
        attempt = self._attempt
        self._set_busy(True)
        self.error_label.clear_error()
        if self._mode is LoginMode.UNLOCK:
            assert self._session is not None
            self._runner.submit(
                self._users.reverify, self._session, password,
                on_result=partial(self._reverified, attempt),
                on_error=partial(self._failed, attempt), owner=self, name="login.reverify",
            )  # fmt: skip
        else:
            self._runner.submit(
                self._users.authenticate, username, password,
                on_result=partial(self._authenticated, attempt),
                on_error=partial(self._failed, attempt), owner=self, name="login.authenticate",
            )  # fmt: skip

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.password_edit.setEnabled(not busy)
        self.sign_in_button.setEnabled(not busy)
        if not self.username_edit.isReadOnly():
            self.username_edit.setEnabled(not busy)
        if busy:
            self.sign_in_button.setText("Checking…")
        else:
            self.sign_in_button.setText("Unlock" if self._mode is LoginMode.UNLOCK else "Sign in")

    def _reverified(self, attempt: int, ok: object) -> None:
        if attempt != self._attempt:
            return
        self._set_busy(False)
        if ok is True:
            self.reset()
            self.unlocked.emit()
        else:
            self._refuse("Wrong password.")

    def _authenticated(self, attempt: int, session: UserSession) -> None:
        if attempt != self._attempt:
            return
        self._set_busy(False)
        if self._mode is LoginMode.RELOGIN and self._session is not None and session.username != self._session.username:
            self._refuse("Sign in as the user who locked the workstation, or sign out.")
            return
        self.reset()
        logger.info("user signed in")
        self.authenticated.emit(session)

    def _failed(self, attempt: int, error: BaseException) -> None:
        if attempt != self._attempt:
            return
        self._set_busy(False)
        self._refuse(error if isinstance(error, KnownError) else "The sign-in could not be checked. Try again.")

    def _refuse(self, error: BaseException | str) -> None:
        logger.info("sign-in refused")
        self.password_edit.clear()
        self.error_label.show_error(error)
        self.password_edit.setFocus(Qt.FocusReason.OtherFocusReason)
        self.refused.emit()


class LoginDialog(QDialog):
    """The sign-in window shown at start (``--login``) and after signing out.

    Signals:
        authenticated(object): the new ``UserSession``; the dialog then accepts.
    """

    authenticated = Signal(object)

    def __init__(
        self,
        users: UserDirectory,
        runner: JobRunner,
        parent: QWidget | None = None,
        *,
        username: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("loginDialog")
        self.setWindowTitle(f"Sign in — {APP_NAME}")
        self.setMinimumWidth(420)
        self.session: UserSession | None = None

        brand = plain_label(APP_NAME, object_name="dialogBrand")
        sub = plain_label("Sign in to this workstation", object_name="dialogSubtitle")
        self.form = LoginForm(users, runner, self, username=username)
        self.hint_label = plain_label(hint, object_name="hintLabel", word_wrap=True)
        self.hint_label.setVisible(bool(hint))
        self.quit_button = QPushButton("Quit", self)
        self.quit_button.setObjectName("quitButton")
        self.quit_button.setAutoDefault(False)
        self.quit_button.clicked.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 20)
        layout.setSpacing(12)
        layout.addWidget(brand)
        layout.addWidget(sub)
        layout.addWidget(self.hint_label)
        layout.addSpacing(4)
        layout.addWidget(self.form)
        self.form.button_row.insertWidget(1, self.quit_button)

        self.form.authenticated.connect(self._on_authenticated)
        self.form.focus_first()

    @Slot(object)
    def _on_authenticated(self, session: UserSession) -> None:
        self.session = session
        self.authenticated.emit(session)
        self.accept()

    def reject(self) -> None:
        if self.form.is_busy():
            return  # a check is running; closing now would drop its answer
        super().reject()
