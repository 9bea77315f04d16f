"""Labels: down / stationary / up at horizon k (events of the sampled stream).

Two label returns are available:

- ``forward`` (default): ``r_t = (mean(mid_t+1 .. mid_t+k) - mid_t) / mid_t``. Everything it averages
  lies strictly after t: nothing of it is known when the prediction is made.
- ``deeplob`` (Zhang, Zohren & Roberts 2019): ``r_t = (mean(mid_t+1 .. mid_t+k) - m_t) / m_t`` with
  ``m_t = mean(mid_t-k+1 .. mid_t)``. PARTLY KNOWN AT TIME t: the past mean m_t is in the label, so the
  move from m_t to mid_t is already observed. On the LOBSTER sample half or more of its variance is
  known at t, and a rule that only looks at the past k-event move scores about 60 macro-F1 on it. Use
  it to compare with the literature, not to claim predictive power.

Clock-time horizons (``h`` seconds, e.g. ``"1s"``; see ``hftpipe.horizons``), ``forward`` kind only:

- ``r_t = (mid[e(t)] - mid_t) / mid_t`` with ``e(t)`` the LAST row whose time is at or before
  ``time_t + h`` (``np.searchsorted(time, time + h, side="right") - 1``). The mid is a step function of
  time, so ``mid[e(t)]`` is exactly the mid in force at ``time_t + h``: rows sharing that timestamp are all
  included (the book at a timestamp is the book after its last event), rows after it are not. When no row
  falls in ``(time_t, time_t + h]`` the mid did not move and r is 0. The move is not averaged: at a clock
  horizon a single future mid is already well defined, and an event-weighted mean would weigh bursts of
  activity. Undefined (NaN) where ``time_t + h`` lies after the last row of the file (the mid there is not
  known) or a mid is missing. Nothing at or before t enters the label except ``mid_t`` itself.

Classes: 0 down (r < -alpha), 1 stationary (|r| <= alpha), 2 up (r > alpha), -1 undefined (not enough
events after t, or before t for ``deeplob``, or a missing mid). With alpha None the threshold is fitted
on the training split only: the 1/3 quantile of |r| there, which balances the three classes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hftpipe.horizons import parse_horizon

DOWN, STATIONARY, UP, UNDEFINED = 0, 1, 2, -1
# The one definition of the class names and their order (probabilities, confusion rows, reports, cards).
CLASS_NAMES: tuple[str, str, str] = ("down", "stationary", "up")
N_CLASSES = len(CLASS_NAMES)
LABEL_KINDS = ("forward", "deeplob")
# Rolling means come from cumulative sums, whose round-off (~1e-13 relative here) would turn an unchanged
# mid into a tiny non-zero move and push it out of a zero-width stationary band. Moves smaller than this
# are far below one tick of any listed instrument, so they are set to exactly 0.
ROUND_OFF = 1e-12

LABEL_NOTES = {
    "forward": "forward smoothed move: (mean of the next k mids - mid_t) / mid_t; nothing of it is known at t",
    "deeplob": "DeepLOB smoothed move: (mean of the next k mids - mean of the previous k mids) / mean of the "
               "previous k mids; PARTLY KNOWN AT TIME t (the past mean is in the label)",
}


def _check_horizon(k: int) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"a horizon is a positive number of events; got {k!r}")


def _prefix_sums(mid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.float64]:
    """Cumulative sums (leading 0) of mid - reference and of missing-mid counts.

    The reference (first finite mid) shrinks the round-off; missing mids add 0 to the sum and 1 to
    the count, so a window holding one gives NaN instead of poisoning every later row.
    """
    bad = ~np.isfinite(mid)
    finite = mid[~bad]
    ref = np.float64(finite[0]) if len(finite) else np.float64(0.0)
    c = np.zeros(len(mid) + 1)
    np.cumsum(np.where(bad, 0.0, mid - ref), out=c[1:])
    nbad = np.zeros(len(mid) + 1, dtype=np.int64)
    np.cumsum(bad, out=nbad[1:])
    return c, nbad, ref


def forward_return(mid: np.ndarray, k: int) -> np.ndarray:
    """``(mean(mid[t+1..t+k]) - mid[t]) / mid[t]``; NaN for the last k rows or where a mid is missing."""
    _check_horizon(k)
    mid = np.asarray(mid, dtype=np.float64)
    n = len(mid)
    out = np.full(n, np.nan)
    if n > k:
        c, nbad, ref = _prefix_sums(mid)
        t = np.arange(n - k)
        future = (c[t + k + 1] - c[t + 1]) / k  # mean of mid - ref over the next k rows
        now = mid[: n - k] - ref
        r = (future - now) / mid[: n - k]
        r[nbad[t + k + 1] - nbad[t + 1] > 0] = np.nan
        out[: n - k] = r
    return _snap(out)


def deeplob_return(mid: np.ndarray, k: int) -> np.ndarray:
    """DeepLOB's ``(mean(mid[t+1..t+k]) - mean(mid[t-k+1..t])) / mean(mid[t-k+1..t])``.

    PARTLY KNOWN AT TIME t: the past mean is observed when predicting. NaN for the first k-1 and the
    last k rows or where a mid is missing.
    """
    _check_horizon(k)
    mid = np.asarray(mid, dtype=np.float64)
    n = len(mid)
    out = np.full(n, np.nan)
    if n >= 2 * k:
        c, nbad, ref = _prefix_sums(mid)
        t = np.arange(k - 1, n - k)
        future = (c[t + k + 1] - c[t + 1]) / k
        past = (c[t + 1] - c[t + 1 - k]) / k
        r = (future - past) / (past + ref)
        r[nbad[t + k + 1] - nbad[t + 1 - k] > 0] = np.nan
        out[k - 1 : n - k] = r
    return _snap(out)


def clock_targets(time: np.ndarray, seconds: float) -> np.ndarray:
    """Row ``e(t)`` whose mid the clock label at t reads: the last row with time <= time_t + h; -1 past the end.

    Raises:
        ValueError: h is not positive, or times are not in non-decreasing order.
    """
    if not (np.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a clock-time horizon is a positive number of seconds; got {seconds!r}")
    time = np.asarray(time, dtype=np.float64)
    if time.size and not (np.diff(time) >= 0).all():
        raise ValueError("event times must be in non-decreasing order for a clock-time horizon")
    if not time.size:
        return np.empty(0, dtype=np.int64)
    horizon_end = time + seconds
    target = np.searchsorted(time, horizon_end, side="right").astype(np.int64) - 1
    target[horizon_end > time[-1]] = -1  # the file ends before t + h: the mid there is unknown
    return target


def clock_forward_return(mid: np.ndarray, time: np.ndarray, seconds: float) -> np.ndarray:
    """``(mid[e(t)] - mid[t]) / mid[t]`` with ``e(t)`` from :func:`clock_targets`; NaN where undefined."""
    mid = np.asarray(mid, dtype=np.float64)
    target = clock_targets(time, seconds)
    if len(mid) != len(target):
        raise ValueError(f"mid ({len(mid)}) and time ({len(target)}) differ in length")
    out = np.full(len(mid), np.nan)
    ok = target >= 0
    rows = np.flatnonzero(ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[rows] = (mid[target[rows]] - mid[rows]) / mid[rows]
    return _snap(out)


def horizon_return(mid: np.ndarray, time: np.ndarray, horizon: object,
                   kind: Literal["forward", "deeplob"] = "forward") -> np.ndarray:
    """The label return at an event or clock-time horizon (see the module docstring).

    Raises:
        ValueError: a clock-time horizon with the ``deeplob`` label (defined in events only).
    """
    h = parse_horizon(horizon)
    if h.events is not None:
        return label_return(mid, h.events, kind)
    if kind != "forward":
        raise ValueError(f"the {kind!r} label is defined in events only; clock-time horizon {h} needs label forward")
    return clock_forward_return(mid, time, float(h.seconds))  # type: ignore[arg-type]


def _snap(r: np.ndarray) -> np.ndarray:
    r[np.abs(r) < ROUND_OFF] = 0.0
    return r


def label_return(mid: np.ndarray, k: int, kind: Literal["forward", "deeplob"] = "forward") -> np.ndarray:
    """The label return of ``kind`` at horizon k (see the module docstring)."""
    if kind == "forward":
        return forward_return(mid, k)
    if kind == "deeplob":
        return deeplob_return(mid, k)
    raise ValueError(f"label kind must be one of {list(LABEL_KINDS)}; got {kind!r}")


def classify(r: np.ndarray, alpha: float) -> np.ndarray:
    """int8 classes: 0 down (r < -alpha), 1 stationary (|r| <= alpha), 2 up (r > alpha), -1 where r is NaN."""
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}")
    r = np.asarray(r, dtype=np.float64)
    out = np.full(r.shape, UNDEFINED, dtype=np.int8)
    out[r < -alpha] = DOWN
    out[np.abs(r) <= alpha] = STATIONARY
    out[r > alpha] = UP
    return out


def balanced_alpha(r: np.ndarray, train_mask: np.ndarray) -> float:
    """Stationary threshold that balances the classes on the TRAINING rows only: the 1/3 quantile of |r|.

    Args:
        r: label returns of every row (NaN where undefined).
        train_mask: boolean mask of the training rows; no other row influences alpha.
    Raises:
        ValueError: no training row has a defined label return.
    """
    r = np.asarray(r, dtype=np.float64)
    train = np.abs(r[np.asarray(train_mask, dtype=bool)])
    train = train[np.isfinite(train)]
    if not len(train):
        raise ValueError("no training row has a defined label return; cannot fit alpha")
    return float(np.quantile(train, 1.0 / 3.0))
