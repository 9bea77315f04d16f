"""The instrument-agnostic book window that deep models consume (shared by training and serving).

A window is the last T raw book states, shape (..., T, 4L) in LOBSTER order with prices in dollars.
Prices become basis points from the *current* mid (the window's last state), sizes become log1p(shares),
so a model trained on a $570 stock carries over to a $22 one. Per-column z-scores on top are fitted on
the training split only (:class:`WindowStats`) and travel with the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

BPS = 1e4


def relative_book(raw: np.ndarray) -> np.ndarray:
    """Prices as bps from the last state's mid, sizes as log1p; empty levels take the level above.

    Args:
        raw: (..., T, 4L) float array; empty levels have NaN price and size 0.
    Returns:
        float32 array of the same shape.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim < 2 or raw.shape[-1] % 4:
        raise ValueError(f"a book window has shape (..., T, 4L); got {raw.shape}")
    out = np.empty(raw.shape, dtype=np.float32)
    mid = (raw[..., -1:, 0:1] + raw[..., -1:, 2:3]) / 2.0  # (..., 1, 1): the current mid
    levels = raw.shape[-1] // 4
    # Column index of the last occupied level at or above each level; -1 before the first one.
    position = np.arange(levels)
    for side in (0, 2):  # ask, bid prices; sizes sit one column to the right
        bps = (raw[..., side::4] - mid) / mid * BPS  # (..., T, L)
        empty = np.isnan(bps)
        if empty.any():
            # An empty level repeats the level above so the ladder stays monotone (its size is 0 anyway);
            # an empty best level reads as 0 bps.
            source = np.maximum.accumulate(np.where(empty, -1, position), axis=-1)
            filled = np.take_along_axis(bps, np.maximum(source, 0), axis=-1)
            bps = np.where(source < 0, 0.0, filled)
        out[..., side::4] = bps
        out[..., side + 1::4] = np.log1p(np.maximum(raw[..., side + 1::4], 0.0))
    return out


@dataclass(frozen=True)
class WindowStats:
    """Per-column mean and std of :func:`relative_book` output, fitted on training windows only."""

    mean: np.ndarray  # (4L,)
    std: np.ndarray  # (4L,)

    def apply(self, rel: np.ndarray) -> np.ndarray:
        return ((rel - self.mean) / self.std).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WindowStats:
        return cls(mean=np.asarray(raw["mean"], dtype=np.float32), std=np.asarray(raw["std"], dtype=np.float32))

    def dumps(self) -> str:
        return json.dumps(self.to_dict())


def window_indices(ends: np.ndarray, window: int) -> np.ndarray:
    """Row indices (len(ends), window) of the windows ending at each ``ends`` row (inclusive)."""
    return np.asarray(ends)[:, None] + np.arange(-window + 1, 1)[None, :]


def fit_window_stats(book: np.ndarray, train_ends: np.ndarray, window: int, max_windows: int = 20_000,
                     seed: int = 0) -> WindowStats:
    """Fit column means/stds on (a sample of) the training windows."""
    rng = np.random.default_rng(seed)
    ends = np.asarray(train_ends)
    if len(ends) > max_windows:
        ends = np.sort(rng.choice(ends, size=max_windows, replace=False))
    rel = relative_book(book[window_indices(ends, window)])
    flat = rel.reshape(-1, rel.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)  # constant columns (e.g. best ask bps at T-1 is always +spread/2)
    return WindowStats(mean=mean.astype(np.float32), std=std.astype(np.float32))


def model_input(raw: np.ndarray, stats: WindowStats) -> np.ndarray:
    """Raw windows (..., T, 4L) to the float32 tensor a model takes: relative book, z-scored."""
    return stats.apply(relative_book(raw))
