"""The workstation's background EHR sync: write back what is queued, pull what changed. No Qt.

One cycle (:meth:`EhrSync.sync_once`) connects on first need and keeps the client, sends every
pending ``ehr_writes`` row (EhrWriter), and pulls (EhrPull) on the first cycle and whenever
``pull_minutes`` have passed since the last successful pull. A failed pull stays due, a row the
EHR could not be reached for stays pending: every failure has a retry on the next cycle, which the
Qt adapter (sync/sync_thread.py) schedules with backoff. Sign-in is never interactive here: a
launch sign-in without a kept refresh token reports "sign-in needed" instead of opening a browser.

Status and logs carry only KnownError messages (PHI-free by construction), states and counts.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.cache.models import utcnow
from app.config import EhrSettings
from app.errors import ConfigError, KnownError
from app.logs import Safe
from services.ehr_writeback import ehr_write_overview, mark_changed, pending_write_ids
from sync.fhir.auth import SmartAuthError, SmartAuthUnavailable
from sync.fhir.client import EhrAuthFailed, EhrUnavailable
from sync.fhir.connect import connect as default_connect
from sync.fhir.pull import EhrPull, mark_key
from sync.fhir.writeback import WRITER, EhrWriter

logger = logging.getLogger(__name__)

# What stops a write-back run (sync/fhir/writeback.py); the writer reports only the message.
_STOPS = (EhrUnavailable, EhrAuthFailed, SmartAuthError)


class EhrState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # the EHR cannot be reached
    SIGN_IN = "sign-in needed"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class EhrStatus:
    state: EhrState
    last_pull: dt.datetime | None = None  # UTC
    pending: int = 0
    not_accepted: int = 0
    conflicts: int = 0
    failed: int = 0
    last_error: str = ""  # a KnownError's message: PHI-free


def state_for(error: KnownError) -> EhrState:
    if isinstance(error, EhrUnavailable | SmartAuthUnavailable):
        return EhrState.OFFLINE
    if isinstance(error, EhrAuthFailed | SmartAuthError):  # SignInRequired is a SmartAuthError
        return EhrState.SIGN_IN
    if isinstance(error, ConfigError):
        return EhrState.NOT_CONFIGURED
    return EhrState.ONLINE  # it answered, and refused something: the message says what


class _Watched:
    """The client as the writer sees it, keeping the error that stopped the run, whose kind the
    status needs (offline or sign-in)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.error: KnownError | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except _STOPS as exc:
                self.error = exc
                raise

        return call


class EhrSync:
    """Background write-back and pull against the configured EHR. Thread-confined to the thread
    that runs :meth:`sync_once`, except :meth:`close`, which any thread may call."""

    failures: tuple[type[BaseException], ...] = (KnownError,)  # a cycle that raises these backs off

    def __init__(
        self,
        settings: EhrSettings,
        cache: Any,
        *,
        connect: Callable[..., Any] = default_connect,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = 60.0,
        backoff_cap: float = 300.0,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.poll_seconds = min(poll_seconds, settings.pull_minutes * 60)  # a due pull waits for a cycle
        self.backoff_cap = backoff_cap
        self._connect = connect
        self._transport = transport
        self._clock = clock
        self._client: Any = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pulled_at: float | None = None  # on self._clock; None: pull on the next cycle
        self.state = EhrState.OFFLINE if settings.base_url else EhrState.NOT_CONFIGURED
        self.last_error = "" if settings.base_url else "No EHR is configured."

    @property
    def _last_pull_key(self) -> str:
        return mark_key(self.settings.base_url, "all", "pulled")

    # -- one cycle ------------------------------------------------------------------------------

    def sync_once(self) -> None:
        """Write back, then pull when due. Raises the KnownError that ended the cycle early."""
        if not self.settings.base_url:
            return
        try:
            self._write_back()
            if self._pull_due():
                started = self._clock()
                EhrPull(self._client_now(), self.cache).run(cancel=self._closed.is_set)
                self._pulled_at = started
                self.cache.set_meta(self._last_pull_key, utcnow().isoformat())
        except KnownError as exc:
            self.state, self.last_error = state_for(exc), exc.message
            logger.info("ehr sync: %s (%s)", Safe(self.state.value), Safe(type(exc).__name__))
            raise
        self.state, self.last_error = EhrState.ONLINE, ""

    def _pull_due(self) -> bool:
        if self._pulled_at is None:
            return True
        return self._clock() - self._pulled_at >= self.settings.pull_minutes * 60

    def _write_back(self) -> None:
        ids = pending_write_ids(self.cache)
        if not ids:
            return
        client = _Watched(self._client_now())
        result = EhrWriter(client, self.cache).run()
        with self.cache.unit_of_work(user=WRITER, origin="sync") as s:
            mark_changed(s, ids)  # the rows' new states (or attempts), for the views
        if result.stopped:
            raise client.error or EhrUnavailable(result.stopped)

    def _client_now(self) -> Any:
        if self._client is None:
            # A retry wait inside the client ends when the sync is closed, so stopping is prompt.
            client = self._connect(self.settings, self.cache, transport=self._transport, open_browser=None,
                                   sleep=self._closed.wait)
            with self._lock:
                if self._closed.is_set():  # closed while connecting: nobody else will close it
                    client.close()
                    raise EhrUnavailable("The EHR sync has stopped.")
                self._client = client
        return self._client

    # -- status and shutdown --------------------------------------------------------------------

    def status(self) -> EhrStatus:
        overview = ehr_write_overview(self.cache, limit=0)
        last = self.cache.get_meta(self._last_pull_key) if self.settings.base_url else None
        return EhrStatus(
            state=self.state,
            last_pull=dt.datetime.fromisoformat(last) if last else None,
            pending=overview.count("pending"),
            not_accepted=overview.count("not-accepted"),
            conflicts=overview.count("conflict"),
            failed=overview.count("failed"),
            last_error=self.last_error,
        )

    def wants(self, change: Any) -> bool:
        """A committed change that should start a cycle now: a user's change queued a write-back."""
        return change.origin == "local" and "ehr_writes" in change.changed

    def close(self) -> None:
        """End the sync: a request or retry wait in flight ends now (any thread may call this)."""
        with self._lock:
            self._closed.set()
            client, self._client = self._client, None
        if client is not None:
            client.close()
