"""The cache's change signal arrives on the GUI thread."""

from __future__ import annotations

import threading

from app.cache.models import Patient
from views.cache_events import CacheEvents


class Host:
    def __init__(self):
        self.listeners = []

    def add_listener(self, fn):
        self.listeners.append(fn)

    def remove_listener(self, fn):
        self.listeners.remove(fn)


def test_changes_from_a_worker_thread_arrive_on_the_gui_thread(qtbot):
    events = CacheEvents()
    host = Host()
    events.connect(host)
    seen = []
    events.records_changed.connect(lambda c: seen.append((c, threading.current_thread())))
    with qtbot.waitSignal(events.records_changed, timeout=2000):
        t = threading.Thread(target=host.listeners[0], args=("change-1",))
        t.start()
        t.join()
    assert seen == [("change-1", threading.main_thread())]
    events.detach()
    assert host.listeners == []


def test_a_real_commit_is_relayed(qtbot, desk_ws):
    events = CacheEvents()
    events.connect(desk_ws.cache)
    with qtbot.waitSignal(events.records_changed, timeout=2000) as blocker:
        with desk_ws.cache.unit_of_work(user="test", origin="local") as s:
            s.add(Patient(mrn="MRN799999", name="Eve Synthetic"))
    change = blocker.args[0]
    assert change.origin == "local" and "patients" in change.changed
    events.detach()
