"""Drift statistics against scipy and hand-computed values; the reference in the bundle; the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hftpipe.evaluation.drift import (
    DriftReference,
    DriftThresholds,
    SlidingPredictionDrift,
    bin_shares,
    build_reference,
    class_shares,
    drift_report,
    ks_statistic,
    monitored_features,
    psi,
    quantile_edges,
)


def test_psi_matches_a_hand_computation() -> None:
    ref, cur = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    # (0.3-0.5) ln(0.3/0.5) + 0 + (0.4-0.2) ln(0.4/0.2)
    hand = (-0.2) * math.log(0.6) + 0.2 * math.log(2.0)
    assert psi(ref, cur) == pytest.approx(hand, abs=1e-12)
    assert psi(ref, cur) == pytest.approx(0.24079456, abs=1e-8)
    assert psi(ref, ref) == 0.0
    assert psi([50, 30, 20], [30, 30, 40]) == pytest.approx(hand)  # counts are normalised


def test_psi_floors_an_empty_bin_instead_of_infinity() -> None:
    value = psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    hand = 2 * (-0.1) * math.log(0.8) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert math.isfinite(value) and value == pytest.approx(hand, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_statistic_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, 300)
    b = rng.normal(0.3, 1.2, 451)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_statistic_equals_scipy_with_ties_and_fixed_arrays() -> None:
    a = np.array([1, 1, 2, 2, 2, 3, 5, 8], dtype=float)
    b = np.array([1, 2, 3, 3, 3, 3, 4], dtype=float)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    # Hand: at x=2 F_a=5/8, F_b=2/7 -> 0.6250-0.2857 = 0.3393 (the largest gap)
    assert ks_statistic(a, b) == pytest.approx(5 / 8 - 2 / 7)


def test_bins_cut_at_quantiles_and_merge_ties() -> None:
    values = np.array([1, 1, 1, 1, 2, 3, 4, 5, 6, 7], dtype=float)
    edges = quantile_edges(values, 4)
    assert np.all(np.diff(edges) > 0)
    assert bin_shares(values, edges).sum() == pytest.approx(1.0)
    assert bin_shares(np.array([0.0, 100.0, np.nan]), np.array([1.0, 2.0])).tolist() == [0.5, 0.0, 0.5]


def test_sliding_window_psi_forgets_old_predictions() -> None:
    ref = [1 / 3, 1 / 3, 1 / 3]
    window = SlidingPredictionDrift(ref, 30)
    window.extend([0, 1, 2] * 10)
    assert window.psi() == pytest.approx(0.0, abs=1e-12)
    window.extend([0] * 30)  # the balanced past left the window
    assert window.counts.tolist() == [30, 0, 0]
    assert window.psi() == pytest.approx(psi(ref, [1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="window"):
        SlidingPredictionDrift(ref, 0)


def _book(n: int, spread: float, seed: int = 0) -> np.ndarray:
    """A 2-level book around a random-walk mid with a given spread (dollars)."""
    rng = np.random.default_rng(seed)
    mid = 100 + np.cumsum(rng.choice([-0.01, 0, 0.01], n))
    s = spread * rng.uniform(0.8, 1.2, n)
    book = np.empty((n, 8))
    book[:, 0], book[:, 2] = mid + s / 2, mid - s / 2
    book[:, 4], book[:, 6] = mid + s / 2 + 0.01, mid - s / 2 - 0.01
    book[:, 1::2] = rng.integers(1, 500, (n, 4))
    return book


def test_reference_round_trips_and_flags_wider_spreads_only() -> None:
    train = _book(4000, 0.02)
    predicted = np.random.default_rng(0).integers(0, 3, 2000)
    ref = DriftReference.from_dict(build_reference(train, predicted).to_dict())
    assert set(ref.features) == set(monitored_features(train))
    same = drift_report(ref, _book(3000, 0.02, seed=1), predicted[:1000], DriftThresholds())
    assert not same.drift, same.to_dict()
    wide = drift_report(ref, _book(3000, 0.06, seed=1), predicted[:1000], DriftThresholds())
    assert wide.drift and "spread_bps" in wide.drifted_features
    out = wide.to_dict()
    assert out["drift"] is True and out["features"]["spread_bps"]["psi"] > 0.25
    skewed = drift_report(ref, _book(3000, 0.02, seed=1), np.zeros(1000, dtype=int), DriftThresholds())
    assert skewed.drift and skewed.prediction is not None and skewed.prediction["drift"]
    assert skewed.prediction["shares"] == [1.0, 0.0, 0.0]


def test_natural_variation_of_training_raises_the_bar() -> None:
    """A training day whose first fifth is wide (an opening) tolerates a wide stretch later."""
    train = np.concatenate([_book(1000, 0.06), _book(4000, 0.02, seed=3)])
    ref = build_reference(train)
    assert ref.features["spread_bps"].natural_psi > 1.0
    later = drift_report(ref, _book(1000, 0.06, seed=4), None, DriftThresholds())
    assert "spread_bps" not in later.drifted_features
    assert drift_report(ref, _book(1000, 0.06, seed=4), None,
                        DriftThresholds(natural_margin=0.0)).drifted_features


def test_class_shares() -> None:
    assert class_shares(np.array([0, 2, 2, 1])).tolist() == [0.25, 0.25, 0.5]


def test_bundle_carries_the_reference_and_old_bundles_still_load(tmp_path) -> None:
    from hftpipe.errors import MonitoringError
    from hftpipe.models.bundle import load_bundle
    from hftpipe.monitoring.report import reference_of
    from tests.serving.conftest import make_bundle

    book = _book(600, 0.02)
    book = np.tile(book, (1, 5))[:, :40]  # 10 levels, as the serving fixtures build
    old = load_bundle(make_bundle(tmp_path / "old", book))
    assert old.drift_reference is None
    with pytest.raises(MonitoringError, match="has no drift reference .* retrain it with `hftpipe train`"):
        reference_of(old)

    from hftpipe.config import Config
    from hftpipe.models.bundle import save_bundle

    ref = build_reference(book, np.array([0, 1, 2, 2]))
    new = save_bundle(tmp_path / "new", old.module, config=Config().to_dict(), model_name="lstm", levels=10,
                      window=old.window, horizon=10, alpha=1e-5, stats=old.stats, hidden=8, dropout=0.0,
                      drift_reference=ref.to_dict())
    loaded = reference_of(load_bundle(new))
    assert loaded.prediction_shares is not None and loaded.prediction_shares.tolist() == [0.25, 0.25, 0.5]
    assert np.array_equal(loaded.features["spread_bps"].edges, ref.features["spread_bps"].edges)
