"""Urgency hints in a referral letter: words ("urgent", "ASAP", "2WW", "routine"), time frames
("within 2 weeks") and their negations ("not urgent", "no red flags"), each an exact span with
the category it points to. Places ("urgent care", "emergency department") and conditions ("attend
the ED if it worsens") are not requests, so they give no hint."""

from __future__ import annotations

import re

from services.intake_terms import (
    NEGATIONS,
    UNIT_DAYS,
    URGENCY_PLACES,
    URGENCY_TERMS,
    WORD_NUMBERS,
)
from services.intake_text import Field, make_field

_TERMS = [(re.compile(rf"(?<![\w-]){pat}(?![\w])", re.IGNORECASE), category, conf) for pat, category, conf in URGENCY_TERMS]
_PLACE = re.compile(URGENCY_PLACES, re.IGNORECASE)
# "routine" before these is about other care ("a routine check"), not this referral.
_ROUTINE_OTHER = re.compile(r"[ \t]*(?:check|checkup|bloods?|tests?|labs?|screening|monitoring|medications?|physical|"
                            r"exam\w*|surveillance|vaccin\w*|immuni\w*|annual|ultrasound|x-?ray|imaging|mammogram|care)\b",
                            re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|unless|in case|in the event)\b(?![ \t]+(?:you|he|she|they|it|this|we|I|the patient)"
                          r"[ \t]+(?:could|can|would|might|may|were)\b)", re.IGNORECASE)
_NEGATED = re.compile(rf"(?:{NEGATIONS})(?:[\s\-]+[\w'’]+){{0,4}}[\s\-]*$", re.IGNORECASE)
_UNIT = r"(?P<u>hours?|hrs?|days?|weeks?|wks?|months?|mths?)\b"
_WITHIN = re.compile(
    r"\b(?:within|in the next|over the next)\s+(?:the\s+)?(?:next\s+)?"
    r"(?:(?P<n>\d{1,3}|a couple of|couple of|a few|few|several|one|two|three|four|five|six|seven|eight|nine|ten|"
    rf"twelve|an?)(?:\s*(?:-|to)\s*\d{{1,3}})?\s*)?{_UNIT}|\bthis week\b|\bwithin the hour\b",
    re.IGNORECASE,
)
# Inside an "Urgency:" / "Priority:" value a bare time frame or "soon" is a hint too.
_LABELLED = re.compile(rf"\b(?P<n>\d{{1,3}})(?:\s*(?:-|to)\s*\d{{1,3}})?\s*{_UNIT}|\bsoon\b", re.IGNORECASE)
_LEVEL = re.compile(r"[ \t]*(high|low|normal|standard)\b", re.IGNORECASE)


def _by_days(days: float) -> str:
    return "emergent" if days <= 1 else "urgent" if days <= 14 else "routine"


def urgency_hints(text: str, labelled: list[tuple[int, int]]) -> list[Field]:
    """Hints in text order; ``labelled`` are the value ranges of urgency labels, whose hints are
    the surest. Where two rules match the same words the earlier rule wins."""
    hints: list[Field] = []
    taken: list[tuple[int, int]] = []

    def put(s: int, e: int, category: str, conf: float) -> None:
        if any(s < b and a < e for a, b in taken):
            return
        if any(a <= s < b for a, b in labelled):
            conf = 0.95
        f = make_field(text, s, e, category, conf, keep_period=True)
        if f is not None:
            taken.append((s, e))
            hints.append(f)

    for pattern, category, conf in _TERMS:
        for m in pattern.finditer(text):
            s, e = m.span()
            if _PLACE.match(text, e) or (category == "routine" and _ROUTINE_OTHER.match(text, e)):
                continue
            before = re.split(r"[.!?;:](?:\s|$)|,|\bbut\b|\n[ \t]*\n", text[max(0, s - 80):s])[-1]  # this clause
            if _CONDITIONAL.search(before):
                continue
            neg = _NEGATED.search(before)
            if neg is None:
                put(s, e, category, conf)
            elif category == "routine":  # "not wait for a routine slot"
                put(s - len(before) + neg.start(), e, "urgent", 0.5)
            else:  # "not urgent", "no red flags"
                put(s - len(before) + neg.start(), e, "routine", 0.7)
    for m in _WITHIN.finditer(text):
        if m.group("u"):
            n = (m.group("n") or "a").casefold()
            days = (int(n) if n.isdigit() else WORD_NUMBERS.get(n, 1)) * UNIT_DAYS[m.group("u")[0].casefold()]
        else:
            days = 0.0 if "hour" in m.group().casefold() else 5.0
        put(m.start(), m.end(), _by_days(days), 0.7)
    for a, b in labelled:
        for m in _LABELLED.finditer(text, a, b):
            days = int(m.group("n")) * UNIT_DAYS[m.group("u")[0].casefold()] if m.group("u") else 7.0
            put(m.start(), m.end(), _by_days(days), 0.9)
        level = _LEVEL.match(text, a, b)  # "Priority: High": a level with no keyword of its own
        if level and not any(a <= h.span[0] < b for h in hints):
            put(level.start(1), level.end(1), "urgent" if level.group(1).casefold() == "high" else "routine", 0.8)
    return sorted(hints, key=lambda f: f.span)
