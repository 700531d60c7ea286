"""Referral text to canonical tokens: spelling variants, abbreviations, typos, shorthand.

Referral letters and terse notes say the same thing many ways ("SOB", "short of breath",
"breathlesness", "dyspnoea"). Everything downstream (the lexicon, negation scope, the model) works on
one canonical, lower-case, American-spelling token stream, so each variant has to be handled once,
here. Punctuation that ends a clause or sentence stays as its own token because negation and
family-history scope stop there.

Nothing here logs or keeps the text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MAX_CHARS = 20_000  # a referral letter is a few pages at most; bound the work on pasted junk

SENTENCE_END = frozenset({".", "!", "?", ";", "\n"})
CLAUSE_PUNCT = frozenset({",", ":", "(", ")", "-", "/"})

# Spelling variants: British to American, and common misspellings seen in referral text.
_SPELLING = [
    (r"haem", "hem"), (r"oedem", "edem"), (r"oesophag", "esophag"), (r"diarrhoea", "diarrhea"),
    (r"anaemi", "anemi"), (r"ischaem", "ischem"), (r"paediat", "pediat"), (r"faec", "fec"),
    (r"anaesthe", "anesthe"), (r"tumour", "tumor"), (r"dyspnoea", "dyspnea"), (r"orthopnoea", "orthopnea"),
    (r"apnoea", "apnea"), (r"oestrogen", "estrogen"), (r"leukaem", "leukem"), (r"septicaem", "septicem"),
    (r"colour", "color"), (r"behaviour", "behavior"), (r"gynaec", "gynec"), (r"orthopaed", "orthoped"),
    (r"haemorrh", "hemorrh"), (r"foetal", "fetal"), (r"caesar", "cesar"),
]
_SPELLING_RE = re.compile("|".join(f"(?:{a})" for a, _ in _SPELLING))
_SPELLING_MAP = dict(_SPELLING)

# Abbreviations and shorthand to canonical words. Context-dependent ones are handled in code.
ABBREVIATIONS: dict[str, str] = {
    "sob": "shortness of breath", "sobar": "shortness of breath at rest",
    "soboe": "shortness of breath on exertion", "doe": "dyspnea on exertion", "dib": "difficulty breathing",
    "cp": "chest pain", "r/o": "rule out", "h/o": "history of", "c/o": "complains of", "o/e": "on examination",
    "w/": "with", "w/o": "without", "s/p": "status post", "n/v": "nausea and vomiting", "n&v": "nausea and vomiting",
    "nv": "nausea and vomiting", "abd": "abdominal", "abdo": "abdominal", "loc": "loss of consciousness",
    "cva": "stroke", "mi": "myocardial infarction", "ami": "acute myocardial infarction",
    "acs": "acute coronary syndrome", "pe": "pulmonary embolism", "gib": "gi bleed", "ugib": "upper gi bleed",
    "lgib": "lower gi bleed", "brbpr": "bright red blood per rectum", "ams": "altered mental status",
    "ha": "headache", "h/a": "headache", "sats": "saturation", "spo2": "saturation", "sao2": "saturation",
    "o2": "oxygen", "wt": "weight", "2ww": "two week wait", "pt": "patient", "pts": "patient",
    "yo": "year old", "y/o": "year old", "yrs": "years", "yr": "year", "wks": "weeks", "wk": "week",
    "mths": "months", "mth": "month", "mos": "months", "hrs": "hours", "hr.": "hour", "mins": "minutes",
    "dx": "diagnosis", "tx": "treatment", "rx": "treatment", "f/u": "follow up", "fu": "follow up",
    "a&e": "emergency department", "er": "emergency department", "fhx": "family history",
    "fh": "family history", "pmh": "past medical history", "pmhx": "past medical history",
    "hx": "history", "sx": "symptoms", "bx": "biopsy", "ix": "investigations", "hgb": "hemoglobin",
    "hb": "hemoglobin", "plt": "platelets", "plts": "platelets", "wcc": "white cell count",
    "wbc": "white cell count", "chf": "heart failure", "ccf": "heart failure", "hf": "heart failure",
    "af": "atrial fibrillation", "afib": "atrial fibrillation", "htn": "hypertension", "dm": "diabetes",
    "t2dm": "type 2 diabetes", "t1dm": "type 1 diabetes", "niddm": "type 2 diabetes", "iddm": "type 1 diabetes",
    "aki": "acute kidney injury", "gerd": "reflux", "gord": "reflux", "oa": "osteoarthritis",
    "ra": "rheumatoid arthritis", "lbp": "low back pain", "pv": "vaginal", "pmb": "postmenopausal bleeding",
    "loa": "loss of appetite", "cibh": "change in bowel habit", "ida": "iron deficiency anemia",
    "sz": "seizure", "szs": "seizures", "pls": "please", "plz": "please", "urg": "urgent",
    "b/l": "bilateral", "bilat": "bilateral", "l": "left", "r": "right", "lt": "left", "rt": "right",
    "nad": "no abnormality detected", "nkda": "no known drug allergies", "sn": "safety netted",
    "+ve": "positive", "-ve": "negative", "ve+": "positive", "pos": "positive", "neg": "negative",
    "incr": "increasing", "incr.": "increasing", "approx": "approximately", "assoc": "associated",
    "hosp": "hospital", "tia's": "tias", "mva": "motor vehicle accident", "rta": "road traffic accident",
    "gp": "general practitioner", "pcp": "primary care", "ptx": "pneumothorax", "sah": "subarachnoid hemorrhage",
    "ich": "intracranial hemorrhage", "aaa": "abdominal aortic aneurysm", "ues": "upper esophageal",
    "dka": "diabetic ketoacidosis", "hhs": "hyperosmolar state", "ssx": "symptoms", "c-spine": "cervical spine",
    "lmp": "last menstrual period", "bhcg": "pregnancy test", "hcg": "pregnancy test", "upt": "pregnancy test",
    "iud": "coil", "sle": "lupus", "tb": "tuberculosis", "hiv": "hiv", "uti": "urinary infection",
    "urti": "upper respiratory infection", "lrti": "chest infection", "copd": "copd", "ckd": "chronic kidney disease",
    "esrd": "end stage renal disease", "ibd": "inflammatory bowel disease", "ibs": "irritable bowel syndrome",
    "bph": "prostate enlargement", "luts": "lower urinary tract symptoms", "psa": "psa",
    "cxr": "chest xray", "ct": "ct", "mri": "mri", "ecg": "ecg", "ekg": "ecg", "echo": "echo",
    "bpm": "bpm", "mmhg": "mmhg", "etoh": "alcohol", "ivdu": "injecting drug use", "sui": "stress incontinence",
    "gca": "giant cell arteritis", "pmr": "polymyalgia", "dvt": "dvt", "tia": "tia", "stemi": "stemi",
    "nstemi": "nstemi", "ntg": "nitroglycerin", "gtn": "nitroglycerin", "si/hi": "suicidal ideation",
    "hi": "homicidal ideation", "od": "overdose", "dsh": "self harm", "sh": "self harm",
    "lle": "left leg", "rle": "right leg", "lue": "left arm", "rue": "right arm", "le": "leg", "ue": "arm",
    "n/t": "numbness and tingling", "ha's": "headaches", "hx.": "history", "re:": "regarding", "re": "regarding",
    "wrt": "regarding", "mx": "management", "tbc": "to be confirmed", "ddx": "differential",
    "ftt": "failure to thrive", "nai": "non accidental injury", "sga": "small for gestational age",
    "iugr": "growth restriction", "pprom": "ruptured membranes", "srom": "ruptured membranes",
    "gtt": "glucose tolerance", "ogtt": "glucose tolerance", "bmi": "bmi", "eos": "eosinophils",
    "ams.": "altered mental status", "cauda": "cauda", "vte": "venous thromboembolism",
    "ppi": "ppi", "nsaid": "nsaid", "nsaids": "nsaid", "ocp": "contraceptive pill", "hrt": "hrt",
    "asap": "as soon as possible", "stat": "immediately", "imm": "immediately", "tmrw": "tomorrow",
    "tdy": "today", "2day": "today", "wkly": "weekly", "hypo": "hypoglycemia", "hyper": "hyperglycemia",
    "bs": "blood sugar", "bg": "blood glucose", "cbg": "blood glucose", "gluc": "glucose",
    "mets": "metastases", "ca.": "cancer", "ca": "cancer", "malig": "malignancy", "neuro": "neurological",
    "resp": "respiratory", "cardio": "cardiac", "gi": "gi", "gu": "genitourinary", "obs": "observations",
    "hr": "hr", "rr": "rr", "bp": "bp", "temp": "temperature", "t": "t", "k": "k", "na": "na",
    "cr": "creatinine", "creat": "creatinine", "inr": "inr", "crp": "crp", "esr": "esr",
    "trop": "troponin", "tnt": "troponin", "tni": "troponin", "ddimer": "d-dimer", "d-dimer": "d-dimer",
    "bnp": "bnp", "ntprobnp": "bnp", "nt-probnp": "bnp", "lft": "liver tests", "lfts": "liver tests",
    "u&e": "renal tests", "u&es": "renal tests", "fbc": "blood count", "cbc": "blood count",
    "yrs.": "years", "wks.": "weeks", "approx.": "approximately", "e.g.": "for example", "i.e.": "that is",
    "dr": "doctor", "dr.": "doctor", "mr": "mr", "mrs": "mrs", "ms": "ms", "vs": "versus", "wc": "week commencing",
    "nil": "nil", "dnr": "dnr", "eol": "end of life", "pall": "palliative", "q": "query",
}

# Frequent misspellings that a single edit does not reach, or where the nearest word is wrong.
TYPOS: dict[str, str] = {
    "pian": "pain", "dnies": "denies", "deneis": "denies", "denys": "denies", "deines": "denies", "denie": "denies",
    "dneies": "denies", "wihtout": "without", "withuot": "without", "nto": "not", "ot": "not", "sitser": "sister",
    "bruther": "brother", "fahter": "father", "mohter": "mother", "faher": "father", "histroy": "history",
    "hsitory": "history", "famliy": "family", "famly": "family", "chset": "chest", "breathlesness": "breathlessness", "breathlessnes": "breathlessness",
    "breathlesnes": "breathlessness", "vomitting": "vomiting", "vommiting": "vomiting", "diarhea": "diarrhea",
    "diarrea": "diarrhea", "dizzyness": "dizziness", "numbess": "numbness", "seziure": "seizure",
    "siezure": "seizure", "seizur": "seizure", "syncopy": "syncope", "palpitaions": "palpitations",
    "pallpitations": "palpitations", "hemoptisis": "hemoptysis", "haemoptisis": "hemoptysis",
    "suicidial": "suicidal", "sucidal": "suicidal", "sucide": "suicide", "bleding": "bleeding",
    "bleeeding": "bleeding", "weakenss": "weakness", "weekness": "weakness", "headach": "headache",
    "hedache": "headache", "hadache": "headache", "unconsious": "unconscious", "unconcious": "unconscious",
    "confussion": "confusion", "abdomnal": "abdominal", "abdominial": "abdominal", "stomache": "stomach",
    "stomac": "stomach", "feaver": "fever", "fevre": "fever", "temprature": "temperature",
    "temperture": "temperature", "pateint": "patient", "paitent": "patient", "patinet": "patient",
    "referal": "referral", "refferal": "referral", "urgnet": "urgent", "urgant": "urgent", "emergancy": "emergency",
    "emergecny": "emergency", "shortnes": "shortness", "breth": "breath", "breat": "breath", "brest": "breast",
    "lump": "lump", "loose": "loose", "tightnes": "tightness", "pressue": "pressure", "presure": "pressure",
    "sweaty": "sweating", "clammy": "sweating", "diaphoretic": "sweating", "diaphoresis": "sweating",
    "stroak": "stroke", "stoke": "stroke", "strock": "stroke", "slured": "slurred", "sluring": "slurring",
    "droopy": "droop", "drooping": "droop", "dropping": "dropping", "worsning": "worsening",
    "worsenning": "worsening", "progresive": "progressive", "chornic": "chronic", "cronic": "chronic",
    "stabel": "stable", "stabile": "stable", "anemic": "anemia", "jaundiced": "jaundice", "jaundise": "jaundice",
    "mellena": "melena", "malena": "melena", "melaena": "melena", "hematemisis": "hematemesis",
    "hematemesis": "hematemesis", "heamatemesis": "hematemesis", "hematuria": "hematuria",
    "heamaturia": "hematuria", "haematuria": "hematuria", "cancr": "cancer", "cancar": "cancer",
    "malignacy": "malignancy", "weightloss": "weight loss", "wtloss": "weight loss", "collaps": "collapse",
    "colapse": "collapse", "collapsed": "collapse", "collapsing": "collapse", "fainted": "syncope",
    "fainting": "syncope", "passed": "passed", "blackout": "blackout", "blackouts": "blackout",
    "od'd": "overdose", "overdosed": "overdose", "tachycardic": "tachycardia", "bradycardic": "bradycardia",
    "hypotensive": "hypotension", "hypoxic": "hypoxia", "hypoxemic": "hypoxia", "febrile": "fever",
    "pyrexial": "fever", "pyrexia": "fever", "afebrile": "no fever", "apyrexial": "no fever",
    "normotensive": "normal blood pressure", "asymptomatic": "no symptoms", "breathless": "breathlessness",
    "dyspneic": "dyspnea", "dyspnoeic": "dyspnea", "confused": "confusion", "seizing": "seizure",
    "fitting": "seizure", "fits": "seizures", "seizures": "seizures", "vomited": "vomiting", "vomits": "vomiting",
    "bleed": "bleeding", "bleeds": "bleeding", "bled": "bleeding", "cough": "cough", "coughing": "cough",
    "paralysed": "paralyzed", "paralysis": "paralysis", "numb": "numbness", "tingly": "tingling",
    "wheezy": "wheeze", "wheezing": "wheeze", "swollen": "swelling", "oedematous": "swelling",
    "edematous": "swelling", "worse": "worse", "worsened": "worsening", "deteriorating": "worsening",
    "deteriorated": "worsening", "deterioration": "worsening", "progressing": "progressive",
    "progressed": "progressive", "lethargic": "lethargy", "floppy": "floppy", "unresponsive": "unresponsive",
    "pulseless": "pulseless", "mets.": "metastases", "metastatic": "metastases", "metastasis": "metastases",
    "suicidality": "suicidal ideation", "suicidal": "suicidal", "selfharm": "self harm", "self-harm": "self harm",
    "self-harming": "self harm", "selfharming": "self harm", "cutting": "cutting", "pregnent": "pregnant",
    "preg": "pregnant", "gravid": "pregnant", "thunderclap": "thunderclap",
    "numbnes": "numbness", "weaknes": "weakness", "palpatations": "palpitations", "palps": "palpitations",
    "angina": "angina", "anginal": "angina", "exersion": "exertion", "excertion": "exertion",
    "exertional": "on exertion", "nocturnal": "at night", "nightsweats": "night sweats",
    "longstanding": "longstanding", "long-standing": "longstanding", "long-term": "longstanding",
    "well-controlled": "well controlled", "reviewd": "reviewed", "routeen": "routine", "routin": "routine",
    "rountine": "routine", "non-urgent": "not urgent", "nonurgent": "not urgent", "semi-urgent": "soon",
    "sameday": "same day", "same-day": "same day", "2-week": "two week", "two-week": "two week",
    "fast-track": "fast track", "fasttrack": "fast track", "follow-up": "follow up", "followup": "follow up",
    "check-up": "check up", "checkup": "check up", "re-referral": "referral", "hemiparesis": "hemiparesis",
    "hemiplegia": "hemiparesis", "dysphasia": "aphasia", "dysphasic": "aphasia", "aphasic": "aphasia",
    "dysarthria": "slurred speech", "dysarthric": "slurred speech", "stridulous": "stridor",
    "cyanosed": "cyanosis", "cyanotic": "cyanosis", "exsanguinating": "massive bleeding",
    "unwell": "unwell", "septicemia": "sepsis", "septic": "sepsis", "urosepsis": "sepsis",
    "neutropaenic": "neutropenic", "neutropenia": "neutropenic",
}

# Clinicians' other languages: enough words for the alarm features and negation to work.
FOREIGN: dict[str, str] = {
    # Spanish
    "dolor": "pain", "pecho": "chest", "toracico": "chest", "falta": "shortness", "aire": "breath",
    "disnea": "dyspnea", "fiebre": "fever", "sangrado": "bleeding", "hemorragia": "bleeding",
    "desmayo": "syncope", "sincope": "syncope", "mareo": "dizziness", "urgente": "urgent", "niega": "denies",
    "sin": "without", "debilidad": "weakness", "perdida": "loss", "peso": "weight", "cabeza": "head",
    "vomitos": "vomiting", "convulsion": "seizure", "convulsiones": "seizures", "embarazada": "pregnant",
    "confusion": "confusion", "cancer": "cancer", "bulto": "lump", "masa": "mass", "rutina": "routine",
    "rutinario": "routine", "estable": "stable", "suicida": "suicidal", "brazo": "arm", "pierna": "leg",
    "hablar": "speech", "cara": "face", "subito": "sudden", "repentino": "sudden", "grave": "severe",
    "severo": "severe", "empeorando": "worsening", "controlado": "controlled", "revision": "review",
    # French
    "douleur": "pain", "thoracique": "chest", "poitrine": "chest", "essoufflement": "breathlessness",
    "dyspnee": "dyspnea", "fievre": "fever", "saignement": "bleeding", "syncopes": "syncope",
    "malaise": "unwell", "vertige": "dizziness", "faiblesse": "weakness", "perte": "loss", "poids": "weight",
    "tete": "head", "enceinte": "pregnant", "grosseur": "lump", "stable": "stable", "routinier": "routine",
    "aggravation": "worsening", "brutal": "sudden", "brutale": "sudden", "soudaine": "sudden",
    "sans": "without", "pas": "not", "aucun": "no", "aucune": "no", "nie": "denies",
    # German
    "brustschmerzen": "chest pain", "brustschmerz": "chest pain", "atemnot": "shortness of breath",
    "fieber": "fever", "blutung": "bleeding", "ohnmacht": "syncope", "schwindel": "dizziness",
    "dringend": "urgent", "kein": "no", "keine": "no", "ohne": "without", "schwanger": "pregnant",
    "gewichtsverlust": "weight loss", "kopfschmerzen": "headache", "lahmung": "paralysis",
    "krampfanfall": "seizure", "routine": "routine", "stabil": "stable",
    # Portuguese
    "falta de ar": "shortness of breath", "febre": "fever", "sangramento": "bleeding", "desmaio": "syncope",
    "gravida": "pregnant", "nega": "denies", "toracica": "chest", "perda": "loss",
    # durations
    "horas": "hours", "dias": "days", "semanas": "weeks", "meses": "months", "anos": "years",
    "heures": "hours", "jours": "days", "semaines": "weeks", "mois": "months", "ans": "years",
    "stunden": "hours", "tage": "days", "tagen": "days", "wochen": "weeks", "monate": "months", "monaten": "months",
}

_FOREIGN_PHRASES = [
    (re.compile(rf"\b{a}\b"), f" {b} ")
    for a, b in [
        (r"dolor (?:de|en el|en) pecho", "chest pain"), (r"dolor toracico", "chest pain"), (r"dolor de cabeza", "headache"),
        (r"falta de aire", "shortness of breath"), (r"dificultad (?:para|al) respirar", "difficulty breathing"),
        (r"perdida de peso", "weight loss"), (r"desde hace", "for"), (r"no tiene", "no"), (r"sangre en", "blood in"),
        (r"douleur(?:s)? thoracique(?:s)?", "chest pain"), (r"mal de tete", "headache"), (r"maux de tete", "headache"),
        (r"perte de poids", "weight loss"), (r"pas de", "no"), (r"depuis", "for"), (r"douleur(?:s)? (?:a|dans) la poitrine", "chest pain"),
        (r"dor (?:no|de) peito", "chest pain"), (r"falta de ar", "shortness of breath"), (r"perda de peso", "weight loss"),
        (r"sem", "without"), (r"schmerzen in der brust", "chest pain"), (r"seit", "for"),
    ]
]

_TOKEN_RE = re.compile(
    r"""
    \d+(?:\.\d+)?/\d+(?:\.\d+)?   # 180/110, 2/7, 3/52
    | \d+(?:\.\d+)?%?             # numbers, percentages
    | [a-z][a-z0-9]*(?:[&/'+][a-z0-9]+)*[+]?   # words, r/o, a&e, k+
    | [+-]ve\b
    | \n
    | [.,;:!?()\-/]
    """,
    re.VERBOSE,
)

_DURATION_FRACTION = {"7": "days", "52": "weeks", "12": "months", "24": "hours"}


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _pre_clean(text: str) -> str:
    text = _strip_accents(unicodedata.normalize("NFKC", text[:MAX_CHARS])).lower()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\u2191]", " raised ", text)  # up arrow
    text = re.sub(r"[\u2193]", " reduced ", text)
    text = re.sub(r"[\u2013\u2014]", " - ", text)
    text = text.replace("\u2019", "'").replace("`", "'")
    # "?PE", "? ca": clinical shorthand for a suspected diagnosis.
    text = re.sub(r"(^|[\s(,;:])\?\s?(?=[a-z])", r"\1 query ", text)
    text = re.sub(r"(?<![\w])([+-])ve\b", lambda m: " positive " if m.group(1) == "+" else " negative ", text)
    text = re.sub(r"\bx\s?(\d+/(?:7|52|12|24))\b", r"\1", text)
    text = re.sub(r"\bx\s?(\d+)\s?(?=(?:day|week|month|hour|min|d\b|h\b|wk|hr))", r"\1 ", text)
    # "cannot exclude PE", "PE not ruled out": suspicion, which triage treats as present.
    text = re.sub(r"\b(?:cannot|can not|can't|unable to|could not|couldn't) (?:exclude|rule out)\b", " query ", text)
    text = re.sub(r"\b(?:cannot|can not|can't|could not|couldn't|has not|hasn't|not|not yet) (?:be |been )?(?:excluded|ruled out)\b", " query ", text)
    for pattern, replacement in _FOREIGN_PHRASES:
        text = pattern.sub(replacement, text)
    text = re.sub(r"(\d+)[\s-]?(?:yo|y/o|yrs?[\s-]old|years?[\s-]old)\b", r"\1 year old", text)
    text = re.sub(r"(\d+)\s?(m|f)\b", lambda m: f"{m.group(1)} year old {'male' if m.group(2) == 'm' else 'female'}", text)
    text = re.sub(r"(\d+)\s?(days?|weeks?|months?|hours?|wks?|hrs?|mins?|d|h)\b", r"\1 \2", text)
    text = re.sub(r"(\d+(?:\.\d+)?)(mmhg|bpm|kg|lbs?|mmol|mg|g/l|g/dl)\b", r"\1 \2", text)
    _SPELL_CHARS = _SPELLING_RE
    text = _SPELL_CHARS.sub(lambda m: _SPELLING_MAP[m.group(0)], text)
    return text


@lru_cache(maxsize=1)
def _known_words() -> frozenset[str]:
    from services.triage.context import RELATIVES
    from services.triage.lexicon import lexicon_words

    words = set(lexicon_words()) | set(RELATIVES) | {"denies", "without", "history", "family", "negative", "previous"}
    for v in list(ABBREVIATIONS.values()) + list(TYPOS.values()) + list(FOREIGN.values()):
        words.update(v.split())
    return frozenset(w for w in words if w.isalpha())


@lru_cache(maxsize=1)
def _delete_index() -> dict[str, tuple[str, ...]]:
    index: dict[str, set[str]] = {}
    for w in _known_words():
        if len(w) < 4:
            continue
        for key in {w} | {w[:i] + w[i + 1:] for i in range(len(w))}:
            index.setdefault(key, set()).add(w)
    return {k: tuple(sorted(v)) for k, v in index.items()}


def _osa_distance_at_most_one(a: str, b: str) -> bool:
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    if la > lb:
        a, b = b, a
    for i in range(len(b)):
        if b[:i] + b[i + 1:] == a:
            return True
    return False


@lru_cache(maxsize=20_000)
def correct_word(word: str) -> str:
    """The lexicon word one edit away from ``word`` (a typo), or ``word`` itself."""
    if len(word) < 6 or not word.isalpha() or word in _known_words() or word in COMMON_WORDS:
        return word
    index = _delete_index()
    candidates: set[str] = set()
    for key in {word} | {word[:i] + word[i + 1:] for i in range(len(word))}:
        candidates.update(index.get(key, ()))
    good = sorted(c for c in candidates if len(c) >= 6 and _osa_distance_at_most_one(word, c))
    if len(good) == 1:
        return good[0]
    return word  # none, or ambiguous: leave it


# Ordinary words that are one edit away from a lexicon word and must not be "corrected".
COMMON_WORDS = frozenset(
    ["these", "those", "there", "where", "which", "while", "whilst", "still", "times", "today", "seems", "seemed", "rates", "dates", "notes", "noted", "place", "plans", "planned", "plain", "chess", "least", "later", "latest", "pains", "pained", "rests", "rested", "wants", "waits", "waited", "reast", "heart", "hearts", "hears", "heard", "bread", "break", "treat", "great", "sweat", "sleep", "slept", "steep", "stress", "dress", "press", "worst", "worse", "words", "works", "worked", "world", "month", "mouth", "south", "youth", "lunch", "bunch", "punch", "faint", "paint", "point", "joint", "joins", "stays", "stage", "state", "stale", "scale", "score", "store", "stone", "stool", "stools", "tool", "tools", "spoke", "spike", "strike", "stoke", "strokes", "broke", "woke", "smoke", "smoker", "smokes", "smoked", "choke", "shake", "shock", "stock", "block", "blood", "flood", "floor", "flour", "bleed", "breed", "blend", "blind", "blinds", "mind", "minds", "kind", "kinds", "find", "finds", "found", "round", "sound", "wound", "wounds", "ground", "bound", "mound", "hound", "pound", "fever", "never", "lever", "river", "liver", "livers", "cover", "later", "water", "wafer", "waiver", "safer", "after", "alter", "altered", "often", "soften", "seven", "sever", "severe", "every", "ever", "aware", "award", "sweet", "sheet", "sheets", "shirt", "short", "shorts", "sport", "spots", "spot", "shots", "court", "count", "counts", "mass", "mask", "masks", "pass", "past", "paste", "taste", "waste", "weight", "eight", "height", "heights", "night", "nights", "light", "lights", "fight", "right", "rights", "sight", "might", "tight", "tights", "weigh", "neigh", "limbs", "limb", "lamb", "lame", "same", "came", "name", "game", "fame", "frame", "blame", "flame", "shame"]
)


def _expand(tok: str, prev: str, nxt: str) -> str:
    # Context decides a few abbreviations that mean two things in referral text.
    if tok == "si":
        return "sacroiliac" if nxt in ("joint", "joints", "jt") else "suicidal ideation"
    if tok == "ed":
        return "emergency department" if prev in ("to", "in", "at", "via", "from", "attended", "the", "our") else "erectile dysfunction"
    if tok == "ms":
        return "multiple sclerosis" if prev in ("of", "with", "known", "has", "relapsing") else "ms"
    if tok in ("k", "k+") and (nxt[:1].isdigit() or nxt in ("of", "=")):
        return "potassium"
    if tok == "na" and (nxt[:1].isdigit() or nxt == "="):
        return "sodium"
    if tok in ("ca", "ca.") and (nxt[:1].isdigit() or nxt in ("=", "level", "levels")):
        return "calcium"
    if tok == "t" and nxt[:1].isdigit():
        return "temperature"
    if tok == "ra" and (prev.endswith("%") or prev in ("on", "saturation")):
        return "room air"
    if tok == "pr" and nxt in ("bleed", "bleeding", "blood", "bleeds", "exam", "examination"):
        return "rectal"
    if tok in ("l", "r") and not (nxt.isalpha() and len(nxt) > 1):
        return tok  # a lone letter in a list, not a side
    if tok in ("d", "h") and prev[:1].isdigit():
        return "days" if tok == "d" else "hours"
    if tok == "q" and not nxt.isalpha():
        return tok
    if tok in ABBREVIATIONS:
        return ABBREVIATIONS[tok]
    if tok in TYPOS:
        return TYPOS[tok]
    if tok in FOREIGN:
        return FOREIGN[tok]
    return correct_word(tok)


def tokenize(text: str) -> list[str]:
    """Canonical tokens of a referral text; sentence ends become "." and newlines "\\n"."""
    if not isinstance(text, str):
        raise TypeError("referral text must be a string")
    raw = _TOKEN_RE.findall(_pre_clean(text))
    out: list[str] = []
    for i, tok in enumerate(raw):
        m = re.fullmatch(r"(\d+)/(7|52|12|24)", tok)
        if m and not (out and out[-1] in ("bp", "blood pressure")):
            out.extend([m.group(1), _DURATION_FRACTION[m.group(2)]])
            continue
        prev = out[-1] if out else ""
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        out.extend(_expand(tok, prev, nxt).split())
    # Collapse runs of blank lines; keep one newline as a sentence end.
    cleaned: list[str] = []
    for tok in out:
        if tok == "\n" and cleaned and cleaned[-1] in SENTENCE_END:
            continue
        cleaned.append(tok)
    return cleaned
