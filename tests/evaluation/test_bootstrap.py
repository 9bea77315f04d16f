"""Block-bootstrap intervals: they contain the point, narrow with more data, and are paired."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.evaluation.bootstrap import macro_f1_intervals, resampled_confusions
from hftpipe.evaluation.metrics import classification_metrics


def _noisy(n: int, skill: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 3, n // 10 + 1), 10)[:n]  # runs of 10, like overlapping labels
    pred = np.where(rng.random(n) < skill, y, rng.integers(0, 3, n))
    return y, pred


def test_interval_contains_the_point_estimate() -> None:
    y, p = _noisy(3000, 0.5, 0)
    f1, _ = macro_f1_intervals(y, {"model": p}, n_resamples=300, block=50)
    iv = f1["model"]
    assert iv.point == pytest.approx(classification_metrics(y, p)["macro_f1"])
    assert iv.low < iv.point < iv.high


def test_interval_narrows_with_more_data() -> None:
    widths = []
    for n in (2000, 20000):
        y, p = _noisy(n, 0.5, 1)
        f1, _ = macro_f1_intervals(y, {"model": p}, n_resamples=300, block=50)
        widths.append(f1["model"].high - f1["model"].low)
    assert widths[1] < widths[0] / 2  # about sqrt(10) narrower


def test_margin_is_paired_on_the_same_rows() -> None:
    y, p = _noisy(5000, 0.5, 2)
    f1, margins = macro_f1_intervals(y, {"model": p, "copy": p.copy()}, reference="copy", n_resamples=200,
                                     block=40)
    m = margins["model"]
    assert (m.point, m.low, m.high) == (0.0, 0.0, 0.0)  # unpaired resampling would spread around 0
    y, better = _noisy(5000, 0.6, 2)
    f1, margins = macro_f1_intervals(y, {"model": better, "base": p}, reference="base", n_resamples=300,
                                     block=40)
    assert 0 < margins["model"].low < margins["model"].point < margins["model"].high
    assert margins["model"].point == pytest.approx(f1["model"].point - f1["base"].point)


def test_longer_blocks_widen_the_interval_of_dependent_data() -> None:
    y, p = _noisy(6000, 0.5, 3)
    rng = np.random.default_rng(9)
    p = np.repeat(np.where(rng.random(600) < 0.5, y[::10], rng.integers(0, 3, 600)), 10)  # errors in runs
    narrow, _ = macro_f1_intervals(y, {"m": p}, n_resamples=300, block=1)
    wide, _ = macro_f1_intervals(y, {"m": p}, n_resamples=300, block=100)
    assert wide["m"].high - wide["m"].low > 1.5 * (narrow["m"].high - narrow["m"].low)


def test_each_resample_has_n_rows_and_the_seed_fixes_it() -> None:
    y, p = _noisy(1003, 0.5, 4)
    a = resampled_confusions(y, {"m": p}, n_resamples=7, block=100, seed=5)["m"]
    b = resampled_confusions(y, {"m": p}, n_resamples=7, block=100, seed=5)["m"]
    assert (a.sum(axis=(1, 2)) == 1003).all()
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="reference 'nope'"):
        macro_f1_intervals(y, {"m": p}, reference="nope")
