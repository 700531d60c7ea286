"""The page registry: which pages exist, who may see them, and how to build one.

A page is a QWidget built by its ``PageSpec.factory`` from a :class:`PageEnv` (the objects it may
use, passed in; no global look-ups). The main window lists the pages a user's role may see, in the
order of :func:`available_pages`, and drives them through the :class:`Page` hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal, SignalInstance
from PySide6.QtWidgets import QWidget

from app.security.roles import Permission
from app.security.users import UserSession
from services.context import ServiceContext
from views.workers import JobRunner

logger = logging.getLogger(__name__)


def has_access(user: UserSession, permission: Permission) -> bool:
    """True when the role or an active grant allows ``permission``."""
    return user.may(permission)


class ChangeSource(Protocol):
    """Something with a ``records_changed(ChangeSet)`` signal (``views.cache_events.CacheEvents``)."""

    records_changed: SignalInstance


@dataclass(frozen=True)
class PageEnv:
    """What a page is given.

    Attributes:
        ctx: the service context (cache, audit, the signed-in user). ``ctx.user`` can be replaced
            after a full re-login, so pages read it each time and never keep the session.
        runner: runs service calls off the GUI thread.
        cache_events: the committed-changes signal.
        break_glass_minutes: the default duration offered for emergency access.
        sync: the sync controller (``status_changed(status)`` and ``request_sync()`` signals), or
            None when this workstation has no central service.
        ehr_sync: the EHR sync controller (the same signals, with an EhrStatus), or None when no
            EHR is configured.
    """

    ctx: ServiceContext
    runner: JobRunner
    cache_events: QObject
    break_glass_minutes: float = 30.0
    sync: QObject | None = None
    reimport: Callable[..., Any] | None = None
    ehr_sync: QObject | None = None


class Page(QWidget):
    """Base of the main window's pages; every hook has a harmless default.

    Signals:
        access_changed(): the user's access changed (emergency access started): the window
            updates its banner.
    """

    access_changed = Signal()

    def page_activated(self) -> None:
        """The page became the current one (or the window was unlocked while it was)."""

    def clear_sensitive(self) -> None:
        """The window locks: drop every PHI value the page shows or holds (models, inputs)."""

    def refresh_access(self) -> None:
        """The user's access may have changed (a grant started or ran out)."""

    def focus_target(self) -> QWidget | None:
        """The widget that should get keyboard focus when the page is shown."""
        return None


PageFactory = Callable[[PageEnv], Page]


@dataclass(frozen=True)
class PageSpec:
    """One entry in the navigation.

    Attributes:
        name: a stable id (``patients``); also the screenshot's file name.
        title: what the navigation shows.
        permission: what the page needs to show its data.
        factory: builds the page.
        everyone: list the page for every role even without ``permission`` (the patient page,
            so that emergency access can be started from it).
    """

    name: str
    title: str
    permission: Permission
    factory: PageFactory
    everyone: bool = False

    def visible_for(self, user: UserSession) -> bool:
        return self.everyone or has_access(user, self.permission)


def _referrals_page(env: PageEnv) -> Page:
    from views.referral_board_page import ReferralBoardPage

    from views.intake_dialog import intake_factory

    return ReferralBoardPage(env, intake_factory=intake_factory(env))


def _patients_page(env: PageEnv) -> Page:
    from views.patients_page import PatientsPage

    return PatientsPage(env)


def _sync_page(env: PageEnv) -> Page:
    from views.sync_page import SyncPage

    return SyncPage(env)


def _audit_page(env: PageEnv) -> Page:
    from views.audit_page import AuditPage

    return AuditPage(env)


def _quarantine_page(env: PageEnv) -> Page:
    from views.quarantine_page import QuarantinePage

    return QuarantinePage(env)


def available_pages() -> list[PageSpec]:
    """The foundation's pages, in navigation order."""
    return [
        # First: a coordinator's day starts on the board (an analyst sees it read-only).
        PageSpec("referrals", "Referrals", Permission.REFERRAL_READ, _referrals_page),
        PageSpec("patients", "Patients", Permission.PATIENT_READ, _patients_page, everyone=True),
        PageSpec("sync", "Sync", Permission.SYNC_RESOLVE, _sync_page),
        PageSpec("audit", "Audit log", Permission.AUDIT_READ, _audit_page),
        PageSpec("quarantine", "Quarantine", Permission.QUARANTINE_READ, _quarantine_page),
    ]
