"""Baselines computed by hand on a tiny array."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.evaluation.baselines import (
    baseline_predictions,
    horizon_rows,
    majority_class,
    min_history,
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


# Clock-time baselines on made-up timestamps (seconds): two rows share t=2.0, a 3 s gap before 5.5.
TIME = np.array([0.0, 0.4, 1.0, 2.0, 2.0, 2.5, 5.5, 6.0])
CMID = np.array([10.0, 10.1, 10.2, 10.2, 10.4, 10.3, 10.0, 10.5])
CLABELS = np.array([2, 2, 2, 0, 0, 1, -1, -1], dtype=np.int8)  # made up; persistence only copies them


def test_clock_min_history_and_rows() -> None:
    assert min_history("1s", TIME) == 2  # first row at least 1 s after the first row
    assert min_history(3) == 3  # events: unchanged
    assert horizon_rows(3) == 3
    # 1 s targets [2, 2, 4, 5, 5, 5, -, -]: rows ahead 2, 1, 2, 2, 1, 0 -> mean 1.33 -> 1
    assert horizon_rows("1s", TIME) == 1
    with pytest.raises(ValueError, match="needs the rows' event times"):
        min_history("1s")


def test_clock_persistence_is_the_latest_closed_label() -> None:
    rows = np.arange(2, 8)
    # Row 2 (t=1.0): rows with t_j + 1 < 1.0: none -> stationary. Rows 3, 4 (t=2.0): t_j + 1 < 2.0 for
    # rows 0, 1 -> label of row 1 (2); row 2 (1.0 + 1 = 2.0) is NOT closed: a row at 2.0 could follow.
    # Row 5 (2.5): rows 0-2 -> 2. Row 6 (5.5): rows 0-5 -> label of row 5 (1). Row 7 (6.0): row 5 -> 1.
    assert persistence_baseline(CLABELS, rows, "1s", TIME).tolist() == [1, 2, 2, 2, 1, 1]


def test_clock_momentum_is_the_last_h_seconds_move() -> None:
    rows = np.arange(2, 8)
    # Row in force at t - 1 s: row 2 (t=1.0) -> t=0.0 row 0; rows 3, 4 (2.0) -> 1.0 row 2; row 5 (2.5)
    # -> 1.5 row 2; row 6 (5.5) -> 4.5 row 5; row 7 (6.0) -> 5.0 row 5.
    expected = [10.2 / 10.0, 10.2 / 10.2, 10.4 / 10.2, 10.3 / 10.2, 10.0 / 10.3, 10.5 / 10.3]
    np.testing.assert_allclose(past_returns(CMID, rows, "1s", TIME), np.array(expected) - 1.0, rtol=1e-12)
    assert momentum_baseline(CMID, rows, "1s", 0.005, TIME).tolist() == [2, 1, 2, 2, 0, 2]
    with pytest.raises(ValueError, match="needs rows >= 2"):
        past_returns(CMID, np.array([1]), "1s", TIME)


def test_clock_baselines_do_not_look_ahead() -> None:
    rows = np.arange(2, 8)
    base = baseline_predictions(CLABELS, CMID, np.ones(8, bool), rows, "1s", 0.005, TIME)
    for t in rows:
        # Change every mid after t and every label whose horizon has not ended before t: row t's
        # predictions must stay the same.
        mid, labels = CMID.copy(), CLABELS.copy()
        mid[t + 1:] = 1.0
        labels[TIME + 1.0 >= TIME[t]] = 0
        got = baseline_predictions(labels, mid, np.ones(8, bool), np.array([t]), "1s", 0.005, TIME)
        for name in ("persistence", "momentum"):
            assert got[name][0] == base[name][t - 2], (name, t)
