"""The referral board's state machine: columns, the moves between them, and why a move is refused.

Pure Python, no database: :class:`Workflow` decides on :class:`Facts` (what the guards need to
know about one referral), so the board can ask "may this card go there?" while a card is being
dragged, and :mod:`services.referrals` asks again, on fresh facts, inside the transaction that
moves it.

Every default of the workflow lives in this module, and an organisation overrides some of them in
the ``[referrals]`` table of config.toml (:class:`app.config.ReferralSettings`): column titles,
SLA days per urgency, which payers need a pre-authorization, and whether an automatic-queue triage
suggestion sets the urgency. The column codes themselves are fixed: the EHR already knows them
(``sync.fhir.systems.WORKFLOW_TO_TASK_STATUS``).

The moves (``TRANSITIONS``; a move not listed is refused, and the guards below also apply)::

    new                -> triage, awaiting-preauth*, ready-to-schedule*, scheduled*, closed
    triage             -> awaiting-preauth*, ready-to-schedule*, scheduled*, closed
    awaiting-preauth   -> triage, ready-to-schedule*, scheduled*, closed
    ready-to-schedule  -> triage, awaiting-preauth*, scheduled*, closed
    scheduled          -> triage, awaiting-preauth*, ready-to-schedule*, completed, closed
    completed          -> (final)
    closed             -> triage (reopening, with a reason)

    * needs an urgency: an untriaged referral cannot skip Triage.

Guards by target column: Ready to schedule and Scheduled need the pre-authorization settled when
the payer needs one; Scheduled needs a booked appointment; Completed needs the appointment to have
taken place; Closed needs a reason; leaving Scheduled backwards (or closing) needs the booked
appointment cancelled first.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import ConfigError, KnownError

if TYPE_CHECKING:
    from app.config import ReferralSettings

# --- codes ------------------------------------------------------------------------------------

NEW, TRIAGE, AWAITING_PREAUTH, READY, SCHEDULED, COMPLETED, CLOSED = (
    "new", "triage", "awaiting-preauth", "ready-to-schedule", "scheduled", "completed", "closed",
)  # fmt: skip
# Board order.
COLUMNS: tuple[str, ...] = (NEW, TRIAGE, AWAITING_PREAUTH, READY, SCHEDULED, COMPLETED, CLOSED)
TERMINAL: frozenset[str] = frozenset({COMPLETED, CLOSED})
OPEN_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in TERMINAL)

TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({TRIAGE, AWAITING_PREAUTH, READY, SCHEDULED, CLOSED}),
    TRIAGE: frozenset({AWAITING_PREAUTH, READY, SCHEDULED, CLOSED}),
    AWAITING_PREAUTH: frozenset({TRIAGE, READY, SCHEDULED, CLOSED}),
    READY: frozenset({TRIAGE, AWAITING_PREAUTH, SCHEDULED, CLOSED}),
    SCHEDULED: frozenset({TRIAGE, AWAITING_PREAUTH, READY, COMPLETED, CLOSED}),
    COMPLETED: frozenset(),
    CLOSED: frozenset({TRIAGE}),
}
# Targets that need the urgency decided first.
NEEDS_URGENCY: frozenset[str] = frozenset({AWAITING_PREAUTH, READY, SCHEDULED})
# Moves that need a reason from the person making them.
NEEDS_REASON_TO: frozenset[str] = frozenset({CLOSED})

URGENCIES: tuple[str, ...] = ("emergent", "urgent", "routine")
UNTRIAGED = "untriaged"  # the SLA key, and the board filter value, for "no urgency yet"
# Board order within a column: the most pressing first; untriaged before routine because nobody
# has looked at it yet.
URGENCY_RANK: dict[str | None, int] = {"emergent": 0, "urgent": 1, None: 2, "routine": 3}

PREAUTH_STATUSES: tuple[str, ...] = (
    "not-requested", "requested", "approved", "denied", "appeal", "expired", "not-required",
)  # fmt: skip
PREAUTH_PENDING: frozenset[str] = frozenset({"requested", "appeal"})

EVENT_KINDS: tuple[str, ...] = (
    "created", "moved", "note", "assigned", "triage-suggested", "urgency-decided", "preauth",
    "booked", "rescheduled", "cancelled", "no-show", "transition", "ehr",
)  # fmt: skip

# --- defaults (an organisation overrides them in config.toml [referrals]) ----------------------

DEFAULT_TITLES: dict[str, str] = {
    NEW: "New",
    TRIAGE: "Triage",
    AWAITING_PREAUTH: "Awaiting pre-auth",
    READY: "Ready to schedule",
    SCHEDULED: "Scheduled",
    COMPLETED: "Completed",
    CLOSED: "Closed",
}
# Days from receipt to the appointment. These are this product's defaults, not a clinical or
# regulatory standard: each organisation sets its own in [referrals.sla_days]. "untriaged" is
# the time a referral may wait for someone to decide its urgency.
DEFAULT_SLA_DAYS: dict[str, float] = {"emergent": 1, "urgent": 7, "routine": 30, UNTRIAGED: 2}
# Every payer needs a pre-authorization unless listed as exempt, or the coordinator records
# that this coverage needs none ("not-required"); a referral with no payer needs none.
DEFAULT_PREAUTH_PAYERS: tuple[str, ...] = ("*",)
DEFAULT_AUTO_ACCEPT_TRIAGE = True

TITLE_MAX = 40


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a move is refused: a stable ``code`` for tests and the UI, and a ``reason`` for people
    (PHI-free)."""

    code: str
    reason: str


class MoveRefused(KnownError):
    """A move the workflow does not allow; ``refusal`` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal

    @property
    def reason(self) -> str:
        return self.refusal.reason

    @property
    def code(self) -> str:
        return self.refusal.code


@dataclass(frozen=True)
class Column:
    code: str
    title: str
    open: bool  # False for Completed and Closed (hidden from the board unless asked for)


@dataclass(frozen=True)
class Facts:
    """What the guards need to know about one referral, as of now."""

    status: str
    urgency: str | None = None
    preauth_needed: bool = False  # the payer needs one, or one is on record
    preauth_status: str | None = None  # of the latest PreAuthorization; None: none on record
    preauth_expires_on: dt.date | None = None
    booked_appointments: int = 0  # appointments with status "booked"
    appointment_started: bool = False  # a booked or fulfilled appointment's start has passed


# --- the workflow -----------------------------------------------------------------------------


class Workflow:
    """The columns and guards, with one organisation's settings applied."""

    def __init__(self, settings: ReferralSettings | None = None) -> None:
        if settings is not None:
            check_settings(settings)
        titles = dict(DEFAULT_TITLES)
        sla = {k: float(v) for k, v in DEFAULT_SLA_DAYS.items()}
        payers: Iterable[str] = DEFAULT_PREAUTH_PAYERS
        exempt: Iterable[str] = ()
        auto = DEFAULT_AUTO_ACCEPT_TRIAGE
        if settings is not None:
            titles.update({k: v.strip() for k, v in settings.column_titles.items()})
            sla.update({k: float(v) for k, v in settings.sla_days.items()})
            if settings.preauth_payers is not None:
                payers = settings.preauth_payers
            exempt = settings.preauth_exempt_payers
            if settings.auto_accept_triage is not None:
                auto = settings.auto_accept_triage
        self.titles: dict[str, str] = titles
        self.sla: dict[str, float] = sla
        self.preauth_payers = frozenset(p.strip().casefold() for p in payers)
        self.preauth_exempt = frozenset(p.strip().casefold() for p in exempt)
        self.auto_accept_triage: bool = auto

    # -- presentation ---------------------------------------------------------------------------

    def columns(self, *, include_closed: bool = True) -> tuple[Column, ...]:
        return tuple(
            Column(c, self.titles[c], c not in TERMINAL) for c in COLUMNS if include_closed or c not in TERMINAL
        )

    def title(self, code: str) -> str:
        return self.titles.get(code, code)

    # -- rules -----------------------------------------------------------------------------------

    def sla_days(self, urgency: str | None) -> float:
        """Days from receipt the referral may take to reach an appointment (to be triaged, while
        it has no urgency)."""
        return self.sla.get(urgency or UNTRIAGED, self.sla[UNTRIAGED])

    def needs_preauth(self, payer_id: str | None, payer_name: str | None = None) -> bool:
        """Whether the payer needs a pre-authorization by the organisation's rule (a referral
        without a payer needs none)."""
        if not payer_id and not payer_name:
            return False
        keys = {k.strip().casefold() for k in (payer_id, payer_name) if k}
        if keys & self.preauth_exempt:
            return False
        return "*" in self.preauth_payers or bool(keys & self.preauth_payers)

    def preauth_refusal(self, facts: Facts, today: dt.date | None = None) -> Refusal | None:
        """Why the pre-authorization does not yet allow scheduling, or None."""
        if not facts.preauth_needed or facts.preauth_status == "not-required":
            return None
        today = today or dt.date.today()
        status = facts.preauth_status
        if status in (None, "not-requested"):
            return Refusal(
                "preauth-needed",
                f"This payer needs a pre-authorization: request it first ({self.title(AWAITING_PREAUTH)})",
            )
        if status in PREAUTH_PENDING:
            return Refusal("preauth-pending", "Pre-authorization is still pending: record the payer's decision first")
        if status == "denied":
            return Refusal("preauth-denied", "Pre-authorization was denied: appeal the decision or close the referral")
        if status == "expired" or (facts.preauth_expires_on is not None and facts.preauth_expires_on < today):
            return Refusal("preauth-expired", "The pre-authorization has expired: request a new one")
        return None  # approved and current

    def check_move(
        self, facts: Facts, to: str, *, reason: str | None = None, today: dt.date | None = None
    ) -> Refusal | None:
        """None when ``facts``' referral may move to column ``to``; else why not.

        ``reason`` is what the person gave for the move (needed to close or reopen).
        """
        frm = facts.status
        has_reason = bool(reason and reason.strip())
        if to not in TRANSITIONS:
            return Refusal("unknown-column", "There is no such board column")
        if to == frm:
            return Refusal("same-column", f"The referral is already in {self.title(to)}")
        if frm == COMPLETED:
            return Refusal("final", "A completed referral is final")
        if frm == CLOSED:
            if to != TRIAGE:
                return Refusal("reopen-to-triage", f"Reopen a closed referral into {self.title(TRIAGE)} first")
            if not has_reason:
                return Refusal("reason-needed", "Reopening needs a reason")
            return None
        if to == NEW:
            return Refusal("no-way-back", f"A referral cannot go back to {self.title(NEW)}")
        if to == COMPLETED and frm != SCHEDULED:
            return Refusal(
                "complete-from-scheduled", f"Only a referral in {self.title(SCHEDULED)} can be completed"
            )
        if to not in TRANSITIONS.get(frm, frozenset()):  # pragma: no cover - the rules above cover the table
            return Refusal("not-allowed", f"A referral cannot move from {self.title(frm)} to {self.title(to)}")
        if to in NEEDS_REASON_TO and not has_reason:
            return Refusal("reason-needed", "Closing needs a reason")
        if to in NEEDS_URGENCY and facts.urgency is None:
            if frm == NEW:
                return Refusal("untriaged", f"An untriaged referral cannot skip {self.title(TRIAGE)}")
            return Refusal("untriaged", f"Decide the urgency before the referral leaves {self.title(TRIAGE)}")
        if facts.booked_appointments and to in (TRIAGE, AWAITING_PREAUTH, READY, CLOSED):
            what = "closing" if to == CLOSED else f"moving to {self.title(to)}"
            return Refusal("appointment-booked", f"Cancel the booked appointment (or record a no-show) before {what}")
        if to in (READY, SCHEDULED):
            refused = self.preauth_refusal(facts, today)
            if refused:
                return refused
        if to == SCHEDULED and not facts.booked_appointments:
            return Refusal("book-first", f"Book an appointment before moving to {self.title(SCHEDULED)}")
        if to == COMPLETED and not facts.appointment_started:
            return Refusal("not-yet-seen", "The appointment has not taken place yet")
        return None

    def allowed_moves(self, facts: Facts, today: dt.date | None = None) -> tuple[str, ...]:
        """The columns the referral may move to now (a reason assumed where one is needed), in
        board order: for highlighting drop targets."""
        return tuple(c for c in COLUMNS if self.check_move(facts, c, reason="(given)", today=today) is None)


def check_settings(settings: ReferralSettings) -> None:
    """Refuse a ``[referrals]`` table that names unknown columns or urgencies, or odd values."""
    unknown = sorted(set(settings.column_titles) - set(COLUMNS))
    if unknown:
        raise ConfigError(
            f"referrals.column_titles: unknown columns {', '.join(unknown)} (known: {', '.join(COLUMNS)})"
        )
    for code, title in settings.column_titles.items():
        if not isinstance(title, str) or not title.strip() or len(title.strip()) > TITLE_MAX:
            raise ConfigError(f"referrals.column_titles.{code} must be a title of 1 to {TITLE_MAX} characters")
    keys = (*URGENCIES, UNTRIAGED)
    unknown = sorted(set(settings.sla_days) - set(keys))
    if unknown:
        raise ConfigError(f"referrals.sla_days: unknown keys {', '.join(unknown)} (known: {', '.join(keys)})")
    for key, days in settings.sla_days.items():
        if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days <= 0:
            raise ConfigError(f"referrals.sla_days.{key} must be a number of days more than 0")
    for name in ("preauth_payers", "preauth_exempt_payers"):
        value = getattr(settings, name)
        if value is None:
            continue
        if not isinstance(value, tuple | list) or not all(isinstance(p, str) and p.strip() for p in value):
            raise ConfigError(f"referrals.{name} must be a list of payer ids or names")
    if settings.auto_accept_triage is not None and not isinstance(settings.auto_accept_triage, bool):
        raise ConfigError("referrals.auto_accept_triage must be true or false")


__all__ = [
    "AWAITING_PREAUTH", "CLOSED", "COLUMNS", "COMPLETED", "DEFAULT_SLA_DAYS", "DEFAULT_TITLES",
    "EVENT_KINDS", "NEW", "OPEN_COLUMNS", "PREAUTH_STATUSES", "READY", "SCHEDULED", "TERMINAL",
    "TRANSITIONS", "TRIAGE", "UNTRIAGED", "URGENCIES", "Column", "Facts", "MoveRefused", "Refusal",
    "Workflow", "check_settings",
]  # fmt: skip
