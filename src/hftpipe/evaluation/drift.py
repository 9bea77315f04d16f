"""Data and prediction drift against the reference saved with the model bundle (pure domain code).

The monitored features are a handful of stationary book descriptors computed from raw book states
(spread in bps, top-of-book sizes and imbalance, total depth, the book's width, the one-event mid
return): raw prices trend through a day, so they would raise drift on every new hour. The reference
holds, per feature, the training split's quantile bin edges with their proportions (for PSI) and an
evenly spaced quantile sketch (for KS), plus the distribution of predicted classes on training windows.

PSI = sum((cur - ref) * ln(cur / ref)) over bins, with empty bins floored at ``EPS``; KS is the two-sample
Kolmogorov-Smirnov statistic (the same number as ``scipy.stats.ks_2samp(a, b).statistic``).

A trading day is not stationary (the opening's spreads are twice the afternoon's), so a fixed PSI cut
flags the model's own validation and test hours. The reference therefore also records the *natural*
variation: the largest PSI and KS of any contiguous fifth of the training split against the whole split.
A feature drifts when both its PSI and its KS exceed ``max(fixed threshold, margin x natural)``: more
different from training than any stretch of training was. The verdict needs ``min_features`` drifted
features (default one) or drifted predictions. The KS floor of 0.3 (the CDFs 30 points apart somewhere)
is what keeps GOOG's own closing hours quiet: their top-of-book ask sizes sit at KS 0.25 from training.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hftpipe.features.labels import N_CLASSES

EPS = 1e-4  # floor of a bin's share in PSI: an empty bin would make ln(0) infinite
REFERENCE_FORMAT = 1
BPS = 1e4


# --------------------------------------------------------------------------------------------- statistics
def psi(expected: np.ndarray, actual: np.ndarray, eps: float = EPS) -> float:
    """Population stability index of two bin-share (or bin-count) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or len(e) == 0:
        raise ValueError(f"psi needs two 1-d vectors of the same length; got {e.shape} and {a.shape}")
    e = np.maximum(e / max(e.sum(), eps), eps)
    a = np.maximum(a / max(a.sum(), eps), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each of the len(edges)+1 bins cut at the interior ``edges`` (x == edge goes right)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right"),
                         minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior cut points at the 1/bins ... (bins-1)/bins quantiles, ties merged (discrete features)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.empty(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    b = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if len(a) == 0 or len(b) == 0:
        raise ValueError("ks_statistic needs two non-empty samples")
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def class_shares(classes: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Share of each predicted class (0 down, 1 stationary, 2 up)."""
    classes = np.asarray(classes, dtype=np.int64)
    return np.bincount(classes, minlength=n_classes)[:n_classes] / max(len(classes), 1)


# --------------------------------------------------------------------------------------------- features
def _safe_log1p(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(np.nan_to_num(x, nan=0.0), 0.0))


def _spread_bps(book: np.ndarray) -> np.ndarray:
    mid = (book[:, 0] + book[:, 2]) / 2.0
    return (book[:, 0] - book[:, 2]) / mid * BPS


def _imbalance_1(book: np.ndarray) -> np.ndarray:
    bid, ask = np.nan_to_num(book[:, 3]), np.nan_to_num(book[:, 1])
    total = bid + ask
    return np.divide(bid - ask, total, out=np.zeros_like(total), where=total > 0)


def _width_bps(side: int) -> Callable[[np.ndarray], np.ndarray]:
    def width(book: np.ndarray) -> np.ndarray:
        mid = (book[:, 0] + book[:, 2]) / 2.0
        prices = book[:, side::4]
        deepest = np.nanmax(prices, axis=1) if side == 0 else np.nanmin(prices, axis=1)
        return np.abs(deepest - mid) / mid * BPS
    return width


def _mid_return_bps(book: np.ndarray) -> np.ndarray:
    mid = (book[:, 0] + book[:, 2]) / 2.0
    out = np.zeros(len(mid))
    out[1:] = np.log(mid[1:] / mid[:-1]) * BPS
    return out


FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "spread_bps": _spread_bps,
    "imbalance_1": _imbalance_1,
    "log_ask_size_1": lambda b: _safe_log1p(b[:, 1]),
    "log_bid_size_1": lambda b: _safe_log1p(b[:, 3]),
    "log_ask_depth": lambda b: _safe_log1p(np.nansum(b[:, 1::4], axis=1)),
    "log_bid_depth": lambda b: _safe_log1p(np.nansum(b[:, 3::4], axis=1)),
    "ask_width_bps": _width_bps(0),
    "bid_width_bps": _width_bps(2),
    "mid_return_bps": _mid_return_bps,
}


def monitored_features(book: np.ndarray) -> dict[str, np.ndarray]:
    """The drift-monitored features of raw book states (N, 4L) in LOBSTER order, one value per state."""
    book = np.asarray(book, dtype=np.float64)
    if book.ndim != 2 or book.shape[1] % 4 or book.shape[1] == 0:
        raise ValueError(f"a book has shape (N, 4L); got {book.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: fn(book) for name, fn in FEATURES.items()}


# --------------------------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class FeatureReference:
    """One feature on the training split: PSI bins and a KS quantile sketch."""

    edges: np.ndarray  # interior bin edges
    shares: np.ndarray  # training share per bin (len(edges) + 1)
    sketch: np.ndarray  # evenly spaced quantiles of the training values
    natural_psi: float = 0.0  # largest PSI of a contiguous chunk of training against all of it
    natural_ks: float = 0.0  # same for KS

    def figures(self, values: np.ndarray) -> tuple[float, float]:
        """(PSI, KS) of ``values`` against this reference."""
        finite = values[np.isfinite(values)]
        p = psi(self.shares, bin_shares(finite, self.edges))
        k = ks_statistic(self.sketch, finite) if len(finite) and len(self.sketch) else float("nan")
        return p, k

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "shares": self.shares.tolist(), "sketch": self.sketch.tolist(),
                "natural_psi": self.natural_psi, "natural_ks": self.natural_ks}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureReference:
        return cls(np.asarray(d["edges"], dtype=np.float64), np.asarray(d["shares"], dtype=np.float64),
                   np.asarray(d["sketch"], dtype=np.float64), float(d.get("natural_psi", 0.0)),
                   float(d.get("natural_ks", 0.0)))


@dataclass(frozen=True)
class DriftReference:
    """What the model saw in training: per-feature reference and the predicted-class shares."""

    features: dict[str, FeatureReference]
    prediction_shares: np.ndarray | None  # (3,) or None when no predictions were taken
    rows: int  # training rows the feature reference was built from
    natural_prediction_psi: float = 0.0  # largest PSI of a contiguous chunk of training predictions

    def to_dict(self) -> dict[str, Any]:
        return {"format": REFERENCE_FORMAT, "rows": self.rows,
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "prediction_shares": None if self.prediction_shares is None else self.prediction_shares.tolist(),
                "natural_prediction_psi": self.natural_prediction_psi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftReference:
        if d.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"drift reference format {d.get('format')!r} is not supported")
        shares = d.get("prediction_shares")
        return cls(features={k: FeatureReference.from_dict(v) for k, v in d["features"].items()},
                   prediction_shares=None if shares is None else np.asarray(shares, dtype=np.float64),
                   rows=int(d.get("rows", 0)), natural_prediction_psi=float(d.get("natural_prediction_psi", 0.0)))


def _chunks(n: int, k: int) -> list[slice]:
    return [slice(i * n // k, (i + 1) * n // k) for i in range(k) if (i + 1) * n // k > i * n // k]


def build_reference(book: np.ndarray, predicted: np.ndarray | None = None, *, bins: int = 10,
                    sketch: int = 200, chunks: int = 5) -> DriftReference:
    """The drift reference of training book states (N, 4L) in time order and the classes the model predicts
    on (a time-ordered sample of) them; ``chunks`` contiguous parts measure the natural variation."""
    feats = monitored_features(book)
    refs = {}
    for name, values in feats.items():
        finite = values[np.isfinite(values)]
        edges = quantile_edges(finite, bins)
        points = np.quantile(finite, np.linspace(0, 1, sketch)) if len(finite) else np.empty(0)
        ref = FeatureReference(edges, bin_shares(finite, edges), points)
        natural = [ref.figures(values[part]) for part in _chunks(len(values), chunks)] if chunks > 1 else []
        refs[name] = FeatureReference(edges, ref.shares, points,
                                      natural_psi=round(max((p for p, _ in natural), default=0.0), 6),
                                      natural_ks=round(max((k for _, k in natural), default=0.0), 6))
    if predicted is None or len(predicted) == 0:
        return DriftReference(refs, None, rows=len(book))
    shares = class_shares(predicted)
    natural_p = max((psi(shares, class_shares(predicted[part])) for part in _chunks(len(predicted), chunks)),
                    default=0.0) if chunks > 1 else 0.0
    return DriftReference(refs, shares, rows=len(book), natural_prediction_psi=round(natural_p, 6))


# --------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class DriftThresholds:
    """When a figure counts as drift (mirrors the ``monitor`` section of params.yaml)."""

    psi: float = 0.25
    ks: float = 0.3
    prediction_psi: float = 0.2
    prediction_window: int = 2000
    natural_margin: float = 1.25  # a figure must also exceed this times the training split's own variation
    min_features: int = 1  # drifted features needed for the verdict (predictions count on their own)


@dataclass
class DriftReport:
    """Per-feature PSI and KS, prediction drift, and the verdict."""

    rows: int
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    prediction: dict[str, Any] | None = None
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted_features(self) -> list[str]:
        return [k for k, v in self.features.items() if v["drift"]]

    @property
    def drift(self) -> bool:
        return (len(self.drifted_features) >= self.thresholds.min_features
                or bool(self.prediction and self.prediction["drift"]))

    def to_dict(self) -> dict[str, Any]:
        return {"drift": self.drift, "rows": self.rows, "drifted_features": self.drifted_features,
                "features": self.features, "prediction": self.prediction,
                "thresholds": {"psi": self.thresholds.psi, "ks": self.thresholds.ks,
                               "prediction_psi": self.thresholds.prediction_psi,
                               "prediction_window": self.thresholds.prediction_window,
                               "natural_margin": self.thresholds.natural_margin,
                               "min_features": self.thresholds.min_features}}


def feature_drift(reference: DriftReference, book: np.ndarray, thresholds: DriftThresholds) -> dict[str, dict[str, Any]]:
    """PSI and KS of each monitored feature of ``book`` against the reference."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in monitored_features(book).items():
        ref = reference.features.get(name)
        if ref is None:  # a feature added after this model was trained: nothing to compare against
            continue
        finite = values[np.isfinite(values)]
        p, k = ref.figures(finite)
        psi_cut = max(thresholds.psi, thresholds.natural_margin * ref.natural_psi)
        ks_cut = max(thresholds.ks, thresholds.natural_margin * ref.natural_ks)
        out[name] = {"psi": round(p, 6), "ks": round(k, 6), "psi_threshold": round(psi_cut, 6),
                     "ks_threshold": round(ks_cut, 6),
                     "median": float(np.median(finite)) if len(finite) else None,
                     "reference_median": float(np.median(ref.sketch)) if len(ref.sketch) else None,
                     "drift": bool(p >= psi_cut and k >= ks_cut)}
    return out


def prediction_drift(reference: DriftReference, predicted: np.ndarray, thresholds: DriftThresholds) -> dict[str, Any]:
    """PSI of the predicted-class shares against training, overall and over consecutive windows."""
    if reference.prediction_shares is None:
        return {"available": False, "drift": False, "reason": "the reference has no prediction distribution"}
    shares = class_shares(predicted)
    window = SlidingPredictionDrift(reference.prediction_shares, thresholds.prediction_window)
    windows = []
    for start in range(0, len(predicted), thresholds.prediction_window):
        window.extend(predicted[start:start + thresholds.prediction_window])
        windows.append(window.psi())
    total = psi(reference.prediction_shares, shares)
    cut = max(thresholds.prediction_psi, thresholds.natural_margin * reference.natural_prediction_psi)
    return {"available": True, "psi": round(total, 6), "psi_threshold": round(cut, 6), "shares": shares.tolist(),
            "reference_shares": reference.prediction_shares.tolist(), "rows": len(predicted),
            "window_psi_max": round(max(windows), 6) if windows else None,
            "window_psi_last": round(windows[-1], 6) if windows else None,
            "drift": bool(total >= cut)}


class SlidingPredictionDrift:
    """PSI of the last ``window`` predicted classes against the training shares (for a live monitor)."""

    def __init__(self, reference_shares: Iterable[float], window: int) -> None:
        if window < 1:
            raise ValueError(f"prediction window must be >= 1; got {window}")
        self.reference = np.asarray(list(reference_shares), dtype=np.float64)
        self.window: deque[int] = deque(maxlen=window)
        self.counts = np.zeros(len(self.reference), dtype=np.int64)

    def add(self, cls: int) -> None:
        if len(self.window) == self.window.maxlen:
            self.counts[self.window[0]] -= 1
        self.window.append(int(cls))
        self.counts[int(cls)] += 1

    def extend(self, classes: Iterable[int]) -> None:
        for c in classes:
            self.add(c)

    def psi(self) -> float:
        return psi(self.reference, self.counts.astype(np.float64)) if self.window else 0.0


def drift_report(reference: DriftReference, book: np.ndarray, predicted: np.ndarray | None,
                 thresholds: DriftThresholds) -> DriftReport:
    """The full report: features of ``book`` and, when given, the classes the model predicts on it."""
    report = DriftReport(rows=len(book), thresholds=thresholds)
    report.features = feature_drift(reference, book, thresholds)
    if predicted is not None:
        report.prediction = prediction_drift(reference, predicted, thresholds)
    return report
