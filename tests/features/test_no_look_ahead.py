"""No look-ahead: cutting off (or scrambling) future rows never changes a feature's past values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

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
    rolling_sum,
    sample_indices,
    signed_trade_volume,
    spread,
    top_of_book_changes,
    trade_intensity,
)
from hftpipe.features.flow import (
    aggregate_increments,
    executions,
    one_event_log_returns,
    signed_trade_volume_increments,
    trade_intensity_from_counts,
)

CUTS = (1, 2, 57, 1000, 2999)

# Every feature function as f(frame) -> array whose row i is the feature at event i.
Feature = Callable[[pd.DataFrame], np.ndarray]


def _book(f: pd.DataFrame) -> np.ndarray:
    return f.iloc[:, 6:].to_numpy(dtype=float)


def _mid(f: pd.DataFrame) -> np.ndarray:
    return mid_price(_book(f))


FEATURES: dict[str, Feature] = {
    "mid_price": lambda f: mid_price(_book(f)),
    "spread": lambda f: spread(_book(f)),
    "microprice": lambda f: microprice(_book(f)),
    "depth_imbalance": lambda f: depth_imbalance(_book(f)),
    "cumulative_depth_imbalance": lambda f: cumulative_depth_imbalance(_book(f)),
    "ofi_increments": lambda f: order_flow_imbalance_increments(_book(f)),
    "top_of_book_changes": lambda f: top_of_book_changes(_book(f)),
    "one_event_log_returns": lambda f: one_event_log_returns(_mid(f)),
    "executions": lambda f: executions(f["type"]),
    "signed_trade_volume_increments": lambda f: signed_trade_volume_increments(f["type"], f["size"], f["direction"]),
}
for _w in (1, 10, 100):
    FEATURES |= {
        f"rolling_sum_w{_w}": lambda f, w=_w: rolling_sum(f["size"].to_numpy(dtype=float), w),
        f"order_flow_imbalance_w{_w}": lambda f, w=_w: order_flow_imbalance(_book(f), w),
        f"log_return_w{_w}": lambda f, w=_w: log_return(_mid(f), w),
        f"realised_volatility_w{_w}": lambda f, w=_w: realised_volatility(_mid(f), w),
        f"signed_trade_volume_w{_w}": lambda f, w=_w: signed_trade_volume(f["type"], f["size"], f["direction"], w),
        f"trade_intensity_w{_w}": lambda f, w=_w: trade_intensity(f["type"], w),
        f"trade_intensity_from_counts_w{_w}": lambda f, w=_w: trade_intensity_from_counts(executions(f["type"]), w),
    }


def _scramble_after(frame: pd.DataFrame, cut: int, seed: int = 0) -> pd.DataFrame:
    """Replace every row from ``cut`` on with other real rows (shuffled), keeping rows before ``cut``."""
    rng = np.random.default_rng(seed)
    future = frame.iloc[cut:]
    shuffled = future.iloc[rng.permutation(len(future))]
    return pd.concat([frame.iloc[:cut], shuffled], ignore_index=True)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_cutting_off_the_future_keeps_the_past(goog10_slice, name) -> None:
    feature = FEATURES[name]
    full = np.asarray(feature(goog10_slice), dtype=float)
    assert len(full) == len(goog10_slice)
    for cut in CUTS:
        past = np.asarray(feature(goog10_slice.iloc[:cut]), dtype=float)
        np.testing.assert_array_equal(past, full[:cut], err_msg=f"{name} changed before row {cut}")
        scrambled = np.asarray(feature(_scramble_after(goog10_slice, cut)), dtype=float)
        np.testing.assert_array_equal(scrambled[:cut], full[:cut], err_msg=f"{name} looked past row {cut}")


@pytest.mark.parametrize("sampling", ["all", "top_of_book"])
def test_compute_features_has_no_look_ahead(goog10_slice, sampling) -> None:
    """Every column of the full feature set, on both sampled streams, with aggregation between samples."""
    windows = (1, 10, 100)

    def run(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        book = _book(frame)
        idx = sample_indices(book, sampling)
        out = compute_features(book, frame["type"].to_numpy(), frame["size"].to_numpy(),
                               frame["direction"].to_numpy(), windows, None if sampling == "all" else idx)
        return idx, out

    idx_full, full = run(goog10_slice)
    assert list(full) == ["mid"] + feature_names(10, windows)
    for cut in CUTS:
        for frame in (goog10_slice.iloc[:cut], _scramble_after(goog10_slice, cut, seed=cut)):
            idx, out = run(frame)
            kept = int(np.searchsorted(idx, cut))  # sampled rows that are events before the cut
            np.testing.assert_array_equal(idx[:kept], idx_full[:kept])
            for name, values in out.items():
                np.testing.assert_array_equal(values[:kept], full[name][:kept], err_msg=f"{name} at cut {cut}")


def test_the_scramble_really_changes_the_future(goog10_slice) -> None:
    """Guard for the property test above: it must compare against genuinely different futures."""
    scrambled = _scramble_after(goog10_slice, 1000)
    ofi = order_flow_imbalance(_book(goog10_slice), 10)
    assert not np.array_equal(order_flow_imbalance(_book(scrambled), 10)[1100:], ofi[1100:])


def test_aggregation_onto_a_sampled_stream_is_causal(goog10_slice) -> None:
    x = signed_trade_volume_increments(goog10_slice["type"], goog10_slice["size"], goog10_slice["direction"])
    idx = sample_indices(_book(goog10_slice), "top_of_book")
    full = aggregate_increments(x, idx)
    for cut in CUTS:
        kept = int(np.searchsorted(idx, cut))
        np.testing.assert_array_equal(aggregate_increments(x[:cut], idx[:kept]), full[:kept])
