"""Referral triage on the labelled evaluation set (tests/triage/eval_set.jsonl).

The evaluation set is written by hand, separately from the synthetic training templates
(services/triage/synth.py), and is never used to train, calibrate or choose thresholds (those use
the synthetic cal and dev splits). Each text runs through ``classify`` with the default policy
(``[triage]`` defaults in app/config.py). Reported:

* per urgency: precision and recall of the suggested urgency (after red-flag floors);
* safety share: urgent and emergent referrals that were suggested at least urgent or sent to the
  human queue, over all urgent and emergent referrals. Goal: >= 0.98;
* human-queue share of all referrals (keep it low), and the part of it caused by red flags;
* ECE of the model's calibrated top-class confidence (10 bins), and accuracy;
* classify time per referral.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.config import TriageSettings
from services.triage import HUMAN, TriagePolicy, classify
from services.triage.features import analyze
from services.triage.model import CLASSES, expected_calibration_error, load_model
from tests.bench.common import Result

EVAL_SET = Path(__file__).resolve().parents[1] / "triage" / "eval_set.jsonl"
GOAL_SAFETY = 0.98


def load_eval_set(path: Path = EVAL_SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run() -> list[Result]:
    rows = load_eval_set()
    defaults = TriageSettings()
    policy = TriagePolicy(defaults.threshold, defaults.routine_threshold)
    model = load_model()
    started = time.perf_counter()
    out = [classify(r["text"], policy, model=model) for r in rows]
    per_ms = (time.perf_counter() - started) / len(rows) * 1000

    results: list[Result] = []
    for c in CLASSES:
        tp = sum(1 for o, r in zip(out, rows, strict=True) if o.urgency == c and r["label"] == c)
        predicted = sum(1 for o in out if o.urgency == c)
        actual = sum(1 for r in rows if r["label"] == c)
        prec = tp / predicted if predicted else 0.0
        rec = tp / actual if actual else 0.0
        results.append(Result(f"triage {c}: precision / recall", f"{prec:.2f} / {rec:.2f}",
                              note=f"{tp} of {predicted} suggested, {tp} of {actual} labelled"))  # fmt: skip

    serious = [(o, r) for o, r in zip(out, rows, strict=True) if r["label"] != "routine"]
    safe = [(o, r) for o, r in serious if o.urgency != "routine" or o.queue == HUMAN]
    missed = [r["id"] for o, r in serious if not (o.urgency != "routine" or o.queue == HUMAN)]
    safety = len(safe) / len(serious)
    results.append(Result("triage safety share (>= urgent or human)", f"{safety:.3f}", f">= {GOAL_SAFETY:.2f}",
                          safety >= GOAL_SAFETY,
                          f"{len(safe)} of {len(serious)} urgent/emergent" + (f"; missed: {', '.join(missed)}" if missed else "")))
    human = [o for o in out if o.queue == HUMAN]
    by_flag = sum(1 for o in human if o.red_flags)
    routine_rows = [o for o, r in zip(out, rows, strict=True) if r["label"] == "routine"]
    routine_human = sum(1 for o in routine_rows if o.queue == HUMAN)
    results.append(Result("triage human-queue share", f"{len(human) / len(out):.3f}", "low", None,
                          f"{len(human)} of {len(out)}: {by_flag} for red flags, {len(human) - by_flag} for confidence or "
                          f"indicators; routine referrals sent to a person: {routine_human} of {len(routine_rows)}"))

    probs = [model.probabilities(analyze(r["text"]).features) for r in rows]
    top = [max(CLASSES, key=lambda c: p[c]) for p in probs]
    correct = [t == r["label"] for t, r in zip(top, rows, strict=True)]
    ece = expected_calibration_error([p[t] for p, t in zip(probs, top, strict=True)], correct)
    final_acc = sum(1 for o, r in zip(out, rows, strict=True) if o.urgency == r["label"]) / len(rows)
    meta = model.meta
    results.append(Result("triage model ECE (eval set)", f"{ece:.3f}", note=(
        f"model alone: accuracy {sum(correct) / len(rows):.2f}; with red-flag floors: {final_acc:.2f}; "
        f"temperature {model.temperature:.2f} fit on out-of-scenario predictions of the synthetic corpus "
        f"(there ECE {meta.get('cal_ece_before', '?')} -> {meta.get('cal_ece', '?')}, accuracy {meta.get('dev_accuracy', '?')})")))
    mix = ", ".join(f"{c} {sum(1 for r in rows if r['label'] == c)}" for c in CLASSES)
    results.append(Result("triage classify time", f"{per_ms:.1f} ms/referral", note=(
        f"{len(rows)} referrals ({mix}); "
        f"model {model.version}; thresholds {policy.threshold:.2f} / routine {policy.routine_threshold:.2f}")))
    return results
