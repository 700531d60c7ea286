"""The patient search results as a Qt table model.

The model holds frozen ``PatientSummary`` values (never ORM objects) and returns plain strings for
display; views render DisplayRole text literally. It deliberately returns nothing for ToolTipRole:
Qt renders tool tips as rich text when they look like HTML.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt

from services.patients import PatientSummary
from views.row_table_model import Index, RowTableModel

logger = logging.getLogger(__name__)

COL_NAME, COL_MRN, COL_BIRTH_DATE, COL_AGE, COL_SEX = range(5)
COLUMNS = ("Name", "MRN", "Birth date", "Age", "Sex")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
ROW_ROLE = Qt.ItemDataRole.UserRole + 3

_SEX = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Unknown"}



def sex_text(sex: str | None) -> str:
    if not sex:
        return ""
    return _SEX.get(sex.lower(), sex)


class PatientTableModel(RowTableModel[PatientSummary]):
    """Rows of ``PatientSummary``; columns name, MRN, birth date, age, sex.

    Roles: DisplayRole (plain text), SORT_ROLE (a value that sorts right: dates as dates, ages as
    numbers), ID_ROLE (the patient id), ROW_ROLE (the whole ``PatientSummary``).
    """

    columns = COLUMNS
    header_alignment = {COL_AGE: Qt.AlignmentFlag.AlignRight}

    def __init__(self, parent: QObject | None = None, today: Callable[[], dt.date] = dt.date.today) -> None:
        super().__init__(parent)
        self._today = today

    # -- content --------------------------------------------------------------------------------

    def set_patients(self, patients: Sequence[PatientSummary]) -> None:
        """Show ``patients``. Same ids in the same order: update in place (selection survives)."""
        new = list(patients)
        if [p.id for p in new] == [p.id for p in self._rows] and new:
            self._rows = new
            self.dataChanged.emit(self.index(0, 0), self.index(len(new) - 1, len(COLUMNS) - 1))
            return
        self.beginResetModel()
        self._rows = new
        self.endResetModel()

    def patient_at(self, row: int) -> PatientSummary | None:
        return self.row_at(row)

    def patient_ids(self) -> list[str]:
        return [p.id for p in self._rows]

    # -- Qt model interface --------------------------------------------------------------------

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        p = self.row_for(index)
        if p is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(p, col)
        if role == SORT_ROLE:
            return self._sort_key(p, col)
        if role == ID_ROLE:
            return p.id
        if role == ROW_ROLE:
            return p
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_AGE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, p: PatientSummary, col: int) -> str:
        if col == COL_NAME:
            return p.name
        if col == COL_MRN:
            return p.mrn
        if col == COL_BIRTH_DATE:
            return p.birth_date.isoformat() if p.birth_date else ""
        if col == COL_AGE:
            age = p.age(self._today())
            return "" if age is None else str(age)
        return sex_text(p.sex)

    def _sort_key(self, p: PatientSummary, col: int) -> Any:
        # One type per column, so the proxy compares like with like; missing values sort first.
        if col == COL_NAME:
            return p.name.casefold()
        if col == COL_MRN:
            return p.mrn
        if col == COL_BIRTH_DATE:
            return p.birth_date.isoformat() if p.birth_date else ""
        if col == COL_AGE:
            age = p.age(self._today())
            return -1 if age is None else age
        return sex_text(p.sex)
