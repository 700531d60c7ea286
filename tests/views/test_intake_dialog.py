"""The intake review dialog: a letter in, suggestions reviewed field by field, a referral out.

Most tests run the service calls on an ImmediateExecutor (``make_desk(sync=True)``): every job
and its callback finish inside ``submit``. One test runs them on real worker threads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton
from sqlalchemy import select

from app.cache.models import Patient, Referral
from app.security.roles import Role
from services.intake import REVIEW_FIELDS
from tests.views.conftest import HTML_NAME, visible_texts
from views.intake_dialog import IntakeDialog, intake_factory, open_intake_dialog
from views.intake_fields import MAX_LETTER_BYTES, QtOffsets, read_letter_file
from views.pages import PageEnv

LETTERS = Path(__file__).resolve().parents[1] / "data" / "referral_letters"


def letter(name: str) -> str:
    return (LETTERS / name).read_text(encoding="utf-8")


def env_of(desk) -> PageEnv:
    return PageEnv(ctx=desk.ctx, runner=desk.runner, cache_events=desk.events)


@pytest.fixture
def intake(qtbot, make_desk):
    """A shown intake dialog on a coordinator's window (synchronous jobs) and what it created."""

    def make(role: Role = Role.COORDINATOR, *, sync: bool = True):
        desk = make_desk(role, sync=sync)
        created: list = []
        dialog = IntakeDialog(env_of(desk), desk.window, on_created=created.append)
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitExposed(dialog)
        dialog.activateWindow()  # focus events (the span highlight) need the active window
        qtbot.waitUntil(dialog.isActiveWindow)
        return desk, dialog, created

    return make


def extracted(dialog: IntakeDialog, text: str) -> IntakeDialog:
    dialog.letter.setPlainText(text)
    dialog.extract_button.click()
    assert dialog.extraction is not None
    return dialog


def accept_all(dialog: IntakeDialog) -> None:
    for row in dialog.rows.values():
        if row.needs_decision():
            row.accept_button.click()


def referral_rows(ws):
    with ws.cache.reader() as s:
        return [(r, s.get(Patient, r.patient_id)) for r in s.scalars(select(Referral).where(Referral.source == "local"))]


# --- extraction and the review form -------------------------------------------------------------------


def test_extract_shows_each_suggestion_with_its_confidence(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    rows = dialog.rows
    assert rows["patient_name"].text() == "Jane Q. Doe"
    assert rows["mrn"].text() == "1234567"
    assert rows["specialty"].text() == "Cardiology"
    assert rows["urgency"].text() == "urgent"
    assert rows["payer"].text() == "Great Plains Health Insurance"
    assert rows["referring_clinician"].text() == "Alan R. Whitcombe"
    # 03/04/1961 reads two ways: both offered, the likelier first, with its confidence.
    born = rows["birth_date"].editor
    assert [born.itemText(i) for i in range(born.count())] == ["1961-03-04", "1961-04-03"]
    assert rows["birth_date"].confidence.text() == "63%"
    assert all(rows[n].status() == "pending" for n in REVIEW_FIELDS)
    assert dialog.letter.isReadOnly()  # the spans stay right: editing needs "Edit letter"
    assert dialog.edit_button.isVisible() and not dialog.extract_button.isVisible()


def test_fields_not_in_the_letter_need_no_decision(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("02_uk_gp_2ww.txt"))
    for name in ("payer", "plan", "member_id"):
        assert dialog.rows[name].status() == "empty" and not dialog.rows[name].needs_decision()
        assert dialog.rows[name].state.text() == "Not in letter"


@pytest.mark.parametrize("name", ["patient_name", "birth_date", "reason", "member_id", "referring_org", "urgency"])
def test_focusing_a_field_highlights_exactly_its_span(intake, name):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    dialog.rows[name].editor.setFocus()
    field = dialog.extraction.suggestions(name)[0]
    assert dialog.highlighted_text() == field.source_text
    cursor = dialog.letter.textCursor()
    assert cursor.position() == field.span[0]  # scrolled to where it starts


def test_highlight_follows_the_chosen_reading_and_buttons_too(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("03_fax_cover_ortho.txt"))
    row = dialog.rows["specialty"]
    row.accept_button.setFocus()
    assert dialog.highlighted_text() == dialog.extraction.suggestions("specialty")[0].source_text
    row.editor.setCurrentIndex(1)  # the other reading
    assert dialog.highlighted_text() == dialog.extraction.suggestions("specialty")[1].source_text


def test_highlight_is_right_after_characters_outside_the_bmp(intake):
    _desk, dialog, _ = intake()
    text = "😀🏥 fax\n" + letter("01_us_letterhead_re_line.txt")
    assert QtOffsets(text)(3) == 5
    extracted(dialog, text)
    dialog.rows["mrn"].editor.setFocus()
    assert dialog.highlighted_text() == "1234567"


def test_create_stays_disabled_until_everything_is_decided_and_says_why(intake):
    _desk, dialog, _ = intake()
    assert not dialog.create_button.isEnabled()
    assert "extract" in dialog.hint.text()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    assert not dialog.create_button.isEnabled()
    assert "11 fields" in dialog.hint.text() and "choose the patient" in dialog.hint.text()
    names = [n for n in REVIEW_FIELDS if n != "plan"]
    for name in names:
        dialog.rows[name].accept_button.click()
    assert not dialog.create_button.isEnabled()
    assert "1 field (Plan)" in dialog.hint.text()
    dialog.rows["plan"].reject_button.click()
    assert "field" not in dialog.hint.text() and "choose the patient" in dialog.hint.text()
    dialog.new_patient_button.click()
    assert dialog.create_button.isEnabled()
    assert dialog.hint.text().startswith("Ready")
    # Editing a decided value takes the decision back.
    dialog.rows["reason"].editor.setEditText("Chest pain")
    assert not dialog.create_button.isEnabled() and "(Reason)" in dialog.hint.text()


def test_a_referral_needs_a_specialty_and_a_new_patient_needs_name_birth_date_and_mrn(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("23_demo_style.txt"))
    accept_all(dialog)
    dialog.rows["specialty"].reject_button.click()
    dialog.new_patient_button.click()
    hint = dialog.hint.text()
    assert "needs a specialty" in hint and "birth date, MRN" in hint
    assert not dialog.create_button.isEnabled()


def test_enter_accepts_and_moves_to_the_next_field(intake, qtbot):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    first = dialog.rows["patient_name"]
    assert dialog.focusWidget() in (first.editor, first.editor.lineEdit())
    qtbot.keyClick(first.editor.lineEdit(), Qt.Key.Key_Return)
    assert first.status() == "accept"
    assert dialog.focusWidget() in (dialog.rows["birth_date"].editor, dialog.rows["birth_date"].editor.lineEdit())
    qtbot.keyClick(dialog.focusWidget(), Qt.Key.Key_R, Qt.KeyboardModifier.AltModifier)
    assert dialog.rows["birth_date"].status() == "reject"
    assert not dialog.isHidden() and not dialog.created  # Enter never creates


def test_a_bad_birth_date_correction_is_refused_in_the_row(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    row = dialog.rows["birth_date"]
    row.editor.setEditText("4 March 1961")
    row.accept_button.click()
    assert row.decision is None and row.state.text() == "Use YYYY-MM-DD"


# --- creating --------------------------------------------------------------------------------------------


def test_a_corrected_value_and_a_rejected_field_reach_the_referral(intake, desk_ws):
    desk, dialog, created = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    dialog.decide("reason", "correct", "Exertional chest tightness, new T-wave inversion")
    dialog.decide("patient_name", "correct", "Jane Quinn Doe")
    dialog.decide("birth_date", "accept", candidate=1)  # the other reading of 03/04/1961
    dialog.decide("urgency", "reject")
    accept_all(dialog)
    dialog.find_patient()
    assert dialog.matches == []  # nobody like her on this workstation
    assert "New patient" in dialog.match_status.text()
    dialog.choose_new_patient()
    assert dialog.create_button.isEnabled(), dialog.hint.text()
    dialog.create_button.click()

    assert len(created) == 1 and dialog.result() == IntakeDialog.DialogCode.Accepted
    ((ref, patient),) = referral_rows(desk_ws)
    assert created[0].id == ref.id
    assert ref.reason == "Exertional chest tightness, new T-wave inversion"
    assert ref.specialty == "Cardiology" and ref.status == "new" and ref.owner == desk.ctx.user.username
    # Rejected: the referrer's urgency is left out (the triage model may set one where allowed).
    assert ref.urgency is None or ref.urgency_source == "model"
    assert ref.letter_text == letter("01_us_letterhead_re_line.txt").strip()
    assert (patient.name, patient.mrn, patient.birth_date) == ("Jane Quinn Doe", "1234567", dt.date(1961, 4, 3))
    # The local triage model's suggestion is recorded on the new referral.
    assert ref.triage_urgency in ("emergent", "urgent", "routine") and ref.triage_model
    assert created[0].suggested_urgency == ref.triage_urgency
    actions = [e.action for e in desk_ws.audit.entries()]
    assert actions.index("intake.review") < actions.index("referral.create") < actions.index("triage.suggest")
    assert dialog.letter.toPlainText() == "" and dialog.extraction is None  # nothing kept after closing


def test_an_existing_patient_can_be_chosen_and_conflicts_are_flagged(intake, desk_ws):
    _desk, dialog, created = intake()
    text = ("Re: Ada Testperson  DOB 1961-03-14  MRN MRN700001\n\nPlease see her in dermatology clinic for a "
            "changing pigmented lesion on the back. Routine.\n\nDr Paul Okonkwo\nHillside Practice\n")
    extracted(dialog, text)
    accept_all(dialog)
    dialog.find_patient()
    assert [m.patient.name for m in dialog.matches] == ["Ada Testperson"]
    assert dialog.match_table.isVisible() and dialog.match_table.item(0, 3).text().startswith("✓")
    dialog.match_table.selectRow(0)
    assert dialog.patient_mode == "existing"
    assert "Ada Testperson" in dialog.patient_choice.text()
    dialog.create_button.click()
    ((ref, patient),) = referral_rows(desk_ws)
    assert patient.mrn == "MRN700001" and ref.specialty == "Dermatology" and created


def test_match_conflicts_show_in_the_table(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, "Re: Ada Testperson  DOB 1961-03-15  MRN MRN700001\nPlease see her in cardiology clinic.\n")
    dialog.find_patient()
    assert dialog.match_table.item(0, 3).text() == "⚠ differs: birth date"
    dialog.choose_patient(dialog.matches[0].patient.id)
    assert "differs in birth date" in dialog.patient_choice.text()


def test_a_refused_create_keeps_the_letter_and_every_decision(intake, desk_ws):
    _desk, dialog, created = intake()
    text = letter("01_us_letterhead_re_line.txt").replace("MRN 1234567", "MRN MRN700002")  # Boris's MRN
    extracted(dialog, text)
    accept_all(dialog)
    dialog.rows["birth_date"].editor.setCurrentIndex(0)
    dialog.choose_new_patient()  # a new patient with an MRN that is someone else's: refused
    before = dialog.decisions()
    dialog.create_button.click()
    assert not created and referral_rows(desk_ws) == []
    assert dialog.message.isVisible() and "MRN belongs to a patient" in dialog.message.text()
    assert "Jane" not in dialog.message.text()
    assert dialog.letter.toPlainText() == text and dialog.decisions() == before
    assert dialog.isVisible() and dialog.create_button.isEnabled()


def test_a_failed_triage_suggestion_still_reports_the_new_referral_once(intake, desk_ws, monkeypatch):
    from app.errors import KnownError
    from services.referrals import ReferralService

    def broken(self, referral_id, policy=None):
        raise KnownError("The triage model is not available.")

    monkeypatch.setattr(ReferralService, "suggest_urgency", broken)
    _desk, dialog, created = intake()
    extracted(dialog, letter("03_fax_cover_ortho.txt"))
    accept_all(dialog)
    dialog.choose_new_patient()
    dialog.create_button.click()
    assert len(created) == 1 and len(referral_rows(desk_ws)) == 1
    assert dialog.isVisible() and "was created" in dialog.message.text() and "not available" in dialog.message.text()
    assert not dialog.create_button.isEnabled() and dialog.cancel_button.text() == "Close"
    assert dialog.hint.text() == "The referral was created."
    dialog.cancel_button.click()
    assert not dialog.isVisible() and len(referral_rows(desk_ws)) == 1


def test_the_runner_does_the_work_off_the_gui_thread(intake, qtbot, desk_ws):
    desk, dialog, created = intake(sync=False)
    dialog.letter.setPlainText(letter("03_fax_cover_ortho.txt"))
    dialog.extract_button.click()
    assert "Extracting" in dialog.hint.text() or dialog.extraction is not None
    qtbot.waitUntil(lambda: dialog.extraction is not None, timeout=10_000)
    accept_all(dialog)
    dialog.decide("birth_date", "accept")
    dialog.choose_new_patient()
    dialog.create_button.click()
    assert not dialog.create_button.isEnabled()  # no double create while it runs
    qtbot.waitUntil(lambda: bool(created), timeout=10_000)
    qtbot.waitUntil(lambda: not desk.runner.is_busy(), timeout=10_000)
    ((ref, patient),) = referral_rows(desk_ws)
    assert ref.specialty == "Orthopedics" and patient.name == "Jane Doe" and ref.triage_urgency


# --- plain text, files, lock -----------------------------------------------------------------------------


def test_markup_in_a_letter_renders_literally(intake):
    _desk, dialog, _ = intake()
    text = f"Re: {HTML_NAME}  DOB 1979-06-30  MRN MRN700003\n\nPlease see <i>him</i> in cardiology clinic for palpitations.\n"
    extracted(dialog, text)
    assert dialog.letter.toPlainText() == text
    dialog.decide("patient_name", "correct", HTML_NAME)
    assert dialog.rows["patient_name"].text() == HTML_NAME
    dialog.find_patient()
    dialog.choose_patient(dialog.matches[0].patient.id)
    assert HTML_NAME in dialog.patient_choice.text()
    assert dialog.match_table.item(0, 0).text() == HTML_NAME
    for label in dialog.findChildren(QLabel):
        assert label.textFormat() == Qt.TextFormat.PlainText, label.objectName()
    assert any(HTML_NAME in t for t in visible_texts(dialog))


def test_importing_a_letter_file(intake, tmp_path):
    _desk, dialog, _ = intake()
    path = tmp_path / "letter.txt"
    path.write_bytes(letter("02_uk_gp_2ww.txt").replace("\n", "\r\n").encode("utf-8") + b"\xff\xfe caf\xe9")
    dialog.import_file(path)
    text = dialog.letter.toPlainText()
    assert text.startswith(letter("02_uk_gp_2ww.txt")[:40]) and "\r" not in text
    assert dialog.letter_message.isVisible() and "could not be read as UTF-8" in dialog.letter_message.text()
    dialog.extract_button.click()
    assert dialog.rows["specialty"].text() == "Hematology"


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"%PDF-1.7\n\x00\x01\x02binary", "not a text file"),
    (b"\x80\x81\xfe" * 200, "not readable text"),
    (None, "too large"),
    ("missing", "not a file"),
])
def test_a_bad_letter_file_is_explained_and_changes_nothing(intake, tmp_path, content, message):
    _desk, dialog, _ = intake()
    dialog.letter.setPlainText("what was there")
    path = tmp_path / "Jane Doe referral.txt"
    if content is None:
        path.write_bytes(b"a" * (MAX_LETTER_BYTES + 1))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    dialog.import_file(path)
    assert dialog.letter_message.isVisible() and message in dialog.letter_message.text()
    assert "Jane" not in dialog.letter_message.text()  # the file name can be PHI
    assert dialog.letter.toPlainText() == "what was there"


def test_read_letter_file_reads_utf16_with_a_bom(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes("Re: Zoë Example\r\nPlease see in ENT.".encode("utf-16"))
    assert read_letter_file(path) == ("Re: Zoë Example\nPlease see in ENT.", 0)


def test_choose_file_uses_the_picker(intake, tmp_path):
    desk, _dialog, _ = intake()
    path = tmp_path / "l.txt"
    path.write_text(letter("22_minimal_note.txt"), encoding="utf-8")
    dialog = IntakeDialog(env_of(desk), desk.window, pick_file=lambda _p: str(path))
    dialog.import_button.click()
    assert dialog.letter.toPlainText() == letter("22_minimal_note.txt")
    dialog.clear_and_close()


def test_clear_and_close_drops_everything(intake):
    _desk, dialog, created = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    accept_all(dialog)
    dialog.clear_and_close()
    assert not dialog.isVisible() and dialog.letter.toPlainText() == ""
    assert dialog.extraction is None and dialog.decisions() == {} and not dialog.letter.extraSelections()
    assert all(row.text() == "" and row.editor.count() == 0 for row in dialog.rows.values())
    assert not created


def test_the_window_locking_closes_the_dialog_and_drops_the_letter(intake):
    desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    desk.window.lock("manual")
    assert not dialog.isVisible() and dialog.letter.toPlainText() == "" and dialog.extraction is None


def test_factory_and_open_helpers(intake, qtbot):
    desk, dialog, _ = intake()
    dialog.clear_and_close()
    built = intake_factory(env_of(desk))(desk.window)
    assert isinstance(built, IntakeDialog) and not built.isVisible()
    built.deleteLater()
    opened = open_intake_dialog(desk.window, env_of(desk))
    qtbot.waitExposed(opened)
    assert opened.isVisible() and opened.parent() is desk.window
    opened.clear_and_close()


def test_fits_the_screen_and_every_control_is_named_and_reachable(intake):
    _desk, dialog, _ = intake()
    extracted(dialog, letter("01_us_letterhead_re_line.txt"))
    assert dialog.width() <= 1240 and dialog.height() <= 750
    assert dialog.minimumSizeHint().width() <= 1280 and dialog.minimumSizeHint().height() <= 800
    for row in dialog.rows.values():
        assert row.editor.accessibleName() and row.accept_button.accessibleName().startswith("Accept ")
        assert row.editor.focusPolicy() & Qt.FocusPolicy.TabFocus
        assert row.label.buddy() is row.editor
    for button in dialog.findChildren(QPushButton):
        assert button.text() or button.accessibleName()
        assert not button.isDefault()
