"""Tabular models over engineered book features: LightGBM, logistic regression and an MLP, torch-free.

The features are computed from the RAW book window itself (the serving contract: a window of T book
states in, class probabilities out), so serving, evaluation and the registry gate use a tabular bundle
exactly like a torch one. At the window's last state t, and at a few lags t - l, they are:

- ``spread_bps``, ``microprice_bps`` (microprice minus mid, in bps of the mid); with ``units="spreads"``
  every price move (spread, microprice offset, returns, volatility) is instead divided by the mean
  relative spread over the longest window, which removes the tick size and price level too;
- ``depth_imbalance_k`` for the first ``levels`` levels and ``cum_depth_imbalance_k`` (k >= 2);
- per event window w: ``ofi_w`` (Cont-Kukanov-Stoikov order-flow imbalance summed over w events, divided
  by the mean best-level depth over them), ``return_w_bps``, ``volatility_w_bps`` (realised, from
  one-event log mid moves) and ``mid_moves_w`` (share of the w events that moved the mid).

Every feature is a ratio or a bps move: no price level or share count, so a model trained on one
ticker reads another. Trade flow (signed volume, trade intensity) needs the event messages, which a
window of book states does not carry; it is left out here (the feature step still computes it).
``levels`` (``train.tabular_levels``) is how many book levels the bundle reads: 1 (the default) reads any
LOBSTER file, deeper books are cut to the top level by evaluation and serving as for any bundle.

Causality: the value at row t uses rows t - w - l .. t - l only (``required_rows``); the full-book path
(:func:`book_feature_matrix`, training) and the window path (:func:`window_feature_matrix`, serving) run
the same element-wise arithmetic in the same order, so they agree bit for bit.
"""

from __future__ import annotations

import abc
import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.errors import ConfigError, ModelError
from hftpipe.features.book import depth_imbalances, microprice, mid_price, spread
from hftpipe.features.flow import order_flow_imbalance_increments
from hftpipe.horizons import horizon_info
from hftpipe.models.calibration import softmax

log = logging.getLogger(__name__)

TABULAR_MODELS: tuple[str, ...] = ("lgbm", "logreg_tab", "mlp_tab")
BPS = 1e4
PAYLOAD_FORMAT = 1
_CHUNK = 8192  # windows per feature pass: bounds the (B, rows, 4L) float64 scratch


@dataclass(frozen=True)
class TabularSpec:
    """Which engineered features a tabular model reads (travels inside the bundle)."""

    levels: int = 1  # book levels the features read (depth imbalances per level)
    windows: tuple[int, ...] = (5, 10, 30)  # event windows for OFI, return, volatility, mid moves
    lags: tuple[int, ...] = (0, 1, 2, 5, 10)  # the features at t - lag, for each lag
    units: str = "bps"  # price moves in bps of the mid, or "spreads": in units of the mean relative spread

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ConfigError(f"train.tabular_levels must be >= 1; got {self.levels}")
        if not self.windows or any(w < 1 for w in self.windows) or len(set(self.windows)) != len(self.windows):
            raise ConfigError(f"train.tabular_windows must be distinct positive event counts; got {self.windows}")
        if not self.lags or any(lag < 0 for lag in self.lags) or len(set(self.lags)) != len(self.lags):
            raise ConfigError(f"train.tabular_lags must be distinct non-negative event counts; got {self.lags}")
        if self.units not in ("bps", "spreads"):
            raise ConfigError(f"train.tabular_units must be bps or spreads; got {self.units!r}")

    @property
    def required_rows(self) -> int:
        """Book states a feature row needs: the longest window plus one state before it, at the largest lag."""
        return max(self.windows) + max(self.lags) + 1

    def check_window(self, window: int) -> None:
        if window < self.required_rows:
            raise ConfigError(f"train.window={window} is shorter than the {self.required_rows} book states the "
                              f"tabular features need (max window {max(self.windows)} + max lag "
                              f"{max(self.lags)} + 1); raise train.window or shorten tabular_windows/lags")

    def base_names(self) -> list[str]:
        u = self.units
        names = [f"spread_{u}", f"microprice_{u}"]
        names += [f"depth_imbalance_{k}" for k in range(1, self.levels + 1)]
        names += [f"cum_depth_imbalance_{k}" for k in range(2, self.levels + 1)]
        for w in self.windows:
            names += [f"ofi_w{w}", f"return_w{w}_{u}", f"volatility_w{w}_{u}", f"mid_moves_w{w}"]
        return names

    def names(self) -> list[str]:
        """Column names of the feature matrix: every base feature at every lag, lag-major."""
        return [f"{name}_lag{lag}" for lag in self.lags for name in self.base_names()]

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "windows": list(self.windows), "lags": list(self.lags), "units": self.units}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TabularSpec:
        return cls(levels=int(raw["levels"]), windows=tuple(int(w) for w in raw["windows"]),
                   lags=tuple(int(lag) for lag in raw["lags"]), units=str(raw.get("units", "bps")))


# ------------------------------------------------------------------------------------------- features

def _trailing_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of the last w values along the last axis (NaN where fewer than w exist), in a fixed order.

    Added term by term (lag 0 first) rather than as a difference of cumulative sums, so the value at a row
    is the same float whether computed over a whole day or over one window: train and serve agree exactly.
    """
    n = x.shape[-1]
    out = np.full(x.shape, np.nan)
    if n < w:
        return out
    acc = x[..., w - 1:].copy()
    for j in range(1, w):
        acc += x[..., w - 1 - j:n - j]
    out[..., w - 1:] = acc
    return out


def _lagged(x: np.ndarray, w: int) -> np.ndarray:
    """x[..., t - w] at t (NaN for t < w)."""
    out = np.full(x.shape, np.nan)
    if x.shape[-1] > w:
        out[..., w:] = x[..., :-w]
    return out


def base_features(book: np.ndarray, spec: TabularSpec) -> np.ndarray:
    """Base features (..., n, F_base) of consecutive book states (..., n, 4L), rows in time order.

    The leading axes are independent sequences (windows); rows earlier than a feature's history hold
    values computed from incomplete history (NaN or garbage) and are never read (see ``required_rows``).
    """
    book = np.asarray(book, dtype=np.float64)[..., : 4 * spec.levels]
    lead, n = book.shape[:-2], book.shape[-2]
    flat = np.ascontiguousarray(book.reshape(-1, 4 * spec.levels))
    m = len(flat)
    L = spec.levels
    mid = mid_price(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_spread = spread(flat) / mid
        if spec.units == "bps":
            scale = np.full(m, 1.0 / BPS)
        else:  # the mean relative spread over the longest window: a tick-size and price-level free unit
            longest = max(spec.windows)
            scale = (_trailing_sum(rel_spread.reshape(*lead, n), longest) / longest).reshape(-1)
        cols: list[np.ndarray] = [rel_spread / scale, (microprice(flat) - mid) / mid / scale]
        per_level, cumulative = np.empty((m, L), order="F"), np.empty((m, L), order="F")
        depth_imbalances(flat, per_level, cumulative, np.empty((m, 3), order="F"))
        cols += [per_level[:, k] for k in range(L)] + [cumulative[:, k] for k in range(1, L)]
        # Per-sequence arrays (..., n): one-step quantities at a sequence's first row read across the
        # boundary of the flattened array; they are only ever summed into rows that never get read.
        ofi = order_flow_imbalance_increments(flat).reshape(*lead, n)
        depth = ((flat[:, 1] + flat[:, 3]) / 2.0).reshape(*lead, n)
        log_mid = np.log(mid).reshape(*lead, n)
        step = log_mid - _lagged(log_mid, 1)
        moved = (np.abs(step) > 0).astype(np.float64)
        for w in spec.windows:
            cols.append((_trailing_sum(ofi, w) / _trailing_sum(depth, w) * w).reshape(-1))
            cols.append((log_mid - _lagged(log_mid, w)).reshape(-1) / scale)
            cols.append(np.sqrt(_trailing_sum(step * step, w)).reshape(-1) / scale)
            cols.append((_trailing_sum(moved, w) / w).reshape(-1))
    return np.stack(cols, axis=-1).reshape(*lead, n, len(cols))


def book_feature_matrix(book: np.ndarray, ends: np.ndarray, spec: TabularSpec,
                        base: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (len(ends), F) at rows ``ends`` of a whole (n, 4L) book (the training path).

    Args:
        base: :func:`base_features` of ``book`` when already computed (it is the expensive part).
    Raises:
        ModelError: an end has fewer than ``spec.required_rows`` states behind it.
    """
    ends = np.asarray(ends, dtype=np.int64)
    if len(ends) and ends.min() < spec.required_rows - 1:
        raise ModelError(f"row {int(ends.min())} has fewer than {spec.required_rows} book states behind it")
    base = base_features(book, spec) if base is None else base
    return np.concatenate([base[ends - lag] for lag in spec.lags], axis=1)


def window_feature_matrix(raw: np.ndarray, spec: TabularSpec) -> np.ndarray:
    """Feature matrix (B, F) of raw book windows (B, T, 4L): the features at each window's last state."""
    raw = np.asarray(raw, dtype=np.float64)
    need = spec.required_rows
    out = np.empty((len(raw), len(spec.names())))
    for start in range(0, len(raw), _CHUNK):
        base = base_features(raw[start:start + _CHUNK, -need:, :], spec)  # (b, need, F_base)
        out[start:start + len(base)] = np.concatenate([base[:, need - 1 - lag, :] for lag in spec.lags], axis=1)
    return out


# ---------------------------------------------------------------------------------------- estimators

def _b64(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def _unb64(raw: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(raw["data"]), dtype=np.float64).reshape(raw["shape"]).copy()


@dataclass
class Standardiser:
    """Column means/stds of the training features; NaN (missing history, empty side) becomes the mean."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        return cls(mean=np.nan_to_num(mean), std=np.where(~np.isfinite(std) | (std < 1e-12), 1.0, std))

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


class TabularEstimator(abc.ABC):
    """Logits (B, 3) from a feature matrix; serialisable to JSON (no pickle: bundles are data, not code)."""

    name: str

    @abc.abstractmethod
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class logits of each row of ``x``."""

    @abc.abstractmethod
    def to_payload(self) -> dict[str, Any]:
        """The estimator as JSON-able data (``from_payload`` rebuilds it)."""

    def gain_importance(self) -> np.ndarray | None:
        return None


class LgbmEstimator(TabularEstimator):
    name = "lgbm"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)

    def to_payload(self) -> dict[str, Any]:
        return {"booster": self.booster.model_to_string(num_iteration=self.booster.best_iteration or None)}

    @classmethod
    def from_payload(cls, raw: dict[str, Any]) -> LgbmEstimator:
        import lightgbm  # only when a LightGBM bundle is loaded

        return cls(lightgbm.Booster(model_str=raw["booster"]))

    def gain_importance(self) -> np.ndarray:
        return np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)


class LinearEstimator(TabularEstimator):
    """Multinomial logistic regression on standardised features."""

    name = "logreg_tab"

    def __init__(self, scaler: Standardiser, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.scaler, self.coef, self.intercept = scaler, coef, intercept

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.scaler.apply(x) @ self.coef.T + self.intercept

    def to_payload(self) -> dict[str, Any]:
        return {"mean": _b64(self.scaler.mean), "std": _b64(self.scaler.std), "coef": _b64(self.coef),
                "intercept": _b64(self.intercept)}

    @classmethod
    def from_payload(cls, raw: dict[str, Any]) -> LinearEstimator:
        return cls(Standardiser(_unb64(raw["mean"]), _unb64(raw["std"])), _unb64(raw["coef"]),
                   _unb64(raw["intercept"]))


class MlpEstimator(TabularEstimator):
    """A ReLU MLP (scikit-learn's, replayed in numpy) on standardised features."""

    name = "mlp_tab"

    def __init__(self, scaler: Standardiser, weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
        self.scaler, self.weights, self.biases = scaler, weights, biases

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = self.scaler.apply(x)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)
        return h

    def to_payload(self) -> dict[str, Any]:
        return {"mean": _b64(self.scaler.mean), "std": _b64(self.scaler.std),
                "weights": [_b64(w) for w in self.weights], "biases": [_b64(b) for b in self.biases]}

    @classmethod
    def from_payload(cls, raw: dict[str, Any]) -> MlpEstimator:
        return cls(Standardiser(_unb64(raw["mean"]), _unb64(raw["std"])), [_unb64(w) for w in raw["weights"]],
                   [_unb64(b) for b in raw["biases"]])


_ESTIMATORS: dict[str, Any] = {"lgbm": LgbmEstimator, "logreg_tab": LinearEstimator, "mlp_tab": MlpEstimator}


@dataclass
class TabularModel:
    """Engineered features -> estimator logits -> temperature -> probabilities."""

    estimator: TabularEstimator
    spec: TabularSpec
    temperature: float = 1.0
    importance: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.estimator.name

    def logits_from_features(self, x: np.ndarray) -> np.ndarray:
        return self.estimator.logits(x)

    def proba_from_features(self, x: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return softmax(self.logits_from_features(x) / (self.temperature if calibrated else 1.0))

    def to_bytes(self) -> bytes:
        """The bundle's weights file: one JSON document (estimator, feature spec, temperature)."""
        doc = {"format": PAYLOAD_FORMAT, "model": self.name, "spec": self.spec.to_dict(),
               "temperature": float(self.temperature), "estimator": self.estimator.to_payload()}
        return (json.dumps(doc) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, source: str | Path = "") -> TabularModel:
        """Raises ModelError: not a tabular payload of a known format."""
        try:
            doc = json.loads(data)
            if doc.get("format") != PAYLOAD_FORMAT or doc.get("model") not in _ESTIMATORS:
                raise ModelError(f"{source}: unknown tabular model payload (format {doc.get('format')!r}, model "
                                 f"{doc.get('model')!r}); train again with this hftpipe")
            estimator = _ESTIMATORS[doc["model"]].from_payload(doc["estimator"])
            return cls(estimator=estimator, spec=TabularSpec.from_dict(doc["spec"]),
                       temperature=float(doc["temperature"]))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: the tabular model payload is unreadable ({exc}); train again") from exc


@dataclass
class TabularBundle:
    """A loaded tabular bundle with the interface of :class:`hftpipe.models.bundle.ModelBundle`.

    ``predict_proba`` takes the same RAW windows (B, T, 4L) and returns calibrated probabilities, so the
    model server, evaluation, the registry gate and the trading report need no tabular-specific code.
    """

    model: TabularModel
    model_name: str
    levels: int
    window: int
    horizon: int | str  # k events (int) or clock time ('1s'); see hftpipe.horizons
    alpha: float | None
    class_names: tuple[str, ...]
    config_dict: dict[str, Any]
    feature_meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    path: Path | None = None
    importance: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return self.model.temperature

    @property
    def config(self) -> Any:
        from hftpipe.config import config_from_dict

        return config_from_dict(self.config_dict)

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "levels": self.levels, "window": self.window, **horizon_info(self.horizon),
            "alpha": self.alpha, "class_names": list(self.class_names), "feature_meta": dict(self.feature_meta),
            "metrics": dict(self.metrics), "mlflow_run_id": self.mlflow_run_id,
            "tabular": self.model.spec.to_dict(), "temperature": self.temperature,
        }

    def _check(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim == 2:
            raw = raw[None]
        expected = (self.window, 4 * self.levels)
        if raw.ndim != 3 or raw.shape[1:] != expected:
            raise ModelError(f"this model takes raw book windows of shape (B, {expected[0]}, {expected[1]}) "
                             f"({self.window} states x {self.levels} level(s) x 4 columns); got {raw.shape}")
        return raw

    def features(self, raw_windows: np.ndarray) -> np.ndarray:
        """The engineered feature matrix (B, F) the model reads, from raw windows."""
        return window_feature_matrix(self._check(raw_windows), self.model.spec)

    def predict_logits(self, raw_windows: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (B, 3): probabilities are softmax(logits / temperature)."""
        return self.model.logits_from_features(self.features(raw_windows))

    def predict_proba(self, raw_windows: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (B, 3) [down, stationary, up] for RAW windows (B, T, 4L) or (T, 4L)."""
        return softmax(self.predict_logits(raw_windows) / self.temperature)

    def predict(self, raw_windows: np.ndarray) -> np.ndarray:
        return self.predict_proba(raw_windows).argmax(axis=1)


def names_by_group(names: Sequence[str]) -> dict[str, list[int]]:
    """Column indices per base feature (all lags of one feature together)."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        groups.setdefault(name.rsplit("_lag", 1)[0], []).append(j)
    return groups


__all__ = ["TABULAR_MODELS", "TabularBundle", "TabularModel", "TabularSpec", "base_features",
           "book_feature_matrix", "window_feature_matrix"]
