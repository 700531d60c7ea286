"""The cache's change signal, as a Qt signal on the GUI thread.

The cache calls its listeners from whatever thread committed (a worker, the sync engine's thread).
``CacheEvents`` re-emits each ``ChangeSet`` through a queued connection, so receivers always run
on the thread this object lives on: the GUI thread.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from PySide6.QtCore import QObject, Qt, Signal, Slot

logger = logging.getLogger(__name__)


class ListenerHost(Protocol):
    """Anything with the cache's listener interface (``app.cache.store.Cache`` in the app)."""

    def add_listener(self, listener: Any) -> None: ...

    def remove_listener(self, listener: Any) -> None: ...


class CacheEvents(QObject):
    """Relays committed changes to the GUI thread.

    Signals:
        records_changed(object): a ``ChangeSet`` (frozen: origin and table -> record ids) after a
            commit that changed records. Always delivered on this object's thread.
    """

    records_changed = Signal(object)
    # Emitted from the committing thread; always queued to this object's thread.
    _changed_anywhere = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hosts: list[ListenerHost] = []
        self._changed_anywhere.connect(self._relay, Qt.ConnectionType.QueuedConnection)

    def connect(self, cache_like: ListenerHost) -> None:  # type: ignore[override]
        """Listen to ``cache_like``'s commits (undo with :meth:`detach`)."""
        cache_like.add_listener(self._on_change)
        self._hosts.append(cache_like)

    def detach(self) -> None:
        """Stop listening (on shutdown, before this object is deleted)."""
        for host in self._hosts:
            host.remove_listener(self._on_change)
        self._hosts.clear()

    def _on_change(self, change: object) -> None:
        try:
            self._changed_anywhere.emit(change)
        except RuntimeError:  # deleted without detach(): nobody left to tell
            pass

    @Slot(object)
    def _relay(self, change: object) -> None:
        self.records_changed.emit(change)
