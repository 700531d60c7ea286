"""Who is calling: password verifiers, short-lived signed bearer tokens, a pluggable authenticator.

Passwords are checked against the same scrypt verifiers the workstation keeps
(``app.security.users``). A successful login gets a bearer token: HMAC-SHA256 over a small JSON
claim set (user, workstation, issue and expiry time), signed with a secret kept in the service's
database, so any instance can check a token another instance issued. The secret is created once,
by whichever instance needs it first; a unique key decides the race.

Every request re-reads the user (``Authenticator.lookup``): a deactivated user or a changed role
takes effect at once, not when the token expires.

An organisation's single sign-on (OIDC) plugs in as another :class:`Authenticator`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets as pysecrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.errors import KnownError, ValidationError
from app.security.roles import Role
from app.security.users import check_verifier, make_verifier
from sync.hub import db

logger = logging.getLogger(__name__)

TOKEN_TTL_SECONDS = 15 * 60
TOKEN_PREFIX = "v1"
SIGNING_KEY_NAME = "token_signing_key"
_USERNAME = re.compile(r"[A-Za-z0-9._\-]{1,64}")
LOGIN_FAILED = "Unknown user or wrong password."


@dataclass(frozen=True)
class Identity:
    """An authenticated user as the service sees it now."""

    username: str
    display_name: str
    role: Role


@dataclass(frozen=True)
class Claims:
    username: str
    workstation: str
    issued_at: int
    expires_at: int


class InvalidToken(KnownError):
    """A bearer token that is missing, malformed, forged or expired (-> 401)."""

    remedy = "Log in again."


class Authenticator(ABC):
    """Checks credentials and says who a token's subject is now.

    Implementations must give the same answer (None) for an unknown user and a wrong secret, and
    must not log the secret.
    """

    @abstractmethod
    def authenticate(self, username: str, secret: str) -> Identity | None:
        """The identity for these credentials, or None. ``secret`` is a password here; an OIDC
        authenticator would take an ID token from the organisation's identity provider."""

    @abstractmethod
    def lookup(self, username: str) -> Identity | None:
        """The current identity (role) of an active user, or None when unknown or deactivated."""


class PasswordAuthenticator(Authenticator):
    """Users and their scrypt verifiers in the service database (``users`` table)."""

    _dummy_lock = threading.Lock()
    _dummy_verifier: str | None = None

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def _dummy(cls) -> str:
        # An unknown user costs the same scrypt run as a known one: timing does not tell them apart.
        with cls._dummy_lock:
            if cls._dummy_verifier is None:
                cls._dummy_verifier = make_verifier(pysecrets.token_hex(16))
            return cls._dummy_verifier

    def _row(self, username: str):  # noqa: ANN202
        if not isinstance(username, str) or not _USERNAME.fullmatch(username):
            return None
        with self._engine.connect() as conn:
            return conn.execute(select(db.users).where(db.users.c.username == username)).first()

    def authenticate(self, username: str, secret: str) -> Identity | None:
        row = self._row(username)
        if row is None or not row.active:
            check_verifier(self._dummy(), secret)
            return None
        if not check_verifier(row.verifier, secret):
            return None
        return _identity(row)

    def lookup(self, username: str) -> Identity | None:
        row = self._row(username)
        if row is None or not row.active:
            return None
        return _identity(row)


def _identity(row) -> Identity | None:  # noqa: ANN001
    try:
        return Identity(row.username, row.display_name, Role(row.role))
    except ValueError:  # a role this version does not know: no access rather than a guess
        logger.info("user has an unknown role; refused")
        return None


def validate_username(username: str) -> None:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise ValidationError("A username is 1-64 letters, digits, '.', '-' or '_'.")


def add_user(engine: Engine, username: str, display_name: str, role: Role | str, password: str) -> bool:
    """Create a user, or update the name, role and password of an existing one.

    Returns True when the user is new. Same rules as the workstation's ``UserDirectory.add``.
    """
    validate_username(username)
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError(f"Unknown role; one of: {', '.join(r.value for r in Role)}.") from None
    if len(password) < 4:
        raise ValidationError("A password needs at least 4 characters.")
    display_name = (display_name or username)[:120]
    verifier = make_verifier(password)
    values = {"display_name": display_name, "role": role.value, "verifier": verifier, "active": True}
    for _attempt in range(3):
        with db.write_transaction(engine) as conn:
            found = conn.execute(select(db.users.c.username).where(db.users.c.username == username)).first()
            if found:
                conn.execute(
                    update(db.users).where(db.users.c.username == username).values(**values, updated_at=db.utcnow())
                )
                return False
            try:
                with conn.begin_nested():
                    conn.execute(insert(db.users).values(username=username, **values))
            except IntegrityError:
                continue  # another instance added the same user a moment ago: update it instead
            return True
    raise KnownError("The user could not be saved (concurrent changes); try again.")


def load_signing_key(engine: Engine) -> bytes:
    """The token signing secret, created on first use. Race-safe across instances."""
    for _attempt in range(3):
        with db.read_transaction(engine) as conn:
            value = conn.scalar(select(db.secrets.c.value).where(db.secrets.c.name == SIGNING_KEY_NAME))
        if value:
            return bytes.fromhex(value)
        try:
            with db.write_transaction(engine) as conn:
                conn.execute(insert(db.secrets).values(name=SIGNING_KEY_NAME, value=os.urandom(32).hex()))
            logger.info("created the token signing key")
        except IntegrityError:
            pass  # another instance created it first; read theirs
    raise KnownError("The token signing key could not be created.")  # pragma: no cover


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks ``v1.<claims>.<mac>`` bearer tokens."""

    def __init__(self, key: bytes, ttl: int = TOKEN_TTL_SECONDS, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("signing key too short")
        self._key = key
        self.ttl = int(ttl)
        self._clock = clock

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest())

    def issue(self, username: str, workstation: str) -> str:
        now = int(self._clock())
        claims = {"sub": username, "ws": workstation, "iat": now, "exp": now + self.ttl}
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signed = f"{TOKEN_PREFIX}.{body}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, token: str) -> Claims:
        if not isinstance(token, str) or len(token) > 4096:
            raise InvalidToken("The access token is not valid.")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise InvalidToken("The access token is not valid.")
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(signed), parts[2]):
            raise InvalidToken("The access token is not valid.")
        try:
            raw = json.loads(_unb64(parts[1]))
            claims = Claims(str(raw["sub"]), str(raw["ws"]), int(raw["iat"]), int(raw["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidToken("The access token is not valid.") from None
        if self._clock() >= claims.expires_at:
            raise InvalidToken("The access token has expired.")
        return claims
