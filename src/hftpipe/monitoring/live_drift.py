"""Drift over the live stream: the last N book states and predicted classes against the model's reference.

The outcome monitor feeds every new book update and signal in; the retrain trigger calls the object for a
verdict (the same per-feature PSI/KS and prediction PSI as ``hftpipe monitor drift`` offline, on a sliding
window). Pure: no bus, no metrics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from hftpipe.evaluation.drift import DriftReference, DriftThresholds, drift_report


class LiveDrift:
    """Sliding-window drift against a training reference; call it for ``(drift or None, detail)``."""

    def __init__(self, reference: DriftReference | None, thresholds: DriftThresholds, min_rows: int) -> None:
        self.reference = reference
        self.thresholds = thresholds
        self.min_rows = max(1, min_rows)
        window = max(thresholds.prediction_window, self.min_rows)
        self.books: deque[np.ndarray] = deque(maxlen=window)
        self.predicted: deque[int] = deque(maxlen=window)

    def add_book(self, book: Sequence[float]) -> None:
        row = np.asarray(book, dtype=np.float64)
        if self.books and self.books[-1].shape != row.shape:
            self.books.clear()  # another level count (a new feed): the window restarts
        self.books.append(row)

    def add_prediction(self, predicted: int) -> None:
        self.predicted.append(int(predicted))

    def __call__(self) -> tuple[bool | None, dict[str, Any]]:
        """None when there is nothing to judge yet (no reference, too few rows): never a false alarm."""
        if self.reference is None:
            return None, {"reason": "the model bundle has no drift reference (trained before drift existed)"}
        if len(self.books) < self.min_rows:
            return None, {"reason": f"{len(self.books)} live rows, fewer than {self.min_rows}"}
        predicted = np.fromiter(self.predicted, dtype=np.int64) if len(self.predicted) >= self.min_rows else None
        report = drift_report(self.reference, np.vstack(self.books), predicted, self.thresholds)
        return report.drift, report.to_dict()
