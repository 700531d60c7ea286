"""The HTTP face of the central service (FastAPI). docs/sync-protocol.md describes every endpoint.

Every endpoint but login and health needs a bearer token, and every one of those checks the
caller's role against the one permission table (through ``sync.hub.permissions``) on each
request: the workstation's own checks are never the only guard.

Database calls are synchronous; they run on the threadpool (plain ``def`` endpoints, or
``run_in_threadpool`` from the async ones that read a body or wait). Nothing is kept in process
memory between requests, so any number of instances can serve one database.

Logs carry ids and counts only, never payload values (PHI).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.logs import Safe, format_exception_safely
from sync.fhir.parsing import nesting_exceeds
from sync.hub import db
from sync.hub.auth import (
    LOGIN_FAILED,
    TOKEN_TTL_SECONDS,
    Authenticator,
    Identity,
    InvalidToken,
    PasswordAuthenticator,
    TokenSigner,
    load_signing_key,
)
from sync.hub.permissions import AUDIT_INGEST_ROLES, may_write, readable_entities, writable_entities
from sync.hub.service import MAX_FEED_LIMIT, MAX_INT, AuditRefused, Hub, ProtocolError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_LOGIN_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
MAX_WAIT_SECONDS = 30.0
POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Principal:
    """The caller of one request: who (with the role they hold now) and from which workstation."""

    identity: Identity
    workstation: str


# --- request bodies ------------------------------------------------------------------------


class _BadJSON(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _BadJSON("duplicate key")
    return out


def _int(text: str) -> int:
    if len(text) > 40:
        raise _BadJSON("number too long")
    return int(text)


def _float(text: str) -> float:
    value = float(text) if len(text) <= 64 else math.inf
    if not math.isfinite(value):
        raise _BadJSON("number out of range")
    return value


def _constant(_name: str) -> Any:
    raise _BadJSON("NaN or Infinity")


def parse_json(raw: bytes) -> Any:
    """JSON within limits; HTTPException 400 naming the kind of problem (never a value)."""
    if nesting_exceeds(raw, MAX_JSON_DEPTH):
        raise HTTPException(400, "The request body is nested too deeply.")
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
        )
    except _BadJSON as exc:
        raise HTTPException(400, f"The request body is not acceptable JSON ({exc}).") from None
    except (ValueError, RecursionError, TypeError, OverflowError):
        raise HTTPException(400, "The request body is not valid JSON.") from None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes (413) before reading it all."""
    declared = request.headers.get("content-length")
    size_text = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 1024:g} KiB"
    too_big = HTTPException(413, f"The request body is larger than {size_text}; send less per request.")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    return parse_json(raw) if size < 64 * 1024 else await run_in_threadpool(parse_json, raw)  # keep the loop free


def _text(body: dict[str, Any], name: str, limit: int = 64) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit or any(ord(ch) < 32 for ch in value):
        raise HTTPException(422, f"{name} must be text of 1-{limit} characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, f"{name} must be valid Unicode text.") from None
    return value


# --- errors --------------------------------------------------------------------------------


class _CatchAll:
    """Turn any unexpected error into a JSON 500 (or 503 when the database is unreachable).

    Only the error's type and frames are logged: database errors quote the values that failed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away before its request body was complete (its network dropped, or
            # it gave up): nothing was applied and no one is left to answer. That is the weather
            # an offline-first client lives in, not a service fault: no ERROR, no traceback, no 500.
            logger.info("%s %s: the client disconnected mid-request", Safe(scope.get("method", "")),
                        Safe(scope.get("path", "")))  # fmt: skip
            return
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            unavailable = isinstance(exc, OperationalError | PoolTimeout) or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated
            )
            logger.error(
                "%s %s failed: %s\n%s", Safe(scope.get("method", "")), Safe(scope.get("path", "")),
                Safe(type(exc).__name__), Safe(format_exception_safely(type(exc), exc, exc.__traceback__)),
            )  # fmt: skip
            if started:
                raise
            if unavailable:
                response = JSONResponse(
                    {"detail": "The service's database is unavailable; try again shortly."}, 503,
                    headers={"Retry-After": "5"},
                )  # fmt: skip
            else:
                response = JSONResponse({"detail": "Internal error; the administrator can find it in the log."}, 500)
            await response(scope, receive, send)


def _forbidden(message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, 403)


# --- the app -------------------------------------------------------------------------------


def create_app(
    db_url: str,
    *,
    db_key: bytes | None = None,
    authenticator: Authenticator | None = None,
    token_ttl: int = TOKEN_TTL_SECONDS,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
    poll_interval: float = POLL_INTERVAL,
) -> FastAPI:
    """The central service over the database at ``db_url`` (tables are created if missing).

    Args:
        db_url: ``sqlite:///path/hub.db`` or ``postgresql+psycopg://user@host/db``.
        db_key: a 32-byte key to encrypt a SQLite database with SQLCipher (the embedded service).
        authenticator: who may log in; default: passwords in the service's ``users`` table.
        token_ttl: lifetime of a bearer token in seconds.
        clock: wall clock for token times (tests move it).
        max_body_bytes: the largest request body accepted (413 beyond).
        poll_interval: how often ``/v1/changes/wait`` looks at the database.
    """
    engine = db.open_database(db_url, db_key)
    try:
        hub = Hub(engine)
        auth = authenticator or PasswordAuthenticator(engine)
        signer = TokenSigner(load_signing_key(engine), token_ttl, clock)
    except BaseException:
        engine.dispose()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="CareOps Desk central service", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
    )  # fmt: skip
    app.add_middleware(_CatchAll)
    app.state.hub = hub
    app.state.engine = engine
    app.state.signer = signer

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        unauthorized = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "Log in first: this request needs a bearer token.", headers=unauthorized)
        try:
            claims = signer.verify(token.strip())
        except InvalidToken as exc:
            raise HTTPException(401, str(exc), headers=unauthorized) from None
        identity = auth.lookup(claims.username)
        if identity is None:
            raise HTTPException(401, "This user is no longer active; log in again.", headers=unauthorized)
        return Principal(identity, claims.workstation)

    def readable(who: Principal) -> frozenset[str]:
        entities = readable_entities(who.identity.role)
        if not entities:
            raise HTTPException(403, f"The {who.identity.role.title} role may not read synchronised records.")
        return entities

    @app.get("/v1/health")
    def health() -> Any:
        try:
            return {"status": "ok", "db": hub.backend, "seq": hub.head()}
        except SQLAlchemyError as exc:
            logger.error("health check: database unavailable (%s)", Safe(type(exc).__name__))
            return JSONResponse({"status": "unavailable", "db": hub.backend, "seq": None}, 503)

    @app.post("/v1/login")
    async def login(request: Request) -> Any:
        body = await read_json(request, MAX_LOGIN_BYTES)
        if not isinstance(body, dict):
            raise HTTPException(422, "Send a JSON object with username, password and workstation.")
        username = _text(body, "username")
        password = body.get("password")
        if not isinstance(password, str) or not password or len(password) > 1024:
            raise HTTPException(422, "password must be text of 1-1024 characters.")
        workstation = _text(body, "workstation")
        identity = await run_in_threadpool(auth.authenticate, username, password)
        if identity is None:
            logger.info("login refused")  # no username: it may be anything a person typed
            raise HTTPException(401, LOGIN_FAILED, headers={"WWW-Authenticate": "Bearer"})
        logger.info("login: %s at %s", Safe(identity.username), Safe(workstation))
        return {
            "token": signer.issue(identity.username, workstation),
            "expires_in": signer.ttl,
            "user": {"username": identity.username, "display_name": identity.display_name, "role": identity.role.value},
        }

    @app.post("/v1/changes")
    async def push(request: Request, who: Principal = Depends(principal)) -> Any:
        role = who.identity.role
        if not writable_entities(role):
            return _forbidden(f"The {role.title} role may not push changes.")
        body = await read_json(request, max_body_bytes)
        if not isinstance(body, dict):
            raise HTTPException(422, "Send a JSON object with workstation and changes.")
        workstation = _text(body, "workstation")
        if workstation != who.workstation:
            return _forbidden("This token was issued for another workstation; log in from this one.")
        changes = body.get("changes")
        try:
            keys = hub.check_push_request(changes)
        except ProtocolError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        # A change the role may not write is answered "rejected" on its own; the others apply, so
        # one queued change of another role's never blocks a workstation's whole outbox.
        forbidden = {
            i for i, change in enumerate(changes)
            if not (isinstance(e := change.get("entity"), str) and may_write(role, e))
        }  # fmt: skip
        if forbidden:
            logger.info("push from %s: %d changes the role may not write", Safe(workstation), len(forbidden))
        allowed_changes = [c for i, c in enumerate(changes) if i not in forbidden]
        applied = iter(
            await run_in_threadpool(
                lambda: hub.push(username=who.identity.username, workstation=workstation, changes=allowed_changes)
            )
            if allowed_changes
            else []
        )
        results = [
            {
                "idempotency_key": keys[i], "status": "rejected", "version": None, "seq": None, "merged": False,
                "server": None, "reason": f"forbidden: the {role.title} role may not write this kind of record",
            }
            if i in forbidden else next(applied)
            for i in range(len(changes))
        ]  # fmt: skip
        return {"results": results}

    @app.get("/v1/changes")
    def feed(
        since: int = Query(0, ge=0, le=MAX_INT),
        limit: int = Query(500, ge=1, le=MAX_FEED_LIMIT),
        who: Principal = Depends(principal),
    ) -> Any:
        return hub.feed(entities=readable(who), since=since, limit=limit).as_json()

    @app.get("/v1/changes/wait")
    async def wait(
        request: Request,
        since: int = Query(0, ge=0, le=MAX_INT),
        timeout: float = Query(25.0, ge=0.0, le=MAX_WAIT_SECONDS),
        who: Principal = Depends(principal),
    ) -> Any:
        # Polls the database: no in-process pub/sub, so a change pushed through any instance wakes
        # the waiters of every instance. Each poll borrows a worker thread only for the query.
        entities = readable(who)
        deadline = time.monotonic() + timeout
        while True:
            head = await run_in_threadpool(lambda: hub.has_changes_after(entities=entities, since=since))
            if head is not None:
                return {"last_seq": head}
            remaining = deadline - time.monotonic()
            if remaining <= 0 or await request.is_disconnected():
                break
            await asyncio.sleep(min(poll_interval, remaining))
        return {"last_seq": await run_in_threadpool(hub.head)}

    @app.post("/v1/audit")
    async def audit(request: Request, who: Principal = Depends(principal)) -> Any:
        if who.identity.role not in AUDIT_INGEST_ROLES:
            return _forbidden(f"The {who.identity.role.title} role may not hand in audit entries.")
        body = await read_json(request, max_body_bytes)
        if not isinstance(body, dict):
            raise HTTPException(422, "Send a JSON object with workstation and entries.")
        workstation = _text(body, "workstation")
        if workstation != who.workstation:
            return _forbidden("This token was issued for another workstation; log in from this one.")
        try:
            seq, head = await run_in_threadpool(
                lambda: hub.ingest_audit(
                    workstation=workstation, username=who.identity.username, entries=body.get("entries")
                )
            )
        except AuditRefused as exc:
            logger.info("audit from %s refused (%d)", Safe(workstation), exc.status)
            extra = {"acknowledged_seq": exc.head[0], "acknowledged_hash": exc.head[1]} if exc.head else {}
            return JSONResponse({"detail": str(exc), **extra}, exc.status)
        return {"acknowledged_seq": seq, "acknowledged_hash": head}

    return app
