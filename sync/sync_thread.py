"""The thin Qt adapter: runs the sync engine on its own QThread and reports through signals.

Commands arrive as queued signals (``request_sync``); a cycle runs on the sync thread and the next
one is scheduled with a QTimer there, so the thread's event loop stays responsive between cycles.
The live hint (a blocking long-poll) runs on a plain daemon thread and only asks for a cycle.
"""

from __future__ import annotations

import logging
import random
import threading

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from app.cache.store import ChangeSet
from sync.engine import OUTBOUND_ORIGINS, SyncEngine
from sync.hub_client import Permanent, Transient

logger = logging.getLogger(__name__)


class _SyncWorker(QObject):
    """Lives on the sync thread.

    Signals:
        status_changed(object): a SyncStatus after every cycle.
    """

    status_changed = Signal(object)

    def __init__(self, engine: SyncEngine, stop: threading.Event) -> None:
        super().__init__()
        self._engine = engine
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
        except (Transient, Permanent):
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
        status_changed(object): a SyncStatus (state, pending, conflicts, failed, last_sync, last_error).
        request_sync(): ask for a cycle now (any thread may emit it).
    """

    status_changed = Signal(object)
    request_sync = Signal()

    def __init__(self, engine: SyncEngine, *, live_hint: bool = True) -> None:
        super().__init__()
        self._engine = engine
        self._stop = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName("sync")
        self._worker = _SyncWorker(engine, self._stop)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.cycle)
        # The worker and its timer belong to the sync thread: delete them there, before it ends.
        self._thread.finished.connect(self._worker.deleteLater)
        self.request_sync.connect(self._worker.cycle)
        self._worker.status_changed.connect(self.status_changed)
        self._hint: threading.Thread | None = None
        self._live_hint = live_hint
        engine.cache.add_listener(self._on_change)

    def _on_change(self, change: ChangeSet) -> None:
        if change.origin in OUTBOUND_ORIGINS:
            self.request_sync.emit()

    def start(self) -> None:
        self._thread.start()
        if self._live_hint:
            self._hint = threading.Thread(
                target=self._engine.run_live_hint, args=(self._stop,), kwargs={"on_hint": self.request_sync.emit},
                name="sync-hint", daemon=True,
            )  # fmt: skip
            self._hint.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        self._stop.set()
        self._engine.cache.remove_listener(self._on_change)
        # A long-poll or a request in flight would hold its thread for its whole timeout: closing
        # the client ends it now (it surfaces as a transient error, and the loops see the stop flag).
        self._engine.client.close()
        if self._thread.isRunning():
            QMetaObject.invokeMethod(self._worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
            self._thread.quit()
            self._thread.wait(timeout_ms)
        if self._hint is not None:
            self._hint.join(timeout=timeout_ms / 1000)
