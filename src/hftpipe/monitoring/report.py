"""``hftpipe monitor drift``: the drift report of any data file against a model bundle's reference.

Orchestration only (load the rows, predict a sample of windows, call :mod:`hftpipe.evaluation.drift`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hftpipe.config import Config
from hftpipe.errors import MonitoringError
from hftpipe.evaluation.drift import DriftReference, DriftReport, DriftThresholds, drift_report
from hftpipe.models.bundle import ModelBundle

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
Split = Literal["all", "train", "val", "test"]


def thresholds_of(cfg: Config) -> DriftThresholds:
    m = cfg.monitor
    return DriftThresholds(psi=m.psi_threshold, ks=m.ks_threshold, prediction_psi=m.prediction_psi_threshold,
                           prediction_window=m.prediction_window, natural_margin=m.natural_margin,
                           min_features=m.min_drifted_features)


def reference_of(bundle: ModelBundle) -> DriftReference:
    """The bundle's drift reference.

    Raises:
        MonitoringError: the bundle was trained before references were saved.
    """
    where = bundle.path or bundle.model_name
    if not bundle.drift_reference:
        raise MonitoringError(f"model bundle {where} has no drift reference (trained before hftpipe saved one); "
                              "retrain it with `hftpipe train` to monitor drift")
    try:
        return DriftReference.from_dict(bundle.drift_reference)
    except (KeyError, TypeError, ValueError) as exc:
        raise MonitoringError(f"model bundle {where}: unreadable drift reference ({exc}); retrain it") from exc


def load_rows(cfg: Config, data: str | Path, levels: int, split: Split = "all") -> tuple[np.ndarray, np.ndarray]:
    """The raw book (N, 4L) of a feature-set folder or any event file, and the mask of rows to report on.

    Raises:
        MonitoringError: a split was asked of a raw file, or the file has fewer levels than the model.
    """
    from hftpipe.data import book_matrix

    path = Path(data)
    if (path / "features_meta.json").is_file():
        from hftpipe.features import load_feature_set

        features = load_feature_set(path)
        book = features.book()
        mask = np.ones(len(book), bool) if split == "all" else features.split == SPLIT_CODES[split]
    else:
        if split != "all":
            raise MonitoringError(f"--split {split} needs a feature-set folder; {path} is an event file "
                                  "(leave --split at all)")
        from hftpipe.prepare import load_source

        table = load_source(path, cfg.data, (cfg.validate.session_start, cfg.validate.session_end),
                            require_symbol=False)
        book = book_matrix(table.frame)
        mask = np.ones(len(book), bool)
    if book.shape[1] < 4 * levels:
        raise MonitoringError(f"{path} has {book.shape[1] // 4} book level(s); the model needs {levels}")
    return np.ascontiguousarray(book[:, :4 * levels]), mask


def predicted_classes(bundle: ModelBundle, book: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    """Predicted classes of up to ``limit`` evenly spaced windows ending on masked rows."""
    ends = np.flatnonzero(mask)
    ends = ends[ends >= bundle.window - 1]
    if len(ends) == 0 or limit <= 0:
        return np.empty(0, dtype=np.int64)
    ends = ends[np.unique(np.linspace(0, len(ends) - 1, min(limit, len(ends))).astype(int))]
    return bundle.predict(book[ends[:, None] + np.arange(-bundle.window + 1, 1)])


def drift_of_file(cfg: Config, bundle: ModelBundle, data: str | Path, split: Split = "all") -> DriftReport:
    """The drift report of ``data`` (rows of ``split`` for a feature set) against ``bundle``'s reference.

    Raises:
        MonitoringError: no reference in the bundle, or fewer than ``monitor.min_rows`` rows.
    """
    reference = reference_of(bundle)
    book, mask = load_rows(cfg, data, bundle.levels, split)
    rows = int(mask.sum())
    if rows < cfg.monitor.min_rows:
        raise MonitoringError(f"{data} ({split}) has {rows} rows; drift needs at least monitor.min_rows="
                              f"{cfg.monitor.min_rows}")
    predicted = predicted_classes(bundle, book, mask, cfg.monitor.max_predictions)
    report = drift_report(reference, book[mask], predicted if len(predicted) else None, thresholds_of(cfg))
    log.info("drift report of %s: %d rows, drift=%s (%s)", data, rows, report.drift,
             ", ".join(report.drifted_features) or "no feature")
    return report


def summary_lines(report: DriftReport) -> list[str]:
    """Human-readable lines for the CLI."""
    out = [f"drift: {'YES' if report.drift else 'no'} ({report.rows} rows)"]
    for name, f in report.features.items():
        out.append(f"  {name:16s} psi {f['psi']:.4f}  ks {f['ks']:.4f}{'  DRIFT' if f['drift'] else ''}")
    p: dict[str, Any] | None = report.prediction
    if p and p.get("available"):
        out.append(f"  predictions      psi {p['psi']:.4f}  shares {[round(s, 3) for s in p['shares']]} vs "
                   f"{[round(s, 3) for s in p['reference_shares']]}{'  DRIFT' if p['drift'] else ''}")
    return out
