"""The retrain's training set: the model's original day plus the recorded live day, pooled by the one pooled core
(hftpipe.training.pooled) with explicit per-set options: the original day with role ``train`` (every labelled
row trains), the live day with its own split and the original's label bands (an ``alpha`` override)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hftpipe.config import FeaturesConfig
from hftpipe.data import load_lobster
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features import load_feature_set
from hftpipe.features.build import build_frame, write_feature_set
from hftpipe.features.labels import classify
from hftpipe.features.splits import PURGED, TEST, TRAIN, VAL
from hftpipe.training.data import sample_ends
from hftpipe.training.pooled import (
    PooledSet,
    load_training_data,
    read_collection,
    scored_sets,
    write_collection,
)
from tests.conftest import lobster_zip

CFG = FeaturesConfig(windows=(10, 50), horizons=(10, 20))
WINDOW = 80  # longer than the warm-up (50): the purge at the start of the live day follows the model's window
K = 10


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("days")
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
    write_feature_set(*original, root / "original")
    write_feature_set(*live, root / "live")
    return root / "original", root / "live"


def _retrain_sets(original: Path, live: Path) -> list[PooledSet]:
    """What run_pooled_retrain hands the pooled core."""
    bands = {str(k): float(v) for k, v in load_feature_set(original).meta["alpha"].items()}
    return [PooledSet(str(original), role="train"), PooledSet(str(live), alpha=bands)]


def test_pooled_rows_labels_and_splits(days: tuple[Path, Path], tmp_path: Path) -> None:
    original, live = days
    a, b = load_feature_set(original), load_feature_set(live)
    assert a.alpha(K) != b.alpha(K)  # balanced per day: they would disagree without the override
    # the same sets through a collection folder (what the pipeline steps pass along) and as a list
    collection = write_collection(tmp_path / "features", _retrain_sets(original, live))
    assert [s.role for s in read_collection(collection)] == ["train", "split"]
    assert scored_sets(collection) == [str(live)]  # only the live day has held-out rows to score
    data = load_training_data(collection, K)
    listed = load_training_data(_retrain_sets(original, live), K)
    np.testing.assert_array_equal(data.labels, listed.labels)
    np.testing.assert_array_equal(data.split, listed.split)

    n = len(a.split)
    assert len(data.split) == n + len(b.split) and list(data.starts) == [0, n]
    split = data.split
    # the original day trains (all its usable rows), purged rows stay purged
    assert set(np.unique(split[:n])) == {TRAIN, PURGED}
    assert ((split[:n] == TRAIN) == (a.split >= 0)).all()
    # the live day keeps its own time split
    np.testing.assert_array_equal(split[n:], b.split)
    test_rows = np.flatnonzero(split == TEST)
    assert test_rows.min() > n and (np.diff(test_rows) == 1).all()  # contiguous, live only (the gate's rows)
    assert (split == VAL).sum() == (b.split == VAL).sum()
    # no window reaches back into the original day: no window end in the live day's first T-1 rows
    for which in (TRAIN, VAL, TEST):
        ends = sample_ends(data.labels, split, which, WINDOW, data.starts)
        assert not ((ends >= n) & (ends < n + WINDOW - 1)).any()
        assert (ends - WINDOW + 1 >= np.where(ends >= n, n, 0)).all()
    # one label definition: the live day's labels with the original's band, the original's untouched
    assert data.alpha == pytest.approx(a.alpha(K))
    np.testing.assert_array_equal(data.labels[n:], classify(b.returns(K), a.alpha(K)))
    assert (data.labels[n:] != b.labels(K)).any()  # the override changed labels (the test can fail)
    np.testing.assert_array_equal(data.labels[:n], a.labels(K))
    assert (a.labels(K)[-K:] == -1).all()  # no label of the original day reads the live day
    # lineage: both parts, with their roles and the band each was labelled with
    assert [t["source_sha256"] for t in data.trained_on] == ["a" * 64, "b" * 64]
    assert data.trained_on[0]["role"] == "train" and "role" not in data.trained_on[1]
    assert data.trained_on[1]["alpha_source"] == "override"
    assert data.trained_on[0]["split_rows"]["val"] == data.trained_on[0]["split_rows"]["test"] == 0
    assert data.feature_meta["source_sha256"] is None  # no single source file


def test_other_depths_or_horizons_are_refused(days: tuple[Path, Path], tmp_path: Path) -> None:
    original, live = days
    sets = _retrain_sets(original, live)
    with pytest.raises(ConfigError, match="no band for horizon 20"):
        load_training_data([sets[0], PooledSet(str(live), alpha={"10": 1e-4})], 20)
    with pytest.raises(ConfigError, match="train.horizon=50 is not among"):
        load_training_data(sets, 50)
    with pytest.raises(ConfigError, match="role 'split'"):
        load_training_data([sets[0]], K)
    table = load_lobster(lobster_zip("GOOG", 5))
    deeper = build_frame(CFG, table.frame.iloc[:3000].reset_index(drop=True), table.meta.levels,
                         {**table.meta.to_dict(), "source_sha256": "c" * 64})
    write_feature_set(*deeper, tmp_path / "deeper")
    with pytest.raises(DataFormatError, match="one book depth"):
        load_training_data([sets[0], PooledSet(str(tmp_path / "deeper"))], K)
