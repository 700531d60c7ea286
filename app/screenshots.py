"""Screenshots of the real windows, for review and documentation (``careops screenshots DIR``).

Works with ``QT_QPA_PLATFORM=offscreen`` as well as on a real display. Jobs run synchronously
here (``ImmediateExecutor``) so every page is complete when it is grabbed. Each search the pages
make is a real, audited search by the demo user of the page's role.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QWidget

from app.gui import WINDOW_SIZE, build_main_window, demo_hint, make_application
from app.logs import Safe
from app.security.roles import Role, allowed
from app.workstation import Workstation
from views.cache_events import CacheEvents
from views.intake_dialog import IntakeDialog
from views.login_dialog import LoginDialog
from views.main_window import MainWindow
from views.pages import PageEnv, PageSpec, available_pages
from views.patients_page import PatientsPage
from views.referral_board_model import ID_ROLE
from views.referral_board_page import ReferralBoardPage
from views.workers import ImmediateExecutor, JobRunner

logger = logging.getLogger(__name__)

# Tried in order until one finds patients; common in most name sets.
SEARCH_FRAGMENTS = ("an", "ar", "er", "el", "on", "ma", "li", "in", "a", "e")


def settle(ms: int = 60) -> None:
    """Let layouts, style polish and painting run before a grab."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    QApplication.processEvents()


def role_for(spec: PageSpec) -> Role:
    """The demo role a page is shown as: the coordinator where allowed, else the first that is."""
    if allowed(Role.COORDINATOR, spec.permission):
        return Role.COORDINATOR
    return next((r for r in Role if allowed(r, spec.permission)), Role.ADMINISTRATOR)


def search_common(page: PatientsPage, fragments: Iterable[str] = SEARCH_FRAGMENTS) -> str | None:
    """Type fragments into the page's search box until one finds patients; the fragment used."""
    for fragment in fragments:
        page.search_edit.setText(fragment)
        page.search_now()
        if page.model.rowCount() > 0:
            page.table.selectRow(0)
            return fragment
    return None


def _grab(widget: QWidget, path: Path) -> Path:
    settle()
    if not widget.grab().save(str(path)):
        raise OSError(f"could not write {path.name}")
    return path


def _window(ws: Workstation, role: Role, runner: JobRunner, events: CacheEvents) -> MainWindow:
    window = build_main_window(ws, ws.users.demo_session(role), runner=runner, cache_events=events)
    window.resize(*WINDOW_SIZE)
    window.show()
    settle()
    return window


def _close(window: QWidget) -> None:
    if isinstance(window, MainWindow):
        window.shutdown()
    window.close()
    window.deleteLater()
    settle(10)


def _show_page(window: MainWindow, name: str) -> None:
    window.show_page(name)
    page = window.page(name)
    if isinstance(page, PatientsPage):
        search_common(page)
    elif page is not None and name == "audit":
        verify = getattr(page, "verify", None)
        if callable(verify):
            verify()
    elif page is not None and name == "quarantine" and page.model.rowCount():
        page.table.selectRow(0)  # shows Retry / Discard as an administrator sees them in use


def _referral_detail(window: MainWindow, path: Path) -> list[Path]:
    """The detail of a referral on the board (a scheduled one if there is one), as its dialog."""
    page = window.page("referrals")
    if not isinstance(page, ReferralBoardPage):
        return []
    order = ("scheduled", "ready-to-schedule", "triage", "awaiting-preauth", "new")
    ids = [_first_id(page, code) for code in order if code in page.columns]
    referral_id = next((i for i in ids if i), None)
    if referral_id is None:
        return []
    dialog = page.open_detail(referral_id)
    try:
        return [_grab(dialog, path)]
    finally:
        dialog.reject()
        settle(10)


# A synthetic letter (every name made up) for the intake review screenshot.
INTAKE_LETTER = """NORTHGATE FAMILY PRACTICE
12 Linden Road, Springfield, IL 62704
Tel: (217) 555-0188   Fax: (217) 555-0189

May 6, 2024

Cardiology Department
Riverbend General Hospital

Re: Rosalind K. Avery  DOB 03/04/1958  MRN 4471902

Dear Colleague,

I would be grateful if you could see Mrs Rosalind K. Avery in cardiology clinic with exertional \
chest tightness and breathlessness over the last month. Her ECG shows new ST depression in the \
lateral leads. She has a history of type 2 diabetes and hypertension.

Please see her urgently.

Insurance:   Prairie Mutual Health
Plan:        Prairie Select HMO
Member ID:   PMH-5520831

Sincerely,

Tobias N. Farrow, MD
Northgate Family Practice
"""


def _intake(window: MainWindow, runner: JobRunner, events: CacheEvents, path: Path) -> list[Path]:
    """The intake review dialog with a letter extracted and some fields accepted (nothing created)."""
    env = PageEnv(ctx=window.ctx, runner=runner, cache_events=events)
    dialog = IntakeDialog(env, window.page("referrals") or window)
    try:
        dialog.show()
        settle()
        dialog.letter.setPlainText(INTAKE_LETTER)
        dialog.extract_now()
        for name in ("patient_name", "mrn", "specialty", "reason", "urgency", "referring_clinician"):
            dialog.decide(name, "accept")
        dialog.decide("plan", "reject")
        dialog.rows["birth_date"].editor.setFocus()
        dialog.show_source("birth_date")
        return [_grab(dialog, path)]
    finally:
        dialog.clear_and_close()
        dialog.deleteLater()
        settle(10)


def _first_id(page: ReferralBoardPage, code: str) -> str | None:
    proxy = page.columns[code].proxy
    return proxy.index(0, 0).data(ID_ROLE) if proxy.rowCount() else None


def render_all(ws: Workstation, out_dir: Path) -> list[Path]:
    """Render login.png, main.png, locked.png and one <page>.png per page into ``out_dir``, with
    referral_detail.png after referrals.png when the board has a referral to open, and intake.png
    (the intake review dialog with a synthetic letter)."""
    make_application()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = JobRunner(ImmediateExecutor())
    events = CacheEvents()
    events.connect(ws.cache)
    written: list[Path] = []
    try:
        login = LoginDialog(ws.users, runner, hint=demo_hint() if ws.settings.demo else "")
        login.show()
        written.append(_grab(login, out_dir / "login.png"))
        _close(login)

        window = _window(ws, Role.COORDINATOR, runner, events)
        _show_page(window, "patients")
        written.append(_grab(window, out_dir / "main.png"))
        window.lock("manual")
        written.append(_grab(window, out_dir / "locked.png"))
        _close(window)

        for spec in available_pages():
            window = _window(ws, role_for(spec), runner, events)
            _show_page(window, spec.name)
            written.append(_grab(window, out_dir / f"{spec.name}.png"))
            if spec.name == "referrals":
                written.extend(_referral_detail(window, out_dir / "referral_detail.png"))
                written.extend(_intake(window, runner, events, out_dir / "intake.png"))
            _close(window)
    finally:
        events.detach()
        runner.shutdown()
        events.deleteLater()
        runner.deleteLater()
    logger.info("wrote %d screenshots", len(written))
    for path in written:
        logger.debug("screenshot %s", Safe(path.name))
    return written
