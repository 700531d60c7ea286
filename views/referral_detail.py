"""One referral in full: header, timeline and notes, letter, triage, pre-authorization,
scheduling and the care transition, in a dialog that fits a 1280x800 screen.

Every service call runs on the runner; after each change the dialog reloads the referral (one
audited read) and hands its fresh card to the board through ``card_changed``. A refused change
shows its message and keeps what the user typed. PHI is shown in plain-text widgets only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QDate, QDateTime, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.referral_workflow import PREAUTH_STATUSES, URGENCIES
from services.referrals import ReferralDetail, ReferralService, SlotView
from views.referral_board_model import owner_text, preauth_text, sla_text, urgency_text
from views.widgets import ErrorLabel, plain_label
from views.workers import JobRunner

logger = logging.getLogger(__name__)

CHECKLIST = ("Referral letter sent to the specialist", "Records shared", "Patient told the appointment",
             "Follow-up arranged")  # fmt: skip
INFORMED_HOW = ("phone", "letter", "portal", "in person", "email")
READ_ONLY = "Read only: your role may view referrals but not change them."
EVENT_TEXT = {
    "created": "Created", "moved": "Moved", "note": "Note", "assigned": "Assigned",
    "triage-suggested": "Triage suggestion", "urgency-decided": "Urgency decided", "preauth": "Pre-authorization",
    "booked": "Booked", "rescheduled": "Rescheduled", "cancelled": "Appointment cancelled", "no-show": "No-show",
    "transition": "Care transition", "ehr": "EHR",
}  # fmt: skip


def local_text(when: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A naive-UTC time from the service, in the workstation's time zone."""
    if when is None:
        return ""
    return when.replace(tzinfo=dt.UTC).astimezone().strftime(fmt)


def utc_midnight(day: QDate) -> dt.datetime:
    """The start of a local calendar day as naive UTC (what the service takes)."""
    local = dt.datetime(day.year(), day.month(), day.day()).astimezone()
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def event_line(kind: str, user: str, data: dict[str, Any], title: Callable[[str], str]) -> str:
    what = EVENT_TEXT.get(kind, kind)
    if kind == "moved" and data.get("from") and data.get("to"):
        what = f"Moved from {title(str(data['from']))} to {title(str(data['to']))}"
    elif kind == "urgency-decided" and data.get("urgency"):
        what = f"Urgency decided: {data['urgency']}"
    elif kind == "preauth" and data.get("status"):
        what = f"Pre-authorization {str(data['status']).replace('-', ' ')}"
    elif kind == "triage-suggested" and data.get("urgency"):
        what = f"Triage suggestion: {data['urgency']} ({data.get('queue') or '-'} queue)"
    return f"{what} · {user}"


class ReasonDialog(QDialog):
    """Asks for a reason (closing, cancelling); OK only once something is typed."""

    def __init__(self, title: str, prompt: str, *, max_length: int = 200, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reasonDialog")
        self.setWindowTitle(title)
        self.edit = QLineEdit(self)
        self.edit.setObjectName("reasonEdit")
        self.edit.setMaxLength(max_length)
        self.edit.setAccessibleName(prompt)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(False)
        self.edit.textChanged.connect(lambda t: ok.setEnabled(bool(t.strip())))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(plain_label(prompt, word_wrap=True))
        layout.addWidget(self.edit)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(440)

    def reason(self) -> str:
        return self.edit.text().strip()


def ask_reason(parent: QWidget | None, title: str, prompt: str) -> str | None:
    """The reason typed, or None when the user cancelled (or the window locked meanwhile)."""
    dialog = ReasonDialog(title, prompt, parent=parent)
    try:
        return dialog.reason() if dialog.exec() == QDialog.DialogCode.Accepted else None
    finally:
        dialog.deleteLater()


class ReferralDetailDialog(QDialog):
    """The detail of one referral.

    Signals:
        card_changed(object): the referral's fresh ``Card`` after each (re)load.
    """

    card_changed = Signal(object)

    def __init__(
        self, service: ReferralService, runner: JobRunner, referral_id: str, *, can_write: bool, can_triage: bool,
        ask: Callable[[QWidget | None, str, str], str | None] = ask_reason, parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("referralDetail")
        self.setWindowTitle("Referral")
        self._service = service
        self._runner = runner
        self.referral_id = referral_id
        self._can_write = can_write
        self._can_triage = can_triage
        self._ask = ask
        self.detail: ReferralDetail | None = None
        self._slots: list[SlotView] = []

        self.patient = plain_label("Loading…", object_name="detailPatient", selectable=True)
        self.facts = plain_label("", object_name="detailFacts", word_wrap=True, selectable=True)
        self.ehr_line = plain_label("", object_name="detailEhr", word_wrap=True)
        self.message = ErrorLabel(self, object_name="detailMessage")
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("detailTabs")
        self.tabs.setAccessibleName("Referral sections")
        self.tabs.addTab(self._timeline_tab(), "&Timeline")
        self.tabs.addTab(self._letter_tab(), "&Letter")
        self.tabs.addTab(self._triage_tab(), "T&riage")
        self.tabs.addTab(self._preauth_tab(), "&Pre-authorization")
        self.tabs.addTab(self._scheduling_tab(), "&Scheduling")
        self.tabs.addTab(self._transition_tab(), "Care tra&nsition")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)

        header = QWidget(self)
        header.setObjectName("detailHeader")
        head = QVBoxLayout(header)
        head.setContentsMargins(14, 10, 14, 10)
        head.setSpacing(4)
        head.addWidget(self.patient)
        head.addWidget(self.facts)
        head.addWidget(self.ehr_line)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 12)
        layout.setSpacing(8)
        layout.addWidget(header)
        if not can_write:
            layout.addWidget(plain_label(READ_ONLY, object_name="readOnlyNote", word_wrap=True))
        layout.addWidget(self.message)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(close)
        self.resize(1000, 680)
        self._set_enabled(False)

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        self._run(self._service.detail, self.referral_id, then=self._show, name="referral.detail")

    def _run(self, fn: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None,
             name: str, **kwargs: Any) -> None:  # fmt: skip
        def call() -> Any:
            return fn(*args, **kwargs)

        self._runner.submit(call, on_result=then or (lambda _r: self.load()), on_error=self._failed, owner=self, name=name)

    def _failed(self, error: BaseException) -> None:
        self.message.show_error(error)
        self._set_enabled(self.detail is not None)

    def _show(self, detail: ReferralDetail) -> None:
        self.detail = detail
        card = detail.card
        title = self._service.workflow.title
        if detail.patient is not None:
            self.patient.setText(f"{detail.patient.name} · {card.mrn or 'no MRN'} · "
                                 f"{'age ' + str(card.patient_age) if card.patient_age is not None else 'age unknown'}")  # fmt: skip
        else:
            self.patient.setText("Patient not shown for your role")
        self.setWindowTitle(f"Referral · {card.specialty}")
        self.facts.setText(" · ".join([
            card.specialty, f"Urgency: {urgency_text(card)}", f"Status: {title(card.status)}", sla_text(card),
            preauth_text(card), f"Owner: {owner_text(card)}",
        ] + ([f"Closed: {detail.closed_reason}"] if detail.closed_reason else [])))  # fmt: skip
        self.ehr_line.setText(self._ehr_text(detail))
        self._fill_timeline(detail, title)
        self.letter.setPlainText(detail.letter_text or "No letter text on record.")
        self.reason_text.setPlainText(detail.reason or "")
        self._fill_triage(detail)
        self._fill_preauth(detail)
        self._fill_appointments(detail)
        self._fill_transition(detail)
        self._set_enabled(True)
        self.card_changed.emit(card)

    @staticmethod
    def _ehr_text(detail: ReferralDetail) -> str:
        if detail.card.source != "ehr":
            return "EHR: not an EHR referral — kept in CareOps only"
        if detail.ehr_task is None:
            return "EHR: no change to send"
        return f"EHR: {detail.ehr_task.text.replace(': ', ' — ', 1)}"

    def _set_enabled(self, loaded: bool) -> None:
        for button in self.findChildren(QPushButton):
            writes = button.property("writes")
            if writes == "triage":
                button.setEnabled(loaded and self._can_triage)
            elif writes:
                button.setEnabled(loaded and self._can_write)

    def _button(self, text: str, slot: Callable[[], None], *, writes: str = "yes", name: str = "") -> QPushButton:
        button = QPushButton(text, self)
        button.setProperty("writes", writes)
        if name:
            button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    # -- timeline -----------------------------------------------------------------------------------

    def _timeline_tab(self) -> QWidget:
        tab = QWidget(self)
        self.timeline = QListWidget(tab)
        self.timeline.setObjectName("timeline")
        self.timeline.setAccessibleName("Timeline, newest first")
        self.timeline.setWordWrap(True)
        self.timeline.setAlternatingRowColors(True)
        self.note_edit = QPlainTextEdit(tab)
        self.note_edit.setObjectName("noteEdit")
        self.note_edit.setAccessibleName("New note")
        self.note_edit.setPlaceholderText("Write a note for the timeline")
        self.note_edit.setTabChangesFocus(True)
        self.note_edit.setFixedHeight(64)
        self.add_note_button = self._button("Add note", self.add_note, name="addNote")
        row = QHBoxLayout()
        row.addWidget(self.note_edit, 1)
        row.addWidget(self.add_note_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.timeline, 1)
        layout.addLayout(row)
        return tab

    def _fill_timeline(self, detail: ReferralDetail, title: Callable[[str], str]) -> None:
        self.timeline.clear()
        for e in detail.events:
            text = f"{local_text(e.at)} · {event_line(e.kind, e.user, e.data, title)}"
            if e.text:
                text += f"\n{e.text}"
            self.timeline.addItem(QListWidgetItem(text))

    @Slot()
    def add_note(self) -> None:
        text = self.note_edit.toPlainText().strip()
        if not text:
            self.message.show_error("Write the note first.")
            return
        self.add_note_button.setEnabled(False)
        self._run(self._service.add_note, self.referral_id, text, then=self._note_added, name="referral.note")

    def _note_added(self, _event: object) -> None:
        self.note_edit.clear()
        self.message.show_notice("Note added.")
        self.load()

    # -- letter -------------------------------------------------------------------------------------

    def _letter_tab(self) -> QWidget:
        tab = QWidget(self)
        self.reason_text = QPlainTextEdit(tab)
        self.reason_text.setObjectName("referralReason")
        self.reason_text.setReadOnly(True)
        self.reason_text.setAccessibleName("Reason for referral")
        self.reason_text.setFixedHeight(56)
        self.letter = QPlainTextEdit(tab)
        self.letter.setObjectName("referralLetter")
        self.letter.setReadOnly(True)
        self.letter.setAccessibleName("Referral letter")
        layout = QVBoxLayout(tab)
        layout.addWidget(plain_label("Reason for referral"))
        layout.addWidget(self.reason_text)
        layout.addWidget(plain_label("Referral letter"))
        layout.addWidget(self.letter, 1)
        return tab

    # -- triage -------------------------------------------------------------------------------------

    def _triage_tab(self) -> QWidget:
        tab = QWidget(self)
        self.suggestion = plain_label("", object_name="triageSuggestion", word_wrap=True)
        self.triage_reasons = QListWidget(tab)
        self.triage_reasons.setObjectName("triageReasons")
        self.triage_reasons.setAccessibleName("Reasons for the triage suggestion")
        self.decided = plain_label("", word_wrap=True)
        self.urgency_combo = QComboBox(tab)
        self.urgency_combo.setAccessibleName("Urgency to decide")
        self.urgency_combo.addItems([u.capitalize() for u in URGENCIES])
        self.urgency_reason = QLineEdit(tab)
        self.urgency_reason.setAccessibleName("Reason for the urgency")
        self.urgency_reason.setPlaceholderText("Reason (needed when you differ from the suggestion)")
        self.decide_button = self._button("Decide urgency", self.decide_urgency, writes="triage", name="decideUrgency")
        row = QHBoxLayout()
        row.addWidget(self.urgency_combo)
        row.addWidget(self.urgency_reason, 1)
        row.addWidget(self.decide_button)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.suggestion)
        layout.addWidget(self.triage_reasons, 1)
        layout.addWidget(self.decided)
        layout.addLayout(row)
        if not self._can_triage:
            layout.addWidget(plain_label("Only a referral coordinator decides the urgency.", object_name="hintLabel"))
        return tab

    def _fill_triage(self, d: ReferralDetail) -> None:
        t = d.triage
        if t is None:
            self.suggestion.setText("No triage suggestion on record.")
        else:
            conf = "-" if t.confidence is None else f"{t.confidence:.0%}"
            queue = "sent to a person to review" if t.queue == "human" else "automatic"
            self.suggestion.setText(f"Suggested: {(t.urgency or '-').capitalize()} · confidence {conf} · {queue}"
                                    f" · model {t.model or '-'} · {local_text(t.at)}")  # fmt: skip
        self.triage_reasons.clear()
        self.triage_reasons.addItems(list(t.reasons) if t else [])
        who = d.urgency_decided_by or ("the triage model" if d.card.urgency_source == "model" else "the referrer")
        self.decided.setText(f"Current urgency: {urgency_text(d.card)}" + (f" (by {who})" if d.card.urgency else ""))
        current = d.card.urgency or (t.urgency if t else None)
        if current in URGENCIES:
            self.urgency_combo.setCurrentIndex(URGENCIES.index(current))

    @Slot()
    def decide_urgency(self) -> None:
        urgency = URGENCIES[self.urgency_combo.currentIndex()]
        reason = self.urgency_reason.text().strip() or None
        self._run(self._service.decide_urgency, self.referral_id, urgency, reason, name="triage.decide",
                  then=lambda _c: (self.urgency_reason.clear(), self.message.show_notice("Urgency decided."), self.load()))  # fmt: skip

    # -- pre-authorization --------------------------------------------------------------------------

    def _preauth_tab(self) -> QWidget:
        tab = QWidget(self)
        self.pa_payer = plain_label("")
        self.pa_status = QComboBox(tab)
        self.pa_status.addItems([s.replace("-", " ").capitalize() for s in PREAUTH_STATUSES])
        self.pa_plan = QLineEdit(tab)
        self.pa_number = QLineEdit(tab)
        self.pa_requested, self.pa_decided, self.pa_expires = QLineEdit(tab), QLineEdit(tab), QLineEdit(tab)
        for edit in (self.pa_requested, self.pa_decided, self.pa_expires):
            edit.setPlaceholderText("YYYY-MM-DD")
            edit.setMaxLength(10)
        self.pa_documents = QPlainTextEdit(tab)
        self.pa_documents.setTabChangesFocus(True)
        self.pa_documents.setFixedHeight(70)
        self.pa_message = ErrorLabel(tab, object_name="preauthMessage")
        self.save_preauth_button = self._button("Save pre-authorization", self.save_preauth, name="savePreauth")
        form = QFormLayout()
        for label, widget in (("Payer", self.pa_payer), ("&Status", self.pa_status), ("P&lan", self.pa_plan),
                              ("&Authorization number", self.pa_number), ("Re&quested on", self.pa_requested),
                              ("&Decided on", self.pa_decided), ("E&xpires on", self.pa_expires),
                              ("Documents re&quested", self.pa_documents)):  # fmt: skip
            form.addRow(label, widget)
            if widget is not self.pa_payer:
                widget.setAccessibleName(label.replace("&", ""))
        layout = QVBoxLayout(tab)
        layout.addLayout(form)
        layout.addWidget(self.pa_message)
        layout.addWidget(self.save_preauth_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addStretch(1)
        return tab

    def _fill_preauth(self, d: ReferralDetail) -> None:
        pa = d.preauth
        need = "needs a pre-authorization" if d.card.preauth_required else "needs none by the payer rule"
        self.pa_payer.setText(f"{d.card.payer_name or 'No payer on record'} ({need})")
        self.pa_status.setCurrentIndex(PREAUTH_STATUSES.index(pa.status) if pa and pa.status in PREAUTH_STATUSES else 0)
        self.pa_plan.setText(pa.plan or "" if pa else "")
        self.pa_number.setText(pa.auth_number or "" if pa else "")
        for edit, value in ((self.pa_requested, pa.requested_on if pa else None),
                            (self.pa_decided, pa.decided_on if pa else None),
                            (self.pa_expires, pa.expires_on if pa else None)):  # fmt: skip
            edit.setText(value.isoformat() if value else "")
        self.pa_documents.setPlainText(pa.documents_requested or "" if pa else "")

    @Slot()
    def save_preauth(self) -> None:
        self.pa_message.clear_error()
        fields = {
            "status": PREAUTH_STATUSES[self.pa_status.currentIndex()],
            "plan": self.pa_plan.text().strip() or None,
            "auth_number": self.pa_number.text().strip() or None,
            "requested_on": self.pa_requested.text().strip() or None,
            "decided_on": self.pa_decided.text().strip() or None,
            "expires_on": self.pa_expires.text().strip() or None,
            "documents_requested": self.pa_documents.toPlainText().strip() or None,
        }
        self.save_preauth_button.setEnabled(False)
        self._runner.submit(
            partial(self._service.save_preauth, self.referral_id, **fields),
            on_result=lambda _v: (self.message.show_notice("Pre-authorization saved."), self.load()),
            on_error=self._preauth_failed, owner=self, name="referral.preauth",
        )  # fmt: skip

    def _preauth_failed(self, error: BaseException) -> None:
        self.pa_message.show_error(error)  # next to the form: the values stay as typed
        self._set_enabled(True)

    # -- scheduling ---------------------------------------------------------------------------------

    def _scheduling_tab(self) -> QWidget:
        tab = QWidget(self)
        self.appointments = QListWidget(tab)
        self.appointments.setObjectName("appointments")
        self.appointments.setAccessibleName("Appointments")
        self.appointments.setFixedHeight(84)
        self.cancel_button = self._button("Cancel appointment…", self.cancel_appointment, name="cancelAppointment")
        self.no_show_button = self._button("No-show", self.no_show, name="noShow")
        self.reschedule_button = self._button("Reschedule to slot", self.reschedule, name="reschedule")
        today = QDate.currentDate()
        self.slot_from, self.slot_to = QDateEdit(today, tab), QDateEdit(today.addDays(21), tab)
        for edit, name in ((self.slot_from, "Free slots from"), (self.slot_to, "Free slots until")):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setAccessibleName(name)
        self.find_slots_button = self._button("Find free slots", self.find_slots, writes="", name="findSlots")
        self.slots = QListWidget(tab)
        self.slots.setObjectName("slots")
        self.slots.setAccessibleName("Free slots")
        self.book_button = self._button("Book slot", self.book, name="bookSlot")
        buttons = QHBoxLayout()
        for b in (self.cancel_button, self.no_show_button, self.reschedule_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        search = QHBoxLayout()
        search.addWidget(plain_label("From"))
        search.addWidget(self.slot_from)
        search.addWidget(plain_label("until"))
        search.addWidget(self.slot_to)
        search.addWidget(self.find_slots_button)
        search.addStretch(1)
        search.addWidget(self.book_button)
        layout = QVBoxLayout(tab)
        layout.addWidget(plain_label("Appointments"))
        layout.addWidget(self.appointments)
        layout.addLayout(buttons)
        layout.addWidget(plain_label("Free slots for this specialty"))
        layout.addLayout(search)
        layout.addWidget(self.slots, 1)
        return tab

    def _fill_appointments(self, d: ReferralDetail) -> None:
        self.appointments.clear()
        for a in d.appointments:
            state = d.ehr_appointments.get(a.id)
            ehr = f" · EHR: {state.text}" if state else ""
            item = QListWidgetItem(f"{local_text(a.start)} · {a.status} · {a.service_line or ''}{ehr}")
            item.setData(Qt.ItemDataRole.UserRole, a.id)
            self.appointments.addItem(item)
            if a.status == "booked" and self.appointments.currentRow() < 0:
                self.appointments.setCurrentItem(item)
        if not d.appointments:
            self.appointments.addItem("No appointments yet.")

    def _selected_appointment(self) -> str | None:
        item = self.appointments.currentItem()
        value = item.data(Qt.ItemDataRole.UserRole) if item else None
        if not value:
            self.message.show_error("Choose a booked appointment first.")
        return value

    def _selected_slot(self) -> str | None:
        row = self.slots.currentRow()
        if not 0 <= row < len(self._slots):
            self.message.show_error("Find free slots and choose one first.")
            return None
        return self._slots[row].id

    @Slot()
    def find_slots(self) -> None:
        start, end = utc_midnight(self.slot_from.date()), utc_midnight(self.slot_to.date().addDays(1))
        self._run(self._service.open_slots, self.referral_id, start=start, end=end, then=self._show_slots,
                  name="referral.slots")  # fmt: skip

    def _show_slots(self, slots: list[SlotView]) -> None:
        self._slots = list(slots)
        self.slots.clear()
        for s in self._slots:
            where = " · ".join(filter(None, (s.staff_name, s.location_name)))
            self.slots.addItem(f"{local_text(s.start, '%a %Y-%m-%d %H:%M')}–{local_text(s.end, '%H:%M')}"
                               + (f" · {where}" if where else ""))  # fmt: skip
        if not self._slots:
            self.slots.addItem("No free slots in this range.")
        else:
            self.slots.setCurrentRow(0)
        self._set_enabled(True)

    def _booked(self, done: str, _booking: object) -> None:
        self.message.show_notice(done)
        self._slots = []
        self.slots.clear()
        self.load()

    @Slot()
    def book(self) -> None:
        slot = self._selected_slot()
        if slot:
            self._run(self._service.book, self.referral_id, slot, then=partial(self._booked, "Booked."),
                      name="referral.book")  # fmt: skip

    @Slot()
    def reschedule(self) -> None:
        appointment, slot = self._selected_appointment(), self._selected_slot()
        if appointment and slot:
            self._run(self._service.reschedule, appointment, slot, then=partial(self._booked, "Rescheduled."),
                      name="referral.reschedule")  # fmt: skip

    @Slot()
    def cancel_appointment(self) -> None:
        appointment = self._selected_appointment()
        if not appointment:
            return
        reason = self._ask(self, "Cancel appointment", "Why is the appointment cancelled?")
        if reason:
            self._run(self._service.cancel, appointment, reason, then=partial(self._booked, "Appointment cancelled."),
                      name="referral.cancel")  # fmt: skip

    @Slot()
    def no_show(self) -> None:
        appointment = self._selected_appointment()
        if appointment:
            self._run(self._service.no_show, appointment, then=partial(self._booked, "No-show recorded."),
                      name="referral.no-show")  # fmt: skip

    # -- care transition ----------------------------------------------------------------------------

    def _transition_tab(self) -> QWidget:
        tab = QWidget(self)
        self.summary = QPlainTextEdit(tab)
        self.summary.setObjectName("transitionSummary")
        self.summary.setAccessibleName("Transition summary")
        self.summary.setTabChangesFocus(True)
        self.checklist = QListWidget(tab)
        self.checklist.setObjectName("handoffChecklist")
        self.checklist.setAccessibleName("Handoff checklist")
        self.informed = QListWidget(tab)
        self.informed.setObjectName("informedList")
        self.informed.setAccessibleName("Who was informed")
        self.informed_who = QLineEdit(tab)
        self.informed_who.setAccessibleName("Who was informed")
        self.informed_who.setPlaceholderText("Who (e.g. the patient, Dr Example)")
        self.informed_how = QComboBox(tab)
        self.informed_how.setAccessibleName("How they were informed")
        self.informed_how.addItems(list(INFORMED_HOW))
        self.informed_at = QDateTimeEdit(QDateTime.currentDateTime(), tab)
        self.informed_at.setAccessibleName("When they were informed")
        self.informed_at.setDisplayFormat("yyyy-MM-dd HH:mm")
        add = self._button("Add", self.add_informed, name="addInformed")
        self.save_transition_button = self._button("Save care transition", self.save_transition, name="saveTransition")
        who_row = QHBoxLayout()
        for w in (self.informed_who, self.informed_how, self.informed_at, add):
            who_row.addWidget(w, 1 if w is self.informed_who else 0)
        grid = QGridLayout(tab)
        grid.addWidget(plain_label("Summary"), 0, 0)
        grid.addWidget(plain_label("Handoff checklist"), 0, 1)
        grid.addWidget(self.summary, 1, 0)
        grid.addWidget(self.checklist, 1, 1)
        grid.addWidget(plain_label("Who was informed, how and when"), 2, 0, 1, 2)
        grid.addWidget(self.informed, 3, 0, 1, 2)
        grid.addLayout(who_row, 4, 0, 1, 2)
        grid.addWidget(self.save_transition_button, 5, 1, Qt.AlignmentFlag.AlignRight)
        grid.setRowStretch(1, 2)
        grid.setRowStretch(3, 1)
        return tab

    def _fill_transition(self, d: ReferralDetail) -> None:
        t = d.transition
        self.summary.setPlainText(t.summary or "" if t else "")
        checks = dict.fromkeys(CHECKLIST, False) | (dict(t.checklist) if t else {})
        self.checklist.clear()
        for label, done in checks.items():
            item = QListWidgetItem(label)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if done else Qt.CheckState.Unchecked)
            self.checklist.addItem(item)
        self.informed.clear()
        for entry in t.informed if t else ():
            self._add_informed_row(entry["who"], entry["how"], entry["at"])

    def _add_informed_row(self, who: str, how: str, at: str) -> None:
        when = dt.datetime.fromisoformat(at)
        item = QListWidgetItem(f"{who} · {how} · {local_text(when)}")
        item.setData(Qt.ItemDataRole.UserRole, {"who": who, "how": how, "at": at})
        self.informed.addItem(item)

    @Slot()
    def add_informed(self) -> None:
        who = self.informed_who.text().strip()
        if not who:
            self.message.show_error("Enter who was informed.")
            return
        at = self.informed_at.dateTime().toPython().astimezone(dt.UTC).replace(tzinfo=None)
        self._add_informed_row(who, self.informed_how.currentText(), at.isoformat())
        self.informed_who.clear()

    @Slot()
    def save_transition(self) -> None:
        checks = {
            self.checklist.item(i).text(): self.checklist.item(i).checkState() == Qt.CheckState.Checked
            for i in range(self.checklist.count())
        }
        informed = [self.informed.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.informed.count())]
        self._run(self._service.save_transition, self.referral_id, self.summary.toPlainText().strip() or None,
                  checks, informed, name="referral.transition",
                  then=lambda _v: (self.message.show_notice("Care transition saved."), self.load()))  # fmt: skip
