"""Fixtures of the EHR layer's tests: the real FHIR server process (tests/fhir/real_server.py)."""

from tests.fhir.real_server import fresh_fhir_server, real_fhir_base_url, real_fhir_server  # noqa: F401  (fixtures)
