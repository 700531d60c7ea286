"""Pieces of the intake review dialog that are not the dialog itself: reading a letter file,
Python-to-Qt text offsets, one review row per suggested field, and the referral service's draft.

Every widget here shows PHI (names, dates, identifiers from a letter) in plain-text widgets only:
combo boxes and line edits never interpret HTML, and labels go through ``plain_label``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QWidget

from app.errors import KnownError
from services.intake import REVIEW_FIELDS, Decision, Field
from services.intake_terms import URGENCY_ORDER
from views.widgets import plain_label, repolish

MAX_LETTER_BYTES = 512 * 1024
MAX_LETTER_CHARS = 200_000  # what the referral keeps of a letter (ReferralService.create_from_intake)

LABELS: dict[str, str] = {
    "patient_name": "Patient name",
    "birth_date": "Birth date",
    "mrn": "MRN",
    "specialty": "Specialty",
    "reason": "Reason",
    "urgency": "Urgency",
    "payer": "Payer",
    "plan": "Plan",
    "member_id": "Member ID",
    "referring_clinician": "Referring clinician",
    "referring_org": "Referring practice",
}
# The review form's sections, in REVIEW_FIELDS order.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Patient", ("patient_name", "birth_date", "mrn")),
    ("Referral", ("specialty", "reason", "urgency")),
    ("Coverage", ("payer", "plan", "member_id")),
    ("Referred by", ("referring_clinician", "referring_org")),
)
assert tuple(n for _, names in SECTIONS for n in names) == REVIEW_FIELDS

STATE_TEXT = {
    "pending": "To review",
    "typed": "To review",
    "empty": "Not in letter",
    "accept": "Accepted",
    "correct": "Corrected",
    "reject": "Rejected",
}


# --- letter files --------------------------------------------------------------------------------


class LetterFileError(KnownError):
    """A file that cannot be a referral letter. The message never names the file (a file name can
    carry a patient's name)."""

    remedy = "Choose the letter as a plain-text (.txt) file, or paste its text into the letter box."


def read_letter_file(path: str | Path) -> tuple[str, int]:
    """A letter's text from a .txt file, and how many bytes were not UTF-8 (shown as U+FFFD).

    Refuses files over MAX_LETTER_BYTES, empty files and binary files (a PDF, a Word document,
    an image). UTF-8 with or without a BOM; UTF-16 with a BOM; anything else is read as UTF-8 with
    replacement characters. Line ends become ``\\n``. Runs on a worker (a share can be slow)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise LetterFileError("This is not a file that can be read.")
        if p.stat().st_size > MAX_LETTER_BYTES:
            raise LetterFileError(f"The file is too large for a referral letter (at most {MAX_LETTER_BYTES // 1024} KB).")
        with p.open("rb") as f:
            data = f.read(MAX_LETTER_BYTES + 1)
    except OSError:
        raise LetterFileError("The file could not be read: check that it exists and that you may open it.") from None
    if len(data) > MAX_LETTER_BYTES:
        raise LetterFileError(f"The file is too large for a referral letter (at most {MAX_LETTER_BYTES // 1024} KB).")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        if b"\x00" in data:
            raise LetterFileError("This is not a text file (it looks like a document or an image).")
        text = data.decode("utf-8-sig", errors="replace")
    replaced = text.count("\ufffd")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise LetterFileError("The file is empty.")
    if replaced > max(16, len(text) // 10):
        raise LetterFileError("This file is not readable text (most of it is not UTF-8).")
    if len(text) > MAX_LETTER_CHARS:
        raise LetterFileError(f"The letter is longer than {MAX_LETTER_CHARS:,} characters.")
    return text, replaced


# --- offsets ---------------------------------------------------------------------------------------


class QtOffsets:
    """Maps offsets into a Python string (code points) to QTextDocument positions (UTF-16 units:
    a character outside the BMP, an emoji, counts twice there)."""

    def __init__(self, text: str) -> None:
        self._astral = [] if text.isascii() else [i for i, ch in enumerate(text) if ord(ch) > 0xFFFF]

    def __call__(self, index: int) -> int:
        return index + bisect.bisect_left(self._astral, index)


# --- values ------------------------------------------------------------------------------------------


def display(value: Any) -> str:
    """A suggested value as the review form shows and edits it (dates as YYYY-MM-DD)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    return " ".join(str(value).split()) if value is not None else ""


def parse_typed(name: str, text: str) -> Any:
    """A value the coordinator typed, checked as far as the form can (the service checks again).
    Raises ValueError with a message for the row."""
    text = " ".join(text.split())
    if name == "birth_date":
        try:
            born = dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError("Use YYYY-MM-DD") from None
        if born > dt.date.today():
            raise ValueError("Date in the future")
        return born
    if name == "urgency":
        if text.casefold() not in URGENCY_ORDER:
            raise ValueError("emergent, urgent or routine")
        return text.casefold()
    return text


def service_draft(draft: dict[str, Any], payers: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """What ``ReferralService.create_from_intake`` takes, from a reviewed ``services.intake.accept`` draft.

    The patient is the chosen record, or a new one from the reviewed name, birth date and MRN. The
    payer is linked when its reviewed name is exactly one known payer organisation's; the service
    links the referrer by name and keeps plan and member ID as the patient's coverage."""
    out: dict[str, Any] = {
        key: draft.get(key)
        for key in ("specialty", "reason", "letter_text", "urgency", "referring_clinician", "referring_org",
                    "plan", "member_id")
    }
    if draft.get("patient_id"):
        out["patient_id"] = draft["patient_id"]
    else:
        out["patient"] = {"name": draft.get("patient_name"), "birth_date": draft.get("birth_date"),
                          "mrn": draft.get("mrn")}  # fmt: skip
    payer = display(draft.get("payer")).casefold()
    if payer:
        ids = [pid for pid, pname in payers if display(pname).casefold() == payer]
        if len(ids) == 1:
            out["payer_org_id"] = ids[0]
    return out


# --- one review row ----------------------------------------------------------------------------------


class FieldRow(QObject):
    """The widgets of one reviewed field, laid out by the dialog in its grid: the label, the value
    (an editable combo holding every suggestion, best first), the confidence, Accept, Reject and
    the decision.

    Editing the value after a decision takes the decision back: what is shown is what was decided.

    Signals:
        focused(str): a widget of the row got keyboard focus (the field's name).
        changed(str): the decision or the value changed.
        accept_and_next(str): Enter in the value: accepted, move on.
    """

    focused = Signal(str)
    changed = Signal(str)
    accept_and_next = Signal(str)

    def __init__(self, name: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.name = name
        self.title = LABELS[name]
        self.options: list[Field] = []
        self.decision: Decision | None = None
        self._quiet = False

        self.label = plain_label(self.title, parent, object_name="intakeFieldLabel")
        self.editor = QComboBox(parent)
        self.editor.setObjectName(f"intake_{name}")
        self.editor.setEditable(True)
        self.editor.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.editor.setCompleter(None)  # no inline completion: a correction is typed as meant
        self.editor.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.editor.setMinimumContentsLength(12)
        self.editor.setAccessibleName(self.title)
        self.editor.lineEdit().setMaxLength(4000 if name == "reason" else 200)
        self.label.setBuddy(self.editor)
        self.confidence = plain_label("", parent, object_name="intakeConfidence")
        self.confidence.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.accept_button = QPushButton("Accept", parent)
        self.accept_button.setObjectName("intakeAccept")
        self.accept_button.setAccessibleName(f"Accept {self.title}")
        self.reject_button = QPushButton("Reject", parent)
        self.reject_button.setObjectName("intakeReject")
        self.reject_button.setAccessibleName(f"Reject {self.title}")
        for button in (self.accept_button, self.reject_button):
            button.setAutoDefault(False)
        self.state = plain_label("", parent, object_name="intakeState")
        self.state.setMinimumWidth(78)

        self.accept_button.clicked.connect(self.accept)
        self.reject_button.clicked.connect(self.reject)
        self.editor.editTextChanged.connect(self._edited)
        self.editor.currentIndexChanged.connect(self._edited)
        self.editor.lineEdit().returnPressed.connect(self._enter)
        for w in self.widgets():
            w.installEventFilter(self)
        self.editor.lineEdit().installEventFilter(self)
        self._show()

    def widgets(self) -> tuple[QWidget, ...]:
        return (self.editor, self.accept_button, self.reject_button)

    # -- state ------------------------------------------------------------------------------------

    def set_options(self, options: list[Field]) -> None:
        """New suggestions (a new extraction): the best one shown, no decision."""
        self._quiet = True
        try:
            self.options = list(options)
            self.decision = None
            self.editor.clear()
            for f in self.options:
                self.editor.addItem(display(f.value))
            self.editor.setCurrentIndex(0 if self.options else -1)
            if not self.options:
                self.editor.setEditText("")
            self.editor.lineEdit().setPlaceholderText("" if self.options else "Not in the letter")
            self.editor.lineEdit().setCursorPosition(0)
        finally:
            self._quiet = False
        self._show()

    def clear(self) -> None:
        self.set_options([])
        self.editor.lineEdit().setPlaceholderText("")

    def text(self) -> str:
        return " ".join(self.editor.currentText().split())

    def matching_index(self) -> int | None:
        """The suggestion the shown value is, exactly; None when it was typed."""
        text = self.text()
        for i, f in enumerate(self.options):
            if display(f.value) == text:
                return i
        return None

    def source(self) -> Field | None:
        """Where in the letter the shown value came from (the best suggestion for a typed one)."""
        i = self.matching_index()
        if i is not None:
            return self.options[i]
        return self.options[0] if self.options else None

    def status(self) -> str:
        if self.decision is not None:
            return self.decision.action
        if self.options:
            return "pending"
        return "typed" if self.text() else "empty"

    def needs_decision(self) -> bool:
        return self.status() in ("pending", "typed")

    def value(self) -> Any:
        """The value that will go into the referral: None unless accepted or corrected."""
        d = self.decision
        if d is None or d.action == "reject":
            return None
        if d.action == "accept":
            return self.options[d.candidate].value
        return d.value

    # -- decisions ----------------------------------------------------------------------------------

    def accept(self) -> bool:
        """Accept the value shown: the suggestion it is, or a correction. False when it cannot be."""
        text = self.text()
        if not text:
            if not self.options:
                return False
            self._show(problem="Empty: reject instead")
            return False
        i = self.matching_index()
        if i is not None:
            self.decision = Decision.accepted(i)
        else:
            try:
                self.decision = Decision.corrected(parse_typed(self.name, text))
            except ValueError as exc:
                self._show(problem=str(exc))
                return False
        self._show()
        self.changed.emit(self.name)
        return True

    def reject(self) -> None:
        """Leave the field out of the referral (the suggestion stays visible, greyed)."""
        self.decision = Decision.rejected()
        self._show()
        self.changed.emit(self.name)

    def _edited(self, *_args: object) -> None:
        if self._quiet:
            return
        self.decision = None
        self._show()
        self.changed.emit(self.name)

    def _enter(self) -> None:
        if self.accept():
            self.accept_and_next.emit(self.name)

    # -- display ----------------------------------------------------------------------------------

    def _show(self, problem: str | None = None) -> None:
        status = self.status()
        self.state.setText(problem or STATE_TEXT[status])
        kind = "problem" if problem else status
        source = self.source()
        if source is not None and self.matching_index() is not None:
            pct = round(source.confidence * 100)
            level = "high" if source.confidence >= 0.8 else "medium" if source.confidence >= 0.5 else "low"
            self.confidence.setText(f"{pct}%")
            self.confidence.setAccessibleName(f"Confidence {pct} percent")
        else:
            level = "none"
            self.confidence.setText("typed" if self.text() else "—")
            self.confidence.setAccessibleName("Typed by you" if self.text() else "No suggestion")
        self.accept_button.setEnabled(bool(self.text()))
        for widget, prop, value in ((self.state, "state", kind), (self.label, "state", kind),
                                    (self.editor, "state", kind), (self.confidence, "level", level)):  # fmt: skip
            if widget.property(prop) != value:
                widget.setProperty(prop, value)
                repolish(widget)
        self.editor.setAccessibleDescription(f"{STATE_TEXT[status]}")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusIn:
            self.focused.emit(self.name)
        return False


def section_label(title: str, parent: QWidget) -> QLabel:
    return plain_label(title, parent, object_name="intakeSection")
