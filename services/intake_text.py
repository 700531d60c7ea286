"""Low-level pieces of the referral-letter extractor: the Field type, exact spans, person names
and dates. Offsets always index the original text: nothing here re-cases or re-flows it, because
case mapping can change a string's length ("ß".upper() == "SS") and the UI highlights by offset."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from services.intake_terms import (
    CREDENTIALS,
    DOCTOR_TITLES,
    NAME_PARTICLES,
    NOT_NAME,
    PATIENT_TITLES,
    SPECIALTIES,
)


@dataclass(frozen=True)
class Field:
    """One suggested value and where it came from: ``text[span[0]:span[1]] == source_text``."""

    value: Any
    span: tuple[int, int]
    source_text: str
    confidence: float


_EDGE = " \t\r\n\f\v,;:|*•·–—-_=\"'()[]<>"


def make_field(text: str, start: int, end: int, value: Any, confidence: float, *, keep_period: bool = False) -> Field | None:
    """A Field over ``text[start:end]`` with blanks and edge punctuation trimmed from the span."""
    start, end = max(0, start), min(len(text), end)
    while start < end and text[start] in _EDGE:
        start += 1
    while start < end and (text[end - 1] in _EDGE or (text[end - 1] == "." and not keep_period)):
        end -= 1
    if start >= end or value is None or value == "":
        return None
    return Field(value, (start, end), text[start:end], round(min(max(confidence, 0.0), 0.99), 2))


def squash(s: str) -> str:
    """Whitespace collapsed: the display value of a span that wraps over lines."""
    return " ".join(s.split())


def line_bounds(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


# --- person names -----------------------------------------------------------------------------

_TITLE = re.compile(rf"(?i:(?P<pt>{PATIENT_TITLES})|(?P<dr>{DOCTOR_TITLES}))\.?[ \t]+(?=\w)")
_TOKEN = re.compile(r"[^\W\d_](?:[^\W\d_]|['’\-](?=[^\W\d_]))*\.?")
_GAP = re.compile(r"[ \t]{1,2}")
_NICKNAME = re.compile(r"[\"“'(][^\W\d_]+[\"”')][ \t]{1,2}")
_CRED = re.compile(rf",?[ \t]*(?:{CREDENTIALS})(?![\w])(?:[ \t]*,?[ \t]*(?:{CREDENTIALS})(?![\w]))*")
_CRED_WORD = re.compile(rf"(?:{CREDENTIALS})")
_NOT_NAME = NOT_NAME | {w.casefold() for w in SPECIALTIES} | {
    w.casefold() for s in SPECIALTIES for w in s.split()
}


@dataclass(frozen=True)
class Name:
    start: int
    end: int
    value: str
    doctor: bool  # had a doctor's title or a credential after it
    titled: bool  # any title (Mrs, Dr ...) before it


def _is_name_token(tok: str) -> bool:
    bare = tok.rstrip(".")
    return bool(bare) and bare[0].isupper() and bare.casefold() not in _NOT_NAME


def _tokens(text: str, pos: int, end: int, limit: int = 5) -> list[re.Match[str]]:
    """Consecutive name-like tokens from ``pos`` (one line, single spaces between them)."""
    out: list[re.Match[str]] = []
    while len(out) < limit:
        m = _TOKEN.match(text, pos, end)
        if not m:
            break
        tok = m.group()
        if _CRED_WORD.fullmatch(tok) or (not _is_name_token(tok) and not (tok.casefold() in NAME_PARTICLES and out)):
            break
        out.append(m)
        if tok.endswith(".") and len(tok) > 2 and tok[:-1].casefold() not in NAME_PARTICLES:
            break  # "Doe." ends a sentence; an initial "Q." does not
        gap = _GAP.match(text, m.end(), end)
        if not gap:
            break
        pos = gap.end()
        nick = _NICKNAME.match(text, pos, end)  # Theodore "Ted" Vaughn
        if nick and out:
            pos = nick.end()
    while out and out[-1].group().casefold() in NAME_PARTICLES:
        out.pop()
    return out


def fix_case(tok: str) -> str:
    """'DOE' -> 'Doe', "O'BRIEN" -> "O'Brien"; mixed case is left as written."""
    if not (tok.isupper() and len(tok.rstrip(".")) > 1):
        return tok
    return re.sub(r"[^\W\d_]+", lambda m: m.group().capitalize(), tok)


def _initial(tok: str) -> bool:
    return len(tok.rstrip(".")) == 1


def parse_name(text: str, pos: int, end: int, *, surname_first: bool = False) -> Name | None:
    """A person's name starting at ``pos`` (after blanks): an optional title, 1-5 capitalised
    tokens, "FAMILY, Given" when the family part is in capitals (or ``surname_first``), and an
    optional credential suffix ("MD", "FNP-BC")."""
    end = min(end, line_bounds(text, pos)[1] if pos < len(text) else pos)
    while pos < end and text[pos] in " \t":
        pos += 1
    title = _TITLE.match(text, pos, end)
    start = pos
    if title:
        pos = title.end()
    toks = _tokens(text, pos, end)
    if not toks:
        return None
    words = [t.group() for t in toks]
    last_end = toks[-1].end()
    comma = re.compile(r",[ \t]*").match(text, last_end, end)
    if comma and len(words) <= 2 and (surname_first or all(w.isupper() for w in words)):
        given = _tokens(text, comma.end(), end, limit=3)
        if given and not _CRED.match(text, last_end, end):
            words = [g.group() for g in given] + words
            last_end = given[-1].end()
    if words[-1].endswith(".") and not _initial(words[-1]):
        last_end -= 1
        words[-1] = words[-1][:-1]
    full = [w for w in words if not _initial(w)]
    cred = _CRED.match(text, last_end, end)
    if not full or (len(full) < 2 and not title and not cred):  # "J. Rivera, MD" is a name; "Rivera" alone is not
        return None
    stop = cred.end() if cred else last_end
    value = " ".join(fix_case(w) for w in words)
    doctor = bool(cred) or bool(title and title.group("dr"))
    return Name(start, stop, value, doctor, bool(title))


def name_key(name: str) -> frozenset[str]:
    """Comparable form of a name: case-folded words, initials and punctuation dropped."""
    return frozenset(w for w in re.findall(r"[^\W\d_]+", name.casefold()) if len(w) > 1)


# --- dates ------------------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?(?![^\W\d_])")
_DATE = re.compile(
    r"(?<![\w/.\-])(?:"
    r"(?P<iy>\d{4})[-/.](?P<im>\d{1,2})[-/.](?P<id>\d{1,2})"
    r"|(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
    rf"|(?P<dd>\d{{1,2}})(?:st|nd|rd|th)?(?:[ \t]+of)?[ \t\-/.]*(?P<dm>{_MONTH})[ \t\-/.,]*(?P<dy>\d{{4}}|\d{{2}})"
    rf"|(?P<mm>{_MONTH})[ \t]+(?P<md>\d{{1,2}})(?:st|nd|rd|th)?,?[ \t]+(?P<my>\d{{4}})"
    r")(?![\w/])",
    re.IGNORECASE,
)


def _year(y: str, today: dt.date) -> int:
    if len(y) == 4:
        return int(y)
    year = 2000 + int(y)
    return year - 100 if year > today.year else year


def _mk(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _month(name: str) -> int:
    return _MONTHS.index(name[:3].casefold()) + 1


def day_first(text: str) -> tuple[bool, float]:
    """Whether numeric dates in this letter read day/month, and how sure that is (the share of
    confidence an ambiguous date's first reading gets): decided by dates that cannot be the other
    way round, else by British spelling and usage; American order by default."""
    votes = 0
    for m in _DATE.finditer(text):
        if m.group("a"):
            a, b = int(m.group("a")), int(m.group("b"))
            votes += (a > 12 >= b) - (b > 12 >= a)
    if votes:
        return votes > 0, 0.85
    uk = re.search(r"\b(?:NHS|GP|2WW|A&E)\b|\b(?:Yours (?:sincerely|faithfully)|postcode|paediatric|orthopaedic|"
                   r"haematolog|gynaecolog|oesophag|anaemi)", text, re.IGNORECASE)
    return (True, 0.75) if uk else (False, 0.7)


def dates_in(text: str, start: int, end: int, *, dayfirst: bool, today: dt.date) -> list[tuple[int, int, dt.date, dt.date | None]]:
    """Dates in ``text[start:end]`` as (start, end, reading, other reading if ambiguous)."""
    out = []
    for m in _DATE.finditer(text, start, end):
        alt = None
        if m.group("iy"):
            date = _mk(int(m.group("iy")), int(m.group("im")), int(m.group("id")))
        elif m.group("a"):
            a, b, y = int(m.group("a")), int(m.group("b")), _year(m.group("y"), today)
            first, second = ((b, a), (a, b)) if dayfirst else ((a, b), (b, a))
            date = _mk(y, *first)
            other = _mk(y, *second)
            if date is None:
                date, other = other, None
            alt = other if other != date else None
        elif m.group("dd"):
            date = _mk(_year(m.group("dy"), today), _month(m.group("dm")), int(m.group("dd")))
        else:
            date = _mk(int(m.group("my")), _month(m.group("mm")), int(m.group("md")))
        if date is not None:
            out.append((m.start(), m.end(), date, alt))
    return out


def plausible_birth(date: dt.date, today: dt.date) -> bool:
    return dt.date(today.year - 125, 1, 1) <= date <= today
