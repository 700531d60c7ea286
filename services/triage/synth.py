"""Synthetic training referrals, generated from templates (no real people, no real notes).

Each scenario is a clinical situation with a label decided by clinical judgement (routine, urgent,
emergent) and several ways a referrer might put it. ``generate`` renders scenarios through
different frames (letter, terse note, SBAR, e-referral form, phone message), adds distractors that
a triage model must not be fooled by (negated red flags, a relative's history, past history,
safety-netting advice, the referrer's own urgency words, sometimes wrong), abbreviations and typos.

Training holds out whole scenarios, not texts (grouped cross-validation in :mod:`.train`), so the
calibration and the recommended thresholds reflect situations the model has not seen phrased any way.
The evaluation set (tests/triage/eval_set.jsonl) is written separately and is never generated here.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

R, U, E = "routine", "urgent", "emergent"


@dataclass(frozen=True)
class Scenario:
    label: str
    specialty: str
    complaints: tuple[str, ...]  # presenting complaint, as a noun phrase or clause
    details: tuple[str, ...] = ()  # supporting sentences, some picked


def S(label: str, specialty: str, complaints: list[str], details: list[str] | None = None) -> Scenario:
    return Scenario(label, specialty, tuple(complaints), tuple(details or ()))


SCENARIOS: tuple[Scenario, ...] = (
    # ---------------------------------------------------------------- routine
    S(R, "cardiology", ["hypertension, now well controlled on two agents, for annual review",
                        "longstanding HTN, BP stable around 135/85, medication review requested",
                        "essential hypertension for review of treatment"],
      ["Home readings average 138/84.", "No headaches or visual symptoms.", "ECG unchanged from last year.", "Renal function stable."]),
    S(R, "endocrinology", ["type 2 diabetes with HbA1c 64, for optimisation of therapy",
                           "T2DM, suboptimal control despite metformin and gliclazide, advice on next step",
                           "diabetes review, interested in GLP-1 options"],
      ["Feet checked, sensation intact.", "Weight stable.", "No hypoglycaemic episodes.", "eGFR 72, stable."]),
    S(R, "orthopaedics", ["osteoarthritis of the right knee, pain on walking for 3 years, for consideration of replacement",
                          "bilateral knee OA, worsening slowly over years despite physio",
                          "hip OA limiting walking distance to half a mile, wishes to discuss surgery"],
      ["X-ray shows joint space narrowing.", "Analgesia partially effective.", "Has completed a course of physiotherapy.", "BMI 31."]),
    S(R, "spinal", ["chronic mechanical low back pain for 5 years, no neurological symptoms",
                    "intermittent low back pain radiating to the buttock, unchanged for months",
                    "long standing back ache, requests physio and pain clinic opinion"],
      ["Neurology intact in both legs.", "Bladder and bowel function normal.", "No saddle numbness.", "Works as a driver."]),
    S(R, "gastroenterology", ["IBS type symptoms with bloating and alternating bowel habit for many years",
                              "longstanding reflux, controlled on omeprazole, query step down",
                              "chronic constipation, no change in recent months, for advice",
                              "haemorrhoids with occasional spotting on the paper, known for years, for banding"],
      ["FIT negative.", "Bloods including FBC and coeliac screen normal.", "Weight stable.", "Colonoscopy 2 years ago normal."]),
    S(R, "cardiology", ["atrial fibrillation, rate controlled on bisoprolol, for review of anticoagulation",
                        "stable angina, known for years, symptoms unchanged on current meds, annual follow up",
                        "benign ectopic beats, ECG and Holter normal, patient anxious, for reassurance"],
      ["Echo last year normal LV function.", "Exercise tolerance unchanged.", "HR 72 regular.", "On apixaban, no bleeding."]),
    S(R, "respiratory", ["asthma, well controlled, for review of inhaler technique",
                         "chronic cough for a year in a non smoker, CXR normal, likely post nasal drip",
                         "COPD stable, for pulmonary rehabilitation", "snoring and daytime sleepiness, query sleep apnoea"],
      ["Spirometry consistent with asthma.", "Sats 97% on air.", "No haemoptysis.", "Epworth score 14."]),
    S(R, "dermatology", ["acne not responding to topical treatment", "plaque psoriasis on elbows, stable",
                         "eczema flares, for patch testing", "benign looking seborrhoeic keratosis, patient wants removal",
                         "skin tags in the axilla, cosmetic", "lipoma on the back, present for 10 years and unchanged"],
      ["No change in size or colour.", "Otherwise fit and well.", "Has tried emollients and steroids."]),
    S(R, "ENT", ["gradual hearing loss in both ears over several years, for hearing aid assessment",
                 "tinnitus, bilateral, long standing", "recurrent tonsillitis, 5 episodes this year, for consideration of tonsillectomy",
                 "chronic rhinitis and nasal blockage"],
      ["Otoscopy normal.", "No vertigo.", "No neck lumps."]),
    S(R, "ophthalmology", ["cataracts, gradually blurred vision over a year, for assessment",
                           "dry eyes, using lubricants", "diabetic eye screening showed background retinopathy only"],
      ["Visual acuity 6/12 both eyes.", "No pain or redness."]),
    S(R, "urology", ["LUTS with nocturia twice, PSA 1.2, for advice",
                     "benign prostatic enlargement, stable symptoms on tamsulosin",
                     "vasectomy request", "recurrent simple UTIs in a woman, 3 in a year"],
      ["Urine dip negative for blood.", "Renal function normal.", "No visible haematuria."]),
    S(R, "gynaecology", ["heavy periods for years, Hb normal, for discussion of options",
                         "menopausal symptoms, wishes to discuss HRT", "fertility investigation after 18 months of trying",
                         "stress urinary incontinence, for pelvic floor assessment"],
      ["Smear up to date and normal.", "Pelvic ultrasound normal.", "Not pregnant."]),
    S(R, "neurology", ["migraine without aura, stable pattern for 10 years, for medication advice",
                       "tension type headaches, longstanding, no change in character",
                       "essential tremor, slowly progressive over years, for diagnosis confirmation",
                       "carpal tunnel symptoms at night, nerve conduction requested"],
      ["Neurological examination normal.", "Fundi normal.", "No focal neurology."]),
    S(R, "mental health", ["low mood, stable on sertraline, for talking therapy",
                           "generalised anxiety, would like CBT", "adult ADHD assessment request",
                           "depression, improving, for review of medication"],
      ["No thoughts of self harm.", "Denies suicidal ideation.", "Working and coping at home.", "Good family support."]),
    S(R, "general surgery", ["small reducible inguinal hernia, asymptomatic, for elective repair",
                             "umbilical hernia, reducible, no pain", "gallstones on ultrasound, one episode of biliary colic 6 months ago, well since",
                             "pilonidal sinus, recurrent"],
      ["Hernia easily reducible.", "LFTs normal.", "No jaundice."]),
    S(R, "vascular", ["varicose veins causing aching legs, no skin changes", "varicose veins, cosmetic concerns"],
      ["Foot pulses present.", "No ulceration."]),
    S(R, "rheumatology", ["gout, recurrent attacks, for urate lowering advice", "osteoporosis on DEXA, for treatment advice",
                          "hypermobility and joint aches for years", "fibromyalgia, chronic widespread pain"],
      ["CRP normal.", "No joint swelling today."]),
    S(R, "renal", ["CKD stage 3a, stable eGFR for 3 years, for advice on monitoring", "raised cholesterol, statin intolerant"],
      ["ACR normal.", "Blood pressure at target."]),
    S(R, "paediatrics", ["child with constipation since toddlerhood, growing well", "nocturnal enuresis in a 7 year old",
                         "eczema in an infant, thriving", "flat feet in a 6 year old, asymptomatic"],
      ["Growth along the 50th centile.", "Development normal.", "Feeding well."]),
    S(R, "endocrinology", ["hypothyroidism, TSH slightly raised on current dose, for advice", "weight management referral, BMI 38",
                           "polycystic ovary syndrome, for advice"],
      ["No symptoms of note.", "Otherwise well."]),
    S(R, "general", ["transfer of care, moved to the area, known stable conditions", "second opinion requested by the patient about longstanding knee pain",
                     "annual surveillance as per plan, no new symptoms"],
      ["Recent bloods unremarkable.", "Otherwise well."]),

    S(R, "general", ["tiredness for 6 months, bloods including FBC, ferritin, TSH and HbA1c all normal, for advice",
                     "request for a health check, no symptoms", "insurance medical follow up of a minor abnormal result, repeat normal"],
      ["Sleeping poorly.", "Mood OK.", "Weight stable."]),
    S(R, "orthopaedics", ["trigger finger, clicking for months", "Dupuytren's contracture, slowly progressive", "ganglion on the wrist, painless",
                          "tennis elbow not settling with physio", "plantar fasciitis for a year", "frozen shoulder, stiffening over 6 months"],
      ["Full function otherwise.", "Tried injections.", "No trauma."]),
    S(R, "gastroenterology", ["surveillance colonoscopy due after polyps removed 3 years ago", "coeliac disease, well on a gluten free diet, annual review",
                              "fatty liver on ultrasound, LFTs mildly abnormal, for advice", "Crohn's disease in remission, transfer of care"],
      ["No bleeding.", "Weight steady.", "Calprotectin normal."]),
    S(R, "cardiology", ["asymptomatic murmur heard at a medical, for echo", "family history of heart disease, wants screening, no symptoms",
                        "raised cholesterol with strong family history, for lipid clinic", "palpitations, brief, ECG normal, no dizziness"],
      ["No chest pain.", "Exercises regularly.", "BP 126/80."]),
    S(R, "neurology", ["mild memory problems over 2 years, independent, for memory clinic", "restless legs at night",
                       "stable multiple sclerosis, moved area, for local follow up", "chronic daily headache with analgesic overuse"],
      ["MoCA 25.", "No focal signs.", "Driving safely."]),
    S(R, "women's health", ["contraception advice, wants a coil fitted", "request for reversal of sterilisation",
                            "fibroids known, stable symptoms", "vulval itching, treated lichen sclerosus, for review"],
      ["Not pregnant.", "Smear normal."]),
    S(R, "mental health", ["long standing OCD, stable, wants therapy", "insomnia for a year, for CBT-I", "eating pattern concerns, weight stable, BMI 22"],
      ["No risk to self or others.", "Supportive family."]),
    S(R, "ENT", ["blocked nose and reduced sense of smell for a year, possible nasal polyps", "recurrent ear wax, needs microsuction",
                 "unilateral gradual hearing loss over 18 months, for MRI IAM"],
      ["No facial weakness.", "No bleeding from the nose."]),
    S(R, "paediatrics", ["toe walking in a 5 year old, developing normally", "recurrent abdominal pain for a year, growing well",
                         "tongue tie review", "snoring with large tonsils, no pauses"],
      ["Thriving.", "Eating well."]),
    S(R, "dermatology", ["hidradenitis suppurativa, recurrent flares", "mole check, unchanged moles, anxious", "hair loss, patchy, for advice",
                         "rosacea not controlled"],
      ["No bleeding lesions.", "Otherwise well."]),
    S(R, "urology", ["erectile dysfunction, not responding to sildenafil", "kidney stone 4mm in the kidney found incidentally, asymptomatic",
                     "simple renal cyst on ultrasound", "overactive bladder, for advice"],
      ["Renal function normal.", "Urine clear."]),
    # ---------------------------------------------------------------- urgent
    S(U, "upper GI", ["persistent vomiting and weight loss over 3 weeks", "epigastric mass felt on examination",
                      "new dyspepsia over 55 with weight loss and anaemia"],
      ["Hb 101.", "No haematemesis."]),
    S(U, "neurology", ["new double vision with droopy eyelid, worse later in the day", "numbness ascending both legs over a week, reflexes reduced",
                       "new tremor and falls over weeks with headaches"],
      ["Swallowing normal.", "Breathing comfortable."]),
    S(U, "cardiology", ["new AF with rate 110, mildly breathless, stable", "exertional breathlessness and a loud murmur, query aortic stenosis",
                        "exertional presyncope"],
      ["BP 130/80.", "No chest pain at rest."]),
    S(U, "renal", ["rapidly falling eGFR from 60 to 25 over a month", "nephrotic range proteinuria and leg swelling", "blood and protein in the urine with rising creatinine"],
      ["K 5.1.", "Otherwise well."]),
    S(U, "rheumatology", ["new inflammatory arthritis with swollen hands, early morning stiffness", "polymyalgia symptoms with raised ESR",
                          "suspected vasculitis, rash and rising creatinine"],
      ["CRP 60.", "No visual symptoms."]),
    S(U, "oncology", ["abnormal scan showing a liver lesion, query metastases", "bone pain at night with raised calcium and anaemia, query myeloma",
                      "unexplained weight loss and abdominal pain, CT requested"],
      ["Lost 7 kg.", "ALP raised."]),
    S(U, "ophthalmology", ["new distortion of central vision, query wet macular degeneration", "gradual loss of vision over weeks in one eye",
                           "eye pain with photophobia and blurred vision, query iritis"],
      ["Acuity 6/24.", "No trauma."]),
    S(U, "infectious disease", ["fever and cough on methotrexate, sats normal", "cellulitis spreading despite oral antibiotics",
                                "returning traveller with fever for 3 days, malaria test pending"],
      ["Obs stable.", "Eating and drinking."]),
    S(U, "mental health", ["rapidly worsening depression, stopped eating, no suicidal thoughts", "possible mania, not sleeping, spending heavily",
                           "eating disorder with BMI 15"],
      ["Family very worried.", "Partner supportive."]),
    S(U, "breast", ["a new lump in the left breast noticed 2 weeks ago", "a hard, irregular breast lump",
                    "breast lump with skin dimpling", "unilateral nipple discharge, blood stained"],
      ["Fixed, non tender, 2 cm.", "Axillary node palpable.", "Mother had breast cancer at 60.", "Not on HRT."]),
    S(U, "gynaecology", ["postmenopausal bleeding for a month", "PMB, two episodes, not on HRT",
                         "bleeding after the menopause, endometrial thickness 8mm on scan"],
      ["Last period 6 years ago.", "Smears normal.", "Not on anticoagulants."]),
    S(U, "colorectal", ["rectal bleeding with change in bowel habit to looser stools for 6 weeks",
                        "iron deficiency anaemia, Hb 98, in a man over 60", "change in bowel habit and weight loss",
                        "positive FIT test, 150"],
      ["Weight down 4 kg.", "No family history of bowel cancer.", "Ferritin 6.", "Abdomen soft, no mass."]),
    S(U, "upper GI", ["progressive dysphagia to solids for 4 weeks", "food sticking in the gullet and weight loss",
                      "upper abdominal pain and weight loss over 2 months in a 65 year old"],
      ["Lost half a stone.", "No vomiting.", "Smoker."]),
    S(U, "urology", ["visible haematuria, painless, on two occasions", "PSA 14, up from 6 last year",
                     "a testicular lump, firm, painless", "frank painless blood in the urine"],
      ["Urine culture negative.", "Ex smoker.", "Prostate hard and irregular on DRE."]),
    S(U, "haematology", ["lymphadenopathy in the neck with night sweats for a month", "unexplained weight loss and drenching sweats",
                         "new anaemia with Hb 85 and low platelets", "bruising easily with a high white count"],
      ["Nodes 3 cm, rubbery.", "Lost 6 kg in 2 months.", "Blood film requested."]),
    S(U, "respiratory", ["haemoptysis in a 62 year old smoker", "a mass on the chest x-ray",
                         "persistent cough with weight loss and a CXR showing a hilar shadow"],
      ["Smoker 40 pack years.", "Sats 96% on air.", "No breathlessness at rest."]),
    S(U, "dermatology", ["a changing pigmented mole, irregular border, bleeding recently",
                         "a rapidly growing nodule on the face, query SCC", "suspicious mole, 7 point checklist score 5"],
      ["Asymmetric with colour variation.", "Not itchy.", "No lymph nodes palpable."]),
    S(U, "ENT", ["hoarse voice for 6 weeks in a smoker", "a neck lump, hard, growing over a month",
                 "unilateral tonsil enlargement with ear pain"],
      ["Smokes 20 a day.", "No stridor."]),
    S(U, "cardiology", ["new exertional chest pain over the last 3 weeks, relieved by rest",
                        "chest tightness on walking uphill, new, for rapid access chest pain clinic",
                        "new onset angina, pain on climbing stairs"],
      ["No pain at rest.", "ECG sinus rhythm, no acute changes.", "Father had MI at 55.", "Smoker, high cholesterol."]),
    S(U, "cardiology", ["increasing breathlessness with ankle swelling and orthopnoea, query new heart failure",
                        "shortness of breath on exertion, 3 pillow orthopnoea, BNP 1200",
                        "worsening heart failure, weight up 4 kg in a week"],
      ["Sats 95% on air.", "Bibasal crackles.", "No chest pain.", "Can walk 50 yards."]),
    S(U, "cardiology", ["an episode of syncope while sitting, no warning", "palpitations with presyncope",
                        "two blackouts in the last month, unexplained"],
      ["ECG shows first degree block.", "No injury.", "Not driving."]),
    S(U, "stroke", ["a TIA last week, left arm weakness for 20 minutes, fully resolved",
                    "transient slurred speech 3 days ago lasting 10 minutes", "amaurosis fugax in the right eye 2 days ago"],
      ["Now back to normal.", "ABCD2 score 4.", "On no antiplatelets.", "BP 150/90."]),
    S(U, "neurology", ["a first seizure, witnessed tonic clonic, now back to baseline",
                       "new onset seizure 2 days ago, no previous history", "first fit, recovered fully"],
      ["No head injury.", "Advised not to drive.", "Neurological exam normal now."]),
    S(U, "neurology", ["new headache in a 70 year old with jaw claudication and scalp tenderness, ESR 80",
                       "progressive foot drop over 2 weeks", "worsening weakness in both hands and unsteadiness",
                       "headache worse in the morning with vomiting for 2 weeks"],
      ["Vision currently normal.", "Started on prednisolone.", "CT requested."]),
    S(U, "vascular", ["suspected DVT, swollen tender left calf for 3 days", "unilateral leg swelling after a long haul flight",
                      "a diabetic foot ulcer, infected, spreading redness"],
      ["Wells score 2.", "D-dimer pending.", "Foot pulses weak."]),
    S(U, "hepatology", ["painless jaundice over 2 weeks with dark urine", "yellow eyes and itching, bilirubin 95",
                        "abnormal LFTs, ALT 450, with jaundice"],
      ["No abdominal pain.", "Weight loss 3 kg.", "Alcohol minimal."]),
    S(U, "mental health", ["low mood with passive suicidal thoughts, no plan", "thoughts of ending her life but no intent, feels hopeless",
                           "self harm by cutting, worsening over 2 weeks", "new psychotic symptoms, hearing voices"],
      ["Lives with partner.", "No access to means.", "Has agreed to a safety plan.", "Not using alcohol."]),
    S(U, "metabolic", ["calcium 3.1 on routine bloods, thirsty and tired", "Hb 72 with fatigue, no obvious bleeding",
                       "potassium 6.2 on repeat", "sodium 127, new, on a diuretic", "AKI, creatinine up from 90 to 250"],
      ["Repeat bloods arranged.", "No ECG changes.", "Otherwise well."]),
    S(U, "gastroenterology", ["flare of ulcerative colitis, bloody diarrhoea 8 times a day",
                              "Crohn's with new perianal abscess and fever", "bloody diarrhoea for 10 days, not settling"],
      ["CRP 95.", "Tachycardic 105.", "Not improving on oral steroids."]),
    S(U, "orthopaedics", ["a displaced wrist fracture for fracture clinic", "suspected scaphoid fracture, X-ray equivocal",
                          "unable to weight bear after a fall, X-ray shows a fracture"],
      ["Neurovascularly intact.", "In a splint.", "Pain controlled."]),
    S(U, "obstetrics", ["hyperemesis at 10 weeks, unable to keep fluids down", "bleeding at 8 weeks of pregnancy, small amount, no pain",
                        "reduced growth on scan at 30 weeks"],
      ["Ketones 2+.", "BP normal.", "Scan booked."]),
    S(U, "endocrinology", ["newly diagnosed type 1 diabetes in a young adult, glucose 22, no ketones",
                           "thyrotoxicosis with palpitations and weight loss", "adrenal insufficiency suspected, fatigue and low sodium"],
      ["Ketones negative.", "Not vomiting.", "Started on carbimazole."]),
    S(U, "gynaecology", ["a pelvic mass on ultrasound with raised CA125", "bloating, early satiety and raised CA125 in a 58 year old"],
      ["CA125 220.", "Ascites on scan."]),
    S(U, "paediatrics", ["a child with weight loss, thirst and bedwetting", "faltering growth and chronic diarrhoea in a toddler",
                         "a limp for a week in a 4 year old with night pain"],
      ["Glucose 15.", "No fever.", "Otherwise active."]),

    # ---------------------------------------------------------------- emergent
    S(E, "general", ["collapsed at home, BP 80/50, pale and clammy", "sudden collapse with tearing chest pain to the back",
                     "severe allergic reaction with throat swelling"],
      ["HR 130.", "Sent to ED."]),
    S(E, "mental health", ["attempted to hang himself last night, still intends to die", "found with a ligature, ongoing suicidal intent",
                           "took a large overdose of his mother's tablets today"],
      ["Crisis team informed.", "Police attending."]),
    S(E, "neurology", ["new weakness of both legs with back pain and incontinence", "sudden slurred speech and confusion this afternoon",
                       "worst headache ever, came on in seconds, now drowsy"],
      ["GCS 13.", "BP 190/100."]),
    S(E, "cardiology", ["central crushing chest pain at rest for the last hour, radiating to the jaw",
                        "chest pain ongoing since this morning with sweating and nausea",
                        "chest tightness at rest with raised troponin", "ECG shows ST elevation in the inferior leads"],
      ["BP 100/60.", "Looks grey and clammy.", "Known diabetic.", "Ambulance called."]),
    S(E, "stroke", ["sudden onset right sided weakness and slurred speech 1 hour ago",
                    "facial droop and arm weakness since this morning, FAST positive",
                    "acute loss of speech and left arm weakness, onset 40 minutes ago"],
      ["On warfarin.", "BM 6.2.", "Last seen well at 08:00."]),
    S(E, "neurology", ["sudden severe headache, worst of her life, onset during exercise",
                       "thunderclap headache with neck stiffness", "headache with fever, neck stiffness and photophobia",
                       "a non-blanching rash with fever in a teenager"],
      ["Vomited twice.", "GCS 14.", "Temp 39.1."]),
    S(E, "spinal", ["back pain with new urinary retention and saddle anaesthesia",
                    "bilateral sciatica with numbness in the saddle area and loss of bladder control",
                    "known prostate cancer with new back pain and leg weakness, query cord compression"],
      ["Post void residual 800 ml.", "Reduced anal tone.", "Unable to walk."]),
    S(E, "sepsis", ["fever and rigors on chemotherapy, last dose 8 days ago", "temperature 39.5 with confusion and BP 85/50",
                    "suspected urosepsis, rigors and hypotension", "a red hot swollen knee with fever, unable to weight bear"],
      ["Lactate 4.2.", "HR 125.", "Sats 93%."]),
    S(E, "gastroenterology", ["haematemesis, vomiting fresh blood this morning", "melaena with dizziness on standing",
                              "large rectal bleed with collapse", "vomiting coffee grounds on aspirin and apixaban"],
      ["HR 118.", "Hb 70 from 120.", "Postural drop."]),
    S(E, "mental health", ["took an overdose of paracetamol 4 hours ago", "suicidal with a clear plan to hang himself tonight",
                           "has written a suicide note and has stockpiled tablets", "command hallucinations telling him to harm others"],
      ["Lives alone.", "Intoxicated.", "Refusing help."]),
    S(E, "vascular", ["a cold, pale, pulseless right leg since this morning", "sudden severe tearing back pain, known AAA",
                      "acute limb ischaemia, painful white foot"],
      ["No pulses below the femoral.", "BP 90/60.", "Numb toes."]),
    S(E, "ophthalmology", ["sudden painless loss of vision in the left eye today", "a curtain coming down over the vision with flashes and floaters",
                           "red painful eye with halos and vomiting, query acute glaucoma", "chemical splash to the eye"],
      ["Visual acuity counting fingers.", "Pupil fixed mid dilated."]),
    S(E, "urology", ["sudden severe testicular pain for 2 hours in a 15 year old", "acute scrotal pain and vomiting, query torsion"],
      ["Testis high riding.", "No trauma."]),
    S(E, "obstetrics", ["positive pregnancy test with lower abdominal pain and shoulder tip pain",
                        "34 weeks pregnant with headache, visual disturbance and BP 165/110",
                        "reduced fetal movements since yesterday at 36 weeks", "heavy bleeding at 30 weeks"],
      ["Last period 7 weeks ago.", "Proteinuria 3+.", "Feels faint."]),
    S(E, "allergy", ["lip and tongue swelling after a bee sting with wheeze", "anaphylaxis after peanuts, throat tightness"],
      ["Adrenaline given.", "Stridor."]),
    S(E, "respiratory", ["acute breathlessness at rest, unable to complete sentences", "suspected PE, pleuritic chest pain, breathless and tachycardic",
                         "sats 86% on air with increasing work of breathing", "severe asthma attack not responding to nebulisers"],
      ["RR 32.", "HR 130.", "Recent long haul flight."]),
    S(E, "metabolic", ["potassium 7.1 with ECG changes", "DKA, glucose 28 with ketones 5 and vomiting",
                       "sodium 116 and confused", "blood glucose 1.8 mmol and drowsy, not responding to glucose"],
      ["pH 7.1.", "Peaked T waves.", "Vomiting."]),
    S(E, "surgery", ["acute abdomen with guarding and rigidity", "abdominal distension, vomiting and no flatus for 2 days, query obstruction",
                     "right iliac fossa pain with fever and rebound tenderness, query appendicitis", "severe epigastric pain radiating to the back, lipase 3000"],
      ["HR 120.", "Temp 38.6.", "Peritonitic."]),
    S(E, "paediatrics", ["a 6 week old baby with a fever of 38.5", "floppy, lethargic toddler with a non blanching rash",
                         "infant with bilious vomiting", "a child with stridor and drooling"],
      ["Poor feeding.", "Grunting.", "Cap refill 4 seconds."]),
    S(E, "neurology", ["seizures not stopping, third in an hour", "head injury on warfarin with vomiting and drowsiness",
                       "acute confusion and reduced GCS, new since this morning"],
      ["GCS 11.", "INR 4.2.", "Pupils unequal."]),
    S(E, "cardiology", ["collapse during exercise with palpitations", "complete heart block, HR 32, dizzy",
                        "fast AF with rate 160 and hypotension"],
      ["BP 85/50.", "Syncope twice today."]),
)

# --- distractors: what a triage model must not be fooled by ------------------------------------------------

NEGATED_FLAGS = [
    "No chest pain.", "Denies chest pain, SOB or palpitations.", "No shortness of breath at rest.", "No red flags.",
    "No red flag symptoms.", "Denies weight loss or night sweats.", "No weight loss.", "No focal neurological deficit.",
    "No saddle anaesthesia or sphincter disturbance.", "No haematuria.", "No rectal bleeding.", "No fever.",
    "Not suicidal, no thoughts of self harm.", "No syncope.", "No headache or visual disturbance.", "Afebrile.",
    "No bleeding.", "No haemoptysis.", "Denies melaena or haematemesis.", "No loss of consciousness.",
    "No change in bowel habit.", "No lumps.", "no CP, no SOB", "No dysphagia.", "No jaundice.", "Neuro exam normal, no weakness.",
    "PE ruled out on CTPA.", "Troponin negative x2.", "No evidence of DVT on scan.", "Sats 98% on air.", "No stridor.",
    "Not pregnant.", "No urinary retention.", "Denies any thoughts of suicide.", "No B symptoms.", "Obs stable.",
]
FAMILY = [
    "Father had an MI at 52.", "FHx: mother breast cancer.", "Family history of bowel cancer (father).", "Brother had a stroke at 60.",
    "Mum died of ovarian cancer.", "FH of premature IHD.", "Her sister had a DVT.", "Strong family history of diabetes.",
    "Father: prostate cancer age 70.", "Grandmother had dementia.", "Family history of sudden cardiac death in an uncle.",
]
PAST = [
    "PMH: hypertension, T2DM, hypercholesterolaemia.", "Past history of MI in 2012, stented.", "Previous TIA in 2016, no recurrence.",
    "Breast cancer 2008, treated, in remission.", "Hx of DVT 10 years ago.", "Previous appendicectomy.", "Background of asthma.",
    "PMH: COPD, AF, CKD 3.", "Previous stroke in 2015 with good recovery.", "Known hypothyroidism.", "Seizure as a child, none since.",
    "History of depression, currently well.", "Had a GI bleed in 2019.", "No significant past medical history.",
]
SAFETY_NET = [
    "Safety netted: to call 999 if chest pain.", "Advised to attend A&E if any weakness or speech problems.",
    "Told to return if fever or worsening pain.", "Given advice to seek help if bleeding or dizziness.",
    "Safety netting advice given re red flags.", "If symptoms worsen, to go to ED.", "Should she develop breathlessness, to call 111.",
]
MEDS = [
    "Meds: ramipril, atorvastatin.", "On metformin 1g bd.", "Medications: amlodipine 5mg, omeprazole.", "Takes levothyroxine.",
    "No regular medications.", "NKDA.", "On apixaban for AF.", "Current meds: sertraline 100mg.", "Allergies: penicillin.",
]
SOCIAL = [
    "Lives with husband.", "Lives alone, independent.", "Non smoker, alcohol 10 units/week.", "Ex smoker.", "Works as a teacher.",
    "Retired.", "Carer for her mother.", "Smokes 10/day.",
]

ASK = {
    R: ["Please see routinely.", "Routine referral.", "Non urgent.", "Grateful for your opinion at your convenience.",
        "For your advice and management.", "Not urgent.", "Happy to wait for the next available appointment.",
        "Please review in clinic.", "For assessment.", "Routine please.", "No urgency.", "Please see in the next few months."],
    U: ["Please see urgently.", "Urgent referral.", "Two week wait referral.", "2WW.", "Please expedite.",
        "Grateful if seen soon.", "Urgent please.", "Please see within 2 weeks.", "Fast track please.",
        "I would be grateful for an urgent review.", "Concerned, please see soon.", "Suspected cancer pathway."],
    E: ["Sent to ED.", "Please see today.", "Same day assessment please.", "Ambulance called.", "Emergency referral.",
        "Needs to be seen immediately.", "I have sent him straight to A&E.", "Please assess urgently today.",
        "Discussed with the on call team, sending in now.", "999 called."],
}

OPENERS = [
    "Thank you for seeing this {age} year old {sexw} with {pc}.", "I would be grateful if you could see this {age}-year-old {sexw} who presents with {pc}.",
    "Re: {age}{sexl}. {Pc}.", "{age}yo {sexw} c/o {pc}.", "Presenting complaint: {pc}.", "Referred with {pc}.",
    "{age} {sexl} - {pc}.", "Seen today with {pc}.", "Dear colleague, I saw this {age} year old {sexw} today with {pc}.",
    "Pt is a {age} y/o {sexw} w/ {pc}.", "{Pc}.", "Reason for referral: {pc}.", "Please see this {sexw} ({age}) with {pc}.",
]
SIGNOFFS = ["Kind regards.", "Many thanks.", "Yours sincerely, Dr A.", "Thanks.", "", "", "Regards, referring GP."]


def _sex(rng: random.Random) -> tuple[str, str]:
    return rng.choice([("man", "M"), ("woman", "F"), ("gentleman", "M"), ("lady", "F"), ("male", "M"), ("female", "F")])


_ABBREV_SWAPS = [
    ("shortness of breath", "SOB"), ("chest pain", "CP"), ("history of", "h/o"), ("complains of", "c/o"), ("with", "w/"),
    ("years", "yrs"), ("weeks", "wks"), ("blood pressure", "BP"), ("family history", "FHx"), ("myocardial infarction", "MI"),
    ("emergency department", "ED"), ("patient", "pt"), ("without", "w/o"), ("diagnosis", "dx"), ("weight loss", "wt loss"),
]


def _noise(text: str, rng: random.Random, level: float) -> str:
    if rng.random() < 0.5:
        for long, short in _ABBREV_SWAPS:
            if rng.random() < 0.5:
                text = re.sub(rf"\b{long}\b", short, text, flags=re.IGNORECASE)
    if level > 0:
        words = text.split(" ")
        for i, w in enumerate(words):
            if len(w) > 4 and w.isalpha() and rng.random() < level:
                k = rng.randrange(len(w) - 1)
                op = rng.randrange(3)
                if op == 0:
                    w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
                elif op == 1:
                    w = w[:k] + w[k + 1:]
                else:
                    w = w[:k] + w[k] + w[k:]
                words[i] = w
        text = " ".join(words)
    r = rng.random()
    if r < 0.15:
        text = text.lower()
    elif r < 0.2:
        text = text.upper()
    return text


def render(s: Scenario, rng: random.Random) -> str:
    age = rng.choice([rng.randint(18, 45), rng.randint(45, 70), rng.randint(70, 95)])
    if s.specialty == "paediatrics":
        age = rng.randint(1, 15)
    sexw, sexl = _sex(rng)
    pc = rng.choice(s.complaints)
    opener = rng.choice(OPENERS).format(age=age, sexw=sexw, sexl=sexl, pc=pc, Pc=pc[:1].upper() + pc[1:])
    parts = [opener]
    details = list(s.details)
    rng.shuffle(details)
    parts += details[: rng.randint(0, min(3, len(details)))]
    extras: list[str] = []
    if rng.random() < 0.55:
        extras.append(rng.choice(NEGATED_FLAGS))
    if rng.random() < 0.3:
        extras.append(rng.choice(NEGATED_FLAGS))
    if rng.random() < 0.3:
        extras.append(rng.choice(FAMILY))
    if rng.random() < 0.45:
        extras.append(rng.choice(PAST))
    if rng.random() < 0.3:
        extras.append(rng.choice(MEDS))
    if rng.random() < 0.2:
        extras.append(rng.choice(SOCIAL))
    if rng.random() < 0.2:
        extras.append(rng.choice(SAFETY_NET))
    rng.shuffle(extras)
    parts += extras
    # The referrer's own urgency words: usually right, sometimes missing, now and then wrong.
    r = rng.random()
    if r < 0.6:
        parts.append(rng.choice(ASK[s.label]))
    elif r < 0.68:
        wrong = {R: U, U: rng.choice([R, E]), E: U}[s.label]
        parts.append(rng.choice(ASK[wrong]))
    frame = rng.random()
    if frame < 0.35:
        text = "Dear Doctor,\n\n" + " ".join(parts) + "\n\n" + rng.choice(SIGNOFFS)
    elif frame < 0.6:
        text = ". ".join(p.rstrip(".") for p in parts) + "."
    elif frame < 0.75:
        text = "\n".join(parts)
    elif frame < 0.87:
        text = (f"S: {parts[0]}\nB: {' '.join(parts[1:-1]) if len(parts) > 2 else 'nil'}\n"
                f"A: {s.specialty} referral\nR: {parts[-1] if len(parts) > 1 else 'review'}")
    else:
        text = (f"Specialty: {s.specialty}\nReason for referral: {parts[0]}\nHistory: {' '.join(parts[1:])}\n"
                f"Urgency requested: {rng.choice(['', 'see letter', 'as per clinical need'])}")
    return _noise(text, rng, rng.choice([0.0, 0.0, 0.02, 0.05]))


def generate(per_scenario: int = 60, seed: int = 20261125) -> list[dict]:
    """Labelled synthetic referrals: {"text", "label", "scenario"}, deterministic for a seed."""
    rng = random.Random(seed)
    rows = []
    for idx, s in enumerate(SCENARIOS):
        for _ in range(per_scenario):
            rows.append({"text": render(s, rng), "label": s.label, "scenario": idx})
    return rows
