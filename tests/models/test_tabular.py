"""Engineered window features of the tabular families, their causality, the payload and calibration."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest

from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import book_matrix
from hftpipe.errors import ConfigError, ModelError
from hftpipe.models.calibration import (
    brier_score,
    calibration_summary,
    fit_temperature,
    reliability_curve,
    softmax,
)
from hftpipe.models.tabular import (
    LinearEstimator,
    Standardiser,
    TabularModel,
    TabularSpec,
    base_features,
    book_feature_matrix,
    window_feature_matrix,
)
from tests.conftest import lobster_zip

SPEC = TabularSpec(levels=3, windows=(3, 8), lags=(0, 1, 4))


@lru_cache(maxsize=2)
def _goog(levels: int = 5, rows: int = 3000) -> np.ndarray:
    return np.ascontiguousarray(book_matrix(load_lobster(lobster_zip("GOOG", levels)).frame)[:rows])


def _windows(book: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    return book[ends[:, None] + np.arange(-window + 1, 1)[None, :]]


def test_names_and_required_rows() -> None:
    base = SPEC.base_names()
    assert base[:5] == ["spread_bps", "microprice_bps", "depth_imbalance_1", "depth_imbalance_2",
                        "depth_imbalance_3"]
    assert "cum_depth_imbalance_1" not in base and "cum_depth_imbalance_3" in base
    assert len(base) == 2 + 3 + 2 + 4 * 2
    assert SPEC.names()[len(base)] == "spread_bps_lag1" and len(SPEC.names()) == 3 * len(base)
    assert SPEC.required_rows == 8 + 4 + 1
    SPEC.check_window(13)
    with pytest.raises(ConfigError, match=r"train.window=12 is shorter than the 13 book states"):
        SPEC.check_window(12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"levels": 0}, "tabular_levels must be >= 1"),
    ({"windows": (5, 5)}, "tabular_windows must be distinct"),
    ({"lags": (-1,)}, "tabular_lags must be distinct non-negative"),
    ({"units": "ticks"}, "tabular_units must be bps or spreads"),
])
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TabularSpec(**kwargs)


def test_hand_computed_values_on_a_small_book() -> None:
    # One level; mid goes 100, 100, 100.02, 100.02, 100.01; sizes change so OFI is non-trivial.
    book = np.array([
        [100.01, 200, 99.99, 100],
        [100.01, 150, 99.99, 100],  # ask queue shrinks by 50: OFI +50
        [100.03, 300, 100.01, 40],  # both sides up: bid new level 40 (+40), ask moved up (+150 old ask)
        [100.03, 300, 100.01, 90],  # bid queue grows by 50: +50
        [100.02, 10, 100.00, 90],   # ask down: -10 new ask; bid down: -90 old bid
    ])
    spec = TabularSpec(levels=1, windows=(2,), lags=(0,))
    base = base_features(book, spec)
    names = spec.base_names()
    row = dict(zip(names, base[-1]))
    mid = 100.01
    assert row["spread_bps"] == pytest.approx(0.02 / mid * 1e4)
    micro = (100.02 * 90 + 100.00 * 10) / 100
    assert row["microprice_bps"] == pytest.approx((micro - mid) / mid * 1e4)
    assert row["depth_imbalance_1"] == pytest.approx((90 - 10) / 100)
    # OFI over the last 2 events: (+50) + (-10 - 90) = -50; mean best depth over them ((300+90)/2 + (10+90)/2)/2
    assert row["ofi_w2"] == pytest.approx(-50 / (((300 + 90) / 2 + (10 + 90) / 2) / 2))
    assert row["return_w2_bps"] == pytest.approx(np.log(100.01 / 100.02) * 1e4)
    step = np.log(100.01 / 100.02)
    assert row["volatility_w2_bps"] == pytest.approx(abs(step) * 1e4)
    assert row["mid_moves_w2"] == pytest.approx(0.5)
    third = dict(zip(names, base[2]))
    assert third["ofi_w2"] == pytest.approx((50 + 40 + 150) / (((150 + 100) / 2 + (300 + 40) / 2) / 2))


@pytest.mark.parametrize("units", ["bps", "spreads"])
def test_window_path_equals_book_path_exactly(units: str) -> None:
    spec = dataclasses.replace(SPEC, units=units)
    book = _goog()[:, : 4 * SPEC.levels]
    window = 20
    ends = np.arange(window - 1, len(book), 7)
    from_book = book_feature_matrix(book, ends, spec)
    from_windows = window_feature_matrix(_windows(book, ends, window), spec)
    # Same floats, NaN in the same places: the tree model splits identically in training and serving.
    np.testing.assert_array_equal(from_book, from_windows)
    assert np.isfinite(from_book).all()


def test_no_look_ahead_in_the_lagged_feature_matrix() -> None:
    """Features at t (all lags) are unchanged when every row after t is replaced or when rows before the
    window's reach are; they do change when row t does."""
    book = _goog()[:, : 4 * SPEC.levels].copy()
    ends = np.arange(SPEC.required_rows, 2000, 13)
    before = book_feature_matrix(book, ends, SPEC)
    rng = np.random.default_rng(0)
    for t in (500, 1200):
        future = book.copy()
        future[t + 1:, 1::2] = rng.integers(1, 1000, size=future[t + 1:, 1::2].shape)  # sizes
        future[t + 1:, 0::4] += 0.05  # asks
        past = ends <= t
        np.testing.assert_array_equal(book_feature_matrix(future, ends[past], SPEC), before[past])
        assert not np.array_equal(book_feature_matrix(future, ends[~past], SPEC), before[~past])
    ancient = book.copy()
    ancient[: 1000 - SPEC.required_rows + 1] *= 3.0
    late = ends >= 1000
    np.testing.assert_array_equal(book_feature_matrix(ancient, ends[late], SPEC), before[late])


@pytest.mark.parametrize("units", ["bps", "spreads"])
def test_features_are_instrument_agnostic(units: str) -> None:
    """Price level and share scale do not move any feature: a $20 stock reads like a $570 one."""
    spec = dataclasses.replace(SPEC, units=units)
    book = _goog()[:, : 4 * SPEC.levels]
    ends = np.arange(SPEC.required_rows - 1, 1500, 11)
    scaled = book.copy()
    scaled[:, 0::2] *= 0.037
    scaled[:, 1::2] *= 25.0
    np.testing.assert_allclose(book_feature_matrix(scaled, ends, spec), book_feature_matrix(book, ends, spec),
                               rtol=1e-7, atol=1e-9)


def test_spread_units_remove_the_spread_regime() -> None:
    """With units="spreads" a book whose spreads and moves are all twice as wide reads the same."""
    spec = dataclasses.replace(SPEC, levels=1, units="spreads")
    book = _goog(1)[:, :4]
    mid = (book[:, 0] + book[:, 2]) / 2
    wide = book.copy()
    wide[:, 0] = 2 * mid[0] + 2 * (book[:, 0] - mid[0]) - mid[0]  # every price distance from mid[0] doubled
    wide[:, 2] = 2 * mid[0] + 2 * (book[:, 2] - mid[0]) - mid[0]
    ends = np.arange(spec.required_rows - 1, 1500, 11)
    a, b = book_feature_matrix(book, ends, spec), book_feature_matrix(wide, ends, spec)
    # Log moves are not exactly linear in price, hence the tolerance (moves are a few bps).
    np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-3)
    bps = dataclasses.replace(spec, units="bps")
    assert not np.allclose(book_feature_matrix(wide, ends, bps), book_feature_matrix(book, ends, bps), rtol=0.1)


def test_ends_without_enough_history_are_refused() -> None:
    with pytest.raises(ModelError, match="fewer than 13 book states"):
        book_feature_matrix(_goog()[:, :12], np.array([5, 100]), SPEC)


def test_payload_round_trip_and_bad_payload() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, len(SPEC.names())))
    model = TabularModel(LinearEstimator(Standardiser.fit(x), rng.normal(size=(3, x.shape[1])), rng.normal(size=3)),
                         SPEC, temperature=1.7)
    again = TabularModel.from_bytes(model.to_bytes())
    assert again.spec == SPEC and again.temperature == 1.7 and again.name == "logreg_tab"
    np.testing.assert_array_equal(again.proba_from_features(x), model.proba_from_features(x))
    assert not np.allclose(model.proba_from_features(x), model.proba_from_features(x, calibrated=False))
    with pytest.raises(ModelError, match="unknown tabular model payload"):
        TabularModel.from_bytes(b'{"format": 1, "model": "xgboost"}', "some/bundle")
    with pytest.raises(ModelError, match="unreadable"):
        TabularModel.from_bytes(b"\x80not json", "some/bundle")


def test_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(2)
    true_logits = rng.normal(scale=1.5, size=(20000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    overconfident = 2.5 * true_logits
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.08)
    summary = calibration_summary(overconfident, y, t)
    assert summary["calibrated"]["brier"] < summary["uncalibrated"]["brier"]
    assert summary["calibrated"]["reliability"]["ece"] < summary["uncalibrated"]["reliability"]["ece"]


def test_brier_and_reliability_on_hand_values() -> None:
    y = np.array([0, 1, 2, 2])
    perfect = np.eye(3)[y]
    assert brier_score(perfect, y) == 0.0
    assert brier_score(np.full((4, 3), 1 / 3), y) == pytest.approx(2 / 3)
    # Confidences 0.95 (right), 0.75 (right), 0.65 (wrong), 0.85 (right): one per bin, off the bin edges.
    proba = np.array([[0.95, 0.03, 0.02], [0.15, 0.75, 0.1], [0.65, 0.15, 0.2], [0.1, 0.05, 0.85]])
    curve = reliability_curve(proba, y, bins=10)
    by_low = {round(b["low"], 1): b for b in curve["bins"]}
    assert by_low[0.9]["accuracy"] == 1.0 and by_low[0.6]["accuracy"] == 0.0 and by_low[0.6]["count"] == 1
    assert [b["count"] for b in curve["bins"]] == [1, 1, 1, 1]
    assert curve["ece"] == pytest.approx((0.05 + 0.25 + 0.65 + 0.15) / 4)
