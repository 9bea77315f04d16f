"""Build the feature set: events -> sampled stream -> features, labels, splits -> checked Parquet.

``compute_features`` is the pure, vectorised core (arrays in, arrays out); ``build_features`` is the
step (read the canonical table, compute, check, write atomically; ``hftpipe.prepare.build_feature_set``
supplies the validation suite as the check); ``load_feature_set`` reads it back
for training, evaluation and serving.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hftpipe.config import FeaturesConfig
from hftpipe.data.schema import book_columns, book_matrix, read_events
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features.book import depth_imbalances, microprice, mid_price, spread
from hftpipe.features.flow import (
    aggregate_increments,
    executions,
    order_flow_imbalance_increments,
    signed_trade_volume_increments,
)
from hftpipe.features.labels import (
    CLASS_NAMES,
    LABEL_NOTES,
    balanced_alpha,
    classify,
    clock_targets,
    horizon_return,
)
from hftpipe.features.sampling import sample_indices
from hftpipe.features.splits import SPLIT_NAMES, TRAIN, boundaries, clock_purge, time_splits
from hftpipe.horizons import Horizon, parse_horizon

log = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
META_FILE = "features_meta.json"
PARQUET_META_KEY = b"hftpipe_features"
FORMAT_VERSION = 1


def feature_names(levels: int, windows: Sequence[int]) -> list[str]:
    """Names of the hand-made features, in column order, for ``levels`` levels and ``windows``."""
    names = ["spread", "microprice"]
    names += [f"depth_imbalance_{k}" for k in range(1, levels + 1)]
    names += [f"cum_depth_imbalance_{k}" for k in range(1, levels + 1)]
    for w in windows:
        names += [f"ofi_w{w}", f"log_return_w{w}", f"realised_vol_w{w}", f"signed_volume_w{w}",
                  f"trade_intensity_w{w}"]
    return names


def compute_features(book: np.ndarray, event_type: np.ndarray, size: np.ndarray, direction: np.ndarray,
                     windows: Sequence[int], index: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All features of the sampled stream ``index`` (default: every event), as name -> (m,) float64.

    Book features are read at the sampled rows; order-flow and trade increments between two sampled rows
    are summed onto the later one, then windows count rows of the sampled stream. On the first w rows
    windows use the history there is (see ``flow``). The same numbers as the single-feature functions in
    ``book`` and ``flow`` (the tests check it), but computed into one preallocated column-major block
    (one allocation instead of one page-faulted array per feature) with each cumulative sum done once for
    all windows.

    Returns:
        ``{"mid": ..., <each of feature_names(L, windows)>: ...}``; the arrays are columns of one block.
    """
    for w in windows:
        if int(w) != w or w < 1:
            raise ValueError(f"a window is a positive number of events; got {w!r}")
    # Column-major: every per-level operation below reads contiguous columns (the pandas layout already).
    book = np.asfortranarray(book, dtype=np.float64)
    sampled = book if index is None else np.asfortranarray(book[index])
    m, levels = len(sampled), sampled.shape[1] // 4
    names = ["mid", *feature_names(levels, windows)]
    block = np.empty((m, len(names)), order="F")
    out = {name: block[:, j] for j, name in enumerate(names)}
    scratch = np.empty((m, 8), order="F")
    ofi, signed, counts, logm, r1, spare = (scratch[:, j] for j in range(6))
    first_depth = names.index("depth_imbalance_1")
    first_cum = names.index("cum_depth_imbalance_1")

    mid_price(sampled, out=out["mid"])
    spread(sampled, out=out["spread"])
    microprice(sampled, out=out["microprice"], scratch=spare)
    depth_imbalances(sampled, block[:, first_depth : first_depth + levels],
                     block[:, first_cum : first_cum + levels], scratch[:, 5:8])

    if index is None:
        order_flow_imbalance_increments(book, out=ofi)
        np.multiply(executions(event_type), size, out=signed)
        np.negative(signed, out=signed)
        signed *= direction  # aggressor sign: -direction (see flow)
        counts[:] = executions(event_type)
    else:
        ofi[:] = aggregate_increments(order_flow_imbalance_increments(book), index)
        signed[:] = aggregate_increments(signed_trade_volume_increments(event_type, size, direction), index)
        counts[:] = aggregate_increments(executions(event_type), index)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.log(out["mid"], out=logm)
    r1[:1] = 0.0
    np.subtract(logm[1:], logm[:-1], out=r1[1:])
    bad = ~np.isfinite(r1)
    c_bad = np.cumsum(bad) if bad.any() else None
    if c_bad is not None:
        r1[bad] = 0.0
    np.multiply(r1, r1, out=r1)
    # One cumulative sum per quantity (in place) serves every window: a window sum is c[t] - c[t-w].
    for x in (ofi, signed, counts, r1):
        np.cumsum(x, out=x)
    for w in windows:
        head, past = min(w, m), slice(0, max(m - w, 0))
        # Warm-up rows (t < w) use the history there is: c[t] - 0, log mid_t - log mid_0 (see flow.py).
        for name, c in (("ofi", ofi), ("signed_volume", signed), ("trade_intensity", counts),
                        ("realised_vol", r1)):
            values = out[f"{name}_w{w}"]
            values[:head] = c[:head]
            np.subtract(c[w:], c[past], out=values[w:])
        ret = out[f"log_return_w{w}"]
        np.subtract(logm[:head], logm[:1], out=ret[:head])
        np.subtract(logm[w:], logm[past], out=ret[w:])
        out[f"trade_intensity_w{w}"] /= w
        vol = out[f"realised_vol_w{w}"]
        np.maximum(vol, 0.0, out=vol)  # round-off of a difference of non-negative sums
        np.sqrt(vol, out=vol)
        if c_bad is not None:
            missing = c_bad.copy()
            np.subtract(c_bad[w:], c_bad[past], out=missing[w:])
            vol[missing > 0] = np.nan
    return out


@dataclass
class FeatureSet:
    """A built feature set: the frame (one row per sampled event) and its metadata."""

    frame: pd.DataFrame
    meta: dict[str, Any]

    @property
    def levels(self) -> int:
        return int(self.meta["levels"])

    @property
    def horizons(self) -> list[int | str]:
        """Label horizons as written in params.yaml: ints are events, '1s' strings clock time."""
        return [parse_horizon(k).value for k in self.meta["horizons"]]

    def horizon(self, k: int | str | Horizon) -> Horizon:
        """The built horizon ``k`` (its unit from the metadata: 10 is events, '1s' seconds).

        Raises:
            ConfigError: ``k`` was not built.
        """
        self._check_horizon(k)
        return parse_horizon(k)

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def split(self) -> np.ndarray:
        """int8 per row: 0 train, 1 val, 2 test, -1 purged / warm-up."""
        return self.frame["split"].to_numpy(dtype=np.int8)

    @property
    def mid(self) -> np.ndarray:
        return self.frame["mid"].to_numpy(dtype=np.float64)

    @property
    def time(self) -> np.ndarray:
        return self.frame["time"].to_numpy(dtype=np.float64)

    def book(self) -> np.ndarray:
        """(n, 4L) float64 raw book in LOBSTER order (dollars, NaN for empty levels)."""
        return book_matrix(self.frame, self.levels)

    def _check_horizon(self, k: int | str | Horizon) -> str:
        key = parse_horizon(k).key
        if key not in {parse_horizon(h).key for h in self.meta["horizons"]}:
            raise ConfigError(f"horizon {k} was not built; the feature set has horizons {self.horizons} "
                              "(set features.horizons and rebuild, or pick one of those)")
        return key

    def labels(self, k: int | str | Horizon) -> np.ndarray:
        """int8 classes at horizon k (events, or clock time such as '1s'): 0 down, 1 stationary, 2 up, -1 undefined."""
        return self.frame[f"label_k{self._check_horizon(k)}"].to_numpy(dtype=np.int8)

    def returns(self, k: int | str | Horizon) -> np.ndarray:
        """The label return at horizon k (NaN where undefined)."""
        return self.frame[f"ret_k{self._check_horizon(k)}"].to_numpy(dtype=np.float64)

    def alpha(self, k: int | str | Horizon) -> float:
        return float(self.meta["alpha"][self._check_horizon(k)])

    def features(self) -> np.ndarray:
        """(n, F) float64 hand-made features in ``feature_names`` order."""
        return self.frame[self.feature_names].to_numpy(dtype=np.float64)

    def summary(self) -> str:
        """A few human-readable lines: what was built, rows per split, alpha and class shares."""
        m = self.meta
        split = self.split
        lines = [
            (f"{m['symbol']} {m['date']}: {m['levels']} level(s), sampling={m['sampling']}, "
             f"{m['rows']} rows from {m['event_rows']} events, {len(m['feature_names'])} features"),
            "rows: " + ", ".join(f"{name} {int((split == code).sum())}" for code, name in enumerate(SPLIT_NAMES))
            + f", purged {int((split < 0).sum())} (purge {m['splits']['purge']}, warm-up {m['splits']['warmup']})",
            f"label: {m['label']}" + (" (PARTLY KNOWN AT TIME t)" if m["label_known_at_t"] else ""),
        ]
        for k in self.horizons:
            lab = self.labels(k)
            shares = []
            for code, name in enumerate(SPLIT_NAMES):
                sel = lab[(split == code) & (lab >= 0)]
                counts = np.bincount(sel, minlength=3) / max(len(sel), 1)
                shares.append(f"{name} " + "/".join(f"{c:.2f}" for c in counts))
            h = parse_horizon(k)
            lines.append(f"{f'k={h.events}' if h.events is not None else f'h={h.seconds:g} s'}: alpha={self.alpha(k):.3g} ({m['alpha_source']}); "
                         f"down/stationary/up {', '.join(shares)}")
        return "\n".join(lines)


def resolve_purge(cfg: FeaturesConfig) -> tuple[int, int, int]:
    """(purge, purge_after, warmup) in events for a config; raises ConfigError when purge is too small.

    Only event horizons count here; clock-time horizons add a data-dependent purge in :func:`build_frame`.
    """
    longest = max([parse_horizon(h).events or 0 for h in cfg.horizons])
    purge = cfg.purge if cfg.purge is not None else max(longest, max(cfg.windows))
    if purge < longest:
        raise ConfigError(f"features.purge={purge} is shorter than the longest horizon {longest}: label windows "
                          "would cross split boundaries; set purge >= max(horizons) or null")
    purge_after = longest - 1 if cfg.label == "deeplob" else 0
    warmup = max(max(cfg.windows), longest - 1 if cfg.label == "deeplob" else 0)
    return purge, purge_after, warmup


def _check_config(cfg: FeaturesConfig) -> None:
    if not cfg.windows or not cfg.horizons:
        raise ConfigError("features.windows and features.horizons must each list at least one number of events")
    if any(v < 1 for v in cfg.windows) or len(set(cfg.windows)) != len(cfg.windows):
        raise ConfigError(f"features.windows must be distinct positive numbers of events; got {list(cfg.windows)}")
    horizons = [parse_horizon(h, "features.horizons") for h in cfg.horizons]
    if len({h.key for h in horizons}) != len(horizons):
        raise ConfigError(f"features.horizons must be distinct; got {list(cfg.horizons)}")
    clock = [h.key for h in horizons if h.is_clock]
    if clock and cfg.label != "forward":
        raise ConfigError(f"clock-time horizons {clock} need features.label=forward (the {cfg.label!r} label is "
                          "defined in events only)")
    if cfg.alpha is not None and cfg.alpha < 0:
        raise ConfigError(f"features.alpha must be >= 0 or null (fitted on the training split); got {cfg.alpha}")


def build_frame(cfg: FeaturesConfig, events: pd.DataFrame, levels: int,
                source_meta: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Features, labels and splits of a canonical event frame (pure: no I/O). Returns (frame, meta)."""
    _check_config(cfg)
    book = book_matrix(events, levels)
    index = sample_indices(book, cfg.sampling)
    feats = compute_features(book, events["type"].to_numpy(), events["size"].to_numpy(),
                             events["direction"].to_numpy(), cfg.windows,
                             None if cfg.sampling == "all" else index)
    rows = len(index)
    purge, purge_after, warmup = resolve_purge(cfg)
    times = events["time"].to_numpy(dtype=np.float64)[index]
    horizons = [parse_horizon(h) for h in cfg.horizons]
    clock = [h for h in horizons if h.is_clock]
    if clock:
        # A clock label at t reads the row at t + h: purge at least the rows that span at each boundary.
        bounds = boundaries(rows, cfg.train_frac, cfg.val_frac)
        purge = max([purge] + [clock_purge(clock_targets(times, float(h.seconds)), bounds) for h in clock])
    split, plan = time_splits(rows, cfg.train_frac, cfg.val_frac, purge, purge_after, warmup)
    train = split == TRAIN
    names = feature_names(levels, cfg.windows)
    columns: dict[str, np.ndarray] = {"time": times}
    sampled_book = book[index]
    for j, col in enumerate(book_columns(levels)):
        columns[col] = sampled_book[:, j]
    columns["mid"] = feats["mid"]
    for name in names:
        columns[name] = feats[name]
    alphas: dict[str, float] = {}
    for h in horizons:
        r = horizon_return(feats["mid"], times, h, cfg.label)
        # alpha comes from the config or from training rows only: val/test never influence it.
        alpha = float(cfg.alpha) if cfg.alpha is not None else balanced_alpha(r, train)
        alphas[h.key] = alpha
        columns[f"ret_k{h.key}"] = r
        columns[f"label_k{h.key}"] = classify(r, alpha)
    columns["split"] = split
    frame = pd.DataFrame(columns)
    stats = {}
    for name in names:
        values = feats[name][train]
        values = values[np.isfinite(values)]
        stats[name] = {"mean": float(values.mean()) if len(values) else 0.0,
                       "std": float(values.std()) if len(values) else 1.0}
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "symbol": source_meta.get("symbol"),
        "date": source_meta.get("date"),
        "levels": levels,
        "source_sha256": source_meta.get("source_sha256"),
        "event_rows": len(events),
        "rows": rows,
        "sampling": cfg.sampling,
        "windows": list(cfg.windows),
        "horizons": [h.value for h in horizons],
        "horizon_units": {h.key: h.unit for h in horizons},  # 10 -> events, '1s' -> seconds
        "label": cfg.label,
        "label_known_at_t": cfg.label == "deeplob",
        "label_note": LABEL_NOTES[cfg.label],
        "class_names": list(CLASS_NAMES),
        "alpha": alphas,
        "alpha_source": "config" if cfg.alpha is not None else "balanced on the training split",
        "splits": plan.to_dict(),
        "split_times": {name: [float(times[a]), float(times[b - 1])] if b > a else None
                        for name, (a, b) in zip(SPLIT_NAMES, (plan.train, plan.val, plan.test))},
        "train_frac": cfg.train_frac,
        "val_frac": cfg.val_frac,
        "feature_names": names,
        "feature_stats": stats,  # mean/std per feature, training rows only
        "book_columns": book_columns(levels),
    }
    return frame, meta


def build_features(cfg: FeaturesConfig, events_path: str | Path, output_dir: str | Path,
                   check: Callable[[pd.DataFrame, dict[str, Any]], None] | None = None) -> FeatureSet:
    """Read the canonical table, compute features/labels/splits, check, then write both files atomically.

    Nothing is written (and existing outputs stay as they were) when anything fails, the check included.

    Args:
        check: called with the frame and its metadata before anything is written; raises to refuse
            them. ``hftpipe.prepare.build_feature_set`` passes the features expectation suite here, so
            features/ never imports validation/.

    Raises:
        DataFormatError: the events file is missing or not a canonical table, or too short for the splits.
        ConfigError: inconsistent features settings (e.g. purge shorter than a horizon).
    """
    output_dir = Path(output_dir)
    steps = ["read events", "features, labels, splits", "check", "write"]
    with tqdm(total=len(steps), desc="features", unit="step", disable=not sys.stderr.isatty()) as bar:
        bar.set_postfix_str(steps[0])
        table = read_events(events_path)
        bar.update()
        bar.set_postfix_str(steps[1])
        frame, meta = build_frame(cfg, table.frame, table.meta.levels, table.meta.to_dict())
        bar.update()
        bar.set_postfix_str(steps[2])
        if check is not None:
            check(frame, meta)
        bar.update()
        bar.set_postfix_str(steps[3])
        meta["build_id"] = uuid.uuid4().hex
        _write_atomically(frame, meta, output_dir)
        bar.update()
    log.info("wrote %d rows x %d features (%s, %s) to %s", meta["rows"], len(meta["feature_names"]),
             meta["sampling"], meta["label"], output_dir)
    return FeatureSet(frame=frame, meta=meta)


def write_feature_set(frame: pd.DataFrame, meta: dict[str, Any], output_dir: str | Path) -> FeatureSet:
    """Write a feature set assembled elsewhere (e.g. pooled from several days) as :func:`build_features` does."""
    meta = {**meta, "rows": len(frame), "build_id": uuid.uuid4().hex}
    _write_atomically(frame, meta, Path(output_dir))
    return FeatureSet(frame=frame, meta=meta)


def _write_atomically(frame: pd.DataFrame, meta: dict[str, Any], output_dir: Path) -> None:
    """Write both files into a temporary folder next to the outputs, then rename each into place."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".features-tmp-", dir=output_dir))
    try:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        schema_meta = dict(arrow.schema.metadata or {})
        schema_meta[PARQUET_META_KEY] = json.dumps({"build_id": meta["build_id"], "rows": meta["rows"]}).encode()
        pq.write_table(arrow.replace_schema_metadata(schema_meta), tmp / FEATURES_FILE, compression="zstd")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False))
        # Each rename is atomic; the shared build_id lets load_feature_set catch a half-replaced pair.
        os.replace(tmp / FEATURES_FILE, output_dir / FEATURES_FILE)
        os.replace(tmp / META_FILE, output_dir / META_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_feature_set(directory: str | Path) -> FeatureSet:
    """Read a feature set written by :func:`build_features`.

    Raises:
        DataFormatError: files missing, or the Parquet file and the metadata come from different builds.
    """
    directory = Path(directory)
    parquet, meta_path = directory / FEATURES_FILE, directory / META_FILE
    for path in (parquet, meta_path):
        if not path.exists():
            raise DataFormatError(f"{path} does not exist; run `hftpipe features` first")
    meta = json.loads(meta_path.read_text())
    arrow = pq.read_table(parquet)
    stamp = json.loads((arrow.schema.metadata or {}).get(PARQUET_META_KEY, b"{}"))
    if stamp.get("build_id") != meta.get("build_id") or arrow.num_rows != meta.get("rows"):
        raise DataFormatError(f"{parquet} and {meta_path} come from different builds; rerun `hftpipe features`")
    return FeatureSet(frame=arrow.to_pandas(), meta=meta)
