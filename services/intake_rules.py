"""Field finders for referral letters. ``find_candidates`` returns every candidate it sees, per
field, each an exact span into the letter; :mod:`services.intake` ranks them for review.

Confidence is a rough prior per rule (a labelled value beats a phrase in prose, which beats a
bare mention), not a calibrated probability: the coordinator decides either way."""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

from services.intake_terms import (
    CASE_SENSITIVE,
    CONDITIONS,
    KNOWN_PAYERS,
    NO_VALUE,
    ORG_WORDS,
    PLAN_WORDS,
    SERVICE_WORDS,
    SPECIALTIES,
)
from services.intake_text import (
    Field,
    dates_in,
    day_first,
    fix_case,
    line_bounds,
    make_field,
    parse_name,
    plausible_birth,
    squash,
)
from services.intake_urgency import urgency_hints

Candidates = dict[str, list[Field]]

# --- labels -----------------------------------------------------------------------------------

# (kind, label, strict). A strict label needs a separator after it (":", "#", "|", a tab, " - ",
# or, at the start of a line, two spaces); the others are abbreviations that are labels anywhere.
# Earlier entries win where two could match at one place ("Patient ID" before "Patient").
_LABELS: tuple[tuple[str, str, bool], ...] = (
    ("referrer", r"referring[ \t]+(?:provider|physician|clinician|doctor|practitioner|consultant|GP|MD|NP|PA|"
                 r"nurse[ \t]+practitioner)(?:'s)?(?:[ \t]+name)?", True),
    ("referrer", r"referred[ \t]+by|referrer(?:'s)?(?:[ \t]+name)?|requesting[ \t]+(?:provider|physician|clinician|doctor)|"
                 r"ordering[ \t]+(?:provider|physician)|(?:electronically[ \t]+)?signed[ \t]+by|dictated[ \t]+by|author", True),
    ("org", r"referring[ \t]+(?:practice|clinic|organi[sz]ation|facility|hospital|site|office|service)|"
            r"(?:GP[ \t]+)?practice(?:[ \t]+name)?|sending[ \t]+facility|facility|organi[sz]ation", True),
    ("pcp", r"PCP|primary[ \t]+care[ \t]+(?:provider|physician|doctor)|(?:usual[ \t]+|registered[ \t]+)?GP(?:[ \t]+name)?", True),
    ("clinic", r"clinic(?:[ \t]+name)?", True),
    ("from", r"from", True),
    ("mrn", r"MRN|M\.R\.N\.?|MR[ \t]*#|medical[ \t]+record[ \t]*(?:number|no\.?|#)?|med(?:ical)?\.?[ \t]*rec(?:ord)?\.?[ \t]*(?:#|no\.?|number)|"
            r"hospital[ \t]+(?:number|no\.?|#|ID)|hosp\.?[ \t]*(?:no\.?|#)|unit[ \t]+(?:number|no\.?)|chart[ \t]*(?:#|no\.?|number)|"
            r"patient[ \t]*(?:ID|#|number|no\.?)|pt\.?[ \t]*(?:ID|#)|record[ \t]*(?:#|no\.?|number)", False),
    ("nhs", r"(?:NHS|CHI)[ \t]*(?:number|no\.?|#)?", False),
    ("id", r"ID[ \t]*(?:#|no\.?)?", False),
    ("member", r"(?:member|subscriber|policy|insurance|insured|medicare|medicaid|beneficiary)[ \t]*(?:ID|#|no\.?|number)"
               r"(?:[ \t]*(?:#|no\.?))?|MBI", False),
    ("payer", r"(?:primary[ \t]+|secondary[ \t]+)?(?:insurance(?:[ \t]+(?:carrier|company|provider|name|payer))?|insurer|"
              r"payer|payor|health[ \t]+insurance|health[ \t]+plan|carrier|coverage|funding|financial[ \t]+class)", True),
    ("plan", r"(?:insurance[ \t]+|benefit[ \t]+)?plan(?:[ \t]+(?:name|type))?|product", True),
    ("dob", r"D\.?[ ]?O\.?[ ]?B\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date", False),
    ("born", r"born(?:[ \t]+on)?", False),
    ("surname", r"surname|last[ \t]+name|family[ \t]+name", True),
    ("given", r"forename(?:\(s\)|s)?|first[ \t]+names?|given[ \t]+names?", True),
    ("name", r"(?:patient(?:'s)?|pt\.?|client)(?:[ \t]+(?:full[ \t]+)?name)?|(?:full[ \t]+)?name", True),
    ("re", r"re|regarding|subject|ref(?:erral)?[ \t]+for", True),
    ("specialty", r"(?:specialt(?:y|ies)|speciality)(?:[ \t]+requested)?|service(?:[ \t]+requested)?|requested[ \t]+service|department|dept\.?|"
                  r"referr(?:ed|al)[ \t]+to|refer[ \t]+to|to|attn\.?|attention|FAO|"
                  r"consult(?:ation)?(?:[ \t]+(?:requested|type|service|to))?|destination", True),
    ("reason", r"reason[ \t]+for[ \t]+(?:referral|consult(?:ation)?|request|visit)|referral[ \t]+reason|RFR|reason|"
               r"referral[ \t]+(?:question|details)", True),
    ("reason2", r"presenting[ \t]+(?:complaint|problem)|chief[ \t]+complaint|clinical[ \t]+(?:question|indication|details|summary|information)|"
                r"indication|question|concerns?|request|HPC|history[ \t]+of[ \t]+presenting[ \t]+complaint", True),
    ("reason3", r"(?:working[ \t]+|provisional[ \t]+)?diagnos[ie]s|Dx|problem|impression", True),
    ("urgency", r"urgency|priority|triage(?:[ \t]+category)?|time[ \t]*frame", True),
    # Labels that only end the value before them on the same line.
    ("stop", r"tel(?:ephone)?|phone|mobile|cell|fax|e-?mail|address|sex|gender|age|date|"
             r"group(?:[ \t]*(?:#|no\.?|number))?|NPI|DEA|(?:our|your)[ \t]+ref|allerg(?:y|ies)|medications?|meds|PMH|"
             r"past[ \t]+medical[ \t]+history|cc|enc(?:losures?)?|page|signature|ethnicity|language|SSN", True),
)
_STRICT_SEP = r"[ \t]*(?:(?:[:#=|\t][ \t]*)+|\.{2,}[ \t]*|[-–—]+[ \t]+|(?<=[ \t])(?=[ \t]))"
_LOOSE_SEP = r"(?![\w])[ \t]*(?:[:#=|][ \t]*)*(?:[-–—](?=[ \t]))?[ \t]*"
_LABEL_RE = re.compile(
    r"(?<![\w'’])(?:"
    + "|".join(f"(?P<k{i}>{core}){_STRICT_SEP if strict else _LOOSE_SEP}" for i, (_, core, strict) in enumerate(_LABELS))
    + ")",
    re.IGNORECASE,
)
_CELL_LABEL = [re.compile(rf"(?:{core})[ \t]*:?", re.IGNORECASE) for _, core, _ in _LABELS]
_PLAN_NOT = re.compile(r"\b(?:and|care|treatment|management|action|discharge|follow[- ]?up|birth|safety|"
                       r"exercise|diet|meal|the|a|my|our|this|your|further)\s*$", re.IGNORECASE)


_CELL_END = re.compile(r"(?<=\S)(?:[ \t]*[|;]|\t|[ ]{3,})")


@dataclass(frozen=True, slots=True)
class Label:
    kind: str
    start: int  # where the label starts
    vs: int  # where its value starts
    ve: int  # where its value ends (next label, cell border or end of line)
    line_end: int


def _starts_field(text: str, m: re.Match[str], core_end: int) -> bool:
    """A strict label in the middle of a line must look like a form field, not prose."""
    ls = max(line_bounds(text, m.start())[0], m.start() - 40)  # bounded: a long line stays linear
    before = text[ls:m.start()]
    if not before.strip(" \t>*•-") or re.search(r"(?:[,;|\t(]|[ \t]{2})[ \t]*$", before):
        return True
    sep = text[core_end:m.end()]
    return text[m.start()].isupper() and ":" in sep


def find_labels(text: str) -> list[Label]:
    header_values = list(_header_row_labels(text))
    header_lines = {line_bounds(text, s)[0] for _, s, _ in header_values}
    raw: list[tuple[str, int, int]] = []
    for m in _LABEL_RE.finditer(text):
        if _next_line_start(text, m.start()) in header_lines:
            continue  # a row of column headings: its values are on the next line
        i = int(m.lastgroup[1:])  # type: ignore[index]
        kind, _, strict = _LABELS[i]
        core_end = m.end(m.lastgroup)
        if strict and not _starts_field(text, m, core_end):
            continue
        two_spaces = strict and not text[core_end:m.end()].strip()
        if two_spaces and text[line_bounds(text, m.start())[0]:m.start()].strip(" \t>*•|"):
            continue  # a two-space separator only after a label that starts its line
        if kind == "plan" and _PLAN_NOT.search(text[max(0, m.start() - 30):m.start()]):  # "care plan:"
            continue
        if kind == "born" and m.start() > 0 and text[m.start() - 1] == "-":  # "first-born"
            continue
        raw.append((kind, m.start(), m.end()))
    raw.extend(header_values)
    raw.sort(key=lambda r: r[1])
    starts = [r[1] for r in raw]
    out = []
    for j, (kind, start, vs) in enumerate(raw):
        line_end = line_bounds(text, start)[1]
        k = bisect.bisect_left(starts, vs, j + 1)  # the value ends where the next label starts,
        ve = min(line_end, starts[k]) if k < len(starts) else line_end
        cell = _CELL_END.search(text, vs, ve)  # or at a cell border
        out.append(Label(kind, start, vs, cell.start() if cell else ve, line_end))
    return out


def _next_line_start(text: str, pos: int) -> int:
    """Where the line after the one holding ``pos`` starts (header rows are keyed by their values' line)."""
    return line_bounds(text, pos)[1] + 1


def _cells(text: str, ls: int, le: int) -> list[tuple[int, int]]:
    """Cells of a table row split on "|", tabs or runs of 2+ spaces, as trimmed spans."""
    out = []
    for m in re.finditer(r"[^|\t]+?(?=[ ]{2,}|\t|\||$)", text[ls:le]):
        s, e = ls + m.start(), ls + m.end()
        while s < e and text[s] == " ":
            s += 1
        if s < e:
            out.append((s, e))
    return out


def _header_row_labels(text: str) -> Iterator[tuple[str, int, int]]:
    """Column tables: a row of labels ("Patient Name   DOB   MRN") over a row of values. Each value
    cell is returned as (kind, cell start, cell start) so it reads as a label's value."""
    lines = [(m.start(), m.end()) for m in re.finditer(r"[^\n]*", text) if m.end() > m.start()]
    for (ls, le), (ns, ne) in pairwise(lines):
        heads = _cells(text, ls, le)
        if len(heads) < 2:
            continue
        kinds = []
        for s, e in heads:
            k = next((_LABELS[i][0] for i, r in enumerate(_CELL_LABEL) if r.fullmatch(text, s, e)), None)
            if k is None:
                break
            kinds.append(k)
        values = _cells(text, ns, ne)
        if len(kinds) == len(heads) == len(values):
            for k, (s, e) in zip(kinds, values):
                yield (k, s, s)


# Phrases after which the patient's name follows in prose.
_PATIENT_CUE = re.compile(
    r"(?:grateful if you (?:could|would)|could you(?: please| kindly)?|would you(?: please| kindly)?|"
    r"can you(?: please)?|please|kindly|thank you for|thanks for)\s+"
    r"(?:see|seeing|review|reviewing|assess|assessing|evaluate|evaluating|accept|accepting|examine|examining)"
    r"(?:\s+and\s+\w+)?\s+(?:my\s+|our\s+|this\s+)?(?:mutual\s+)?(?:patient,?\s+)?"
    r"|(?:I am|I'm|we are)\s+(?:writing to refer|referring|writing (?:regarding|about))\s+(?:my\s+|our\s+)?(?:patient,?\s+)?"
    r"|(?:consultation|assessment|opinion|appointment|review|referral) (?:for|of)\s+(?:my\s+|our\s+)?(?:patient,?\s+)?"
    r"|(?:my|our) (?:mutual )?patient,?\s+",
    re.IGNORECASE,
)
# A line that closes a letter: the signature follows it.
_CLOSING = re.compile(
    r"^[ \t]*(?:yours[ \t]+(?:sincerely|faithfully|truly)|sincerely(?:[ \t]+yours)?|"
    r"(?:with[ \t]+)?(?:kind|best|warm|many)[ \t]+(?:regards|wishes|thanks)|regards|respectfully(?:[ \t]+yours)?|"
    r"thank[ \t]+you|thanks|cordially|(?:electronically[ \t]+)?signed)[ \t]*[,.!:]?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


# --- the finder -------------------------------------------------------------------------------


class _Finder:
    def __init__(self, text: str, today: dt.date) -> None:
        self.text = text
        self.today = today
        self.dayfirst, self.order_sure = day_first(text)
        self.c: Candidates = defaultdict(list)
        self.no_specialty: list[tuple[int, int]] = []  # letterhead, signature, org spans
        self.urgency_values: list[tuple[int, int]] = []

    def add(self, kind: str, field: Field | None) -> None:
        if field is not None:
            self.c[kind].append(field)

    def value(self, s: int, e: int, conf: float) -> Field | None:
        """A Field whose value is its own (trimmed) text with whitespace collapsed."""
        f = make_field(self.text, s, e, "-", conf)
        return f and make_field(self.text, *f.span, squash(f.source_text), conf)

    # names ------------------------------------------------------------------------------------

    def patient(self, s: int, e: int, conf: float, *, labelled: bool) -> bool:
        n = parse_name(self.text, s, e, surname_first=labelled)
        if n is None or n.doctor:
            return False
        if " " not in n.value:
            conf *= 0.7  # a title and a surname only ("Ms. Garcia")
        self.add("patient_name", make_field(self.text, n.start, n.end, n.value, conf, keep_period=True))
        for ds, de, date, alt in dates_in(self.text, n.end, min(e, n.end + 40), dayfirst=self.dayfirst, today=self.today):
            self.dob(ds, de, date, alt, 0.5)  # "Re: Jane Doe 03/04/1961": a date beside the name
            break
        return True

    def clinician(self, s: int, e: int, conf: float) -> None:
        n = parse_name(self.text, s, e)
        if n is None:
            self.org(s, e, conf - 0.1)
            return
        self.add("referring_clinician", make_field(self.text, n.start, n.end, n.value, conf, keep_period=True))
        if re.match(r"[ \t]*[,;(–—-]", self.text[n.end:e]):  # "Dr X, Internal Medicine, Lakeview Primary Care"
            parts = [m for m in re.finditer(r"[^,;()–—]+", self.text[n.end:e]) if ORG_WORDS.search(m.group())]
            if parts:
                self.org(n.end + parts[-1].start(), n.end + parts[-1].end(), conf - 0.1)

    def org(self, s: int, e: int, conf: float, *, need_words: bool = True) -> None:
        chunk = self.text[s:e]
        if len(chunk.strip()) > 100 or (need_words and not ORG_WORDS.search(chunk)):
            return
        if squash(chunk).casefold() in NO_VALUE:
            return
        f = self.value(s, e, conf)
        if f is not None:
            self.add("referring_org", f)
            self.no_specialty.append(f.span)

    # dates and identifiers ------------------------------------------------------------------

    def dob(self, s: int, e: int, date: dt.date, alt: dt.date | None, conf: float) -> None:
        share = self.order_sure if alt else 1.0  # 03/04/1961: both readings are offered
        if plausible_birth(date, self.today):
            self.add("birth_date", make_field(self.text, s, e, date, conf * share, keep_period=True))
        if alt and plausible_birth(alt, self.today):
            self.add("birth_date", make_field(self.text, s, e, alt, conf * (1 - share), keep_period=True))

    def dob_label(self, lab: Label, conf: float) -> None:
        for s, e, date, alt in dates_in(self.text, lab.vs, min(lab.line_end, lab.vs + 40), dayfirst=self.dayfirst, today=self.today):
            self.dob(s, e, date, alt, conf)
            return

    def identifier(self, kind: str, lab: Label, conf: float, *, spaced: bool) -> None:
        pat = r"[A-Za-z]{0,4}-?\d[\dA-Za-z\-/]*" + (r"(?:[ ]\d{3,4}){0,2}(?!\w)" if spaced else "")
        m = re.compile(r"[ \t#:.]*(?:no\.?[ \t]*)?(" + pat + ")").match(self.text, lab.vs, lab.line_end)
        if not m:
            return
        token = m.group(1).rstrip("-/")
        if sum(ch.isdigit() for ch in token) < 3 or len(token) > 24:
            return
        value = token.replace(" ", "")
        self.add(kind, make_field(self.text, m.start(1), m.start(1) + len(token), value, conf))

    # payers -----------------------------------------------------------------------------------

    def payer(self, lab: Label) -> None:
        s, e = lab.vs, lab.ve
        f = self.value(s, e, 0.9)
        if f is None or f.value.casefold().rstrip(".") in NO_VALUE:
            return
        known = re.match(rf"(?:{'|'.join(KNOWN_PAYERS)})(?![\w])", f.source_text, re.IGNORECASE)
        plan = known and re.match(rf"[ \t,-]+((?:{PLAN_WORDS})\b.*)", f.source_text[known.end():], re.IGNORECASE)
        if known and plan:  # "Aetna Choice POS II": the payer, then its plan
            ps = f.span[0] + known.end() + plan.start(1)
            self.add("payer", self.value(f.span[0], f.span[0] + known.end(), 0.85))
            self.add("plan", self.value(ps, f.span[1], 0.6))
        else:
            self.add("payer", f)

    def plan(self, lab: Label) -> None:
        f = self.value(lab.vs, lab.ve, 0.85)
        if f is None or f.value.casefold().rstrip(".") in NO_VALUE or len(f.value) > 60:
            return
        near = self.text[max(0, lab.start - 200):lab.start + 200]
        if re.search(rf"insur|payer|payor|member|{PLAN_WORDS}|medicare|medicaid", near, re.IGNORECASE):
            self.add("plan", f)

    # labels -----------------------------------------------------------------------------------

    def labels(self) -> None:
        surname = given = None
        payer_line = -1
        for lab in find_labels(self.text):
            k = lab.kind
            if k in ("name", "re"):
                self.name_label(lab)
            elif k == "surname":
                surname = lab
            elif k == "given":
                given = lab
            elif k in ("dob", "born"):
                self.dob_label(lab, 0.9 if k == "dob" else 0.8)
            elif k == "mrn":
                self.identifier("mrn", lab, 0.9, spaced=False)
            elif k == "nhs":
                self.identifier("mrn", lab, 0.6, spaced=True)
            elif k == "member":
                self.identifier("member_id", lab, 0.9, spaced=False)
            elif k == "id" and payer_line == line_bounds(self.text, lab.start)[0]:
                self.identifier("member_id", lab, 0.7, spaced=False)
            elif k == "payer":
                payer_line = line_bounds(self.text, lab.start)[0]
                self.payer(lab)
            elif k == "plan":
                self.plan(lab)
            elif k in ("referrer", "pcp"):
                self.clinician(lab.vs, lab.ve, 0.9 if k == "referrer" else 0.6)
            elif k == "from":
                self.clinician(lab.vs, lab.ve, 0.7)
            elif k == "org":
                self.org(lab.vs, lab.ve, 0.85, need_words=False)
            elif k == "clinic" and not self.specialty_in(lab.vs, lab.ve, 0.85):
                self.org(lab.vs, lab.ve, 0.7, need_words=False)
            elif k == "specialty":
                self.specialty_in(lab.vs, lab.ve, 0.95)
            elif k.startswith("reason"):
                self.reason_label(lab, {"reason": 0.9, "reason2": 0.75, "reason3": 0.6}[k])
            elif k == "urgency":
                self.urgency_values.append((lab.vs, lab.ve))
        if surname and given:
            self.split_name(surname, given)

    def name_label(self, lab: Label) -> None:
        ctx = self.block_context(lab.start)
        if re.search(r"next of kin|\bNOK\b|contact|guarantor|subscriber|policy ?holder|guardian|parent|carer|caregiver|spouse",
                     ctx, re.IGNORECASE):
            return
        if re.search(r"refer|provider|physician|clinician|doctor|\bGP\b|practitioner|sender|\bfrom\b", ctx, re.IGNORECASE):
            self.clinician(lab.vs, lab.ve, 0.8)
            return
        conf = 0.9 if lab.kind == "name" else 0.8
        if self.patient(lab.vs, lab.ve, conf, labelled=True) or lab.kind != "re":
            return
        # "Re: Cardiology referral for Jane Doe" / "Re: referral - DOE, Jane"
        for m in re.finditer(r"(?:\bfor\b|\bre\b|\bpatient\b|\bpt\b|[-–—:,])[ \t]*", self.text[lab.vs:lab.ve], re.IGNORECASE):
            if self.patient(lab.vs + m.end(), lab.ve, 0.7, labelled=True):
                return

    def block_context(self, pos: int) -> str:
        """The text that says whose block a generic "Name:" is in: what precedes it on its line
        and the nearest header line above it in the same block."""
        ls = line_bounds(self.text, pos)[0]
        ctx = self.text[max(ls, pos - 60):pos]
        end = ls - 1
        for _ in range(4):
            if end <= 0:
                break
            s = self.text.rfind("\n", 0, end) + 1
            line = self.text[s:end].strip()
            if not line:
                break
            if len(line) <= 50 and (line.endswith(":") or ":" not in line):
                return ctx + " " + line
            end = s - 1
        return ctx

    def split_name(self, surname: Label, given: Label) -> None:
        tokens_f = re.findall(r"[^\W\d_][\w'’\-]*", self.text[surname.vs:surname.ve])
        tokens_g = re.findall(r"[^\W\d_][\w'’\-]*\.?", self.text[given.vs:given.ve])
        if not tokens_f or not tokens_g:
            return
        s, e = min(surname.vs, given.vs), max(surname.ve, given.ve)
        value = " ".join(fix_case(t) for t in tokens_g + tokens_f)
        self.add("patient_name", make_field(self.text, s, e, value, 0.8, keep_period=True))

    # prose ------------------------------------------------------------------------------------

    def patient_phrases(self) -> None:
        for m in _PATIENT_CUE.finditer(self.text):
            self.patient(m.end(), line_bounds(self.text, m.end())[1], 0.75, labelled=False)

    def signature(self) -> None:
        for m in _CLOSING.finditer(self.text):
            lines = [(x.start() + m.end(), x.end() + m.end()) for x in re.finditer(r"[^\n]+", self.text[m.end():m.end() + 600])]
            name_at = None
            for i, (s, e) in enumerate(lines[:4]):
                body = re.match(r"[ \t]*(?:/s/|\(signed\)|\[signed\]|signed:?|_+)?[ \t]*", self.text[s:e], re.IGNORECASE)
                n = parse_name(self.text, s + body.end(), e) if body else None
                if n is not None:
                    self.add("referring_clinician", make_field(self.text, n.start, n.end, n.value, 0.85, keep_period=True))
                    name_at = i
                    break
            if name_at is None:
                continue
            self.no_specialty.append((m.start(), lines[min(len(lines), name_at + 5) - 1][1]))
            for s, e in lines[name_at + 1:name_at + 5]:
                if ":" not in self.text[s:e] and ORG_WORDS.search(self.text, s, e):
                    self.org(s, e, 0.8)
                    break

    def unclosed_signatures(self) -> None:
        """Sign-offs without a closing word: "-- Dr. Raj Patel, ..." anywhere, and a line that is
        only a name with credentials ("Ramona Diaz, MD") in the second half of the letter (in the
        first half it is more likely the recipient's address block)."""
        for m in re.finditer(r"^[ \t]*(?:--|—|–)[ \t]*(?=\S)", self.text, re.MULTILINE):
            self.clinician(m.end(), line_bounds(self.text, m.end())[1], 0.8)
        half = len(self.text) // 2
        for m in re.finditer(r"^[ \t]*(?=\S)", self.text[half:], re.MULTILINE):
            s = half + m.end()
            e = line_bounds(self.text, s)[1]
            n = parse_name(self.text, s, e)
            if n is not None and n.doctor and not self.text[n.end:e].strip():
                self.add("referring_clinician", make_field(self.text, n.start, n.end, n.value, 0.75, keep_period=True))
                after = re.match(r"\n[ \t]*([^\n]+)", self.text[e:e + 200])
                if after and ":" not in after.group(1):
                    self.org(e + after.start(1), e + after.end(1), 0.7)

    def letterhead(self) -> None:
        for m in list(re.finditer(r"[^\n]+", self.text[:800]))[:6]:
            line = m.group().strip()
            if re.match(r"(?:dear|re\b|to\b|date\b|ref\b|subject\b)", line, re.IGNORECASE) or ":" in line:
                return
            words = line.split()
            capitalised = sum(w[0].isupper() for w in words) >= 0.6 * len(words)
            if ORG_WORDS.search(line) and capitalised and not line.endswith(".") and not re.search(r"\d{3}", line):
                # "REFERRAL FORM - Harbor Point Medical Group": the part that names an organisation
                parts = re.finditer(r"[^|–—]+?(?=\s[-|–—]\s|$)", m.group())
                part = next((p for p in reversed(list(parts)) if ORG_WORDS.search(p.group())), None)
                s, e = (m.start() + part.start(), m.start() + part.end()) if part else m.span()
                self.org(s, e, 0.55)
                self.no_specialty.append((m.start(), m.end()))
                return

    def reason_label(self, lab: Label, conf: float) -> None:
        s, e = lab.vs, lab.line_end
        if len(self.text[s:e].strip()) < 3:  # a heading: the reason is the paragraph below it
            para = re.compile(r"\n?((?:[ \t]*\S[^\n]*(?:\n|$)){1,8})").match(self.text, e)
            if not para:
                return
            s, e = para.start(1), para.end(1)
            stop = re.search(r"\n[ \t]*\n|\n[ \t]*[A-Z][A-Za-z /()]{1,40}:", self.text[s:e])
            if stop:
                e = s + stop.start()
        e = min(e, s + 1000)
        self.add("reason", self.value(s, e, conf))

    def reason_phrases(self) -> None:
        dotless = r"(?:[^.\n]|(?<=Mr)\.|(?<=Ms)\.|(?<=Mrs)\.|(?<=Dr)\.|(?<=Mx)\.|(?<=\b[A-Z])\.)"
        tail = r"(?P<r>(?:[^\n]|\n(?![ \t]*\n)){3,300}?)(?=\.(?:\s|$)|;|\n[ \t]*\n|$)"
        see = (r"(?:grateful if you (?:could|would)|could you(?: please| kindly)?|would you(?: please| kindly)?|please|"
               r"kindly|thank you for|thanks for)\s+(?:see|seeing|review|reviewing|assess|assessing|evaluate|evaluating|"
               r"examine|examining)\b")
        rules = (
            (rf"(?:for|regarding)\s+(?:further\s+|specialist\s+|an?\s+|urgent\s+|your\s+)?(?:assessment|evaluation|management|"
             rf"investigation|review|opinion|advice|work-?up|consideration)\s+(?:of|on|regarding|for)\s+{tail}", 0.75),
            (rf"{see}{dotless}{{0,120}}?\b(?:with|regarding|re|about|for(?!\s+(?:an?\s+)?(?:opinion|assessment|review|"
             rf"evaluation|further))|who (?:has had|has|have|is having|presents? with|complains? of|reports?))\s+{tail}", 0.7),
            (rf"\brefer(?:ral|ring|red)?\b{dotless}{{0,80}}?\b(?:for|with|regarding|because of|due to)\s+"
             rf"(?!further|an?\s+(?:opinion|assessment|review)|specialist){tail}", 0.7),
            (rf"\b(?:consult(?:ation)?|opinion|assessment|evaluation|review)\s+(?:requested\s+|request\s+)?"
             rf"(?:for|regarding|re:?)\s+{tail}", 0.65),
            (rf"\b(?:\d{{1,3}}[- ](?:year|yr)s?[- ]old|\d{{1,3}}\s?y/?o)\b{dotless}{{0,40}}?\b(?:with|who has|presenting with|"
             rf"complaining of)\s+{tail}", 0.65),
        )
        for pat, conf in rules:
            for m in re.finditer(pat, self.text, re.IGNORECASE):
                if parse_name(self.text, m.start("r"), m.end("r")) is None:  # "consultation for Jane Doe" is no reason
                    self.add("reason", self.value(m.start("r"), m.end("r"), conf))

    # specialty --------------------------------------------------------------------------------

    def specialty_in(self, s: int, e: int, conf: float) -> bool:
        """The specialty a label's value names; a noun beats an adjective ("Pediatric Cardiology")."""
        found = sorted(_specialty_matches(self.text, s, e), key=lambda m: _SPEC_OF[m.lastgroup][1])  # type: ignore[index]
        if found:
            m = found[0]
            self.add("specialty", make_field(self.text, m.start(), m.end(), _SPEC_OF[m.lastgroup][0], conf))  # type: ignore[index]
        return bool(found)

    def specialties(self) -> None:
        pos_cue = re.compile(r"\b(?:refer\w*|see|consult\w*|opinion|assess\w*|evaluat\w*|review|appointment|dear|to the|"
                             r"to your|to|request\w*|send|arrange|book|into|attention|for an?|by the)\b", re.IGNORECASE)
        hist_cue = re.compile(r"\b(?:seen by|known to|under(?: the)?|followed by|previously|prior|history|was seen|were seen|"
                              r"attended|discharged from|already|last (?:saw|seen)|(?:his|her|their|my))\s*$", re.IGNORECASE)
        for m in _specialty_matches(self.text, 0, len(self.text)):
            s, e = m.span()
            if any(a <= s < b for a, b in self.no_specialty):
                continue
            canonical, needs_ctx = _SPEC_OF[m.lastgroup]  # type: ignore[index]
            pre = self.text[max(0, s - 80):s]
            pre = re.split(r"[.!?](?:\s|$)|\n[ \t]*\n", pre)[-1]
            service = re.match(rf"[ \t]*(?:{SERVICE_WORDS})\b", self.text[e:e + 30], re.IGNORECASE)
            if hist_cue.search(pre) and not re.search(r"\b(?:refer\w*|see|consult\w*)\b[^,;]*$", pre, re.IGNORECASE):
                conf = 0.3
            elif needs_ctx and not service and not re.search(r"\b(?:to|into|dear)\s+(?:the\s+|your\s+|an?\s+)?$", pre, re.IGNORECASE):
                continue  # "refer to GI" and "GI clinic" name a service; "GI bleed" does not
            elif pos_cue.search(pre[-50:]):
                conf = 0.9 if service else 0.8
            elif service or needs_ctx:
                conf = 0.8
            else:
                conf = 0.4
            self.add("specialty", make_field(self.text, s, e, canonical, conf))

    def specialty_from_reason(self) -> None:
        """A weak guess from the condition when the letter names no service at all."""
        for reason in self.c.get("reason", []):
            s, e = reason.span
            for canonical, pattern in _CONDITION_RES.items():
                m = pattern.search(self.text, s, e)
                if m:
                    self.add("specialty", make_field(self.text, m.start(), m.end(), canonical, 0.35))

    # payers without a label -------------------------------------------------------------------

    def known_payers(self) -> None:
        if self.c.get("payer"):
            return
        for m in re.finditer(rf"(?<![\w])(?:{'|'.join(KNOWN_PAYERS)})(?![\w])", self.text, re.IGNORECASE):
            self.add("payer", make_field(self.text, m.start(), m.end(), squash(m.group()), 0.5))

    def run(self) -> tuple[Candidates, list[Field]]:
        self.letterhead()
        self.signature()
        self.unclosed_signatures()
        self.labels()
        self.patient_phrases()
        self.reason_phrases()
        self.specialties()
        self.specialty_from_reason()
        self.known_payers()
        return dict(self.c), urgency_hints(self.text, self.urgency_values)


def _specialty_regexes() -> tuple[dict[str, tuple[str, bool]], list[re.Pattern[str]]]:
    spec_of: dict[str, tuple[str, bool]] = {}
    groups: dict[bool, list[tuple[str, str]]] = {True: [], False: []}
    for canonical, synonyms in SPECIALTIES.items():
        for syn in synonyms:
            name = f"s{len(spec_of)}"
            spec_of[name] = (canonical, syn.startswith("ctx:"))
            groups[syn in CASE_SENSITIVE].append((name, syn.removeprefix("ctx:")))
    regexes = []
    for sensitive, pats in groups.items():
        pats.sort(key=lambda p: -len(p[1]))  # longest first: "general surgery" before "surgical"
        body = "|".join(f"(?P<{n}>{p})" for n, p in pats)
        regexes.append(re.compile(rf"(?<![\w/-])(?:{body})(?![\w/-])", 0 if sensitive else re.IGNORECASE))
    return spec_of, regexes


_SPEC_OF, _SPEC_RES = _specialty_regexes()
_CONDITION_RES = {k: re.compile(rf"(?<![\w-])(?:{p})(?![\w-])", re.IGNORECASE) for k, p in CONDITIONS.items()}


def _specialty_matches(text: str, s: int, e: int) -> list[re.Match[str]]:
    return sorted((m for r in _SPEC_RES for m in r.finditer(text, s, e)), key=lambda m: m.start())


def normalise_specialty(value: str) -> str | None:
    """The canonical specialty a typed value names ("ortho" -> "Orthopedics"), if any."""
    m = next((m for r in _SPEC_RES if (m := r.fullmatch(value.strip()))), None)
    return _SPEC_OF[m.lastgroup][0] if m else None  # type: ignore[index]


def find_candidates(text: str, today: dt.date) -> tuple[Candidates, list[Field]]:
    """Every candidate per field, and the urgency hints in text order."""
    return _Finder(text, today).run()
