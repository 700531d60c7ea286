"""The sync panel: conflicts to decide (keep mine / take theirs / edit), refused changes to retry,
and where the EHR write-backs stand.

Everything comes from ``services.sync_conflicts`` and ``services.ehr_writeback`` on a worker;
values are PHI-capable and shown as plain text, and cleared when the window locks.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from services.ehr_writeback import KIND_TEXT, EhrWriteOverview, ehr_write_overview
from services.sync_conflicts import ConflictView, FailedChange, SyncConflictService
from views.pages import Page, PageEnv
from views.widgets import ErrorLabel, plain_label

logger = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


def _item(text: str) -> QTableWidgetItem:
    # QTableWidgetItem text is never rich text; inbound values stay literal.
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


def status_text(status: Any) -> str:
    """One line for a SyncStatus (duck-typed: views do not import sync)."""
    last = status.last_sync.strftime("%H:%M:%S UTC") if status.last_sync else "never"
    state = str(status.state)
    if state == "online":
        head = f"Online · last sync {last}"
    elif state == "offline":
        head = f"Offline · last sync {last} · changes are kept and sent when the connection returns"
    else:
        head = f"Sync needs attention · last sync {last}"
    parts = [head]
    if status.conflicts:
        parts.append(f"{status.conflicts} conflict{'s' if status.conflicts != 1 else ''}")
    if status.failed:
        parts.append(f"{status.failed} refused")
    return " · ".join(parts)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def ehr_short_text(status: Any) -> str:
    """The status bar's EHR text for an EhrStatus (duck-typed): the state and what needs a person."""
    parts = [f"EHR {status.state}"]
    if status.not_accepted:
        parts.append(f"{status.not_accepted:,} not accepted")
    if status.conflicts:
        parts.append(_count(status.conflicts, "conflict"))
    if status.failed:
        parts.append(f"{status.failed:,} refused")
    return " · ".join(parts)


def ehr_status_text(status: Any) -> str:
    """The Sync page's EHR line for an EhrStatus: the state, the last pull, the last problem."""
    state = str(status.state)
    head = f"EHR {state}"
    if state != "not configured":
        head += f" · last pull {status.last_pull:%Y-%m-%d %H:%M} UTC" if status.last_pull else " · no pull yet"
    offline = "Changes are kept here and sent when the EHR can be reached." if state == "offline" else ""
    tail = " ".join(t for t in (status.last_error, offline) if t)
    return f"{head} · {tail}" if tail else head


def ehr_counts_text(overview: EhrWriteOverview) -> str:
    parts = []
    if pending := overview.count("pending"):
        parts.append(f"{_count(pending, 'change')} waiting to be sent")
    if n := overview.count("not-accepted"):
        parts.append(f"{n:,} not accepted by the EHR")
    if n := overview.count("conflict"):
        parts.append(_count(n, "conflict"))
    if n := overview.count("failed"):
        parts.append(f"{n:,} refused by the EHR")
    return " · ".join(parts) if parts else "Nothing is waiting for the EHR."


class EditConflictDialog(QDialog):
    """Type the value to keep for each field in conflict, starting from mine."""

    def __init__(self, conflict: ConflictView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit the values to keep")
        self.edits: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for field in conflict.fields:
            edit = QLineEdit(_text(conflict.mine.get(field)) if conflict.mine.get(field) is not None else "", self)
            edit.setToolTip(f"Theirs: {_text(conflict.theirs.get(field))}")
            form.addRow(plain_label(field), edit)
            self.edits[field] = edit
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(plain_label("Both workstations changed these fields. Enter what the record should say."))
        layout.addLayout(form)
        layout.addWidget(buttons)

    def values(self) -> dict[str, Any]:
        return {f: (e.text() or None) for f, e in self.edits.items()}


class SyncPage(Page):
    """Sync state, conflicts and refused changes, with the decisions an authorised user can take."""

    CONFLICT_COLUMNS = ("Record", "Fields", "Mine", "Theirs", "Why")
    FAILED_COLUMNS = ("Record", "Change", "Reason", "Tries")
    EHR_COLUMNS = ("Change", "Record", "Where it stands", "When")

    def __init__(self, env: PageEnv, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("syncPage")
        self._env = env
        self._service = SyncConflictService(env.ctx)
        self._conflicts: list[ConflictView] = []
        self._failed: list[FailedChange] = []

        title = plain_label("Sync", object_name="pageTitle")
        subtitle = plain_label(
            "Changes are kept locally and sent to the central service, and to the EHR where it accepts "
            "them. Nothing is overwritten silently: when two workstations change the same field, you decide here.",
            object_name="pageSubtitle", word_wrap=True,
        )  # fmt: skip
        self.state_label = plain_label(
            "Waiting for the first sync…" if env.sync is not None else "No central service is connected to this window.",
            object_name="syncSummary", word_wrap=True,
        )  # fmt: skip
        self.sync_button = QPushButton("&Sync now", self)
        self.sync_button.setObjectName("syncNow")
        self.sync_button.setEnabled(env.sync is not None)
        self.sync_button.clicked.connect(self._sync_now)
        top = QHBoxLayout()
        top.addWidget(self.state_label, 1)
        top.addWidget(self.sync_button)
        self.message = ErrorLabel(self, object_name="syncMessage")

        self.conflict_table = self._table(self.CONFLICT_COLUMNS, "Conflicts")
        self.mine_button = QPushButton("Keep &mine", self)
        self.theirs_button = QPushButton("Take &theirs", self)
        self.edit_button = QPushButton("&Edit…", self)
        self.mine_button.clicked.connect(partial(self._resolve, "mine"))
        self.theirs_button.clicked.connect(partial(self._resolve, "theirs"))
        self.edit_button.clicked.connect(partial(self._resolve, "edit"))
        conflict_buttons = QHBoxLayout()
        for b in (self.mine_button, self.theirs_button, self.edit_button):
            conflict_buttons.addWidget(b)
        conflict_buttons.addStretch(1)

        self.failed_table = self._table(self.FAILED_COLUMNS, "Refused changes")
        self.retry_button = QPushButton("&Retry", self)
        self.retry_button.clicked.connect(self._retry)
        failed_buttons = QHBoxLayout()
        failed_buttons.addWidget(self.retry_button)
        failed_buttons.addStretch(1)

        self.ehr_state_label = plain_label(
            "Waiting for the first EHR sync…" if env.ehr_sync is not None
            else "No EHR is configured on this workstation.",
            object_name="ehrSummary", word_wrap=True,
        )  # fmt: skip
        self.ehr_sync_button = QPushButton("Sync E&HR now", self)
        self.ehr_sync_button.setObjectName("ehrSyncNow")
        self.ehr_sync_button.setEnabled(env.ehr_sync is not None)
        self.ehr_sync_button.clicked.connect(self._ehr_sync_now)
        ehr_top = QHBoxLayout()
        ehr_top.addWidget(self.ehr_state_label, 1)
        ehr_top.addWidget(self.ehr_sync_button)
        self.ehr_counts_label = plain_label("", object_name="ehrCounts", word_wrap=True)
        self.ehr_table = self._table(self.EHR_COLUMNS, "EHR write-backs that need a person")
        header = self.ehr_table.horizontalHeader()
        for col in (0, 1, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(plain_label("Conflicts", object_name="sectionTitle"))
        layout.addWidget(self.conflict_table, 2)
        layout.addLayout(conflict_buttons)
        layout.addWidget(plain_label("Refused by the central service", object_name="sectionTitle"))
        layout.addWidget(self.failed_table, 1)
        layout.addLayout(failed_buttons)
        layout.addWidget(plain_label("EHR write-backs", object_name="sectionTitle"))
        layout.addLayout(ehr_top)
        layout.addWidget(self.ehr_counts_label)
        layout.addWidget(self.ehr_table, 2)

        env.cache_events.records_changed.connect(self._on_changed)  # type: ignore[attr-defined]
        if env.sync is not None:
            env.sync.status_changed.connect(self.show_status)  # type: ignore[attr-defined]
        if env.ehr_sync is not None:
            env.ehr_sync.status_changed.connect(self.show_ehr_status)  # type: ignore[attr-defined]
        self._update_buttons()

    def _table(self, columns: tuple[str, ...], name: str) -> QTableWidget:
        t = QTableWidget(0, len(columns), self)
        t.setHorizontalHeaderLabels(list(columns))
        t.setAccessibleName(name)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setTabKeyNavigation(False)
        t.verticalHeader().setVisible(False)
        t.verticalHeader().setDefaultSectionSize(26)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        t.itemSelectionChanged.connect(self._update_buttons)
        return t

    # -- Page hooks -------------------------------------------------------------------------------

    def page_activated(self) -> None:
        self.reload()

    def clear_sensitive(self) -> None:
        self._conflicts, self._failed = [], []
        self.conflict_table.setRowCount(0)
        self.failed_table.setRowCount(0)
        self.ehr_table.setRowCount(0)
        self._update_buttons()

    def focus_target(self) -> QWidget | None:
        return self.conflict_table

    # -- data -------------------------------------------------------------------------------------

    @Slot(object)
    def show_status(self, status: Any) -> None:
        self.state_label.setText(status_text(status))

    @Slot(object)
    def show_ehr_status(self, status: Any) -> None:
        # The list follows the cache (the EHR sync announces every write-back it moved).
        self.ehr_state_label.setText(ehr_status_text(status))

    def _on_changed(self, change: Any) -> None:
        if not self.isVisible():
            return
        tables = set(getattr(change, "changed", {}))
        if {"sync_conflicts", "outbox"} & tables:
            self.reload()
        elif "ehr_writes" in tables:
            self.reload_ehr()

    def reload(self) -> None:
        self._env.runner.submit(
            lambda: (self._service.open_conflicts(), self._service.failed_changes()),
            on_result=self._loaded, on_error=self._failed_to_load, owner=self, name="sync.load",
        )  # fmt: skip
        self.reload_ehr()

    def reload_ehr(self) -> None:
        self._env.runner.submit(
            ehr_write_overview, self._env.ctx.cache,
            on_result=self._ehr_loaded, on_error=self._failed_to_load, owner=self, name="sync.ehr",
        )  # fmt: skip

    def _ehr_loaded(self, overview: EhrWriteOverview) -> None:
        self.ehr_counts_label.setText(ehr_counts_text(overview))
        rows = overview.needing_a_person
        self.ehr_table.setRowCount(len(rows))
        for row, w in enumerate(rows):
            values = (KIND_TEXT.get(w.kind, w.kind), w.entity_id, w.text, f"{w.updated_at:%Y-%m-%d %H:%M} UTC")
            for col, text in enumerate(values):
                item = _item(text)
                item.setToolTip(text)  # the reason can be longer than the column
                self.ehr_table.setItem(row, col, item)

    def _loaded(self, result: object) -> None:
        self._conflicts, self._failed = result  # type: ignore[misc]
        self.message.clear_error()
        self.conflict_table.setRowCount(len(self._conflicts))
        for row, c in enumerate(self._conflicts):
            values = (
                f"{c.entity} {c.entity_id}", ", ".join(c.fields),
                "; ".join(f"{f}: {_text(c.mine.get(f))}" for f in c.fields),
                "deleted" if c.server_deleted else "; ".join(f"{f}: {_text(c.theirs.get(f))}" for f in c.fields),
                c.reason,
            )  # fmt: skip
            for col, text in enumerate(values):
                self.conflict_table.setItem(row, col, _item(text))
        self.failed_table.setRowCount(len(self._failed))
        for row, f in enumerate(self._failed):
            for col, text in enumerate((f"{f.entity} {f.entity_id}", f.op, f.reason, str(f.attempts))):
                self.failed_table.setItem(row, col, _item(text))
        self._update_buttons()

    def _failed_to_load(self, error: BaseException) -> None:
        self.message.show_error(error)

    def _update_buttons(self) -> None:
        has_conflict = bool(self.conflict_table.selectedItems())
        for b in (self.mine_button, self.theirs_button, self.edit_button):
            b.setEnabled(has_conflict)
        self.retry_button.setEnabled(bool(self.failed_table.selectedItems()))

    # -- decisions --------------------------------------------------------------------------------

    def _selected(self, table: QTableWidget, rows: list[Any]) -> Any | None:
        indexes = table.selectionModel().selectedRows()
        return rows[indexes[0].row()] if indexes and indexes[0].row() < len(rows) else None

    def _resolve(self, choice: str) -> None:
        conflict = self._selected(self.conflict_table, self._conflicts)
        if conflict is None:
            return
        edited = None
        if choice == "edit":
            dialog = EditConflictDialog(conflict, self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return
            edited = dialog.values()
        self._env.runner.submit(
            self._service.resolve, conflict.id, choice, edited,
            on_result=lambda _r: self._after_decision(), on_error=self.message.show_error, owner=self,
            name="sync.resolve",
        )  # fmt: skip

    def _retry(self) -> None:
        failed = self._selected(self.failed_table, self._failed)
        if failed is None:
            return
        self._env.runner.submit(
            self._service.retry, failed.seq, on_result=lambda _r: self._after_decision(),
            on_error=self.message.show_error, owner=self, name="sync.retry",
        )  # fmt: skip

    def _after_decision(self) -> None:
        self.reload()
        self._sync_now()

    def _sync_now(self) -> None:
        if self._env.sync is not None:
            self._env.sync.request_sync.emit()  # type: ignore[attr-defined]

    def _ehr_sync_now(self) -> None:
        if self._env.ehr_sync is not None:
            self._env.ehr_sync.request_sync.emit()  # type: ignore[attr-defined]
