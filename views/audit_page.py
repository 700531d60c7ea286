"""Audit review: the newest entries of the hash-chained log and a chain check.

Entries hold ids, never PHI values; the ``detail`` of an emergency-access entry holds the reason
the user typed, shown as plain text like everything else here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QSortFilterProxyModel, Qt, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.security.audit import AuditEvent, VerifyResult
from services.audit_review import DEFAULT_LIMIT, AuditReviewService
from views.pages import Page, PageEnv
from views.row_table_model import Index, RowTableModel
from views.widgets import ErrorLabel, plain_label, record_table, repolish

logger = logging.getLogger(__name__)

(
    COL_SEQ, COL_TIME, COL_USER, COL_ROLE, COL_WORKSTATION, COL_ACTION, COL_ENTITY, COL_RECORDS,
    COL_BREAK_GLASS,
) = range(9)  # fmt: skip
COLUMNS = ("#", "Time", "User", "Role", "Workstation", "Action", "Entity", "Records", "Break-glass")
# A typical value per column, to size it from the font (no ResizeToContents on a big table).
SAMPLES = (
    "0000", "0000-00-00 00:00:00", "demo-coordinator", "followup_nurse", "ws-000000000000",
    "break-glass.start", "patients", "000", "YES",
)  # fmt: skip
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 3

BREAK_GLASS_BACKGROUND = QColor("#fdecea")
BREAK_GLASS_FOREGROUND = QColor("#a4161a")



def local_time(at: str) -> str:
    """An entry's ISO-8601 UTC time as local wall time; the raw text if it does not parse."""
    try:
        return dt.datetime.fromisoformat(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return at


class AuditTableModel(RowTableModel[AuditEvent]):
    """``AuditEvent`` rows, newest first. Emergency-access rows are tinted red."""

    columns = COLUMNS

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bold = QFont()
        self._bold.setBold(True)

    def set_events(self, events: Sequence[AuditEvent]) -> None:
        new = list(events)
        if [e.seq for e in new] == [e.seq for e in self._rows]:
            return  # entries never change: nothing to do
        if self._rows and new and len(new) > len(self._rows) and new[len(new) - len(self._rows):] == self._rows:
            # Only newer entries arrived at the top: insert them, so selection and scroll survive.
            added = len(new) - len(self._rows)
            self.beginInsertRows(QModelIndex(), 0, added - 1)
            self._rows = new
            self.endInsertRows()
            return
        self.beginResetModel()
        self._rows = new
        self.endResetModel()

    def event_at(self, row: int) -> AuditEvent | None:
        return self.row_at(row)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        e = self.row_for(index)
        if e is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(e, col)
        if role == SORT_ROLE:
            if col == COL_SEQ:
                return e.seq
            if col == COL_RECORDS:
                return len(e.record_ids)
            if col == COL_TIME:
                return e.at
            return self._display(e, col)
        if role == ROW_ROLE:
            return e
        if e.break_glass:
            if role == Qt.ItemDataRole.BackgroundRole:
                return QBrush(BREAK_GLASS_BACKGROUND)
            if role == Qt.ItemDataRole.ForegroundRole:
                return QBrush(BREAK_GLASS_FOREGROUND)
            if role == Qt.ItemDataRole.FontRole and col in (COL_BREAK_GLASS, COL_ACTION):
                return self._bold
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_SEQ, COL_RECORDS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _display(e: AuditEvent, col: int) -> str:
        values = {
            COL_SEQ: str(e.seq),
            COL_TIME: local_time(e.at),
            COL_USER: e.user,
            COL_ROLE: e.role,
            COL_WORKSTATION: e.workstation,
            COL_ACTION: e.action,
            COL_ENTITY: e.entity,
            COL_RECORDS: str(len(e.record_ids)),
            COL_BREAK_GLASS: "YES" if e.break_glass else "",
        }
        return values[col]


def describe(e: AuditEvent, max_ids: int = 6) -> str:
    """A plain-text account of one entry for the detail pane."""
    ids = ", ".join(e.record_ids[:max_ids])
    if len(e.record_ids) > max_ids:
        ids += f" and {len(e.record_ids) - max_ids} more"
    lines = [
        f"Entry {e.seq} at {local_time(e.at)}: {e.user} ({e.role}) on {e.workstation}",
        f"{e.action} on {e.entity}, {len(e.record_ids)} record{'s' if len(e.record_ids) != 1 else ''}"
        + (f": {ids}" if ids else ""),
    ]
    if e.break_glass:
        lines.append("EMERGENCY ACCESS (break-glass)")
    if e.detail:
        lines.append(f"Detail: {' '.join(e.detail.split())}")
    lines.append(f"Hash {e.hash[:16]}…, follows {e.prev_hash[:16]}…")
    return "\n".join(lines)


class AuditPage(Page):
    """The newest audit entries, a Refresh button and a Verify chain button."""

    def __init__(self, env: PageEnv, parent: QWidget | None = None, *, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__(parent)
        self.setObjectName("auditPage")
        self._env = env
        self._service = AuditReviewService(env.ctx)
        self._limit = limit
        self._loading = False
        self._reload_again = False
        self._generation = 0

        title = plain_label("Audit log", object_name="pageTitle")
        subtitle = plain_label(
            "Who did what, when and from which workstation. Emergency-access entries are marked red.",
            object_name="pageSubtitle",
        )

        self.refresh_button = QPushButton("&Refresh", self)
        self.refresh_button.setObjectName("refreshButton")
        self.refresh_button.setShortcut(QKeySequence(QKeySequence.StandardKey.Refresh))
        self.refresh_button.setToolTip("Reload the newest entries (F5)")
        self.refresh_button.clicked.connect(self.reload)
        self.verify_button = QPushButton("&Verify chain", self)
        self.verify_button.setObjectName("verifyButton")
        self.verify_button.setToolTip("Check every entry's hash link, from the first to the last")
        self.verify_button.clicked.connect(self.verify)

        self.count_label = plain_label("", object_name="resultCount")
        self.verify_label = plain_label("", object_name="verifyResult", word_wrap=True, selectable=True)
        self.verify_label.setVisible(False)
        self.message = ErrorLabel(self, object_name="auditMessage")

        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.verify_button)
        buttons.addSpacing(12)
        buttons.addWidget(self.count_label, 1)

        self.model = AuditTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = record_table(self, self.proxy, object_name="auditTable", accessible_name="Audit entries")
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_SEQ, Qt.SortOrder.DescendingOrder)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        self._fit_columns()
        self.table.selectionModel().currentRowChanged.connect(self._show_detail)

        self.detail_label = plain_label("", object_name="auditDetail", word_wrap=True, selectable=True)
        self.detail_label.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 14)
        layout.setSpacing(10)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addLayout(buttons)
        layout.addWidget(self.verify_label)
        layout.addWidget(self.message)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail_label)

        env.cache_events.records_changed.connect(self._on_records_changed)  # type: ignore[attr-defined]

    def _fit_columns(self) -> None:
        self.table.ensurePolished()
        header = self.table.horizontalHeader()
        header.ensurePolished()
        cell = self.table.fontMetrics()
        bold_font = QFont(self.table.font())
        bold_font.setBold(True)
        bold_cell = QFontMetrics(bold_font)
        head_font = QFont(header.font())
        head_font.setBold(True)
        head = QFontMetrics(head_font)
        for col, (title, sample) in enumerate(zip(COLUMNS, SAMPLES, strict=True)):
            metrics = bold_cell if col in (COL_ACTION, COL_BREAK_GLASS) else cell  # bold on break-glass rows
            width = max(metrics.horizontalAdvance(sample) + 24, head.horizontalAdvance(title) + 22)
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)

    @Slot(QModelIndex, QModelIndex)
    def _show_detail(self, current: QModelIndex, _previous: QModelIndex) -> None:
        event = self.proxy.data(current, ROW_ROLE) if current.isValid() else None
        if isinstance(event, AuditEvent):
            self.detail_label.setText(describe(event))
            self.detail_label.setVisible(True)
        else:
            self.detail_label.clear()
            self.detail_label.setVisible(False)

    # -- Page hooks -----------------------------------------------------------------------------

    def focus_target(self) -> QWidget:
        return self.table

    def page_activated(self) -> None:
        self.reload()

    def clear_sensitive(self) -> None:
        self._generation += 1
        self._loading = False
        self._reload_again = False
        self.model.clear()
        self.count_label.clear()
        self.message.clear_error()
        self.verify_label.setVisible(False)
        self.detail_label.clear()
        self.detail_label.setVisible(False)

    # -- loading --------------------------------------------------------------------------------

    @Slot()
    def reload(self) -> None:
        """Fetch the newest entries on a worker; a request while one runs queues one more."""
        if self._loading:
            self._reload_again = True
            return
        self._loading = True
        self._env.runner.submit(
            self._load, on_result=partial(self._loaded, self._generation),
            on_error=partial(self._failed, self._generation), owner=self, name="audit.recent",
        )  # fmt: skip

    def _load(self) -> tuple[list[AuditEvent], int]:
        return self._service.recent(self._limit), self._service.count()

    def _loaded(self, generation: int, result: tuple[list[AuditEvent], int]) -> None:
        if generation != self._generation:
            return
        self._loading = False
        events, total = result
        self.message.clear_error()
        self.model.set_events(events)
        shown = len(events)
        if total == 0:
            self.count_label.setText("No entries yet.")
        elif shown < total:
            self.count_label.setText(f"Newest {shown:,} of {total:,} entries")
        else:
            self.count_label.setText(f"{total:,} entr{'ies' if total != 1 else 'y'}")
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _failed(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._loading = False
        self._reload_again = False
        self.message.show_error(error)

    def _on_records_changed(self, _change: object) -> None:
        # Audit appends do not raise the cache's change signal (it lists domain records only), so
        # any committed change is a hint that new entries may exist.
        if self.isVisible():
            self.reload()

    # -- verification -----------------------------------------------------------------------------

    @Slot()
    def verify(self) -> None:
        self.verify_button.setEnabled(False)
        self._show_verify("Verifying the chain…", "busy")
        self._env.runner.submit(
            self._service.verify, on_result=partial(self._verified, self._generation),
            on_error=partial(self._verify_failed, self._generation), owner=self, name="audit.verify",
        )  # fmt: skip

    def _verified(self, generation: int, result: VerifyResult) -> None:
        self.verify_button.setEnabled(True)
        if generation != self._generation:
            return
        if result.ok:
            self._show_verify(f"Chain intact: {result.checked:,} entries", "ok")
        else:
            self._show_verify(
                f"Chain broken at entry {result.first_bad_seq}: {result.problem}. "
                f"{result.checked:,} entries before it are intact.",
                "bad",
            )

    def _verify_failed(self, generation: int, error: BaseException) -> None:
        self.verify_button.setEnabled(True)
        if generation != self._generation:
            return
        self.verify_label.setVisible(False)
        self.message.show_error(error)

    def _show_verify(self, text: str, state: str) -> None:
        self.verify_label.setText(text)
        self.verify_label.setProperty("state", state)
        repolish(self.verify_label)
        self.verify_label.setVisible(True)
