"""Labels by hand on a real slice, balanced alpha fitted on train only, splits that no label window crosses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import FeaturesConfig
from hftpipe.data import EventTable
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features import (
    balanced_alpha,
    build_frame,
    classify,
    deeplob_return,
    forward_return,
    label_return,
    mid_price,
    time_splits,
)
from hftpipe.features.splits import segment_ids

# Best ask / best bid of GOOG 2012-06-21 (1 level), rows 6-11: the mids are
# 579.815, 579.815, 579.645, 579.645, 579.505, 579.26.
MIDS_6_TO_11 = [579.815, 579.815, 579.645, 579.645, 579.505, 579.26]


def test_mids_of_the_slice(goog1_table: EventTable) -> None:
    book = goog1_table.frame.iloc[:12, 6:].to_numpy(dtype=float)
    assert mid_price(book)[6:].tolist() == pytest.approx(MIDS_6_TO_11)


def test_forward_and_deeplob_returns_by_hand(goog1_table: EventTable) -> None:
    mid = mid_price(goog1_table.frame.iloc[:12, 6:].to_numpy(dtype=float))
    # Forward, k=3 at row 8: mean of rows 9-11 against row 8.
    future = (579.645 + 579.505 + 579.26) / 3
    assert forward_return(mid, 3)[8] == pytest.approx((future - 579.645) / 579.645, rel=1e-9)
    # DeepLOB, k=3 at row 8: mean of rows 9-11 against the mean of rows 6-8 (known at t).
    past = (579.815 + 579.815 + 579.645) / 3
    assert deeplob_return(mid, 3)[8] == pytest.approx((future - past) / past, rel=1e-9)
    # Rows 2-5 do not move the mid: exactly zero, not round-off.
    assert forward_return(mid, 2)[2:5].tolist() == [0.0, 0.0, 0.0]
    # Undefined where the window runs off either end.
    assert np.isnan(forward_return(mid, 3)[9:]).all() and np.isfinite(forward_return(mid, 3)[:9]).all()
    d = deeplob_return(mid, 3)
    assert np.isnan(d[:2]).all() and np.isnan(d[9:]).all() and np.isfinite(d[2:9]).all()
    np.testing.assert_array_equal(label_return(mid, 3, "deeplob"), d)


def test_classify_by_hand() -> None:
    r = np.array([-2e-5, -1e-5, 0.0, 1e-5, 1.5e-5, np.nan])
    assert classify(r, 1e-5).tolist() == [0, 1, 1, 1, 2, -1]
    with pytest.raises(ValueError, match="alpha"):
        classify(r, -1.0)


def test_labels_of_a_real_slice_by_hand(goog1_table: EventTable) -> None:
    mid = mid_price(goog1_table.frame.iloc[:12, 6:].to_numpy(dtype=float))
    alpha = 2e-4
    labels = classify(forward_return(mid, 3), alpha)
    for t in range(9):
        r = (sum(mid[t + 1 : t + 4]) / 3 - mid[t]) / mid[t]
        expected = 0 if r < -alpha else 2 if r > alpha else 1
        assert labels[t] == expected, t
    assert labels[9:].tolist() == [-1, -1, -1]
    # Row 0: the next three mids equal its own (stationary); row 8: their mean is 3.0 bps lower (down).
    assert labels[0] == 1 and labels[8] == 0


def test_balanced_alpha_balances_train() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 1e-4, 9000)
    train = np.zeros(9000, dtype=bool)
    train[:6000] = True
    alpha = balanced_alpha(r, train)
    counts = np.bincount(classify(r[train], alpha), minlength=3) / 6000
    assert counts == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=0.02)
    # Test rows have no influence on alpha.
    r2 = r.copy()
    r2[~train] *= 100
    assert balanced_alpha(r2, train) == alpha
    with pytest.raises(ValueError, match="no training row"):
        balanced_alpha(np.full(5, np.nan), np.ones(5, dtype=bool))


def _cfg(**kw) -> FeaturesConfig:
    return dataclasses.replace(FeaturesConfig(windows=(5, 20), horizons=(5, 20, 60)), **kw)


def test_balanced_alpha_of_a_build_ignores_val_and_test_data(goog10_slice: pd.DataFrame) -> None:
    cfg = _cfg()
    frame, meta = build_frame(cfg, goog10_slice, 10, {})
    b1 = meta["splits"]["train"][1]
    changed = goog10_slice.copy()
    cols = [c for c in changed.columns if "price" in c]
    # Shift every price after the training split by a random walk: val/test returns change completely.
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.choice([-0.05, 0.0, 0.05], len(changed) - b1))
    changed.loc[b1:, cols] = changed.loc[b1:, cols].to_numpy() + walk[:, None]
    frame2, meta2 = build_frame(cfg, changed, 10, {})
    assert not np.allclose(frame2["ret_k20"][b1:], frame["ret_k20"][b1:], equal_nan=True)
    assert meta2["alpha"] == meta["alpha"]
    # ... while changing the training rows does move it (the test above can fail).
    changed.loc[: b1 - 1, cols] = changed.loc[: b1 - 1, cols].to_numpy() + np.cumsum(
        rng.choice([-0.05, 0.0, 0.05], b1))[:, None]
    _, meta3 = build_frame(cfg, changed, 10, {})
    assert meta3["alpha"] != meta["alpha"]
    train = frame["split"] == 0
    for k in cfg.horizons:
        counts = np.bincount(frame.loc[train, f"label_k{k}"].clip(lower=0), minlength=3)
        assert counts[1] / train.sum() == pytest.approx(1 / 3, abs=0.02)


def test_fixed_alpha_from_config(goog10_slice: pd.DataFrame) -> None:
    frame, meta = build_frame(_cfg(alpha=1e-4), goog10_slice, 10, {})
    assert meta["alpha"] == {"5": 1e-4, "20": 1e-4, "60": 1e-4} and meta["alpha_source"] == "config"
    np.testing.assert_array_equal(frame["label_k20"], classify(frame["ret_k20"].to_numpy(), 1e-4))


@pytest.mark.parametrize("sampling", ["all", "top_of_book"])
@pytest.mark.parametrize("label", ["forward", "deeplob"])
@pytest.mark.parametrize("purge", [None, 60])
def test_no_label_window_crosses_a_split_boundary(goog10_slice, sampling, label, purge) -> None:
    cfg = _cfg(sampling=sampling, label=label, purge=purge)
    frame, meta = build_frame(cfg, goog10_slice, 10, {})
    split = frame["split"].to_numpy()
    seg = segment_ids(len(frame), cfg.train_frac, cfg.val_frac)
    assert set(np.unique(split)) == {-1, 0, 1, 2}
    for k in cfg.horizons:
        lab = frame[f"label_k{k}"].to_numpy()
        rows = np.flatnonzero((split >= 0) & (lab >= 0))
        assert len(rows) > 100
        first = rows - (k - 1 if label == "deeplob" else 0)
        last = rows + k
        # Segments are contiguous, so the window [first, last] stays in one split iff both ends do.
        assert (seg[first] == split[rows]).all() and (seg[last] == split[rows]).all(), k
    # Training rows' label windows end before the validation split starts.
    train_rows = np.flatnonzero(split == 0)
    assert train_rows.max() + max(cfg.horizons) < meta["splits"]["val"][0]


def test_purge_shorter_than_a_horizon_is_refused(goog10_slice) -> None:
    with pytest.raises(ConfigError, match="purge=10 is shorter than the longest horizon 60"):
        build_frame(_cfg(purge=10), goog10_slice, 10, {})


def test_splits_are_by_time_with_purge_and_warmup() -> None:
    split, plan = time_splits(100, 0.6, 0.2, purge=5, warmup=3)
    assert split[:3].tolist() == [-1, -1, -1]
    assert (split[3:55] == 0).all() and (split[55:60] == -1).all()
    assert (split[60:75] == 1).all() and (split[75:80] == -1).all() and (split[80:] == 2).all()
    assert plan.train == (0, 60) and plan.val == (60, 80) and plan.test == (80, 100)
    split, _ = time_splits(100, 0.6, 0.2, purge=5, purge_after=4)
    assert (split[60:64] == -1).all() and split[64] == 1


@pytest.mark.parametrize("fracs,match", [((0.9, 0.2), "train_frac"), ((0.0, 0.2), "train_frac")])
def test_bad_split_fractions(fracs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        time_splits(100, *fracs, purge=1)


def test_too_few_rows_for_the_splits() -> None:
    with pytest.raises(DataFormatError, match="the val split is empty"):
        time_splits(50, 0.8, 0.1, purge=10)
