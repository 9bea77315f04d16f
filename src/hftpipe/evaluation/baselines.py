"""Naive baselines every model number is shown beside, computed on exactly the model's rows.

All three use only information available at event t (no look-ahead):

- ``majority``: the most frequent class of the TRAINING split, predicted everywhere.
- ``persistence``: the last known label, i.e. the label of row t-k, whose k-event window closed at t.
- ``momentum``: the sign of the past k-event mid move ``mid[t] / mid[t-k] - 1``, thresholded with the
  same alpha as the label.

The label at t-k is a smoothed move (``hftpipe.features.labels``), so persistence and momentum differ:
persistence averages the last k mids, momentum compares two single mids.

At a clock-time horizon of h seconds (``"1s"``; pass the rows' ``time``) the same ideas in clock time:

- ``persistence``: the label of the latest row j with ``time_j + h < time_t``: its horizon has ended
  strictly before t, so every row it reads is known (a row at exactly ``time_j + h`` could still be
  followed by others at that timestamp, which the label includes). None yet: stationary.
- ``momentum``: the sign of the last h seconds' move ``mid[t] / mid[s(t)] - 1``, ``s(t)`` the row in force
  at ``time_t - h`` (the last row at or before it), with the label's alpha band.

A clock label is a single future mid, not an average, so here persistence and momentum differ only in
where their windows end (the latest closed label window vs. exactly t).
"""

from __future__ import annotations

import numpy as np

from hftpipe.features.labels import clock_targets
from hftpipe.horizons import parse_horizon

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


def _time(time: np.ndarray | None, horizon: object) -> np.ndarray:
    if time is None:
        raise ValueError(f"clock-time horizon {horizon} needs the rows' event times")
    return np.asarray(time, dtype=np.float64)


def min_history(horizon: int | str, time: np.ndarray | None = None) -> int:
    """Earliest row index at which every baseline has the past it needs (clock time: ``time`` of every row)."""
    h = parse_horizon(horizon)
    if h.events is not None:
        return h.events
    t = _time(time, horizon)
    return int(np.searchsorted(t, t[0] + h.seconds, side="left")) if t.size else 0


def horizon_rows(horizon: int | str, time: np.ndarray | None = None) -> int:
    """Rows one horizon spans: k for events; for h seconds the mean number of rows after t up to t + h.

    Used where a length in rows is needed (bootstrap blocks, the backtest's holding time).
    """
    h = parse_horizon(horizon)
    if h.events is not None:
        return h.events
    targets = clock_targets(_time(time, horizon), float(h.seconds))
    ok = np.flatnonzero(targets >= 0)
    return max(1, round(float(np.mean(targets[ok] - ok)))) if ok.size else 1


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


def persistence_baseline(labels: np.ndarray, rows: np.ndarray, horizon: int | str,
                         time: np.ndarray | None = None) -> np.ndarray:
    """Label of row t-k for each evaluated row t (its window has completed by t).

    Clock time (``horizon`` such as ``"1s"``, ``time`` of every row): the label of the latest row whose
    horizon ended strictly before ``time_t`` (see the module docstring). A label undefined there (e.g. a
    one-sided book), or none yet, is forecast as stationary.
    """
    rows = np.asarray(rows, dtype=np.int64)
    h = parse_horizon(horizon)
    if h.events is not None:
        if rows.size and rows.min() < h.events:
            raise ValueError(f"persistence needs rows >= k={h.events}; got row {rows.min()}")
        past = np.asarray(labels)[rows - h.events].astype(np.int8)
    else:
        t = _time(time, horizon)
        closed = np.searchsorted(t + h.seconds, t[rows], side="left") - 1  # last j with t_j + h < t_t
        past = np.where(closed >= 0, np.asarray(labels)[np.maximum(closed, 0)], -1).astype(np.int8)
    return np.where(past < 0, STATIONARY, past).astype(np.int8)


def past_returns(mid: np.ndarray, rows: np.ndarray, horizon: int | str, time: np.ndarray | None = None) -> np.ndarray:
    """The past mid move that ends at each row: ``mid[t] / mid[t-k] - 1``; clock time: from the row in force at t - h."""
    mid = np.asarray(mid, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    h = parse_horizon(horizon)
    if rows.size and rows.min() < min_history(horizon, time):
        need = f"k={h.events}" if h.events is not None else f"{min_history(horizon, time)} ({h.describe()} of past)"
        raise ValueError(f"the past-move baseline needs rows >= {need}; got row {rows.min()}")
    if h.events is not None:
        return mid[rows] / mid[rows - h.events] - 1.0
    t = _time(time, horizon)
    start = np.searchsorted(t, t[rows] - h.seconds, side="right") - 1  # the row in force at t - h
    return mid[rows] / mid[start] - 1.0


def momentum_baseline(mid: np.ndarray, rows: np.ndarray, horizon: int | str, alpha: float,
                      time: np.ndarray | None = None) -> np.ndarray:
    """Sign of the past k-event (or h-second) mid move with the label's alpha band (undefined -> stationary)."""
    classes = threshold_returns(past_returns(mid, rows, horizon, time), alpha)
    return np.where(classes < 0, STATIONARY, classes).astype(np.int8)


def baseline_predictions(labels: np.ndarray, mid: np.ndarray, train_mask: np.ndarray, rows: np.ndarray,
                         horizon: int | str, alpha: float, time: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All baselines for the evaluated ``rows`` of one feature set.

    Args:
        labels: (n,) int8 labels of horizon k for every row (-1 undefined).
        mid: (n,) mid prices of every row.
        train_mask: (n,) bool, the rows of the training split (for the majority class).
        rows: evaluated row indices (>= :func:`min_history`).
        horizon: k in events, or a clock-time horizon such as ``"1s"``.
        alpha: the stationary band the labels were made with.
        time: (n,) event times of every row; required for a clock-time horizon.
    Returns:
        name -> (len(rows),) int8 predictions, in :data:`BASELINE_NAMES` order.
    """
    labels = np.asarray(labels)
    return {
        "majority": majority_baseline(labels[np.asarray(train_mask, dtype=bool)], rows),
        "persistence": persistence_baseline(labels, rows, horizon, time),
        "momentum": momentum_baseline(mid, rows, horizon, alpha, time),
    }
