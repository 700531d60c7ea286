"""The quarantine page: list and reason summary, empty state, Retry / Discard with confirmation,
refresh on the cache's change signal, admin only, cleared on lock."""

from __future__ import annotations

import json

from app.security.roles import Role
from services.quarantine import QuarantineOverview
from sync.fhir import systems
from sync.fhir.bulk_import import BulkImporter
from views.quarantine_page import COL_ID, COL_REASON, EMPTY_TEXT, QuarantineTableModel, summary_text

META = {"versionId": "1", "lastUpdated": "2024-05-01T08:00:00Z"}


def feed(ws, *resources: dict | bytes) -> None:
    importer = BulkImporter(ws.cache, source="ehr")
    for r in resources:
        importer.add(r if isinstance(r, bytes) else json.dumps(r).encode())
    importer.finish()


def orphan_encounter(eid: str = "enc-q1", pid: str = "pat-q1") -> dict:
    return {
        "resourceType": "Encounter", "id": eid, "meta": META, "status": "finished",
        "class": {"system": systems.ACT_CODE, "code": "AMB"}, "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2024-04-01T09:00:00Z"},
    }  # fmt: skip


def patient(pid: str, mrn: str | None) -> dict:
    p = {"resourceType": "Patient", "id": pid, "meta": META, "name": [{"family": "Synthetic"}]}
    if mrn:
        p["identifier"] = [{"system": systems.MRN, "value": mrn}]
    return p


def open_page(qtbot, make_desk, rows: int):
    desk = make_desk(Role.ADMINISTRATOR)
    desk.window.show_page("quarantine")
    page = desk.window.page("quarantine")
    qtbot.waitUntil(lambda: page.model.rowCount() == rows and not page._loading, timeout=5000)
    return desk, page


def test_model_passes_qt_model_tester(qtmodeltester, desk_ws):
    from services.context import ServiceContext
    from services.quarantine import QuarantineService

    feed(desk_ws, orphan_encounter(), patient("pat-x", None))
    ctx = ServiceContext(desk_ws.cache, desk_ws.audit, desk_ws.users.demo_session(Role.ADMINISTRATOR))
    model = QuarantineTableModel()
    model.set_items(QuarantineService(ctx).overview().items)
    qtmodeltester.check(model)
    assert model.data(model.index(0, COL_ID)) in {"enc-q1", "pat-x"}


def test_admin_only(make_desk):
    assert "quarantine" not in make_desk(Role.COORDINATOR).window.page_names()
    assert make_desk(Role.ADMINISTRATOR).window.page_names()[-1] == "quarantine"


def test_empty_state(qtbot, make_desk):
    _desk, page = open_page(qtbot, make_desk, 0)
    qtbot.waitUntil(lambda: page.body.currentWidget() is page.empty_label, timeout=5000)
    assert page.empty_label.text() == EMPTY_TEXT and page.empty_label.isVisible()
    assert not page.summary_label.isVisible()
    assert not page.retry_button.isEnabled() and not page.discard_button.isEnabled()


def test_list_summary_and_refresh_on_change(qtbot, make_desk, desk_ws):
    feed(desk_ws, orphan_encounter(), patient("pat-nomrn", None))
    _desk, page = open_page(qtbot, make_desk, 2)
    assert page.body.currentWidget() is page.table
    assert page.count_label.text() == "2 records"
    assert "1 × dangling reference: encounters.patient_id" in page.summary_label.text()
    assert "1 × missing identifier: MRN" in page.summary_label.text()
    feed(desk_ws, b'{"resourceType": "Patient", "id": "pat-cut"')  # a sync quarantines one more
    qtbot.waitUntil(lambda: page.model.rowCount() == 3, timeout=5000)
    assert page.model.data(page.model.index(0, COL_REASON)) == "invalid JSON"  # newest first


def test_discard_asks_first(qtbot, make_desk, desk_ws, monkeypatch):
    feed(desk_ws, orphan_encounter(), patient("pat-nomrn", None))
    _desk, page = open_page(qtbot, make_desk, 2)
    asked: list[str] = []
    answer = {"yes": False}

    def confirm(title: str, text: str) -> bool:
        asked.append(text)
        return answer["yes"]

    monkeypatch.setattr(page, "confirm", confirm)
    page.table.selectRow(0)
    assert page.discard_button.isEnabled()
    page.discard_button.click()
    assert asked and "1 record" in asked[0] and page.model.rowCount() == 2  # declined: nothing happens
    answer["yes"] = True
    page.discard_button.click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5000)
    assert page.message.text() == "Discarded 1 record."
    assert any(e.action == "quarantine.discard" for e in desk_ws.audit.entries())


def test_retry_accepts_the_fixed_record(qtbot, make_desk, desk_ws, monkeypatch):
    feed(desk_ws, orphan_encounter(), patient("pat-nomrn", None))
    feed(desk_ws, patient("pat-q1", "MRN0704"))  # the encounter's patient has arrived since
    _desk, page = open_page(qtbot, make_desk, 2)
    monkeypatch.setattr(page, "confirm", lambda *_: True)
    row = next(r for r in range(2) if page.model.data(page.model.index(r, COL_ID)) == "enc-q1")
    page.table.selectRow(row)
    page.retry_button.click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 1 and not page._acting, timeout=5000)
    assert page.message.text() == "Retry finished: 1 accepted."
    assert page.model.data(page.model.index(0, COL_ID)) == "pat-nomrn"


def test_lock_clears_the_page(qtbot, make_desk, desk_ws):
    feed(desk_ws, orphan_encounter())
    desk, page = open_page(qtbot, make_desk, 1)
    desk.window.lock("manual")
    assert page.model.rowCount() == 0 and page.count_label.text() == "" and not page.summary_label.isVisible()


def test_summary_folds_rare_reasons():
    overview = QuarantineOverview(items=(), total=9, by_reason=(("a", 3), ("b", 2), ("c", 1), ("d", 1), ("e", 1), ("f", 1)))
    assert summary_text(overview).splitlines() == ["3 × a", "2 × b", "1 × c", "1 × d", "2 more with 2 other reasons"]
