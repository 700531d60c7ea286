"""Assertion status of each token: negated, a relative's, past, hypothetical (NegEx/ConText style).

A finding in a referral counts only when it is about the patient, now. The classic triggers of
NegEx (Chapman et al. 2001) and ConText (Harkema et al. 2009) open a scope after (pre-triggers)
or before (post-triggers) themselves; the scope ends at the end of the sentence, at a terminator
("but", "presents", "now", ...) or after ``WINDOW`` words. Pseudo-triggers ("not improving",
"cannot be excluded") look like negation but are not, and are consumed first.

Suspicion is not negation: "?PE", "rule out PE", "cannot exclude PE" leave the finding asserted,
because for triage a suspected emergency is an emergency.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.triage.text import SENTENCE_END

WINDOW = 12  # words a pre-trigger's scope reaches (lists of denied symptoms run long)
POST_WINDOW = 4

AFFIRMED, NEGATED, FAMILY, HISTORICAL, HYPOTHETICAL = "aff", "neg", "fam", "hist", "hyp"


def _phrases(*items: str) -> tuple[tuple[str, ...], ...]:
    # Longest first so that "no evidence of" wins over "no".
    return tuple(sorted((tuple(i.split()) for i in items), key=len, reverse=True))


PSEUDO = _phrases(
    "not improving", "not improved", "not resolved", "not resolving", "not settled", "not settling",
    "not responding", "not responded", "not controlled", "not relieved", "not getting better", "not tolerating",
    "not tolerated", "not able", "not eating", "not drinking", "not sleeping", "not passing", "not passed",
    "not rousable", "not been seen", "not yet", "not ruled out", "not been ruled out", "not excluded",
    "not been excluded", "not clear", "not certain", "not sure", "not known", "no better", "no improvement",
    "no response", "no relief", "not only", "not stopping", "no urine output", "no fetal", "no pulses",
    "no pulse", "not passed flatus", "cannot be excluded", "can not be excluded", "cannot exclude", "can not exclude",
    "cannot rule out", "can not rule out", "not ruled", "no change in her", "without delay", "no later than",
    "not urgent", "no urgency", "no rush", "no hurry", "not to be missed", "not feeding", "not moving",
    "not responsive", "not coping", "not managing", "not waking", "no longer able", "no relief", "nil by mouth",
    "no red flag", "no red flags", "nil red flags", "without red flags",
)
PRE_NEG = _phrases(
    "no", "not", "denies", "denied", "deny", "denying", "without", "negative for", "free of", "absence of",
    "no evidence of", "no sign of", "no signs of", "nil", "never", "never had", "none", "neither", "nor",
    "no further", "no new", "no longer", "no history of", "not had", "has not had", "had no", "has no",
    "no complaint of", "no complaints of", "rules out", "absent", "lack of", "nothing to suggest",
    "not suggestive of", "no features of", "no symptoms of", "no reported", "no report of", "does not have",
    "did not have", "no ongoing", "no recent", "no associated", "unremarkable for", "no obvious", "no clear",
    "no overt", "not associated with", "not complaining of", "not reporting", "not experiencing", "resolution of",
)
POST_NEG = _phrases(
    "ruled out", "excluded", "was excluded", "were excluded", "has been excluded", "negative", "absent",
    "not present", "not seen", "unlikely", "resolved", "has resolved", "denied", "not found", "not detected",
    "settled", "gone",
)
TERMINATORS = frozenset(
    ["but", "however", "although", "though", "except", "apart", "aside", "yet", "still", "now", "currently", "presents", "presented", "presenting", "reports", "reported", "reporting", "complains", "complaining", "states", "describes", "described", "developed", "develops", "has", "had", "noted", "notes", "found", "shows", "showed", "today", "recently", "which", "who", "whereas", "while", "whilst", "since", "then", "subsequently", "later", "also", "admits", "endorses", "positive", "patient", "pt", "she", "he", "they"]
)
HIST_TERMINATORS = TERMINATORS | frozenset(
    ["new", "recurrent", "again", "recurrence", "current", "this", "recent", "ongoing", "yesterday", "last", "acute", "worsening", "worse", "increasing", "progressive", "sudden"]
)
FAMILY_TRIGGERS = _phrases("family history", "family hx", "family history of", "runs in the family", "familial")
RELATIVES = frozenset(
    ["father", "mother", "dad", "mum", "mom", "brother", "brothers", "sister", "sisters", "sibling", "siblings", "parent", "parents", "grandfather", "grandmother", "grandparent", "grandparents", "uncle", "aunt", "cousin", "grandma", "grandpa", "granny", "paternal", "maternal"]
)
RELATIVE_VERBS = frozenset(["had", "died", "passed", "diagnosed", "suffered", "history", "with", "developed", "succumbed", ":", "-"])
FAMILY_TERMINATORS = frozenset(
    ["patient", "pt", "himself", "herself", "personally", "but", "however", "now", "today", "currently", "presents", "presenting", "reports", "complains", "he", "she", "they", "this"]
)
PRE_HIST = _phrases(
    "history of", "past medical history", "previous", "previously", "prior", "known", "background of",
    "background", "remote", "status post", "childhood", "as a child", "hx of", "in the past", "past history",
)
DURATION_WORDS = frozenset(
    ["hours", "hour", "days", "day", "weeks", "week", "months", "month", "years", "year", "short", "recent", "brief", "long", "sudden", "acute", "minutes", "minute", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "a", "two", "three", "four", "five", "six", "several", "few"]
)
PRE_HYP = _phrases(
    "if", "unless", "in case", "in the event", "safety netted", "safety net", "safety netting", "safety-netted",
    "advised to return", "return if", "advised to seek", "to seek", "seek", "warned", "watch for",
    "look out for", "risk of", "at risk of", "to prevent", "prevention of", "reduce risk of", "information about",
    "education about", "leaflet", "should he", "should she", "should they", "should symptoms", "should the patient",
    "in order to prevent", "red flag advice", "worsening advice", "advice given",
)


@dataclass(frozen=True)
class Assertions:
    """Per-token flags, aligned with the token list."""

    neg: tuple[bool, ...]
    fam: tuple[bool, ...]
    hist: tuple[bool, ...]
    hyp: tuple[bool, ...]

    def status(self, start: int, end: int | None = None) -> str:
        """The status of a mention starting at token ``start``: its first token decides."""
        if self.fam[start]:
            return FAMILY
        if self.neg[start]:
            return NEGATED
        if self.hyp[start]:
            return HYPOTHETICAL
        if self.hist[start]:
            return HISTORICAL
        return AFFIRMED


def _match(tokens: list[str], i: int, phrases: tuple[tuple[str, ...], ...]) -> int:
    """Length of the longest phrase at ``tokens[i:]``, or 0."""
    for p in phrases:
        n = len(p)
        if tuple(tokens[i:i + n]) == p:
            return n
    return 0


def _is_year(tok: str) -> bool:
    return len(tok) == 4 and tok.isdigit() and "1930" < tok < "2025"


def _is_word(tok: str) -> bool:
    return tok[:1].isalnum()


def _forward_scope(tokens: list[str], start: int, end: int, flags: list[bool], terminators: frozenset[str],
                   window: int = WINDOW) -> None:
    words = 0
    j = start
    while j < end:
        tok = tokens[j]
        if tok in terminators:
            return
        flags[j] = True
        if _is_word(tok):
            words += 1
            if words >= window:
                return
        j += 1


def analyze(tokens: list[str]) -> Assertions:
    n = len(tokens)
    neg, fam, hist, hyp = [False] * n, [False] * n, [False] * n, [False] * n
    start = 0
    while start < n:
        end = start
        while end < n and tokens[end] not in SENTENCE_END:
            end += 1
        _sentence(tokens, start, end, neg, fam, hist, hyp)
        start = end + 1
    return Assertions(tuple(neg), tuple(fam), tuple(hist), tuple(hyp))


def _clause_start(tokens: list[str], i: int, lo: int) -> int:
    j = i
    while j > lo and tokens[j - 1] not in (",", ":", "(", ")") and tokens[j - 1] not in TERMINATORS:
        j -= 1
    return j


def _sentence(tokens: list[str], lo: int, hi: int, neg: list[bool], fam: list[bool], hist: list[bool],
              hyp: list[bool]) -> None:
    i = lo
    while i < hi:
        tok = tokens[i]
        k = _match(tokens, i, PSEUDO)
        if k:
            i += k
            continue
        k = _match(tokens, i, FAMILY_TRIGGERS)
        if k:
            _forward_scope(tokens, i + k, hi, fam, FAMILY_TERMINATORS, window=40)
            i += k
            continue
        if tok in RELATIVES and any(t in RELATIVE_VERBS for t in tokens[i + 1:min(i + 4, hi)]):
            _forward_scope(tokens, i + 1, hi, fam, FAMILY_TERMINATORS, window=20)
            i += 1
            continue
        if tok == "in" and i + 1 < hi:
            # "... bowel cancer in her mother": the clause before belongs to a relative.
            j = i + 1
            if tokens[j] in ("his", "her", "their", "the", "a"):
                j += 1
            if j < hi and tokens[j] in RELATIVES:
                for m in range(_clause_start(tokens, i, lo), i):
                    fam[m] = True
        k = _match(tokens, i, PRE_HYP)
        if k:
            _forward_scope(tokens, i + k, hi, hyp, TERMINATORS)
            i += k
            continue
        k = _match(tokens, i, PRE_NEG)
        if k:
            _forward_scope(tokens, i + k, hi, neg, TERMINATORS)
            i += k
            continue
        k = _match(tokens, i, POST_NEG)
        if k and (i == lo or tokens[i - 1] in (",", ":", "(")) and tokens[i] in ("ruled", "excluded"):
            _forward_scope(tokens, i + k, hi, neg, TERMINATORS)  # "Ruled out: MI, PE."
            i += k
            continue
        if k:
            # "PE ruled out", "troponin negative": back to the clause start, a few words at most.
            words, j = 0, i - 1
            while j >= lo and tokens[j] not in (",", ":", "(", ")") and tokens[j] not in TERMINATORS and words < POST_WINDOW:
                neg[j] = True
                words += _is_word(tokens[j])
                j -= 1
            i += k
            continue
        k = _match(tokens, i, PRE_HIST)
        if k:
            prev = tokens[i - 1] if i > lo else ""
            if tokens[i] == "history" and prev in DURATION_WORDS:
                i += k  # "3 day history of chest pain" is the presenting complaint
                continue
            _forward_scope(tokens, i + k, hi, hist, HIST_TERMINATORS, window=10)
            i += k
            continue
        if tok == "ago" and i > lo:
            unit = tokens[i - 1]
            if unit in ("years", "year", "months", "decades", "decade"):
                for m in range(_clause_start(tokens, i, lo), i):
                    hist[m] = True
        if _is_year(tok) and i > lo and (i + 1 >= hi or not tokens[i + 1][:1].isdigit()):
            # "MI 2015", "appendicectomy (1998)": a dated finding is past history.
            j = i - 1 if tokens[i - 1] != "(" else i - 2
            for m in range(max(_clause_start(tokens, j, lo), i - 6), j + 1):
                hist[m] = True
        if tok in ("in", "since") and i + 1 < hi and tokens[i + 1].isdigit() and len(tokens[i + 1]) == 4 \
                and tokens[i + 1] < "2025" and tokens[i + 1] > "1930":
            for m in range(_clause_start(tokens, i, lo), i):
                hist[m] = True
        i += 1
