"""Training the tabular families (``lgbm``, ``logreg_tab``, ``mlp_tab``) on engineered window features.

Same samples as the torch families (window ends in the train / validation split with a defined label,
:func:`hftpipe.training.data.sample_ends`), same class weights, early stopping on validation (LightGBM:
multi-class log loss; the MLP: scikit-learn's own validation fraction of the training rows), then a
temperature fitted on validation logits, and feature importance on validation (gain, and the drop in
validation macro-F1 when one feature's columns, all its lags, are shuffled together).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.config import Config, TrainConfig
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.horizons import horizon_info
from hftpipe.models.bundle import (
    BUNDLE_FILE,
    BUNDLE_FORMAT,
    CLASS_NAMES,
    MODEL_FILE,
    _atomic_write,
    lineage_info,
)
from hftpipe.models.calibration import calibration_summary, fit_temperature
from hftpipe.models.tabular import (
    LgbmEstimator,
    LinearEstimator,
    MlpEstimator,
    Standardiser,
    TabularEstimator,
    TabularModel,
    TabularSpec,
    base_features,
    book_feature_matrix,
    names_by_group,
)
from hftpipe.tracking import Tracker
from hftpipe.training.data import TRAIN, VAL, sample_ends

log = logging.getLogger(__name__)

PERMUTATION_ROWS = 20_000  # validation rows scored per shuffled feature: bounds the importance cost
PERMUTATION_REPEATS = 2


def spec_from_config(tcfg: TrainConfig, book_levels: int) -> TabularSpec:
    spec = TabularSpec(levels=min(tcfg.tabular_levels, book_levels), windows=tuple(tcfg.tabular_windows),
                       lags=tuple(tcfg.tabular_lags), units=tcfg.tabular_units)
    spec.check_window(tcfg.window)
    return spec


@dataclass
class TabularFit:
    model: TabularModel
    metrics: dict[str, float]
    importance: dict[str, Any]
    calibration: dict[str, Any]
    history: list[dict[str, float]]


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from hftpipe.training.trainer import confusion_counts, macro_f1_from_confusion

    return macro_f1_from_confusion(confusion_counts(y, pred))


def _fit_estimator(name: str, x: np.ndarray, y: np.ndarray, w: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                   wv: np.ndarray, tcfg: TrainConfig, threads: int) -> tuple[TabularEstimator, list[dict[str, float]]]:
    if name == "lgbm":
        import lightgbm

        params = {"objective": "multiclass", "num_class": 3, "learning_rate": tcfg.lgbm_learning_rate,
                  "num_leaves": tcfg.lgbm_num_leaves, "min_data_in_leaf": 100, "feature_fraction": 0.8,
                  "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "seed": tcfg.seed,
                  "num_threads": threads, "verbosity": -1, "deterministic": True, "force_row_wise": True}
        evals: dict[str, Any] = {}
        booster = lightgbm.train(
            params, lightgbm.Dataset(x, y, weight=w, free_raw_data=True), num_boost_round=tcfg.lgbm_rounds,
            valid_sets=[lightgbm.Dataset(xv, yv, weight=wv)], valid_names=["val"],
            callbacks=[lightgbm.record_evaluation(evals)]
            + ([lightgbm.early_stopping(tcfg.lgbm_early_stopping, verbose=False)] if tcfg.lgbm_early_stopping > 0
               else []))
        curve = evals.get("val", {}).get("multi_logloss", [])
        return LgbmEstimator(booster), [{"round": i + 1, "val_weighted_logloss": float(v)}
                                        for i, v in enumerate(curve)]
    scaler = Standardiser.fit(x)
    z = scaler.apply(x)
    if name == "logreg_tab":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=1.0, max_iter=300, random_state=tcfg.seed)
        clf.fit(z, y, sample_weight=w)
        return LinearEstimator(scaler, clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)), []
    if name == "mlp_tab":
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=(tcfg.hidden * 2, tcfg.hidden), alpha=1e-4, batch_size=256,
                            learning_rate_init=1e-3, max_iter=max(tcfg.epochs * 5, 20), early_stopping=True,
                            n_iter_no_change=max(tcfg.patience, 2), random_state=tcfg.seed)
        clf.fit(z, y, sample_weight=w)
        curve = [{"epoch": i + 1, "val_accuracy": float(v)} for i, v in enumerate(clf.validation_scores_ or [])]
        return MlpEstimator(scaler, [c.astype(np.float64) for c in clf.coefs_],
                            [b.astype(np.float64) for b in clf.intercepts_]), curve
    raise ConfigError(f"train.model: {name!r} is not a tabular model")


def permutation_importance(model: TabularModel, x: np.ndarray, y: np.ndarray, names: list[str],
                           seed: int) -> dict[str, float]:
    """Drop in macro-F1 when one base feature (all its lags together) is shuffled across rows."""
    rng = np.random.default_rng(seed)
    base = _macro_f1(y, model.logits_from_features(x).argmax(axis=1))
    out: dict[str, float] = {}
    for group, cols in names_by_group(names).items():
        drops = []
        for _ in range(PERMUTATION_REPEATS):
            shuffled = x.copy()
            order = rng.permutation(len(x))
            shuffled[:, cols] = x[order][:, cols]
            drops.append(base - _macro_f1(y, model.logits_from_features(shuffled).argmax(axis=1)))
        out[group] = float(np.mean(drops))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def fit_tabular(book: np.ndarray, labels: np.ndarray, split: np.ndarray, tcfg: TrainConfig,
                tracker: Tracker | None = None, starts: np.ndarray | None = None) -> TabularFit:
    """Fit ``tcfg.model`` (a tabular family) on windows of ``book``; calibrate and rank features on val.

    ``starts``: first row of each stacked feature set (pooled training). A feature row reads at most
    ``spec.required_rows <= window`` states back, so with window ends from :func:`sample_ends` no lag or
    event window reaches into the set before, although the features are computed over the stacked book.

    Raises:
        DataFormatError: no training or validation samples.
        ConfigError: the window is too short for the feature spec.
    """
    from hftpipe.training.trainer import inverse_frequency_weights

    book = np.ascontiguousarray(book, dtype=np.float64)
    if book.ndim != 2 or book.shape[1] % 4 or len(book) != len(labels):
        raise DataFormatError(f"book must be (n, 4L) with one label per row; got {book.shape} and {labels.shape}")
    spec = spec_from_config(tcfg, book.shape[1] // 4)
    train_ends = sample_ends(labels, split, TRAIN, tcfg.window, starts)
    val_ends = sample_ends(labels, split, VAL, tcfg.window, starts)
    if len(train_ends) == 0 or len(val_ends) == 0:
        raise DataFormatError(f"no usable windows: {len(train_ends)} training and {len(val_ends)} validation "
                              f"samples with T={tcfg.window}; use more data or a shorter train.window")
    rng = np.random.default_rng(tcfg.seed)
    if tcfg.max_train_samples and len(train_ends) > tcfg.max_train_samples:
        train_ends = np.sort(rng.choice(train_ends, size=tcfg.max_train_samples, replace=False))
    started = time.perf_counter()
    base = base_features(book, spec)
    x, xv = book_feature_matrix(book, train_ends, spec, base), book_feature_matrix(book, val_ends, spec, base)
    del base
    y, yv = labels[train_ends].astype(np.int64), labels[val_ends].astype(np.int64)
    cw = inverse_frequency_weights(y) if tcfg.class_weights else np.ones(3)
    w, wv = cw[y], cw[yv]
    names = spec.names()
    threads = tcfg.threads or 1
    log.info("training %s on %d train / %d val windows, %d features (%d level(s), windows %s, lags %s)",
             tcfg.model, len(y), len(yv), len(names), spec.levels, list(spec.windows), list(spec.lags))
    estimator, history = _fit_estimator(tcfg.model, x, y, w, xv, yv, wv, tcfg, threads)
    model = TabularModel(estimator=estimator, spec=spec)
    logits_v = model.logits_from_features(xv)
    pred_v = logits_v.argmax(axis=1)
    val_f1 = _macro_f1(yv, pred_v)
    val_acc = float((pred_v == yv).mean())
    temperature = fit_temperature(logits_v, yv) if tcfg.calibrate else 1.0
    model.temperature = temperature
    calibration = calibration_summary(logits_v, yv, temperature)
    calibration["fitted_on"] = "validation split"
    perm_rows = np.sort(rng.choice(len(yv), size=min(PERMUTATION_ROWS, len(yv)), replace=False))
    importance: dict[str, Any] = {
        "permutation_macro_f1_drop": permutation_importance(model, xv[perm_rows], yv[perm_rows], names, tcfg.seed),
        "permutation_rows": len(perm_rows), "computed_on": "validation split",
    }
    gain = estimator.gain_importance()
    if gain is not None:
        per_group = {g: float(gain[cols].sum()) for g, cols in names_by_group(names).items()}
        total = sum(per_group.values()) or 1.0
        importance["gain_share"] = dict(sorted(((g, v / total) for g, v in per_group.items()),
                                               key=lambda kv: -kv[1]))
    model.importance = importance
    seconds = time.perf_counter() - started
    metrics = {
        "best_val_macro_f1": val_f1, "best_val_accuracy": val_acc,
        # LightGBM: boosting rounds (best, run); MLP: epochs; logistic regression: one fit.
        "best_epoch": float(getattr(getattr(estimator, "booster", None), "best_iteration", 0) or len(history) or 1),
        "epochs_run": float(len(history) or 1), "train_samples": float(len(y)), "val_samples": float(len(yv)),
        "temperature": temperature, "val_brier_uncalibrated": calibration["uncalibrated"]["brier"],
        "val_brier_calibrated": calibration["calibrated"]["brier"], "train_seconds": seconds,
        "train_samples_per_s": len(y) / max(seconds, 1e-9), "n_features": float(len(names)),
    }
    log.info("%s: val macro-F1 %.4f, accuracy %.4f; temperature %.3f, val Brier %.4f -> %.4f (%.1f s)",
             tcfg.model, val_f1, val_acc, temperature, metrics["val_brier_uncalibrated"],
             metrics["val_brier_calibrated"], seconds)
    if tracker is not None:
        for i, h in enumerate(history):
            tracker.log_metrics({k: v for k, v in h.items() if k not in ("round", "epoch")}, step=i + 1)
        tracker.log_metrics({"val_macro_f1": val_f1, "val_accuracy": val_acc})
    return TabularFit(model=model, metrics=metrics, importance=importance, calibration=calibration,
                      history=history)


def save_tabular_bundle(directory: str | Path, model: TabularModel, *, config: dict[str, Any], window: int,
                        horizon: int | str, alpha: float | None, feature_meta: dict[str, Any] | None = None,
                        metrics: dict[str, float] | None = None, importance: dict[str, Any] | None = None,
                        calibration: dict[str, Any] | None = None, mlflow_run_id: str | None = None,
                        trained_on: list[dict[str, Any]] | None = None) -> Path:
    """Write ``model.pt`` (the tabular payload: JSON, no pickle) and ``bundle.json``, as :func:`save_bundle`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = model.to_bytes()
    info: dict[str, Any] = {
        "format": BUNDLE_FORMAT, "model": model.name, "levels": model.spec.levels, "window": int(window),
        **horizon_info(horizon), "alpha": None if alpha is None else float(alpha), "hidden": 0, "dropout": 0.0,
        "class_names": list(CLASS_NAMES), "tabular": {**model.spec.to_dict(), "features": model.spec.names(),
                                                      "temperature": model.temperature},
        **lineage_info(feature_meta, trained_on),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "importance": importance or {}, "calibration": calibration or {},
        "config": config, "model_sha256": hashlib.sha256(payload).hexdigest(),
    }
    if mlflow_run_id:
        info["mlflow_run_id"] = mlflow_run_id
    _atomic_write(directory / MODEL_FILE, payload)
    _atomic_write(directory / BUNDLE_FILE, (json.dumps(info, indent=2, allow_nan=False) + "\n").encode())
    return directory


def train_tabular(cfg: Config, data: Any, output_dir: str | Path, tracker: Tracker | None = None) -> Any:
    """Fit a tabular family on loaded training data (:class:`~hftpipe.training.pooled.TrainingData`) and write
    its bundle; returns a TrainResult."""
    from hftpipe.training.trainer import TrainResult

    tcfg = cfg.train
    meta = data.feature_meta
    result = fit_tabular(data.book, data.labels, data.split, tcfg, tracker=tracker, starts=data.starts)
    run_id = getattr(tracker, "run_id", None) if tracker is not None else None
    bundle_dir = save_tabular_bundle(output_dir, result.model, config=cfg.to_dict(), window=tcfg.window,
                                     horizon=tcfg.horizon, alpha=data.alpha, feature_meta=meta, metrics=result.metrics,
                                     importance=result.importance, calibration=result.calibration,
                                     mlflow_run_id=run_id, trained_on=data.trained_on)
    log.info("model bundle written to %s (val macro-F1 %.4f)", bundle_dir, result.metrics["best_val_macro_f1"])
    if tracker is not None:
        tracker.log_metrics({f"final_{k}": v for k, v in result.metrics.items()})
        tracker.set_tags({"train.world_size": "1", "train.device": "cpu", "data.symbol": str(meta.get("symbol")),
                          "data.date": str(meta.get("date")), "data.source_sha256": str(meta.get("source_sha256"))}
                         | ({"data.sets": str(len(data.trained_on))} if data.pooled else {}))
        tracker.log_dict({"importance": result.importance, "calibration": result.calibration},
                         "tabular/importance_calibration.json")
        tracker.log_artifact(bundle_dir, "bundle")
    return TrainResult(bundle_dir=bundle_dir, model=tcfg.model, metrics=result.metrics, history=result.history)
