"""Live quality: rolling macro-F1, accuracy and hit rate of the model and of the naive baselines on the
same outcomes, plus calibration (reliability curve, Brier score). Pure numpy, no I/O.

Every figure uses the formulas of ``hftpipe.evaluation.metrics`` (so live macro-F1 over a set of outcomes
equals the offline evaluation's on those rows). An outcome is scored when its label is defined and both
baselines have the past they need: the model and the baselines are always judged on the same events.

Hit rate: among the directional calls (predicted up or down), the share whose realised class is that
direction. A realised move inside the stationary band is a miss for an up or down call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hftpipe.contracts import Outcome
from hftpipe.evaluation.metrics import classification_metrics

STATIONARY = 1
PREDICTORS = ("model", "persistence", "momentum")


def hit_rate(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, int]:
    """(share of directional calls that were right, number of directional calls); NaN when there is none."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    calls = y_pred != STATIONARY
    n = int(calls.sum())
    if n == 0:
        return float("nan"), 0
    return float((y_true[calls] == y_pred[calls]).sum() / n), n


def brier_score(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of sum_c (p_c - 1[y = c])^2 (0 best, 2 worst)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability_curve(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Top-label reliability: per equal-width confidence bin, count, mean confidence and accuracy; and ECE.

    Returns:
        ``{"bins": [{"low", "high", "count", "confidence", "accuracy"}...], "ece": float}`` (empty bins have
        count 0 and NaN confidence/accuracy; ECE weighs bins by count).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out: list[dict[str, float]] = []
    if len(y) == 0:
        return {"bins": [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": 0,
                          "confidence": float("nan"), "accuracy": float("nan")} for b in range(bins)],
                "ece": float("nan")}
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)  # 1.0 -> last bin
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        conf = float(confidence[sel].mean()) if n else float("nan")
        acc = float(correct[sel].mean()) if n else float("nan")
        if n:
            ece += n / len(y) * abs(acc - conf)
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n, "confidence": conf,
                    "accuracy": acc})
    return {"bins": out, "ece": float(ece)}


def scorable(outcome: Outcome) -> bool:
    """Label defined and both baselines defined (the rows the offline evaluation scores)."""
    return outcome.realised >= 0 and outcome.persistence >= 0 and outcome.momentum >= 0


@dataclass
class QualitySnapshot:
    """Quality over the current window."""

    n: int
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # predictor -> macro_f1, accuracy, hit_rate...
    brier: float = float("nan")
    reliability: dict[str, Any] = field(default_factory=dict)

    def best_baseline(self) -> tuple[str, float]:
        name = max(("persistence", "momentum"), key=lambda b: self.scores[b]["macro_f1"])
        return name, float(self.scores[name]["macro_f1"])

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "scores": self.scores, "brier": self.brier, "reliability": self.reliability}


class RollingQuality:
    """The last ``window`` scorable outcomes (of one model) and their quality figures.

    Args:
        window: outcomes kept; 0 or None keeps every outcome (offline comparisons).
        bins: reliability-curve bins.
    """

    def __init__(self, window: int | None = 5000, bins: int = 10) -> None:
        self.window = window or None
        self.bins = bins
        self._rows: deque = deque(maxlen=self.window)
        self.total = 0

    def add(self, outcome: Outcome) -> bool:
        """Add one outcome; returns whether it was scored (unscorable ones are ignored)."""
        if not scorable(outcome):
            return False
        self._rows.append((outcome.realised, outcome.predicted, outcome.persistence, outcome.momentum,
                           tuple(outcome.probabilities)))
        self.total += 1
        return True

    def __len__(self) -> int:
        return len(self._rows)

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """(realised, predictor -> classes, model probabilities) of the window."""
        if not self._rows:
            return np.zeros(0, np.int64), {p: np.zeros(0, np.int64) for p in PREDICTORS}, np.zeros((0, 3))
        y, model, pers, mom, prob = zip(*self._rows)
        preds = {"model": np.array(model), "persistence": np.array(pers), "momentum": np.array(mom)}
        return np.array(y), preds, np.array(prob, dtype=np.float64)

    def snapshot(self) -> QualitySnapshot:
        y, preds, prob = self.arrays()
        snap = QualitySnapshot(n=len(y))
        for name, pred in preds.items():
            if len(y):
                m = classification_metrics(y, pred)
                scores = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "mcc": m["mcc"]}
            else:
                scores = {"macro_f1": float("nan"), "accuracy": float("nan"), "mcc": float("nan")}
            scores["hit_rate"], scores["calls"] = hit_rate(y, pred)
            snap.scores[name] = scores
        snap.brier = brier_score(prob, y)
        snap.reliability = reliability_curve(prob, y, self.bins)
        return snap
