"""The sync panel and status bar, against a live central service (SQLite)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QObject, Signal

from app.cache.models import EhrWrite, Patient, Referral
from app.gui import build_main_window
from app.security.roles import Role
from services.ehr_writeback import queue_ehr_write
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


# -- the EHR section ------------------------------------------------------------------------------


def _ehr_status(state, **counts):
    values = {"pending": 0, "not_accepted": 0, "conflicts": 0, "failed": 0} | counts
    return SimpleNamespace(state=state, last_pull=dt.datetime(2026, 11, 25, 9, 30), last_error="", **values)


def test_ehr_write_backs_that_need_a_person_are_listed_with_their_text(qtbot, ws):
    ws.users.ensure_demo_users()
    with ws.cache.unit_of_work(user="sync", origin="sync") as s:
        s.add(EhrWrite(kind="task-status", entity="referrals", entity_id="sr-41", user="casey", status="not-accepted",
                       detail="The EHR does not accept this change (create Task)."))
        s.add(EhrWrite(kind="appointment", entity="appointments", entity_id="ap-7", user="casey", status="sent"))
    ehr = FakeSync()
    asked = []
    ehr.request_sync.connect(lambda: asked.append(True))
    runner = JobRunner(executor=ImmediateExecutor())
    window = build_main_window(ws, ws.users.demo_session(Role.COORDINATOR), runner=runner, ehr_sync=ehr)
    qtbot.addWidget(window)
    window.show()
    assert window.show_page("sync")
    page = window.page("sync")
    qtbot.waitUntil(lambda: page.ehr_table.rowCount() == 1)
    row = [page.ehr_table.item(0, c).text() for c in range(page.ehr_table.columnCount())]
    assert row[:2] == ["Referral status", "sr-41"]
    assert row[2] == "kept here only: the EHR does not accept this change (create Task)"
    assert row[3].endswith(" UTC")
    assert page.ehr_counts_label.text() == "1 not accepted by the EHR"

    assert page.ehr_state_label.text() == "Waiting for the first EHR sync…" and not window.ehr_label.isVisible()
    ehr.status_changed.emit(_ehr_status("offline", not_accepted=1))
    assert page.ehr_state_label.text().startswith("EHR offline · last pull 2026-11-25 09:30 UTC")
    assert window.ehr_label.isVisible() and window.ehr_label.text() == "EHR offline · 1 not accepted"

    # A user's change that queues a write-back: the list follows the cache.
    with ws.cache.unit_of_work(user="casey") as s:
        queue_ehr_write(s, kind="task-status", entity_id="sr-42", user="casey")
    qtbot.waitUntil(lambda: page.ehr_counts_label.text().startswith("1 change waiting to be sent"))
    page.ehr_sync_button.click()
    assert asked
    window.shutdown()


def test_without_an_ehr_the_section_says_so(qtbot, ws):
    ws.users.ensure_demo_users()
    window = build_main_window(ws, ws.users.demo_session(Role.COORDINATOR), runner=JobRunner(executor=ImmediateExecutor()))
    qtbot.addWidget(window)
    window.show()
    window.show_page("sync")
    page = window.page("sync")
    assert page.ehr_state_label.text() == "No EHR is configured on this workstation."
    assert not page.ehr_sync_button.isEnabled()
    qtbot.waitUntil(lambda: page.ehr_counts_label.text() == "Nothing is waiting for the EHR.")
    window.shutdown()


def test_the_shell_runs_the_configured_ehr_sync_and_stops_it(qtbot, home):
    from PySide6.QtWidgets import QApplication

    from app.gui import Shell
    from app.workstation import open_workstation

    home.mkdir(parents=True)
    # Nothing listens on the discard port: the EHR (and the central service) are unreachable, promptly.
    (home / "config.toml").write_text(
        'hub_url = "http://127.0.0.1:9"\n[ehr]\nbase_url = "http://127.0.0.1:9/fhir"\n', encoding="utf-8"
    )
    ws = open_workstation(home)
    ws.users.ensure_demo_users()
    runner = JobRunner()
    shell = Shell(QApplication.instance(), ws, runner)
    try:
        session = ws.users.demo_session(Role.COORDINATOR)
        shell.start_sync(session)
        assert shell.ehr_sync is not None
        window = shell.show(session)
        qtbot.addWidget(window)  # closed at the end: a window left open would outlive the test
        page = window.page("sync")
        qtbot.waitUntil(lambda: page.ehr_state_label.text().startswith("EHR offline"), timeout=10_000)
    finally:
        shell.shutdown()
        runner.shutdown()
        ws.close()
    assert shell.ehr_sync is None
