"""Patient search through the real window: debounced, off the GUI thread, audited, plain text."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt

from app.security.roles import Role
from services.patients import PatientService
from tests.views.conftest import HTML_NAME
from views.patient_table_model import COL_NAME


def names(page) -> list[str]:
    m = page.proxy
    return [m.data(m.index(r, COL_NAME)) for r in range(m.rowCount())]


def test_typing_searches_and_audits(qtbot, make_desk):
    desk = make_desk(Role.COORDINATOR)
    page = desk.window.page("patients")
    before = desk.ws.audit.count()
    qtbot.keyClicks(page.search_edit, "Test")
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 3, timeout=5000)
    assert sorted(names(page)) == sorted(["Ada Testperson", "Boris Testmann", HTML_NAME])
    assert page.count_label.text() == "3 patients"
    # Four key strokes, one search: the box is debounced.
    entries = desk.ws.audit.entries(newest_first=True)
    assert desk.ws.audit.count() == before + 1
    assert entries[0].action == "patient.search" and entries[0].user == "demo-coordinator"
    assert len(entries[0].record_ids) == 3 and not entries[0].break_glass


def test_search_runs_off_the_gui_thread(qtbot, make_desk, monkeypatch):
    threads = []
    original = PatientService.search

    def spy(self, text, *a, **kw):
        threads.append(threading.current_thread())
        return original(self, text, *a, **kw)

    monkeypatch.setattr(PatientService, "search", spy)
    desk = make_desk()
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, "MRN7000")
    qtbot.keyClick(page.search_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 5, timeout=5000)
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_one_character_shows_the_validation_message(qtbot, make_desk):
    desk = make_desk()
    desk.window.show_page("patients")  # a coordinator starts on the referral board
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, "A")
    qtbot.waitUntil(lambda: page.message.isVisible(), timeout=5000)
    assert page.message.text() == "Type at least two characters of a name or MRN."
    assert page.message.textFormat() == Qt.TextFormat.PlainText
    assert page.proxy.rowCount() == 0


def test_clearing_the_box_clears_the_results(qtbot, make_desk):
    desk = make_desk()
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, "Sample")
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1, timeout=5000)
    page.search_edit.clear()
    assert page.proxy.rowCount() == 0 and page.count_label.text() == ""


def test_html_name_is_shown_literally(qtbot, make_desk):
    desk = make_desk()
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, "Bold")
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1, timeout=5000)
    assert names(page) == [HTML_NAME]
    # The default delegate paints DisplayRole text as is: its size hint covers the tags too.
    index = page.proxy.index(0, COL_NAME)
    hint = page.table.itemDelegate().sizeHint(_option(page.table), index)
    assert hint.width() >= page.table.fontMetrics().horizontalAdvance(HTML_NAME)


def _option(view):
    from PySide6.QtWidgets import QStyleOptionViewItem

    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.font = view.font()
    option.fontMetrics = view.fontMetrics()
    return option


def test_sorting_uses_the_sort_role(qtbot, make_desk):
    desk = make_desk()
    page = desk.window.page("patients")
    qtbot.keyClicks(page.search_edit, "MRN7")
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 5, timeout=5000)
    page.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)  # age
    ages = [page.proxy.data(page.proxy.index(r, 3)) for r in range(5)]
    assert ages[:4] == sorted(ages[:4], key=int, reverse=True) and ages[4] == ""
