"""Paints one referral card in a column list: no widget per card, so 5,000 cards cost nothing
until they scroll into view.

Every text goes through ``QPainter.drawText``, which never interprets markup: a patient called
``<b>x</b>`` is painted as typed. Urgency and SLA state are colour *and* text (never colour alone).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from services.referral_board import Card
from views.referral_board_model import (
    ITEM_ROLE,
    BoardItem,
    preauth_text,
    sla_text,
    urgency_text,
)

logger = logging.getLogger(__name__)

PAD = 7
GAP = 3
MARGIN = 3  # between cards
# Palette of views/style.qss; urgency chips: (fill, text).
INK, MUTED, LINE, SURFACE = QColor("#1f2933"), QColor("#52606d"), QColor("#d3dae3"), QColor("#ffffff")
ACCENT, DANGER = QColor("#1f5fa8"), QColor("#b3261e")
SELECTED_FILL = QColor("#eaf2fc")
CHIPS = {
    "emergent": (QColor("#b3261e"), QColor("#ffffff")),
    "urgent": (QColor("#f7d9a8"), QColor("#6b4500")),
    "routine": (QColor("#dcebdc"), QColor("#1e5b2e")),
    None: (QColor("#e4e7eb"), QColor("#3e4c59")),
}
REVIEW_CHIP = (QColor("#e8e1f5"), QColor("#4b2a86"))


class CardDelegate(QStyledItemDelegate):
    """Draws a ``BoardItem`` (ITEM_ROLE) as a card of fixed height."""

    def __init__(self, parent: QWidget | None = None, *, with_notes: bool = False) -> None:
        super().__init__(parent)
        self._with_notes = with_notes  # the Closed column: one more line for the reason
        base = parent.font() if parent is not None else QFont()
        self._bold = QFont(base)
        self._bold.setBold(True)
        self._small = QFont(base)
        self._small.setPointSizeF(max(7.0, base.pointSizeF() * 0.86))
        self._chip = QFont(self._small)
        self._chip.setBold(True)
        self._fm_bold = QFontMetrics(self._bold)
        self._fm_small = QFontMetrics(self._small)
        self._fm_chip = QFontMetrics(self._chip)
        self._line = self._fm_bold.height()
        self._small_line = self._fm_small.height()
        self._chip_h = self._fm_chip.height() + 4

    def card_height(self, with_note: bool = False) -> int:
        lines = self._line + 3 * self._small_line + self._chip_h + 4 * GAP
        return lines + 2 * PAD + 2 * MARGIN + (self._small_line + GAP if with_note else 0)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        # One height for all rows: the list uses uniform item sizes, so it never asks per row.
        return QSize(160, self.card_height(with_note=self._with_notes))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        item: BoardItem | None = index.data(ITEM_ROLE)
        if item is None:
            return
        card = item.card
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        focused = bool(option.state & QStyle.StateFlag.State_HasFocus)
        rect = option.rect.adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(ACCENT if selected else LINE, 2 if selected and focused else 1))
        painter.setBrush(SELECTED_FILL if selected else SURFACE)
        painter.drawRoundedRect(rect, 6, 6)
        if card.breached:  # a red edge as well as the text marker
            painter.fillRect(QRect(rect.left() + 1, rect.top() + 4, 4, rect.height() - 8), DANGER)
        x, w = rect.left() + PAD + 2, rect.width() - 2 * PAD - 2
        y = rect.top() + PAD
        y = self._title_row(painter, card, x, y, w)
        y = self._text(painter, self._small, self._fm_small, MUTED, x, y, w, self._subtitle(card))
        y = self._chips(painter, card, x, y, w)
        sla_colour = DANGER if card.breached else INK
        y = self._pair(painter, x, y, w, (sla_text(card, marker=False), sla_colour),
                       ("▲ Breached" if card.breached else "", DANGER), bold_right=card.breached)  # fmt: skip
        y = self._pair(painter, x, y, w, (preauth_text(card), MUTED), (item.owner, MUTED))
        if self._with_notes:
            self._text(painter, self._small, self._fm_small, MUTED, x, y, w, f"Reason: {item.note or 'not given'}")
        painter.restore()

    def _title_row(self, painter: QPainter, card: Card, x: int, y: int, w: int) -> int:
        """The patient's name, with the age right-aligned so that eliding a long name keeps it."""
        if card.patient_name is None:
            return self._text(painter, self._bold, self._fm_bold, INK, x, y, w, card.specialty)
        age = f"{card.patient_age} y" if card.patient_age is not None else ""
        age_w = self._fm_small.horizontalAdvance(age) + 6 if age else 0
        if age:
            painter.setFont(self._small)
            painter.setPen(MUTED)
            painter.drawText(QRect(x + w - age_w, y, age_w, self._line),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, age)  # fmt: skip
        self._text(painter, self._bold, self._fm_bold, INK, x, y, w - age_w, card.patient_name)
        return y + self._line + GAP

    @staticmethod
    def _subtitle(card: Card) -> str:
        if card.patient_name is None:
            return f"Received {card.received_at:%Y-%m-%d}"
        return f"{card.mrn or 'No MRN'} · {card.specialty}"

    def _text(
        self, painter: QPainter, font: QFont, fm: QFontMetrics, colour: QColor, x: int, y: int, w: int, text: str,
        *, bold: bool = False,
    ) -> int:  # fmt: skip
        if bold:
            font, fm = self._chip, self._fm_chip  # the small font, bold
        painter.setFont(font)
        painter.setPen(colour)
        h = fm.height()
        painter.drawText(QRect(x, y, w, h), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(text, Qt.TextElideMode.ElideRight, w))  # fmt: skip
        return y + h + GAP

    def _pair(
        self, painter: QPainter, x: int, y: int, w: int, left: tuple[str, QColor], right: tuple[str, QColor],
        *, bold_right: bool = False,
    ) -> int:  # fmt: skip
        """A small line with a right-aligned part that keeps up to half the width."""
        right_text, right_colour = right
        used = 0
        if right_text:
            font = self._chip if bold_right else self._small
            fm = self._fm_chip if bold_right else self._fm_small
            right_text = fm.elidedText(right_text, Qt.TextElideMode.ElideRight, w // 2)
            used = fm.horizontalAdvance(right_text) + 8
            painter.setFont(font)
            painter.setPen(right_colour)
            painter.drawText(QRect(x + w - used, y, used, self._small_line),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, right_text)  # fmt: skip
        text, colour = left
        return self._text(painter, self._small, self._fm_small, colour, x, y, w - used, text)

    def _chips(self, painter: QPainter, card: Card, x: int, y: int, w: int) -> int:
        right = x + w
        x = self._chip_at(painter, CHIPS.get(card.urgency, CHIPS[None]), urgency_text(card), x, y, right)
        if card.triage_queue == "human":  # the triage model left the urgency to a person
            self._chip_at(painter, REVIEW_CHIP, "Review", x + 4, y, right)
        return y + self._chip_h + GAP

    def _chip_at(self, painter: QPainter, colours: tuple[QColor, QColor], text: str, x: int, y: int, right: int) -> int:
        fill, ink = colours
        width = min(self._fm_chip.horizontalAdvance(text) + 14, max(0, right - x))
        if width < 16:
            return x
        chip = QRect(x, y, width, self._chip_h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(chip, self._chip_h / 2, self._chip_h / 2)
        painter.setFont(self._chip)
        painter.setPen(ink)
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter,
                         self._fm_chip.elidedText(text, Qt.TextElideMode.ElideRight, width - 8))  # fmt: skip
        return x + width
