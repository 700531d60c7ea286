"""Safe parsing of one inbound FHIR resource (one ndjson line, one bundle entry).

Python's json has no limits of its own (DESIGN.md, "Facts already checked"): nesting about 1,000
deep raises RecursionError, integers over 4,300 digits raise ValueError, and NaN, Infinity and
duplicate keys pass silently. :func:`parse_resource` puts a limit on each of those before or while
``json.loads`` runs, and turns every failure into an :class:`InboundError` whose reason names the
kind of problem (and at most a field path), never a value from the resource: reasons are stored in
the quarantine table and may reach logs.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_RESOURCE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_NUMBER_CHARS = 64

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
# A JSON string literal, unrolled so it never backtracks; used to blank strings out before the
# bracket scan (a "[" inside a string is not nesting).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = b"[{"
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)


class InboundError(Exception):
    """An inbound resource that cannot be used. ``reason`` is short and free of PHI."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:400]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class _Reject(ValueError):
    """Raised inside json.loads hooks; carries a reason out of the decoder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether ``[`` and ``{`` nest deeper than ``limit`` in ``raw``, outside string literals.

    A scan of the bytes, no recursion: it runs before ``json.loads`` could recurse.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than there are openers
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if sum(brackets.count(c) for c in _OPENERS) <= limit:
        return False
    return max(accumulate(_STEP[b] for b in brackets), default=0) > limit


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Reject("duplicate key")
    return out


def _int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise _Reject("integer too long")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Reject("number too long")
    value = float(text)
    if not math.isfinite(value):
        raise _Reject("number out of range")
    return value


def _constant(_name: str) -> Any:
    raise _Reject("NaN or Infinity")


# Built once: json.loads with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
)


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_resource(
    raw: bytes,
    *,
    max_bytes: int = MAX_RESOURCE_BYTES,
    max_depth: int = MAX_DEPTH,
) -> dict[str, Any]:
    """Parse one FHIR resource from JSON bytes, within limits.

    Args:
        raw: the UTF-8 JSON text of one resource (surrounding whitespace is allowed).
        max_bytes: the largest accepted resource.
        max_depth: the deepest accepted nesting of arrays and objects.

    Returns:
        The resource as a dict, with a string ``resourceType`` and a valid FHIR ``id``.

    Raises:
        InboundError: for anything else, with a PHI-free reason.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise InboundError("not bytes")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise InboundError("resource too large")
    if not raw.strip():
        raise InboundError("empty")
    if nesting_exceeds(raw, max_depth):
        raise InboundError("nesting too deep")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InboundError("invalid UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark is harmless; json.loads would refuse it
    try:
        value = _DECODER.decode(text)
    except _Reject as exc:
        raise InboundError(exc.reason) from None
    except RecursionError:
        raise InboundError("nesting too deep") from None
    except json.JSONDecodeError:
        raise InboundError("invalid JSON") from None
    except (ValueError, TypeError, OverflowError, MemoryError):
        raise InboundError("invalid JSON") from None
    if not isinstance(value, dict):
        raise InboundError("top level is not an object")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise InboundError("invalid unicode escape")
    resource_type = value.get("resourceType")
    if resource_type is None:
        raise InboundError("missing resourceType")
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise InboundError("invalid resourceType")
    resource_id = value.get("id")
    if resource_id is None:
        raise InboundError("missing id")
    if not isinstance(resource_id, str) or not _ID.fullmatch(resource_id):
        raise InboundError("invalid id")
    return value


def peek_identity(raw: bytes) -> tuple[str | None, str | None]:
    """Best-effort (resourceType, id) of a line that failed to parse, for the quarantine row.

    Only values that look like a FHIR type name and id are returned; nothing else is read out.
    """
    head = raw[:4096]
    rtype = re.search(rb'"resourceType"\s*:\s*"([A-Z][A-Za-z]{0,63})"', head)
    rid = re.search(rb'"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"', head)
    return (
        rtype.group(1).decode("ascii") if rtype else None,
        rid.group(1).decode("ascii") if rid else None,
    )


__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_RESOURCE_BYTES",
    "InboundError",
    "nesting_exceeds",
    "parse_resource",
    "peek_identity",
]
