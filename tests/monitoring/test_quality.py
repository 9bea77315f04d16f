"""Live quality: the evaluation's metrics on the window, the stationary band in the hit rate, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftpipe.contracts import Outcome
from hftpipe.evaluation.metrics import classification_metrics
from hftpipe.monitoring.quality import RollingQuality, brier_score, hit_rate, reliability_curve


def outcome(realised: int, predicted: int, persistence: int = 1, momentum: int = 1,
            probabilities: list[float] | None = None, seq: int = 1) -> Outcome:
    if probabilities is None:
        probabilities = [0.1, 0.1, 0.1]
        probabilities[predicted] = 0.8
    return Outcome(symbol="GOOG", venue="NASDAQ", seq=seq, event_time=0.0, outcome_time=1.0, publish_time=0.0,
                   horizon=10, alpha=1e-4, label_return=0.0, realised=realised, predicted=predicted,
                   probabilities=probabilities, persistence=persistence, momentum=momentum, model_name="m",
                   model_version="1")


def test_hit_rate_counts_a_move_inside_the_band_as_a_miss() -> None:
    y = np.array([2, 1, 0, 1, 2])
    pred = np.array([2, 2, 0, 1, 1])  # up right, up but stationary (miss), down right, two stationary (no call)
    assert hit_rate(y, pred) == (pytest.approx(2 / 3), 3)
    assert math.isnan(hit_rate(y, np.ones(5, int))[0])


def test_brier_and_reliability_hand_computed() -> None:
    p = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    y = np.array([1, 0, 0])
    # row 0: 0.04+0.25+0.09=0.38; row 1: 0.01+0.0025+0.0025=0.015; row 2: 0.81+0.01+0.64=1.46
    assert brier_score(p, y) == pytest.approx((0.38 + 0.015 + 1.46) / 3)
    curve = reliability_curve(p, y, bins=10)
    assert sorted(round(b["low"], 1) for b in curve["bins"] if b["count"]) == [0.5, 0.8, 0.9]
    assert sum(b["count"] for b in curve["bins"]) == 3
    by_low = {round(b["low"], 1): b for b in curve["bins"]}
    assert by_low[0.5]["accuracy"] == 1.0 and by_low[0.8]["accuracy"] == 0.0 and by_low[0.9]["accuracy"] == 1.0
    # ECE = 1/3 (|1-0.5| + |0-0.8| + |1-0.9|)
    assert curve["ece"] == pytest.approx((0.5 + 0.8 + 0.1) / 3)


def test_window_scores_model_and_baselines_on_the_same_rows_with_the_evaluation_formulas() -> None:
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 3, n)
    model = np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n))
    pers = rng.integers(0, 3, n)
    mom = rng.integers(0, 3, n)
    q = RollingQuality(window=200)
    assert not q.add(outcome(-1, 1))  # undefined label: not scored
    assert not q.add(outcome(2, 1, persistence=-1, momentum=-1))  # no baseline past: not scored
    for i in range(n):
        q.add(outcome(int(y[i]), int(model[i]), int(pers[i]), int(mom[i]), seq=i))
    snap = q.snapshot()
    assert snap.n == 200 and q.total == n
    tail = slice(n - 200, n)
    for name, pred in (("model", model), ("persistence", pers), ("momentum", mom)):
        m = classification_metrics(y[tail], pred[tail])
        assert snap.scores[name]["macro_f1"] == m["macro_f1"]
        assert snap.scores[name]["accuracy"] == m["accuracy"]
    assert snap.best_baseline()[0] in ("persistence", "momentum")
    assert snap.scores["model"]["macro_f1"] > snap.best_baseline()[1]
