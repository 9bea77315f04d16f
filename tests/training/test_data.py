"""Lazy windows equal explicit ones; the batch sampler shards like DistributedSampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hftpipe.features.window import fit_window_stats, model_input, window_indices
from hftpipe.training.data import (
    BookWindows,
    PreparedBook,
    WindowBatchSampler,
    iter_eval_batches,
    make_loader,
    sample_ends,
)
from tests.training.conftest import Slice


def test_sample_ends_keep_labelled_rows_of_the_split_with_a_full_window() -> None:
    labels = np.array([2, 1, -1, 0, 1, 2, 1, -1, 0, 1])
    split = np.array([0, 0, 0, 0, 0, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(sample_ends(labels, split, 0, window=2), [1, 3, 4])
    np.testing.assert_array_equal(sample_ends(labels, split, 0, window=4), [3, 4])
    np.testing.assert_array_equal(sample_ends(labels, split, 1, window=4), [6, 8, 9])


def test_batches_equal_explicitly_built_windows(goog_slice: Slice) -> None:
    s = goog_slice
    ends = sample_ends(s.labels, s.split, 0, window=7)
    stats = fit_window_stats(s.book, ends, 7)
    ds = BookWindows(s.book, ends, s.labels, 7, stats)
    positions = np.array([0, 5, 17, len(ends) - 1])
    x, y = ds[positions]
    explicit = np.stack([s.book[e - 6:e + 1] for e in ends[positions]])
    np.testing.assert_array_equal(x.numpy(), model_input(explicit, stats))
    np.testing.assert_array_equal(y.numpy(), s.labels[ends[positions]])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert ds.book is s.book  # the dataset shares the book array, no window copy is held


def test_prepared_book_equals_model_input_with_empty_levels(goog_slice: Slice) -> None:
    book = goog_slice.book.copy()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(book), 300, replace=False)
    for level in (1, 2, 3):  # empty deeper levels (NaN price, size 0), sometimes several in a row
        hit = rows[rng.random(300) < 0.4]
        book[hit, 4 * (level + 1) - 4 + rng.integers(0, 2) * 2] = np.nan
    book[rows[:5], 0] = np.nan  # even a missing best ask (model_input then puts 0 bps)
    ends = np.arange(30, len(book))
    stats = fit_window_stats(goog_slice.book, ends, 8)
    idx = window_indices(ends, 8)
    np.testing.assert_array_equal(PreparedBook(book, stats).windows(idx), model_input(book[idx], stats))


def test_loader_yields_whole_batches(goog_slice: Slice) -> None:
    s = goog_slice
    ends = sample_ends(s.labels, s.split, 0, window=5)
    ds = BookWindows(s.book, ends, s.labels, 5, fit_window_stats(s.book, ends, 5))
    sampler = WindowBatchSampler(len(ds), 64, seed=1, drop_last=True)
    batches = list(make_loader(ds, sampler))
    assert len(batches) == len(sampler) == len(ds) // 64
    assert all(x.shape == (64, 5, 20) for x, _ in batches)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_partition_each_epoch_and_epochs_differ(world: int) -> None:
    n, batch = 103, 8
    seen = []
    for rank in range(world):
        sampler = WindowBatchSampler(n, batch, seed=4, rank=rank, world_size=world)
        sampler.set_epoch(2)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen.append(np.concatenate(batches))
    assert len({len(x) for x in seen}) == 1  # same number of samples, hence of DDP steps, on every rank
    together = np.concatenate(seen)
    assert set(together) == set(range(n))
    assert len(together) - n < world  # padding repeats fewer than world_size samples
    other = WindowBatchSampler(n, batch, seed=4)
    other.set_epoch(3)
    first = WindowBatchSampler(n, batch, seed=4)
    first.set_epoch(2)
    assert not np.array_equal(np.concatenate(list(other)), np.concatenate(list(first)))
    assert np.array_equal(np.concatenate(list(first)), np.concatenate(list(first)))


def test_samples_per_epoch_draws_a_fresh_subset_each_epoch() -> None:
    sampler = WindowBatchSampler(1000, 50, seed=0, samples_per_epoch=200)
    sampler.set_epoch(0)
    a = np.concatenate(list(sampler))
    sampler.set_epoch(1)
    b = np.concatenate(list(sampler))
    assert len(a) == len(b) == 200 == len(sampler) * 50
    assert set(a) != set(b)


def test_eval_shards_score_each_sample_once(goog_slice: Slice) -> None:
    s = goog_slice
    ends = sample_ends(s.labels, s.split, 1, window=3)
    ds = BookWindows(s.book, ends, s.labels, 3, fit_window_stats(s.book, ends, 3))
    ys = [y for rank in range(3) for _, y in iter_eval_batches(ds, 100, rank, 3)]
    np.testing.assert_array_equal(torch.cat(ys).numpy(), s.labels[ends])
