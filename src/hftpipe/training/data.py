"""Feeding book windows to a model without ever materialising them all.

A sample is the window of the last T book states ending at row ``t`` of the (n, 4L) book array, with the
label of row ``t``. We keep only the ``ends`` (row indices); a batch is one fancy-indexing gather
``book[ends[:, None] + arange(-T+1, 1)]`` of pre-normalised rows (:class:`PreparedBook`, equal to
:func:`~hftpipe.features.window.model_input`), so memory stays O(n * 4L) and the per-sample Python overhead of a default DataLoader disappears: the batch sampler yields whole index
batches and the dataset returns whole batches (``DataLoader(batch_size=None)``).

Under DDP every rank draws the same per-epoch permutation (seed + epoch) and takes every world_size-th
element of it, padded so that all ranks run the same number of steps (as ``DistributedSampler`` does).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hftpipe.errors import ConfigError
from hftpipe.features.window import BPS, WindowStats

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}


def sample_ends(labels: np.ndarray, split: np.ndarray, which: int, window: int,
                starts: np.ndarray | None = None) -> np.ndarray:
    """Rows usable as window ends: in split ``which``, labelled (label != -1) and with T rows behind them.

    Windows only look back, so a window ending early in a split may reach into the previous split's book
    states: those are inputs known at the time, never labels, so nothing leaks.

    Args:
        starts: first row of each feature set when several are stacked (pooled training); the T-1 rows
            after each start are no window end, so no window reaches into the set before it. None: one set.
    """
    labels = np.asarray(labels)
    split = np.asarray(split)
    if labels.shape != split.shape:
        raise ValueError(f"labels {labels.shape} and split {split.shape} differ in length")
    ok = (split == which) & (labels >= 0)
    for start in (0,) if starts is None else np.asarray(starts, dtype=np.int64):
        ok[start: start + max(window - 1, 0)] = False
    return np.flatnonzero(ok).astype(np.int64)


class PreparedBook:
    """The per-row parts of :func:`model_input`, computed once, so a batch costs one gather and one division.

    ``model_input`` of a window is: prices as bps from the window's LAST mid (empty levels repeat the level
    above), sizes as log1p, both z-scored with the training statistics. Only the price step depends on the
    window end, so sizes are z-scored once per row, and prices are level-filled once per row (filling in
    price space equals filling in bps space: the map is monotone for a given mid). :meth:`windows` returns
    the same float32 values as ``model_input(book[rows], stats)``; ``tests/training`` checks it, and serving
    keeps calling ``model_input`` itself.
    """

    def __init__(self, book: np.ndarray, stats: WindowStats) -> None:
        book = np.asarray(book, dtype=np.float64)
        levels = book.shape[1] // 4
        prices = book[:, 0::2].copy()  # (n, 2L): ask_1, bid_1, ask_2, bid_2, ...
        for k in range(1, levels):  # an empty level repeats the (filled) level above, per side
            for side in (0, 1):
                col, above = 2 * k + side, 2 * (k - 1) + side
                prices[:, col] = np.where(np.isnan(prices[:, col]), prices[:, above], prices[:, col])
        self.prices = prices
        self.mid = (book[:, 0] + book[:, 2]) / 2.0
        # Most books never lack a best quote: then the NaN pass per batch can be skipped.
        self._has_nan = bool(np.isnan(prices).any() or np.isnan(self.mid).any())
        mean, std = np.asarray(stats.mean, np.float32), np.asarray(stats.std, np.float32)
        self.price_mean, self.price_std = mean[0::2], std[0::2]
        sizes = np.log1p(np.maximum(book[:, 1::2], 0.0)).astype(np.float32)
        self.sizes = ((sizes - mean[1::2]) / std[1::2]).astype(np.float32)

    def windows(self, rows: np.ndarray) -> np.ndarray:
        """Model input (B, T, 4L) float32 for window row indices ``rows`` (B, T); the last column is the end."""
        mid = self.mid[rows[:, -1]][:, None, None]
        bps = self.prices[rows]  # a fresh array: the arithmetic below runs in place, same order as relative_book
        bps -= mid
        bps /= mid
        bps *= BPS
        if self._has_nan:  # NaN only where the best level (or the end mid) is missing: relative_book puts 0
            bps[np.isnan(bps)] = 0.0
        z = bps.astype(np.float32)
        z -= self.price_mean
        z /= self.price_std
        out = np.empty(rows.shape + (2 * self.prices.shape[1],), dtype=np.float32)
        out[..., 0::2] = z
        out[..., 1::2] = self.sizes[rows]
        return out


class BookWindows(Dataset):
    """Windows ending at ``ends`` over a shared book; indexed by an ARRAY of sample positions.

    ``dataset[idx]`` with an int array returns one whole batch ``(x (B, T, 4L) float32, y (B,) int64)``.
    """

    def __init__(self, book: np.ndarray, ends: np.ndarray, labels: np.ndarray, window: int,
                 stats: WindowStats) -> None:
        if book.ndim != 2 or book.shape[1] % 4:
            raise ValueError(f"book must be (n, 4L); got {book.shape}")
        self.book = book
        self.ends = np.asarray(ends, dtype=np.int64)
        self.labels = np.asarray(labels)
        self.window = window
        self.stats = stats
        self.prepared = PreparedBook(book, stats)
        self._offsets = np.arange(-window + 1, 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def raw(self, positions: np.ndarray) -> np.ndarray:
        """Raw book windows (B, T, 4L) for sample positions (one gather)."""
        ends = self.ends[np.asarray(positions, dtype=np.int64)]
        return self.book[ends[:, None] + self._offsets]

    def __getitem__(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ends = self.ends[np.asarray(positions, dtype=np.int64)]
        x = self.prepared.windows(ends[:, None] + self._offsets)
        y = self.labels[ends].astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)

    def targets(self) -> np.ndarray:
        return self.labels[self.ends].astype(np.int64)


class WindowBatchSampler(Sampler[np.ndarray]):
    """Yields whole batches of sample positions; shuffles per epoch and shards across DDP ranks.

    Args:
        n: number of samples.
        batch_size: per-rank batch size.
        shuffle: draw a new permutation each epoch from ``seed + epoch``.
        samples_per_epoch: if set, each epoch uses only this many samples (a fresh draw every epoch).
        rank, world_size: the DDP shard.
        drop_last: drop the last, smaller batch (keeps BatchNorm away from tiny batches).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 samples_per_epoch: int | None = None, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1; got {batch_size}")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.samples_per_epoch = min(samples_per_epoch, n) if samples_per_epoch else n
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's permutation (call before iterating, on every rank, as with DistributedSampler)."""
        self.epoch = epoch

    def _rank_positions(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)[: self.samples_per_epoch]
        else:
            order = np.arange(self.samples_per_epoch)
        per_rank = -(-len(order) // self.world_size)
        pad = per_rank * self.world_size - len(order)
        if pad:  # repeat the head so every rank has the same number of samples (hence of DDP steps)
            order = np.concatenate([order, order[:pad]])
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        positions = self._rank_positions()
        stop = len(positions) - (len(positions) % self.batch_size if self.drop_last else 0)
        for start in range(0, stop, self.batch_size):
            yield positions[start:start + self.batch_size]

    def __len__(self) -> int:
        per_rank = -(-self.samples_per_epoch // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


def make_loader(dataset: BookWindows, sampler: WindowBatchSampler, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader that calls ``dataset[batch_positions]`` once per batch (no per-sample collation)."""
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0)


def iter_eval_batches(dataset: BookWindows, batch_size: int, rank: int = 0,
                      world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's contiguous, unpadded shard of the samples in order (each sample scored exactly once)."""
    shard = np.array_split(np.arange(len(dataset)), world_size)[rank]
    for start in range(0, len(shard), batch_size):
        yield dataset[shard[start:start + batch_size]]

