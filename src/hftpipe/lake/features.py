"""Features per partition, and splits by time across partitions.

Each partition is one task that runs the single-file builder on that partition alone, so no feature
window and no label window crosses a symbol-day boundary:

- order-book events: :func:`hftpipe.features.build_features` (the ``hftpipe features`` step), writing
  ``features.parquet`` + ``features_meta.json`` under ``features/<partition>/``;
- bars: :func:`hftpipe.features.bars.bar_feature_set` (its own horizons in bars, 1/5/15; the split
  fractions and alpha come from the ``features`` section) with windows restarting per exchange day
  (``group="day"``) for bars shorter than an hour; hourly and longer bars (FX trades around the
  clock, a day holds too few hourly bars for the windows) restart per partition;
- trades: aggregated to ``lake.tick_bars`` bars, windows restarting per partition (the shipped crypto
  trades run around the clock and are too sparse for a full window every day).

Splits. Inside a partition the builder assigns its usual row split (train / val / test by time
fractions, purged at the boundaries). Across partitions, with ``lake.split = by_date`` and at least
three days of a (source, symbol), whole days go to one split: the earliest ``train_frac`` of the days
train, the next ``val_frac`` validate, the rest test; the manifest's ``split`` of each partition says
which, and a consumer takes that partition's rows with ``split >= 0`` (warm-up and end-of-day rows
without a label stay out). With fewer days (the shipped LOBSTER samples are one day each), or with
``lake.split = within``, the manifest says ``within`` and the row split inside the partition applies,
exactly as the single-file path. alpha (the stationary band) is fitted per partition on its training
rows unless ``features.alpha`` is set; set it when days of a symbol must share one band.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.config import FeaturesConfig
from hftpipe.errors import DataFormatError
from hftpipe.lake.dataset import (
    FEATURES_DIR,
    Failure,
    RunReport,
    locked,
    now_iso,
    parse_key,
    partition_file,
    read_manifest,
    resolve_root,
    write_manifest,
)

log = logging.getLogger(__name__)

BAR_FEATURES_FILE = "bar_features.parquet"
SPLITS = ("train", "val", "test")


def features_dir(root: str | Path, key: str) -> Path:
    """Where the features of partition ``key`` live."""
    return Path(root) / FEATURES_DIR / key


def config_fingerprint(cfg: FeaturesConfig, tick_bars: str) -> str:
    """Short hash of the settings that shape the features (a change rebuilds every partition)."""
    text = json.dumps({"features": asdict(cfg), "tick_bars": tick_bars}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_partition(root: str | Path, key: str, cfg: FeaturesConfig, tick_bars: str = "1min") -> dict[str, Any]:
    """Features of one partition, written under ``features/<key>/`` (the features task of one worker)."""
    from hftpipe.features import build_features

    started = time.perf_counter()
    root = Path(root)
    source = parse_key(key)["source"]
    part, out = partition_file(root, key), features_dir(root, key)
    if source.startswith("lobster"):
        fs = build_features(cfg, part, out)
        split, rows, events = fs.split, fs.meta["rows"], fs.meta["event_rows"]
    else:
        split, rows, events = _bar_partition(part, out, source, cfg, tick_bars)
    return {"rows": int(rows), "events": int(events),
            "row_split": {name: int((split == code).sum()) for code, name in enumerate(SPLITS)}
            | {"purged": int((split < 0).sum())},
            "seconds": round(time.perf_counter() - started, 3)}


def _bar_partition(part: Path, out: Path, source: str, cfg: FeaturesConfig,
                   tick_bars: str) -> tuple[np.ndarray, int, int]:
    import pandas as pd

    from hftpipe.data.bars import read_bars
    from hftpipe.data.ticks import read_ticks, ticks_to_bars
    from hftpipe.features.bars import bar_feature_set, write_bar_feature_set

    if source.startswith("ticks"):
        ticks = read_ticks(part)
        events = ticks.meta.rows
        table = ticks_to_bars(ticks, tick_bars)
    else:
        table = read_bars(part)
        events = table.meta.rows
    # Exchange sessions: windows restart each day. Hourly bars and trades (crypto trades around the
    # clock, sparse: a day holds too few bars for the windows) restart per partition instead.
    intraday = pd.Timedelta(table.meta.bar_size) < pd.Timedelta("1h") and not source.startswith("ticks")
    group = "day" if intraday else "symbol"
    frame, alphas = bar_feature_set(table, train_frac=cfg.train_frac, val_frac=cfg.val_frac, group=group,
                                    alpha=cfg.alpha)
    write_bar_feature_set(frame, alphas, table, out / BAR_FEATURES_FILE)  # atomic (tmp + rename)
    return frame["split"].to_numpy(), len(frame), events


def features_current(root: Path, manifest: dict[str, Any], key: str, fingerprint: str) -> bool:
    """True when ``key``'s features were built with these settings from the partition's current data."""
    done = manifest["features"].get(key, {})
    return (done.get("config") == fingerprint
            and done.get("source_sha256") == manifest["partitions"][key]["source_sha256"]
            and features_dir(root, key).exists())


def features_entry(root: Path, manifest: dict[str, Any], key: str, built: dict[str, Any],
                   fingerprint: str) -> dict[str, Any]:
    """The manifest's ``features[key]`` for a ``build_partition`` result (``split`` is set later, across keys)."""
    return built | {"config": fingerprint, "source_sha256": manifest["partitions"][key]["source_sha256"],
                    "written_at": now_iso(), "path": str(features_dir(root, key))}


def assign_splits(manifest: dict[str, Any], train_frac: float, val_frac: float, mode: str) -> dict[str, str]:
    """Split of each featured partition: whole days by date per (source, symbol), or ``within``."""
    days: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in manifest["features"]:
        k = parse_key(key)
        days[(k["source"], k["symbol"])].append(key)
    out: dict[str, str] = {}
    for keys in days.values():
        keys.sort(key=lambda key: parse_key(key)["date"])
        n = len(keys)
        if mode != "by_date" or n < 3:
            out.update({key: "within" for key in keys})
            continue
        n_train = min(max(1, math.floor(n * train_frac)), n - 2)
        n_val = min(max(1, round(n * val_frac)), n - n_train - 1)
        for i, key in enumerate(keys):
            out[key] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return out


def features_dataset(root: str | Path | None = None, cfg: FeaturesConfig | None = None, *,
                     workers: int | None = None, scheduler: str | None = None, memory_limit: str = "2GiB",
                     keep_going: bool = False, split: str = "by_date", tick_bars: str = "1min",
                     force: bool = False, partitions: Sequence[str] | None = None,
                     client: Any = None) -> RunReport:
    """Build features for every partition in parallel; partitions already built with the same settings
    from the same data are skipped (``force`` rebuilds them).

    Args:
        partitions: only these partition keys (``source=.../symbol=.../date=...``); default all.
    Raises:
        DataFormatError: a key in ``partitions`` is not in the manifest.
        PartitionsFailed: some partitions failed and ``keep_going`` is false (the others are written).
    """
    from hftpipe.lake.runner import run_tasks

    started = time.perf_counter()
    root = resolve_root(root)
    cfg = cfg or FeaturesConfig()
    fingerprint = config_fingerprint(cfg, tick_bars)
    report = RunReport(root=root, action="features")
    with locked(root):
        manifest = read_manifest(root)
        keys = sorted(manifest["partitions"]) if partitions is None else list(partitions)
        missing = [k for k in keys if k not in manifest["partitions"]]
        if missing:
            raise DataFormatError(f"no partition {', '.join(missing)} in {root}; see `hftpipe lake ls`")
        todo = []
        for key in keys:
            if not force and features_current(root, manifest, key, fingerprint):
                report.unchanged.append(key)
            else:
                todo.append((key, (str(root), key, cfg, tick_bars)))
        results, crashed = run_tasks(build_partition, todo, workers=workers, scheduler=scheduler,
                                     memory_limit=memory_limit, desc="features", client=client)
        for key, _ in todo:
            if key in crashed:
                report.failed.append(Failure(key, crashed[key]))
                manifest["features"].pop(key, None)
                continue
            manifest["features"][key] = features_entry(root, manifest, key, results[key], fingerprint)
            report.written.append(key)
        for key, name in assign_splits(manifest, cfg.train_frac, cfg.val_frac, split).items():
            manifest["features"][key]["split"] = name
        write_manifest(root, manifest)
    report.seconds = time.perf_counter() - started
    if not keep_going:
        report.raise_if_failed()
    return report
