"""The coordinator's referral board: one column per workflow state, cards painted by a delegate,
moves by drag and drop or keyboard, in-memory filters, and the referral detail.

The board loads every open referral once (``ReferralService.board`` on the runner, audited) and
filters in memory: a keystroke re-evaluates the precomputed search keys, never the database. A
move is checked while dragging with ``can_move`` on the card's own facts (no database), runs on
the runner, and the card changes column only when the service says it moved; a refusal leaves it
where it is and says why. Committed changes to the board's tables reload it, coalesced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QContextMenuEvent,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeyEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.security.roles import Permission
from services.referral_board import (
    BOARD_TABLES,
    Board,
    BoardFilter,
    Card,
    FilterOptions,
)
from services.referral_workflow import (
    CLOSED,
    COMPLETED,
    NEEDS_REASON_TO,
    TERMINAL,
    Column,
)
from services.referrals import MoveRefused, ReferralService
from views.pages import Page, PageEnv
from views.referral_board_model import (
    ID_ROLE,
    BoardCriteria,
    BoardItem,
    ColumnModel,
    ColumnProxy,
    make_item,
    referral_id_from,
)
from views.referral_card_delegate import CardDelegate
from views.referral_detail import ReferralDetailDialog, ask_reason
from views.widgets import ErrorLabel, error_text, plain_label, repolish

logger = logging.getLogger(__name__)

RELOAD_DELAY_MS = 300  # a sync burst commits many times: reload once after it settles
OPEN_MIN_WIDTH = 176
READ_ONLY = "Read only: your role may view the board but not move referrals."
ANY = "Any"
ReasonAsker = Callable[[QWidget | None, str, str], str | None]
IntakeFactory = Callable[[QWidget], QDialog]


class CardListView(QListView):
    """A column's cards. Keys: Ctrl+Left/Right move the card, Ctrl+M opens "Move to…", Left/Right
    (without Ctrl) go to the neighbouring column, Enter opens the detail.

    Signals:
        step_requested(int): move the current card one allowed column left (-1) or right (+1).
        menu_requested(QPoint): open "Move to…" for the current card at a global position.
        neighbour_requested(int): focus the column to the left (-1) or right (+1).
        open_requested(): open the current card's detail.
    """

    step_requested = Signal(int)
    menu_requested = Signal(QPoint)
    neighbour_requested = Signal(int)
    open_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            step = -1 if key == Qt.Key.Key_Left else 1
            (self.step_requested if ctrl else self.neighbour_requested).emit(step)
        elif ctrl and key == Qt.Key.Key_M or key == Qt.Key.Key_Menu:
            self.menu_requested.emit(self.mapToGlobal(self.visualRect(self.currentIndex()).center()))
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.open_requested.emit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        if index.isValid():
            self.setCurrentIndex(index)
            self.menu_requested.emit(event.globalPos())


class BoardColumn(QFrame):
    """One workflow column: a header with counts, and its cards. The frame takes the drops
    (the list only drags), so a collapsed column is still a drop target.

    Signals:
        dropped(str, str): a referral id was dropped here, and this column's code.
    """

    dropped = Signal(str, str)

    def __init__(self, column: Column, judge: Callable[[str, str], str | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("boardColumn")
        self.code, self.title = column.code, column.title
        self._judge = judge
        self.collapsed = False
        self.model = ColumnModel(column.code, self)
        self.proxy = ColumnProxy(self.model, self)
        self.title_label = plain_label(column.title, object_name="columnTitle")
        self.count_label = plain_label("", object_name="columnCount")
        self.breached_label = plain_label("", object_name="columnBreached")
        self.hint = plain_label("", object_name="columnHint")
        self.hint.setVisible(False)
        self.list = CardListView(self)
        self.list.setObjectName("cardList")
        self.list.setModel(self.proxy)
        self.list.setItemDelegate(CardDelegate(self.list, with_notes=column.code == CLOSED))
        self.list.setUniformItemSizes(True)  # 5,000 cards: one size hint, not one per row
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setAccessibleName(f"{column.title} column")
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setAcceptDrops(True)
        head = QHBoxLayout()
        head.setSpacing(6)
        head.addWidget(self.title_label)
        head.addWidget(self.hint, 1)
        head.addStretch(1)
        head.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 6, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(head)
        layout.addWidget(self.breached_label)
        layout.addWidget(self.list, 1)
        self.setMinimumWidth(OPEN_MIN_WIDTH)

    def set_draggable(self, on: bool) -> None:
        self.model.draggable = on

    def set_collapsed(self, collapsed: bool, hint: str = "") -> None:
        """Collapsed: a one-line drop zone (title and hint) instead of a column of cards."""
        self.collapsed = collapsed
        self.list.setVisible(not collapsed)
        self.breached_label.setVisible(not collapsed)
        self.count_label.setVisible(not collapsed)
        self.hint.setText(hint)
        self.hint.setVisible(collapsed)
        self.setMinimumWidth(0 if collapsed else OPEN_MIN_WIDTH)
        policy = QSizePolicy.Policy.Maximum if collapsed else QSizePolicy.Policy.Preferred
        self.setSizePolicy(policy, QSizePolicy.Policy.Maximum if collapsed else QSizePolicy.Policy.Expanding)

    def update_counts(self) -> None:
        total, shown, breached = self.model.counts()
        self.count_label.setText(str(total) if shown == total else f"{shown} of {total}")
        self.breached_label.setText(f"▲ {breached} breached" if breached else "No SLA breach")
        self.breached_label.setProperty("state", "breached" if breached else "ok")
        repolish(self.breached_label)
        self.list.setAccessibleDescription(
            f"{shown} cards" + (f", {breached} past their SLA" if breached else "")
        )

    def current_id(self) -> str | None:
        index = self.list.currentIndex()
        return index.data(ID_ROLE) if index.isValid() else None

    def select(self, referral_id: str) -> bool:
        row = self.model.row_of(referral_id)
        index = self.proxy.mapFromSource(self.model.index(row, 0)) if row >= 0 else QModelIndex()
        if not index.isValid():
            return False
        self.list.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.list.scrollTo(index)
        return True

    # -- drops ---------------------------------------------------------------------------------

    def _set_drop_state(self, state: str) -> None:
        if self.property("drop") != state:
            self.setProperty("drop", state)
            repolish(self)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self._judge_drag(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self._judge_drag(event)

    def _judge_drag(self, event: QDragMoveEvent) -> None:
        referral_id = referral_id_from(event.mimeData())
        refusal = self._judge(referral_id, self.code) if referral_id else "Not a referral card"
        if refusal is None:
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
            self._set_drop_state("ok")
        else:
            event.ignore()
            self._set_drop_state("refused")

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_drop_state("")
        event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_drop_state("")
        referral_id = referral_id_from(event.mimeData())
        if referral_id is None or self._judge(referral_id, self.code) is not None:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()
        self.dropped.emit(referral_id, self.code)


class ReferralBoardPage(Page):
    """The referral board.

    Args:
        env: what the page may use.
        intake_factory: builds the intake-review dialog for "New referral…" (given the page as
            parent); without one the button stays disabled.
        ask: asks for a reason (closing); a test passes an answer instead of a dialog.

    Signals:
        new_referral_requested(): "New referral…" was chosen (emitted before the factory is used).
    """

    new_referral_requested = Signal()

    def __init__(
        self, env: PageEnv, parent: QWidget | None = None, *, intake_factory: IntakeFactory | None = None,
        ask: ReasonAsker = ask_reason,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("referralsPage")
        self._env = env
        self._service = ReferralService(env.ctx)
        self._intake_factory = intake_factory
        self.ask = ask
        self._generation = 0  # bumps on every load and on lock: stale results are dropped
        self._loaded = False
        self._stale = False
        self._loading = False
        self._where: dict[str, str] = {}  # referral id -> column code
        self._moving: set[str] = set()
        self.detail_dialog: ReferralDetailDialog | None = None

        title = plain_label("Referrals", object_name="pageTitle")
        self.keys_hint = plain_label("", object_name="keysHint")
        self.status_label = plain_label("", object_name="boardStatus")
        self.new_button = QPushButton("New referral…", self)
        self.new_button.setObjectName("newReferral")
        self.new_button.setToolTip("Review an incoming referral and add it to the board")
        self.new_button.clicked.connect(self.request_new_referral)
        top = QHBoxLayout()
        top.addWidget(title)
        top.addSpacing(12)
        top.addWidget(self.status_label, 1)
        top.addWidget(self.keys_hint)
        top.addSpacing(12)
        top.addWidget(self.new_button)

        self.search_edit = QLineEdit(self)
        self.search_edit.setObjectName("boardSearch")
        self.search_edit.setPlaceholderText("Filter by name, MRN or specialty")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAccessibleName("Filter cards by name, MRN or specialty")
        self.search_edit.setMaxLength(100)
        self.specialty_combo = self._combo("Specialty")
        self.urgency_combo = self._combo("Urgency")
        self.owner_combo = self._combo("Owner")
        self.payer_combo = self._combo("Payer")
        self.breached_check = QCheckBox("SLA &breached", self)
        self.mine_check = QCheckBox("&My queue", self)
        self.closed_check = QCheckBox("Show completed and &closed", self)
        filters = QHBoxLayout()
        filters.setSpacing(8)
        filters.addWidget(self.search_edit, 2)
        for combo in (self.specialty_combo, self.urgency_combo, self.owner_combo, self.payer_combo):
            filters.addWidget(combo, 1)
        toggles = QHBoxLayout()
        toggles.setSpacing(16)
        for check in (self.breached_check, self.mine_check, self.closed_check):
            toggles.addWidget(check)
        toggles.addStretch(1)
        self._terminal_strip = toggles  # collapsed Completed and Closed sit here as drop zones

        self.message = ErrorLabel(self, object_name="boardMessage")
        self.read_only_label = plain_label(READ_ONLY, object_name="readOnlyNote", word_wrap=True)
        self.read_only_label.setProperty("kind", "notice")

        self.board = QWidget(self)
        self.board.setObjectName("board")
        self._row = QHBoxLayout(self.board)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(6)
        self.columns: dict[str, BoardColumn] = {}
        for column in self._service.columns():
            col = BoardColumn(column, self._judge, self.board)
            col.dropped.connect(self._on_dropped)
            col.list.step_requested.connect(partial(self._step, column.code))
            col.list.menu_requested.connect(partial(self._menu_for, column.code))
            col.list.neighbour_requested.connect(partial(self._focus_neighbour, column.code))
            col.list.open_requested.connect(partial(self._open_current, column.code))
            col.list.doubleClicked.connect(partial(self._open_index, column.code))
            self.columns[column.code] = col
        self._place_columns()
        scroll = QScrollArea(self)
        scroll.setObjectName("boardScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.board)
        self.loading_label = plain_label("Loading referrals…", object_name="boardLoading")
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.loading_label)
        self.stack.addWidget(scroll)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 8)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addLayout(toggles)
        layout.addWidget(self.read_only_label)
        layout.addWidget(self.message)
        layout.addWidget(self.stack, 1)

        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(RELOAD_DELAY_MS)
        self._reload_timer.timeout.connect(self._reload_if_shown)
        self.search_edit.textChanged.connect(self.apply_filters)
        for combo in (self.specialty_combo, self.urgency_combo, self.owner_combo, self.payer_combo):
            combo.currentIndexChanged.connect(self.apply_filters)
        self.breached_check.toggled.connect(self.apply_filters)
        self.mine_check.toggled.connect(self.apply_filters)
        self.closed_check.toggled.connect(self._closed_toggled)
        env.cache_events.records_changed.connect(self._on_records_changed)  # type: ignore[attr-defined]
        self.refresh_access()

    def _combo(self, what: str) -> QComboBox:
        combo = QComboBox(self)
        combo.setObjectName(f"{what.lower()}Filter")
        combo.setAccessibleName(f"{what} filter")
        combo.setMinimumContentsLength(8)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.addItem(f"{what}: {ANY}", None)
        return combo

    def _place_columns(self) -> None:
        """Open columns side by side; Completed and Closed as full columns only when shown, else
        as one-line drop zones next to the toggles (the open columns keep the width)."""
        show_terminal = self.closed_check.isChecked()
        for col in self.columns.values():
            self._row.removeWidget(col)
            self._terminal_strip.removeWidget(col)
        for col in self.columns.values():
            if col.code not in TERMINAL or show_terminal:
                self._row.addWidget(col, 1)
                col.set_collapsed(False)
            else:
                self._terminal_strip.addWidget(col)
                what = "complete" if col.code == COMPLETED else "close"
                col.set_collapsed(True, f"drop here to {what}")
            col.update_counts()

    # -- Page hooks -----------------------------------------------------------------------------

    def focus_target(self) -> QWidget:
        return self.search_edit

    def page_activated(self) -> None:
        if not self._loaded or self._stale:
            self.load()

    def clear_sensitive(self) -> None:
        self._generation += 1
        self._reload_timer.stop()
        self._loaded = self._loading = False
        self._where.clear()
        self._moving.clear()
        for col in self.columns.values():
            col.model.clear()
            col.update_counts()
        self.search_edit.blockSignals(True)
        self.search_edit.clear()
        self.search_edit.blockSignals(False)
        self.message.clear_error()
        self.status_label.clear()
        if self.detail_dialog is not None:
            self.detail_dialog.reject()
        self.stack.setCurrentIndex(0)

    def refresh_access(self) -> None:
        can_write = self.can_write()
        for col in self.columns.values():
            col.set_draggable(can_write)
        self.new_button.setVisible(can_write)
        self.new_button.setEnabled(self._intake_factory is not None)
        self.read_only_label.setVisible(not can_write)
        self.keys_hint.setText("Enter: open a referral" if not can_write else
                               "Enter: open · Ctrl+→ / Ctrl+←: move · Ctrl+M: move to…")  # fmt: skip

    def can_write(self) -> bool:
        return self._env.ctx.user.may(Permission.REFERRAL_WRITE)

    # -- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)load the board on the runner; the cards already shown stay until it answers."""
        self._generation += 1
        self._loading = True
        self._stale = False
        if not self._loaded:
            self.loading_label.setText("Loading referrals…")
            self.stack.setCurrentIndex(0)
        self.status_label.setText("Loading…" if not self._loaded else "Refreshing…")
        include_closed = self.closed_check.isChecked()
        self._env.runner.submit(
            self._fetch, include_closed,
            on_result=partial(self._on_loaded, self._generation), on_error=partial(self._on_load_failed, self._generation),
            owner=self, name="referral.board",
        )  # fmt: skip

    def _fetch(self, include_closed: bool) -> tuple[Board, FilterOptions]:
        return self._service.board(BoardFilter(include_closed=include_closed)), self._service.filter_options()

    def _on_loaded(self, generation: int, result: tuple[Board, FilterOptions]) -> None:
        if generation != self._generation:
            return
        board, options = result
        self._loading = False
        self._loaded = True
        focused = self._focused_card()
        self._fill_options(options)
        self.fill(board)
        self.stack.setCurrentIndex(1)
        if focused:
            self.select_card(focused[1])
        if self._stale:
            self._reload_timer.start()

    def fill(self, board: Board) -> None:
        """Put the board's cards into the column models and apply the current filters."""
        by_column: dict[str, list[BoardItem]] = {code: [] for code in self.columns}
        where: dict[str, str] = {}
        me = self._env.ctx.user.username
        for card in board.cards:
            bucket = by_column.get(card.status)
            if bucket is not None:
                bucket.append(make_item(card, me))
                where[card.id] = card.status
        self._where = where
        for code, col in self.columns.items():
            col.model.set_items(by_column[code])
        self.apply_filters()

    def _on_load_failed(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._loading = False
        self.status_label.clear()
        if not self._loaded:
            self.loading_label.setText("The referrals could not be loaded.")
        self.message.show_error(error)

    def _on_records_changed(self, change: object) -> None:
        changed = getattr(change, "changed", {}) or {}
        if not BOARD_TABLES.intersection(changed) or not self._loaded:
            return
        self._stale = True
        if not self._reload_timer.isActive():  # coalesce: the first change of a burst starts it
            self._reload_timer.start()

    @Slot()
    def _reload_if_shown(self) -> None:
        if not self._stale:
            return
        if self._loading:
            return  # _on_loaded starts the timer again
        if self.isVisible():
            self.load()

    def _fill_options(self, options: FilterOptions) -> None:
        user = self._env.ctx.user.username
        self._refill(self.specialty_combo, [(s, s.casefold()) for s in options.specialties])
        self._refill(self.urgency_combo, [(u.capitalize(), u) for u in options.urgencies])
        owners = [("Unassigned", "")] + [(o + (" (me)" if o == user else ""), o) for o in options.owners]
        self._refill(self.owner_combo, owners)
        self._refill(self.payer_combo, [(name, pid) for pid, name in options.payers])

    @staticmethod
    def _refill(combo: QComboBox, entries: list[tuple[str, str]]) -> None:
        current = combo.currentData()
        combo.blockSignals(True)
        while combo.count() > 1:
            combo.removeItem(1)
        for text, value in entries:
            combo.addItem(text, value)
        index = combo.findData(current) if current is not None else 0
        combo.setCurrentIndex(max(0, index))
        combo.blockSignals(False)

    # -- filtering ------------------------------------------------------------------------------

    def criteria(self) -> BoardCriteria:
        return BoardCriteria.build(
            text=self.search_edit.text(),
            specialty=self.specialty_combo.currentData(),
            urgency=self.urgency_combo.currentData(),
            owner=self.owner_combo.currentData(),
            payer=self.payer_combo.currentData(),
            breached_only=self.breached_check.isChecked(),
            mine=self._env.ctx.user.username if self.mine_check.isChecked() else None,
        )

    @Slot()
    def apply_filters(self) -> None:
        """Re-filter every column in memory and update the counts."""
        criteria = self.criteria()
        for col in self.columns.values():
            col.model.apply(criteria)
            col.proxy.refilter()
            col.update_counts()
        self._update_status()

    def _update_status(self) -> None:
        total = shown = breached = 0
        for col in self.columns.values():
            t, s, b = col.model.counts()
            total, shown, breached = total + t, shown + s, breached + b
        if not self._loaded:
            self.status_label.clear()
            return
        cards = f"{total:,} referrals" if shown == total else f"{shown:,} of {total:,} referrals shown"
        self.status_label.setText(cards + (f" · {breached:,} past SLA" if breached else ""))

    @Slot(bool)
    def _closed_toggled(self, _on: bool) -> None:
        self._place_columns()
        if self._loaded:
            self.load()

    # -- cards ------------------------------------------------------------------------------------

    def card(self, referral_id: str) -> Card | None:
        code = self._where.get(referral_id)
        item = self.columns[code].model.item(referral_id) if code else None
        return item.card if item else None

    def select_card(self, referral_id: str) -> bool:
        """Select a card and give its column the focus (tests and keyboard flow)."""
        code = self._where.get(referral_id)
        col = self.columns.get(code) if code else None
        if col is None or not col.select(referral_id):
            return False
        col.list.setFocus(Qt.FocusReason.OtherFocusReason)
        return True

    def _focused_card(self) -> tuple[str, str] | None:
        for code, col in self.columns.items():
            if col.list.hasFocus() and col.current_id():
                return code, col.current_id() or ""
        return None

    def put_card(self, card: Card) -> None:
        """Show a fresh card where it belongs now (after a move, a booking, a detail reload)."""
        old = self._where.pop(card.id, None)
        if old is not None:
            self.columns[old].model.take(card.id)
        col = self.columns.get(card.status)
        if col is None or (card.status in TERMINAL and not self.closed_check.isChecked() and old is None):
            self._refresh_counts()
            return
        col.model.put(make_item(card, self._env.ctx.user.username))
        self._where[card.id] = card.status
        self._refresh_counts()

    def _refresh_counts(self) -> None:
        for col in self.columns.values():
            col.update_counts()
        self._update_status()

    # -- moves ----------------------------------------------------------------------------------

    def refusal(self, referral_id: str, to: str) -> str | None:
        """Why the card may not go to ``to`` now (a reason is assumed where one will be asked)."""
        if not self.can_write():
            return READ_ONLY
        if referral_id in self._moving:
            return "This referral is being moved already."
        card = self.card(referral_id)
        if card is None:
            return "This referral is no longer on the board."
        reason = "(asked on drop)" if to in NEEDS_REASON_TO or card.status == CLOSED else None
        refused = self._service.can_move(card, to, reason=reason)
        return refused.reason if refused else None

    def _judge(self, referral_id: str, to: str) -> str | None:
        """Drag-over: accept or refuse, and say why while the card hovers."""
        refused = self.refusal(referral_id, to)
        if refused:
            self.message.show_error(f"{self.columns[to].title}: {refused}")
        else:
            self.message.clear_error()
        return refused

    def _on_dropped(self, referral_id: str, to: str) -> None:
        self.move_card(referral_id, to)

    def move_card(self, referral_id: str, to: str) -> None:
        """Move a card (asking for a reason where the move needs one); the service decides."""
        refused = self.refusal(referral_id, to)
        if refused:
            self.message.show_error(refused)
            return
        card = self.card(referral_id)
        assert card is not None
        reason = None
        if to in NEEDS_REASON_TO or card.status == CLOSED:
            verb = "closing" if to == CLOSED else "reopening"
            reason = self.ask(self, f"{self.columns[to].title}", f"Reason for {verb} this referral:")
            if not reason:
                return
        self._moving.add(referral_id)
        self.message.show_notice(f"Moving to {self.columns[to].title}…")
        self._env.runner.submit(
            partial(self._service.move, referral_id, to, reason=reason),
            on_result=partial(self._moved, self._generation),
            on_error=partial(self._move_failed, self._generation, referral_id), owner=self, name="referral.move",
        )  # fmt: skip

    def _moved(self, generation: int, card: Card) -> None:
        self._moving.discard(card.id)
        if generation != self._generation:
            return
        refocus = self._focused_card() is not None
        self.put_card(card)
        self.message.show_notice(f"Moved to {self.columns[card.status].title}.")
        if refocus or self.focusWidget() is None:
            self.select_card(card.id)

    def _move_failed(self, generation: int, referral_id: str, error: BaseException) -> None:
        self._moving.discard(referral_id)
        if generation != self._generation:
            return
        text = error.reason if isinstance(error, MoveRefused) else error_text(error)
        self.message.show_error(f"Not moved: {text}")  # the card never left its column

    def _step(self, code: str, step: int) -> None:
        """Ctrl+Right / Ctrl+Left: the next allowed column that way (Closed only by menu or drag)."""
        referral_id = self.columns[code].current_id()
        if not referral_id:
            return
        order = [c for c in self.columns if c != CLOSED]
        if code not in order:
            self.message.show_error("Use Move to… (Ctrl+M) to reopen a closed referral.")
            return
        i = order.index(code) + step
        first: str | None = None
        while 0 <= i < len(order):
            refused = self.refusal(referral_id, order[i])
            if refused is None:
                self.move_card(referral_id, order[i])
                return
            first = first or f"{self.columns[order[i]].title}: {refused}"
            i += step
        self.message.show_error(first or "There is no column further that way.")

    def _menu_for(self, code: str, at: QPoint) -> None:
        referral_id = self.columns[code].current_id()
        if referral_id:
            menu = self.move_menu(referral_id)
            menu.exec(at)
            menu.deleteLater()

    def move_menu(self, referral_id: str) -> QMenu:
        """"Move to…": every other column; refused ones disabled, with the reason in their text."""
        menu = QMenu("Move to…", self)
        menu.setObjectName("moveMenu")
        menu.setToolTipsVisible(True)
        current = self._where.get(referral_id)
        for code, col in self.columns.items():
            if code == current:
                continue
            refused = self.refusal(referral_id, code)
            text = col.title + ("…" if refused is None and (code in NEEDS_REASON_TO or current == CLOSED) else "")
            action = menu.addAction(text if refused is None else f"{col.title} — {refused}")
            action.setData(code)
            action.setEnabled(refused is None)
            action.triggered.connect(partial(self.move_card, referral_id, code))
        return menu

    def _focus_neighbour(self, code: str, step: int) -> None:
        visible = [c for c, col in self.columns.items() if not col.collapsed]
        i = visible.index(code) + step if code in visible else -1
        if 0 <= i < len(visible):
            target = self.columns[visible[i]].list
            if not target.currentIndex().isValid() and target.model().rowCount():
                target.setCurrentIndex(target.model().index(0, 0))
            target.setFocus(Qt.FocusReason.TabFocusReason)

    # -- detail and intake ------------------------------------------------------------------------

    def _open_index(self, code: str, index: QModelIndex) -> None:
        if index.isValid():
            self.open_detail(index.data(ID_ROLE))

    def _open_current(self, code: str) -> None:
        referral_id = self.columns[code].current_id()
        if referral_id:
            self.open_detail(referral_id)

    def open_detail(self, referral_id: str) -> ReferralDetailDialog:
        """Open (or bring up) the detail of one referral."""
        if self.detail_dialog is not None:
            self.detail_dialog.reject()
        user = self._env.ctx.user
        dialog = ReferralDetailDialog(
            self._service, self._env.runner, referral_id, can_write=user.may(Permission.REFERRAL_WRITE),
            can_triage=user.may(Permission.REFERRAL_TRIAGE), ask=self.ask, parent=self,
        )  # fmt: skip
        dialog.card_changed.connect(self.put_card)
        dialog.finished.connect(partial(self._detail_closed, dialog))
        self.detail_dialog = dialog
        dialog.open()
        dialog.load()
        return dialog

    def _detail_closed(self, dialog: ReferralDetailDialog, _result: int) -> None:
        if self.detail_dialog is dialog:
            self.detail_dialog = None
            self.select_card(dialog.referral_id)
        dialog.deleteLater()

    @Slot()
    def request_new_referral(self) -> None:
        """The hook for intake review (services/intake.py): the signal, then the factory's dialog."""
        self.new_referral_requested.emit()
        if self._intake_factory is not None:
            dialog = self._intake_factory(self)
            dialog.finished.connect(lambda _r: (dialog.deleteLater(), self.load()))
            dialog.open()
