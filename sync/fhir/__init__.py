"""The EHR integration layer: FHIR R4 parsing, mapping, vendor profiles, bulk import."""
