"""Conversion of canonical events to hftbacktest's market-by-price feed (checked by hand, no hftbacktest needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hftpipe.trading.hftbacktest_data import (
    BOTH,
    BUY_EVENT,
    DEPTH_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    to_hftbacktest_l2,
)


def test_depth_and_trade_events_by_hand() -> None:
    cols = ["time", "type", "order_id", "size", "price", "direction", "ask_price_1", "ask_size_1", "bid_price_1",
            "bid_size_1"]
    events = pd.DataFrame([
        (1.0, 1, 1, 100, 10.00, 1, 10.01, 50, 10.00, 100),  # the first row only seeds the book
        (2.0, 1, 2, 30, 10.01, -1, 10.01, 80, 10.00, 100),  # new ask: level 10.01 now 80
        (3.0, 4, 1, 100, 10.00, 1, 10.01, 80, 9.99, 20),  # bid 10.00 executed away by a seller
        (4.0, 5, 0, 7, 10.01, -1, 10.01, 80, 9.99, 20),  # hidden sell executed by a buyer: a trade only
        (5.0, 1, 3, 5, 9.00, 1, 10.01, 80, 9.99, 20),  # deeper than the (full) 1-level book: skipped
    ], columns=cols)
    feed = to_hftbacktest_l2(events, feed_latency_s=0.001)
    got = [(int(e["ev"]), int(e["exch_ts"]), int(e["local_ts"] - e["exch_ts"]), float(e["px"]), float(e["qty"]))
           for e in feed]
    depth_bid, depth_ask = DEPTH_EVENT | BOTH | BUY_EVENT, DEPTH_EVENT | BOTH | SELL_EVENT
    assert got == [
        (depth_bid, 1_000_000_000, 1_000_000, 10.00, 100.0),
        (depth_ask, 1_000_000_000, 1_000_000, 10.01, 50.0),
        (depth_ask, 2_000_000_000, 1_000_000, 10.01, 80.0),
        (TRADE_EVENT | BOTH | SELL_EVENT, 3_000_000_000, 1_000_000, 10.00, 100.0),  # seller-initiated
        (depth_bid, 3_000_000_000, 1_000_000, 10.00, 0.0),  # level emptied
        (TRADE_EVENT | BOTH | BUY_EVENT, 4_000_000_000, 1_000_000, 10.01, 7.0),
    ]
    assert len(to_hftbacktest_l2(events, hidden_trades=False)) == len(feed) - 1
    assert np.all(np.diff(feed["exch_ts"]) >= 0)
