"""Everything that crosses the network: sync engine, EHR integration (sync/fhir), central service."""
