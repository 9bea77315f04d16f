"""Event sampling: which rows of the event table form the stream that features and labels count in.

- ``all``: every event.
- ``top_of_book``: only events that change the best ask or bid price or size (plus the first event).
  Deeper-book events are dropped, so a horizon of k events means k changes of the quotes a trader sees;
  it also makes the 1-, 5- and 10-level files of one day, whose raw event streams differ, comparable.

Whether row i is kept depends on rows i-1 and i only, so sampling is causal.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hftpipe.features.book import _check_book

SAMPLING_MODES = ("all", "top_of_book")


def top_of_book_changes(book: np.ndarray) -> np.ndarray:
    """Boolean mask (n,): True where best ask/bid price or size differs from the previous row.

    Row 0 is always True. Two empty (NaN) prices count as equal.
    """
    book = _check_book(book)
    top = book[:, :4]
    changed = np.ones(len(book), dtype=bool)
    if len(book) > 1:
        now, before = top[1:], top[:-1]
        differs = (now != before) & ~(np.isnan(now) & np.isnan(before))
        changed[1:] = differs.any(axis=1)
    return changed


def sample_indices(book: np.ndarray, mode: Literal["all", "top_of_book"] = "all") -> np.ndarray:
    """Row indices (int64, increasing) of the sampled event stream."""
    if mode == "all":
        return np.arange(len(_check_book(book)), dtype=np.int64)
    if mode == "top_of_book":
        return np.flatnonzero(top_of_book_changes(book)).astype(np.int64)
    raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}; got {mode!r}")
