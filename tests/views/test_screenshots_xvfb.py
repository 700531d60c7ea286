"""A real window on a real (virtual) display: screenshots of the main window and the login dialog.

Run under ``xvfb-run -a -s "-screen 0 1280x800x24"`` (``make test`` does). The windows are built
and shown in a child process with ``QT_QPA_PLATFORM=xcb``; the PNGs land in <repo>/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.views.conftest import PASSPHRASE

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "screenshots"

SCRIPT = r"""
import datetime as dt, os, sys
from pathlib import Path
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtGui import QGuiApplication
from app.gui import build_main_window, make_application
from app.cache.models import Patient
from app.screenshots import render_all, search_common, settle
from app.security.roles import Role
from app.workstation import open_workstation
from views.workers import ImmediateExecutor, JobRunner

out = Path(sys.argv[1])
app = make_application()
assert QGuiApplication.platformName() == "xcb", QGuiApplication.platformName()
ws = open_workstation(Path(os.environ["CAREOPS_HOME"]))
ws.users.ensure_demo_users()
names = ["Ada Testperson", "Marina Sandoval", "Daniel Okafor", "Hannah Lindqvist", "Brian Malone",
         "Ana Ferreira", "Ellen Marsh", "<b>Bold</b> Test", "Jonas Andersen", "Maria Santos"]
with ws.cache.unit_of_work(user="test", origin="sync") as s:
    for i, n in enumerate(names):
        s.add(Patient(mrn=f"MRN{700100 + i}", name=n, birth_date=dt.date(1940 + 7 * i, 1 + i, 3 + i),
                      sex=("female", "male")[i % 2]))
# A few inbound records the importer refuses, so the quarantine page has something to review.
from sync.fhir.bulk_import import BulkImporter
importer = BulkImporter(ws.cache, source="ehr")
for i in range(7):
    importer.add(('{"resourceType": "Encounter", "id": "enc-%d", "status": "finished", "class": {"code": "AMB"},'
                  ' "subject": {"reference": "Patient/pat-gone-%d"}, "period": {"start": "2024-04-0%dT09:00:00Z"}}'
                  % (i, i, i + 1)).encode())
importer.add(b'{"resourceType": "Patient", "id": "pat-nomrn", "name": [{"family": "Synthetic"}]}')
importer.add(b'{"resourceType": "Observation", "id": "obs-1", "status": "final"}')
importer.add(b'{"resourceType": "Patient", "id": "pat-cut", "name": [')
importer.finish()
# Write-backs in the states a person has to look at, so the Sync page's EHR section shows them.
from app.cache.models import EhrWrite
with ws.cache.unit_of_work(user="test", origin="sync") as s:
    for kind, entity, rid, status, detail in [
        ("task-status", "referrals", "sr-1042", "not-accepted", "The EHR does not accept this change (create Task)."),
        ("appointment", "appointments", "ap-2203", "conflict", "the EHR changed this record meanwhile"),
        ("communication", "checkins", "ci-0311", "failed", "The EHR refused the request (HTTP 422)."),
        ("task-status", "referrals", "sr-1043", "pending", None),
    ]:
        s.add(EhrWrite(kind=kind, entity=entity, entity_id=rid, user="casey", status=status, detail=detail))
# A referral office with every open column filled, some past their SLA (tests/views/referral_seed.py).
from tests.views.referral_seed import seed_office
seed_office(ws.cache, 60, terminal=6)
for p in render_all(ws, out):
    print(p)
# What the X server really shows: the main window, grabbed from the screen.
runner = JobRunner(ImmediateExecutor())
window = build_main_window(ws, ws.users.demo_session(Role.COORDINATOR), runner=runner)
window.move(0, 0)
window.show()
window.activateWindow()
settle(300)
search_common(window.page("patients"))
settle(300)
shot = out / "screen-xvfb.png"
app.primaryScreen().grabWindow(0).save(str(shot))
print(shot)
window.shutdown()
window.close()
ws.close()
"""


def distinct_colours(path: Path, step: int = 37) -> int:
    image = QImage(str(path))
    assert not image.isNull(), path
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)
    }
    return len(colours)


@pytest.mark.xvfb
def test_real_windows_under_xvfb(tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("no DISPLAY: run under xvfb-run -a -s '-screen 0 1280x800x24' (make test does)")
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="xcb",
        CAREOPS_HOME=str(tmp_path / "home"),
        CAREOPS_PASSPHRASE=PASSPHRASE,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(OUT)], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = [Path(line) for line in result.stdout.split() if line.endswith(".png")]
    names = {p.name for p in written}
    assert {"login.png", "main.png", "patients.png", "audit.png", "quarantine.png", "screen-xvfb.png", "referrals.png",
            "referral_detail.png"} <= names
    assert "intake.png" in names  # the intake review dialog, a letter loaded and some fields accepted
    for path in written:
        assert path.exists() and path.parent == OUT
        assert path.stat().st_size > 10_000, path.name
        assert distinct_colours(path) >= 4, f"{path.name} looks blank"
    main = QImage(str(OUT / "main.png"))
    assert (main.width(), main.height()) == (1280, 800)
