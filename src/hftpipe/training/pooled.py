"""The training data of one model: one feature set, or several stacked (pooled across instruments and days).

Pooling stacks the raw books, labels and splits of every set end to end and remembers where each set
starts (``starts``). Every consumer takes window ends from :func:`hftpipe.training.data.sample_ends` with
those starts, which drops the first T-1 rows of every set, so:

- no input window (torch families) and no lagged engineered feature (tabular families, which read at most
  ``required_rows <= T`` states back) reaches into the set before it;
- each set keeps its own labels (its own stationary band alpha) and its own split;
- the normalisation statistics (window mean/std, the tabular standardiser) are fitted on the pooled
  training rows.

The model input stays instrument-agnostic: prices enter as bps from the window's last mid (torch) or as
ratios and bps moves (tabular), never as a price level; sizes enter the torch families as log1p(shares),
z-scored with the pooled statistics, so an instrument that trades in larger lots shows as an offset the
model can learn from (see docs/pooled.md for the choice). Every set must have the same book depth.

A lake partition's feature folder (``<lake>/features/source=.../symbol=.../date=...``) is read like any
feature set; when pooled, a whole-day split from the lake's manifest (``lake.split: by_date``) replaces the
row split inside the partition, as docs/lake.md asks of consumers.

Each set may take part with explicit options (:class:`PooledSet`): its ``role`` (``split``: its own
train/val/test rows, the default; ``train``: every labelled row trains and none is held out, e.g. a model's
original day beside a recorded live day) and an ``alpha`` override (label bands per horizon that replace the
set's own, e.g. the live day labelled with the original day's bands so the classes mean one thing). A
*collection* is a folder whose ``pooled_sets.json`` lists the sets with their options: the pipeline's pooled
steps and the outcome monitor's retrain hand one folder from step to step, and ``hftpipe train COLLECTION``
reads it like the list of its sets.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.horizons import horizon_key, horizon_value
from hftpipe.models.bundle import LINEAGE_KEYS

log = logging.getLogger(__name__)

_DAY_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
COLLECTION_FILE = "pooled_sets.json"  # a collection folder's list of sets and their options
ROLES = ("split", "train")


@dataclass(frozen=True)
class PooledSet:
    """One feature set of a pooled training and how it takes part."""

    path: str  # feature-set folder (a collection stores it relative to itself when inside it)
    role: Literal["split", "train"] = "split"  # split: its own train/val/test; train: every labelled row trains
    alpha: dict[str, float] | None = None  # label bands per horizon ("10": 0.0001) replacing the set's own

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"pooled set {self.path}: role {self.role!r} is not one of {list(ROLES)}")

    @property
    def plain(self) -> bool:
        """True when the set takes part as ``hftpipe train DIR`` would read it."""
        return self.role == "split" and self.alpha is None


def is_collection(path: str | Path) -> bool:
    """True for a folder written by :func:`write_collection`."""
    return (Path(path) / COLLECTION_FILE).is_file()


def write_collection(folder: str | Path, sets: Sequence[PooledSet]) -> Path:
    """Write ``folder/pooled_sets.json`` listing ``sets`` in order (paths inside ``folder`` stored relative)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in sets:
        path = Path(s.path).resolve()
        try:
            stored = str(path.relative_to(folder.resolve()))
        except ValueError:
            stored = str(path)
        rows.append({**asdict(s), "path": stored})
    (folder / COLLECTION_FILE).write_text(json.dumps({"sets": rows}, indent=2) + "\n")
    return folder


def read_collection(folder: str | Path) -> list[PooledSet]:
    """The sets a collection folder lists, with absolute paths.

    Raises:
        DataFormatError: the list is missing, not JSON, or empty.
    """
    folder = Path(folder)
    path = folder / COLLECTION_FILE
    try:
        rows = json.loads(path.read_text())["sets"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path} is not a list of pooled sets ({exc}); write it with "
                              "hftpipe.training.pooled.write_collection") from exc
    if not rows:
        raise DataFormatError(f"{path} lists no feature set")
    out = []
    for row in rows:
        alpha = row.get("alpha")
        out.append(PooledSet(path=str(folder / row["path"]) if not Path(row["path"]).is_absolute() else row["path"],
                             role=row.get("role", "split"),
                             alpha=None if alpha is None else {str(k): float(v) for k, v in alpha.items()}))
    return out


def expand_sets(features_dirs: str | Path | PooledSet | Sequence[str | Path | PooledSet]) -> list[PooledSet]:
    """The sets to train on: folders, :class:`PooledSet` entries, and collections replaced by what they list."""
    items = [features_dirs] if isinstance(features_dirs, (str, Path, PooledSet)) else list(features_dirs)
    out: list[PooledSet] = []
    for item in items:
        if isinstance(item, PooledSet):
            out.append(item)
        elif is_collection(item):
            out.extend(read_collection(item))
        else:
            out.append(PooledSet(str(item)))
    return out


def scored_sets(features_dirs: str | Path | Sequence[str | Path | PooledSet]) -> list[str]:
    """Folders whose held-out rows evaluation scores: every set with role ``split`` (a ``train`` set has none)."""
    return [s.path for s in expand_sets(features_dirs) if s.role == "split"]


@dataclass
class TrainingData:
    """Raw book, labels and split of one or several feature sets, with the lineage the bundle records."""

    book: np.ndarray  # (n, 4L) float64, the sets stacked in the order given
    labels: np.ndarray  # (n,) int8 at the training horizon, each set's own labels
    split: np.ndarray  # (n,) int8: 0 train, 1 val, 2 test, -1 purged / warm-up
    starts: np.ndarray | None  # first row of each set; None: one set (the single-set path, unchanged)
    levels: int
    alpha: float | None  # the label band: the sets' common alpha, None when they differ
    feature_meta: dict[str, Any]  # what bundle.json's feature_meta records
    trained_on: list[dict[str, Any]]  # one entry per set: symbol, date, source_sha256, rows, alpha, ...

    @property
    def pooled(self) -> bool:
        return self.starts is not None


def _alpha_at(meta: dict[str, Any], horizon: int | str) -> float | None:
    alpha_map = meta.get("alpha") or {}
    value = alpha_map.get(horizon_key(horizon)) if isinstance(alpha_map, dict) else alpha_map
    return None if value is None else float(value)


def _check_horizon(meta: dict[str, Any], horizon: int | str, where: str | Path) -> None:
    horizons = [horizon_value(h) for h in meta.get("horizons", [])]
    # Compared with their units: train.horizon=10 (events) never matches a '10s' label.
    if horizons and horizon_value(horizon) not in horizons:
        suffix = "" if str(where) == "" else f" ({where})"
        raise ConfigError(f"train.horizon={horizon} is not among the feature set's horizons {horizons}{suffix}; "
                          "set train.horizon to one of them or rebuild features with that horizon")


def lineage(meta: dict[str, Any], horizon: int | str, rows: int | None = None) -> dict[str, Any]:
    """One ``trained_on`` entry: which data, how many rows, its label band."""
    entry = {key: meta.get(key) for key in LINEAGE_KEYS}
    if rows is not None:
        entry["rows"] = int(rows)
    entry["alpha"] = _alpha_at(meta, horizon)
    return entry


def lake_day_split(features_dir: str | Path) -> str | None:
    """The lake manifest's whole-day split (train / val / test) of a lake partition's feature folder.

    None when the folder is not inside a lake, or the manifest says ``within`` (the row split applies).
    """
    from hftpipe.lake.dataset import FEATURES_DIR, MANIFEST_FILE

    path = Path(features_dir).resolve()
    parts = path.parts
    if len(parts) < 5 or parts[-4] != FEATURES_DIR or not parts[-3].startswith("source="):
        return None
    root = path.parents[3]
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{manifest_path} is not valid JSON ({exc}); rerun `hftpipe lake features`") from exc
    key = "/".join(parts[-3:])
    split = ((manifest.get("features") or {}).get(key) or {}).get("split")
    return split if split in _DAY_SPLIT_CODES else None


def _describe(meta: dict[str, Any]) -> str:
    return f"{meta.get('symbol')} {meta.get('date')}"


def _set_labels(fs: Any, spec: PooledSet, horizon: int | str) -> np.ndarray:
    """The set's labels at ``horizon``: its own, or its label returns thresholded with the override's band."""
    from hftpipe.features import classify

    if spec.alpha is None:
        return fs.labels(horizon)
    if horizon_key(horizon) not in spec.alpha:
        raise ConfigError(f"pooled set {spec.path}: the alpha override has no band for horizon {horizon} "
                          f"(it has {sorted(spec.alpha)}); give one per trained horizon")
    return classify(fs.returns(horizon), float(spec.alpha[horizon_key(horizon)]))


def load_training_data(features_dirs: str | Path | PooledSet | Sequence[str | Path | PooledSet],
                       horizon: int | str) -> TrainingData:
    """Read one feature set, or several to pool, into the arrays :func:`hftpipe.training.fit` takes.

    Args:
        features_dirs: a feature-set folder, a collection folder, :class:`PooledSet` entries, or a list of them.
    Raises:
        ConfigError: ``horizon`` is not built in a set, the sets disagree on label kind or sampling, or no set
            has role ``split`` (validation and test come from those).
        DataFormatError: the sets have different book depths, or a folder is listed twice.
    """
    from hftpipe.features import load_feature_set

    sets = expand_sets(features_dirs)
    dirs = [s.path for s in sets]
    if not dirs:
        raise ConfigError("no feature set to train on; pass at least one FEATURES_DIR")
    if not any(s.role == "split" for s in sets):
        raise ConfigError("every pooled set has role 'train': at least one needs role 'split' "
                          "(validation and test rows come from it)")
    if len(sets) == 1 and sets[0].plain:  # the single-set path: exactly what train() always did
        features = load_feature_set(dirs[0])
        meta = dict(features.meta)
        _check_horizon(meta, horizon, "")
        return TrainingData(book=features.book(), labels=features.labels(horizon), split=features.split,
                            starts=None, levels=features.levels, alpha=_alpha_at(meta, horizon),
                            feature_meta=meta, trained_on=[lineage(meta, horizon)])

    resolved = [str(Path(d).resolve()) for d in dirs]
    if len(set(resolved)) != len(resolved):
        raise DataFormatError("a feature set is listed twice; pass each FEATURES_DIR once")
    books, labels, splits, metas, entries = [], [], [], [], []
    for spec in sets:
        directory = spec.path
        fs = load_feature_set(directory)
        meta = dict(fs.meta)
        _check_horizon(meta, horizon, directory)
        split = fs.split
        day = "train" if spec.role == "train" else lake_day_split(directory)
        if day is not None:  # the whole set in one split (role train, or the lake's day): its labelled rows go there
            split = np.where(split >= 0, np.int8(_DAY_SPLIT_CODES[day]), np.int8(-1)).astype(np.int8)
        books.append(fs.book())
        labels.append(_set_labels(fs, spec, horizon))
        splits.append(split)
        metas.append(meta)
        entry = lineage(meta, horizon, len(split))
        entry["levels"] = fs.levels
        entry["split_rows"] = {name: int((split == code).sum()) for name, code in _DAY_SPLIT_CODES.items()}
        if spec.role == "train":
            entry["role"] = "train"
        elif day is not None:
            entry["lake_split"] = day
        if spec.alpha is not None:
            entry["alpha"] = float(spec.alpha[horizon_key(horizon)])
            entry["alpha_source"] = "override"
        entries.append(entry)

    depths = {int(m["levels"]) for m in metas}
    if len(depths) > 1:
        listed = ", ".join(f"{_describe(m)} {m['levels']}" for m in metas)
        raise DataFormatError(f"pooled training needs one book depth but the feature sets have {listed} level(s); "
                              "build every set from files with the same number of levels (data.levels), "
                              "e.g. the 1-level LOBSTER files")
    for key in ("label", "sampling"):
        kinds = {str(m.get(key)) for m in metas}
        if len(kinds) > 1:
            raise ConfigError(f"the feature sets were built with different features.{key} ({', '.join(sorted(kinds))}); "
                              f"rebuild them with one features.{key}")
    alphas = [e["alpha"] for e in entries]
    common = alphas[0]
    if any(a is None for a in alphas) or any(not math.isclose(a, common, rel_tol=1e-9) for a in alphas):  # type: ignore[arg-type]
        # Each set keeps the band fitted on its own training rows: no single alpha describes the labels.
        common = None
    starts = np.cumsum([0] + [len(b) for b in books[:-1]]).astype(np.int64)
    first = metas[0]
    feature_meta = {
        "symbol": "+".join(dict.fromkeys(str(m.get("symbol")) for m in metas)),
        "date": "+".join(dict.fromkeys(str(m.get("date")) for m in metas)),
        # No single source file: evaluation decides train-or-not per file from "sets".
        "source_sha256": None,
        "levels": int(first["levels"]), "sampling": first.get("sampling"), "label": first.get("label"),
        "rows": int(sum(len(s) for s in splits)),
    }
    log.info("pooling %d feature sets (%s): %d rows, %d level(s); alpha %s", len(dirs),
             ", ".join(_describe(m) for m in metas), feature_meta["rows"], feature_meta["levels"],
             "per set" if common is None else f"{common:.4g}")
    return TrainingData(book=np.concatenate(books), labels=np.concatenate(labels), split=np.concatenate(splits),
                        starts=starts, levels=int(first["levels"]), alpha=common, feature_meta=feature_meta,
                        trained_on=entries)

