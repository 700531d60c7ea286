"""Vocabulary of the referral-letter extractor: specialties and their synonyms, urgency words,
payer names, titles and credentials. Plain tables, so adding a synonym is a one-line change."""

from __future__ import annotations

import re

# Canonical specialty -> synonyms. Entries are regular expressions matched case-insensitively on
# word boundaries, except those in CASE_SENSITIVE (acronyms that are other words in lower case).
# "ctx:" marks adjectives and abbreviations ("cardiac", "ortho", "GI") that name a specialty only
# in a referral context ("cardiac clinic", "ortho consult", "refer to GI") or as a label's value;
# "GI bleed" or "neuro exam" alone name no service.
SPECIALTIES: dict[str, tuple[str, ...]] = {
    "Cardiology": (r"cardiology", r"cardiologists?", r"heart failure clinic", r"electrophysiology",
                   r"chest pain clinic", r"ctx:cardiac", r"ctx:cardio", r"ctx:heart"),
    "Orthopedics": (r"orthop(?:a)?edics?", r"orthop(?:a)?edists?", r"orthopods?", r"ctx:ortho",
                    r"fracture clinic", r"bone (?:and|&) joint", r"ctx:orthop(?:a)?edic",
                    r"ctx:orthop(?:a)?edic surgery", r"ctx:spine"),
    "Neurology": (r"neurology", r"neurologists?", r"ctx:neuro", r"first seizure clinic", r"memory clinic",
                  r"headache clinic", r"ctx:neurological"),
    "Neurosurgery": (r"neurosurgery", r"neurosurgeons?", r"ctx:neurosurgical"),
    "Gastroenterology": (r"gastroenterology", r"gastroenterologists?", r"ctx:gastro", r"ctx:GI",
                         r"hepatology", r"hepatologists?", r"liver clinic", r"endoscopy",
                         r"ctx:gastrointestinal", r"ctx:digestive"),
    "Oncology": (r"oncology", r"oncologists?", r"ctx:onc", r"cancer cent(?:er|re)", r"ctx:cancer",
                 r"ctx:oncological"),
    "Hematology": (r"ha?ematology", r"ha?ematologists?", r"ctx:heme", r"ctx:haem", r"heme[ /-]?onc",
                   r"haem[ /-]?onc", r"ctx:ha?ematological"),
    "Pulmonology": (r"pulmonology", r"pulmonologists?", r"pulmonary medicine", r"ctx:pulm",
                    r"respiratory medicine", r"respirology", r"chest clinic", r"sleep clinic",
                    r"ctx:pulmonary", r"ctx:respiratory", r"ctx:lung", r"ctx:chest"),
    "Endocrinology": (r"endocrinology", r"endocrinologists?", r"ctx:endo", r"diabetes clinic",
                      r"diabetic clinic", r"thyroid clinic", r"ctx:endocrine", r"ctx:diabetes"),
    "Dermatology": (r"dermatology", r"dermatologists?", r"ctx:derm", r"skin clinic", r"ctx:skin",
                    r"ctx:dermatological"),
    "Rheumatology": (r"rheumatology", r"rheumatologists?", r"ctx:rheum", r"ctx:rheumatological"),
    "Urology": (r"urology", r"urologists?", r"ctx:uro", r"ctx:urological", r"ctx:urologic"),
    "Nephrology": (r"nephrology", r"nephrologists?", r"ctx:nephro", r"kidney clinic", r"ctx:renal",
                   r"ctx:kidney"),
    "Psychiatry": (r"psychiatry", r"psychiatrists?", r"ctx:psych", r"mental health",
                   r"behaviou?ral health", r"ctx:psychiatric"),
    "Ophthalmology": (r"ophthalmology", r"ophthalmologists?", r"eye clinic", r"ctx:eye",
                      r"ctx:ophthalmic"),
    "Otolaryngology": (r"otolaryngology", r"ENT", r"ear,? nose,? (?:and|&) throat"),
    "Obstetrics and Gynecology": (r"obstetrics", r"gyn(?:a)?ecology", r"gyn(?:a)?ecologists?",
                                  r"ctx:gynae?", r"OB[ /-]?GYN", r"O&G", r"women'?s health",
                                  r"ctx:gyn(?:a)?ecological", r"ctx:obstetric"),
    "General Surgery": (r"general surgery", r"general surgeons?", r"colorectal surgery",
                        r"breast clinic", r"breast surgery", r"ctx:surgical", r"ctx:colorectal",
                        r"ctx:breast"),
    "Vascular Surgery": (r"vascular surgery", r"vascular surgeons?", r"ctx:vascular"),
    "Allergy and Immunology": (r"allergy", r"immunology", r"allergists?", r"immunologists?"),
    "Infectious Disease": (r"infectious diseases?", r"ID (?:clinic|consult(?:ation)?|team|service)"),
    "Geriatrics": (r"geriatrics", r"geriatricians?", r"care of the elderly", r"ctx:geriatric"),
    "Pediatrics": (r"pa?ediatrics", r"pa?ediatricians?", r"ctx:pa?ediatric"),
    "Pain Medicine": (r"pain clinic", r"pain management", r"pain medicine"),
    "Physical Therapy": (r"physical therapy", r"physiotherapy", r"ctx:physio"),
}
CASE_SENSITIVE = frozenset({"ctx:GI", "ENT", "ID (?:clinic|consult(?:ation)?|team|service)", "OB[ /-]?GYN", "O&G"})

# Words that, right after an adjective synonym, make it a service ("cardiac clinic").
SERVICE_WORDS = (r"clinic|consult(?:ation)?|team|service|department|dept|opinion|review|referral|"
                 r"assessment|evaluation|unit|follow[- ]?up|input|surgeons?|specialists?|"
                 r"physicians?|doctors?")

# Canonical urgency categories, most severe first (also the Referral.urgency values).
URGENCY_ORDER = ("emergent", "urgent", "routine")
URGENCY_SEVERITY = {u: len(URGENCY_ORDER) - i for i, u in enumerate(URGENCY_ORDER)}

# (pattern, category, confidence); matched case-insensitively, earlier entries win overlaps.
URGENCY_TERMS: tuple[tuple[str, str, float], ...] = (
    (r"same[- ]day", "emergent", 0.8),
    (r"emergency referral|emergent(?:ly)?|\bSTAT\b|immediate(?:ly)?|without delay", "emergent", 0.8),
    (r"(?:please|could you|can you|kindly|to be|be)\s+(?:see|seen|review(?:ed)?|assess(?:ed)?)"
     r"(?:\s+\w+){0,2}\s+today", "emergent", 0.6),
    (r"(?:2|two)[- ]?(?:week|wk)[- ]?(?:wait|rule)|\b2WW\b|fast[- ]track|suspected cancer", "urgent", 0.85),
    (r"a\.s\.a\.p\.?|\bASAP\b|as soon as (?:is )?possible", "urgent", 0.85),
    (r"semi[- ]?urgent(?:ly)?", "urgent", 0.5),
    (r"no (?:particular |great |real )?urgency", "routine", 0.8),
    (r"urgent(?:ly)?|expedite(?:d)?|high[- ]priority|priority referral", "urgent", 0.85),
    (r"earliest (?:available|possible|convenience|opportunity)", "urgent", 0.6),
    (r"red[- ]flags?", "urgent", 0.6),
    (r"(?:seen|see|review(?:ed)?|appointment)\s+(?:\w+\s+)?soon\b", "urgent", 0.5),
    (r"emergency", "emergent", 0.7),
    (r"routine(?:ly)?|elective(?:ly)?|at your (?:earliest )?convenience|when convenient|"
     r"no (?:rush|hurry)|soft referral", "routine", 0.8),
)
# A keyword followed by one of these names a place or a service, not a request ("urgent care").
URGENCY_PLACES = (r"\s*(?:care|cent(?:er|re)|department|dept|room|services?|medicine|physician|"
                  r"contact|number|line|admission|admissions|unit|team|on[- ]call)\b")
# Negation cues in the few words before a keyword (same clause).
NEGATIONS = r"\b(?:not|no|non|never|nor|without|neither|isn'?t|doesn'?t|don'?t|hasn'?t|unlikely)\b|n't\b"
WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "few": 3,
                "a few": 3, "couple of": 2, "a couple of": 2, "several": 4}
UNIT_DAYS = {"h": 1 / 24, "d": 1, "w": 7, "m": 30}

# Payers recognised without a label (at low confidence).
KNOWN_PAYERS = (
    r"Medicare(?: Advantage)?", r"Medicaid", r"Aetna", r"Cigna", r"United ?Health ?care", r"UHC",
    r"Humana", r"Kaiser Permanente", r"Anthem", r"Blue Cross(?: (?:and|&) )?(?: ?Blue Shield)?",
    r"BCBS", r"Tricare", r"Molina", r"Ambetter", r"Wellcare", r"Highmark", r"Health Net",
    r"CareFirst", r"Bupa", r"AXA(?: Health)?", r"Vitality(?:Health)?", r"Aviva",
)
# Words that, after a known payer's name, start a plan name ("Aetna PPO", "Humana Gold Plus").
PLAN_WORDS = r"PPO|HMO|EPO|POS|HDHP|Advantage|Gold|Silver|Bronze|Platinum|Choice|Select|Plus|Part [ABCD]|Standard|Marketplace"
NO_VALUE = frozenset({"none", "n/a", "na", "nil", "unknown", "not known", "-", "--", "tbc", "tba",
                      "pending", "see attached", "attached", "to follow", "not applicable", "nka"})

PATIENT_TITLES = r"Mrs|Mr|Ms|Miss|Mx|Master"
DOCTOR_TITLES = r"Dr|Doctor|Prof|Professor"
CREDENTIALS = (r"MD|M\.D\.|DO|D\.O\.|MBBS|MBChB|MB ChB|BM|BCh|BMBS|MRCGP|MRCP|FRCP|FRCS|FACP|"
               r"FAAFP|FAAP|FACC|DNP|APRN|FNP(?:-[BC]C?)?|NP|ANP|PA-?C|PA|RN|MSN|PhD|DPM|DCH|"
               r"DRCOG|DFSRH|GP")
# Capitalised words that are never part of a person's name.
NOT_NAME = frozenset("""
    dob date birth born age sex gender male female mrn nhs no number id tel phone fax email
    address referral refer referring re regarding patient name dear thank thanks please
    insurance payer plan member the this that he she they his her their clinic hospital
    practice surgery department dept urgent routine reason history diagnosis with and for
    from to of at in on medical record hosp unit chart account year years old mobile cell
    home work sincerely regards yours kind best signed electronically new follow up cc
    consultant doctor nurse dr mr mrs ms miss prof ref our your attn attention subject
    provider physician clinician re: letter copy enclosure page fwd fw
    practice medical health healthcare centre center group associates partners physicians
    primary care family medicine internal university trust foundation institute infirmary
    community services service team colleague colleagues specialist consultation consult
    evaluation assessment opinion review request form information details summary
""".split())
NAME_PARTICLES = frozenset({"van", "von", "de", "da", "del", "della", "di", "la", "le", "du",
                            "der", "den", "bin", "al", "el", "ter", "ten", "dos", "das", "st"})
# Words that mark an organisation name (letterheads, signature blocks, "Practice:").
ORG_WORDS = re.compile(
    r"\b(?:clinic|practice|medical|health|healthcare|hospital|surgery|cent(?:er|re)|group|"
    r"associates|partners|physicians|primary care|family medicine|internal medicine|pediatrics|"
    r"paediatrics|university|trust|foundation|institute|infirmary|llp|llc|pllc|p\.?c\.?|inc\.?|"
    r"health ?system|medicine)\b",
    re.IGNORECASE,
)

# Conditions that suggest a specialty when the letter names none ("Dear colleague, ... a first
# seizure"). Matched only inside reason candidates, at low confidence: an inference to confirm.
CONDITIONS: dict[str, str] = {
    "Cardiology": r"chest (?:pain|pressure|discomfort|tightness)|palpitations?|murmur|atrial fibrillation|heart failure|"
                  r"syncope|angina|hypertension|arrhythmia|bradycardia|tachycardia|troponin",
    "Orthopedics": r"osteoarthritis|rotator cuff|(?:knee|hip|shoulder|back|ankle|wrist) pain|fracture|ACL|meniscal|"
                   r"sciatica|cauda equina|septic arthritis",
    "Neurology": r"seizures?|epilep\w*|migraines?|headaches?|tremor|parkinson\w*|multiple sclerosis|neuropathy|"
                 r"numbness|tingling|memory|dementia|weakness|TIA|stroke",
    "Gastroenterology": r"reflux|GERD|dysphagia|iron deficiency|bowel habit|colonoscopy|liver enzymes|jaundice|"
                        r"rectal bleeding|melaena|melena|tarry stools|crohn\w*|colitis|cirrhosis|diarrh\w*",
    "Oncology": r"cancer|malignan\w*|tumou?r|lymphadenopathy|monoclonal|metasta\w*|CEA|carcinoma|neoplasm",
    "Pulmonology": r"cough|COPD|asthma|sleep apnea|sleep apnoea|pulmonary function|ground-glass|lung nodule|"
                   r"ha?emoptysis|dyspn(?:o)?ea|oxygen saturation|shortness of breath",
    "Endocrinology": r"diabet\w*|HbA1c|thyroid|hypothyroid\w*|hyperthyroid\w*|osteoporosis|parathyroid\w*|"
                     r"hyponatra?emia|adrenal|pituitary",
    "Dermatology": r"psoriasis|eczema|rash|skin|pigmented lesion|mole|naevus|nevus|abscess(?:es)?|acne|"
                   r"lesion on the (?:nose|face|back|scalp)",
    "Rheumatology": r"inflammatory joint|morning stiffness|ANA\b|lupus|gout|polymyalgia|spondylitis|"
                    r"rheumatoid|arteritis|vasculitis",
    "Urology": r"PSA|ha?ematuria|kidney stones?|renal colic|urinary tract symptoms|renal cyst|prostat\w*|"
               r"incontinence|urinary retention",
    "Nephrology": r"chronic kidney disease|CKD|eGFR|proteinuria|albuminuria|creatinine|nephrotic|dialysis",
    "Psychiatry": r"depress\w*|anxiety|bipolar|psychosis|schizophren\w*|suicid\w*|PTSD|ADHD|low mood|panic",
}
