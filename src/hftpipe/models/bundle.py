"""The model bundle: everything needed to serve a model without the training process.

A bundle folder holds ``model.pt`` (the state_dict) and ``bundle.json`` (how to rebuild the module, the
window normalisation statistics, the resolved config, feature lineage and training metrics). Each file is
written atomically (temporary file + rename), ``model.pt`` first; ``bundle.json`` records the sha256 of
``model.pt`` so a reader never pairs weights with the wrong description.

:meth:`ModelBundle.predict_proba` takes RAW book windows and applies
:func:`hftpipe.features.window.model_input` itself: serving never re-implements preprocessing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hftpipe.errors import ModelError
from hftpipe.features.labels import CLASS_NAMES
from hftpipe.features.window import WindowStats, model_input
from hftpipe.horizons import horizon_info, horizon_value
from hftpipe.models.calibration import softmax
from hftpipe.models.spec import ModelSpec
from hftpipe.models.tabular import TABULAR_MODELS, TabularBundle, TabularModel

MODEL_FILE = "model.pt"
BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
_PREDICT_CHUNK = 4096  # windows per forward pass, bounds memory for large batch requests
# Which training data a bundle records, per set (bundle.json "trained_on"; older bundles only feature_meta).
LINEAGE_KEYS = ("symbol", "date", "source_sha256", "rows")
_FEATURE_META_KEYS = ("symbol", "date", "source_sha256", "levels", "sampling", "label", "rows")


def lineage_info(feature_meta: dict[str, Any] | None, trained_on: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``feature_meta`` and ``trained_on`` entries of bundle.json.

    ``feature_meta`` keeps its old single-file shape so every reader of it still works; a model trained on
    several sets names them all there too (``sets``), and ``symbol``/``date`` join theirs with ``+``.
    """
    meta = feature_meta or {}
    info: dict[str, Any] = {"feature_meta": {k: meta.get(k) for k in _FEATURE_META_KEYS if k in meta}}
    if trained_on is None:
        trained_on = [{k: meta.get(k) for k in LINEAGE_KEYS}]
    info["trained_on"] = [dict(entry) for entry in trained_on]
    if len(trained_on) > 1:
        info["feature_meta"]["sets"] = info["trained_on"]
    return info


def training_sets(trained_on: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Every training set of a model, from a ``trained_on`` list or a bundle's ``feature_meta`` (any age)."""
    if trained_on is None:
        return []
    if isinstance(trained_on, dict):
        sets = trained_on.get("sets")
        if isinstance(sets, list):
            return [dict(s) for s in sets]
        return [{key: trained_on.get(key) for key in LINEAGE_KEYS}]
    return [dict(s) for s in trained_on]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(
    directory: str | Path,
    module: nn.Module,
    *,
    config: dict[str, Any],
    model_name: str,
    levels: int,
    window: int,
    horizon: int | str,
    alpha: float | None,
    stats: WindowStats,
    hidden: int,
    dropout: float,
    feature_meta: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    mlflow_run_id: str | None = None,
    trained_on: list[dict[str, Any]] | None = None,
    drift_reference: dict[str, Any] | None = None,
    temperature: float | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` and ``bundle.json`` into ``directory`` (created if needed); return the folder.

    Args:
        config: the resolved config (``Config.to_dict()``).
        alpha: the stationary band of the label at this horizon (from ``features_meta.json``).
        stats: window statistics fitted on the training split.
        feature_meta: lineage of the training data (symbol, date, source_sha256, ...).
        trained_on: one entry per training set (symbol, date, source_sha256, rows); default: feature_meta's.
        metrics: training metrics (best validation macro-F1, epochs, ...).
        drift_reference: feature and prediction distributions on the training split
            (:meth:`hftpipe.evaluation.drift.DriftReference.to_dict`); optional, older bundles lack it.
        temperature: logits are divided by it before the softmax (fitted on validation); None: 1.
        calibration: Brier score and reliability before/after the temperature, on validation.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = buf.getvalue()
    spec = ModelSpec(model_name, int(levels), int(window), int(hidden), float(dropout))
    info: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        **spec.to_bundle_info(),
        **horizon_info(horizon),
        "alpha": None if alpha is None else float(alpha),
        "class_names": list(CLASS_NAMES),
        "window_stats": stats.to_dict(),
        **lineage_info(feature_meta, trained_on),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "config": config,
        "model_sha256": hashlib.sha256(weights).hexdigest(),
    }
    if temperature is not None:
        info["temperature"] = float(temperature)
        info["calibration"] = calibration or {}
    if mlflow_run_id:
        info["mlflow_run_id"] = mlflow_run_id
    if drift_reference is not None:
        info["drift_reference"] = drift_reference
    _atomic_write(directory / MODEL_FILE, weights)
    _atomic_write(directory / BUNDLE_FILE, (json.dumps(info, indent=2) + "\n").encode())
    return directory


@dataclass
class ModelBundle:
    """A loaded bundle: the module in eval mode plus what it needs to turn raw windows into probabilities."""

    module: nn.Module
    model_name: str
    levels: int
    window: int
    horizon: int | str  # k events (int) or clock time ('1s'); see hftpipe.horizons
    alpha: float | None
    stats: WindowStats
    class_names: tuple[str, ...]
    config_dict: dict[str, Any]
    feature_meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    path: Path | None = None
    drift_reference: dict[str, Any] | None = None  # None: trained before references were saved
    temperature: float = 1.0  # logits / temperature before the softmax (fitted on validation)
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        """The resolved :class:`hftpipe.config.Config` the model was trained with."""
        from hftpipe.config import config_from_dict

        return config_from_dict(self.config_dict)

    @property
    def meta(self) -> dict[str, Any]:
        """Everything in ``bundle.json`` except the config (for display and MLflow tags)."""
        return {
            "model": self.model_name, "levels": self.levels, "window": self.window, **horizon_info(self.horizon),
            "alpha": self.alpha, "class_names": list(self.class_names), "feature_meta": dict(self.feature_meta),
            "metrics": dict(self.metrics), "mlflow_run_id": self.mlflow_run_id,
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

    def predict_logits(self, raw_windows: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (B, 3) for RAW windows: probabilities are softmax(logits / temperature)."""
        raw = self._check(raw_windows)
        out = np.empty((len(raw), len(self.class_names)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(raw), _PREDICT_CHUNK):
                x = torch.from_numpy(model_input(raw[start:start + _PREDICT_CHUNK], self.stats))
                out[start:start + len(x)] = self.module(x).float().numpy()
        return out

    def predict_proba(self, raw_windows: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (B, 3) [down, stationary, up] for RAW windows (B, T, 4L) or one (T, 4L)."""
        return softmax(self.predict_logits(raw_windows) / self.temperature)

    def predict(self, raw_windows: np.ndarray) -> np.ndarray:
        """Most probable class (B,) int64: 0 down, 1 stationary, 2 up."""
        return self.predict_proba(raw_windows).argmax(axis=1)


def read_bundle_json(directory: str | Path) -> dict[str, Any]:
    """The parsed ``bundle.json`` of a bundle folder.

    Raises:
        ModelError: the folder is not a model bundle.
    """
    path = Path(directory) / BUNDLE_FILE
    if not path.is_file():
        raise ModelError(f"{directory} is not a model bundle: {BUNDLE_FILE} is missing (run `hftpipe train`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc


def _load_tabular(directory: Path, info: dict[str, Any], weights: bytes) -> TabularBundle:
    model = TabularModel.from_bytes(weights, directory)
    try:
        return TabularBundle(
            model=model, model_name=info["model"], levels=int(info["levels"]), window=int(info["window"]),
            horizon=horizon_value(info["horizon"], "bundle.json horizon"), alpha=info.get("alpha"),
            class_names=tuple(info.get("class_names", CLASS_NAMES)), config_dict=info.get("config", {}),
            feature_meta=info.get("feature_meta", {}), metrics=info.get("metrics", {}),
            mlflow_run_id=info.get("mlflow_run_id"), path=directory, importance=info.get("importance", {}),
            calibration=info.get("calibration", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{directory}: cannot rebuild the tabular model from {BUNDLE_FILE}: {exc}") from exc


def load_bundle(directory: str | Path) -> ModelBundle | TabularBundle:
    """Load a bundle folder written by :func:`save_bundle`; the module is on CPU in eval mode.

    A tabular family's bundle (``lgbm``, ``logreg_tab``, ``mlp_tab``) loads as a
    :class:`~hftpipe.models.tabular.TabularBundle`: the same attributes and ``predict_proba(raw windows)``.

    Raises:
        ModelError: missing files, weights that do not match ``bundle.json``, or an unknown format.
    """
    directory = Path(directory)
    info = read_bundle_json(directory)
    if info.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{directory}: bundle format {info.get('format')!r} is not supported "
                         f"(this hftpipe reads format {BUNDLE_FORMAT})")
    weights_path = directory / MODEL_FILE
    if not weights_path.is_file():
        raise ModelError(f"{directory}: {MODEL_FILE} is missing; the bundle is incomplete, train again")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != info.get("model_sha256"):
        raise ModelError(f"{directory}: {MODEL_FILE} does not match {BUNDLE_FILE} (sha256 differs); "
                         "the bundle was changed or partly overwritten, train again")
    if info.get("model") in TABULAR_MODELS:  # engineered-feature families: a torch-free predictor
        return _load_tabular(directory, info, weights)
    try:
        module = ModelSpec.from_bundle_info(info).build()
        module.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"{directory}: cannot rebuild the model from {BUNDLE_FILE}: {exc}") from exc
    module.eval()
    return ModelBundle(
        module=module,
        model_name=info["model"],
        levels=int(info["levels"]),
        window=int(info["window"]),
        horizon=horizon_value(info["horizon"], "bundle.json horizon"),
        alpha=info.get("alpha"),
        stats=WindowStats.from_dict(info["window_stats"]),
        class_names=tuple(info.get("class_names", CLASS_NAMES)),
        config_dict=info.get("config", {}),
        feature_meta=info.get("feature_meta", {}),
        metrics=info.get("metrics", {}),
        mlflow_run_id=info.get("mlflow_run_id"),
        path=directory,
        drift_reference=info.get("drift_reference"),
        temperature=float(info.get("temperature") or 1.0),
        calibration=info.get("calibration", {}),
    )
