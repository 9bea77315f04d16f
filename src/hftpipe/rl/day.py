"""One replayed order-book day as flat arrays: the events, the book in integer ticks, features, splits.

Everything the environment reads at event ``t`` is computed from events ``<= t`` (the features are
causal, see :mod:`hftpipe.features`; the classifier's probabilities at ``t`` read the window ending at
``t``), so cutting the day after ``t`` changes nothing the environment shows up to ``t``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hftpipe.config import Config, single_source
from hftpipe.data.schema import book_matrix, levels_of
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features.build import compute_features, feature_names, resolve_purge
from hftpipe.features.splits import TRAIN, time_splits
from hftpipe.trading.execution import PRICE_SCALE

log = logging.getLogger(__name__)

NO_TICK = np.iinfo(np.int64).min // 2  # an empty level: never equal to a real price


@dataclass
class Day:
    """A day of canonical events in the arrays the environment steps through."""

    symbol: str
    date: str
    events: pd.DataFrame  # the canonical event table (run_backtest replays it)
    times: np.ndarray  # (n,) exchange time, seconds after midnight
    etype: np.ndarray  # (n,) int64 LOBSTER event type
    order_id: np.ndarray  # (n,) int64
    size: np.ndarray  # (n,) float64 shares
    price_tick: np.ndarray  # (n,) int64 event price in 1/10000 $ (0 when missing)
    direction: np.ndarray  # (n,) int64
    new_at: np.ndarray  # (n,) index of the NEW event of this event's order id (-1: before the file)
    ask_tick: np.ndarray  # (n, L) book after the event: ask prices in ticks (NO_TICK: empty level)
    ask_size: np.ndarray  # (n, L) shares (0 on an empty level)
    bid_tick: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray  # (n, L) dollars (NaN on an empty level), for fill prices
    bid_price: np.ndarray
    mid: np.ndarray  # (n,) mid price, carried over one-sided books (the risk engine's mark)
    bid_ff: np.ndarray  # (n,) best bid / ask carried forward (liquidation marks)
    ask_ff: np.ndarray
    features: np.ndarray  # (n, F) raw engineered features at each event
    feature_names: list[str]
    split: np.ndarray  # (n,) 0 train, 1 val, 2 test, -1 purged
    session: tuple[float, float]
    probs: np.ndarray | None = None  # (n, 3) classifier probabilities [down, stationary, up]; NaN: none yet
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.times.size)

    def rows(self, split: int) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def cut(self, end: int) -> Day:
        """The day as it was known after event ``end - 1`` (the future removed), recomputed from scratch."""
        return day_from_events(self.events.iloc[:end].reset_index(drop=True), self.meta["config"], self.symbol,
                               self.date, self.session, None if self.probs is None else self.probs[:end])


def _ffill(values: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values)
    if not bad.any() or bad.all():
        return values.copy()
    idx = np.maximum.accumulate(np.where(bad, 0, np.arange(values.size)))
    first = int(np.flatnonzero(~bad)[0])
    idx[:first] = first
    return values[idx]


def _new_at(etype: np.ndarray, order_id: np.ndarray) -> np.ndarray:
    """For each event, the index of the latest NEW (type 1) event of its order id at or before it."""
    idx = np.where(etype == 1, np.arange(etype.size, dtype=np.float64), np.nan)
    ser = pd.Series(idx).groupby(order_id, sort=False).ffill()
    return ser.fillna(-1).to_numpy(dtype=np.int64)


def _ticks(prices: np.ndarray) -> np.ndarray:
    ok = np.isfinite(prices)
    return np.where(ok, np.round(np.where(ok, prices, 0.0) * PRICE_SCALE), NO_TICK).astype(np.int64)


def day_from_events(events: pd.DataFrame, cfg: Config, symbol: str, date: str, session: tuple[float, float],
                    probs: np.ndarray | None = None) -> Day:
    """Arrays of a canonical event frame; features on the top ``rl.levels`` levels, splits as ``features``."""
    levels = levels_of(events)
    if levels < cfg.rl.levels:
        raise DataFormatError(f"the data has {levels} book level(s) but rl.levels is {cfg.rl.levels}; "
                              f"lower rl.levels or pass a deeper LOBSTER file")
    if cfg.features.sampling != "all":
        raise ConfigError("the RL environment steps every event: set features.sampling=all")
    mat = book_matrix(events, levels)
    n = len(events)
    etype = events["type"].to_numpy(dtype=np.int64)
    size = events["size"].to_numpy(dtype=np.float64)
    direction = events["direction"].to_numpy(dtype=np.int64)
    feats = compute_features(np.ascontiguousarray(mat[:, : 4 * cfg.rl.levels]), etype, size, direction,
                             cfg.features.windows)
    names = feature_names(cfg.rl.levels, cfg.features.windows)
    features = np.column_stack([feats[name] for name in names]) if n else np.zeros((0, len(names)))
    purge, purge_after, warmup = resolve_purge(cfg.features)
    split, _ = time_splits(n, cfg.features.train_frac, cfg.features.val_frac, purge, purge_after, warmup)
    price = events["price"].to_numpy(dtype=np.float64)
    ask_price, bid_price = mat[:, 0::4], mat[:, 2::4]
    ask_size = np.where(np.isfinite(ask_price), np.nan_to_num(mat[:, 1::4]), 0.0)
    bid_size = np.where(np.isfinite(bid_price), np.nan_to_num(mat[:, 3::4]), 0.0)
    mid = _ffill((mat[:, 2] + mat[:, 0]) / 2.0)
    if probs is not None and probs.shape != (n, 3):
        raise DataFormatError(f"classifier probabilities must be ({n}, 3); got {probs.shape}")
    return Day(symbol=symbol, date=date, events=events, times=events["time"].to_numpy(dtype=np.float64),
               etype=etype, order_id=events["order_id"].to_numpy(dtype=np.int64), size=size,
               price_tick=np.where(np.isfinite(price), _ticks(price), 0), direction=direction,
               new_at=_new_at(etype, events["order_id"].to_numpy(dtype=np.int64)),
               ask_tick=_ticks(ask_price), ask_size=ask_size, bid_tick=_ticks(bid_price), bid_size=bid_size,
               ask_price=np.ascontiguousarray(ask_price), bid_price=np.ascontiguousarray(bid_price), mid=mid,
               bid_ff=_ffill(mat[:, 2].copy()), ask_ff=_ffill(mat[:, 0].copy()), features=features,
               feature_names=names, split=np.asarray(split), session=session, probs=probs,
               meta={"config": cfg, "levels": levels})


def classifier_probs(bundle_dir: str | Path, events: pd.DataFrame) -> np.ndarray:
    """Probabilities (n, 3) of a classifier bundle folder at every event; NaN before its first full window.

    (A registry URI is resolved to a folder at the edge: ``hftpipe rl`` does it like ``hftpipe backtest``.)
    """
    from hftpipe.models.bundle import load_bundle
    from hftpipe.trading.report import predict_proba_rows

    bundle = load_bundle(bundle_dir)
    levels = levels_of(events)
    if levels < bundle.levels:
        raise DataFormatError(f"the classifier reads {bundle.levels} level(s) but the data has {levels}; "
                              "drop rl.classifier for this file or pass a deeper one")
    book = np.ascontiguousarray(book_matrix(events, levels)[:, : 4 * bundle.levels])
    out = np.full((len(events), 3), np.nan)
    rows = np.arange(bundle.window - 1, len(events))
    if rows.size:
        out[rows] = predict_proba_rows(bundle, book, rows)
    return out


def load_day(cfg: Config, path: str | Path | None = None, classifier: str | None = None) -> Day:
    """Load a LOBSTER zip / canonical Parquet as a :class:`Day` (``classifier``: probabilities to include).

    Raises:
        DataFormatError: the file is missing or unreadable, or too shallow for ``rl.levels``.
    """
    from hftpipe.prepare import load_source

    path = Path(path or cfg.rl.data or single_source(cfg.data, "rl (without rl.data or --data)"))
    if not path.exists():
        raise DataFormatError(f"{path} does not exist; pass a LOBSTER zip or a canonical events Parquet")
    session = (cfg.validate.session_start, cfg.validate.session_end)
    table = load_source(path, cfg.data, session, require_symbol=False)
    events = table.frame.reset_index(drop=True)
    meta = table.meta
    session = (float(getattr(meta, "session_start", session[0])), float(getattr(meta, "session_end", session[1])))
    probs = classifier_probs(classifier, events) if classifier else None
    day = day_from_events(events, cfg, str(meta.symbol), str(meta.date), session, probs)
    day.meta.update(source=str(path), source_sha256=getattr(meta, "source_sha256", None), classifier=classifier)
    log.info("%s %s: %d events, %d training rows", day.symbol, day.date, len(day), day.rows(TRAIN).size)
    return day
