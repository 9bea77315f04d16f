"""Features over event windows: order-flow imbalance, returns, realised volatility, trade flow.

Windows count events of the stream the arrays describe. A window feature at row t of window w uses
rows t-w..t only (w increments and the state just before them). On the first w rows, where that much
history does not exist, the stream is treated as if its first book state had stood still before it began
(no order flow, no trades, no price moves): sums run over the rows there are, returns start from row 0,
intensities still divide by w. Those warm-up rows are biased and get split -1 in the feature set.
Rolling sums are differences of cumulative sums, so each row costs O(1) whatever w is, and the prefix
of a cumulative sum never depends on later rows (the no-look-ahead property the tests check).

Sign conventions (LOBSTER): ``direction`` is the side of the *limit order* an event touches (+1 buy,
-1 sell). An execution (type 4 visible, 5 hidden) of a sell limit order was triggered by a buyer, so the
aggressor's sign is ``-direction``.
"""

from __future__ import annotations

import numpy as np

from hftpipe.features.book import ASK_PRICE, ASK_SIZE, BID_PRICE, BID_SIZE, _check_book

EXECUTION_TYPES = (4, 5)  # LOBSTER: 4 execution of a visible order, 5 execution of a hidden order


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of ``x[max(0, t-w+1)..t]`` at each row t (cumulative-sum difference; warm-up: the rows there are)."""
    _check_window(window)
    c = np.cumsum(np.asarray(x, dtype=np.float64))
    out = c.copy()
    if len(c) > window:
        np.subtract(c[window:], c[:-window], out=out[window:])
    return out


def _check_window(window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"a window is a positive number of events; got {window!r}")


def order_flow_imbalance_increments(book: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-event order-flow imbalance e_n of Cont, Kukanov & Stoikov (2014), shape (n,).

    ``e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1 - 1{Pa_n <= Pa_n-1} qa_n
    + 1{Pa_n >= Pa_n-1} qa_n-1`` from best bid/ask prices P and sizes q. Positive = buying pressure.
    Row 0 has no previous state and gets 0. An empty side counts as price -inf (bid) / +inf (ask) with
    size 0, so a side that empties contributes its whole previous size. ``out``: optional (n,) buffer.
    """
    book = _check_book(book)
    n = len(book)
    e = np.empty(n) if out is None else out
    if e.shape != (n,):
        raise ValueError(f"out has shape {e.shape}; expected {(n,)}")
    bid_p, ask_p = book[:, BID_PRICE], book[:, ASK_PRICE]
    if np.isnan(bid_p).any():
        bid_p = np.where(np.isnan(bid_p), -np.inf, bid_p)
    if np.isnan(ask_p).any():
        ask_p = np.where(np.isnan(ask_p), np.inf, ask_p)
    bid_q, ask_q = book[:, BID_SIZE], book[:, ASK_SIZE]
    e[:1] = 0.0
    if n > 1:
        bp, bp0, ap, ap0 = bid_p[1:], bid_p[:-1], ask_p[1:], ask_p[:-1]
        body = e[1:]
        tmp = np.empty(n - 1)
        np.multiply(bp >= bp0, bid_q[1:], out=body)
        np.multiply(bp <= bp0, bid_q[:-1], out=tmp)
        body -= tmp
        np.multiply(ap <= ap0, ask_q[1:], out=tmp)
        body -= tmp
        np.multiply(ap >= ap0, ask_q[:-1], out=tmp)
        body += tmp
    return e


def order_flow_imbalance(book: np.ndarray, window: int) -> np.ndarray:
    """Order-flow imbalance summed over the last ``window`` events (shares)."""
    return rolling_sum(order_flow_imbalance_increments(book), window)


def one_event_log_returns(mid: np.ndarray) -> np.ndarray:
    """log(mid_t / mid_t-1), shape (n,); NaN at row 0 and wherever either mid is missing."""
    mid = np.asarray(mid, dtype=np.float64)
    out = np.full(mid.shape, np.nan)
    if len(mid) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            logm = np.log(mid)
        np.subtract(logm[1:], logm[:-1], out=out[1:])
    return out


def log_return(mid: np.ndarray, window: int) -> np.ndarray:
    """log(mid_t / mid_max(0,t-w)) over the last ``window`` events; NaN where either mid is missing."""
    _check_window(window)
    mid = np.asarray(mid, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        logm = np.log(mid)
    out = np.empty(mid.shape)
    head = min(window, len(mid))
    np.subtract(logm[:head], logm[:1], out=out[:head])
    np.subtract(logm[window:], logm[:-window], out=out[window:])
    return out


def realised_volatility(mid: np.ndarray, window: int) -> np.ndarray:
    """sqrt of the sum of squared one-event log returns over the last ``window`` events.

    NaN for windows that contain a missing mid (an empty side of the book).
    """
    _check_window(window)
    r = one_event_log_returns(mid)
    r[:1] = 0.0  # no move before the first state
    bad = ~np.isfinite(r)
    sq = np.where(bad, 0.0, r * r)
    total = rolling_sum(sq, window)
    if bad.any():
        total[rolling_sum(bad.astype(np.float64), window) > 0] = np.nan
    # A cumulative-sum difference of non-negative terms can come out at -1e-20; clip before the root.
    return np.sqrt(np.maximum(total, 0.0, where=~np.isnan(total), out=total))


def executions(event_type: np.ndarray) -> np.ndarray:
    """1.0 where the event is an execution (LOBSTER type 4 or 5), else 0.0."""
    t = np.asarray(event_type)
    return ((t == EXECUTION_TYPES[0]) | (t == EXECUTION_TYPES[1])).astype(np.float64)


def signed_trade_volume_increments(event_type: np.ndarray, size: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Aggressor-signed executed shares per event: +size buyer-initiated, -size seller-initiated, 0 otherwise.

    The aggressor's sign is ``-direction``: executing a sell limit order (direction -1) is a buy.
    """
    return executions(event_type) * np.asarray(size, dtype=np.float64) * -np.asarray(direction, dtype=np.float64)


def signed_trade_volume(event_type: np.ndarray, size: np.ndarray, direction: np.ndarray, window: int) -> np.ndarray:
    """Net aggressor-signed executed shares over the last ``window`` events."""
    return rolling_sum(signed_trade_volume_increments(event_type, size, direction), window)


def trade_intensity(event_type: np.ndarray, window: int) -> np.ndarray:
    """Executions per event over the last ``window`` events (event-clock intensity)."""
    return trade_intensity_from_counts(executions(event_type), window)


def trade_intensity_from_counts(counts: np.ndarray, window: int) -> np.ndarray:
    """Like :func:`trade_intensity` from per-row execution counts (e.g. aggregated onto a sampled stream).

    On a sampled stream whose rows carry the executions since the previous sampled row (see
    :func:`aggregate_increments`) this can exceed 1.
    """
    return rolling_sum(counts, window) / window


def aggregate_increments(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sum per-event increments onto a sampled stream: row j gets ``x[index[j-1]+1 .. index[j]]``.

    Row 0 gets everything up to ``index[0]``. Lets trade flow and OFI that happen between sampled rows
    (e.g. hidden executions, which do not move the book) count towards the next sampled row.
    """
    c = np.cumsum(np.asarray(x, dtype=np.float64))[np.asarray(index)]
    out = np.empty(c.shape)
    if len(c):
        out[0] = c[0]
        np.subtract(c[1:], c[:-1], out=out[1:])
    return out
