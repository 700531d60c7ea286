"""When to lock: idle time and the 12-hour full-login limit, on a monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.config import MAX_IDLE_LOCK_MINUTES


class IdlePolicy:
    """Pure timing logic; the Qt side feeds it activity and asks it what to do."""

    def __init__(
        self,
        idle_minutes: float,
        full_login_hours: float = 12.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = min(idle_minutes, MAX_IDLE_LOCK_MINUTES) * 60.0
        self.full_login_seconds = min(full_login_hours, 12.0) * 3600.0
        self._clock = clock
        self._last_activity = clock()
        self._login_at = clock()

    def touch(self) -> None:
        self._last_activity = self._clock()

    def logged_in(self) -> None:
        self._login_at = self._last_activity = self._clock()

    def seconds_until_lock(self) -> float:
        return max(0.0, self.idle_seconds - (self._clock() - self._last_activity))

    def should_lock(self) -> bool:
        return self.seconds_until_lock() <= 0.0

    def full_login_due(self) -> bool:
        return self._clock() - self._login_at >= self.full_login_seconds
