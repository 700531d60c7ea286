"""The sync panel and status bar, against a live central service (SQLite)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QObject, Signal

from app.cache.models import Patient, Referral
from app.gui import build_main_window
from app.security.roles import Role
from tests.sync.conftest import LiveHub, hub_db, live_hub, make_station  # noqa: F401
from tests.hub.conftest import pg_database  # noqa: F401
from views.workers import ImmediateExecutor, JobRunner


class FakeSync(QObject):
    status_changed = Signal(object)
    request_sync = Signal()


def _status(state, pending=0, conflicts=0, failed=0):
    return SimpleNamespace(state=state, pending=pending, conflicts=conflicts, failed=failed,
                           last_sync=dt.datetime(2026, 11, 25, 9, 30), last_error="")  # fmt: skip


@pytest.fixture
def conflicted(live_hub, make_station):  # noqa: F811
    a, b = make_station("a", live_hub.url), make_station("b", live_hub.url)
    with a.ws.cache.unit_of_work(user="u") as s:
        s.add(Patient(id="pat-1", mrn="MRN0000101", name="Synthia Example"))
        s.add(Referral(id="ref-1", patient_id="pat-1", specialty="Cardiology", urgency="routine"))
    a.engine.sync_once()
    b.engine.sync_once()
    with a.ws.cache.unit_of_work(user="u") as s:
        s.get(Referral, "ref-1").urgency = "urgent"
    with b.ws.cache.unit_of_work(user="u") as s:
        s.get(Referral, "ref-1").urgency = "emergent"
    a.engine.sync_once()
    assert b.engine.sync_once().conflicts == 1
    return a, b


@pytest.mark.parametrize("hub_db", ["sqlite"], indirect=True)
def test_conflict_shown_and_kept_mine_converges(qtbot, conflicted):
    a, b = conflicted
    sync = FakeSync()
    resolved = []
    sync.request_sync.connect(lambda: resolved.append(b.engine.sync_once()))
    runner = JobRunner(executor=ImmediateExecutor())
    window = build_main_window(b.ws, b.ws.users.demo_session(Role.COORDINATOR), runner=runner, sync=sync)
    qtbot.addWidget(window)
    window.show()
    assert window.show_page("sync")
    page = window.page("sync")
    qtbot.waitUntil(lambda: page.conflict_table.rowCount() == 1)
    assert "emergent" in page.conflict_table.item(0, 2).text() and "urgent" in page.conflict_table.item(0, 3).text()
    page.conflict_table.selectRow(0)
    assert page.mine_button.isEnabled()
    page.mine_button.click()
    qtbot.waitUntil(lambda: page.conflict_table.rowCount() == 0)
    assert resolved and resolved[-1].pushed == 1
    a.engine.sync_once()
    with a.ws.cache.reader() as s:
        assert s.get(Referral, "ref-1").urgency == "emergent"
    window.shutdown()


def test_status_bar_and_offline_banner(qtbot, ws):
    ws.users.ensure_demo_users()
    sync = FakeSync()
    window = build_main_window(ws, ws.users.demo_session(Role.ADMINISTRATOR), sync=sync)
    qtbot.addWidget(window)
    window.show()
    sync.status_changed.emit(_status("offline", pending=3))
    assert window.offline_banner.isVisible() and "3 changes will be sent" in window.offline_banner.text()
    assert window.sync_label.text().startswith("Offline · last sync 09:30:00")
    sync.status_changed.emit(_status("online"))
    assert not window.offline_banner.isVisible() and window.sync_label.text().startswith("Online")
    sync.status_changed.emit(_status("degraded", conflicts=2, failed=1))
    assert "2 conflicts" in window.sync_label.text() and "1 refused" in window.sync_label.text()
    window.shutdown()
