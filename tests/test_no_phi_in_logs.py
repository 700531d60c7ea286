"""No PHI in logs: plant canary patients, drive the app, and search every log for them."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from app.cache.models import Patient
from app.cli import main
from app.logs import PhiFilter, Safe, install_logging
from app.security.roles import Role
from services.context import ServiceContext
from services.patients import PatientService

CANARY_NAME = "Quillonius Canarybird"
CANARY_MRN = "MRN9137264"
CANARY_BIRTH = dt.date(1961, 7, 19)
CANARIES = [CANARY_NAME, "Quillonius", "Canarybird", CANARY_MRN, "9137264", CANARY_BIRTH.isoformat(), "555-0142"]


@pytest.fixture
def logged(ws):
    install_logging(ws.paths.logs, logging.DEBUG, stderr=True)
    yield ws
    for h in list(logging.getLogger().handlers):
        if getattr(h, "_careops", False):
            logging.getLogger().removeHandler(h)
            h.close()


def _all_log_text(ws, caplog, capsys) -> str:
    text = "".join(p.read_text(encoding="utf-8") for p in Path(ws.paths.logs).glob("*.log*"))
    captured = capsys.readouterr()
    return text + captured.err + captured.out


@pytest.mark.allow_log_warnings
def test_canaries_never_reach_a_log(logged, caplog, capsys):
    ws = logged
    with ws.cache.unit_of_work(user="t", origin="sync") as s:
        s.add(Patient(id="canary", mrn=CANARY_MRN, name=CANARY_NAME, birth_date=CANARY_BIRTH, phone="555-0142"))
    ws.users.ensure_demo_users()
    ctx = ServiceContext(ws.cache, ws.audit, ws.users.demo_session(Role.COORDINATOR))
    found = PatientService(ctx).search("Canarybird")
    assert found[0].name == CANARY_NAME
    log = logging.getLogger("careops.test")
    # Everything a careless developer or a library might do:
    log.info("opened patient %s born %s", found[0].name, found[0].birth_date)
    log.warning("lookup %(mrn)s failed", {"mrn": CANARY_MRN})
    log.error(f"formatted by hand: {CANARY_NAME} {CANARY_MRN} {CANARY_BIRTH} 555-0142")  # noqa: G004
    logging.getLogger("httpx").info('HTTP Request: GET https://ehr.example/Patient?identifier=%s "200 OK"', CANARY_MRN)
    # A duplicate insert: SQLAlchemy's error text quotes the parameters it failed on.
    try:
        with ws.cache.unit_of_work(user="t", origin="sync") as s:
            s.add(Patient(id="canary", mrn=CANARY_MRN, name=CANARY_NAME))
    except IntegrityError:
        log.exception("insert failed")
    try:
        raise ValueError(f"bad patient {CANARY_NAME}")
    except ValueError:
        log.critical("crash", exc_info=True)
    log.info("ids are fine: %s", Safe("canary"))
    ws.close()
    # The CLI on the same data folder, including a failing command.
    assert main(["audit", "export", "--format", "json"]) == 0
    assert main(["-v", "audit", "verify"]) == 0
    text = _all_log_text(ws, caplog, capsys)
    text += "\n".join(h.format(r) for r in caplog.records for h in logging.getLogger().handlers[:1])
    assert "insert failed" in text and "IntegrityError" in text and "ids are fine: canary" in text
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} leaked into a log"


@given(st.text(min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_string_argument_is_redacted(value):
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value=%s", (value,), None)
    PhiFilter().filter(record)
    assert record.getMessage() == "value=<redacted>"
