"""The workstation's background EHR sync: write-back and pull cycles, its status, and its thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from app.cache.models import EhrWrite, Referral
from app.cache.store import Cache
from app.config import EhrSettings
from services.ehr_writeback import ehr_write_overview, ehr_write_states, queue_ehr_write
from sync.fhir.auth import SignInRequired
from sync.fhir.client import EhrAuthFailed, EhrUnavailable
from sync.fhir.connect import connect
from sync.fhir.ehr_sync import EhrState, EhrSync
from sync.sync_thread import SyncController

from .mock_ehr import CANARY, MockEhr
from .test_pull import loaded, population, searches


@pytest.fixture
def cache(tmp_path: Path):
    c = Cache.open(tmp_path / "cache.db", os.urandom(32))
    yield c
    c.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def no_wait_connect(settings, cache, **kw):
    """The real connect, with the client's retry waits skipped (503 bursts cost no time)."""
    return connect(settings, cache, **kw | {"sleep": lambda _s: None})


def ehr_sync(cache: Cache, ehr: MockEhr, vendor: str = "generic", *, transport=None, **kw) -> EhrSync:
    if vendor == "epic":  # Epic lists no patients by search: a site starts from a Bulk export
        population(cache, ehr, *ehr.store["Patient"])
    settings = EhrSettings(base_url=ehr.base, vendor=vendor, **kw.pop("settings", {}))
    return EhrSync(settings, cache, connect=no_wait_connect, transport=transport or ehr.transport(), **kw)


def move_referral(cache: Cache, referral_id: str, status: str) -> None:
    """What the referral service does: the change and the promise to send it, in one transaction."""
    with cache.unit_of_work(user="casey") as s:
        s.get(Referral, referral_id).status = status
        queue_ehr_write(s, kind="task-status", entity_id=referral_id, user="casey")


def business_status(ehr: MockEhr) -> str:
    return ehr.store["Task"]["task-1"]["businessStatus"]["coding"][0]["code"]


@pytest.mark.parametrize("vendor", ["generic", "epic"])
def test_a_cycle_pulls_then_the_next_writes_back_and_pulls_when_due(cache, caplog, vendor):
    ehr = loaded(getattr(MockEhr, vendor)())
    clock = Clock()
    sync = ehr_sync(cache, ehr, vendor, clock=clock)
    assert sync.status().state == EhrState.OFFLINE and sync.status().last_pull is None  # not contacted yet
    sync.sync_once()  # the first cycle pulls
    with cache.reader() as s:
        assert s.get(Referral, "sr-1") is not None
    status = sync.status()
    assert status.state == EhrState.ONLINE and status.last_pull is not None and status.last_error == ""

    move_referral(cache, "sr-1", "scheduled")
    assert sync.status().pending == 1
    ehr.requests.clear()
    sync.sync_once()  # writes back; the pull is not due yet
    assert business_status(ehr) == "scheduled"
    assert ehr_write_states(cache, "referrals", ["sr-1"])["sr-1"].status == "sent"
    assert not searches(ehr, "ServiceRequest") and sync.status().pending == 0

    clock.now += 15 * 60  # pull_minutes later
    sync.sync_once()
    asked = searches(ehr, "ServiceRequest")
    assert asked and all(r.url.params["_lastUpdated"].startswith("ge") for r in asked)
    sync.close()
    assert CANARY not in caplog.text and "Sample" not in caplog.text


def test_ehr_down_keeps_the_change_pending_and_the_next_cycle_after_recovery_sends_it(cache):
    ehr = loaded(MockEhr.generic())
    sync = ehr_sync(cache, ehr)
    sync.sync_once()
    move_referral(cache, "sr-1", "scheduled")
    ehr.fail(503, times=1000)
    with pytest.raises(EhrUnavailable):
        sync.sync_once()
    status = sync.status()
    assert status.state == EhrState.OFFLINE and status.pending == 1
    assert status.last_error == "The EHR is busy (HTTP 503)."
    assert ehr_write_states(cache, "referrals", ["sr-1"])["sr-1"].status == "pending"

    ehr._faults.clear()  # the EHR is back
    sync.sync_once()
    assert business_status(ehr) == "scheduled"
    status = sync.status()
    assert status.state == EhrState.ONLINE and status.pending == 0 and status.last_error == ""
    sync.close()


def test_an_unreachable_host_is_offline_and_the_pull_stays_due(cache):
    ehr = loaded(MockEhr.generic())

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sync = ehr_sync(cache, ehr, transport=httpx.MockTransport(refuse))
    with pytest.raises(EhrUnavailable):
        sync.sync_once()
    assert sync.status().state == EhrState.OFFLINE and sync.status().last_pull is None
    sync.close()


def test_epic_does_not_create_tasks_and_the_status_counts_it(cache):
    ehr = loaded(MockEhr.epic())
    sync = ehr_sync(cache, ehr, "epic")
    sync.sync_once()
    with cache.unit_of_work(user="sync", origin="sync") as s:
        s.get(Referral, "sr-1").ehr_task_id = None  # a referral the EHR has no Task for
    move_referral(cache, "sr-1", "triage")
    sync.sync_once()  # the EHR answered: not an error of the sync
    status = sync.status()
    assert status.state == EhrState.ONLINE and (status.not_accepted, status.pending) == (1, 0)
    [row] = ehr_write_overview(cache).needing_a_person
    assert (row.kind, row.entity_id, row.status) == ("task-status", "sr-1", "not-accepted")
    assert row.text == "kept here only: the EHR does not accept this change (create Task)"
    assert not [r for r in ehr.api_requests() if r.method == "POST"]
    sync.close()


def smart_configuration(ehr: MockEhr) -> httpx.MockTransport:
    """The mock EHR plus the SMART discovery document an App Launch sign-in starts from."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/smart-configuration"):
            return httpx.Response(200, json={"token_endpoint": ehr.token_url,
                                             "authorization_endpoint": ehr.base + "/authorize"})
        return ehr(request)

    return httpx.MockTransport(handle)


def test_a_launch_sign_in_without_a_kept_token_is_not_started_in_the_background(cache, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    ehr = loaded(MockEhr.generic(require_auth=True))
    sync = ehr_sync(cache, ehr, transport=smart_configuration(ehr),
                    settings={"auth": "launch", "client_id": "careops-test"})
    with pytest.raises(SignInRequired):
        sync.sync_once()
    status = sync.status()
    assert status.state == EhrState.SIGN_IN and "sign" in status.last_error.lower()
    assert not opened and not ehr.api_requests()
    sync.close()


def test_a_refused_token_means_sign_in_needed(cache):
    ehr = loaded(MockEhr.generic(require_auth=True))  # no token is presented: every request gets 401
    sync = ehr_sync(cache, ehr)
    with pytest.raises(EhrAuthFailed):
        sync.sync_once()
    assert sync.status().state == EhrState.SIGN_IN
    sync.close()


def test_no_ehr_configured_does_nothing(cache):
    sync = EhrSync(EhrSettings(), cache)
    sync.sync_once()
    assert sync.status().state == EhrState.NOT_CONFIGURED
    sync.close()


def test_the_controller_sends_a_local_change_from_its_thread(qtbot, cache):
    ehr = loaded(MockEhr.generic())
    callers: set[int] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        callers.add(threading.get_ident())
        return ehr(request)

    sync = ehr_sync(cache, ehr, transport=httpx.MockTransport(handle), poll_seconds=3600)  # no timer cycles
    statuses = []
    controller = SyncController.for_ehr(sync)
    controller.status_changed.connect(statuses.append)
    controller.start()
    try:
        qtbot.waitUntil(lambda: bool(statuses) and statuses[-1].state == EhrState.ONLINE, timeout=10_000)
        assert statuses[-1].last_pull is not None  # the first cycle pulled
        move_referral(cache, "sr-1", "scheduled")  # nobody asks for a cycle: the commit wakes it
        qtbot.waitUntil(lambda: business_status(ehr) == "scheduled", timeout=5_000)
        qtbot.waitUntil(lambda: statuses[-1].pending == 0, timeout=5_000)
    finally:
        controller.stop()
    assert controller._thread.isFinished()
    assert threading.get_ident() not in callers  # every request left from the sync thread
    with cache.reader() as s:
        assert s.query(EhrWrite).one().status == "sent"

