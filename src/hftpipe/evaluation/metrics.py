"""Classification metrics for the three-class label (0 down, 1 stationary, 2 up), in numpy.

Everything derives from the confusion matrix, so the same formulas serve one evaluation and thousands
of bootstrap resamples (:func:`macro_f1_from_confusion` takes a stack of matrices). Conventions follow
scikit-learn with ``labels=[0, 1, 2]`` and ``zero_division=0``: a class never predicted has precision 0,
a class never present has recall 0, and MCC is 0 when it is undefined.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hftpipe.features.labels import CLASS_NAMES, N_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d and of equal length; got {y_true.shape}, {y_pred.shape}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} holds classes outside 0..{n_classes - 1} (undefined labels must be "
                             f"dropped before scoring)")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class from one confusion matrix or a stack (..., C, C)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    predicted = confusion.sum(axis=-2)
    actual = confusion.sum(axis=-1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    # F1 = 2 tp / (predicted + actual) equals 2PR/(P+R) and stays defined when one of them is 0.
    f1 = _safe_divide(2.0 * tp, predicted + actual)
    return precision, recall, f1


def macro_f1_from_confusion(confusion: np.ndarray) -> np.ndarray | float:
    """Unweighted mean of per-class F1; accepts a stack (..., C, C) for bootstrap resamples."""
    _, _, f1 = per_class_scores(confusion)
    out = f1.mean(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def mcc_from_confusion(confusion: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K), 0 when undefined (a constant prediction)."""
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    correct = np.trace(c)
    t = c.sum(axis=1)
    p = c.sum(axis=0)
    cov_tp = correct * n - t @ p
    cov_pp = n * n - p @ p
    cov_tt = n * n - t @ t
    den = cov_tt * cov_pp
    return float(cov_tp / np.sqrt(den)) if den > 0 else 0.0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Macro-F1, accuracy, MCC, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true: (n,) int labels in {0, 1, 2}.
        y_pred: (n,) int predictions in {0, 1, 2}.
    Returns:
        ``{"n", "macro_f1", "accuracy", "mcc", "per_class": {name: {precision, recall, f1, support}},
        "confusion": [[...]]}`` with plain Python numbers (JSON-ready).
    """
    conf = confusion_matrix(y_true, y_pred)
    n = int(conf.sum())
    precision, recall, f1 = per_class_scores(conf)
    support = conf.sum(axis=1)
    return {
        "n": n,
        "macro_f1": float(f1.mean()),
        "accuracy": float(np.trace(conf) / n) if n else 0.0,
        "mcc": mcc_from_confusion(conf),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion": conf.astype(int).tolist(),
    }
