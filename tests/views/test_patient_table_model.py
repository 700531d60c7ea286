"""The patient table model, without a window."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QModelIndex, Qt

from services.patients import PatientSummary
from tests.views.conftest import HTML_NAME
from views.patient_table_model import (
    COL_AGE,
    COL_BIRTH_DATE,
    COL_MRN,
    COL_NAME,
    COL_SEX,
    COLUMNS,
    ID_ROLE,
    ROW_ROLE,
    SORT_ROLE,
    PatientTableModel,
)

TODAY = dt.date(2026, 11, 25)
ROWS = [
    PatientSummary("p1", "MRN1", "Ada Testperson", dt.date(1961, 3, 14), "female"),
    PatientSummary("p2", "MRN2", HTML_NAME, dt.date(1979, 6, 30), "male"),
    PatientSummary("p3", "MRN3", "Dmitri Example", None, None),
]


def make(rows=ROWS) -> PatientTableModel:
    m = PatientTableModel(today=lambda: TODAY)
    m.set_patients(rows)
    return m


def test_model_passes_qt_model_tester(qtmodeltester):
    qtmodeltester.check(make())
    qtmodeltester.check(make([]))


def test_model_tester_survives_updates(qtmodeltester):
    m = make([])
    qtmodeltester.check(m)
    m.set_patients(ROWS)
    m.set_patients(ROWS[:1])
    m.clear()
    qtmodeltester.check(m)


def test_columns_and_display_are_plain_strings():
    m = make()
    assert m.columnCount() == len(COLUMNS) == 5
    assert [m.headerData(c, Qt.Orientation.Horizontal) for c in range(5)] == ["Name", "MRN", "Birth date", "Age", "Sex"]
    row = [m.data(m.index(1, c)) for c in range(5)]
    assert row == [HTML_NAME, "MRN2", "1979-06-30", "47", "Male"]  # the tags stay literal text
    assert [m.data(m.index(2, c)) for c in range(5)] == ["Dmitri Example", "MRN3", "", "", ""]


def test_roles():
    m = make()
    assert m.data(m.index(0, COL_NAME), ID_ROLE) == "p1"
    assert m.data(m.index(0, COL_MRN), ROW_ROLE) == ROWS[0]
    assert m.data(m.index(0, COL_AGE), SORT_ROLE) == 65
    assert m.data(m.index(2, COL_AGE), SORT_ROLE) == -1
    assert m.data(m.index(0, COL_BIRTH_DATE), SORT_ROLE) == "1961-03-14"
    assert m.data(m.index(0, COL_NAME), SORT_ROLE) == "ada testperson"
    # Tool tips would be rendered as rich text: the model never offers one.
    assert all(m.data(m.index(r, c), Qt.ItemDataRole.ToolTipRole) is None for r in range(3) for c in range(5))
    assert m.data(m.index(0, COL_SEX)) == "Female"
    assert m.data(QModelIndex()) is None
    assert m.patient_at(5) is None


def test_same_ids_update_in_place(qtbot):
    m = make()
    changed = [PatientSummary(p.id, p.mrn, p.name + " Jr", p.birth_date, p.sex) for p in ROWS]
    with qtbot.assertNotEmitted(m.modelReset), qtbot.waitSignal(m.dataChanged):
        m.set_patients(changed)
    assert m.data(m.index(0, COL_NAME)) == "Ada Testperson Jr"
    with qtbot.waitSignal(m.modelReset):
        m.set_patients(ROWS[1:])
    assert m.patient_ids() == ["p2", "p3"]
