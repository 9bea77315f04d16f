"""relative_book's vectorised empty-level fill equals the plain per-level definition."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.data import load_lobster
from hftpipe.features.window import BPS, relative_book
from tests.conftest import lobster_zip


def per_level_reference(raw: np.ndarray) -> np.ndarray:
    """The definition, level by level: bps from the current mid, an empty level repeats the one above."""
    raw = np.asarray(raw, dtype=np.float64)
    out = np.empty(raw.shape, dtype=np.float32)
    mid = (raw[..., -1:, 0] + raw[..., -1:, 2]) / 2.0
    for side in (0, 2):
        previous = np.zeros(raw.shape[:-1])
        for k in range(raw.shape[-1] // 4):
            col = 4 * k + side
            bps = (raw[..., col] - mid) / mid * BPS
            bps = np.where(np.isnan(bps), previous, bps)
            out[..., col] = bps
            out[..., col + 1] = np.log1p(np.maximum(raw[..., col + 1], 0.0))
            previous = bps
    return out


@pytest.mark.parametrize("levels", [1, 5, 10])
def test_vectorised_matches_per_level_definition(levels: int) -> None:
    book = load_lobster(lobster_zip("GOOG", levels)).book()[:3000]
    windows = book[np.arange(200)[:, None] + np.arange(40)]
    rng = np.random.default_rng(levels)
    holed = windows.copy()
    # Empty some deeper levels (never the best one of the current state, which defines the mid).
    if levels > 1:
        deep = holed[..., 4:]
        for side in (0, 2):
            prices = deep[..., side::4]
            prices[rng.random(prices.shape) < 0.2] = np.nan
            deep[..., side::4] = prices
        holed[..., 4:] = deep
    for raw in (windows, holed, holed[0]):
        got, want = relative_book(raw), per_level_reference(raw)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
