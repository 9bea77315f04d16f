"""The model's book window: relative to the current mid, instrument-agnostic, stats from training only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftpipe.data import EventTable
from hftpipe.features import WindowStats, fit_window_stats, model_input, relative_book, window_indices


@pytest.fixture(scope="module")
def book10(goog10_table: EventTable) -> np.ndarray:
    return goog10_table.book()[:5000]


def test_relative_book_by_hand(book10: np.ndarray) -> None:
    window = book10[100:105]
    rel = relative_book(window)
    ask, bid = window[-1, 0], window[-1, 2]
    mid = (ask + bid) / 2
    # Every state in the window is measured from the LAST state's mid (the one known at prediction time).
    assert rel[0, 4] == pytest.approx((window[0, 4] - mid) / mid * 1e4, rel=1e-6)  # ask_price_2 of row 100
    assert rel[-1, 0] == pytest.approx((ask - mid) / mid * 1e4, rel=1e-6)
    assert rel[-1, 2] == pytest.approx((bid - mid) / mid * 1e4, rel=1e-6)
    assert rel[2, 3] == pytest.approx(math.log1p(window[2, 3]), rel=1e-6)
    assert rel.dtype == np.float32 and rel.shape == window.shape


def test_relative_book_is_instrument_agnostic(book10: np.ndarray) -> None:
    """GOOG at ~$580 and the same book rescaled to ~$222 (AMZN that day) look the same to a model."""
    windows = book10[window_indices(np.arange(200, 260), 20)]
    scaled = windows.copy()
    scaled[..., 0::2] *= 222.0 / 580.0
    np.testing.assert_allclose(relative_book(scaled), relative_book(windows), rtol=1e-4, atol=1e-3)


def test_empty_levels_repeat_the_level_above() -> None:
    nan = math.nan
    raw = np.array([[[100.02, 5, 100.00, 15, nan, 0, 99.98, 7]]])
    rel = relative_book(raw)[0, 0]
    assert rel[4] == rel[0] and rel[5] == 0.0  # empty ask level 2: price of ask 1, log1p(0)
    assert rel[6] == pytest.approx((99.98 - 100.01) / 100.01 * 1e4, rel=1e-5)


def test_windows_end_at_their_row() -> None:
    idx = window_indices(np.array([9, 30]), 10)
    assert idx.tolist()[0] == list(range(10)) and idx[:, -1].tolist() == [9, 30]


def test_window_stats_come_from_training_rows_only(book10: np.ndarray) -> None:
    train_ends = np.arange(49, 3000)
    stats = fit_window_stats(book10, train_ends, 50)
    changed = book10.copy()
    changed[3000:, 0::2] += 5.0  # everything after the training rows moves
    changed[3000:, 1::2] *= 3.0
    again = fit_window_stats(changed, train_ends, 50)
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.std, stats.std)
    back = WindowStats.from_dict(json_round_trip(stats))
    np.testing.assert_array_equal(back.mean, stats.mean)
    x = model_input(book10[window_indices(np.arange(100, 110), 50)], stats)
    assert x.shape == (10, 50, 40) and x.dtype == np.float32 and np.isfinite(x).all()


def json_round_trip(stats: WindowStats) -> dict:
    import json

    return json.loads(stats.dumps())
