"""Code and identifier systems the mappers understand (and the demo data set uses).

Vendor profiles may add their own MRN systems; these are the generic R4 defaults.
"""

MRN = "http://careops.example.org/fhir/sid/mrn"
NPI = "http://hl7.org/fhir/sid/us-npi"
REFERRAL_NUMBER = "http://careops.example.org/fhir/sid/referral"
CREDENTIAL = "http://careops.example.org/fhir/CodeSystem/credential"  # BLS, ACLS, PALS, CCRN, ...
PROFESSION = "http://careops.example.org/fhir/CodeSystem/profession"  # RN, LPN, CNA, MD, NP
EMPLOYMENT = "http://careops.example.org/fhir/CodeSystem/employment"  # core, float, agency
WORKFLOW = "http://careops.example.org/fhir/CodeSystem/referral-workflow"  # board column codes
UNIT_KIND = "http://careops.example.org/fhir/CodeSystem/unit-kind"  # med-surg, icu, ed, clinic
SUPPLY_ROOM = "http://careops.example.org/fhir/CodeSystem/location-kind"  # storeroom, clinic
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"  # prov, pay, ins, other
LOCATION_PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"  # wa, ro, bd
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"  # IMP, AMB, EMER
SNOMED = "http://snomed.info/sct"
REFERRAL_CATEGORY_CODE = "3457005"  # SNOMED "Patient referral"

# ServiceRequest.priority -> internal urgency
PRIORITY_TO_URGENCY = {"routine": "routine", "urgent": "urgent", "asap": "urgent", "stat": "emergent"}
URGENCY_TO_PRIORITY = {"routine": "routine", "urgent": "urgent", "emergent": "stat"}
# Encounter.class code -> internal class
ENCOUNTER_CLASS = {"IMP": "inpatient", "ACUTE": "inpatient", "AMB": "outpatient", "EMER": "emergency"}

# --- post-discharge follow-up ---
CHECKIN = "http://careops.example.org/fhir/sid/checkin"  # Communication.identifier of a check-in
APPOINTMENT = "http://careops.example.org/fhir/sid/appointment"  # Appointment.identifier of a booking
TASK = "http://careops.example.org/fhir/sid/referral-task"  # Task.identifier of a Task CareOps created
FOLLOWUP_CONDITION = "http://careops.example.org/fhir/CodeSystem/followup-condition"  # CarePlan.category
CHECKIN_OUTCOME = "http://careops.example.org/fhir/CodeSystem/checkin-outcome"  # Communication.topic
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"  # medium
DISCHARGE_CARE_PLAN_CODE = "736372004"  # SNOMED "Discharge care plan"

FOLLOWUP_CONDITIONS = ("heart-failure", "copd", "pneumonia", "post-surgical", "diabetes", "other")
# Lower-case words in a CarePlan's title or category text -> condition, first match wins.
CONDITION_WORDS = (
    ("heart failure", "heart-failure"), ("copd", "copd"), ("chronic obstructive", "copd"),
    ("pneumonia", "pneumonia"), ("surg", "post-surgical"), ("post-op", "post-surgical"),
    ("diabet", "diabetes"),
)
# Check-in outcome -> CheckIn.status (the outcome itself is not kept: it only refines the status).
OUTCOME_STATUS = {"stable": "done", "concern": "done", "escalated": "escalated",
                  "unreachable": "missed", "declined": "missed"}
# Communication(Request).medium (v3 ParticipationMode) <-> CheckIn.channel
MEDIUM_TO_CHANNEL = {"PHONE": "phone", "VERBAL": "phone", "SMSWRIT": "sms", "ONLINEWRIT": "portal",
                     "EMAILWRIT": "portal", "ELECTRONIC": "portal", "VIDEOCONF": "video"}
CHANNEL_TO_MEDIUM = {"phone": "PHONE", "sms": "SMSWRIT", "portal": "ONLINEWRIT", "video": "VIDEOCONF"}
# Referral board column (WORKFLOW code) -> Task.status
WORKFLOW_TO_TASK_STATUS = {
    "new": "requested", "triage": "accepted", "awaiting-preauth": "in-progress",
    "ready-to-schedule": "in-progress", "scheduled": "in-progress", "completed": "completed",
    "closed": "cancelled",
}
