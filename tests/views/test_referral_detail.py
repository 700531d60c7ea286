"""The referral detail: header and EHR state, timeline and notes, letter, booking, pre-authorization
validation and the read-only view, through the board page with real workers."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt

from app.cache.models import EhrWrite
from app.security.roles import Role
from services.referrals import ReferralService
from tests.views.referral_seed import seed_office
from views.referral_detail import ReferralDetailDialog


@pytest.fixture
def office(desk_ws):
    return seed_office(desk_ws.cache, 30)


def open_detail(qtbot, make_desk, referral_id, role=Role.COORDINATOR):
    desk = make_desk(role)
    page = desk.window.page("referrals")
    qtbot.waitUntil(lambda: page.card(referral_id) is not None, timeout=10_000)
    dialog = page.open_detail(referral_id)
    qtbot.waitUntil(lambda: dialog.detail is not None, timeout=5000)
    return desk, page, dialog


def timeline(dialog: ReferralDetailDialog) -> list[str]:
    return [dialog.timeline.item(i).text() for i in range(dialog.timeline.count())]


def test_detail_shows_header_timeline_and_letter(qtbot, make_desk, office):
    rid = office.first("new")
    _desk, page, dialog = open_detail(qtbot, make_desk, rid)
    card = page.card(rid)
    assert dialog.isVisible() and page.detail_dialog is dialog
    assert dialog.patient.text().startswith(f"{card.patient_name} · {card.mrn} · age ")
    assert dialog.patient.textFormat() == Qt.TextFormat.PlainText
    assert f"Urgency: Untriaged · Status: New · {card.days_waiting} d / 2 d SLA" in dialog.facts.text()
    assert timeline(dialog)[-1].endswith("Created · seed")
    assert dialog.letter.isReadOnly() and dialog.letter.toPlainText().startswith("Dear colleague,")
    assert dialog.reason_text.toPlainText() == "Synthetic reason for referral 0"


def test_ehr_write_back_state_line(qtbot, make_desk, desk_ws, office):
    rid = next(r for r in office.referral_ids["triage"] if int(r.rsplit("-", 1)[1]) % 2)  # an EHR referral
    with desk_ws.cache.unit_of_work(user="sync", origin="sync") as s:
        s.add(EhrWrite(kind="task-status", entity="referrals", entity_id=rid, user="casey", status="not-accepted",
                       detail="The EHR does not accept this change (create Task)."))  # fmt: skip
    _desk, _page, dialog = open_detail(qtbot, make_desk, rid)
    assert dialog.ehr_line.text() == "EHR: kept here only — the EHR does not accept this change (create Task)"


def test_adding_a_note(qtbot, make_desk, office):
    rid = office.first("triage")
    desk, _page, dialog = open_detail(qtbot, make_desk, rid)
    qtbot.mouseClick(dialog.add_note_button, Qt.MouseButton.LeftButton)  # empty: refused here, nothing sent
    assert dialog.message.text() == "Write the note first."
    dialog.note_edit.setPlainText("Called the <b>patient</b>; prefers mornings")
    qtbot.mouseClick(dialog.add_note_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any("prefers mornings" in t for t in timeline(dialog)), timeout=5000)
    assert timeline(dialog)[0].endswith("Note · demo-coordinator\nCalled the <b>patient</b>; prefers mornings")
    assert dialog.note_edit.toPlainText() == ""
    events = ReferralService(desk.ctx).detail(rid).events
    assert events[0].kind == "note" and events[0].text == "Called the <b>patient</b>; prefers mornings"


def test_booking_a_slot_moves_the_card_to_scheduled(qtbot, make_desk, office):
    rid = office.first("ready-to-schedule")
    desk, page, dialog = open_detail(qtbot, make_desk, rid)
    dialog.tabs.setCurrentIndex(4)
    qtbot.mouseClick(dialog.find_slots_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(dialog._slots) > 0, timeout=5000)
    assert dialog.slots.currentRow() == 0
    qtbot.mouseClick(dialog.book_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.card(rid).status == "scheduled", timeout=5000)
    qtbot.waitUntil(lambda: dialog.detail.card.status == "scheduled", timeout=5000)
    assert rid in [page.columns["scheduled"].proxy.index(r, 0).data(Qt.ItemDataRole.UserRole + 2)
                   for r in range(page.columns["scheduled"].proxy.rowCount())]  # fmt: skip
    assert ReferralService(desk.ctx).card(rid).status == "scheduled"
    assert "booked" in dialog.appointments.item(0).text()
    assert any("Booked" in t for t in timeline(dialog))


def test_preauth_validation_keeps_what_was_typed(qtbot, make_desk, office):
    rid = office.first("awaiting-preauth")
    _desk, _page, dialog = open_detail(qtbot, make_desk, rid)
    dialog.tabs.setCurrentIndex(3)
    dialog.pa_status.setCurrentIndex(2)  # approved, without an authorization number
    dialog.pa_requested.setText(dt.date.today().isoformat())  # the workstation's date, as the service's
    dialog.pa_decided.setText(dt.date.today().isoformat())
    dialog.pa_number.clear()
    dialog.pa_plan.setText("Gold plan")
    qtbot.mouseClick(dialog.save_preauth_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(dialog.pa_message.isVisible, timeout=5000)
    assert dialog.pa_message.text() == "Enter the payer's authorization number."
    assert dialog.pa_plan.text() == "Gold plan" and dialog.save_preauth_button.isEnabled()
    dialog.pa_number.setText("AUTH-777")
    qtbot.mouseClick(dialog.save_preauth_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.detail.preauth is not None and dialog.detail.preauth.status == "approved",
                    timeout=5000)  # fmt: skip
    assert dialog.message.text() == "Pre-authorization saved."


def test_analyst_sees_the_detail_read_only(qtbot, make_desk, office):
    rid = office.first("triage")
    _desk, _page, dialog = open_detail(qtbot, make_desk, rid, Role.ANALYST)
    assert dialog.patient.text() == "Patient not shown for your role"
    for button in (dialog.add_note_button, dialog.decide_button, dialog.book_button, dialog.save_preauth_button,
                   dialog.save_transition_button, dialog.cancel_button):  # fmt: skip
        assert not button.isEnabled()
    assert dialog.find_slots_button.isEnabled()


def test_enter_opens_the_detail_and_lock_closes_it(qtbot, make_desk, office):
    desk = make_desk()
    page = desk.window.page("referrals")
    rid = office.first("new")
    qtbot.waitUntil(lambda: page.card(rid) is not None, timeout=10_000)
    page.select_card(rid)
    qtbot.keyClick(page.columns["new"].list, Qt.Key.Key_Return)
    assert page.detail_dialog is not None and page.detail_dialog.referral_id == rid
    dialog = page.detail_dialog
    qtbot.waitUntil(lambda: dialog.detail is not None, timeout=5000)
    desk.window.lock()
    assert not dialog.isVisible() and page.detail_dialog is None
