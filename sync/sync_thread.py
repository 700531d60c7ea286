"""The thin Qt adapter: runs a sync engine on its own QThread and reports through signals.

Commands arrive as queued signals (``request_sync``); a cycle runs on the sync thread and the next
one is scheduled with a QTimer there, so the thread's event loop stays responsive between cycles.
The live hint (a blocking long-poll) runs on a plain daemon thread and only asks for a cycle.

Two engines run this way, each on its own thread: the central service's ``SyncEngine`` and the
EHR's ``EhrSync`` (:meth:`SyncController.for_ehr`). What differs between them is a :class:`Wiring`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from app.cache.store import ChangeSet
from sync.engine import OUTBOUND_ORIGINS, SyncEngine
from sync.hub_client import Permanent, Transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wiring:
    """How the controller drives one engine (``sync_once()``, ``status()``, ``poll_seconds``,
    ``backoff_cap`` and ``cache``)."""

    name: str  # the thread's name
    failures: tuple[type[BaseException], ...]  # a cycle that raises these is retried with backoff
    wakes: Callable[[ChangeSet], bool]  # which committed changes ask for a cycle now
    close: Callable[[], None]  # ends a request in flight, so that stopping does not wait for it
    live_hint: Callable[..., None] | None = None  # run_live_hint(stop, on_hint=...) on a daemon thread


def _hub_wiring(engine: SyncEngine, live_hint: bool) -> Wiring:
    return Wiring(
        name="sync", failures=(Transient, Permanent), wakes=lambda change: change.origin in OUTBOUND_ORIGINS,
        close=engine.client.close, live_hint=engine.run_live_hint if live_hint else None,
    )  # fmt: skip


class _SyncWorker(QObject):
    """Lives on the sync thread.

    Signals:
        status_changed(object): the engine's status after every cycle.
    """

    status_changed = Signal(object)

    def __init__(self, engine: Any, retryable: tuple[type[BaseException], ...], stop: threading.Event) -> None:
        super().__init__()
        self._engine = engine
        self._retryable = retryable
        self._stop = stop
        self._failures = 0
        self._timer: QTimer | None = None

    @Slot()
    def cycle(self) -> None:
        if self._stop.is_set():
            return
        if self._timer is None:  # created here so that it belongs to the sync thread
            self._timer = QTimer(self)
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self.cycle)
        self._timer.stop()
        try:
            self._engine.sync_once()
            self._failures = 0
            delay = self._engine.poll_seconds
        except self._retryable:
            if self._stop.is_set():
                return  # shutting down: closing the client ended this cycle
            self._failures += 1
            delay = min(self._engine.backoff_cap, 2 ** min(self._failures, 10)) * random.uniform(0.5, 1.0)
        except Exception:
            if self._stop.is_set():
                return  # shutting down: the client was closed under this cycle
            logger.exception("sync cycle failed")
            self._failures += 1
            delay = self._engine.backoff_cap
        self.status_changed.emit(self._engine.status())
        if not self._stop.is_set():
            self._timer.start(int(delay * 1000))

    @Slot()
    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.stop()


class SyncController(QObject):
    """Owned by the GUI thread; starts and stops the sync thread.

    Signals:
        status_changed(object): the engine's status: a SyncStatus (state, pending, conflicts,
            failed, last_sync, last_error), or an EhrStatus for the EHR.
        request_sync(): ask for a cycle now (any thread may emit it).
    """

    status_changed = Signal(object)
    request_sync = Signal()

    def __init__(self, engine: Any, *, live_hint: bool = True, wiring: Wiring | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._wiring = wiring or _hub_wiring(engine, live_hint)
        self._stop = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(self._wiring.name)
        self._worker = _SyncWorker(engine, self._wiring.failures, self._stop)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.cycle)
        # The worker and its timer belong to the sync thread: delete them there, before it ends.
        self._thread.finished.connect(self._worker.deleteLater)
        self.request_sync.connect(self._worker.cycle)
        self._worker.status_changed.connect(self.status_changed)
        self._hint: threading.Thread | None = None
        engine.cache.add_listener(self._on_change)

    @classmethod
    def for_ehr(cls, ehr: Any) -> SyncController:
        """The controller of a ``sync.fhir.ehr_sync.EhrSync``, woken by local changes that queued
        a write-back and by its own timer."""
        return cls(ehr, wiring=Wiring(name="ehr-sync", failures=ehr.failures, wakes=ehr.wants, close=ehr.close))

    def _on_change(self, change: ChangeSet) -> None:
        if self._wiring.wakes(change):
            self.request_sync.emit()

    def start(self) -> None:
        self._thread.start()
        if self._wiring.live_hint is not None:
            self._hint = threading.Thread(
                target=self._wiring.live_hint, args=(self._stop,), kwargs={"on_hint": self.request_sync.emit},
                name=f"{self._wiring.name}-hint", daemon=True,
            )  # fmt: skip
            self._hint.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        self._stop.set()
        self._engine.cache.remove_listener(self._on_change)
        # A long-poll or a request in flight would hold its thread for its whole timeout: closing
        # the client ends it now (it surfaces as a transient error, and the loops see the stop flag).
        self._wiring.close()
        if self._thread.isRunning():
            QMetaObject.invokeMethod(self._worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
            self._thread.quit()
            self._thread.wait(timeout_ms)
        if self._hint is not None:
            self._hint.join(timeout=timeout_ms / 1000)
