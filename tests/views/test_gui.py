"""The GUI composition root: start-up steps, demo seeding with progress, screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app import gui
from app.security.roles import Role
from app.workstation import open_workstation
from tests.views.conftest import PASSPHRASE
from views.main_window import MainWindow
from views.workers import JobRunner


def test_parse_args():
    args, rest = gui.parse_args([])
    assert args.role == "coordinator" and not args.login and rest == []
    args, rest = gui.parse_args(["--role", "administrator", "--login", "-platform", "offscreen"])
    assert args.role == "administrator" and args.login and rest == ["-platform", "offscreen"]
    with pytest.raises(SystemExit):
        gui.parse_args(["--role", "janitor"])


def test_open_interactive_uses_the_environment(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("CAREOPS_PASSPHRASE", PASSPHRASE)
    runner = JobRunner()
    ws = gui.open_interactive(tmp_path / "home", runner)
    assert ws is not None and ws.paths.home == tmp_path / "home"
    ws.close()
    runner.shutdown()


def when_shown(kind, act, tries: int = 100):
    """Call ``act(widget)`` once a visible top-level ``kind`` appears (inside its exec loop)."""

    def poll(left=tries):
        found = [w for w in QApplication.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]
        if found:
            act(found[0])
        elif left:
            QTimer.singleShot(30, lambda: poll(left - 1))

    QTimer.singleShot(30, poll)


def test_wrong_environment_passphrase_asks_in_a_dialog(qtbot, tmp_path, monkeypatch):
    from views.passphrase_dialog import PassphraseDialog

    open_workstation(tmp_path / "home", passphrase=PASSPHRASE).close()
    monkeypatch.setenv("CAREOPS_PASSPHRASE", "not the passphrase")
    seen = {}

    def answer(dialog):
        seen["message"] = dialog.error_label.text()
        seen["confirm"] = dialog.confirm_edit.isVisible()
        dialog.passphrase_edit.setText(PASSPHRASE)
        dialog.submit()

    when_shown(PassphraseDialog, answer)
    runner = JobRunner()
    ws = gui.open_interactive(tmp_path / "home", runner)
    assert ws is not None
    assert seen["message"].startswith("CAREOPS_PASSPHRASE did not open the cache. The passphrase is wrong.")
    assert seen["confirm"] is False  # not a first run: no confirmation field
    ws.close()
    runner.shutdown()


def test_known_error_offers_retry_or_quit(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("idle_lock_minutes = 99\n", encoding="utf-8")
    monkeypatch.setenv("CAREOPS_PASSPHRASE", PASSPHRASE)
    seen = {}

    def quit_(box):
        seen["text"] = box.text()
        box.button(QMessageBox.StandardButton.Close).click()

    when_shown(QMessageBox, quit_)
    runner = JobRunner()
    assert gui.open_interactive(home, runner) is None
    assert "idle_lock_minutes must be more than 0 and at most 15" in seen["text"]
    assert "config.toml" in seen["text"]  # the remedy
    assert "Traceback" not in seen["text"]
    runner.shutdown()


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    from app.demo.generate import generate

    folder = tmp_path / "demo"
    generate(folder, scale=0.02)
    return folder


def test_seed_demo_data_with_progress(qtbot, tmp_path, demo_dir, monkeypatch):
    pytest.importorskip("sync.fhir.bulk_import")
    ws = open_workstation(tmp_path / "home", passphrase=PASSPHRASE)
    runner = JobRunner()
    try:
        assert gui.seed_demo_data(ws, runner, tmp_path / "empty") is False
        assert gui.seed_demo_data(ws, runner, demo_dir) is True
        assert gui._patient_count(ws) > 0
        assert gui.seed_demo_data(ws, runner, demo_dir) is False  # only into an empty cache
    finally:
        runner.shutdown()
        ws.close()


def test_run_starts_and_quits(qtbot, qapp, tmp_path, demo_dir, monkeypatch):
    # Closing the last window would post a Quit event that outlives run() and ends the event
    # loops of later tests: quit explicitly instead.
    monkeypatch.setattr(qapp, "setQuitOnLastWindowClosed", qapp.setQuitOnLastWindowClosed)
    qapp.setQuitOnLastWindowClosed(False)
    monkeypatch.setenv("CAREOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAREOPS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr(gui, "_install_logging", lambda paths: None)  # keep pytest's log capture
    monkeypatch.setattr(gui, "DEMO_DIR", demo_dir)
    seen = {}

    def look_and_quit():
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not windows:
            QTimer.singleShot(50, look_and_quit)
            return
        w = windows[0]
        seen["pages"] = w.page_names()
        seen["user"] = w.user_label.text()
        seen["title"] = w.windowTitle()
        w.shutdown()
        w.close()
        QApplication.quit()

    QTimer.singleShot(50, look_and_quit)
    try:
        assert gui.run(["--role", "administrator"]) == 0
    finally:
        qapp.setQuitOnLastWindowClosed(True)
    assert seen["pages"] == ["patients", "sync", "audit", "quarantine"]
    assert seen["user"] == "Ari Admin (demo) · Administrator"
    assert seen["title"] == "CareOps Desk — Patients"


def test_render_all_offscreen(qtbot, desk_ws, tmp_path):
    from app.screenshots import render_all
    from tests.views.referral_seed import seed_office

    seed_office(desk_ws.cache, 12)
    paths = render_all(desk_ws, tmp_path / "shots")
    assert [p.name for p in paths] == ["login.png", "main.png", "locked.png", "referrals.png", "referral_detail.png", "intake.png",
                                       "patients.png", "sync.png", "audit.png", "quarantine.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    # Screenshots search as the demo user of each page's role: audited like any search.
    assert any(e.action == "patient.search" for e in desk_ws.audit.entries())


def test_role_for_pages():
    from app.screenshots import role_for
    from views.pages import available_pages

    assert {s.name: role_for(s) for s in available_pages()} == {
        "referrals": Role.COORDINATOR, "patients": Role.COORDINATOR, "sync": Role.COORDINATOR, "audit": Role.ADMINISTRATOR,
        "quarantine": Role.ADMINISTRATOR,
    }  # fmt: skip
