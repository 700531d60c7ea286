"""Suggest an urgency for a referral, and decide whether a person must triage it.

The rule, in order:

1. An affirmed red flag sets the urgency to at least its level (urgent or emergent) and sends the
   referral to the human triage queue, whatever the model says.
2. The model's suggestion goes to the human queue when its calibrated confidence is below
   ``threshold``; a suggestion of routine needs ``routine_threshold`` (stricter), and is never
   auto-routed while the text carries an urgency indicator (suspected cancer, new angina, ...),
   has too little text to judge, or is mostly words the model has never seen.
3. Only then is it ``auto``.

So the only way to reach "routine" without a person is a confident model, no red flag, no urgency
indicator, and text the model recognises. Both the suggestion and the human decision are audited
by the referral service; :meth:`TriageSuggestion.to_dict` is what it records (no referral text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from app.errors import KnownError
from app.logs import Safe
from services.triage.context import AFFIRMED, FAMILY, HISTORICAL, HYPOTHETICAL, NEGATED
from services.triage.features import Analysis, analyze
from services.triage.model import (
    CLASSES,
    RANK,
    ModelUnavailable,
    TriageModel,
    load_model,
)

logger = logging.getLogger(__name__)

AUTO, HUMAN = "auto", "human"
MIN_WORDS = 4  # fewer words than this is not a referral the model can judge
MIN_KNOWN_SHARE = 0.35  # below this share of known words, the text is unlike anything it learnt

RemoteModel = Callable[[str], Mapping[str, float]]


class EndpointNotCovered(KnownError):
    remedy = (
        "Remove [triage] endpoint from config.toml to use the local model (nothing leaves this machine), "
        "or record the signed BAA by adding the endpoint to baa_endpoints."
    )


def normalize_endpoint(url: str) -> str:
    """A comparable form of an endpoint URL: scheme and host lower-case, default port and trailing / dropped."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (scheme, port) in (("https", 443), ("http", 80)):
        port = None
    netloc = host + (f":{port}" if port else "")
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def check_endpoint(endpoint: str, baa_endpoints: tuple[str, ...] | list[str]) -> None:
    """Refuse an external model endpoint unless the configuration records a BAA for exactly it."""
    if not endpoint:
        return
    try:
        norm = normalize_endpoint(endpoint)
        parts = urlsplit(endpoint.strip())
        covered = {normalize_endpoint(e) for e in baa_endpoints}
    except ValueError:
        raise EndpointNotCovered("the external triage endpoint is not a valid URL") from None
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme.lower() != "https" and not (parts.scheme.lower() == "http" and loopback):
        raise EndpointNotCovered("an external triage endpoint must use https")
    if norm not in covered:
        raise EndpointNotCovered("the external triage endpoint has no BAA recorded in baa_endpoints; it is refused")


@dataclass(frozen=True)
class TriagePolicy:
    """When a suggestion may skip the human queue. Build it from settings with :meth:`from_settings`."""

    threshold: float = 0.50
    routine_threshold: float = 0.93
    endpoint: str = ""
    baa_endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("threshold", "routine_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise KnownError(f"triage {name} must be more than 0 and at most 1")
        check_endpoint(self.endpoint, self.baa_endpoints)

    @classmethod
    def from_settings(cls, settings) -> TriagePolicy:  # app.config.Settings
        t = settings.triage
        return cls(t.threshold, t.routine_threshold, t.endpoint, tuple(settings.baa_endpoints))


@dataclass(frozen=True)
class RedFlag:
    concept: str
    category: str
    level: str  # "emergent" or "urgent": the least urgency it allows
    label: str


@dataclass(frozen=True)
class TriageSuggestion:
    urgency: str
    confidence: float
    queue: str
    reasons: tuple[str, ...]
    red_flags: tuple[RedFlag, ...] = ()
    probabilities: Mapping[str, float] = field(default_factory=dict)
    model_version: str = ""
    policy: Mapping[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """The four fields of ``careops triage classify --json``."""
        return {"urgency": self.urgency, "confidence": self.confidence, "queue": self.queue, "reasons": list(self.reasons)}

    def to_dict(self) -> dict:
        """Everything an audit entry needs, JSON-serialisable, with no referral text in it."""
        d = self.summary()
        d["red_flags"] = [asdict(f) for f in self.red_flags]
        d["probabilities"] = dict(self.probabilities)
        d["model_version"] = self.model_version
        d["policy"] = dict(self.policy)
        return d


_STATUS_WORDS = {NEGATED: "negated", FAMILY: "a relative's history", HISTORICAL: "past history", HYPOTHETICAL: "advice or hypothetical"}


def _readable(feature: str) -> str:
    from services.triage.lexicon import CONCEPTS_BY_ID

    kind, _, rest = feature.partition("=")
    if kind == "c":
        cid, _, status = rest.partition("|")
        label = CONCEPTS_BY_ID[cid].label if cid in CONCEPTS_BY_ID else cid.replace("_", " ")
        return label + (f" ({_STATUS_WORDS.get(status, status)})" if status else "")
    if kind in ("w", "b"):
        words = []
        for part in rest.split("_"):
            status, _, word = part.rpartition(":")
            words.append(("no " if status == NEGATED else "") + word)
        return "'" + " ".join(words) + "'"
    if kind == "lvl":
        return {"E": "emergent-level findings", "U": "urgent-level red flags", "u": "urgency indicators",
                "r": "routine markers"}.get(rest.partition("|")[0], "") + (" (not counted)" if "|" in rest else "")
    if kind == "cat":
        cat, _, status = rest.partition("|")
        return f"{cat.replace('_', ' ')} findings" + (f" ({_STATUS_WORDS.get(status, status)})" if status else "")
    if kind in ("rf", "v"):
        return ""
    if kind == "dur":
        return f"duration in {rest}s"
    if kind == "len":
        return f"{rest} text"
    return feature


def _rank(level: str) -> str:
    return "emergent" if level == "E" else "urgent"


def classify(text: str, policy: TriagePolicy | None = None, *, model: TriageModel | None = None,
             remote: RemoteModel | None = None) -> TriageSuggestion:
    """Suggest an urgency for one referral text and choose the queue (see the module docstring)."""
    policy = policy or TriagePolicy()
    check_endpoint(policy.endpoint, policy.baa_endpoints)  # a policy built by hand gets the same check
    if not isinstance(text, str):
        raise TypeError("referral text must be a string")
    analysis = analyze(text)
    reasons: list[str] = []
    probs, version, model_obj = _predict(text, analysis, policy, model, remote, reasons)
    return decide(analysis, probs, policy, version=version, model=model_obj, reasons=reasons)


def decide(analysis: Analysis, probs: Mapping[str, float] | None, policy: TriagePolicy, *, version: str = "",
           model: TriageModel | None = None, reasons: list[str] | None = None) -> TriageSuggestion:
    """The policy applied to an analysed text and the model's calibrated probabilities."""
    reasons = list(reasons or [])
    model_obj = model
    flags = tuple(RedFlag(m.concept, m.category, _rank(m.level), m.label) for m in analysis.red_flags)
    floor = max((RANK[f.level] for f in flags), default=0)
    thresholds = {"threshold": policy.threshold, "routine_threshold": policy.routine_threshold}

    if probs is None:
        urgency = CLASSES[max(floor, RANK["urgent"])]
        for f in flags:
            reasons.append(f"red flag ({f.category}): {f.label}")
        return TriageSuggestion(urgency, 0.0, HUMAN, tuple(reasons), flags, {}, version, thresholds)

    predicted = max(CLASSES, key=lambda c: probs[c])
    urgency = CLASSES[max(RANK[predicted], floor)]
    confidence = round(probs[urgency], 4)
    queue = AUTO

    for f in flags:
        reasons.append(f"red flag ({f.category}): {f.label} - at least {f.level}")
    if flags:
        queue = HUMAN
        reasons.append("red flag found: a person triages this referral")
    reasons.append("model: " + ", ".join(f"{c} {probs[c]:.2f}" for c in CLASSES))
    if urgency != predicted:
        reasons.append(f"raised from the model's {predicted} to {urgency} by red flags")

    indicators = sorted({m.label for m in analysis.affirmed("u")})
    for label in indicators:
        reasons.append(f"urgency indicator: {label}")
    seen_discounted = set()
    for m in analysis.discounted():
        key = (m.label, m.status)
        if key not in seen_discounted:
            seen_discounted.add(key)
            reasons.append(f"not counted: {m.label} ({_STATUS_WORDS.get(m.status, m.status)})")
    if model_obj is not None:
        ev = [r for r in (_readable(name) for name, _ in model_obj.evidence(analysis.features, predicted, n=6)) if r][:4]
        if ev:
            reasons.append(f"evidence for {predicted}: " + ", ".join(dict.fromkeys(ev)))

    if queue == AUTO:
        if analysis.word_count < MIN_WORDS:
            queue = HUMAN
            reasons.append("too little text to judge: a person triages this referral")
        elif model_obj is not None and model_obj.known_share(analysis.features) < MIN_KNOWN_SHARE:
            queue = HUMAN
            reasons.append("text is unlike what the model learnt from: a person triages this referral")
        elif urgency == "routine" and indicators:
            queue = HUMAN
            reasons.append("routine suggested despite an urgency indicator: a person triages this referral")
        elif urgency == "routine" and confidence < policy.routine_threshold:
            queue = HUMAN
            reasons.append(f"confidence {confidence:.2f} below the routine threshold {policy.routine_threshold:.2f}")
        elif confidence < policy.threshold:
            queue = HUMAN
            reasons.append(f"confidence {confidence:.2f} below the threshold {policy.threshold:.2f}")
    if queue == AUTO:
        reasons.append(f"confidence {confidence:.2f} meets the threshold: routed automatically as {urgency}")
    rounded = {c: round(p, 4) for c, p in probs.items()}
    return TriageSuggestion(urgency, confidence, queue, tuple(reasons), flags, rounded, version, thresholds)


def _predict(text: str, analysis: Analysis, policy: TriagePolicy, model: TriageModel | None,
             remote: RemoteModel | None, reasons: list[str]) -> tuple[dict[str, float] | None, str, TriageModel | None]:
    if policy.endpoint:
        if remote is None:
            raise EndpointNotCovered("no client for the external triage endpoint is configured in this build")
        try:
            raw = remote(text)
            probs = {c: float(raw[c]) for c in CLASSES}
            total = sum(probs.values())
            if not all(0 <= p <= 1 for p in probs.values()) or not 0.98 <= total <= 1.02:
                raise ValueError("not a probability distribution")
            return {c: p / total for c, p in probs.items()}, "external", None
        except Exception as exc:  # noqa: BLE001 - any failure of the remote model: a person triages
            logger.info("external triage model failed: %s", Safe(type(exc).__name__))
            reasons.append("external model failed: a person triages this referral")
            return None, "external", None
    try:
        m = model or load_model()
    except ModelUnavailable:
        logger.info("triage model unavailable; routing to the human queue")
        reasons.append("triage model unavailable: a person triages this referral")
        return None, "unavailable", None
    return m.probabilities(analysis.features), m.version, m


def model_version() -> str:
    """The version string of the installed local model, for audit entries ("unavailable" if none)."""
    try:
        return load_model().version
    except ModelUnavailable:
        return "unavailable"


__all__ = [
    "AFFIRMED",
    "AUTO",
    "HUMAN",
    "EndpointNotCovered",
    "RedFlag",
    "TriagePolicy",
    "TriageSuggestion",
    "check_endpoint",
    "classify",
    "model_version",
    "normalize_endpoint",
]
