"""Drive the real window with canary patients and prove no PHI reaches a log."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from PySide6.QtCore import Qt

from app.logs import install_logging
from app.security.roles import Role
from tests.views.conftest import add_patients

CANARY = ("Zephyrine Canaryvale", "MRN7391846", dt.date(1957, 2, 23), "female")
NEEDLES = ("Zephyrine", "Canaryvale", "MRN7391846", "7391846", "1957-02-23")


@pytest.mark.allow_log_warnings
def test_search_lock_unlock_break_glass_leave_no_phi_in_logs(qtbot, make_desk, desk_ws, demo_password, capsys):
    install_logging(desk_ws.paths.logs, logging.DEBUG, stderr=True)
    try:
        add_patients(desk_ws, [CANARY])
        desk = make_desk(Role.COORDINATOR)
        page = desk.window.page("patients")
        qtbot.keyClicks(page.search_edit, "Canaryvale")
        qtbot.waitUntil(lambda: page.proxy.rowCount() == 1, timeout=5000)
        shown = page.proxy.index(0, 0).data()
        assert shown == CANARY[0]
        # What a careless developer might write: the filter has to catch it.
        logging.getLogger("careops.test").info("row shown: %s", shown)
        logging.getLogger("careops.test").info(f"row shown by hand: {shown}")  # noqa: G004
        # A failing search, a lock, a wrong then right unlock, and a role without access.
        page.search_edit.clear()
        qtbot.keyClicks(page.search_edit, "Z")
        desk.window.lock()
        form = desk.window.lock_screen.form
        qtbot.keyClicks(form.password_edit, "Zephyrine-is-not-the-password")
        qtbot.keyClick(form.password_edit, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not form.is_busy(), timeout=5000)
        form.password_edit.clear()
        qtbot.keyClicks(form.password_edit, demo_password)
        qtbot.keyClick(form.password_edit, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not desk.window.is_locked(), timeout=5000)
        analyst = make_desk(Role.ANALYST)
        qtbot.keyClicks(analyst.window.page("patients").search_edit, "Canaryvale")
        qtbot.wait(400)
    finally:
        for h in list(logging.getLogger().handlers):
            if getattr(h, "_careops", False):
                logging.getLogger().removeHandler(h)
                h.close()
    text = "".join(p.read_text(encoding="utf-8") for p in desk_ws.paths.logs.glob("*.log*"))
    captured = capsys.readouterr()
    text += captured.err + captured.out
    assert text.strip(), "the run logged nothing at all: the test would prove nothing"
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} reached a log"
