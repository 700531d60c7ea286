"""From referral text to findings (concept mentions with their assertion) and model features.

``analyze(text)`` is the one entry point: canonical tokens (:mod:`.text`), assertion flags
(:mod:`.context`), lexicon mentions (:mod:`.lexicon`) and vital signs read from numbers. The model
sees ``Analysis.features``: concepts with their status, a few summary flags, and the words
themselves (marked when negated or not about the patient now), so it can learn what the lexicon
does not list while the lexicon carries what must never be learnt wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.triage.context import AFFIRMED, Assertions
from services.triage.context import analyze as assert_tokens
from services.triage.lexicon import RED_FLAG_LEVELS, SELF_NEGATING, compiled
from services.triage.text import tokenize

STOPWORDS = frozenset(
    ["a", "an", "the", "of", "to", "and", "or", "in", "on", "at", "for", "with", "by", "from", "is", "are", "was", "were", "be", "been", "being", "this", "that", "these", "those", "it", "its", "his", "her", "their", "he", "she", "they", "him", "them", "i", "we", "you", "our", "your", "my", "me", "us", "as", "into", "over", "under", "about", "than", "then", "so", "very", "has", "have", "had", "do", "does", "did", "will", "would", "can", "could", "may", "might", "should", "shall", "please", "dear", "thank", "thanks", "kind", "regards", "many", "much", "mr", "mrs", "ms", "miss", "dr", "doctor", "colleague", "sincerely", "yours", "re", "regarding", "patient", "pt", "year", "old"]
)


@dataclass(frozen=True)
class Mention:
    concept: str
    category: str
    level: str
    label: str
    status: str
    start: int
    end: int


@dataclass
class Analysis:
    tokens: list[str]
    mentions: list[Mention]
    features: dict[str, float] = field(default_factory=dict)

    @property
    def red_flags(self) -> list[Mention]:
        """Affirmed red flags, one per concept, emergent ones first."""
        seen: dict[str, Mention] = {}
        for m in self.mentions:
            if m.level in RED_FLAG_LEVELS and m.status == AFFIRMED and m.concept not in seen:
                seen[m.concept] = m
        return sorted(seen.values(), key=lambda m: (m.level != "E", m.start))

    def affirmed(self, level: str) -> list[Mention]:
        return [m for m in self.mentions if m.level == level and m.status == AFFIRMED]

    def discounted(self) -> list[Mention]:
        """Red-flag and urgency concepts that were mentioned but do not count (negated, a relative's...)."""
        return [m for m in self.mentions if m.level in ("E", "U", "u") and m.status != AFFIRMED]

    @property
    def word_count(self) -> int:
        return sum(1 for t in self.tokens if t[:1].isalpha())


# --- vital signs ---------------------------------------------------------------------------------------------

_NUM = r"(\d{1,3}(?:\.\d+)?)"
_LINK = r"(?:(?:of|is|was|at|=|:|measured|reading|recorded) )*"
_VITALS = [
    ("bp", re.compile(r"(?<![^ ])(?:bp|blood pressure|systolic)(?: \w+)? " + _LINK + r"(\d{2,3})/(\d{2,3})")),
    ("sbp", re.compile(r"(?<![^ ])(?:sbp|systolic(?: bp| blood pressure)?) " + _LINK + r"(\d{2,3})(?![/\d])")),
    ("hr", re.compile(r"(?<![^ ])(?:hr|heart rate|pulse(?: rate)?) " + _LINK + r"(\d{2,3})(?![/\d])")),
    ("hr", re.compile(r"(?<![^ ])(\d{2,3}) bpm")),
    ("rr", re.compile(r"(?<![^ ])(?:rr|respiratory rate|resp rate) " + _LINK + r"(\d{1,2})(?![/\d])")),
    ("temp", re.compile(r"(?<![^ ])(?:temperature|temp|fever)(?: of)? " + _LINK + r"(\d{2}(?:\.\d+)?)(?: ?c)?(?![/\d])")),
    ("sat", re.compile(r"(?<![^ ])(?:saturation|saturations|sat|sats|oxygen saturation) " + _LINK + r"(\d{2,3})")),
]


@dataclass(frozen=True)
class VitalFinding:
    concept: str
    level: str
    label: str
    feature: str


def _vitals(joined: str) -> list[tuple[int, VitalFinding]]:
    """Char offsets and findings for vital signs outside safe ranges."""
    out: list[tuple[int, VitalFinding]] = []
    for kind, rx in _VITALS:
        for m in rx.finditer(joined):
            try:
                values = [float(g) for g in m.groups()]
            except ValueError:
                continue
            pos = m.start()
            if kind == "bp":
                sys_, dia = values
                if 40 <= sys_ < 90:
                    out.append((pos, VitalFinding("hypotension", "E", "low blood pressure", "v=bp_low")))
                elif sys_ >= 200 or dia >= 130:
                    out.append((pos, VitalFinding("bp_crisis", "U", "severe hypertension", "v=bp_very_high")))
                elif sys_ >= 180 or dia >= 110:
                    out.append((pos, VitalFinding("bp_high", "u", "high blood pressure", "v=bp_high")))
                elif sys_ >= 150:
                    out.append((pos, VitalFinding("bp_raised", "x", "raised blood pressure", "v=bp_raised")))
            elif kind == "sbp":
                if 40 <= values[0] < 90:
                    out.append((pos, VitalFinding("hypotension", "E", "low blood pressure", "v=bp_low")))
                elif values[0] >= 200:
                    out.append((pos, VitalFinding("bp_crisis", "U", "severe hypertension", "v=bp_very_high")))
            elif kind == "hr":
                v = values[0]
                if v >= 140 or 15 <= v < 40:
                    out.append((pos, VitalFinding("hr_critical", "E", "critical heart rate", "v=hr_critical")))
                elif v >= 120:
                    out.append((pos, VitalFinding("hr_high", "U", "tachycardia", "v=hr_high")))
                elif v >= 100:
                    out.append((pos, VitalFinding("hr_raised", "x", "raised heart rate", "v=hr_raised")))
            elif kind == "rr":
                v = values[0]
                if v >= 30 or 0 < v <= 8:
                    out.append((pos, VitalFinding("rr_critical", "E", "critical respiratory rate", "v=rr_critical")))
                elif v >= 24:
                    out.append((pos, VitalFinding("rr_high", "U", "raised respiratory rate", "v=rr_high")))
            elif kind == "temp":
                v = values[0]
                if v >= 40 or 25 <= v < 35:
                    out.append((pos, VitalFinding("temp_critical", "U", "very high or low temperature", "v=temp_critical")))
                elif v >= 38:
                    out.append((pos, VitalFinding("temp_high", "x", "fever", "v=temp_high")))
            elif kind == "sat":
                v = values[0]
                if 40 <= v < 92:
                    out.append((pos, VitalFinding("low_sats", "E", "low oxygen saturation", "v=sat_low")))
                elif 92 <= v < 94:
                    out.append((pos, VitalFinding("sat_borderline", "u", "borderline oxygen saturation", "v=sat_borderline")))
    return out


# --- the analysis ----------------------------------------------------------------------------------------------

_DURATION = re.compile(
    r"(?<![^ ])(?:\d+(?:\.\d+)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|few|several|couple of|many) "
    r"(hours?|days?|weeks?|months?|years?|minutes?)(?![^ ])"
)
_AGE = re.compile(r"(?<![^ ])(\d{1,3}) year old")


def _offsets(tokens: list[str]) -> tuple[str, list[int]]:
    """Tokens joined by spaces, and the char offset where each token starts."""
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    return " ".join(tokens), starts


def _token_at(starts: list[int], char: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= char:
            lo = mid
        else:
            hi = mid - 1
    return lo


# A transient episode in the same sentence makes stroke signs a TIA ("slurred speech for 10 minutes,
# resolved"), which is urgent, not emergent.
_SUPPRESSES = {"tia": ("stroke",)}


def _suppress(mentions: list[Mention], tokens: list[str]) -> list[Mention]:
    sentence, k = [], 0
    for t in tokens:
        sentence.append(k)
        if t in (".", "!", "?", ";"):
            k += 1
    drop = set()
    for m in mentions:
        for victim in _SUPPRESSES.get(m.concept, ()):
            if m.status != AFFIRMED:
                continue
            for i, other in enumerate(mentions):
                if other.concept == victim and sentence[other.start] == sentence[m.start]:
                    drop.add(i)
    return [m for i, m in enumerate(mentions) if i not in drop]


def analyze(text: str) -> Analysis:
    tokens = tokenize(text)
    flat = [t if t != "\n" else "." for t in tokens]
    assertions: Assertions = assert_tokens(flat)
    joined, starts = _offsets(flat)
    mentions: list[Mention] = []
    if flat:
        for concept, rx in compiled():
            for m in rx.finditer(joined):
                i = _token_at(starts, m.start())
                j = _token_at(starts, max(m.end() - 1, m.start()))
                status = assertions.status(i)
                if concept.id in SELF_NEGATING and status == "neg":
                    status = AFFIRMED
                mentions.append(Mention(concept.id, concept.category, concept.level, concept.label, status, i, j + 1))
        for char, v in _vitals(joined):
            i = _token_at(starts, char)
            mentions.append(Mention(v.concept, "vital signs", v.level, v.label, assertions.status(i), i, i + 1))
    mentions = _suppress(mentions, flat)
    mentions.sort(key=lambda m: (m.start, m.concept))
    analysis = Analysis(flat, mentions)
    analysis.features = _features(analysis, assertions, joined)
    return analysis


def _features(a: Analysis, assertions: Assertions, joined: str) -> dict[str, float]:
    f: dict[str, float] = {}
    for m in a.mentions:
        suffix = "" if m.status == AFFIRMED else "|" + m.status
        f[f"c={m.concept}{suffix}"] = 1.0
        f[f"lvl={m.level}{suffix}"] = 1.0
        f[f"cat={m.category}{suffix}"] = 1.0
    if a.red_flags:
        f["rf=any"] = 1.0
    for m in a.red_flags:
        f[f"rf={m.level}"] = 1.0
    # Words, marked with their status so "denies chest pain" and "chest pain" are different evidence.
    prev: str | None = None
    for i, tok in enumerate(a.tokens):
        if not tok[:1].isalpha() or tok in STOPWORDS or len(tok) < 2:
            prev = None if not tok[:1].isalnum() else prev
            continue
        status = assertions.status(i)
        word = tok if status == AFFIRMED else f"{status}:{tok}"
        f["w=" + word] = 1.0
        if prev is not None:
            f["b=" + prev + "_" + word] = 1.0
        prev = word
    for m in _DURATION.finditer(joined):
        unit = m.group(1).rstrip("s")
        f["dur=" + unit] = 1.0
    ages = [int(m.group(1)) for m in _AGE.finditer(joined)]
    if ages:
        age = ages[0]
        f["age=" + ("child" if age < 16 else "adult" if age < 50 else "50s60s" if age < 70 else "70plus")] = 1.0
    n = a.word_count
    f["len=" + ("tiny" if n < 8 else "short" if n < 30 else "medium" if n < 120 else "long")] = 1.0
    return f
