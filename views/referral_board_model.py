"""The referral board's Qt models: one list model per column, and a filter proxy over each.

A column model holds :class:`BoardItem` values (a frozen ``Card`` plus its precomputed lowercase
search key) and, next to them, whether each row passes the board's current :class:`BoardCriteria`.
The proxy only reads that flag: the criteria are evaluated in one tight Python loop per keystroke,
not through a Qt virtual call that re-tests every field, which keeps a 5,000-card re-filter to a
few milliseconds. Rows are inserted and removed one by one (``beginInsertRows``), so a move or a
single refreshed card keeps the other columns' selection and scroll position.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from services.referral_board import Card
from services.referral_workflow import UNTRIAGED, URGENCY_RANK

logger = logging.getLogger(__name__)

Index = QModelIndex | QPersistentModelIndex
CARD_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
ITEM_ROLE = Qt.ItemDataRole.UserRole + 3
MIME_TYPE = "application/x-careops-referral-id"


@dataclass(frozen=True)
class BoardItem:
    """A card as the board shows it.

    Attributes:
        card: the service's card.
        key: lowercase "name MRN specialty" for the text search (precomputed once per load).
        owner: the owner as the card says it ("You" for the signed-in user's own cards).
        note: the reason a closed referral was closed.
    """

    card: Card
    key: str
    owner: str
    note: str | None = None


def make_item(card: Card, me: str) -> BoardItem:
    key = " ".join(filter(None, (card.patient_name, card.mrn, card.specialty))).casefold()
    return BoardItem(card, key, "You" if card.owner and card.owner == me else owner_text(card), card.closed_reason)


def sort_key(card: Card) -> tuple[bool, int, Any]:
    """The service's board order within a column: past SLA first, then urgency, then oldest."""
    return (not card.breached, URGENCY_RANK.get(card.urgency, 2), card.received_at)


@dataclass(frozen=True)
class BoardCriteria:
    """The in-memory filters; a field left at None means "any"."""

    specialty: str | None = None  # casefolded
    urgency: str | None = None  # an urgency, or UNTRIAGED
    owner: str | None = None  # a username; "" for unassigned
    payer: str | None = None  # a payer organisation id
    breached_only: bool = False
    mine: str | None = None  # the signed-in username when "My queue" is on
    words: tuple[str, ...] = ()  # casefolded

    @classmethod
    def build(cls, *, text: str = "", **fields: Any) -> BoardCriteria:
        return cls(words=tuple(text.casefold().split()), **fields)

    def accepts(self, item: BoardItem) -> bool:
        c = item.card
        if self.breached_only and not c.breached:
            return False
        if self.specialty is not None and c.specialty.casefold() != self.specialty:
            return False
        if self.urgency is not None and (c.urgency or UNTRIAGED) != self.urgency:
            return False
        if self.owner is not None and (c.owner or "") != self.owner:
            return False
        if self.mine is not None and c.owner != self.mine:
            return False
        if self.payer is not None and c.payer_id != self.payer:
            return False
        key = item.key
        return all(w in key for w in self.words)

    def is_empty(self) -> bool:
        return self == BoardCriteria()


class ColumnModel(QAbstractListModel):
    """The cards of one board column, in board order.

    Roles: DisplayRole (a plain-text summary, for accessibility and tests), CARD_ROLE (the
    ``Card``), ITEM_ROLE (the ``BoardItem``), ID_ROLE (the referral id).
    """

    def __init__(self, code: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.code = code
        self.draggable = False
        self._items: list[BoardItem] = []
        self._keys: list[tuple[bool, int, Any]] = []
        self._ids: list[str] = []
        self._criteria = BoardCriteria()
        self.accepted: list[bool] = []  # read by ColumnProxy, row for row

    # -- content -------------------------------------------------------------------------------

    def set_items(self, items: Iterable[BoardItem]) -> None:
        """Replace every card (a full load); ``items`` are already in board order."""
        self.beginResetModel()
        self._items = list(items)
        self._keys = [sort_key(i.card) for i in self._items]
        self._ids = [i.card.id for i in self._items]
        accepts = self._criteria.accepts
        self.accepted = [accepts(i) for i in self._items]
        self.endResetModel()

    def clear(self) -> None:
        self.set_items(())

    def items(self) -> Sequence[BoardItem]:
        return self._items

    def row_of(self, referral_id: str) -> int:
        try:
            return self._ids.index(referral_id)
        except ValueError:
            return -1

    def item(self, referral_id: str) -> BoardItem | None:
        row = self.row_of(referral_id)
        return self._items[row] if row >= 0 else None

    def take(self, referral_id: str) -> BoardItem | None:
        """Remove a card and return it (a move away, a rollback)."""
        row = self.row_of(referral_id)
        if row < 0:
            return None
        self.beginRemoveRows(QModelIndex(), row, row)
        item = self._items.pop(row)
        del self._keys[row], self._ids[row], self.accepted[row]
        self.endRemoveRows()
        return item

    def put(self, item: BoardItem) -> int:
        """Insert (or replace) a card at its place in board order; its row."""
        self.take(item.card.id)
        key = sort_key(item.card)
        row = bisect.bisect_right(self._keys, key)
        self.beginInsertRows(QModelIndex(), row, row)
        self._items.insert(row, item)
        self._keys.insert(row, key)
        self._ids.insert(row, item.card.id)
        self.accepted.insert(row, self._criteria.accepts(item))  # before endInsertRows: the proxy asks
        self.endInsertRows()
        return row

    # -- filtering -------------------------------------------------------------------------------

    def apply(self, criteria: BoardCriteria) -> None:
        """Re-evaluate every row against ``criteria``; the proxy then re-reads ``accepted``."""
        self._criteria = criteria
        accepts = criteria.accepts
        self.accepted = [accepts(i) for i in self._items]

    def counts(self) -> tuple[int, int, int]:
        """(all cards, cards shown, shown cards past their SLA)."""
        shown = breached = 0
        for item, ok in zip(self._items, self.accepted, strict=True):
            if ok:
                shown += 1
                breached += item.card.breached
        return len(self._items), shown, breached

    # -- Qt model interface ---------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == CARD_ROLE:
            return item.card
        if role == ITEM_ROLE:
            return item
        if role == ID_ROLE:
            return item.card.id
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return card_summary(item)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
        if self.draggable:
            flags |= Qt.ItemFlag.ItemIsDragEnabled
        return flags

    def mimeTypes(self) -> list[str]:
        return [MIME_TYPE]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        mime = QMimeData()
        if indexes:
            mime.setData(MIME_TYPE, str(self.data(indexes[0], ID_ROLE)).encode("ascii"))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction


class ColumnProxy(QSortFilterProxyModel):
    """Shows the rows its ``ColumnModel`` marked as accepted; keeps the model's order."""

    def __init__(self, source: ColumnModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._column = source
        self.setDynamicSortFilter(False)
        self.setSourceModel(source)

    def refilter(self) -> None:
        self.beginFilterChange()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        return self._column.accepted[source_row]


def referral_id_from(mime: QMimeData | None) -> str | None:
    """The referral id a board drag carries, or None for anything else."""
    if mime is None or not mime.hasFormat(MIME_TYPE):
        return None
    raw = bytes(mime.data(MIME_TYPE).data())
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if 0 < len(text) <= 64 else None


# -- card texts (shared by the delegate, accessibility and tests) -------------------------------


def urgency_text(card: Card) -> str:
    return (card.urgency or UNTRIAGED).capitalize()


def sla_text(card: Card, *, marker: bool = True) -> str:
    """"12 d / 7 d SLA"; with ``marker``, a breach is said in words too (the card paints its own)."""
    text = f"{card.days_waiting} d / {card.sla_days:g} d SLA"
    return f"{text} · ▲ breached" if card.breached and marker else text


def preauth_text(card: Card) -> str:
    if card.preauth_status:
        return "Pre-auth " + card.preauth_status.replace("-", " ")
    return "Pre-auth needed" if card.preauth_required else "No pre-auth"


def owner_text(card: Card) -> str:
    return card.owner or "Unassigned"


def patient_line(card: Card) -> str:
    """Name and age, or, for a role that may not read patients, what the card is about."""
    if card.patient_name is None:
        return "Patient not shown"
    age = f", {card.patient_age}" if card.patient_age is not None else ""
    return f"{card.patient_name}{age}"


def card_summary(item: BoardItem) -> str:
    card = item.card
    parts = [patient_line(card)]
    if card.mrn:
        parts.append(card.mrn)
    parts += [card.specialty, urgency_text(card), sla_text(card), preauth_text(card), item.owner]
    if card.triage_queue == "human":
        parts.append("triage: for a person to review")
    if item.note:
        parts.append(f"closed: {item.note}")
    return " · ".join(parts)
