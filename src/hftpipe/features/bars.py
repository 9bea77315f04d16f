"""Bar features and labels (pure, vectorised, causal), at horizons counted in bars.

Row t of every feature uses only bars 0..t of its group (a symbol, or a symbol's exchange day with
``group="day"``): what is known when bar t closes. Windows never reach into another group, so the
first bars of a group have NaN where a window is not yet full.

Features (k in ``returns``, w = ``window``, v = ``volume_window``):

- ``ret_k``: log return close_t / close_{t-k};
- ``rv_w``: realised volatility, sqrt of the sum of the last w squared one-bar log returns;
- ``range_1``: log(high_t / low_t), the bar's own range; ``range_w``: log of the highest high over
  the lowest low of the last w bars;
- ``volume_z_v``: z-score of log(1 + volume_t) against the last v bars (t included);
- ``tod_sin``, ``tod_cos``: time of day of the bar's open in EXCHANGE local time (so a New York
  09:30 open is the same value in winter and summer), on a 24-hour circle.

Labels at horizon h bars (``labels``): ``fwd_ret_h`` = log(close_{t+h} / close_t), strictly after t,
and ``label_k{h}`` = 0 down / 1 stationary / 2 up with the stationary band ``alpha`` of
:mod:`hftpipe.features.labels` (given, or balanced on the training rows only); -1 where fewer than
h bars of the group follow.

:func:`bar_feature_set` adds a time split with the codes of :mod:`hftpipe.features.splits` (0 train,
1 val, 2 test, -1 purged before a boundary or warm-up), so the training code's split handling applies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hftpipe.data.bars import BarTable, exchange_time
from hftpipe.errors import DataFormatError
from hftpipe.features.labels import balanced_alpha, classify
from hftpipe.features.splits import PURGED, SPLIT_NAMES, TRAIN, time_splits

DEFAULT_RETURNS = (1, 5, 15)
DEFAULT_HORIZONS = (1, 5, 15)


def _positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive whole number of bars; got {value!r}")
    return int(value)


def lagged_log_return(close: np.ndarray, k: int) -> np.ndarray:
    """``log(close[t] / close[t-k])``; NaN for the first k rows."""
    k = _positive("k", k)
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) > k:
        out[k:] = np.log(close[k:] / close[:-k])
    return out


def _rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of x[t-w+1..t], NaN until w values are available (NaN inside a window propagates)."""
    return pd.Series(x).rolling(w, min_periods=w).sum().to_numpy()


def realised_volatility(close: np.ndarray, w: int) -> np.ndarray:
    """sqrt(sum of the last w squared one-bar log returns); NaN for the first w rows."""
    w = _positive("window", w)
    r = lagged_log_return(close, 1)
    return np.sqrt(_rolling_sum(r * r, w))


def bar_range(high: np.ndarray, low: np.ndarray, w: int = 1) -> np.ndarray:
    """log(max high / min low) over the last w bars (w = 1: the bar's own range)."""
    w = _positive("window", w)
    hi = pd.Series(np.asarray(high, dtype=np.float64)).rolling(w, min_periods=w).max().to_numpy()
    lo = pd.Series(np.asarray(low, dtype=np.float64)).rolling(w, min_periods=w).min().to_numpy()
    return np.log(hi / lo)


def volume_zscore(volume: np.ndarray, w: int) -> np.ndarray:
    """z-score of log(1 + volume_t) against the last w bars (t included); 0 where the window is flat."""
    w = _positive("volume window", w)
    v = pd.Series(np.log1p(np.asarray(volume, dtype=np.float64)))
    roll = v.rolling(w, min_periods=w)
    mean, std = roll.mean().to_numpy(), roll.std(ddof=0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (v.to_numpy() - mean) / std
    z[(std < 1e-12) & np.isfinite(mean)] = 0.0  # a window of equal volumes is "normal", not undefined
    return z


def time_of_day(local: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos) of the local time of day on a 24-hour circle."""
    seconds = (local.dt.hour * 3600 + local.dt.minute * 60 + local.dt.second).to_numpy(dtype=np.float64)
    angle = 2.0 * np.pi * seconds / 86400.0
    return np.sin(angle), np.cos(angle)


def forward_log_return(close: np.ndarray, h: int) -> np.ndarray:
    """``log(close[t+h] / close[t])``; NaN for the last h rows."""
    h = _positive("horizon", h)
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) > h:
        out[:-h] = np.log(close[h:] / close[:-h])
    return out


def bar_feature_names(returns: Sequence[int] = DEFAULT_RETURNS, window: int = 15,
                      volume_window: int = 60) -> list[str]:
    return ([f"ret_{k}" for k in returns] + [f"rv_{window}", "range_1", f"range_{window}",
                                              f"volume_z_{volume_window}", "tod_sin", "tod_cos"])


def _groups(table: BarTable, group: str) -> np.ndarray:
    """Group id per row: the symbol, or the symbol and its exchange-local date."""
    frame = table.frame
    if group == "symbol":
        keys = frame["symbol"].astype(str)
    elif group == "day":
        keys = frame["symbol"].astype(str) + "|" + exchange_time(table).dt.strftime("%Y-%m-%d")
    else:
        raise ValueError(f"group must be 'symbol' or 'day'; got {group!r}")
    # Consecutive runs, so a group is contiguous in time (rows are sorted by time per symbol).
    change = np.ones(len(keys), dtype=bool)
    change[1:] = keys.to_numpy()[1:] != keys.to_numpy()[:-1]
    return np.cumsum(change)


def _per_group(groups: np.ndarray, fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """Apply ``fn`` to each contiguous group's slice of ``arrays`` (windows never cross groups)."""
    out = np.full(len(groups), np.nan)
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for rows in np.split(np.arange(len(groups)), bounds):
        if len(rows):
            out[rows] = fn(*(a[rows] for a in arrays))
    return out


def bar_features(table: BarTable, *, returns: Sequence[int] = DEFAULT_RETURNS, window: int = 15,
                 volume_window: int = 60, group: str = "symbol") -> pd.DataFrame:
    """Feature frame (same rows as the bars, plus ``ts`` and ``symbol``); see the module docstring."""
    frame = table.frame
    if frame.empty:
        raise DataFormatError("no bars to compute features on")
    groups = _groups(table, group)
    close = frame["close"].to_numpy(dtype=np.float64)
    high = frame["high"].to_numpy(dtype=np.float64)
    low = frame["low"].to_numpy(dtype=np.float64)
    volume = frame["volume"].to_numpy(dtype=np.float64)
    out = pd.DataFrame({"ts": frame["ts"], "symbol": frame["symbol"]})
    for k in returns:
        out[f"ret_{k}"] = _per_group(groups, lambda c, k=k: lagged_log_return(c, k), close)
    out[f"rv_{window}"] = _per_group(groups, lambda c: realised_volatility(c, window), close)
    out["range_1"] = np.log(high / low)
    out[f"range_{window}"] = _per_group(groups, lambda h, lo: bar_range(h, lo, window), high, low)
    out[f"volume_z_{volume_window}"] = _per_group(groups, lambda v: volume_zscore(v, volume_window), volume)
    out["tod_sin"], out["tod_cos"] = time_of_day(exchange_time(table))
    return out


def bar_labels(table: BarTable, horizons: Sequence[int] = DEFAULT_HORIZONS, *, alpha: float | None = None,
               train_mask: np.ndarray | None = None, group: str = "symbol") -> tuple[pd.DataFrame, dict[int, float]]:
    """Forward returns and 3-class labels per horizon (in bars); returns (frame, alpha per horizon).

    Args:
        alpha: stationary band on the log return; None: balanced on ``train_mask`` rows only.
        train_mask: training rows (required when alpha is None), so val/test never set alpha.
    """
    if alpha is None and train_mask is None:
        raise ValueError("pass alpha, or train_mask to fit alpha on the training rows only")
    groups = _groups(table, group)
    close = table.frame["close"].to_numpy(dtype=np.float64)
    out = pd.DataFrame({"ts": table.frame["ts"], "symbol": table.frame["symbol"]})
    alphas: dict[int, float] = {}
    for h in horizons:
        r = _per_group(groups, lambda c, h=h: forward_log_return(c, h), close)
        a = float(alpha) if alpha is not None else balanced_alpha(r, np.asarray(train_mask, dtype=bool))
        alphas[int(h)] = a
        out[f"fwd_ret_{h}"] = r
        out[f"label_k{h}"] = classify(r, a)
    return out, alphas


def bar_feature_set(table: BarTable, *, returns: Sequence[int] = DEFAULT_RETURNS, window: int = 15,
                    volume_window: int = 60, horizons: Sequence[int] = DEFAULT_HORIZONS,
                    alpha: float | None = None, train_frac: float = 0.7, val_frac: float = 0.15,
                    group: str = "symbol") -> tuple[pd.DataFrame, dict[int, float]]:
    """Features, labels and a time split in one frame, split codes as in :mod:`hftpipe.features.splits`.

    ``split`` is int8: 0 train, 1 val, 2 test by bar time, -1 for rows that may not be used: the
    ``max(horizons)`` bars before each boundary (their label reads bars of the next split) and rows
    whose feature windows are not yet full (warm-up; with ``group="day"`` also each day's first bars).
    alpha, when not given, is balanced on split-0 rows only.
    """
    if not horizons:
        raise ValueError("need at least one label horizon")
    feats = bar_features(table, returns=returns, window=window, volume_window=volume_window, group=group)
    names = bar_feature_names(returns, window, volume_window)
    incomplete = feats[names].isna().any(axis=1).to_numpy()
    split, _ = time_splits(len(feats), train_frac, val_frac, purge=max(int(h) for h in horizons),
                           warmup=int(np.argmin(incomplete)) if incomplete.any() else 0)
    split[incomplete] = PURGED
    labels, alphas = bar_labels(table, horizons, alpha=alpha, train_mask=split == TRAIN, group=group)
    out = pd.concat([feats, labels.drop(columns=["ts", "symbol"])], axis=1)
    out["split"] = split
    return out, alphas


def write_bar_feature_set(frame: pd.DataFrame, alphas: dict[int, float], table: BarTable,
                          path: str | Path) -> Path:
    """Write features + labels + split as Parquet, with alpha per horizon and the bars' metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[b"hftpipe_bar_features"] = json.dumps({
        "alpha": {str(h): a for h, a in alphas.items()},
        "horizons_in_bars": sorted(alphas),
        "splits": {str(code): name for code, name in enumerate(SPLIT_NAMES)} | {"-1": "purged or warm-up"},
        "bars": table.meta.to_dict(),
    }).encode()
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow.replace_schema_metadata(meta), tmp, compression="zstd")
    tmp.replace(path)
    return path
