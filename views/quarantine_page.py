"""Quarantine review: inbound records the importer could not use, why, and Retry / Discard.

Only ids, types and PHI-free reasons are shown, as plain text; the raw records never reach the GUI.
Everything runs through ``services.quarantine`` on a worker; the page follows the cache's change
signal for the ``quarantine`` table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFont, QFontMetrics, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from services.quarantine import QuarantinedItem, QuarantineOverview, QuarantineService, RetryResult
from views.pages import Page, PageEnv
from views.row_table_model import Index, RowTableModel
from views.widgets import ErrorLabel, message_box, plain_label, record_table

COL_AT, COL_SOURCE, COL_TYPE, COL_ID, COL_REASON = range(5)
COLUMNS = ("Received", "Source", "Type", "Resource id", "Reason")
# A typical value per column, to size it from the font.
SAMPLES = ("0000-00-00 00:00", "ehr:retrying", "PractitionerRole", "0000000000-abcdefgh", "")
EMPTY_TEXT = (
    "Nothing is in quarantine. Inbound records that cannot be used are kept here with the reason, "
    "for an administrator to retry or discard."
)
SUMMARY_REASONS = 4


def local_time(at: dt.datetime) -> str:
    """A cache timestamp (naive UTC) as local wall time."""
    return at.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def summary_text(overview: QuarantineOverview) -> str:
    """One line per frequent reason: ``12 × missing identifier: MRN``."""
    lines = [f"{n:,} × {reason}" for reason, n in overview.by_reason[:SUMMARY_REASONS]]
    rest = overview.by_reason[SUMMARY_REASONS:]
    if rest:
        lines.append(f"{sum(n for _, n in rest):,} more with {len(rest)} other reason{'s' if len(rest) != 1 else ''}")
    return "\n".join(lines)


def retry_text(result: RetryResult) -> str:
    parts = [f"{result.accepted:,} accepted"]
    if result.still_quarantined:
        parts.append(f"{result.still_quarantined:,} still in quarantine")
    if result.missing:
        parts.append(f"{result.missing:,} already gone")
    return "Retry finished: " + ", ".join(parts) + "."


class QuarantineTableModel(RowTableModel[QuarantinedItem]):
    """Quarantined records, newest first (the service's order)."""

    columns = COLUMNS

    def set_items(self, items: Sequence[QuarantinedItem]) -> None:
        self.beginResetModel()
        self._rows = list(items)
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.row_for(index)
        if item is None:
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            col = index.column()
            if col == COL_AT:
                return local_time(item.at)
            values = {COL_SOURCE: item.source, COL_TYPE: item.resource_type, COL_ID: item.resource_id, COL_REASON: item.reason}
            return values[col] or "—"
        return None


class QuarantinePage(Page):
    """Quarantined records with a reason summary, Retry and Discard (each confirmed first)."""

    def __init__(self, env: PageEnv, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("quarantinePage")
        self._env = env
        self._service = QuarantineService(env.ctx, env.reimport)
        self._generation = 0  # bumped on lock: results of older jobs are dropped
        self._loading = False
        self._reload_again = False
        self._acting = False

        title = plain_label("Quarantine", object_name="pageTitle")
        subtitle = plain_label(
            "Inbound EHR records that could not be used, and why. Retry them once the cause is fixed, "
            "or discard them.",
            object_name="pageSubtitle", word_wrap=True,
        )  # fmt: skip

        self.refresh_button = QPushButton("&Refresh", self)
        self.refresh_button.setShortcut(QKeySequence(QKeySequence.StandardKey.Refresh))
        self.refresh_button.setToolTip("Reload the list (F5)")
        self.refresh_button.clicked.connect(self.reload)
        self.retry_button = QPushButton("Re&try selected…", self)
        self.retry_button.setToolTip("Feed the selected records through the importer again")
        self.retry_button.clicked.connect(self.retry_selected)
        self.discard_button = QPushButton("&Discard selected…", self)
        self.discard_button.setObjectName("dangerButton")
        self.discard_button.setToolTip("Delete the selected records from quarantine for good")
        self.discard_button.clicked.connect(self.discard_selected)
        self.count_label = plain_label("", object_name="resultCount")
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        for b in (self.refresh_button, self.retry_button, self.discard_button):
            buttons.addWidget(b)
        buttons.addSpacing(12)
        buttons.addWidget(self.count_label, 1)

        self.summary_label = plain_label("", object_name="hintLabel", word_wrap=True)
        self.summary_label.setAccessibleName("Quarantined records by reason")
        self.summary_label.setVisible(False)
        self.message = ErrorLabel(self, object_name="quarantineMessage")

        self.model = QuarantineTableModel(self)
        self.table = record_table(self, self.model, object_name="quarantineTable",
                                  accessible_name="Quarantined records", multi_select=True)
        self.table.horizontalHeader().setStretchLastSection(True)
        self._fit_columns()
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)

        self.empty_label = plain_label(EMPTY_TEXT, object_name="pageSubtitle", word_wrap=True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.empty_label.setContentsMargins(24, 32, 24, 0)
        self.body = QStackedWidget(self)
        self.body.addWidget(self.table)
        self.body.addWidget(self.empty_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 14)
        layout.setSpacing(10)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addLayout(buttons)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.message)
        layout.addWidget(self.body, 1)

        env.cache_events.records_changed.connect(self._on_records_changed)  # type: ignore[attr-defined]
        self._update_buttons()

    def _fit_columns(self) -> None:
        self.table.ensurePolished()
        header = self.table.horizontalHeader()
        cell = self.table.fontMetrics()
        head_font = QFont(header.font())
        head_font.setBold(True)
        head = QFontMetrics(head_font)
        for col, (title, sample) in enumerate(zip(COLUMNS, SAMPLES, strict=True)):
            width = max(cell.horizontalAdvance(sample) + 24, head.horizontalAdvance(title) + 22)
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)

    # -- Page hooks -----------------------------------------------------------------------------

    def focus_target(self) -> QWidget:
        return self.table

    def page_activated(self) -> None:
        self.reload()

    def clear_sensitive(self) -> None:
        self._generation += 1
        self._loading = self._reload_again = self._acting = False
        self.model.clear()
        self.count_label.clear()
        self.summary_label.clear()
        self.summary_label.setVisible(False)
        self.message.clear_error()
        self._update_buttons()

    # -- loading --------------------------------------------------------------------------------

    @Slot()
    def reload(self) -> None:
        """Fetch the list on a worker; a request while one runs queues one more."""
        if self._loading:
            self._reload_again = True
            return
        self._loading = True
        self._env.runner.submit(
            self._service.overview, on_result=partial(self._loaded, self._generation),
            on_error=partial(self._load_failed, self._generation), owner=self, name="quarantine.overview",
        )  # fmt: skip

    def _loaded(self, generation: int, overview: QuarantineOverview) -> None:
        if generation != self._generation:
            return
        self._loading = False
        self.model.set_items(overview.items)
        self.body.setCurrentWidget(self.table if overview.total else self.empty_label)
        shown = len(overview.items)
        if overview.total == 0:
            self.count_label.clear()
        elif shown < overview.total:
            self.count_label.setText(f"Newest {shown:,} of {overview.total:,} records")
        else:
            self.count_label.setText(f"{overview.total:,} record{'s' if overview.total != 1 else ''}")
        self.summary_label.setText(summary_text(overview))
        self.summary_label.setVisible(overview.total > 0)
        self._update_buttons()
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _load_failed(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._loading = self._reload_again = False
        self.message.show_error(error)

    def _on_records_changed(self, change: object) -> None:
        if self.isVisible() and "quarantine" in getattr(change, "changed", {}):
            self.reload()

    # -- decisions ------------------------------------------------------------------------------

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [item.id for item in (self.model.row_at(r) for r in rows) if item is not None]

    def confirm(self, title: str, text: str) -> bool:
        box = message_box(
            self, title, text, QMessageBox.Icon.Question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    @Slot()
    def retry_selected(self) -> None:
        ids = self.selected_ids()
        if not ids or not self.confirm(
            "Retry quarantined records",
            f"Feed {_records(len(ids))} through the importer again? Those it accepts leave quarantine; "
            "the others stay with the reason of this attempt.",
        ):
            return
        self._act(self._service.retry, ids, lambda r: self.message.show_notice(retry_text(r)), "quarantine.retry")

    @Slot()
    def discard_selected(self) -> None:
        ids = self.selected_ids()
        if not ids or not self.confirm(
            "Discard quarantined records",
            f"Delete {_records(len(ids))} from quarantine for good? This cannot be undone; the EHR still "
            "holds the original.",
        ):
            return
        self._act(
            self._service.discard, ids, lambda n: self.message.show_notice(f"Discarded {_records(n)}."),
            "quarantine.discard",
        )  # fmt: skip

    def _act(self, fn: Callable[[list[int]], Any], ids: list[int], done: Callable[[Any], None], name: str) -> None:
        self._acting = True
        self.message.clear_error()
        self._update_buttons()
        generation = self._generation

        def finished(result: object) -> None:
            if generation == self._generation:
                self._acting = False
                done(result)
                self.reload()

        def failed(error: BaseException) -> None:
            if generation == self._generation:
                self._acting = False
                self.message.show_error(error)
                self._update_buttons()

        self._env.runner.submit(fn, ids, on_result=finished, on_error=failed, owner=self, name=name)

    def _update_buttons(self, *_args: object) -> None:
        has_selection = bool(self.table.selectionModel().selectedRows())
        self.retry_button.setEnabled(has_selection and not self._acting)
        self.discard_button.setEnabled(has_selection and not self._acting)
        self.refresh_button.setEnabled(not self._acting)


def _records(n: int) -> str:
    return f"{n:,} record{'s' if n != 1 else ''}"
