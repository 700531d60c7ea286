"""New referral from a letter: the documentation assistant suggests, the coordinator decides.

The letter (pasted, or imported from a .txt file) is on the left; "Extract" runs the rule-based
extractor (``services.intake.extract``, local, on the runner) and the right side shows one row per
reviewed field with the suggested value, its confidence, the other readings and Accept / Reject.
Focusing a row highlights, in the letter, the span its value came from. "Find patient" lists the
patients the letter may be about (an audited read); the coordinator picks one or a new patient.
"Create referral" stays disabled, with the reason in the hint line, until every suggestion is
decided and the referral has a specialty and a patient. Creating runs ``accept`` (the reviewed
draft) and ``ReferralService.create_from_intake``, then asks the local triage model for a
suggestion. A refusal is shown in the dialog; the letter and every decision stay as they were.

Nothing here keeps PHI after the dialog closes: ``clear_and_close`` (and any reject, which is what
the main window does to open dialogs when it locks) drops the letter, the suggestions and the
matches before the dialog goes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QFontDatabase,
    QKeySequence,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.security.roles import Permission
from services.context import ServiceContext
from services.intake import (
    REVIEW_FIELDS,
    Decision,
    Extraction,
    Field,
    PatientMatch,
    accept,
    extract,
    match_patient,
)
from services.referral_board import Card
from services.referrals import ReferralService
from views.intake_fields import (
    LABELS,
    MAX_LETTER_CHARS,
    SECTIONS,
    FieldRow,
    QtOffsets,
    display,
    read_letter_file,
    section_label,
    service_draft,
)
from views.pages import PageEnv
from views.widgets import ErrorLabel, error_text, message_box, plain_label

logger = logging.getLogger(__name__)

OnCreated = Callable[[Card], None]
SPAN_COLOUR = QColor("#ffe08a")
ACCEPTED_COLOUR = QColor("#dcefe0")
MATCH_WHAT = {"mrn": "MRN", "birth_date": "birth date", "name": "name"}


def _create(ctx: ServiceContext, service: ReferralService, extraction: Extraction, decisions: dict[str, Decision],
            patient_id: str | None) -> Card:  # fmt: skip
    """On a worker: the reviewed draft (audited "intake.review"), then the referral."""
    draft = accept(ctx, extraction, decisions, patient_id=patient_id)
    payers = service.filter_options().payers if draft.get("payer") else ()
    return service.create_from_intake(service_draft(draft, payers))


def _matches(ctx: ServiceContext, extraction: Extraction, typed: dict[str, Any]) -> list[PatientMatch]:
    """On a worker: the patients the letter may be about, also by what the coordinator typed."""
    if typed:
        extra = {n: [*extraction.suggestions(n), Field(v, (0, 0), "", 1.0)] for n, v in typed.items()}
        extraction = dataclasses.replace(extraction, candidates={**extraction.candidates, **extra})
    return match_patient(ctx, extraction)


class IntakeDialog(QDialog):
    """Review a referral letter's suggested fields and create the referral.

    Args:
        env: the page environment (context and runner).
        parent: the owning widget (the referral board).
        on_created: called with the new referral's card (after its triage suggestion).
        pick_file: asks for a letter file (a test passes a path instead of a file dialog).

    Signals:
        referral_created(object): the new referral's Card, as ``on_created`` gets it.
    """

    referral_created = Signal(object)

    def __init__(
        self, env: PageEnv, parent: QWidget | None = None, *, on_created: OnCreated | None = None,
        pick_file: Callable[[QWidget], str | None] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("intakeDialog")
        self.setWindowTitle("New referral from a letter")
        self.setModal(True)
        self._env = env
        self._service = ReferralService(env.ctx)
        self._on_created = on_created
        self._pick_file = pick_file or _ask_file
        self._gen = 0  # bumps when the review is reset or dropped: late results are ignored
        self._busy: set[str] = set()
        self.extraction: Extraction | None = None
        self._offsets = QtOffsets("")
        self._current: str | None = None
        self.matches: list[PatientMatch] = []
        self.patient_mode: str | None = None  # None, "existing", "new"
        self.patient_id: str | None = None
        self.created: Card | None = None

        # -- left: the letter ----------------------------------------------------------------------
        left = QWidget(self)
        left.setObjectName("intakeLetterPane")
        letter_title = plain_label("Referral letter", left, object_name="intakePaneTitle")
        self.letter = QPlainTextEdit(left)
        self.letter.setObjectName("intakeLetter")
        self.letter.setAccessibleName("Referral letter")
        self.letter.setPlaceholderText("Paste the referral letter here, or import it from a text file.")
        self.letter.setTabChangesFocus(True)
        self.letter.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono.setPointSizeF(9.5)
        self.letter.setFont(mono)  # fax tables and column layouts line up
        self.import_button = QPushButton("&Import file…", left)
        self.import_button.setObjectName("intakeImport")
        self.import_button.setToolTip("Load a referral letter from a plain-text (.txt) file")
        self.extract_button = QPushButton("E&xtract fields", left)
        self.extract_button.setObjectName("intakeExtract")
        self.extract_button.setToolTip("Suggest the referral's fields from the letter (on this computer)")
        self.edit_button = QPushButton("&Edit letter", left)
        self.edit_button.setObjectName("intakeEditLetter")
        self.edit_button.setToolTip("Change the letter; the suggestions and decisions are discarded")
        self.edit_button.setVisible(False)
        self.letter_message = ErrorLabel(left, object_name="intakeLetterMessage")
        letter_buttons = QHBoxLayout()
        letter_buttons.setSpacing(8)
        letter_buttons.addWidget(self.import_button)
        letter_buttons.addStretch(1)
        letter_buttons.addWidget(self.edit_button)
        letter_buttons.addWidget(self.extract_button)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 8, 0)
        left_layout.setSpacing(8)
        left_layout.addWidget(letter_title)
        left_layout.addWidget(self.letter, 1)
        left_layout.addWidget(self.letter_message)
        left_layout.addLayout(letter_buttons)

        # -- right: the suggested fields and the patient --------------------------------------------
        right = QWidget(self)
        right.setObjectName("intakeReviewPane")
        review_title = plain_label("Suggested fields", right, object_name="intakePaneTitle")
        self.keys_hint = plain_label(
            "Enter accepts a field and moves on · Alt+R rejects it · only accepted or corrected values are used",
            right, object_name="keysHint", word_wrap=True,
        )  # fmt: skip
        form = QWidget()
        form.setObjectName("intakeForm")
        grid = QGridLayout(form)
        grid.setContentsMargins(4, 2, 10, 4)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)
        self.rows: dict[str, FieldRow] = {}
        r = 0
        for title, names in SECTIONS:
            heading = section_label(title, form)
            grid.addWidget(heading, r, 0, 1, 6)
            r += 1
            for name in names:
                row = FieldRow(name, form)
                self.rows[name] = row
                grid.addWidget(row.label, r, 0)
                grid.addWidget(row.editor, r, 1)
                grid.addWidget(row.confidence, r, 2)
                grid.addWidget(row.accept_button, r, 3)
                grid.addWidget(row.reject_button, r, 4)
                grid.addWidget(row.state, r, 5)
                row.focused.connect(self.show_source)
                row.changed.connect(self._row_changed)
                row.accept_and_next.connect(self._next_after)
                r += 1
        patient_heading = section_label("Patient record", form)
        grid.addWidget(patient_heading, r, 0, 1, 6)
        r += 1
        self.find_button = QPushButton("&Find patient", form)
        self.find_button.setObjectName("intakeFindPatient")
        self.find_button.setToolTip("Look for this patient in the records on this workstation (recorded in the audit log)")
        self.new_patient_button = QPushButton("&New patient", form)
        self.new_patient_button.setObjectName("intakeNewPatient")
        self.new_patient_button.setToolTip("Create a new patient record from the name, birth date and MRN above")
        self.new_patient_button.setCheckable(True)
        self.match_status = plain_label("", form, object_name="intakeMatchStatus", word_wrap=True)
        patient_buttons = QHBoxLayout()
        patient_buttons.setSpacing(8)
        patient_buttons.addWidget(self.find_button)
        patient_buttons.addWidget(self.new_patient_button)
        patient_buttons.addWidget(self.match_status, 1)
        grid.addLayout(patient_buttons, r, 0, 1, 6)
        r += 1
        self.match_table = QTableWidget(0, 4, form)
        self.match_table.setObjectName("intakeMatches")
        self.match_table.setAccessibleName("Patients the letter may be about")
        self.match_table.setHorizontalHeaderLabels(["Name", "MRN", "Born", "Check"])
        self.match_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.match_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.match_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.match_table.setTabKeyNavigation(False)
        self.match_table.setWordWrap(False)
        self.match_table.verticalHeader().setVisible(False)
        self.match_table.verticalHeader().setDefaultSectionSize(26)
        header = self.match_table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setHighlightSections(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2, 3):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.match_table.setFixedHeight(26 * 4 + 34)
        self.match_table.setVisible(False)
        grid.addWidget(self.match_table, r, 0, 1, 6)
        r += 1
        self.patient_choice = plain_label("", form, object_name="intakePatientChoice", word_wrap=True)
        grid.addWidget(self.patient_choice, r, 0, 1, 6)
        r += 1
        grid.setRowStretch(r, 1)

        self.scroll = QScrollArea(right)
        self.scroll.setObjectName("intakeScroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(form)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(8, 0, 0, 0)
        right_layout.setSpacing(8)
        right_layout.addWidget(review_title)
        right_layout.addWidget(self.keys_hint)
        right_layout.addWidget(self.scroll, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("intakeSplitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 21)
        self.splitter.setStretchFactor(1, 29)

        # -- bottom: why Create is disabled, messages, buttons -----------------------------------------
        self.hint = plain_label("", self, object_name="intakeHint", word_wrap=True)
        self.message = ErrorLabel(self, object_name="intakeMessage")
        self.create_button = QPushButton("&Create referral", self)
        self.create_button.setObjectName("intakeCreate")
        self.create_button.setEnabled(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("intakeCancel")
        for button in (self.import_button, self.extract_button, self.edit_button, self.find_button,
                       self.new_patient_button, self.create_button, self.cancel_button):  # fmt: skip
            button.setAutoDefault(False)  # Enter in a field accepts that field, never creates
        bottom = QHBoxLayout()
        bottom.setSpacing(10)
        bottom.addWidget(self.hint, 1)
        bottom.addWidget(self.create_button)
        bottom.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(10)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.message)
        layout.addLayout(bottom)

        self.import_button.clicked.connect(self.choose_file)
        self.extract_button.clicked.connect(self.extract_now)
        self.edit_button.clicked.connect(self.edit_letter)
        self.find_button.clicked.connect(self.find_patient)
        self.new_patient_button.clicked.connect(self.choose_new_patient)
        self.match_table.itemSelectionChanged.connect(self._match_selected)
        self.create_button.clicked.connect(self.create_referral)
        self.cancel_button.clicked.connect(self.reject)
        self.letter.textChanged.connect(self._update)
        QShortcut(QKeySequence("Alt+R"), self, activated=self._reject_current)
        QShortcut(QKeySequence("Alt+A"), self, activated=self._accept_current)

        self._fit_screen()
        self._reset_review()
        self.letter.setFocus(Qt.FocusReason.OtherFocusReason)

    def _fit_screen(self) -> None:
        width, height = 1240, 750
        screen = (self.parentWidget().screen() if self.parentWidget() else None) or self.screen()
        if screen is not None:
            avail = screen.availableGeometry()
            if avail.width() >= 800 and avail.height() >= 600:
                width, height = min(width, avail.width() - 40), min(height, avail.height() - 50)
        self.resize(width, height)
        self.splitter.setSizes([width * 21 // 50, width * 29 // 50])

    # -- the letter -----------------------------------------------------------------------------------

    def set_letter(self, text: str) -> None:
        """Put ``text`` in the letter box (discarding any review), as an import does."""
        self._reset_review()
        self.letter.setPlainText(text)
        self.letter.moveCursor(QTextCursor.MoveOperation.Start)

    @Slot()
    def choose_file(self) -> None:
        path = self._pick_file(self)
        if path:
            self.import_file(path)

    def import_file(self, path: str | Path) -> None:
        """Read a .txt letter on the runner; a bad file is explained and changes nothing."""
        if self.extraction is not None and not self._confirm_discard():
            return
        self.letter_message.clear_error()
        self._start("import")
        gen = self._gen
        self._env.runner.submit(
            read_letter_file, str(path), owner=self, name="intake-import",
            on_result=partial(self._imported, gen), on_error=partial(self._failed, gen, "import", self.letter_message),
        )  # fmt: skip

    def _imported(self, gen: int, result: tuple[str, int]) -> None:
        if not self._done(gen, "import"):
            return
        text, replaced = result
        self.set_letter(text)
        if replaced:
            self.letter_message.show_notice(
                f"{replaced} character{'s' if replaced != 1 else ''} of the file could not be read as UTF-8 and "
                "show as �: check them against the original."
            )  # fmt: skip

    @Slot()
    def extract_now(self) -> None:
        """Suggest the fields from the letter (on the runner); the review starts over."""
        text = self.letter.toPlainText()
        if not text.strip():
            self.letter_message.show_error("Paste or import a referral letter first.")
            return
        if len(text) > MAX_LETTER_CHARS:
            self.letter_message.show_error(f"The letter is longer than {MAX_LETTER_CHARS:,} characters: "
                                           "paste only the referral itself.")  # fmt: skip
            return
        self.letter_message.clear_error()
        self.message.clear_error()
        self._start("extract")
        gen = self._gen
        self._env.runner.submit(
            extract, text, owner=self, name="intake-extract",
            on_result=partial(self._extracted, gen, text), on_error=partial(self._failed, gen, "extract", self.message),
        )  # fmt: skip

    def _extracted(self, gen: int, text: str, extraction: Extraction) -> None:
        if not self._done(gen, "extract"):
            return
        if self.letter.toPlainText() != text:  # typed into meanwhile: the spans would be wrong
            self._update()
            self.letter_message.show_notice("The letter changed while the fields were extracted: extract again.")
            return
        self._gen += 1
        self.extraction = extraction
        self._offsets = QtOffsets(text)
        self.letter.setReadOnly(True)
        self.letter.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        for name, row in self.rows.items():
            row.set_options(extraction.suggestions(name))
        self._clear_patient()
        found = sum(1 for n in REVIEW_FIELDS if extraction.suggestions(n))
        self.match_status.setText("Find the patient's record, or choose New patient.")
        self.letter_message.show_notice(
            f"{found} of {len(REVIEW_FIELDS)} fields suggested. Review each one: nothing is saved until you create the referral."
        )  # fmt: skip
        self._update()
        first = self._first_needing()
        if first is not None:
            self.rows[first].editor.setFocus(Qt.FocusReason.OtherFocusReason)
            self.show_source(first)

    @Slot()
    def edit_letter(self) -> None:
        """Make the letter editable again; the suggestions and decisions go (after asking)."""
        if any(row.decision is not None for row in self.rows.values()) and not self._confirm_discard():
            return
        self._reset_review()
        self.letter.setFocus(Qt.FocusReason.OtherFocusReason)

    def _confirm_discard(self) -> bool:
        box = message_box(
            self, "Discard the review?", "The suggested fields and your decisions on them will be discarded.",
            QMessageBox.Icon.Question, QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )  # fmt: skip
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        try:
            return box.exec() == QMessageBox.StandardButton.Discard
        finally:
            box.deleteLater()

    def _reset_review(self) -> None:
        self._gen += 1
        self._busy.clear()
        self.extraction = None
        self._offsets = QtOffsets("")
        self._current = None
        for row in self.rows.values():
            row.clear()
        self._clear_patient()
        self.match_status.setText("")
        self.letter.setReadOnly(False)
        self.letter.setTextInteractionFlags(Qt.TextInteractionFlag.TextEditorInteraction)
        self.letter.setExtraSelections([])
        self.letter_message.clear_error()
        self.message.clear_error()
        self._update()

    # -- the fields ----------------------------------------------------------------------------------

    @Slot(str)
    def show_source(self, name: str) -> None:
        """Highlight in the letter where field ``name``'s value came from, and scroll there."""
        self._current = name
        self._paint_spans()
        row = self.rows.get(name)
        source = row.source() if row is not None and self.extraction is not None else None
        if source is None:
            return
        start, end = (self._offsets(i) for i in source.span)
        cursor = QTextCursor(self.letter.document())
        cursor.setPosition(end)
        self.letter.setTextCursor(cursor)
        self.letter.ensureCursorVisible()
        cursor.setPosition(start)
        self.letter.setTextCursor(cursor)
        self.letter.ensureCursorVisible()
        self.scroll.ensureWidgetVisible(row.editor, 40, 40)

    def _paint_spans(self) -> None:
        """Accepted values faintly, the current field's source strongly."""
        selections = []
        if self.extraction is not None:
            for name, row in self.rows.items():
                source = row.source()
                if source is None:
                    continue
                current = name == self._current
                if not current and not (row.decision is not None and row.decision.action == "accept"):
                    continue
                sel = QTextEdit.ExtraSelection()
                fmt = QTextCharFormat()
                fmt.setBackground(SPAN_COLOUR if current else ACCEPTED_COLOUR)
                if current:
                    fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
                    fmt.setUnderlineColor(QColor("#8a5a00"))
                sel.format = fmt
                cursor = QTextCursor(self.letter.document())
                cursor.setPosition(self._offsets(source.span[0]))
                cursor.setPosition(self._offsets(source.span[1]), QTextCursor.MoveMode.KeepAnchor)
                sel.cursor = cursor
                selections.append((current, sel))
        selections.sort(key=lambda pair: pair[0])  # the current one last: painted on top
        self.letter.setExtraSelections([sel for _, sel in selections])

    def highlighted_text(self) -> str:
        """The letter text of the current field's highlight ('' when none), as in the letter."""
        for sel in reversed(self.letter.extraSelections()):
            if sel.format.background().color() == SPAN_COLOUR:
                return sel.cursor.selectedText().replace("\u2029", "\n")
        return ""

    @Slot(str)
    def _row_changed(self, name: str) -> None:
        if name == self._current:
            self.show_source(name)
        else:
            self._paint_spans()
        self._update()

    @Slot(str)
    def _next_after(self, name: str) -> None:
        names = list(self.rows)
        after = names[names.index(name) + 1:] + names[: names.index(name)]
        target = next((n for n in after if self.rows[n].needs_decision()), None)
        if target is not None:
            self.rows[target].editor.setFocus(Qt.FocusReason.TabFocusReason)
        elif self.create_button.isEnabled():
            self.create_button.setFocus(Qt.FocusReason.TabFocusReason)
        elif self.patient_mode is None:
            self.find_button.setFocus(Qt.FocusReason.TabFocusReason)

    def _first_needing(self) -> str | None:
        return next((n for n, row in self.rows.items() if row.needs_decision()), None)

    def _focused_row(self) -> FieldRow | None:
        focus = self.focusWidget()
        for row in self.rows.values():
            if focus is not None and (focus in row.widgets() or focus is row.editor.lineEdit()):
                return row
        return None

    def _accept_current(self) -> None:
        row = self._focused_row()
        if row is not None and self.extraction is not None and row.accept():
            self._next_after(row.name)

    def _reject_current(self) -> None:
        row = self._focused_row()
        if row is not None and self.extraction is not None:
            row.reject()
            self._next_after(row.name)

    def decide(self, name: str, action: str, value: Any = None, candidate: int = 0) -> None:
        """Decide a field as the buttons do: "accept" (a suggestion, by index), "correct" (type
        ``value`` and accept it) or "reject"."""
        row = self.rows[name]
        if action == "accept":
            row.editor.setCurrentIndex(candidate)
            row.accept()
        elif action == "correct":
            row.editor.setEditText(display(value))
            row.accept()
        elif action == "reject":
            row.reject()
        else:
            raise ValueError(action)

    def decisions(self) -> dict[str, Decision]:
        return {name: row.decision for name, row in self.rows.items() if row.decision is not None}

    # -- the patient -------------------------------------------------------------------------------

    @Slot()
    def find_patient(self) -> None:
        """List the patients the letter (and what was typed) may be about; audited."""
        if self.extraction is None:
            return
        typed: dict[str, Any] = {}
        for name in ("patient_name", "birth_date", "mrn"):
            row = self.rows[name]
            if row.decision is not None and row.decision.action == "correct":
                typed[name] = row.decision.value
        self.message.clear_error()
        self.match_status.setText("Looking for the patient…")
        self._start("match")
        gen = self._gen
        self._env.runner.submit(
            _matches, self._env.ctx, self.extraction, typed, owner=self, name="intake-match",
            on_result=partial(self._matched, gen), on_error=partial(self._failed, gen, "match", self.message),
        )  # fmt: skip

    def _matched(self, gen: int, matches: list[PatientMatch]) -> None:
        if not self._done(gen, "match"):
            return
        self.matches = list(matches)
        table = self.match_table
        table.blockSignals(True)
        table.setRowCount(0)
        for m in self.matches:
            r = table.rowCount()
            table.insertRow(r)
            born = m.patient.birth_date.isoformat() if m.patient.birth_date else "—"
            if m.conflicts:
                check = "⚠ differs: " + ", ".join(MATCH_WHAT.get(c, c) for c in m.conflicts)
            else:
                check = "✓ " + ", ".join(MATCH_WHAT.get(c, c) for c in m.matched_on)
            for c, text in enumerate((m.patient.name, m.patient.mrn or "—", born, check)):
                item = QTableWidgetItem(text)
                if c == 3 and m.conflicts:
                    item.setForeground(QColor("#8c1d18"))
                table.setItem(r, c, item)
        table.clearSelection()
        table.blockSignals(False)
        table.setVisible(bool(self.matches))
        if self.patient_mode == "existing":
            self.patient_mode, self.patient_id = None, None
        n = len(self.matches)
        self.match_status.setText(
            f"{n} possible match{'es' if n != 1 else ''}: select the patient's record, or choose New patient."
            if n else "No patient on this workstation matches the letter: choose New patient."
        )  # fmt: skip
        self._show_patient()
        self._update()
        (table if n else self.new_patient_button).setFocus(Qt.FocusReason.OtherFocusReason)
        self.scroll.ensureWidgetVisible(self.patient_choice if n else self.new_patient_button, 20, 20)

    @Slot()
    def _match_selected(self) -> None:
        rows = self.match_table.selectionModel().selectedRows()
        if rows and 0 <= rows[0].row() < len(self.matches):
            self.choose_patient(self.matches[rows[0].row()].patient.id)

    def choose_patient(self, patient_id: str) -> None:
        """Use an existing patient record (one of the matches)."""
        index = next((i for i, m in enumerate(self.matches) if m.patient.id == patient_id), None)
        if index is None:
            raise ValueError("not one of the matches")
        self.patient_mode, self.patient_id = "existing", patient_id
        self.new_patient_button.setChecked(False)
        if self.match_table.currentRow() != index:
            self.match_table.selectRow(index)
        self._show_patient()
        self._update()

    @Slot()
    def choose_new_patient(self) -> None:
        """Create a new patient from the reviewed name, birth date and MRN."""
        if self.extraction is None:
            self.new_patient_button.setChecked(False)
            return
        self.patient_mode, self.patient_id = "new", None
        self.new_patient_button.setChecked(True)
        self.match_table.blockSignals(True)
        self.match_table.clearSelection()
        self.match_table.blockSignals(False)
        self._show_patient()
        self._update()

    def _clear_patient(self) -> None:
        self.matches = []
        self.patient_mode, self.patient_id = None, None
        self.match_table.setRowCount(0)
        self.match_table.setVisible(False)
        self.new_patient_button.setChecked(False)
        self._show_patient()

    def _show_patient(self) -> None:
        if self.patient_mode == "existing":
            m = next(m for m in self.matches if m.patient.id == self.patient_id)
            warn = " Check it: the letter differs in " + ", ".join(MATCH_WHAT.get(c, c) for c in m.conflicts) + "." \
                if m.conflicts else ""  # fmt: skip
            self.patient_choice.setText(f"Referral for the existing record: {m.patient.name} · {m.patient.mrn}.{warn}")
        elif self.patient_mode == "new":
            self.patient_choice.setText("A new patient record is created from the name, birth date and MRN above.")
        else:
            self.patient_choice.setText("")
        self.patient_choice.setVisible(bool(self.patient_choice.text()))

    # -- create --------------------------------------------------------------------------------------

    def blockers(self) -> list[str]:
        """Why "Create referral" is disabled; empty when it is enabled."""
        if self.created is not None:
            return ["The referral was created."]
        if self.extraction is None:
            if "extract" in self._busy:
                return ["Extracting the fields…"]
            return ["Paste or import the letter, then extract its fields."]
        out = []
        undecided = [LABELS[n] for n, row in self.rows.items() if row.needs_decision()]
        if undecided:
            out.append(f"accept, correct or reject {len(undecided)} field{'s' if len(undecided) != 1 else ''} "
                       f"({', '.join(undecided)})")  # fmt: skip
        if self.rows["specialty"].value() is None and not self.rows["specialty"].needs_decision():
            out.append("the referral needs a specialty")
        if self.patient_mode is None:
            out.append("choose the patient: Find patient, then a record or New patient")
        elif self.patient_mode == "new":
            missing = [LABELS[n].lower() if n != "mrn" else "MRN" for n in ("patient_name", "birth_date", "mrn")
                       if self.rows[n].value() is None and not self.rows[n].needs_decision()]  # fmt: skip
            if missing:
                out.append("a new patient needs a " + ", ".join(missing))
        if self._busy & {"create", "triage"}:
            out.insert(0, "Creating the referral…")
        return out

    def _update(self) -> None:
        blockers = self.blockers()
        busy = bool(self._busy)
        self.create_button.setEnabled(not blockers and not busy)
        if not blockers:
            self.hint.setText("Ready: every suggestion is reviewed. Nothing is saved until you choose Create referral.")
        elif self.extraction is None or self.created is not None or blockers[0].endswith("…"):
            self.hint.setText(blockers[0])
        else:
            text = "; ".join(blockers)
            self.hint.setText("To create the referral: " + text[0].lower() + text[1:] + ".")
        self.hint.setProperty("ready", "yes" if not blockers else "no")
        self.hint.style().unpolish(self.hint)
        self.hint.style().polish(self.hint)
        has_review = self.extraction is not None
        self.extract_button.setVisible(not has_review)
        self.extract_button.setEnabled(not busy and not self.letter.document().isEmpty())
        self.edit_button.setVisible(has_review and self.created is None)
        self.edit_button.setEnabled(not busy)
        self.import_button.setEnabled(not busy and self.created is None)
        self.find_button.setEnabled(has_review and not busy and self.created is None)
        self.new_patient_button.setEnabled(has_review and not busy and self.created is None)
        for row in self.rows.values():
            for w in row.widgets():
                w.setEnabled(has_review and not (self._busy & {"create", "triage"}) and self.created is None
                             and (w is not row.accept_button or bool(row.text())))  # fmt: skip

    @Slot()
    def create_referral(self) -> None:
        """Create the referral from the decisions (on the runner), then ask for a triage suggestion."""
        if self.blockers() or self._busy or self.extraction is None:
            return
        self.message.clear_error()
        self._start("create")
        gen = self._gen
        patient_id = self.patient_id if self.patient_mode == "existing" else None
        self._env.runner.submit(
            _create, self._env.ctx, self._service, self.extraction, self.decisions(), patient_id,
            owner=self, name="intake-create",
            on_result=partial(self._created, gen), on_error=partial(self._failed, gen, "create", self.message),
        )  # fmt: skip

    def _created(self, gen: int, card: Card) -> None:
        if not self._done(gen, "create"):
            return
        self.created = card
        if not self._env.ctx.user.may(Permission.REFERRAL_TRIAGE):
            self._finish(card)
            return
        self._start("triage")
        self._env.runner.submit(
            self._service.suggest_urgency, card.id, owner=self, name="intake-triage",
            on_result=partial(self._triaged, gen), on_error=partial(self._triage_failed, gen, card),
        )  # fmt: skip

    def _triaged(self, gen: int, card: Card) -> None:
        if self._done(gen, "triage"):
            self._finish(card)

    def _triage_failed(self, gen: int, card: Card, error: BaseException) -> None:
        if not self._done(gen, "triage"):
            return
        self._notify(card)
        self.message.show_error(
            "The referral was created, but the triage suggestion could not be made: " + error_text(error)
            + "\nIt can be triaged from the referral on the board."
        )  # fmt: skip
        self.cancel_button.setText("Close")
        self._update()

    def _finish(self, card: Card) -> None:
        self._notify(card)
        self.accept()

    def _notify(self, card: Card) -> None:
        self.referral_created.emit(card)
        if self._on_created is not None:
            self._on_created(card)

    # -- jobs ----------------------------------------------------------------------------------------

    def _start(self, what: str) -> None:
        self._busy.add(what)
        self._update()

    def _done(self, gen: int, what: str) -> bool:
        """A job ended: False when its result is stale (the review was reset or dropped)."""
        if gen != self._gen:
            return False
        self._busy.discard(what)
        self._update()
        return True

    def _failed(self, gen: int, what: str, where: ErrorLabel, error: BaseException) -> None:
        if not self._done(gen, what):
            return
        if what == "match":
            self.match_status.setText("")
        where.show_error(error)

    # -- closing -------------------------------------------------------------------------------------

    def clear_sensitive(self) -> None:
        """Drop every PHI value the dialog holds: the letter, suggestions, decisions, matches."""
        self._reset_review()
        self.letter.clear()
        self.letter.document().clearUndoRedoStacks()
        self.created = None

    def adjustSize(self) -> None:  # ErrorLabel grows its dialog to fit a message: never shrink this one
        hint = self.sizeHint()
        self.resize(max(self.width(), hint.width()), max(self.height(), hint.height()))

    def clear_and_close(self) -> None:
        """The window locks: forget everything and close (results still on their way are dropped)."""
        self.reject()

    def reject(self) -> None:
        self.clear_sensitive()
        super().reject()

    def accept(self) -> None:
        self.clear_sensitive()
        super().accept()


def _ask_file(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Import a referral letter", "", "Text files (*.txt);;All files (*)")
    return path or None


def intake_factory(env: PageEnv, on_created: OnCreated | None = None) -> Callable[[QWidget], IntakeDialog]:
    """For ``ReferralBoardPage(intake_factory=...)``: builds the dialog (not shown) for a parent."""
    return lambda parent: IntakeDialog(env, parent, on_created=on_created)


def open_intake_dialog(parent: QWidget | None, env: PageEnv, on_created: OnCreated | None = None) -> IntakeDialog:
    """Build the intake dialog and open it (window-modal, non-blocking); returns it."""
    dialog = IntakeDialog(env, parent, on_created=on_created)
    dialog.open()
    return dialog
