"""Feature values against numbers worked out by hand on the first events of the real GOOG files.

GOOG 2012-06-21, 1 level, rows 0-11 (time, type, size, direction; best ask price/size, best bid price/size):

    0  4    4 +1   580.23 100  579.40 496
    1  4  300 +1   580.23 100  579.40 196
    2  5    1 +1   580.23 100  579.40 196   (hidden executions: the book does not move)
    3  5    1 +1   ...
    4  5    1 +1   ...
    5  5    1 +1   ...
    6  4  167 +1   580.23 100  579.40  29
    7  1  100 +1   580.23 100  579.40 129
    8  1   25 -1   579.89  25  579.40 129
    9  4   29 +1   579.89  25  579.40 100
   10  4  100 +1   579.89  25  579.12 100
   11  1    1 -1   579.40   1  579.12 100
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftpipe.data import EventTable
from hftpipe.features import (
    compute_features,
    cumulative_depth_imbalance,
    depth_imbalance,
    feature_names,
    log_return,
    microprice,
    mid_price,
    order_flow_imbalance,
    order_flow_imbalance_increments,
    realised_volatility,
    sample_indices,
    signed_trade_volume,
    spread,
    trade_intensity,
)
from hftpipe.features.flow import aggregate_increments, executions, signed_trade_volume_increments


@pytest.fixture(scope="module")
def head(goog1_table: EventTable):
    frame = goog1_table.frame.iloc[:12]
    return frame, frame[["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]].to_numpy()


def test_the_slice_is_what_the_docstring_says(head) -> None:
    frame, book = head
    assert frame["type"].tolist() == [4, 4, 5, 5, 5, 5, 4, 1, 1, 4, 4, 1]
    assert book[0].tolist() == [580.23, 100, 579.40, 496]
    assert book[11].tolist() == [579.40, 1, 579.12, 100]


def test_mid_spread_microprice_by_hand(head) -> None:
    _, book = head
    assert mid_price(book)[0] == pytest.approx((580.23 + 579.40) / 2)
    assert mid_price(book)[11] == pytest.approx(579.26)
    assert spread(book)[0] == pytest.approx(0.83)
    assert spread(book)[8] == pytest.approx(0.49)
    # Microprice leans to the thin side: 496 shares bid vs 100 offered pull it up towards the ask.
    assert microprice(book)[0] == pytest.approx((580.23 * 496 + 579.40 * 100) / 596)
    assert microprice(book)[11] == pytest.approx((579.40 * 100 + 579.12 * 1) / 101)


def test_depth_imbalance_by_hand(head, goog10_slice) -> None:
    _, book = head
    assert depth_imbalance(book)[0, 0] == pytest.approx((496 - 100) / 596)
    assert depth_imbalance(book)[8, 0] == pytest.approx((129 - 25) / 154)
    # 10 levels: cumulative over the first k levels, in plain Python on a few rows.
    book10 = goog10_slice.iloc[:6].to_numpy()[:, 6:].astype(float)
    cum = cumulative_depth_imbalance(book10)
    per = depth_imbalance(book10)
    for i in range(6):
        bids = asks = 0.0
        for k in range(10):
            bid, ask = book10[i, 4 * k + 3], book10[i, 4 * k + 1]
            bids, asks = bids + bid, asks + ask
            assert cum[i, k] == pytest.approx((bids - asks) / (bids + asks))
            assert per[i, k] == pytest.approx((bid - ask) / (bid + ask) if bid + ask else 0.0)


def test_order_flow_imbalance_by_hand(head) -> None:
    _, book = head
    e = order_flow_imbalance_increments(book)
    # Row 1: same bid price, bid size 496 -> 196: +196 - 496 = -300 (the 300-share sell).
    # Row 7: a 100-share bid joins at the same price: +100. Row 8: the ask improves to 579.89 with 25
    # shares: -25. Row 10: the bid drops to 579.12: the old 100 shares leave, -100.
    # Row 11: the ask improves to 579.40 with 1 share: -1 (the old ask's 25 shares no longer count).
    assert e.tolist() == [0, -300, 0, 0, 0, 0, -167, 100, -25, -29, -100, -1]
    w3 = order_flow_imbalance(book, 3)
    assert w3[10] == -25 - 29 - 100
    assert w3[:3].tolist() == [0, -300, -300]  # warm-up: the rows there are


def test_log_return_and_realised_volatility_by_hand(head) -> None:
    _, book = head
    mids = [(a + b) / 2 for a, b in zip(book[:, 0], book[:, 2])]
    assert log_return(mids, 3)[11] == pytest.approx(math.log(579.26 / 579.645))
    steps = [math.log(mids[i] / mids[i - 1]) for i in (9, 10, 11)]
    assert realised_volatility(mids, 3)[11] == pytest.approx(math.sqrt(sum(s * s for s in steps)))
    assert realised_volatility(mids, 3)[5] == 0.0  # the mid did not move in rows 2-5
    assert log_return(mids, 3)[:3].tolist() == [0, 0, 0] and realised_volatility(mids, 3)[:3].tolist() == [0, 0, 0]
    assert log_return(mids, 20)[11] == pytest.approx(math.log(579.26 / 579.815))  # warm-up: from row 0


def test_signed_trade_volume_and_intensity_by_hand(head) -> None:
    frame, _ = head
    t, s, d = frame["type"].to_numpy(), frame["size"].to_numpy(), frame["direction"].to_numpy()
    # Every execution here hits a buy limit order (direction +1): seller-initiated, negative.
    assert signed_trade_volume_increments(t, s, d).tolist() == [-4, -300, -1, -1, -1, -1, -167, 0, 0, -29, -100, 0]
    assert signed_trade_volume(t, s, d, 3)[10] == 0 - 29 - 100
    assert signed_trade_volume(t, s, d, 3)[6] == -1 - 1 - 167
    assert trade_intensity(t, 3)[5] == 1.0
    assert trade_intensity(t, 3)[10] == pytest.approx(2 / 3)
    assert trade_intensity(t, 3)[8] == pytest.approx(1 / 3)
    assert trade_intensity(t, 3)[:2].tolist() == [pytest.approx(1 / 3), pytest.approx(2 / 3)]  # divides by w
    assert signed_trade_volume(t, s, d, 3)[:2].tolist() == [-4, -304]


def test_an_execution_of_a_sell_order_is_a_buy() -> None:
    t, s, d = np.array([4, 5, 1, 4]), np.array([10, 3, 50, 7]), np.array([-1, -1, -1, 1])
    assert signed_trade_volume_increments(t, s, d).tolist() == [10, 3, 0, -7]


def test_top_of_book_sampling_carries_flow_between_samples(head) -> None:
    frame, book = head
    idx = sample_indices(book, "top_of_book")
    # Rows 2-5 are hidden executions that leave the book as it was: not sampled.
    assert idx.tolist() == [0, 1, 6, 7, 8, 9, 10, 11]
    signed = aggregate_increments(signed_trade_volume_increments(frame["type"], frame["size"], frame["direction"]),
                                  idx)
    assert signed.tolist() == [-4, -300, -171, 0, 0, -29, -100, 0]  # the four hidden 1-share trades land on row 6
    counts = aggregate_increments(executions(frame["type"]), idx)
    assert counts.tolist() == [1, 1, 5, 0, 0, 1, 1, 0]


@pytest.mark.parametrize("sampling", ["all", "top_of_book"])
def test_compute_features_matches_the_single_feature_functions(goog10_slice, sampling) -> None:
    frame = goog10_slice
    book = frame.iloc[:, 6:].to_numpy(dtype=float)
    t, s, d = frame["type"].to_numpy(), frame["size"].to_numpy(), frame["direction"].to_numpy()
    idx = sample_indices(book, sampling)
    windows = (1, 7, 40)
    out = compute_features(book, t, s, d, windows, None if sampling == "all" else idx)
    assert list(out) == ["mid"] + feature_names(10, windows)
    sb = book[idx]
    mid = mid_price(sb)
    np.testing.assert_array_equal(out["mid"], mid)
    np.testing.assert_array_equal(out["spread"], spread(sb))
    np.testing.assert_array_equal(out["microprice"], microprice(sb))
    np.testing.assert_array_equal(out["cum_depth_imbalance_3"], cumulative_depth_imbalance(sb)[:, 2])
    ofi = aggregate_increments(order_flow_imbalance_increments(book), idx)
    signed = aggregate_increments(signed_trade_volume_increments(t, s, d), idx)
    counts = aggregate_increments(executions(t), idx)
    from hftpipe.features.flow import rolling_sum, trade_intensity_from_counts

    for w in windows:
        np.testing.assert_allclose(out[f"ofi_w{w}"], rolling_sum(ofi, w), equal_nan=True)
        np.testing.assert_allclose(out[f"signed_volume_w{w}"], rolling_sum(signed, w), equal_nan=True)
        np.testing.assert_allclose(out[f"trade_intensity_w{w}"], trade_intensity_from_counts(counts, w),
                                   equal_nan=True)
        np.testing.assert_allclose(out[f"log_return_w{w}"], log_return(mid, w), equal_nan=True)
        np.testing.assert_allclose(out[f"realised_vol_w{w}"], realised_volatility(mid, w), rtol=1e-9,
                                   atol=1e-15, equal_nan=True)
    assert all(np.isfinite(v).all() for v in out.values())  # this slice has both sides quoted throughout


def test_empty_levels_and_an_empty_side() -> None:
    """LOBSTER pads missing levels (price NaN, size 0 after loading); a side can empty in a thin book."""
    nan = math.nan
    book = np.array([
        [100.02, 5, 100.00, 15, 100.03, 10, nan, 0],  # level 2: only the ask side is quoted
        [100.02, 5, 100.00, 15, nan, 0, nan, 0],      # level 2 empty on both sides
        [100.02, 5, nan, 0, nan, 0, nan, 0],          # the bid side is empty
    ], dtype=float)
    assert depth_imbalance(book)[:, 1].tolist() == [-1.0, 0.0, 0.0]
    assert depth_imbalance(book)[2, 0] == -1.0
    assert cumulative_depth_imbalance(book)[:, 1].tolist() == [0.0, pytest.approx(0.5), -1.0]
    assert np.isnan(mid_price(book)[2]) and np.isnan(microprice(book)[2]) and np.isnan(spread(book)[2])
    # The bid emptying (price -inf, size 0) removes its 15 shares of bid pressure.
    assert order_flow_imbalance_increments(book).tolist() == [0.0, 0.0, -15.0]
    assert np.isnan(realised_volatility(mid_price(book), 2)[2])


def test_the_benchmark_naive_loop_computes_the_same_features(goog10_slice) -> None:
    """bench/features.py compares against this loop; keep it honest (same columns, same numbers)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    frame = goog10_slice.iloc[:700]
    book = frame.iloc[:, 6:].to_numpy(dtype=float)
    t, s, d = frame["type"].to_numpy(), frame["size"].to_numpy(), frame["direction"].to_numpy()
    windows = (3, 50, 100)
    vec = compute_features(book, t, s, d, windows)
    naive = np.asarray(bench.naive_features(book.tolist(), t.tolist(), s.tolist(), d.tolist(), windows))
    np.testing.assert_allclose(naive, np.column_stack(list(vec.values())), rtol=1e-9, atol=1e-12)
