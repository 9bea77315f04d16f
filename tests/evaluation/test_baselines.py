"""Baselines computed by hand on a tiny array."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.evaluation.baselines import (
    baseline_predictions,
    majority_class,
    momentum_baseline,
    past_returns,
    persistence_baseline,
    threshold_returns,
)

MID = np.array([100.0, 100.0, 101.0, 101.0, 100.5, 100.0, 100.0, 102.0, 102.0, 101.0])
K = 2
ALPHA = 0.006  # 0.6%: a 1-dollar move on 100 is past it, 0.5 is not
# Labels of horizon k per row (made up: persistence only copies them); the last k rows are undefined.
LABELS = np.array([2, 2, 1, 0, 1, 2, 2, 0, -1, -1], dtype=np.int8)


def test_majority_of_the_training_rows_only() -> None:
    train = np.zeros(10, dtype=bool)
    train[2:5] = True  # labels 1, 0, 1 there, though 2 is the majority over all rows
    assert majority_class(LABELS[train]) == 1
    assert majority_class(np.array([0, 0, 2, 2, -1, -1, -1])) == 0  # ties: lower class; -1 ignored


def test_persistence_is_the_label_k_rows_back() -> None:
    rows = np.arange(2, 10)
    assert persistence_baseline(LABELS, rows, K).tolist() == [2, 2, 1, 0, 1, 2, 2, 0]
    with pytest.raises(ValueError, match="rows >= k=2"):
        persistence_baseline(LABELS, np.array([1]), K)


def test_momentum_by_hand() -> None:
    rows = np.arange(2, 10)
    # past moves: 101/100, 101/100, 100.5/101, 100/101, 100/100.5, 102/100, 102/100, 101/102
    assert momentum_baseline(MID, rows, K, ALPHA).tolist() == [2, 2, 1, 0, 1, 2, 2, 0]
    assert past_returns(MID, np.array([9]), K)[0] == pytest.approx(101 / 102 - 1)
    with pytest.raises(ValueError, match="rows >= k=2"):
        past_returns(MID, np.array([1]), K)


def test_undefined_past_label_is_forecast_stationary() -> None:
    labels = LABELS.copy()
    labels[3] = -1
    assert persistence_baseline(labels, np.array([5, 7]), K).tolist() == [1, 2]


def test_baseline_predictions_share_the_rows() -> None:
    rows = np.arange(4, 8)
    train = (np.arange(10) >= 1) & (np.arange(10) < 5)
    preds = baseline_predictions(LABELS, MID, train, rows, K, ALPHA)
    assert list(preds) == ["majority", "persistence", "momentum"]
    assert preds["majority"].tolist() == [1, 1, 1, 1]  # train labels 2, 1, 0, 1 -> 1
    assert all(len(p) == len(rows) for p in preds.values())


def test_threshold_matches_the_label_rule_at_the_band_edges() -> None:
    # stationary is |r| <= alpha, as in hftpipe.features.labels.classify
    assert threshold_returns(np.array([-0.02, -0.01, 0.0, 0.01, 0.02, np.nan]), 0.01).tolist() == [0, 1, 1, 1, 2, -1]
