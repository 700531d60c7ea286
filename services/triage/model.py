"""The local triage model: multinomial logistic regression over sparse features, temperature-calibrated.

Pure Python on purpose: a few thousand weights in a JSON file, no numpy, nothing leaves the process.
``services.triage.train`` writes the file; this module only reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from app.errors import KnownError

CLASSES = ("routine", "urgent", "emergent")
RANK = {c: i for i, c in enumerate(CLASSES)}
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "resources" / "triage" / "model.json"


class ModelUnavailable(KnownError):
    remedy = "Rebuild the weights with `python -m services.triage.train`; until then every referral goes to the human triage queue."


@dataclass(frozen=True)
class TriageModel:
    classes: tuple[str, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    temperature: float = 1.0
    meta: dict = field(default_factory=dict)
    version: str = "triage-lr-untrained"

    def logits(self, features: dict[str, float]) -> list[float]:
        z = list(self.bias)
        for name, value in features.items():
            w = self.weights.get(name)
            if w is not None:
                for k in range(len(z)):
                    z[k] += w[k] * value
        return z

    def probabilities(self, features: dict[str, float], *, calibrated: bool = True) -> dict[str, float]:
        t = self.temperature if calibrated else 1.0
        return dict(zip(self.classes, softmax([v / t for v in self.logits(features)]), strict=True))

    def known_share(self, features: dict[str, float]) -> float:
        """Share of the word features the model has weights for (low: text unlike anything it learnt)."""
        words = [f for f in features if f.startswith("w=")]
        if not words:
            return 0.0
        return sum(1 for f in words if f in self.weights) / len(words)

    def evidence(self, features: dict[str, float], cls: str, n: int = 4) -> list[tuple[str, float]]:
        """The features that pushed most towards ``cls`` (weight minus the mean over classes)."""
        k = self.classes.index(cls)
        scored = []
        for name in features:
            w = self.weights.get(name)
            if w is None:
                continue
            scored.append((name, w[k] - sum(w) / len(w)))
        scored.sort(key=lambda x: -x[1])
        return [s for s in scored[:n] if s[1] > 0.05]

    # -- files -------------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "format": 1, "kind": "multinomial-logistic-regression", "classes": list(self.classes),
            "bias": [round(b, 6) for b in self.bias], "temperature": round(self.temperature, 6), "meta": self.meta,
            "weights": {k: [round(x, 5) for x in v] for k, v in sorted(self.weights.items())},
        }  # fmt: skip

    def save(self, path: Path) -> str:
        body = self.to_json()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
        body["version"] = f"triage-lr-{digest}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=0, sort_keys=True) + "\n", encoding="utf-8")
        return body["version"]

    @classmethod
    def from_json(cls, body: dict) -> TriageModel:
        try:
            classes = tuple(body["classes"])
            if classes != CLASSES:
                raise ValueError("unexpected classes")
            weights = {str(k): tuple(float(x) for x in v) for k, v in body["weights"].items()}
            if any(len(v) != len(classes) for v in weights.values()):
                raise ValueError("weight rows of the wrong length")
            temperature = float(body.get("temperature", 1.0))
            if not 0.05 <= temperature <= 50 or not math.isfinite(temperature):
                raise ValueError("temperature out of range")
            return cls(classes, tuple(float(b) for b in body["bias"]), weights, temperature,
                       dict(body.get("meta", {})), str(body.get("version", "triage-lr-unknown")))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelUnavailable(f"the triage model file is not valid ({type(exc).__name__})") from None


@lru_cache(maxsize=4)
def load_model(path: Path = DEFAULT_PATH) -> TriageModel:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelUnavailable("the triage model file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise ModelUnavailable("the triage model file cannot be read") from None
    if not isinstance(body, dict):
        raise ModelUnavailable("the triage model file is not valid")
    return TriageModel.from_json(body)


def softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 10) -> float:
    """ECE of top-class confidence: the bin-weighted gap between confidence and accuracy."""
    n = len(confidences)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if not idx:
            continue
        acc = sum(correct[i] for i in idx) / len(idx)
        conf = sum(confidences[i] for i in idx) / len(idx)
        total += len(idx) / n * abs(acc - conf)
    return total
