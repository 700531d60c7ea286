"""The lock screen: the only thing the window shows while locked. It shows no PHI.

It names the signed-in staff member (not a patient) and asks for that user's password. After the
full-login limit it asks for a full sign-in instead, and it always offers to sign out so that
someone else can sign in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app import APP_NAME
from app.security.users import UserSession
from views.login_dialog import LoginForm, LoginMode
from views.widgets import plain_label
from views.workers import JobRunner

if TYPE_CHECKING:
    from app.security.users import UserDirectory

logger = logging.getLogger(__name__)

REASONS = {
    "manual": "The workstation was locked.",
    "idle": "The workstation locked itself after a period without activity.",
    "session": "Your session has reached its time limit: sign in again to continue.",
}


class LockScreen(QWidget):
    """Unlock form for the locked user.

    Signals:
        unlocked(): the same user proved it again (the session goes on).
        relogged_in(object): a full sign-in of the same user: a new ``UserSession``.
        sign_out_requested(): the user chose to sign out.
    """

    unlocked = Signal()
    relogged_in = Signal(object)
    sign_out_requested = Signal()

    def __init__(self, users: UserDirectory, runner: JobRunner, session: UserSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lockScreen")
        self._session = session

        card = QFrame(self)
        card.setObjectName("lockCard")
        card.setFrameShape(QFrame.Shape.NoFrame)
        card.setMinimumWidth(440)
        card.setMaximumWidth(520)

        self.title_label = plain_label(f"{APP_NAME} is locked", object_name="lockTitle")
        self.reason_label = plain_label("", object_name="lockReason", word_wrap=True)
        self.user_label = plain_label("", object_name="lockUser", word_wrap=True)
        self.form = LoginForm(users, runner, card, mode=LoginMode.UNLOCK, session=session)
        self.sign_out_button = QPushButton("Sign out", card)
        self.sign_out_button.setObjectName("signOutButton")
        self.sign_out_button.setAutoDefault(False)
        self.sign_out_button.setToolTip("End this session so that another user can sign in")
        self.form.button_row.insertWidget(1, self.sign_out_button)

        inner = QVBoxLayout(card)
        inner.setContentsMargins(32, 28, 32, 24)
        inner.setSpacing(12)
        inner.addWidget(self.title_label)
        inner.addWidget(self.reason_label)
        inner.addWidget(self.user_label)
        inner.addSpacing(4)
        inner.addWidget(self.form)

        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card)
        row.addStretch(1)
        outer = QVBoxLayout(self)
        outer.addStretch(2)
        outer.addLayout(row)
        outer.addStretch(3)

        self.form.unlocked.connect(self.unlocked)
        self.form.authenticated.connect(self.relogged_in)
        self.sign_out_button.clicked.connect(self._sign_out)

    def arm(self, session: UserSession, *, full_login: bool, reason: str = "manual") -> None:
        """Prepare for a new lock: whose it is, why, and whether a full sign-in is needed."""
        self._session = session
        self.form.set_mode(LoginMode.RELOGIN if full_login else LoginMode.UNLOCK, session)
        text = REASONS["session"] if full_login else REASONS.get(reason, REASONS["manual"])
        self.reason_label.setText(text)
        self.user_label.setText(f"{session.display_name} · {session.role.title}")

    def focus_form(self) -> None:
        self.form.password_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def _sign_out(self) -> None:
        if self.form.is_busy():
            return
        self.sign_out_requested.emit()
