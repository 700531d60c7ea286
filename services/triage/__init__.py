"""Referral triage: a local model suggests an urgency; red flags and low confidence go to a person.

No Qt, no HTTP, no referral text in logs. Entry points: :func:`classify`, :class:`TriagePolicy`,
:class:`TriageSuggestion`, :func:`model_version`.
"""

from services.triage.classify import (
    AUTO,
    HUMAN,
    EndpointNotCovered,
    RedFlag,
    TriagePolicy,
    TriageSuggestion,
    check_endpoint,
    classify,
    model_version,
)

__all__ = [
    "AUTO", "HUMAN", "EndpointNotCovered", "RedFlag", "TriagePolicy", "TriageSuggestion", "check_endpoint",
    "classify", "model_version",
]
