"""Rebuild the triage model from the synthetic corpus: ``python -m services.triage.train``.

Deterministic: the same code gives the same weights file byte for byte (fixed seeds, ordered
iteration). Steps:

1. Generate the corpus (:mod:`.synth`) and group its scenarios into ``FOLDS`` folds.
2. For each fold, fit multinomial logistic regression (L2, AdaGrad) on the other folds and score
   the held-out one: out-of-scenario predictions for every text, from models that never saw
   that situation phrased any way.
3. Fit a temperature on those predictions (minimum negative log-likelihood): calibrated confidence.
4. On the same held-out predictions, run the full policy (red flags + model) for a grid of
   thresholds and recommend the lowest human-queue share whose safety share is at least
   ``SAFETY_GOAL``. The evaluation set (tests/triage/eval_set.jsonl) is never read here.
5. Fit the final model on every scenario and write ``resources/triage/model.json`` with the
   temperature, and the metrics and recommendation in ``meta``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

from services.triage.features import analyze
from services.triage.model import (
    CLASSES,
    DEFAULT_PATH,
    TriageModel,
    expected_calibration_error,
    softmax,
)
from services.triage.synth import generate

EPOCHS = 15
LEARNING_RATE = 0.25
L2 = 2e-4
MIN_COUNT = 2
SAFETY_GOAL = 0.99  # on dev; the product goal is 0.98 on the evaluation set
SEED = 20261125


def featurize(rows: list[dict]) -> list[tuple[dict[str, float], int]]:
    return [(analyze(r["text"]).features, CLASSES.index(r["label"])) for r in rows]


def fit(data: list[tuple[dict[str, float], int]], *, epochs: int = EPOCHS, seed: int = SEED) -> TriageModel:
    counts: dict[str, int] = {}
    for feats, _ in data:
        for f in feats:
            counts[f] = counts.get(f, 0) + 1
    vocab = sorted(f for f, c in counts.items() if c >= MIN_COUNT)
    index = {f: i for i, f in enumerate(vocab)}
    k = len(CLASSES)
    w = [[0.0] * k for _ in vocab]
    g2 = [[1e-8] * k for _ in vocab]
    b = [0.0] * k
    gb2 = [1e-8] * k
    rows = [([(index[f], v) for f, v in sorted(feats.items()) if f in index], y) for feats, y in data]
    # Classes are not balanced in the corpus; weight them so each counts the same.
    per_class = [sum(1 for _, y in rows if y == c) for c in range(k)]
    cw = [len(rows) / (k * max(n, 1)) for n in per_class]
    rng = random.Random(seed)
    order = list(range(len(rows)))
    for _ in range(epochs):
        rng.shuffle(order)
        for r in order:
            x, y = rows[r]
            z = list(b)
            for i, v in x:
                wi = w[i]
                for c in range(k):
                    z[c] += wi[c] * v
            p = softmax(z)
            for c in range(k):
                g = (p[c] - (1.0 if c == y else 0.0)) * cw[y]
                gb2[c] += g * g
                b[c] -= LEARNING_RATE * g / math.sqrt(gb2[c])
                for i, v in x:
                    gi = g * v + L2 * w[i][c]
                    g2[i][c] += gi * gi
                    w[i][c] -= LEARNING_RATE * gi / math.sqrt(g2[i][c])
    weights = {f: tuple(w[i]) for f, i in index.items() if max(abs(x) for x in w[i]) >= 1e-3}
    return TriageModel(CLASSES, tuple(b), weights, 1.0)


def build(out: Path = DEFAULT_PATH, *, per_scenario: int = 60, quiet: bool = False) -> dict:
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    rows = generate(per_scenario=per_scenario)
    data = featurize(rows)
    folds = sorted({fold_of(r["scenario"]) for r in rows})
    say(f"corpus: {len(rows)} texts from {len({r['scenario'] for r in rows})} scenarios, {len(folds)} scenario folds")
    # Out-of-scenario predictions: each fold scored by a model that never saw its scenarios.
    oof_logits: list[list[float]] = [[] for _ in rows]
    fold_models: dict[int, TriageModel] = {}
    for k in folds:
        train_idx = [i for i, r in enumerate(rows) if fold_of(r["scenario"]) != k]
        m = fit([data[i] for i in train_idx])
        fold_models[k] = m
        for i, r in enumerate(rows):
            if fold_of(r["scenario"]) == k:
                oof_logits[i] = m.logits(data[i][0])
        say(f"  fold {k}: trained on {len(train_idx)}")
    labels = [y for _, y in data]
    t = fit_temperature_logits(oof_logits, labels)
    before = _ece(oof_logits, labels, 1.0)
    after = _ece(oof_logits, labels, t)
    accuracy = sum(1 for z, y in zip(oof_logits, labels, strict=True) if z.index(max(z)) == y) / len(rows)
    recommended, _grid = choose_thresholds(rows, oof_logits, t, fold_models)
    say(f"out-of-scenario: accuracy {accuracy:.3f}; temperature {t:.2f}; ECE {before:.3f} -> {after:.3f}")
    say(f"recommended thresholds (out-of-scenario, safety >= {SAFETY_GOAL}): {recommended}")
    final = fit(data)
    meta = {
        "corpus": len(rows), "scenarios": len({r["scenario"] for r in rows}), "folds": len(folds),
        "temperature_fit_on": "out-of-scenario predictions (grouped cross-validation)",
        "cal_ece_before": round(before, 4), "cal_ece": round(after, 4), "dev_ece": round(after, 4),
        "dev_accuracy": round(accuracy, 4),
        "recommended": {k: round(v, 4) for k, v in recommended.items()},
        "settings": {"epochs": EPOCHS, "learning_rate": LEARNING_RATE, "l2": L2, "min_count": MIN_COUNT, "seed": SEED},
    }  # fmt: skip
    model = TriageModel(final.classes, final.bias, final.weights, t, meta)
    version = model.save(out)
    say(f"wrote {out} ({version}): {len(final.weights)} features")
    return {"version": version, **meta}


FOLDS = 5


def fold_of(scenario: int) -> int:
    return scenario % FOLDS


def fit_temperature_logits(logits: list[list[float]], labels: list[int]) -> float:
    best_t, best_nll = 1.0, float("inf")
    for step in range(5, 501):
        t = step / 100
        nll = 0.0
        for z, y in zip(logits, labels, strict=True):
            nll -= math.log(max(softmax([v / t for v in z])[y], 1e-12))
        if nll < best_nll:
            best_t, best_nll = t, nll
    return best_t


def _ece(logits: list[list[float]], labels: list[int], t: float) -> float:
    conf, correct = [], []
    for z, y in zip(logits, labels, strict=True):
        p = softmax([v / t for v in z])
        k = p.index(max(p))
        conf.append(p[k])
        correct.append(k == y)
    return expected_calibration_error(conf, correct)


def choose_thresholds(rows: list[dict], logits: list[list[float]], t: float,
                      fold_models: dict[int, TriageModel]) -> tuple[dict, list[dict]]:
    """The thresholds with the lowest human share whose safety share reaches SAFETY_GOAL."""
    from services.triage.classify import HUMAN, TriagePolicy, decide

    analyses = [analyze(r["text"]) for r in rows]
    probs = [dict(zip(CLASSES, softmax([v / t for v in z]), strict=True)) for z in logits]
    models = [fold_models[fold_of(r["scenario"])] for r in rows]
    grid = []
    for thr in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        for rthr in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97):
            if rthr < thr:
                continue
            pol = TriagePolicy(threshold=thr, routine_threshold=rthr)
            out = [decide(a, p, pol, model=m) for a, p, m in zip(analyses, probs, models, strict=True)]
            serious = [o for o, r in zip(out, rows, strict=True) if r["label"] != "routine"]
            safe = sum(1 for o in serious if o.urgency != "routine" or o.queue == HUMAN)
            human = sum(1 for o in out if o.queue == HUMAN)
            grid.append({"threshold": thr, "routine_threshold": rthr, "safety": safe / max(len(serious), 1),
                         "human_share": human / len(out)})
    ok = [g for g in grid if g["safety"] >= SAFETY_GOAL]
    best = min(ok, key=lambda g: (g["human_share"], -g["safety"], -g["threshold"])) if ok else max(grid, key=lambda g: g["safety"])
    return best, grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.triage.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_PATH))
    p.add_argument("--per-scenario", type=int, default=60)
    args = p.parse_args(argv)
    build(Path(args.out), per_scenario=args.per_scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
