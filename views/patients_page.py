"""Patient look-up: a debounced search box over an audited, off-thread search.

Every search goes through ``PatientService.search`` on a worker: the service checks the role (or
an emergency grant) and commits the audit entry before it returns a single row. Results from a
search that was superseded, or that finished after the window locked, are dropped.
"""

from __future__ import annotations

import logging
from functools import partial

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import AccessDenied
from app.security.roles import Permission, allowed
from services.emergency_access import start_break_glass
from services.patients import MAX_RESULTS, PatientService, PatientSummary
from views.break_glass_dialog import BreakGlassDialog
from views.pages import Page, PageEnv, has_access
from views.patient_table_model import COL_AGE, COL_BIRTH_DATE, COL_MRN, COL_NAME, COL_SEX, SORT_ROLE, PatientTableModel
from views.widgets import ErrorLabel, plain_label, record_table

logger = logging.getLogger(__name__)

DEBOUNCE_MS = 250


class PatientsPage(Page):
    """Search patients by name fragment or MRN prefix.

    Signals:
        access_changed(): emergency access was granted (inherited from ``Page``).
    """

    def __init__(self, env: PageEnv, parent: QWidget | None = None, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        super().__init__(parent)
        self.setObjectName("patientsPage")
        self._env = env
        self._service = PatientService(env.ctx)
        self._generation = 0  # bumps on every new search and on lock; stale results are dropped
        self._last_query = ""
        self._searching = False
        self._dialog: BreakGlassDialog | None = None
        self._had_grant = False

        title = plain_label("Patients", object_name="pageTitle")
        subtitle = plain_label(
            "Find a patient by name or MRN. Every search is recorded in the audit log.",
            object_name="pageSubtitle",
        )

        self.search_edit = QLineEdit(self)
        self.search_edit.setObjectName("patientSearch")
        self.search_edit.setPlaceholderText("Search by name or MRN (at least 2 characters)")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAccessibleName("Patient search")
        self.search_edit.setMaxLength(100)

        self.emergency_button = QPushButton("Emergency access…", self)
        self.emergency_button.setObjectName("emergencyButton")
        self.emergency_button.setToolTip("Open patient records for a limited time with a stated reason")
        self.emergency_button.clicked.connect(self.open_break_glass)

        search_row = QHBoxLayout()
        search_row.setSpacing(8)
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(self.emergency_button)

        self.message = ErrorLabel(self, object_name="patientsMessage")
        self.count_label = plain_label("", object_name="resultCount")

        self.model = PatientTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.table = record_table(self, self.proxy, object_name="patientTable",
                                  accessible_name="Patient search results", row_height=28)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for col, width in ((COL_MRN, 150), (COL_BIRTH_DATE, 130), (COL_AGE, 80), (COL_SEX, 110)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 14)
        layout.setSpacing(10)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addLayout(search_row)
        layout.addWidget(self.message)
        layout.addWidget(self.count_label)
        layout.addWidget(self.table, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(debounce_ms)
        self._debounce.timeout.connect(self.search_now)
        self.search_edit.textChanged.connect(self._on_text_changed)
        self.search_edit.returnPressed.connect(self.search_now)
        env.cache_events.records_changed.connect(self._on_records_changed)  # type: ignore[attr-defined]

        self.refresh_access()

    # -- Page hooks -----------------------------------------------------------------------------

    def focus_target(self) -> QWidget:
        return self.search_edit

    def clear_sensitive(self) -> None:
        self._generation += 1
        self._debounce.stop()
        self._searching = False
        self._last_query = ""
        self.model.clear()
        self.search_edit.blockSignals(True)
        self.search_edit.clear()
        self.search_edit.blockSignals(False)
        self.message.clear_error()
        self.count_label.clear()
        if self._dialog is not None:
            self._dialog.reject()

    def refresh_access(self) -> None:
        user = self._env.ctx.user
        by_role = allowed(user.role, Permission.PATIENT_READ)
        grant = bool(user.active_grants())
        self.emergency_button.setVisible(not by_role)
        self.emergency_button.setEnabled(not grant)
        self.emergency_button.setText("Emergency access active" if grant else "Emergency access…")
        if self._had_grant and not grant and not by_role:
            # The grant ran out: what it allowed to be shown goes away with it.
            self._generation += 1
            self.model.clear()
            self.count_label.clear()
            self.message.show_notice("Emergency access has ended.")
        self._had_grant = grant

    # -- searching ------------------------------------------------------------------------------

    @Slot(str)
    def _on_text_changed(self, text: str) -> None:
        if not text.strip():
            self._debounce.stop()
            self._generation += 1
            self._last_query = ""
            self.model.clear()
            self.message.clear_error()
            self.count_label.clear()
            return
        self._debounce.start()

    @Slot()
    def search_now(self) -> None:
        """Search for the box's text now (Return, or the debounce timer)."""
        self._debounce.stop()
        text = self.search_edit.text().strip()
        if not text:
            return
        self._start_search(text)

    def _start_search(self, text: str) -> None:
        self._generation += 1
        self._last_query = text
        self._searching = True
        self.count_label.setText("Searching…")
        self._env.runner.submit(
            self._service.search, text,
            on_result=partial(self._on_results, self._generation),
            on_error=partial(self._on_error, self._generation),
            owner=self, name="patient.search",
        )  # fmt: skip

    def _on_results(self, generation: int, patients: list[PatientSummary]) -> None:
        if generation != self._generation:
            return
        self._searching = False
        self.message.clear_error()
        self.model.set_patients(patients)
        n = len(patients)
        if n == 0:
            self.count_label.setText("No patient matches.")
        elif n >= MAX_RESULTS:
            self.count_label.setText(f"Showing the first {n} matches: type more to narrow the search.")
        else:
            self.count_label.setText(f"{n} patient{'s' if n != 1 else ''}")

    def _on_error(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._searching = False
        self.model.clear()
        self.count_label.clear()
        self.message.show_error(error)
        if isinstance(error, AccessDenied) and self.emergency_button.isVisible():
            self.emergency_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_records_changed(self, change: object) -> None:
        # Re-run the current search only when a shown patient changed (each search is audited).
        changed = getattr(change, "changed", {}).get("patients")
        if not changed or not self._last_query or self._searching or not self.isVisible():
            return
        if changed & set(self.model.patient_ids()):
            self._debounce.start()

    # -- emergency access -----------------------------------------------------------------------

    @Slot()
    def open_break_glass(self) -> None:
        if self._dialog is not None:
            return
        dialog = BreakGlassDialog(self, default_minutes=self._env.break_glass_minutes)
        dialog.accepted.connect(partial(self._start_break_glass, dialog))
        dialog.finished.connect(self._dialog_closed)
        self._dialog = dialog
        dialog.open()

    @Slot()
    def _dialog_closed(self) -> None:
        if self._dialog is not None:
            self._dialog.deleteLater()
        self._dialog = None

    def _start_break_glass(self, dialog: BreakGlassDialog) -> None:
        reason, minutes = dialog.reason(), dialog.minutes()
        self.emergency_button.setEnabled(False)
        self._env.runner.submit(
            start_break_glass, self._env.ctx, reason, float(minutes),
            on_result=self._break_glass_started, on_error=self._break_glass_failed,
            owner=self, name="break-glass.start",
        )  # fmt: skip

    def _break_glass_started(self, _grant: object) -> None:
        logger.info("emergency access started")
        self.refresh_access()
        self.message.show_notice(
            "Emergency access is active. Every record you open is recorded and reviewed."
        )
        self.access_changed.emit()
        if self.search_edit.text().strip():
            self.search_now()
        else:
            self.search_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def _break_glass_failed(self, error: BaseException) -> None:
        self.refresh_access()
        self.message.show_error(error)

    def can_read(self) -> bool:
        return has_access(self._env.ctx.user, Permission.PATIENT_READ)
