"""The shared base of the read-only table models: rows of frozen values, fixed columns."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

Index = QModelIndex | QPersistentModelIndex
T = TypeVar("T")


class RowTableModel(QAbstractTableModel, Generic[T]):
    """Rows of ``T`` (frozen dataclasses, never ORM objects) under the headers in ``columns``.

    Subclasses set ``columns`` and implement ``data``; ``header_alignment`` maps a column to the
    alignment of its header.
    """

    columns: tuple[str, ...] = ()
    header_alignment: dict[int, Qt.AlignmentFlag] = {}

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[T] = []

    def row_at(self, row: int) -> T | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_for(self, index: Index) -> T | None:
        """The row value behind a valid cell index of this model, else None."""
        if not index.isValid() or index.parent().isValid() or not 0 <= index.column() < len(self.columns):
            return None
        return self.row_at(index.row())

    def clear(self) -> None:
        """Forget every row (on lock, on a failed load): nothing of it stays in memory here."""
        if self._rows:
            self.beginResetModel()
            self._rows = []
            self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in self.header_alignment:
            return int(self.header_alignment[section] | Qt.AlignmentFlag.AlignVCenter)
        return None
