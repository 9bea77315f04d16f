"""The outcome monitor's live drift provider: the offline report's verdict on a sliding window."""

from __future__ import annotations

import numpy as np

from hftpipe.data import load_lobster
from hftpipe.evaluation.drift import DriftThresholds, build_reference
from hftpipe.monitoring.live_drift import LiveDrift
from tests.conftest import lobster_zip


def _book() -> np.ndarray:
    return load_lobster(lobster_zip("GOOG", 10)).book()


def test_a_widened_spread_is_flagged_and_the_same_day_is_not() -> None:
    # The same case as the offline acceptance (`hftpipe monitor drift` on a widened copy of the day), fed
    # through the live window one book at a time. Short windows are noisier: the trigger's hold time and
    # cooldown are what keep a live blip from retraining.
    book = _book()
    reference = build_reference(book[: int(0.7 * len(book))])  # the training split's share of the day
    thresholds = DriftThresholds(prediction_window=len(book))

    clean = LiveDrift(reference, thresholds, min_rows=500)
    for row in book:
        clean.add_book(row)
    drifted, detail = clean()
    assert drifted is False, detail["drifted_features"]

    wide = book.copy()
    mid = (wide[:, 0] + wide[:, 2]) / 2
    for level in range(10):  # every price moves away from the mid by twice its distance
        for col in (4 * level, 4 * level + 2):
            wide[:, col] = mid + 2 * (wide[:, col] - mid)
    widened = LiveDrift(reference, thresholds, min_rows=500)
    for row in wide:
        widened.add_book(row)
    drifted, detail = widened()
    assert drifted is True and "spread_bps" in detail["drifted_features"], detail["drifted_features"]


def test_nothing_to_judge_is_not_an_alarm() -> None:
    assert LiveDrift(None, DriftThresholds(), min_rows=10)()[0] is None
    few = LiveDrift(build_reference(_book()[:5000]), DriftThresholds(), min_rows=100)
    few.add_book(_book()[0])
    verdict, detail = few()
    assert verdict is None and "fewer than 100" in detail["reason"]
