"""The retrain's training set: the model's original day plus the recorded live day, pooled at the feature level
(each day's features and labels on its own, one label definition, live data last and holding val/test)."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.config import FeaturesConfig
from hftpipe.data import load_lobster
from hftpipe.errors import DataFormatError
from hftpipe.features.build import build_frame
from hftpipe.features.labels import classify
from hftpipe.features.splits import PURGED, TEST, TRAIN, VAL
from hftpipe.monitoring.retrain_job import pool_feature_frames
from tests.conftest import lobster_zip

CFG = FeaturesConfig(windows=(10, 50), horizons=(10, 20))
WINDOW = 80  # longer than the warm-up (50): the purge at the start of the live day follows the model's window


@pytest.fixture(scope="module")
def days() -> tuple:
    table = load_lobster(lobster_zip("GOOG", 1))
    frame = table.frame
    meta = table.meta.to_dict()
    original = build_frame(CFG, frame.iloc[:6000].reset_index(drop=True), table.meta.levels,
                           {**meta, "source_sha256": "a" * 64})
    # the "live" day: later events, with spreads widened so its own balanced bands would differ
    live_events = frame.iloc[6000:10000].reset_index(drop=True).copy()
    live_events["ask_price_1"] += 200
    live_events["bid_price_1"] -= 200
    live = build_frame(CFG, live_events, table.meta.levels, {**meta, "source_sha256": "b" * 64})
    return original, live


def test_pooled_rows_labels_and_splits(days: tuple) -> None:
    (a, meta_a), (b, meta_b) = days
    assert meta_a["alpha"] != meta_b["alpha"]  # balanced per day: they would disagree without pooling's rule
    frame, meta = pool_feature_frames((a, meta_a), (b, meta_b), WINDOW)
    n = len(a)
    assert len(frame) == n + len(b) == meta["rows"]
    split = frame["split"].to_numpy()
    # the original day trains (all its usable rows), purged rows stay purged
    assert set(np.unique(split[:n])) == {TRAIN, PURGED}
    assert ((split[:n] == TRAIN) == (a["split"].to_numpy() >= 0)).all()
    # the live day: no window reaches back into the original day, then its own time split
    assert (split[n:n + WINDOW - 1] == PURGED).all()
    live_split = b["split"].to_numpy()
    np.testing.assert_array_equal(split[n + WINDOW - 1:], live_split[WINDOW - 1:])
    test_rows = np.flatnonzero(split == TEST)
    assert test_rows.min() > n and (np.diff(test_rows) == 1).all()  # contiguous, live only (the gate's rows)
    assert (split == VAL).sum() == (live_split == VAL).sum()
    # one label definition: the live day's labels with the original's bands, the original's untouched
    assert meta["alpha"] == meta_a["alpha"]
    for h in CFG.horizons:
        want = classify(b[f"ret_k{h}"].to_numpy(), meta_a["alpha"][str(h)])
        np.testing.assert_array_equal(frame[f"label_k{h}"].to_numpy()[n:], want)
        np.testing.assert_array_equal(frame[f"label_k{h}"].to_numpy()[:n], a[f"label_k{h}"].to_numpy())
        assert (a[f"label_k{h}"].to_numpy()[-h:] == -1).all()  # no label of the original day reads the live day
    # lineage: both parts, a new data id, statistics over the pooled training rows
    assert [p["source_sha256"] for p in meta["parts"]] == ["a" * 64, "b" * 64]
    assert meta["source_sha256"] not in ("a" * 64, "b" * 64)
    name = meta["feature_names"][0]
    values = frame[name].to_numpy()[split == TRAIN]
    assert meta["feature_stats"][name]["mean"] == pytest.approx(np.nanmean(values))


def test_other_columns_are_refused(days: tuple) -> None:
    (a, meta_a), (b, meta_b) = days
    with pytest.raises(DataFormatError, match="differ in their columns"):
        pool_feature_frames((a, meta_a), (b.drop(columns=[meta_b["feature_names"][0]]), meta_b), WINDOW)
