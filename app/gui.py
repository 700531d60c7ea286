"""The GUI composition root: ``python -m app``.

Start-up, in order: logging, the QApplication and its style, the workstation (the encrypted cache:
passphrase from CAREOPS_PASSPHRASE or a dialog), demo users, the first session (the demo user of
``--role``, or the login dialog with ``--login``), the demo data set when the cache has no
patients yet, and the main window. Every slow step runs on a worker while the GUI stays live, and
every known problem is shown as a message with its remedy, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QApplication, QDialog

from app import APP_NAME, __version__
from app.config import Paths, default_home
from app.errors import KnownError, WrongPassphrase
from app.logs import Safe, install_logging
from app.security.idle import IdlePolicy
from app.security.roles import Role
from app.security.users import DEMO_PASSWORD, DEMO_USERS, UserSession
from app.workstation import Workstation, open_workstation
from services.context import ServiceContext
from views.cache_events import CacheEvents
from views.login_dialog import LoginDialog
from views.main_window import MainWindow
from views.pages import available_pages
from views.passphrase_dialog import PassphraseDialog
from views.widgets import ask_retry, run_with_progress, show_error, style_sheet
from views.workers import JobRunner, run_and_wait

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent.parent / "resources" / "demo"
WINDOW_SIZE = (1280, 800)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and whatever is left for Qt (``-platform``, ``-style``...)."""
    p = argparse.ArgumentParser(prog="python -m app", description=f"{APP_NAME} {__version__}")
    p.add_argument(
        "--role", choices=[r.value for r in Role], default=Role.COORDINATOR.value,
        help="demo mode: sign in as the demo user of this role (default: coordinator)",
    )  # fmt: skip
    p.add_argument("--login", action="store_true", help="show the login dialog instead of signing in the demo user")
    return p.parse_known_args(list(argv))


def demo_hint() -> str:
    names = [username for username, _ in DEMO_USERS.values()]
    rows = [" · ".join(names[i : i + 3]) for i in range(0, len(names), 3)]
    return "\n".join([f"Demo mode: the password is \u201c{DEMO_PASSWORD}\u201d for", *rows])


def make_application(argv: Sequence[str] = ()) -> QApplication:
    """The QApplication (the existing one if any), with the application's style applied."""
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "careops", *argv])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("CareOps")
    app.setStyle("Fusion")
    app.setStyleSheet(style_sheet())
    return app


def inbound_importer(cache: Any, source: str) -> Any:
    """The inbound pipeline quarantine review retries records through."""
    from sync.fhir.bulk_import import BulkImporter

    return BulkImporter(cache, source=source)


def build_main_window(
    ws: Workstation,
    session: UserSession,
    *,
    runner: JobRunner | None = None,
    cache_events: CacheEvents | None = None,
    idle: IdlePolicy | None = None,
    idle_check_ms: int = 1000,
    sync: QObject | None = None,
    ehr_sync: QObject | None = None,
) -> MainWindow:
    """The main window for ``session`` over ``ws``; what ``run`` and the screenshots both show.

    Objects not passed in are created here and released by ``window.shutdown()``.
    """
    own_runner = runner is None
    runner = runner or JobRunner()
    own_events = cache_events is None
    if cache_events is None:
        cache_events = CacheEvents()
        cache_events.connect(ws.cache)
    idle = idle or IdlePolicy(ws.settings.idle_lock_minutes, ws.settings.full_login_hours)
    ctx = ServiceContext(ws.cache, ws.audit, session)
    window = MainWindow(
        ctx, ws.users, available_pages(), idle, cache_events, ws.cache.pending_outbox,
        runner=runner, break_glass_minutes=ws.settings.break_glass_minutes, idle_check_ms=idle_check_ms,
        sync=sync, ehr_sync=ehr_sync, reimport=inbound_importer,
    )  # fmt: skip
    window.resize(*WINDOW_SIZE)
    if own_events:
        cache_events.setParent(window)
        window.add_cleanup(cache_events.detach)
    if own_runner:
        runner.setParent(window)
        window.add_cleanup(runner.shutdown)
    return window


# -- start-up steps ------------------------------------------------------------------------------


def open_interactive(home: Path, runner: JobRunner) -> Workstation | None:
    """Open the workstation, asking for the passphrase when needed; None when the user quits."""
    paths = Paths(home)
    env_passphrase = os.environ.get("CAREOPS_PASSPHRASE")
    message = ""
    while True:
        try:
            return run_and_wait(runner, partial(open_workstation, home, passphrase=env_passphrase), name="open")
        except WrongPassphrase as exc:
            if env_passphrase is not None:
                message = f"CAREOPS_PASSPHRASE did not open the cache. {exc.user_text()}"
            break
        except KnownError as exc:
            if ask_retry(None, exc, f"{APP_NAME} cannot start"):
                continue
            return None
        except Exception:
            logger.exception("the workstation could not be opened")
            show_error(None, "The workstation could not be opened. The details were written to the log.")
            return None
    first_run = not paths.key_file.exists() and not paths.cache.exists()
    dialog = PassphraseDialog(
        runner, partial(_open_with, home), first_run=first_run, message=message,
    )  # fmt: skip
    try:
        if dialog.exec() == QDialog.DialogCode.Accepted:
            return dialog.opened
        return None
    finally:
        dialog.deleteLater()


def _open_with(home: Path, passphrase: str) -> Workstation:
    return open_workstation(home, passphrase=passphrase)


def _patient_count(ws: Workstation) -> int:
    from sqlalchemy import func, select

    from app.cache.models import Patient

    with ws.cache.reader() as s:
        return int(s.scalar(select(func.count()).select_from(Patient)) or 0)


def seed_demo_data(ws: Workstation, runner: JobRunner, folder: Path | None = None) -> bool:
    """Load the synthetic demo data set when the cache has no patients yet; True if it ran."""
    folder = folder if folder is not None else DEMO_DIR
    if not ws.settings.demo or not folder.is_dir():
        return False
    if not any(folder.glob("*.ndjson")) and not any(folder.glob("*.ndjson.gz")):
        return False
    if run_and_wait(runner, _patient_count, ws, name="patients.count") > 0:
        return False
    try:
        from sync.fhir.bulk_import import import_ndjson_dir
    except ImportError:
        logger.info("bulk import is not available: demo data not loaded")
        return False

    def work(progress: Any, cancel: Any) -> Any:
        return import_ndjson_dir(ws.cache, folder, progress=progress, cancel=cancel)

    result, error, cancelled = run_with_progress(
        runner, work, title=f"{APP_NAME} — demo data",
        label="Loading the synthetic demo data set…",
        describe=lambda n: f"Loading the synthetic demo data set… {n:,} resources read",
    )  # fmt: skip
    if error is not None:
        show_error(None, error, "Demo data")
        return False
    if cancelled:
        logger.info("demo data load cancelled")
    elif result is not None:
        logger.info("demo data loaded: %d resources", int(getattr(result, "lines", 0)))
    return True


class Shell(QObject):
    """Owns the current main window and handles signing out and in again."""

    def __init__(self, app: QApplication, ws: Workstation, runner: JobRunner, *, hint: str = "") -> None:
        super().__init__()
        self._app = app
        self._ws = ws
        self._runner = runner
        self._hint = hint
        self.events = CacheEvents(self)
        self.events.connect(ws.cache)
        self.window: MainWindow | None = None
        self.session: UserSession | None = None
        self.sync: Any = None
        self.ehr_sync: Any = None
        self._hub: Any = None

    def start_sync(self, session: UserSession) -> None:
        """Sync with the configured EHR, and with the configured central service or demo mode's
        embedded one, as ``session``."""
        self.session = session
        self._start_ehr_sync()  # first: a central service that cannot start must not keep the EHR away
        from sync.engine import SyncEngine
        from sync.hub_client import HubClient
        from sync.sync_thread import SyncController

        url = self._ws.settings.hub_url
        if not url:
            from app.embedded_hub import EmbeddedHub

            def start_hub() -> tuple[EmbeddedHub, str]:
                # Unwrapping the hub key is scrypt where there is no keychain: not on the GUI thread.
                hub = EmbeddedHub(self._ws.paths.embedded_hub_db, self._ws.embedded_hub_key())
                return hub, hub.start()

            self._hub, url = run_and_wait(self._runner, start_hub, name="hub.start")
        client = HubClient(url, self._credentials, self._ws.workstation_id)
        self.sync = SyncController(SyncEngine(self._ws.cache, client))
        self.sync.start()

    def _start_ehr_sync(self) -> None:
        """Keep the EHR in step on its own thread; with no EHR configured nothing runs (demo mode
        seeds the same cache from resources/demo instead)."""
        settings = self._ws.settings.ehr
        if not settings.base_url:
            return
        from sync.fhir.ehr_sync import EhrSync
        from sync.sync_thread import SyncController

        self.ehr_sync = SyncController.for_ehr(EhrSync(settings, self._ws.cache))
        self.ehr_sync.start()

    def _stop_ehr_sync(self) -> None:
        # Its client holds the EHR sign-in made for the user who is leaving: it goes with them.
        if self.ehr_sync is not None:
            self.ehr_sync.stop()
            self.ehr_sync = None

    def _credentials(self) -> tuple[str, str]:
        from sync.hub_client import AuthFailed

        session = self.session
        if session is None:
            raise AuthFailed("Nobody is signed in.")
        return session.username, session.credential

    def login(self, parent: Any = None) -> UserSession | None:
        dialog = LoginDialog(self._ws.users, self._runner, parent, hint=self._hint)
        try:
            if dialog.exec() == QDialog.DialogCode.Accepted:
                return dialog.session
            return None
        finally:
            dialog.deleteLater()

    def show(self, session: UserSession) -> MainWindow:
        self.session = session
        window = build_main_window(self._ws, session, runner=self._runner, cache_events=self.events, sync=self.sync,
                                   ehr_sync=self.ehr_sync)
        window.sign_out_requested.connect(self._sign_out)
        old, self.window = self.window, window
        window.show()
        if old is not None:
            old.shutdown()
            old.close()
            old.deleteLater()
        logger.info("main window shown for role %s", Safe(session.role.value))
        return window

    @Slot()
    def _sign_out(self) -> None:
        logger.info("user signed out")
        self._stop_ehr_sync()
        # The old window stays locked (no PHI on it) behind the dialog until someone signs in.
        session = self.login(self.window)
        if session is None:
            self._app.quit()
            return
        self._start_ehr_sync()
        self.show(session)

    def shutdown(self) -> None:
        if self.window is not None:
            self.window.shutdown()
        self._stop_ehr_sync()
        if self.sync is not None:
            self.sync.stop()
        if self._hub is not None:
            self._hub.stop()
        self.events.detach()


def _install_logging(paths: Paths) -> None:
    try:
        install_logging(paths.logs)
    except OSError:
        install_logging(None)  # an unwritable data folder is reported when the cache opens


def run(argv: Sequence[str]) -> int:
    """Start the workstation GUI; the process exit status."""
    args, qt_args = parse_args(argv)
    home = default_home()
    paths = Paths(home)
    _install_logging(paths)
    app = make_application(qt_args)
    runner = JobRunner()
    ws = open_interactive(home, runner)
    if ws is None:
        runner.shutdown()
        return 1
    shell: Shell | None = None
    try:
        if ws.settings.demo:
            run_and_wait(runner, ws.users.ensure_demo_users, name="users.demo")
        shell = Shell(app, ws, runner, hint=demo_hint() if ws.settings.demo else "")
        if args.login or not ws.settings.demo:
            session = shell.login()
        else:
            session = ws.users.demo_session(Role(args.role))
        if session is None:
            return 0
        seed_demo_data(ws, runner)
        try:
            shell.start_sync(session)
        except Exception:  # the workstation works offline; the status bar says so
            logger.exception("sync could not start")
        window = shell.show(session)
        window.activateWindow()
        return app.exec()
    except KnownError as exc:
        show_error(None, exc, f"{APP_NAME} cannot start")
        return 2
    finally:
        if shell is not None:
            shell.shutdown()
        runner.shutdown()
        ws.close()
