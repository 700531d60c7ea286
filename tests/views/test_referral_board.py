"""The referral board through the real window: columns and card texts, drag and drop, keyboard
moves, refusals, filters, roles, reload on commits and lock. Service calls run on real workers."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

from app.cache.models import Patient, Referral
from app.security.roles import Role
from services.referral_board import BoardFilter
from services.referrals import MoveRefused, ReferralService, Refusal
from tests.views.referral_seed import seed_office
from views.referral_board_model import (
    CARD_ROLE,
    MIME_TYPE,
    BoardCriteria,
    ColumnModel,
    ColumnProxy,
    make_item,
)
from views.referral_board_page import READ_ONLY

MOVE = Qt.DropAction.MoveAction


@pytest.fixture
def office(desk_ws):
    return seed_office(desk_ws.cache, 40, terminal=4)


def board_page(qtbot, make_desk, role=Role.COORDINATOR):
    desk = make_desk(role)
    page = desk.window.page("referrals")
    qtbot.waitUntil(lambda: page.columns["new"].proxy.rowCount() > 0, timeout=10_000)
    return desk, page


def shown(page, code):
    p = page.columns[code].proxy
    return [p.data(p.index(r, 0), CARD_ROLE) for r in range(p.rowCount())]


def shown_ids(page, code):
    return [c.id for c in shown(page, code)]


def status_of(desk, referral_id):
    return ReferralService(desk.ctx).card(referral_id).status


def mime_for(referral_id):
    mime = QMimeData()
    mime.setData(MIME_TYPE, referral_id.encode())
    return mime


def drag_over(column, referral_id):
    mime = mime_for(referral_id)
    event = QDragMoveEvent(QPoint(20, 60), MOVE, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    column.dragMoveEvent(event)
    return event.isAccepted()


def drop(column, referral_id):
    mime = mime_for(referral_id)
    enter = QDragEnterEvent(QPoint(20, 60), MOVE, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    column.dragEnterEvent(enter)
    event = QDropEvent(QPointF(20, 60), MOVE, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    column.dropEvent(event)
    return enter.isAccepted() and event.isAccepted()


def test_cards_sit_in_their_columns_with_their_texts(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    assert desk.window.current_page_name() == "referrals"  # first for a coordinator
    service_board = ReferralService(desk.ctx).board(BoardFilter())
    for code in ("new", "triage", "awaiting-preauth", "ready-to-schedule", "scheduled"):
        assert shown_ids(page, code) == [c.id for c in service_board.in_column(code)]
        col = page.columns[code]
        breached = sum(c.breached for c in service_board.in_column(code))
        assert col.count_label.text() == str(len(service_board.in_column(code)))
        assert col.breached_label.text() == (f"▲ {breached} breached" if breached else "No SLA breach")
    card = shown(page, "new")[0]
    text = page.columns["new"].proxy.index(0, 0).data()
    assert card.patient_name in text and card.mrn in text and card.specialty in text
    assert "Untriaged" in text and f"{card.days_waiting} d / 2 d SLA" in text
    assert page.status_label.text().startswith("40 referrals")


def test_board_loads_off_the_gui_thread(qtbot, make_desk, office, monkeypatch):
    threads = []
    original = ReferralService.board

    def spy(self, *a, **kw):
        threads.append(threading.current_thread())
        return original(self, *a, **kw)

    monkeypatch.setattr(ReferralService, "board", spy)
    board_page(qtbot, make_desk)
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_drag_and_drop_moves_the_referral(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    rid = office.first("new")
    assert drop(page.columns["triage"], rid)
    qtbot.waitUntil(lambda: rid in shown_ids(page, "triage"), timeout=5000)
    assert rid not in shown_ids(page, "new")
    assert status_of(desk, rid) == "triage"


def test_refused_drop_shows_the_reason_and_leaves_the_card(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    rid = office.first("new")  # untriaged
    assert not drag_over(page.columns["scheduled"], rid)
    assert page.message.isVisible()
    assert page.message.text() == "Scheduled: An untriaged referral cannot skip Triage"
    assert page.columns["scheduled"].property("drop") == "refused"
    assert not drop(page.columns["scheduled"], rid)
    assert rid in shown_ids(page, "new") and status_of(desk, rid) == "new"


def test_ctrl_right_moves_to_the_next_allowed_column(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    rid = office.first("new")
    assert page.select_card(rid)
    qtbot.keyClick(page.columns["new"].list, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: rid in shown_ids(page, "triage"), timeout=5000)
    assert status_of(desk, rid) == "triage"
    # The card keeps the keyboard focus in its new column.
    assert page.columns["triage"].list.hasFocus() and page.columns["triage"].current_id() == rid


def test_awaiting_preauth_cannot_skip_the_decision(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    rid = office.first("awaiting-preauth")  # requested, not decided
    assert page.select_card(rid)
    qtbot.keyClick(page.columns["awaiting-preauth"].list, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert "Pre-authorization is still pending" in page.message.text()
    assert rid in shown_ids(page, "awaiting-preauth") and status_of(desk, rid) == "awaiting-preauth"


def test_a_refusal_from_the_service_keeps_the_card(qtbot, make_desk, office, monkeypatch):
    _desk, page = board_page(qtbot, make_desk)
    rid = office.first("triage")

    def refuse(self, referral_id, to, *, reason=None):
        raise MoveRefused(Refusal("book-first", "Book an appointment before moving to Scheduled"))

    monkeypatch.setattr(ReferralService, "move", refuse)  # the card's facts said yes; fresh ones say no
    monkeypatch.setattr(page, "refusal", lambda referral_id, to: None)
    page.move_card(rid, "ready-to-schedule")
    qtbot.waitUntil(lambda: page.message.text().startswith("Not moved"), timeout=5000)
    assert page.message.text() == "Not moved: Book an appointment before moving to Scheduled"
    assert rid in shown_ids(page, "triage")


def test_move_menu_lists_allowed_and_refused_targets(qtbot, make_desk, office):
    _desk, page = board_page(qtbot, make_desk)
    menu = page.move_menu(office.first("new"))
    actions = {a.data(): a for a in menu.actions()}
    assert set(actions) == {"triage", "awaiting-preauth", "ready-to-schedule", "scheduled", "completed", "closed"}
    assert actions["triage"].isEnabled() and actions["triage"].text() == "Triage"
    assert actions["closed"].isEnabled() and actions["closed"].text() == "Closed…"  # asks for a reason
    assert not actions["scheduled"].isEnabled()
    assert actions["scheduled"].text() == "Scheduled — An untriaged referral cannot skip Triage"
    menu.deleteLater()


def test_closing_asks_for_a_reason(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    rid = office.first("triage")
    asked = []
    page.ask = lambda parent, title, prompt: asked.append(prompt) or "Patient moved away"
    page.move_card(rid, "closed")
    qtbot.waitUntil(lambda: page.card(rid) is not None and page.card(rid).status == "closed", timeout=5000)
    assert asked == ["Reason for closing this referral:"]
    assert page.columns["closed"].model.item(rid).note == "Patient moved away"
    page.ask = lambda parent, title, prompt: None  # cancelled: nothing happens
    other = office.referral_ids["triage"][1]
    page.move_card(other, "closed")
    assert status_of(desk, other) == "triage"


def test_filters_and_search_narrow_the_cards(qtbot, make_desk, office):
    _desk, page = board_page(qtbot, make_desk)

    def total():
        return sum(page.columns[c].proxy.rowCount() for c in page.columns)

    assert total() == 40
    qtbot.keyClicks(page.search_edit, "mrn800003")
    assert total() == 1 and shown_ids(page, "new") + shown_ids(page, "triage") + shown_ids(page, "awaiting-preauth") \
        + shown_ids(page, "ready-to-schedule") + shown_ids(page, "scheduled") == ["syn-ref-3"]  # fmt: skip
    assert page.status_label.text().startswith("1 of 40 referrals shown")
    page.search_edit.clear()
    page.specialty_combo.setCurrentIndex(page.specialty_combo.findData("cardiology"))
    cards = [c for code in page.columns for c in shown(page, code)]
    assert cards and {c.specialty for c in cards} == {"Cardiology"}
    page.specialty_combo.setCurrentIndex(0)
    page.urgency_combo.setCurrentIndex(page.urgency_combo.findData("untriaged"))
    assert {c.urgency for code in page.columns for c in shown(page, code)} == {None}
    page.urgency_combo.setCurrentIndex(0)
    page.breached_check.setChecked(True)
    breached = [c for code in page.columns for c in shown(page, code)]
    assert breached and all(c.breached for c in breached) and len(breached) < 40
    page.breached_check.setChecked(False)
    page.payer_combo.setCurrentIndex(page.payer_combo.findData("syn-org-acme"))
    assert {c.payer_id for code in page.columns for c in shown(page, code)} == {"syn-org-acme"}


def test_my_queue(qtbot, make_desk, office):
    _desk, page = board_page(qtbot, make_desk)
    page.mine_check.setChecked(True)
    mine = [c for code in page.columns for c in shown(page, code)]
    assert mine and {c.owner for c in mine} == {"demo-coordinator"}
    page.owner_combo.setCurrentIndex(page.owner_combo.findData(""))  # and unassigned: nothing is both
    assert sum(page.columns[c].proxy.rowCount() for c in page.columns) == 0


def test_analyst_reads_but_cannot_move(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk, Role.ANALYST)
    assert desk.window.page_names()[0] == "referrals"
    assert page.read_only_label.isVisible() and page.read_only_label.text() == READ_ONLY
    assert not page.new_button.isVisible()
    rid = office.first("new")
    card = page.card(rid)
    assert card.patient_name is None  # the flow, not the people
    assert "Patient not shown" in page.columns["new"].proxy.index(0, 0).data()
    assert not page.columns["new"].model.flags(page.columns["new"].model.index(0, 0)) & Qt.ItemFlag.ItemIsDragEnabled
    assert not drag_over(page.columns["triage"], rid)
    assert page.message.text() == f"Triage: {READ_ONLY}"
    page.select_card(rid)
    qtbot.keyClick(page.columns["new"].list, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert READ_ONLY in page.message.text()
    assert not any(a.isEnabled() for a in page.move_menu(rid).actions())
    assert status_of(desk, rid) == "new"


def test_a_commit_elsewhere_reloads_the_board(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    with desk.ws.cache.unit_of_work(user="sync", origin="sync") as s:
        s.add(Patient(id="syn-late", mrn="MRN899999", name="Late Arrival", source="ehr"))
        s.flush()
        s.add(Referral(id="syn-ref-late", patient_id="syn-late", status="new", specialty="Neurology", source="ehr"))
    qtbot.waitUntil(lambda: "syn-ref-late" in shown_ids(page, "new"), timeout=5000)


def test_lock_clears_the_board(qtbot, make_desk, office):
    desk, page = board_page(qtbot, make_desk)
    qtbot.keyClicks(page.search_edit, "Cardio")
    desk.window.lock()
    assert all(col.model.rowCount() == 0 and col.proxy.rowCount() == 0 for col in page.columns.values())
    assert page.search_edit.text() == "" and page.card(office.first("new")) is None


def test_column_model_passes_the_model_tester(qtmodeltester, desk_ws, office):
    ctx_cards = ReferralService(_ctx(desk_ws)).board(BoardFilter()).cards
    model = ColumnModel("new")
    model.set_items(make_item(c, "demo-coordinator") for c in ctx_cards[:10])
    proxy = ColumnProxy(model)
    qtmodeltester.check(model)
    qtmodeltester.check(proxy)
    model.apply(BoardCriteria.build(text=ctx_cards[0].mrn))
    proxy.refilter()
    assert proxy.rowCount() == 1
    model.put(make_item(ctx_cards[11], "demo-coordinator"))
    assert model.rowCount() == 11 and proxy.rowCount() == 1
    assert model.take(ctx_cards[0].id) is not None and proxy.rowCount() == 0


def _ctx(ws):
    from services.context import ServiceContext

    return ServiceContext(ws.cache, ws.audit, ws.users.demo_session(Role.COORDINATOR))


def test_keyboard_reaches_filters_and_columns_in_order(qtbot, make_desk, office):
    _desk, page = board_page(qtbot, make_desk)
    chain, w = [page.search_edit], page.search_edit.nextInFocusChain()
    while w is not page.search_edit:
        chain.append(w)
        w = w.nextInFocusChain()
    wanted = [page.search_edit, page.specialty_combo, page.urgency_combo, page.owner_combo, page.payer_combo,
              page.breached_check, page.mine_check, page.closed_check,
              *(page.columns[c].list for c in ("new", "triage", "awaiting-preauth", "ready-to-schedule", "scheduled"))]
    positions = [chain.index(x) for x in wanted]
    assert positions == sorted(positions)
    assert all(x.accessibleName() or x.text() for x in wanted)
    qtbot.keyClick(page.columns["new"].list, Qt.Key.Key_Right)  # plain arrows: the next column
    assert page.columns["triage"].list.hasFocus()
