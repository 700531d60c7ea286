"""The main window: navigation, pages, status bar, idle lock and the emergency-access banner.

Locking hides the navigation and the page stack, asks every page to drop the PHI it holds
(models, search boxes, open dialogs), and leaves the lock screen as the only visible content.
Idle time is measured by an application-wide event filter that reports key and mouse input to
the ``IdlePolicy``; a timer asks the policy whether it is time to lock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.logs import Safe
from app.security.idle import IdlePolicy
from app.security.users import UserSession
from services.context import ServiceContext
from views.lock_screen import LockScreen
from views.pages import Page, PageEnv, PageSpec
from views.widgets import plain_label, repolish
from views.workers import JobRunner

if TYPE_CHECKING:
    from app.security.users import UserDirectory

logger = logging.getLogger(__name__)

OFFLINE_TEXT = "Offline — no central service configured"
IDLE_CHECK_MS = 1000
MAX_SHORTCUT_PAGES = 9

_ACTIVITY = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
        QEvent.Type.TabletPress,
    }
)


class ActivityFilter(QObject):
    """Application-wide event filter: any key or mouse input counts as activity."""

    def __init__(self, idle: IdlePolicy, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._idle = idle

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _ACTIVITY:
            self._idle.touch()
        return False


def pending_text(n: int) -> str:
    if n <= 0:
        return "No pending changes"
    return f"{n:,} pending change{'s' if n != 1 else ''}"


class MainWindow(QMainWindow):
    """The workstation window for one signed-in user.

    Signals:
        locked(str): the window locked ("manual", "idle" or "session").
        unlocked(): the user unlocked it again.
        sign_out_requested(): the user signed out from the lock screen; the owner closes the
            window and shows the login dialog.
    """

    locked = Signal(str)
    unlocked = Signal()
    sign_out_requested = Signal()

    def __init__(
        self,
        ctx: ServiceContext,
        users: UserDirectory,
        pages: Sequence[PageSpec],
        idle: IdlePolicy,
        cache_events: QObject,
        pending_changes: Callable[[], int],
        *,
        runner: JobRunner,
        break_glass_minutes: float = 30.0,
        sync_state: str = OFFLINE_TEXT,
        sync: QObject | None = None,
        ehr_sync: QObject | None = None,
        reimport: Callable[..., Any] | None = None,
        idle_check_ms: int = IDLE_CHECK_MS,
        activity_source: QObject | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """Build the window.

        Args:
            ctx: the service context of the signed-in user.
            users: the user directory (unlock and re-login).
            pages: the page registry; only the pages the user's role may see are built.
            idle: the idle and full-login policy.
            cache_events: an object with a ``records_changed`` signal.
            pending_changes: counts the outbox (run on a worker after each change).
            runner: runs every service call off the GUI thread.
            break_glass_minutes: default duration offered for emergency access.
            sync_state: the sync text for the status bar until the first sync status arrives.
            sync: the sync controller (``status_changed`` and ``request_sync`` signals), if any.
            ehr_sync: the EHR sync controller (the same signals), if an EHR is configured.
            reimport: ``(cache, source) -> importer``, the inbound pipeline that quarantine review
                retries records through (the views may not import it themselves).
            idle_check_ms: how often the idle policy is asked whether to lock.
            activity_source: where the activity filter is installed; the application by default.
            parent: the parent widget.
        """
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self._ctx = ctx
        self._users = users
        self._idle = idle
        self._runner = runner
        self._pending_changes = pending_changes
        self._locked = False
        self._pending_running = False
        self._pending_again = False
        self._had_grant = False
        self._cleanups: list[Callable[[], None]] = []

        env = PageEnv(
            ctx=ctx, runner=runner, cache_events=cache_events, break_glass_minutes=break_glass_minutes, sync=sync,
            reimport=reimport, ehr_sync=ehr_sync,
        )
        self._specs: list[PageSpec] = []
        self._pages: list[Page] = []

        # -- central content: banner, workspace (navigation + pages), lock screen ---------------
        central = QWidget(self)
        central.setObjectName("central")
        self.banner = plain_label("", object_name="breakGlassBanner", word_wrap=True)
        self.banner.setVisible(False)
        self.offline_banner = plain_label("", object_name="offlineBanner", word_wrap=True)
        self.offline_banner.setVisible(False)

        self.workspace = QWidget(central)
        self.workspace.setObjectName("workspace")
        sidebar = QWidget(self.workspace)
        sidebar.setObjectName("sidebar")
        brand = plain_label(APP_NAME, object_name="brand")
        self.navigation = QListWidget(sidebar)
        self.navigation.setObjectName("navigation")
        self.navigation.setAccessibleName("Pages")
        self.navigation.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.navigation.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_layout = QVBoxLayout(sidebar)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.setSpacing(0)
        side_layout.addWidget(brand)
        side_layout.addWidget(self.navigation, 1)
        sidebar.setFixedWidth(190)

        self.page_stack = QStackedWidget(self.workspace)
        self.page_stack.setObjectName("pageStack")
        work_layout = QHBoxLayout(self.workspace)
        work_layout.setContentsMargins(0, 0, 0, 0)
        work_layout.setSpacing(0)
        work_layout.addWidget(sidebar)
        work_layout.addWidget(self.page_stack, 1)

        self.lock_screen = LockScreen(users, runner, ctx.user, central)
        self.lock_screen.setVisible(False)

        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.offline_banner)
        layout.addWidget(self.workspace, 1)
        layout.addWidget(self.lock_screen, 1)
        self.setCentralWidget(central)

        for spec in pages:
            if not spec.visible_for(ctx.user):
                continue
            page = spec.factory(env)
            page.setParent(self.page_stack)
            page.access_changed.connect(self._update_access)
            self._specs.append(spec)
            self._pages.append(page)
            self.page_stack.addWidget(page)
            n = len(self._pages)
            item = QListWidgetItem(spec.title)
            item.setData(Qt.ItemDataRole.UserRole, spec.name)
            if n <= MAX_SHORTCUT_PAGES:
                item.setToolTip(f"{spec.title} (Ctrl+{n})")
            self.navigation.addItem(item)

        # -- status bar ---------------------------------------------------------------------------
        status = self.statusBar()
        status.setObjectName("statusBar")
        status.setSizeGripEnabled(False)
        self.user_label = plain_label("", object_name="statusUser")
        self.sync_label = plain_label(sync_state, object_name="syncState")
        self.sync_label.setProperty("state", "offline" if sync_state == OFFLINE_TEXT else "online")
        self.ehr_label = plain_label("", object_name="ehrState")
        self.ehr_label.setVisible(False)  # shown from the first EHR status on
        self.pending_label = plain_label("", object_name="pendingChanges")
        self.lock_button = QPushButton("Lock", self)
        self.lock_button.setObjectName("lockButton")
        self.lock_button.setToolTip("Lock the workstation (Ctrl+L)")
        self.lock_button.setAccessibleName("Lock the workstation")
        status.addWidget(self.user_label)
        status.addWidget(self.sync_label)
        status.addWidget(self.ehr_label)
        status.addPermanentWidget(self.pending_label)
        status.addPermanentWidget(self.lock_button)

        # -- actions --------------------------------------------------------------------------------
        self.lock_action = QAction("Lock", self)
        self.lock_action.setShortcut(QKeySequence("Ctrl+L"))
        self.lock_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.lock_action.triggered.connect(self._lock_requested)
        self.addAction(self.lock_action)
        self.lock_button.clicked.connect(self._lock_requested)
        self._page_actions: list[QAction] = []
        for i in range(min(len(self._pages), MAX_SHORTCUT_PAGES)):
            action = QAction(f"Page {i + 1}", self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(partial(self.show_page_index, i))
            self.addAction(action)
            self._page_actions.append(action)

        self.navigation.currentRowChanged.connect(self._on_row_changed)
        self.lock_screen.unlocked.connect(self._on_unlocked)
        self.lock_screen.relogged_in.connect(self._on_relogged_in)
        self.lock_screen.sign_out_requested.connect(self.sign_out_requested)
        cache_events.records_changed.connect(self._on_records_changed)  # type: ignore[attr-defined]
        if sync is not None:
            sync.status_changed.connect(self.set_sync_status)  # type: ignore[attr-defined]
        if ehr_sync is not None:
            ehr_sync.status_changed.connect(self.set_ehr_status)  # type: ignore[attr-defined]


        # -- idle lock ------------------------------------------------------------------------------
        self._activity = ActivityFilter(idle, self)
        self._activity_source = activity_source if activity_source is not None else QCoreApplication.instance()
        if self._activity_source is not None:
            self._activity_source.installEventFilter(self._activity)
        self._idle_timer = QTimer(self)
        self._idle_timer.setInterval(idle_check_ms)
        self._idle_timer.timeout.connect(self._tick)
        self._idle_timer.start()

        self.resize(1280, 800)
        self._update_user()
        self.pending_label.setText("Counting pending changes…")
        self.refresh_pending()
        if self._pages:
            self.navigation.setCurrentRow(0)
            target = self._pages[0].focus_target()
            if target is not None:
                target.setFocus(Qt.FocusReason.OtherFocusReason)  # start where the work starts
        self._update_access()

    # -- public -----------------------------------------------------------------------------------

    @property
    def ctx(self) -> ServiceContext:
        return self._ctx

    def is_locked(self) -> bool:
        return self._locked

    def page_names(self) -> list[str]:
        return [s.name for s in self._specs]

    def page(self, name: str) -> Page | None:
        for spec, page in zip(self._specs, self._pages, strict=True):
            if spec.name == name:
                return page
        return None

    def current_page_name(self) -> str | None:
        row = self.navigation.currentRow()
        return self._specs[row].name if 0 <= row < len(self._specs) else None

    def show_page(self, name: str) -> bool:
        names = self.page_names()
        if name not in names:
            return False
        self.show_page_index(names.index(name))
        return True

    @Slot(int)
    def show_page_index(self, index: int) -> None:
        if self._locked or not 0 <= index < len(self._pages):
            return
        self.navigation.setCurrentRow(index)
        target = self._pages[index].focus_target()
        if target is not None:
            target.setFocus(Qt.FocusReason.ShortcutFocusReason)

    # -- locking ------------------------------------------------------------------------------------

    @Slot()
    def _lock_requested(self) -> None:
        self.lock("manual")

    def lock(self, reason: str = "manual") -> None:
        """Lock now: hide every page, drop the PHI they hold, show only the lock screen."""
        if self._locked:
            return
        self._locked = True
        full = self._idle.full_login_due() or reason == "session"
        for dialog in self.findChildren(QDialog):
            if dialog.isVisible():
                dialog.reject()
        for page in self._pages:
            page.clear_sensitive()
        self.page_stack.setVisible(False)
        self.workspace.setVisible(False)
        self.banner.setVisible(False)
        self.lock_button.setEnabled(False)
        self.lock_action.setEnabled(False)
        for action in self._page_actions:
            action.setEnabled(False)
        self.lock_screen.arm(self._ctx.user, full_login=full, reason=reason)
        self.lock_screen.setVisible(True)
        self.lock_screen.focus_form()
        self.setWindowTitle(f"{APP_NAME} — Locked")
        logger.info("workstation locked (%s)", Safe(reason if reason in ("manual", "idle", "session") else "other"))
        self.locked.emit(reason)

    @Slot()
    def _on_unlocked(self) -> None:
        if not self._locked:
            return
        if self._idle.full_login_due():
            # The 12-hour limit passed while the lock screen was up: a password is not enough.
            self.lock_screen.arm(self._ctx.user, full_login=True, reason="session")
            return
        self._idle.touch()
        self._restore()

    @Slot(object)
    def _on_relogged_in(self, session: UserSession) -> None:
        if not self._locked or session.username != self._ctx.user.username:
            return
        # A new session: a fresh 12-hour limit, and no emergency grants carried over.
        self._ctx.user = session
        self._idle.logged_in()
        self._update_user()
        self._restore()

    def _restore(self) -> None:
        self._locked = False
        self.lock_screen.setVisible(False)
        self.lock_screen.form.reset()
        self.workspace.setVisible(True)
        self.page_stack.setVisible(True)
        self.lock_button.setEnabled(True)
        self.lock_action.setEnabled(True)
        for action in self._page_actions:
            action.setEnabled(True)
        self._update_access()
        row = self.navigation.currentRow()
        self._on_row_changed(row)
        if 0 <= row < len(self._pages):
            target = self._pages[row].focus_target() or self.navigation
            target.setFocus(Qt.FocusReason.OtherFocusReason)
        logger.info("workstation unlocked")
        self.unlocked.emit()

    @Slot()
    def _tick(self) -> None:
        if self._locked:
            return
        if self._idle.should_lock():
            self.lock("idle")
        elif self._idle.full_login_due():
            self.lock("session")
        else:
            self._update_access()

    # -- navigation -----------------------------------------------------------------------------------

    @Slot(int)
    def _on_row_changed(self, row: int) -> None:
        if not 0 <= row < len(self._pages):
            return
        self.page_stack.setCurrentIndex(row)
        self.setWindowTitle(f"{APP_NAME} — {self._specs[row].title}")
        if not self._locked:
            self._pages[row].page_activated()

    # -- status -----------------------------------------------------------------------------------------

    def _update_user(self) -> None:
        user = self._ctx.user
        self.user_label.setText(f"{user.display_name} · {user.role.title}")

    @Slot()
    def _update_access(self) -> None:
        grants = self._ctx.user.active_grants()
        has_grant = bool(grants)
        if has_grant != self._had_grant:
            self._had_grant = has_grant
            for page in self._pages:
                page.refresh_access()
        if not has_grant or self._locked:
            self.banner.setVisible(False)
            return
        grant = max(grants, key=lambda g: g.expires_at)
        minutes = max(1, math.ceil((grant.expires_at - self._ctx.user.clock()) / 60.0))
        self.banner.setText(
            f"Emergency access active — {minutes} min left. Reason: {grant.reason}. "
            "Every record you open is recorded and reviewed."
        )
        self.banner.setVisible(True)

    def refresh_pending(self) -> None:
        """Count pending changes on a worker; a request while one runs queues one more."""
        if self._pending_running:
            self._pending_again = True
            return
        self._pending_running = True
        self._runner.submit(
            self._pending_changes, on_result=self._pending_counted, on_error=self._pending_failed,
            owner=self, name="outbox.pending",
        )  # fmt: skip

    def _pending_counted(self, n: object) -> None:
        self._pending_running = False
        count = int(n) if isinstance(n, int) else 0
        self.pending_label.setText(pending_text(count))
        self.pending_label.setProperty("state", "pending" if count else "clear")
        repolish(self.pending_label)
        self._again()

    def _pending_failed(self, _error: BaseException) -> None:
        self._pending_running = False
        self.pending_label.setText("Pending changes unknown")
        self._again()

    def _again(self) -> None:
        if self._pending_again:
            self._pending_again = False
            self.refresh_pending()

    @Slot(object)
    @Slot(object)
    def set_sync_status(self, status: object) -> None:
        """Show a SyncStatus: the status bar line, and a banner while offline."""
        from views.sync_page import status_text

        state = str(getattr(status, "state", "offline"))
        self.sync_label.setText(status_text(status).split(" · changes are kept")[0])
        self.sync_label.setProperty("state", "online" if state == "online" else "offline")
        repolish(self.sync_label)
        offline = state == "offline"
        if offline:
            pending = int(getattr(status, "pending", 0))
            self.offline_banner.setText(
                "Offline: the central service cannot be reached. You can keep working; "
                f"{pending:,} change{'s' if pending != 1 else ''} will be sent when the connection returns."
            )
        self.offline_banner.setVisible(offline)
        self.refresh_pending()

    @Slot(object)
    def set_ehr_status(self, status: object) -> None:
        """Show an EhrStatus in the status bar: the EHR's state and what waits for a person."""
        from views.sync_page import ehr_short_text

        self.ehr_label.setText(ehr_short_text(status))
        self.ehr_label.setProperty("state", "online" if str(getattr(status, "state", "")) == "online" else "offline")
        repolish(self.ehr_label)
        self.ehr_label.setVisible(True)

    def _on_records_changed(self, _change: object) -> None:
        self.refresh_pending()

    # -- shutdown ---------------------------------------------------------------------------------------

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once on :meth:`shutdown` (the owner's resources tied to this window)."""
        self._cleanups.append(fn)

    def shutdown(self) -> None:
        """Stop the idle timer, remove the activity filter, run the cleanups (idempotent)."""
        self._idle_timer.stop()
        if self._activity_source is not None:
            self._activity_source.removeEventFilter(self._activity)
            self._activity_source = None
        cleanups, self._cleanups = self._cleanups, []
        for fn in reversed(cleanups):
            fn()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
