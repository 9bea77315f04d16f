"""Our canonical LOBSTER events as hftbacktest (2.x) market-by-price feed events, for cross-checking fills.

hftbacktest is not a dependency (its 2.4.4 wheel pins numpy < 2.3, see bench/hftbacktest_crosscheck.py):
this module only writes its documented ``event_dtype`` with numpy, so the converted feed can be saved and
replayed by an hftbacktest installed elsewhere.

Mapping (one canonical event -> one or two feed events, exchange time in ns, local = exchange + feed latency):

- types 1-4: a ``DEPTH_EVENT`` on the event's side at its price with the level's size AFTER the event
  (0 when the level emptied); events deeper than the visible book are skipped;
- types 4 and 5: first a ``TRADE_EVENT`` (initiator = the other side of the resting order), price, size;
- the book after the first event is sent first, level by level, as the initial depth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hftpipe.data.schema import book_matrix, levels_of

EVENT_DTYPE = np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
                        ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True)
DEPTH_EVENT, TRADE_EVENT = 1, 2
EXCH_EVENT, LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 31, 1 << 30, 1 << 29, 1 << 28
BOTH = EXCH_EVENT | LOCAL_EVENT


def to_ns(seconds: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64)


def to_hftbacktest_l2(events: pd.DataFrame, feed_latency_s: float = 0.0, hidden_trades: bool = True) -> np.ndarray:
    """Feed events (hftbacktest ``event_dtype``) of a canonical event table; see the module docstring.

    ``hidden_trades=False`` leaves out the trades of hidden orders (type 5), which the visible book
    never showed.
    """
    n = len(events)
    if n == 0:
        raise ValueError("no events to convert")
    levels = levels_of(events)
    book = book_matrix(events, levels)
    ts = to_ns(events["time"].to_numpy())
    etype = events["type"].to_numpy()
    price = events["price"].to_numpy(dtype=np.float64)
    size = events["size"].to_numpy(dtype=np.float64)
    side = events["direction"].to_numpy()
    lat = round(feed_latency_s * 1e9)

    # Size at the event's price on its side after the event: match the price among that side's levels.
    cols = np.arange(levels) * 4
    side_px = np.where(side[:, None] > 0, book[:, cols + 2], book[:, cols])
    side_sz = np.where(side[:, None] > 0, book[:, cols + 3], book[:, cols + 1])
    ticks = np.round(price * 1e4)
    match = np.round(np.nan_to_num(side_px, nan=-1.0) * 1e4) == ticks[:, None]
    level_qty = np.where(match, side_sz, 0.0).sum(axis=1)
    visible = np.isfinite(side_px)
    worst = np.where(side > 0, np.nanmin(np.where(visible, side_px, np.inf), axis=1),
                     np.nanmax(np.where(visible, side_px, -np.inf), axis=1))
    full = visible.all(axis=1)
    inside = match.any(axis=1) | ~full | (side * (price - worst) >= 0)
    depth_rows = np.flatnonzero((etype <= 4) & inside)
    depth_rows = depth_rows[depth_rows > 0]
    trade_rows = np.flatnonzero((etype == 4) | ((etype == 5) & hidden_trades))
    trade_rows = trade_rows[trade_rows > 0]

    init = []
    for k in range(levels):
        for s, pc, qc in ((1, 4 * k + 2, 4 * k + 3), (-1, 4 * k, 4 * k + 1)):
            if np.isfinite(book[0, pc]) and book[0, qc] > 0:
                init.append((s, book[0, pc], book[0, qc]))
    out = np.zeros(len(init) + depth_rows.size + trade_rows.size, dtype=EVENT_DTYPE)
    for j, (s, px, qty) in enumerate(init):
        out[j] = (DEPTH_EVENT | BOTH | (BUY_EVENT if s > 0 else SELL_EVENT), ts[0], ts[0] + lat, px, qty, 0, 0, 0.0)
    body = np.zeros(depth_rows.size + trade_rows.size, dtype=EVENT_DTYPE)
    # Sort key: event row, trade (0) before depth (1) within a row.
    key = np.concatenate([depth_rows * 2 + 1, trade_rows * 2])
    rows = np.concatenate([depth_rows, trade_rows])
    is_trade = np.concatenate([np.zeros(depth_rows.size, bool), np.ones(trade_rows.size, bool)])
    order = np.argsort(key, kind="stable")
    rows, is_trade = rows[order], is_trade[order]
    resting_buy = side[rows] > 0
    # A trade's side flag is its initiator: a buy resting order executed means a seller hit it.
    side_flag = np.where(is_trade, np.where(resting_buy, SELL_EVENT, BUY_EVENT),
                         np.where(resting_buy, BUY_EVENT, SELL_EVENT)).astype(np.uint64)
    body["ev"] = np.where(is_trade, TRADE_EVENT, DEPTH_EVENT).astype(np.uint64) | np.uint64(BOTH) | side_flag
    body["exch_ts"] = ts[rows]
    body["local_ts"] = ts[rows] + lat
    body["px"] = price[rows]
    body["qty"] = np.where(is_trade, size[rows], level_qty[rows])
    out[len(init):] = body
    return out
