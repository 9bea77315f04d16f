"""A small real slice of the shipped GOOG book with forward labels and time splits, without files.

Training tests use arrays, not a FeatureSet folder, so they only depend on the loader. The label here is
the plain forward mid-price move over k events with a stationary band chosen to balance the training
part; the feature engineer's labels are tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import book_matrix
from tests.conftest import lobster_zip


@dataclass(frozen=True)
class Slice:
    book: np.ndarray
    labels: np.ndarray
    split: np.ndarray


@lru_cache(maxsize=4)
def _book(symbol: str, levels: int) -> np.ndarray:
    return book_matrix(load_lobster(lobster_zip(symbol, levels)).frame)


def make_slice(symbol: str = "GOOG", levels: int = 5, rows: int = 4000, start: int = 0, horizon: int = 10,
               train_frac: float = 0.7, purge: int = 20) -> Slice:
    """Rows [start, start+rows) with labels 0/1/2 (-1 undefined) and splits 0/1/2 (-1 purged)."""
    book = np.ascontiguousarray(_book(symbol, levels)[start:start + rows])
    mid = (book[:, 0] + book[:, 2]) / 2
    ret = np.full(rows, np.nan)
    ret[:-horizon] = mid[horizon:] / mid[:-horizon] - 1
    n_train = int(rows * train_frac)
    n_val = (rows - n_train) // 2
    alpha = np.nanquantile(np.abs(ret[:n_train]), 1 / 3)
    labels = np.where(np.isnan(ret), -1, np.where(ret > alpha, 2, np.where(ret < -alpha, 0, 1))).astype(np.int8)
    split = np.full(rows, 2, dtype=np.int8)
    split[:n_train] = 0
    split[n_train:n_train + n_val] = 1
    for boundary in (n_train, n_train + n_val):  # the last `purge` rows before a boundary see across it
        split[boundary - purge:boundary] = -1
    return Slice(book=book, labels=labels, split=split)


@pytest.fixture(scope="session")
def goog_slice() -> Slice:
    return make_slice()
