"""The Qt adapter: the engine on its own thread, woken by local changes and by the live hint."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.cache.models import Patient
from sync.sync_thread import SyncController


@pytest.mark.parametrize("hub_db", ["sqlite"], indirect=True)
def test_local_change_reaches_the_other_workstation_through_the_threads(qtbot, live_hub, make_station):
    a, b = make_station("a", live_hub.url), make_station("b", live_hub.url)
    statuses = []
    ca, cb = SyncController(a.engine), SyncController(b.engine)
    ca.status_changed.connect(statuses.append)
    seen_on_b = []
    b.ws.cache.add_listener(lambda change: seen_on_b.extend(change.changed.get("patients", ())))
    ca.start()
    cb.start()
    try:
        qtbot.waitUntil(lambda: bool(statuses) and statuses[-1].state == "online", timeout=10_000)
        with a.ws.cache.unit_of_work(user="u") as s:
            s.add(Patient(id="p-live", mrn="MRN0000777", name="Live Hint"))
        # Nobody calls sync: A's thread is woken by the commit, B's by the long-poll hint.
        qtbot.waitUntil(lambda: "p-live" in seen_on_b, timeout=5_000)
        qtbot.waitUntil(lambda: statuses[-1].pending == 0, timeout=5_000)
    finally:
        ca.stop()
        cb.stop()
    with b.ws.cache.reader() as s:
        assert s.scalars(select(Patient.name).where(Patient.id == "p-live")).all() == ["Live Hint"]


@pytest.mark.allow_log_warnings  # uvicorn logs a cancelled lifespan when a restarted hub is force-stopped
@pytest.mark.parametrize("hub_db", ["sqlite"], indirect=True)
def test_offline_then_back(qtbot, live_hub, make_station):
    st = make_station("a", live_hub.url, timeout=1.0, backoff_cap=0.5)
    live_hub.stop()
    statuses = []
    c = SyncController(st.engine, live_hint=False)
    c.status_changed.connect(statuses.append)
    c.start()
    try:
        qtbot.waitUntil(lambda: bool(statuses) and statuses[-1].state == "offline", timeout=10_000)
        with st.ws.cache.unit_of_work(user="u") as s:
            s.add(Patient(id="p-off", mrn="MRN0000778", name="Kept Offline"))
        qtbot.waitUntil(lambda: statuses[-1].pending == 1, timeout=10_000)
        live_hub.start()
        qtbot.waitUntil(lambda: statuses[-1].state == "online" and statuses[-1].pending == 0, timeout=10_000)
    finally:
        c.stop()
