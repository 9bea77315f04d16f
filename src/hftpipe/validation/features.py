"""Validate the features table (``features.parquet`` + ``features_meta.json``) against ``features.json``."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from hftpipe.config import ValidateConfig
from hftpipe.data.schema import book_columns, levels_of
from hftpipe.horizons import horizon_key
from hftpipe.validation.result import ValidationResult
from hftpipe.validation.runner import validate_frame
from hftpipe.validation.suites import Templates

FEATURES_SUITE = "features"
_LABEL = re.compile(r"^label_k(\d+|\d+(?:\.\d+)?s)$")  # label_k10 (events), label_k1s (clock time)
_BOOK = re.compile(r"^(ask|bid)_(price|size)_\d+$")
NON_FEATURE_COLUMNS = {"time", "mid", "split"}


def _horizons(frame: pd.DataFrame, meta: dict[str, Any]) -> tuple[str, ...]:
    """Column keys of the label horizons ('10' for 10 events, '1s' for one second)."""
    if meta.get("horizons"):
        return tuple(horizon_key(h) for h in meta["horizons"])
    return tuple(m.group(1) for c in frame.columns if (m := _LABEL.match(str(c))))


def _feature_names(frame: pd.DataFrame, meta: dict[str, Any]) -> tuple[str, ...]:
    """Hand-made feature columns: from the metadata, else every column not time/book/mid/label/split."""
    for key in ("feature_names", "features"):
        names = meta.get(key)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return tuple(names)
    return tuple(
        str(c) for c in frame.columns
        if str(c) not in NON_FEATURE_COLUMNS and not _BOOK.match(str(c))
        and not str(c).startswith(("ret_k", "label_k"))
    )


def validate_features_frame(frame: pd.DataFrame, meta: dict[str, Any], cfg: ValidateConfig,
                            source: str = "features") -> ValidationResult:
    """Validate a features table: labels and splits in their sets, finite features, mid > 0, time order.

    Args:
        frame: the ``features.parquet`` table.
        meta: ``features_meta.json`` (levels, horizons, feature names, rows); missing keys are
            read off the frame's columns.
        cfg: the ``validate`` section.
    """
    levels = int(meta.get("levels") or levels_of(frame))
    horizons = _horizons(frame, meta)
    features = _feature_names(frame, meta)
    required = ["time", *book_columns(levels), "mid", *features]
    for h in horizons:
        required += [f"ret_k{h}", f"label_k{h}"]
    required.append("split")
    return validate_frame(
        frame,
        FEATURES_SUITE,
        parameters={"columns": required, "rows": int(meta.get("rows", len(frame)))},
        templates=Templates(levels=levels, horizons=horizons, features=features),
        suites_dir=cfg.suites_dir,
        sample_rows=cfg.sample_rows,
        source=source,
        subject="features",
        meta={k: meta[k] for k in ("symbol", "date", "levels", "sampling", "label", "rows") if k in meta}
        | {"horizons": [int(h) if h.isdigit() else h for h in horizons], "features": len(features)},
    )
