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
