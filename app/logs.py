"""Logging with no PHI: one filter on every handler the application installs.

The rule is structural, not a guess at what a name looks like:

* String arguments of a log call are replaced by ``<redacted>`` unless wrapped in :class:`Safe`
  (ids, counts, enum values a developer has vouched for). Numbers and booleans pass.
* The message text left after that is scrubbed for shapes of identifiers (dates, phone numbers,
  MRN-like tokens, e-mail addresses) in case a value was formatted into it by hand.
* Every PHI value that passes through the cache's ORM is registered (as word tokens) with
  :data:`phi_registry`, and those tokens are redacted wherever they appear, so a name formatted
  into a message by hand does not leak either.
* Exceptions keep their type and frames but lose their message, because database and HTTP errors
  quote the values that failed (SQL parameters, URLs). ``KnownError`` messages are written for
  users and are PHI-free by construction, so they stay.

Third-party records (httpx, SQLAlchemy, Qt) go through the same filter.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from app.errors import KnownError

REDACTED = "<redacted>"
_PATTERNS = [
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.+\-Z]*)?\b"),  # dates and timestamps
    re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
    re.compile(r"\+?\(?\d{3}\)?[\s.\-]?\d{3}[\s.\-]\d{4}\b"),  # phone numbers
    re.compile(r"[\w.+\-]+@[\w\-]+\.[\w.\-]+"),  # e-mail
    re.compile(r"\b[A-Za-z]{0,4}\d{6,}\b"),  # MRN-like and long numeric identifiers
]


class PhiRegistry:
    """Word tokens of PHI values seen in this process, bounded, for redaction in log text."""

    _WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)

    def __init__(self, limit: int = 200_000) -> None:
        self._tokens: dict[str, None] = {}  # insertion-ordered: the oldest are dropped first
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, value: object) -> None:
        if value is None or isinstance(value, bool):
            return
        words = self._WORD.findall(str(value).casefold())
        if not words:
            return
        with self._lock:
            for w in words:
                self._tokens[w] = None
            while len(self._tokens) > self._limit:
                del self._tokens[next(iter(self._tokens))]

    def scrub(self, text: str) -> str:
        if not self._tokens:
            return text
        return self._WORD.sub(lambda m: REDACTED if m.group(0).casefold() in self._tokens else m.group(0), text)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


phi_registry = PhiRegistry()


class Safe(str):
    """Marks a string argument as free of PHI (an id, a count, a code): it is logged as is."""


def scrub_text(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return phi_registry.scrub(text)


def _scrub_arg(value: Any) -> Any:
    if isinstance(value, Safe) or isinstance(value, bool | int | float) or value is None:
        return value
    return REDACTED


def format_exception_safely(
    exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> str:
    """A traceback with frames and exception types, without exception messages."""
    lines: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = traceback.format_tb(exc.__traceback__ if exc.__traceback__ else tb)
        message = scrub_text(str(exc)) if isinstance(exc, KnownError) else REDACTED
        lines.insert(0, f"{type(exc).__module__}.{type(exc).__qualname__}: {message}\n")
        lines[0:0] = frames
        exc = exc.__cause__ or exc.__context__
        if exc is not None:
            lines.insert(0, "\n(caused by / during handling of)\n")
    return "Traceback (most recent call last):\n" + "".join(lines).rstrip()


class PhiFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: _scrub_arg(v) for k, v in record.args.items()}
            else:
                record.args = tuple(_scrub_arg(a) for a in record.args)
        if not isinstance(record.msg, str):
            record.msg = REDACTED
        # Format now and scrub the result: no value can slip in through the format step.
        record.msg = scrub_text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception_safely(*record.exc_info)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = None
        return True


_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def install_logging(log_dir: Path | None, level: int = logging.INFO, *, stderr: bool = True) -> None:
    """Route every log record through the PHI filter into a rotating file (and stderr)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_careops", False):
            root.removeHandler(h)
            h.close()
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        # The data folder and its logs are private to the user (created here first at start-up).
        log_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_dir.mkdir(mode=0o700, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_dir / "careops.log", maxBytes=5_000_000, backupCount=5, encoding="utf-8"))
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.addFilter(PhiFilter())
        h.setFormatter(logging.Formatter(_FORMAT))
        h._careops = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)
    logging.captureWarnings(True)

    def excepthook(t: type[BaseException], e: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger("careops.crash").critical("unhandled exception", exc_info=(t, e, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
