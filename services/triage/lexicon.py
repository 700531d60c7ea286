"""The clinical lexicon: red flags, urgency indicators and routine markers, by category.

Patterns run over the canonical token stream of :mod:`services.triage.text` (tokens joined by one
space), so they are written in canonical words: American spelling, abbreviations expanded.
``{gN}`` in a pattern stands for up to N intervening words (never across punctuation).

Levels:

* ``E`` red flag, at least emergent: a clinician must look at it now (goes to the human queue).
* ``U`` red flag, at least urgent: time-critical or high-harm if missed (human queue too).
* ``u`` urgency indicator: evidence for urgent (e.g. suspected cancer); a model suggestion of
  routine against an affirmed indicator is a disagreement and goes to the human queue.
* ``r`` routine marker: stable, chronic, elective (evidence for routine, never a reason to skip a
  red flag).
* ``x`` context: feeds the model only.

A red flag counts only when it is asserted about the patient now: not negated ("denies chest
pain"), not a relative's history ("father had MI"), not past history ("MI 2015"), not hypothetical
("return if chest pain").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_GAP = r"(?:[a-z0-9][^ ]* ){0,%d}"


@dataclass(frozen=True)
class Concept:
    id: str
    category: str
    level: str  # E, U, u, r, x
    label: str  # shown to the coordinator as a reason; a fixed phrase, never the referral's text
    patterns: tuple[str, ...]


def _c(cid: str, category: str, level: str, label: str, *patterns: str) -> Concept:
    return Concept(cid, category, level, label, patterns)


PAIN = r"(?:pain|pains|tightness|pressure|discomfort|heaviness|ache|aching|squeezing)"
CHEST = r"(?:chest|retrosternal|substernal|central chest|precordial)"
SUDDEN = r"(?:sudden|suddenly|acute|abrupt|abruptly|new onset|sudden onset|acute onset|rapid onset)"
NOW = r"(?:at rest|ongoing|on going|continuing|persisting|persistent|current|currently|now|this morning|today|tonight|since this morning|not settling|unremitting|constant)"

CONCEPTS: tuple[Concept, ...] = (
    # --- cardiac ---------------------------------------------------------------------------------
    _c("acs", "cardiac", "E", "suspected acute coronary syndrome",
       r"acute coronary syndrome", r"stemi", r"nstemi", r"acute myocardial infarction",
       r"(?:troponin|trop) (?:raised|elevated|rising|positive|high|up|of \d+)", r"(?:raised|elevated|rising|positive) troponin",
       r"st (?:elevation|elevations|depression|changes)", r"unstable angina", r"crescendo angina",
       r"heart attack", r"myocardial infarction (?:now|today|yesterday|this|last night)", r"query myocardial infarction",
       r"rule out myocardial infarction", r"rule out acute coronary syndrome"),
    _c("chest_pain_acute", "cardiac", "E", "chest pain at rest or ongoing",
       CHEST + r" " + _GAP % 2 + PAIN + r" " + _GAP % 5 + NOW,
       CHEST + r" " + _GAP % 2 + PAIN + r" " + _GAP % 6 + r"(?:radiating|radiates|radiation|spreading) " + _GAP % 2 + r"(?:arm|jaw|neck|back|shoulder)",
       CHEST + r" " + _GAP % 2 + PAIN + r" " + _GAP % 6 + r"(?:with|and|plus) " + _GAP % 2 + r"(?:sweating|nausea|vomiting|shortness of breath|breathlessness|collapse|syncope)",
       r"(?:crushing|severe|sudden|tearing|ripping|central crushing) " + _GAP % 1 + CHEST + r" " + _GAP % 1 + PAIN,
       PAIN + r" in (?:the |his |her )?chest " + _GAP % 4 + NOW,
       r"(?:sweating|clammy|gray|grey|pale) " + _GAP % 3 + r"(?:with|and) " + _GAP % 2 + CHEST + r" " + _GAP % 1 + PAIN,
       r"rest " + _GAP % 1 + r"(?:angina|chest pain)", r"chest pain at rest"),
    _c("chest_pain", "cardiac", "u", "chest pain",
       CHEST + r" " + _GAP % 2 + PAIN, PAIN + r" in (?:the |his |her )?chest", r"angina", r"dolor toracico"),
    _c("exertional_angina", "cardiac", "u", "exertional chest pain",
       CHEST + r" " + _GAP % 3 + PAIN + r" " + _GAP % 5 + r"(?:on exertion|exertion|walking|climbing|stairs|exercise|hills?)",
       r"(?:on exertion|exertional) " + _GAP % 2 + CHEST + r" " + _GAP % 1 + PAIN, r"new angina", r"new onset angina",
       r"angina " + _GAP % 3 + r"(?:on exertion|walking|stairs|exercise)"),
    _c("syncope_exertion", "cardiac", "E", "syncope on exertion",
       r"(?:syncope|collapse|faint|blackout|passed out|loss of consciousness) " + _GAP % 4 + r"(?:on exertion|exertion|exercise|exercising|running|during sport|playing)",
       r"(?:exertional|exercise induced|exercise related) " + _GAP % 1 + r"(?:syncope|collapse|faint|blackout)"),
    _c("syncope", "cardiac", "u", "unexplained syncope or collapse",
       r"syncope", r"syncopal", r"collapse", r"passed out", r"blackout", r"loss of consciousness",
       r"lost consciousness", r"found on (?:the )?floor", r"transient loss of consciousness"),
    _c("arrhythmia_danger", "cardiac", "E", "dangerous rhythm",
       r"ventricular tachycardia", r"complete heart block", r"third degree heart block", r"(?:vt|vf) (?:on|episode)",
       r"ventricular fibrillation", r"(?:pause|pauses) of \d+ (?:seconds|sec|s)", r"fast af", r"af with rvr",
       r"rapid ventricular (?:rate|response)"),
    _c("cardiac_history", "cardiac", "x", "known coronary disease", r"myocardial infarction", r"stents?", r"cabg",
       r"coronary artery bypass", r"angioplasty", r"ischemic heart disease", r"coronary artery disease"),
    _c("palpitations", "cardiac", "x", "palpitations", r"palpitations?", r"racing heart", r"heart racing", r"skipped beats"),
    _c("heart_failure_new", "cardiac", "u", "new or worsening heart failure",
       r"orthopnea", r"paroxysmal nocturnal dyspnea", r"(?:new|worsening|decompensated|acute) heart failure",
       r"(?:bnp) " + _GAP % 2 + r"(?:raised|elevated|high|\d{3,})", r"(?:raised|elevated|high) bnp",
       r"(?:ankle|leg|pedal) (?:swelling|edema) " + _GAP % 4 + r"(?:breathless|breathlessness|shortness of breath|dyspnea)",
       r"sleeping (?:upright|in a chair|on \d+ pillows)", r"\d+ pillow orthopnea"),
    _c("murmur_syncope", "cardiac", "u", "murmur with symptoms", r"(?:severe|critical) aortic stenosis"),

    # --- neurological ------------------------------------------------------------------------------
    _c("stroke", "neurological", "E", "stroke signs",
       r"(?:facial|face) (?:droop|drooping|weakness|asymmetry)", r"droop " + _GAP % 2 + r"(?:face|mouth|lip)",
       r"(?:mouth|lip|face) " + _GAP % 1 + r"droop", r"slurred speech", r"slurring " + _GAP % 2 + r"(?:speech|words)",
       r"(?:speech|talking) " + _GAP % 1 + r"slurred", r"aphasia", r"(?:unable|can not|cannot|difficulty) to (?:speak|find words)",
       r"word finding difficult", r"hemiparesis", r"(?:one sided|unilateral|left sided|right sided|left|right) (?:sided )?(?:weakness|numbness) "
       + _GAP % 3 + SUDDEN, SUDDEN + r" " + _GAP % 3 + r"(?:weakness|numbness|paralysis|loss of power)",
       r"(?:acute|suspected|query|possible|rule out|new) stroke", r"stroke (?:symptoms|signs|today|this morning|now)",
       r"fast positive", r"positive fast", r"fast (?:test|screen) positive", r"(?:arm|leg|face|hand) (?:suddenly )(?:went |gone |became )?(?:weak|numb|dead|heavy)",
       r"(?:weakness|numbness|paralysis) " + _GAP % 4 + r"(?:came on suddenly|sudden onset|started suddenly|acute onset)",
       r"(?:acute|sudden) (?:confusion|vision loss|loss of vision) " + _GAP % 3 + r"(?:weakness|speech)",
       r"stroke " + _GAP % 2 + r"(?:hours ago|this morning|yesterday|last night)"),
    _c("tia", "neurological", "U", "transient ischemic attack",
       r"tia", r"tias", r"transient ischemic attacks?", r"mini stroke", r"amaurosis fugax",
       r"transient " + _GAP % 3 + r"(?:weakness|numbness|speech|loss of vision|visual loss|aphasia|slurred speech|slurring|facial droop|droop|loss of power)",
       r"(?:weakness|numbness|slurred speech|speech|droop|aphasia) " + _GAP % 6 + r"(?:lasting|lasted|for) (?:\d+|a few|few|several|ten|twenty|thirty) (?:minutes|mins|seconds)",
       r"(?:weakness|numbness|slurred speech|speech|droop|aphasia) " + _GAP % 6 + r"(?:fully |completely |now )?(?:resolved|recovered|back to normal)",
       r"(?:weakness|numbness|speech) " + _GAP % 3 + r"(?:resolved|lasting|lasted) " + _GAP % 2 + r"(?:minutes|hour|hours)"),
    _c("thunderclap", "neurological", "E", "thunderclap or worst-ever headache",
       r"thunderclap", r"worst headache", r"worst (?:ever )?headache of (?:his |her |their |my )?life",
       r"(?:sudden|abrupt|explosive|instantaneous) " + _GAP % 3 + r"(?:severe )?headache",
       r"headache " + _GAP % 3 + r"(?:sudden onset|came on suddenly|peak(?:ed|ing)? (?:in|within) (?:seconds|minutes|a minute|1 minute))",
       r"subarachnoid hemorrhage", r"intracranial hemorrhage", r"brain (?:bleed|hemorrhage)"),
    _c("meningism", "neurological", "E", "meningism or non-blanching rash",
       r"neck stiffness", r"stiff neck", r"meningism", r"meningitis", r"photophobia " + _GAP % 3 + r"(?:fever|neck)",
       r"non blanching rash", r"nonblanching rash", r"purpuric rash", r"petechial rash", r"kernig", r"brudzinski"),
    _c("headache_red", "neurological", "U", "headache with red-flag features",
       r"headache " + _GAP % 5 + r"(?:worse|worst) (?:in the morning|on waking|lying down|on coughing|on straining|on bending)",
       r"(?:morning|early morning|waking) headaches? " + _GAP % 3 + r"(?:vomiting|nausea)",
       r"headache " + _GAP % 4 + r"(?:with|and) " + _GAP % 2 + r"(?:vomiting|papilledema|confusion|weakness|seizure|visual)",
       r"papilledema", r"jaw claudication", r"temporal (?:artery )?tenderness", r"giant cell arteritis",
       r"scalp tenderness", r"new headache " + _GAP % 4 + r"(?:over|aged|age) (?:50|55|60|65|70)",
       r"headache " + _GAP % 4 + r"(?:cancer|immunosuppressed|hiv|anticoagulated|warfarin)"),
    _c("seizure_first", "neurological", "U", "first or new seizure",
       r"(?:first|new|new onset|first ever|unprovoked) (?:seizure|seizures|fit|convulsion)",
       r"seizures? " + _GAP % 3 + r"(?:for the first time|first time|new onset)", r"(?:had|having|witnessed) (?:a |an )?(?:seizure|fit|convulsion)",
       r"tonic clonic", r"generalized seizure"),
    _c("status_epilepticus", "neurological", "E", "prolonged or repeated seizures",
       r"status epilepticus", r"(?:seizure|seizures|fitting) " + _GAP % 3 + r"(?:not stopping|ongoing|prolonged|cluster|more than 5 minutes|repeated)",
       r"(?:cluster|clusters) of seizures", r"(?:multiple|several|repeated|recurrent) seizures (?:today|since|in the last)"),
    _c("confusion_acute", "neurological", "E", "acute confusion or reduced consciousness",
       r"(?:acute|sudden|new|new onset|acutely) (?:confusion|delirium|disorientation|altered mental status)",
       r"altered mental status", r"(?:reduced|decreased|low|fluctuating) (?:gcs|consciousness|level of consciousness)",
       r"gcs (?:of |: )?(?:[3-9]|1[0-3])", r"(?:obtunded|unresponsive|unrousable|not rousable)",
       r"confusion " + _GAP % 3 + r"(?:since|overnight|yesterday|today|this morning|hours|acute)"),
    _c("cauda_equina", "spine", "E", "cauda equina signs",
       r"cauda equina", r"saddle (?:anesthesia|numbness|paresthesia|sensory loss)", r"(?:numb|numbness) " + _GAP % 2 + r"(?:saddle|perineum|perineal|buttocks|groin)",
       r"(?:back pain|sciatica|back|lumbar) " + _GAP % 8 + r"(?:urinary retention|urinary incontinence|bladder dysfunction|fecal incontinence|bowel incontinence|saddle)",
       r"(?:urinary retention|urinary incontinence|bladder dysfunction|fecal incontinence|bowel incontinence) " + _GAP % 8 + r"(?:back pain|sciatica)",
       r"(?:loss of|reduced) (?:bladder|bowel|anal) (?:control|sensation|tone)", r"(?:bilateral|both legs?) sciatica",
       r"reduced anal tone"),
    _c("cord_compression", "spine", "E", "spinal cord compression signs",
       r"(?:cord|spinal) compression", r"(?:back|spinal) pain " + _GAP % 6 + r"(?:cancer|metastases|malignancy|myeloma) " + _GAP % 6 + r"(?:weakness|numbness|unsteady|walking)",
       r"(?:progressive|new) (?:bilateral )?(?:leg|legs|lower limb) weakness " + _GAP % 3 + r"(?:back pain|cancer|metastases)"),
    _c("neuro_deficit_progressive", "neurological", "U", "progressive neurological deficit",
       r"(?:progressive|worsening|increasing|new) (?:weakness|numbness|foot drop|clumsiness|unsteadiness|ataxia|double vision|diplopia)",
       r"foot drop", r"(?:weakness|numbness) " + _GAP % 3 + r"(?:worsening|progressing|progressive|spreading)",
       r"(?:diplopia|double vision) " + _GAP % 3 + r"(?:new|sudden|headache)", r"ascending (?:weakness|numbness)", r"guillain barre"),
    _c("head_injury_anticoag", "neurological", "E", "head injury on anticoagulation",
       r"head (?:injury|trauma|strike) " + _GAP % 6 + r"(?:warfarin|anticoagul|apixaban|rivaroxaban|edoxaban|dabigatran|doac|clopidogrel)",
       r"(?:warfarin|anticoagulated|apixaban|rivaroxaban|doac) " + _GAP % 6 + r"(?:head injury|hit (?:his |her )?head|fall)"),

    # --- respiratory --------------------------------------------------------------------------------
    _c("resp_distress", "respiratory", "E", "breathless at rest or respiratory distress",
       r"(?:shortness of breath|breathlessness|dyspnea|breathless) " + _GAP % 2 + r"(?:at rest|on minimal exertion|talking|speaking|lying flat)",
       r"(?:unable|can not|cannot) (?:to )?(?:complete|finish|speak in) (?:full )?sentences", r"respiratory distress",
       r"struggling to breathe", r"(?:can not|cannot|could not|unable to) breathe", r"stridor", r"cyanosis",
       r"(?:blue|grey|gray) lips", r"increased work of breathing", r"accessory muscles?", r"tripod(?:ing)?",
       r"shortness of breath at rest", r"(?:severe|acute) (?:shortness of breath|breathlessness|dyspnea|asthma attack|exacerbation)",
       r"silent chest", r"air hunger"),
    _c("pulmonary_embolism", "respiratory", "E", "suspected pulmonary embolism",
       r"(?:query|suspected|possible|likely|rule out|exclude|probable) pulmonary embolism", r"pulmonary embolism " + _GAP % 2 + r"(?:suspected|likely|query|possible)",
       r"pleuritic " + _GAP % 2 + r"(?:chest )?pain " + _GAP % 6 + r"(?:shortness of breath|breathless|tachycardia|hemoptysis|calf)",
       r"(?:d-dimer) " + _GAP % 2 + r"(?:raised|positive|elevated|high)", r"(?:raised|positive|elevated) d-dimer", r"pneumothorax"),
    _c("hemoptysis", "respiratory", "U", "hemoptysis",
       r"hemoptysis", r"coughing (?:up )?(?:blood|bloody)", r"blood " + _GAP % 2 + r"(?:sputum|phlegm)", r"(?:blood stained|bloodstained|bloody) (?:sputum|phlegm)"),
    _c("breathless", "respiratory", "x", "breathlessness",
       r"shortness of breath", r"breathlessness", r"dyspnea", r"difficulty breathing", r"short of breath", r"wheeze"),
    _c("low_sats", "respiratory", "E", "low oxygen saturation",
       r"(?:saturation|saturations|oxygen saturation|sat|o2 sat) (?:of |is |was |at |= |: )?(?:[4-8]\d|9[01])(?:%| |$)",
       r"(?:[4-8]\d|9[01])% (?:on )?(?:room air|ra|air)", r"hypoxia", r"desaturat(?:ing|ion|es)", r"(?:new )?oxygen requirement"),

    # --- infection / sepsis --------------------------------------------------------------------------
    _c("sepsis", "sepsis", "E", "suspected sepsis",
       r"sepsis", r"rigors", r"(?:fever|temperature) " + _GAP % 5 + r"(?:hypotension|low blood pressure|confusion|rigors|mottled)",
       r"neutropenic (?:fever|sepsis)", r"(?:fever|temperature) " + _GAP % 6 + r"(?:chemotherapy|chemo|neutropenic|immunosuppressed|post transplant)",
       r"(?:chemotherapy|chemo|neutropenic) " + _GAP % 6 + r"(?:fever|temperature|febrile|unwell|rigors)", r"mottled", r"lactate (?:of )?(?:[4-9]|1\d)",
       r"(?:raised|high|elevated) lactate", r"septic shock", r"necrotizing fasciitis",
       r"(?:red|hot|swollen) joint " + _GAP % 4 + r"(?:fever|unable to weight bear|can not weight bear)", r"septic arthritis"),
    _c("fever", "sepsis", "x", "fever", r"fever", r"temperature (?:of )?(?:3[89]|4[0-2])", r"febrile"),
    _c("immunosuppressed", "sepsis", "x", "immunosuppressed", r"immunosuppressed", r"immunocompromised",
       r"on (?:chemotherapy|chemo|methotrexate|biologics|high dose steroids)", r"neutropenic", r"post transplant"),

    # --- bleeding --------------------------------------------------------------------------------------
    _c("gi_bleed_major", "bleeding", "E", "major or upper GI bleeding",
       r"hematemesis", r"vomiting (?:up )?(?:blood|coffee grounds?)", r"coffee ground", r"melena", r"black (?:tarry )?stools?",
       r"tarry stools?", r"(?:massive|large|heavy|profuse|significant) " + _GAP % 2 + r"(?:bleeding|bleed|blood loss|hemorrhage)",
       r"(?:upper |lower )?gi (?:bleed|bleeding|hemorrhage)", r"(?:bleeding|blood) " + _GAP % 4 + r"(?:dizzy|dizziness|lightheaded|collapse|faint|hypotension|tachycardia)",
       r"bleeding (?:heavily|profusely)", r"exsanguinat"),
    _c("rectal_bleeding", "bleeding", "u", "rectal bleeding",
       r"(?:rectal|pr) bleeding", r"bleeding (?:per rectum|from (?:the )?(?:back passage|rectum|bottom))", r"bright red blood per rectum",
       r"blood (?:in|with|on) (?:the )?(?:stool|stools|motions|toilet paper)", r"hematochezia", r"bloody (?:stool|stools|diarrhea)"),
    _c("anticoag_bleed", "bleeding", "U", "bleeding on anticoagulation",
       r"(?:warfarin|anticoagul[a-z]*|apixaban|rivaroxaban|doac) " + _GAP % 5 + r"(?:bleeding|bleed)", r"inr (?:of )?(?:[8-9]|\d\d)"),

    # --- oncology (suspected cancer) ------------------------------------------------------------------
    _c("suspected_cancer", "oncology", "u", "suspected cancer",
       r"(?:query|suspected|suspicious|possible|concern(?:ing)? for|concerned about|worried about|rule out|likely|probable|exclude) " + _GAP % 2 + r"(?:cancer|malignancy|tumor|lymphoma|neoplasm|carcinoma|melanoma|leukemia|myeloma|metastases)",
       r"(?:cancer|malignancy) (?:pathway|referral|suspected|query)", r"two week wait", r"fast track", r"suspicious (?:for|of)",
       r"suspicious (?:lesion|mass|lump|mole|node|nodes|appearance|features)", r"(?:mass|lesion|nodule) " + _GAP % 3 + r"(?:suspicious|concerning|irregular|enlarging|spiculated)",
       r"metastases", r"(?:new|newly) (?:diagnosed )?(?:cancer|malignancy|tumor|lymphoma)", r"(?:cancer|malignancy) (?:on|seen on) (?:ct|mri|scan|imaging)"),
    _c("weight_loss", "oncology", "u", "unexplained weight loss",
       r"(?:unexplained|unintentional|unintended|significant|rapid|marked) weight loss", r"weight loss " + _GAP % 3 + r"(?:\d+ ?kg|\d+ (?:pounds|lbs|stone)|unexplained|unintentional)",
       r"lost \d+ ?(?:kg|kilos|pounds|lbs|stone)", r"(?:lost|losing) (?:a lot of |lots of )?weight", r"cachexia", r"cachectic"),
    _c("weight_loss_any", "oncology", "x", "weight loss", r"weight loss"),
    _c("lump", "oncology", "u", "new lump or mass",
       r"(?:new|hard|fixed|growing|enlarging|painless|firm|irregular|rapidly growing) " + _GAP % 1 + r"(?:lump|mass|swelling|node|lymph node|lymphadenopathy)",
       r"(?:breast|neck|testicular|axillary|abdominal|groin|thyroid) (?:lump|mass)", r"lump in (?:the |her |his )?(?:breast|neck|testicle|armpit|axilla)",
       r"lymphadenopathy", r"palpable mass", r"mass (?:on|seen on) (?:ct|ultrasound|scan|imaging|mammogram)"),
    _c("pmb", "oncology", "u", "postmenopausal bleeding",
       r"post ?menopausal bleeding", r"bleeding " + _GAP % 4 + r"(?:after|post) (?:the )?menopause", r"(?:after|post) menopause " + _GAP % 3 + r"bleeding"),
    _c("dysphagia", "oncology", "u", "dysphagia",
       r"dysphagia", r"(?:difficulty|trouble|problems) swallowing", r"food (?:sticking|getting stuck)", r"odynophagia"),
    _c("hematuria", "oncology", "u", "visible hematuria",
       r"(?:visible|frank|painless|macroscopic|gross) hematuria", r"blood in (?:the |his |her )?urine", r"hematuria"),
    _c("iron_def", "oncology", "u", "iron deficiency anemia",
       r"iron deficiency anemia", r"(?:new|unexplained) anemia", r"(?:low|falling) (?:ferritin|hemoglobin)", r"microcytic anemia"),
    _c("jaundice", "oncology", "U", "jaundice",
       r"jaundice", r"(?:yellow|yellowing) (?:skin|eyes|sclera)", r"icteric", r"(?:painless )?obstructive jaundice"),
    _c("bowel_change", "oncology", "u", "change in bowel habit",
       r"change in bowel habit", r"(?:altered|changed) bowel habit", r"bowel habit (?:change|changed)"),
    _c("night_sweats", "oncology", "u", "night sweats / B symptoms", r"night sweats", r"drenching sweats", r"b symptoms"),
    _c("hoarseness", "oncology", "u", "persistent hoarseness", r"(?:persistent|unexplained) hoarse(?:ness)?", r"hoarse(?:ness)? " + _GAP % 3 + r"(?:weeks|months)"),
    _c("mole_change", "oncology", "u", "changing pigmented lesion",
       r"(?:changing|enlarging|bleeding|irregular|new) (?:mole|pigmented lesion|skin lesion)", r"mole " + _GAP % 3 + r"(?:changing|changed|grown|growing|bleeding|itching|irregular)"),
    _c("psa_high", "oncology", "u", "raised PSA",
       r"psa (?:of |is |was |= |: )?(?:[1-9]\d|\d{3})(?:\.\d+)?", r"(?:raised|elevated|rising|high) psa", r"psa (?:raised|elevated|rising)"),
    _c("breast_signs", "oncology", "u", "breast red flags",
       r"nipple (?:discharge|inversion|retraction|bleeding)", r"(?:skin )?(?:tethering|dimpling|peau d'orange)", r"bloody nipple"),
    _c("bone_pain_night", "oncology", "u", "night pain or bone pain",
       r"(?:pain|ache) " + _GAP % 2 + r"(?:at night|wakes (?:him|her) (?:up )?at night|night pain)", r"night pain", r"bone pain"),

    # --- mental health ----------------------------------------------------------------------------------
    _c("suicide_plan", "mental_health", "E", "suicidal intent, plan or attempt",
       r"suicid[a-z]* " + _GAP % 4 + r"(?:plan|plans|intent|intention|note|attempt|attempted)", r"(?:plan|plans|intent) " + _GAP % 3 + r"(?:to )?(?:end (?:his|her|their|my) life|kill (?:himself|herself|themselves)|suicide)",
       r"(?:attempted|attempt at) suicide", r"suicide attempt", r"overdose", r"(?:took|taken|has taken) " + _GAP % 2 + r"(?:tablets|pills|paracetamol)",
       r"homicidal ideation", r"(?:thoughts|threats) of (?:harming|killing) others", r"command hallucinations",
       r"(?:access to|stockpiling) (?:means|tablets|pills|firearm|weapons)"),
    _c("suicidal_ideation", "mental_health", "U", "suicidal thoughts or self-harm",
       r"suicidal ideation", r"suicidal (?:thoughts|feelings|thinking)", r"suicidal", r"(?:thoughts|thinking) (?:of|about) (?:ending (?:his|her|their|my) life|suicide|death|dying|not being here)",
       r"(?:want|wants|wanted|wishes) to die", r"self harm", r"self harming", r"cutting (?:herself|himself|themselves|arms|wrists)",
       r"no reason to live", r"better off dead", r"acute psychosis", r"(?:new|acute) (?:psychosis|psychotic)", r"mania", r"manic"),
    _c("safeguarding", "safeguarding", "U", "safeguarding concern",
       r"safeguarding (?:concern|concerns|issue)", r"non accidental injury", r"(?:suspected|query|possible) (?:abuse|neglect)",
       r"domestic (?:violence|abuse)", r"(?:unexplained|unusual) (?:bruising|bruises|fractures?) " + _GAP % 3 + r"(?:child|infant|baby|toddler)"),

    # --- obstetric / gynecological -----------------------------------------------------------------------
    _c("ectopic", "obstetric", "E", "possible ectopic pregnancy",
       r"ectopic pregnancy", r"(?:query|suspected|possible|rule out|exclude|likely) ectopic", r"(?:pregnant|pregnancy test|positive pregnancy) " + _GAP % 8 + r"(?:abdominal pain|pelvic pain|bleeding|shoulder tip|collapse|dizzy)",
       r"(?:abdominal|pelvic) pain " + _GAP % 6 + r"(?:positive pregnancy|pregnant|pregnancy test positive|missed period)",
       r"shoulder tip pain"),
    _c("preeclampsia", "obstetric", "E", "possible pre-eclampsia or obstetric emergency",
       r"pre ?eclampsia", r"eclampsia", r"hellp", r"(?:pregnant|weeks gestation|gestation|antenatal) " + _GAP % 8 + r"(?:headache|visual disturbance|high blood pressure|hypertension|proteinuria|swelling)",
       r"reduced fetal movements?", r"(?:no|absent) fetal movements?", r"placental abruption", r"ruptured membranes", r"cord prolapse",
       r"antepartum hemorrhage", r"postpartum hemorrhage"),
    _c("pregnant", "obstetric", "x", "pregnant", r"pregnant", r"weeks gestation", r"antenatal", r"gravida", r"postpartum"),
    _c("heavy_bleeding_pv", "obstetric", "U", "heavy vaginal bleeding",
       r"(?:heavy|profuse|flooding) (?:vaginal |pv )?bleeding " + _GAP % 4 + r"(?:clots|dizzy|soaking|syncope|hemoglobin|pads per hour)",
       r"vaginal bleeding " + _GAP % 3 + r"(?:pregnant|pregnancy|weeks)", r"(?:soaking|soaked) (?:through )?(?:a |\d+ )?pads?"),

    # --- vascular / surgical / other emergencies ---------------------------------------------------------
    _c("limb_ischemia", "vascular", "E", "acute limb ischemia",
       r"(?:cold|white|pale|mottled) " + _GAP % 2 + r"(?:pulseless )?(?:leg|foot|arm|hand|limb|toes)", r"pulseless", r"acute limb ischemia",
       r"(?:absent|no|lost) (?:foot |pedal |distal )?pulses? " + _GAP % 4 + r"(?:pain|cold|pale)", r"critical limb ischemia",
       ) ,
    _c("critical_limb", "vascular", "U", "rest pain, gangrene or foot ulcer", r"rest pain", r"gangrene", r"gangrenous",
       r"(?:foot|toe|heel) ulcer " + _GAP % 4 + r"(?:infected|spreading|black|necrotic|cellulitis|osteomyelitis)", r"critical limb"),
    _c("aaa", "vascular", "E", "possible leaking aortic aneurysm or dissection",
       r"(?:leaking|ruptured|ruptur[a-z]*|symptomatic) (?:abdominal )?(?:aortic )?aneurysm", r"pulsatile (?:abdominal )?mass",
       r"aortic dissection", r"tearing " + _GAP % 3 + r"(?:pain|back)", r"abdominal aortic aneurysm " + _GAP % 6 + r"(?:pain|back pain|tender|collapse)"),
    _c("dvt", "vascular", "U", "suspected deep vein thrombosis",
       r"(?:query|suspected|possible|likely|rule out|exclude) (?:dvt|deep vein thrombosis|venous thromboembolism|clot)",
       r"dvt", r"deep vein thrombosis", r"(?:unilateral|one sided|left|right) (?:calf|leg) " + _GAP % 2 + r"(?:swelling|swollen|pain|tenderness) " + _GAP % 6 + r"(?:hot|red|tender|warm|days)",
       r"(?:calf|leg) swelling " + _GAP % 4 + r"(?:after|post) (?:flight|surgery|travel|immobil)"),
    _c("acute_abdomen", "surgical", "E", "acute abdomen",
       r"rigid abdomen", r"abdomen (?:is )?rigid", r"peritonitic", r"board like", r"guarding", r"rebound tenderness", r"peritonitis", r"(?:bowel|intestinal) obstruction", r"(?:not|no) (?:passed|passing) (?:flatus|wind|stool)",
       r"(?:severe|acute|sudden) " + _GAP % 1 + r"abdominal pain " + _GAP % 4 + r"(?:vomiting|fever|rigid|collapse|distension|guarding)",
       r"(?:query|suspected|possible|rule out|likely) (?:appendicitis|volvulus|mesenteric ischemia|obstruction|cholangitis|pancreatitis)",
       r"(?:appendicitis|volvulus|mesenteric ischemia|cholangitis|acute pancreatitis|perforated (?:bowel|ulcer|viscus|appendix)|bowel perforation)", r"incarcerated hernia", r"strangulated hernia",
       r"(?:irreducible|tender) (?:painful )?hernia"),
    _c("testicular", "urology", "E", "possible testicular torsion",
       r"torsion", r"(?:sudden|acute|severe) " + _GAP % 2 + r"(?:testicular|scrotal|testis|testicle) (?:pain|swelling)",
       r"(?:testicular|scrotal) pain " + _GAP % 4 + r"(?:sudden|hours|vomiting|this morning|acute)"),
    _c("urinary_retention", "urology", "U", "acute urinary retention or obstructed infected kidney",
       r"(?:acute )?urinary retention", r"(?:unable to|can not|cannot) pass urine", r"anuria", r"anuric", r"no urine output",
       r"(?:obstructed|obstructing) (?:infected )?(?:kidney|stone)", r"pyonephrosis", r"(?:stone|calculus) " + _GAP % 4 + r"(?:fever|infection|sepsis)"),
    _c("priapism", "urology", "E", "priapism", r"priapism"),
    _c("anaphylaxis", "allergy", "E", "anaphylaxis or airway swelling",
       r"anaphylaxis", r"anaphylactic", r"(?:tongue|lip|lips|throat|facial|face) swelling", r"(?:swelling|swollen) (?:of )?(?:the )?(?:tongue|lips|throat)",
       r"throat (?:closing|tightness)", r"angioedema"),
    _c("eye_emergency", "eye", "E", "sudden vision loss or eye emergency",
       r"(?:sudden|acute|abrupt) " + _GAP % 2 + r"(?:loss of vision|vision loss|visual loss|blindness|painless loss of vision)",
       r"(?:curtain|shadow|veil) " + _GAP % 4 + r"(?:vision|visual field|eye)", r"(?:flashes|flashing lights) " + _GAP % 3 + r"floaters",
       r"(?:new )?floaters " + _GAP % 3 + r"(?:flashes|flashing)", r"retinal detachment", r"acute (?:angle )?(?:closure )?glaucoma",
       r"(?:chemical|acid|alkali) " + _GAP % 2 + r"(?:eye|injury|burn)", r"penetrating eye", r"(?:red|painful) eye " + _GAP % 4 + r"(?:vomiting|halos|reduced vision|blurred vision|photophobia)",
       r"central retinal (?:artery|vein) occlusion", r"orbital cellulitis"),
    _c("vision_change", "eye", "x", "visual disturbance", r"(?:blurred|blurring|reduced|loss of|change in|double) vision", r"visual (?:disturbance|loss|field)", r"diplopia"),
    _c("peds_danger", "pediatric", "E", "unwell child warning signs",
       r"(?:floppy|lethargic|listless|unresponsive) (?:baby|infant|child|toddler|newborn)", r"(?:baby|infant|child|toddler|newborn) " + _GAP % 3 + r"(?:floppy|lethargic|listless|unresponsive|not feeding|poor feeding|grunting)",
       r"(?:infant|baby|newborn) " + _GAP % 6 + r"(?:fever|temperature)", r"(?:\d|1[0-2]) (?:weeks?|days?) old " + _GAP % 6 + r"(?:fever|temperature|vomiting|not feeding)",
       r"bile stained vomiting", r"bilious vomiting", r"(?:inconsolable|high pitched) cry", r"bulging fontanelle", r"grunting"),
    _c("fracture", "msk", "u", "fracture or dislocation",
       r"(?:open|compound|displaced|unstable) fracture", r"dislocat(?:ion|ed)", r"(?:query|suspected|possible) (?:fracture|scaphoid)",
       r"(?:unable to|can not|cannot) weight bear", r"hip fracture", r"fractured"),
    _c("compartment", "msk", "E", "possible compartment syndrome", r"compartment syndrome", r"pain out of proportion"),
    _c("hyperkalemia", "metabolic", "E", "critical electrolytes or metabolic emergency",
       r"potassium (?:of |is |was |= |: )?(?:6\.[5-9]|[7-9](?:\.\d)?)", r"sodium (?:of |is |was |= |: )?(?:1[01]\d|12[0-4])",
       r"sodium (?:of |is |was |= |: )?(?:16\d|17\d)", r"diabetic ketoacidosis", r"ketoacidosis", r"hyperosmolar state",
       r"(?:glucose|blood glucose|blood sugar) (?:of |is |was |= |: )?(?:[3-9]\d(?:\.\d)?|[1-2](?:\.\d)?) mmol",
       r"(?:severe|recurrent) hypoglycemia", r"calcium (?:of |is |was |= |: )?(?:3\.[5-9]|[4-9](?:\.\d)?)", r"acute kidney injury (?:stage )?3",
       r"addisonian crisis", r"adrenal crisis", r"thyroid storm", r"myxedema coma"),
    _c("labs_urgent", "metabolic", "U", "significantly abnormal blood results",
       r"potassium (?:of |is |was |= |: )?(?:6\.[0-4]|2\.[0-4]|1\.\d)", r"sodium (?:of |is |was |= |: )?(?:12[5-9])", r"creatinine " + _GAP % 2 + r"(?:[5-9]\d\d|\d{4})",
       r"hemoglobin (?:of |is |was |= |: )?(?:[3-7](?:\.\d+)?|[3-7]\d(?:\.\d+)?)", r"hemoglobin (?:dropped|fallen|falling|drop)",
       r"calcium (?:of |is |was |= |: )?(?:3\.[0-4])", r"hypercalcemia", r"platelets (?:of |is |was |= |: )?(?:[1-3]?\d)",
       r"neutrophils (?:of |is |was |= |: )?0\.[0-4]", r"(?:new )?pancytopenia", r"blasts? (?:on|seen)", r"acute kidney injury",
       r"egfr " + _GAP % 2 + r"(?:dropped|fallen|falling)", r"(?:alt|ast|bilirubin) " + _GAP % 2 + r"(?:\d{3,4})", r"inr (?:of )?(?:[5-7](?:\.\d)?)"),
    _c("hypertensive_crisis", "cardiac", "U", "severe hypertension",
       r"(?:malignant|accelerated) hypertension", r"hypertensive (?:emergency|urgency|crisis)"),

    # --- referrer's own words ---------------------------------------------------------------------------
    _c("cue_emergent", "referrer", "x", "referrer asks for same-day or emergency care",
       r"(?:sent|send|sending|go|went|refer|referred|directed|advised to attend|transferred|attend) (?:directly )?(?:to )?(?:the )?(?:emergency department|hospital|er)",
       r"emergency", r"same day", r"immediately", r"(?:call|called|calling) (?:911|999|112|an ambulance|ambulance)", r"ambulance",
       r"blue light", r"life threatening", r"resus", r"today please", r"please see today", r"within (?:the )?(?:hour|24 hours)"),
    _c("cue_urgent", "referrer", "x", "referrer asks for urgent review",
       r"urgent", r"urgently", r"as soon as possible", r"expedite", r"expedited", r"priority", r"soon", r"promptly", r"quickly",
       r"(?:within|in) (?:the next )?(?:\d+|one|two|a) (?:days?|weeks?|week)", r"this week", r"next few days", r"two week wait", r"fast track",
       r"rapid access", r"worried", r"concerned", r"concerning", r"alarming", r"(?<!no )(?<!nil )(?<!without )red flags?"),
    _c("cue_routine", "referrer", "r", "referrer marks it routine or non-urgent",
       r"routine(?:ly)?", r"not urgent", r"no urgency", r"non urgent", r"at your convenience", r"when (?:convenient|possible|available)",
       r"no rush", r"no hurry", r"elective", r"next available", r"(?:within|in the next) (?:few|\d+|three|six|3|6) months",
       r"whenever", r"soft referral", r"for (?:your )?(?:opinion|advice|review|consideration|assessment)", r"happy to wait", r"waiting list"),
    _c("no_red_flags", "referrer", "r", "referrer reports no red flags",
       r"(?:no|nil|without|absence of) red flags?", r"red flags? (?:negative|absent|excluded|screened|none)", r"no (?:concerning|worrying|alarm|sinister) (?:features|symptoms|signs)",
       r"no (?:b symptoms|weight loss|night sweats)"),

    # --- routine course -----------------------------------------------------------------------------------
    _c("stable", "course", "r", "stable or chronic course",
       r"stable", r"unchanged", r"chronic", r"longstanding", r"(?:well|adequately|reasonably) controlled", r"(?:many|several|\d+) years(?! old)",
       r"for years", r"(?:years|months) (?:of|with)", r"intermittent", r"mild", r"gradual(?:ly)?", r"slowly", r"ongoing for (?:months|years)",
       r"no change", r"no new (?:symptoms|concerns|features)", r"otherwise well", r"well in (?:himself|herself|themselves)", r"managing", r"coping"),
    _c("elective_request", "course", "r", "elective or administrative request",
       r"follow up", r"annual", r"yearly", r"review", r"medication review", r"reassessment", r"surveillance", r"screening", r"monitoring",
       r"second opinion", r"advice (?:on|regarding|about)", r"management advice", r"optimization", r"optimisation", r"assessment for",
       r"consideration of", r"discuss(?:ion)? (?:of )?(?:options|surgery|management)", r"physiotherapy", r"hearing aid", r"glasses", r"cosmetic",
       r"check up", r"repeat prescription", r"discharge summary", r"transfer of care", r"moved to the area", r"new to (?:the )?area", r"dietitian",
       r"counseling", r"counselling", r"lifestyle", r"weight management", r"vasectomy", r"infertility", r"fertility", r"sleep study", r"snoring",
       r"bunion", r"varicose veins", r"skin tag", r"cataract", r"carpal tunnel", r"hernia repair", r"knee replacement", r"hip replacement",
       r"osteoarthritis", r"acne", r"eczema", r"psoriasis", r"hay fever", r"tinnitus", r"menopause symptoms", r"hrt"),
    _c("worsening", "course", "x", "worsening or progressive course",
       r"worsening", r"progressive", r"rapidly", r"increasing", r"deteriorating", r"getting worse", r"escalating", r"severe", r"sudden", r"new onset"),
)

CONCEPTS_BY_ID: dict[str, Concept] = {c.id: c for c in CONCEPTS}
RED_FLAG_LEVELS = frozenset({"E", "U"})
# Concepts whose patterns carry their own negation ("no red flags", "not urgent"): never negated again.
SELF_NEGATING = frozenset({"no_red_flags", "cue_routine"})


@lru_cache(maxsize=1)
def compiled() -> tuple[tuple[Concept, re.Pattern[str]], ...]:
    out = []
    for c in CONCEPTS:
        body = "|".join(f"(?:{p})" for p in c.patterns)
        out.append((c, re.compile(rf"(?<![^ ])(?:{body})(?![^ ])")))
    return tuple(out)


def lexicon_words() -> set[str]:
    """Plain words of the lexicon's patterns (targets for typo correction)."""
    words: set[str] = set()
    for c in CONCEPTS:
        for p in c.patterns:
            for w in re.findall(r"[a-z]{4,}", re.sub(r"\\[a-z]|\[[^\]]*\]|\{[^}]*\}|\(\?[:<!=]+", " ", p)):
                words.add(w)
    return words
