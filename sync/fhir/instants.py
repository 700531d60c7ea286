"""FHIR ``instant`` values: the one parser and the one formatter of the EHR layer."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")


def parse_instant(text: Any) -> dt.datetime | None:
    """An aware UTC datetime, or None when ``text`` is not a FHIR instant (zone required)."""
    if not isinstance(text, str) or not _INSTANT.fullmatch(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def format_instant(value: dt.datetime) -> str:
    """``YYYY-MM-DDThh:mm:ssZ``; a naive datetime is taken as UTC (the cache keeps naive UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"
