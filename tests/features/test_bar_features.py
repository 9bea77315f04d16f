"""Bar features and labels: hand-computed values on real SPY bars, no look-ahead, horizons in bars."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from hftpipe.data.bars import BarTable, load_bars, with_frame
from hftpipe.features.bars import (
    bar_feature_names,
    bar_feature_set,
    bar_features,
    bar_labels,
    bar_range,
    forward_log_return,
    lagged_log_return,
    realised_volatility,
    volume_zscore,
)
from hftpipe.features.labels import DOWN, STATIONARY, UNDEFINED, UP
from hftpipe.features.splits import PURGED, TEST, TRAIN, VAL
from tests.conftest import RAW

SPY = RAW / "spy-1min-2011-01" / "nt-spy-minute-2011.csv.gz"
CUTS = (1, 2, 16, 61, 500, 2999)


@pytest.fixture(scope="module")
def spy() -> BarTable:
    return load_bars(SPY)


@pytest.fixture(scope="module")
def spy_slice(spy) -> BarTable:
    """The first 3000 bars: pre-market, two regular sessions, after-hours and the day boundaries."""
    return with_frame(spy, spy.frame.iloc[:3000])


def test_values_by_hand_on_real_bars(spy_slice) -> None:
    f = spy_slice.frame
    close, high, low, vol = (f[c].to_numpy() for c in ("close", "high", "low", "volume"))
    out = bar_features(spy_slice, volume_window=20)
    assert list(out.columns) == ["ts", "symbol"] + bar_feature_names(volume_window=20)
    t = 40
    assert out["ret_1"].iat[t] == pytest.approx(np.log(close[t] / close[t - 1]), abs=1e-15)
    assert out["ret_15"].iat[t] == pytest.approx(np.log(close[t] / close[t - 15]), abs=1e-15)
    one = np.log(close[t - 14:t + 1] / close[t - 15:t])
    assert out["rv_15"].iat[t] == pytest.approx(np.sqrt(np.sum(one ** 2)), rel=1e-9)
    assert out["range_1"].iat[t] == pytest.approx(np.log(high[t] / low[t]))
    assert out["range_15"].iat[t] == pytest.approx(np.log(high[t - 14:t + 1].max() / low[t - 14:t + 1].min()))
    window = np.log1p(vol[t - 19:t + 1])
    assert out["volume_z_20"].iat[t] == pytest.approx((window[-1] - window.mean()) / window.std(), rel=1e-9)
    # Warm-up: NaN until a window is full.
    assert np.isnan(out["ret_15"].iat[14]) and np.isfinite(out["ret_15"].iat[15])
    assert np.isnan(out["rv_15"].iat[14]) and np.isfinite(out["rv_15"].iat[15])
    assert np.isnan(out["volume_z_20"].iat[18]) and np.isfinite(out["volume_z_20"].iat[19])


def test_time_of_day_is_exchange_time_in_winter_and_summer() -> None:
    """09:30 New York is 14:30 UTC in January and 13:30 UTC in July: the same time-of-day feature."""
    ts = pd.to_datetime(["2019-01-15 14:30", "2019-07-15 13:30", "2019-07-15 14:30"]).tz_localize("UTC")
    frame = pd.DataFrame({"ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
                          "symbol": "XYZ"})
    from hftpipe.data.bars import BarMeta

    meta = BarMeta("XYZ", "test", "UTC", "America/New_York", "1min", "open", 3, "", "", "", "", "test")
    out = bar_features(BarTable(frame, meta))
    angle = 2 * np.pi * (9.5 / 24)
    np.testing.assert_allclose(out["tod_sin"].to_numpy()[:2], np.sin(angle))
    np.testing.assert_allclose(out["tod_cos"].to_numpy()[:2], np.cos(angle))
    assert out["tod_sin"].iat[2] != pytest.approx(np.sin(angle))


def test_labels_by_hand(spy_slice) -> None:
    close = spy_slice.frame["close"].to_numpy()
    alpha = 2e-4
    labels, alphas = bar_labels(spy_slice, (1, 5), alpha=alpha)
    assert alphas == {1: alpha, 5: alpha}
    r5 = np.log(close[5:] / close[:-5])
    np.testing.assert_allclose(labels["fwd_ret_5"].to_numpy()[:-5], r5)
    expected = np.where(r5 > alpha, UP, np.where(r5 < -alpha, DOWN, STATIONARY))
    np.testing.assert_array_equal(labels["label_k5"].to_numpy()[:-5], expected)
    assert (labels["label_k5"].to_numpy()[-5:] == UNDEFINED).all()
    assert {DOWN, STATIONARY, UP} <= set(labels["label_k1"].unique())
    with pytest.raises(ValueError, match="train_mask"):
        bar_labels(spy_slice, (1,))


def test_day_groups_restart_windows_and_labels(spy_slice) -> None:
    out = bar_features(spy_slice, group="day")
    labels, _ = bar_labels(spy_slice, (5,), alpha=0.0, group="day")
    local_day = spy_slice.frame["ts"].dt.tz_convert("America/New_York").dt.date
    first = (local_day != local_day.shift()).to_numpy()
    last = (local_day != local_day.shift(-1)).to_numpy()
    assert first.sum() >= 4
    assert np.isnan(out["ret_1"].to_numpy()[first]).all()
    assert (labels["label_k5"].to_numpy()[last] == UNDEFINED).all()
    # Whole-symbol windows do cross the overnight gap.
    assert np.isfinite(bar_features(spy_slice)["ret_1"].to_numpy()[first][1:]).all()


# --------------------------------------------------------------------------------------------------
# No look-ahead (same pattern as tests/features/test_no_look_ahead.py)

Feature = Callable[[BarTable], np.ndarray]
FEATURES: dict[str, Feature] = {
    "lagged_log_return_1": lambda t: lagged_log_return(t.frame["close"].to_numpy(), 1),
    "lagged_log_return_15": lambda t: lagged_log_return(t.frame["close"].to_numpy(), 15),
    "realised_volatility_15": lambda t: realised_volatility(t.frame["close"].to_numpy(), 15),
    "bar_range_15": lambda t: bar_range(t.frame["high"].to_numpy(), t.frame["low"].to_numpy(), 15),
    "volume_zscore_60": lambda t: volume_zscore(t.frame["volume"].to_numpy(), 60),
}
for _group in ("symbol", "day"):
    for _name in bar_feature_names():
        FEATURES[f"bar_features[{_group}].{_name}"] = (
            lambda t, n=_name, g=_group: bar_features(t, group=g)[n].to_numpy(dtype=float))


def _scramble_after(table: BarTable, cut: int, seed: int = 0) -> BarTable:
    """Replace the prices and volumes of every bar from ``cut`` on with other real bars' (shuffled)."""
    rng = np.random.default_rng(seed)
    frame = table.frame.copy()
    cols = ["open", "high", "low", "close", "volume"]
    future = frame.loc[cut:, cols].to_numpy()
    frame.loc[cut:, cols] = future[rng.permutation(len(future))]
    return with_frame(table, frame)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_cutting_off_the_future_keeps_the_past(spy_slice, name) -> None:
    feature = FEATURES[name]
    full = np.asarray(feature(spy_slice), dtype=float)
    assert len(full) == len(spy_slice.frame)
    for cut in CUTS:
        past = np.asarray(feature(with_frame(spy_slice, spy_slice.frame.iloc[:cut])), dtype=float)
        np.testing.assert_array_equal(past, full[:cut], err_msg=f"{name} changed before row {cut}")
        scrambled = np.asarray(feature(_scramble_after(spy_slice, cut)), dtype=float)
        np.testing.assert_array_equal(scrambled[:cut], full[:cut], err_msg=f"{name} looked past row {cut}")


def test_the_scramble_really_changes_the_future(spy_slice) -> None:
    full = bar_features(spy_slice)["ret_5"].to_numpy()
    scrambled = bar_features(_scramble_after(spy_slice, 1000))["ret_5"].to_numpy()
    assert not np.allclose(full[1100:], scrambled[1100:], equal_nan=True)


@pytest.mark.parametrize("h", [1, 5, 15])
def test_label_at_t_reads_only_bars_t_to_t_plus_h(spy_slice, h) -> None:
    """Changing a bar after t+h leaves label t alone; changing bar t+h changes the return."""
    close = spy_slice.frame["close"].to_numpy()
    full = forward_log_return(close, h)
    for cut in CUTS[2:]:
        moved = close.copy()
        moved[cut:] *= 1.01
        shifted = forward_log_return(moved, h)
        np.testing.assert_array_equal(shifted[: cut - h], full[: cut - h])
        assert shifted[cut - h] != full[cut - h]


def test_feature_set_on_the_whole_spy_file(spy) -> None:
    frame, alphas = bar_feature_set(spy, horizons=(1, 5, 15))
    split = frame["split"].to_numpy()
    n = len(frame)
    assert n == 14180 and split.dtype == np.int8
    b1, b2 = int(n * 0.7), int(n * 0.85)
    # Warm-up: the 60-bar volume window is full from row 59 on.
    assert (split[:59] == PURGED).all() and split[59] == TRAIN
    # Purge: the 15 bars before each boundary would read the next split's closes in their labels.
    assert (split[b1 - 15:b1] == PURGED).all() and split[b1 - 16] == TRAIN and split[b1] == VAL
    assert (split[b2 - 15:b2] == PURGED).all() and split[b2 - 16] == VAL and (split[b2:] == TEST).all()
    names = bar_feature_names()
    assert not frame.loc[split >= 0, names].isna().any().any()  # usable rows have every feature
    for h in (1, 5, 15):
        labels = frame[f"label_k{h}"].to_numpy()
        train = labels[(split == TRAIN) & (labels >= 0)]
        shares = np.bincount(train, minlength=3) / len(train)
        assert shares.min() > 0.3  # alpha balances the training classes
        assert (labels[-h:] == UNDEFINED).all()
    assert alphas[1] < alphas[5] < alphas[15]
    # alpha only sees training bars: rewriting validation and test prices leaves it unchanged.
    moved = spy.frame.copy()
    moved.loc[b1:, ["open", "high", "low", "close"]] *= 1.05
    _, again = bar_feature_set(with_frame(spy, moved), horizons=(1, 5, 15))
    assert again == alphas
