"""Users, their offline verifiers, and sessions.

The verifier is scrypt over the password with a per-user salt; it lets a known user unlock the
workstation while the central service is unreachable. Verification takes ~50 ms: callers on the
GUI thread run it on a worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from app.cache.models import User, utcnow
from app.cache.store import Cache
from app.errors import NotAuthenticated, ValidationError
from app.security.roles import BREAK_GLASS_GRANTS, Permission, Role, allowed

VERIFIER_N, VERIFIER_R, VERIFIER_P = 2**14, 8, 1
DEMO_PASSWORD = "demo"
MAX_FAILURES = 5
LOCKOUT_SECONDS = 60.0


def make_verifier(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=VERIFIER_N, r=VERIFIER_R, p=VERIFIER_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${VERIFIER_N}${VERIFIER_R}${VERIFIER_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_verifier(verifier: str, password: str) -> bool:
    try:
        kind, n, r, p, salt, digest = verifier.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass
class BreakGlassGrant:
    reason: str
    expires_at: float  # monotonic
    permissions: frozenset[Permission] = BREAK_GLASS_GRANTS


@dataclass
class UserSession:
    """Who is at the keyboard. Times are monotonic so a clock change cannot extend a session."""

    username: str
    display_name: str
    role: Role
    workstation: str
    clock: Callable[[], float] = time.monotonic
    authenticated_at: float = field(default=0.0)
    grants: list[BreakGlassGrant] = field(default_factory=list)
    # The password given at sign-in, kept in memory only, for the central service's login.
    credential: str = field(default="", repr=False, compare=False)
    # Grants are added from service calls on worker threads and read by the GUI.
    _grants_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.authenticated_at:
            self.authenticated_at = self.clock()

    def add_grant(self, grant: BreakGlassGrant) -> None:
        with self._grants_lock:
            self.grants.append(grant)

    def active_grants(self) -> list[BreakGlassGrant]:
        now = self.clock()
        with self._grants_lock:
            self.grants[:] = [g for g in self.grants if g.expires_at > now]
            return list(self.grants)

    def active_grant(self, permission: Permission) -> BreakGlassGrant | None:
        return next((g for g in self.active_grants() if permission in g.permissions), None)

    def check(self, permission: Permission) -> bool:
        """True when allowed by role; False when allowed only by break-glass; raises otherwise."""
        from app.errors import AccessDenied

        if allowed(self.role, permission):
            return True
        if self.active_grant(permission):
            return False
        raise AccessDenied(f"The {self.role.title} role may not do this ({permission.value}).")

    def may(self, permission: Permission) -> bool:
        return allowed(self.role, permission) or self.active_grant(permission) is not None


DEMO_USERS: dict[Role, tuple[str, str]] = {
    Role.COORDINATOR: ("demo-coordinator", "Casey Coordinator (demo)"),
    Role.CHARGE_NURSE: ("demo-charge", "Charlie Charge (demo)"),
    Role.SUPPLY_MANAGER: ("demo-supply", "Sam Supply (demo)"),
    Role.FOLLOWUP_NURSE: ("demo-followup", "Frankie Followup (demo)"),
    Role.ANALYST: ("demo-analyst", "Alex Analyst (demo)"),
    Role.ADMINISTRATOR: ("demo-admin", "Ari Admin (demo)"),
}


class UserDirectory:
    """Known users of this workstation, with their offline verifiers."""

    def __init__(self, cache: Cache, workstation: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache = cache
        self._workstation = workstation
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # username -> (failures in a row, last)

    def add(self, username: str, display_name: str, role: Role | str, password: str) -> None:
        if not username or len(username) > 64 or not username.replace("-", "").replace(".", "").replace("_", "").isalnum():
            raise ValidationError("A username is 1-64 letters, digits, '.', '-' or '_'.")
        if len(password) < 4:
            raise ValidationError("A password needs at least 4 characters.")
        verifier = make_verifier(password)
        with self._cache.unit_of_work(user="system", origin="system") as s:
            s.merge(User(username=username, display_name=display_name, role=Role(role).value, verifier=verifier))

    def ensure_demo_users(self) -> None:
        with self._cache.reader() as s:
            existing = set(s.scalars(select(User.username)))
        for role, (username, name) in DEMO_USERS.items():
            if username not in existing:
                self.add(username, name, role, DEMO_PASSWORD)

    def list(self) -> list[tuple[str, str, Role]]:
        with self._cache.reader() as s:
            return [(u.username, u.display_name, Role(u.role)) for u in s.scalars(select(User).order_by(User.username))]

    def _throttle(self, username: str) -> None:
        """After MAX_FAILURES wrong passwords in a row, refuse that user for LOCKOUT_SECONDS."""
        failures, last = self._failures.get(username, (0, 0.0))
        if failures >= MAX_FAILURES and self._clock() - last < LOCKOUT_SECONDS:
            raise NotAuthenticated(
                f"Too many failed sign-ins. Try again in {int(LOCKOUT_SECONDS - (self._clock() - last)) + 1} s."
            )

    def _check(self, username: str, password: str) -> User | None:
        self._throttle(username)
        with self._cache.reader() as s:
            user = s.get(User, username)
        if user is None or not user.active or not check_verifier(user.verifier, password):
            failures, _ = self._failures.get(username, (0, 0.0))
            self._failures[username] = (failures + 1, self._clock())
            return None
        self._failures.pop(username, None)
        return user

    def authenticate(self, username: str, password: str) -> UserSession:
        """Check the offline verifier; the same message for an unknown user and a wrong password."""
        user = self._check(username, password)
        if user is None:
            raise NotAuthenticated("Unknown user or wrong password.")
        with self._cache.unit_of_work(user="system", origin="system") as s:
            stored = s.get(User, username)
            if stored is not None:
                stored.last_full_login = utcnow()
        return UserSession(
            username, user.display_name, Role(user.role), self._workstation, clock=self._clock, credential=password
        )

    def reverify(self, session: UserSession, password: str) -> bool:
        """Unlock after an idle lock: the same user proves it again (no new session)."""
        return self._check(session.username, password) is not None

    def demo_session(self, role: Role) -> UserSession:
        username, name = DEMO_USERS[role]
        return UserSession(username, name, role, self._workstation, clock=self._clock, credential=DEMO_PASSWORD)
