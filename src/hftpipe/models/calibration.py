"""Probability calibration shared by every model family: temperature scaling, Brier score, reliability.

A temperature T > 0 divides a model's logits before the softmax. It is fitted on the validation split
(log loss), stored in the bundle and applied by ``predict_proba``, so served probabilities are the
calibrated ones; one scalar never changes the arg-max, so classification metrics are untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 minimising the log loss of softmax(logits / T) (golden-section on log T).

    One scalar keeps the predicted class (argmax) unchanged, so macro-F1 is untouched; only confidence moves.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of the squared distance to the one-hot truth (0 best, 2 worst)."""
    onehot = np.eye(proba.shape[1])[np.asarray(y, dtype=np.int64)]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def reliability_curve(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Top-label reliability: per confidence bin, mean confidence, accuracy and count; plus the ECE."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        count = int(sel.sum())
        if count == 0:
            continue
        mc, acc = float(conf[sel].mean()), float(correct[sel].mean())
        ece += count / len(conf) * abs(mc - acc)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": mc, "accuracy": acc,
                     "count": count})
    return {"bins": rows, "ece": float(ece)}


def calibration_summary(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, Any]:
    """Brier score, log loss and reliability before (T = 1) and after temperature scaling."""
    out: dict[str, Any] = {"temperature": float(temperature), "rows": len(y)}
    for key, t in (("uncalibrated", 1.0), ("calibrated", temperature)):
        p = softmax(np.asarray(logits, dtype=np.float64) / t)
        out[key] = {"brier": brier_score(p, y),
                    "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)))),
                    "reliability": reliability_curve(p, y)}
    return out
