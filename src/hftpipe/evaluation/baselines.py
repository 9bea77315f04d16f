"""Naive baselines every model number is shown beside, computed on exactly the model's rows.

All three use only information available at event t (no look-ahead):

- ``majority``: the most frequent class of the TRAINING split, predicted everywhere.
- ``persistence``: the last known label, i.e. the label of row t-k, whose k-event window closed at t.
- ``momentum``: the sign of the past k-event mid move ``mid[t] / mid[t-k] - 1``, thresholded with the
  same alpha as the label.

The label at t-k is a smoothed move (``hftpipe.features.labels``), so persistence and momentum differ:
persistence averages the last k mids, momentum compares two single mids.
"""

from __future__ import annotations

import numpy as np

DOWN, STATIONARY, UP = 0, 1, 2
BASELINE_NAMES = ("majority", "persistence", "momentum")


def threshold_returns(returns: np.ndarray, alpha: float) -> np.ndarray:
    """Classes from returns: up above +alpha, down below -alpha, stationary in between (NaN -> -1)."""
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(r.shape, STATIONARY, dtype=np.int8)
    out[r > alpha] = UP
    out[r < -alpha] = DOWN
    out[np.isnan(r)] = -1
    return out


def min_history(horizon: int) -> int:
    """Earliest row index at which every baseline has the past it needs."""
    return horizon


def majority_class(train_labels: np.ndarray) -> int:
    """Most frequent defined class among the training labels (ties: the lower class index)."""
    labels = np.asarray(train_labels)
    labels = labels[labels >= 0]
    if labels.size == 0:
        raise ValueError("the training split holds no defined label; cannot pick a majority class")
    return int(np.bincount(labels.astype(np.int64), minlength=3).argmax())


def majority_baseline(train_labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The training split's majority class for every evaluated row."""
    return np.full(len(rows), majority_class(train_labels), dtype=np.int8)


def persistence_baseline(labels: np.ndarray, rows: np.ndarray, horizon: int) -> np.ndarray:
    """Label of row t-k for each evaluated row t (its window has completed by t).

    A label undefined at t-k (e.g. a one-sided book) is forecast as stationary.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and rows.min() < horizon:
        raise ValueError(f"persistence needs rows >= k={horizon}; got row {rows.min()}")
    past = np.asarray(labels)[rows - horizon].astype(np.int8)
    return np.where(past < 0, STATIONARY, past).astype(np.int8)


def past_returns(mid: np.ndarray, rows: np.ndarray, horizon: int) -> np.ndarray:
    """The k-event mid move that ends at each row: ``mid[t] / mid[t-k] - 1``."""
    mid = np.asarray(mid, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and rows.min() < min_history(horizon):
        raise ValueError(f"the past-move baseline needs rows >= k={horizon}; got row {rows.min()}")
    return mid[rows] / mid[rows - horizon] - 1.0


def momentum_baseline(mid: np.ndarray, rows: np.ndarray, horizon: int, alpha: float) -> np.ndarray:
    """Sign of the past k-event mid move with the label's alpha band (undefined -> stationary)."""
    classes = threshold_returns(past_returns(mid, rows, horizon), alpha)
    return np.where(classes < 0, STATIONARY, classes).astype(np.int8)


def baseline_predictions(labels: np.ndarray, mid: np.ndarray, train_mask: np.ndarray, rows: np.ndarray,
                         horizon: int, alpha: float) -> dict[str, np.ndarray]:
    """All baselines for the evaluated ``rows`` of one feature set.

    Args:
        labels: (n,) int8 labels of horizon k for every row (-1 undefined).
        mid: (n,) mid prices of every row.
        train_mask: (n,) bool, the rows of the training split (for the majority class).
        rows: evaluated row indices (>= :func:`min_history`).
        horizon: k in events.
        alpha: the stationary band the labels were made with.
    Returns:
        name -> (len(rows),) int8 predictions, in :data:`BASELINE_NAMES` order.
    """
    labels = np.asarray(labels)
    return {
        "majority": majority_baseline(labels[np.asarray(train_mask, dtype=bool)], rows),
        "persistence": persistence_baseline(labels, rows, horizon),
        "momentum": momentum_baseline(mid, rows, horizon, alpha),
    }
