"""Synthetic, deterministic FHIR R4 demo data set (bulk-export ndjson) for demo mode and tests."""
