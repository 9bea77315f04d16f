"""Features of the book state at one event: mid, spread, microprice, depth imbalance.

Every function takes the (n, 4L) book matrix of the canonical table (LOBSTER order: ask price, ask size,
bid price, bid size per level; prices in dollars, an empty level has price NaN and size 0) and returns a
value per row that depends on that row only, so all of them are causal by construction.
"""

from __future__ import annotations

import numpy as np

ASK_PRICE, ASK_SIZE, BID_PRICE, BID_SIZE = 0, 1, 2, 3


def _check_book(book: np.ndarray) -> np.ndarray:
    book = np.asarray(book, dtype=np.float64)
    if book.ndim != 2 or book.shape[1] == 0 or book.shape[1] % 4:
        raise ValueError(f"a book matrix has shape (n, 4L); got {book.shape}")
    return book


def levels_of_book(book: np.ndarray) -> int:
    """Number of levels L of an (n, 4L) book matrix."""
    return _check_book(book).shape[1] // 4


def mid_price(book: np.ndarray) -> np.ndarray:
    """Mid-price (best ask + best bid) / 2 in dollars; NaN when a side of the book is empty."""
    book = _check_book(book)
    return (book[:, ASK_PRICE] + book[:, BID_PRICE]) * 0.5


def spread(book: np.ndarray) -> np.ndarray:
    """Quoted spread, best ask - best bid, in dollars; NaN when a side of the book is empty."""
    book = _check_book(book)
    return book[:, ASK_PRICE] - book[:, BID_PRICE]


def microprice(book: np.ndarray) -> np.ndarray:
    """Size-weighted mid (ask * bid_size + bid * ask_size) / (ask_size + bid_size), in dollars.

    It leans towards the side with less size, i.e. the side more likely to be taken out next.
    NaN when a side of the book is empty.
    """
    book = _check_book(book)
    ask, ask_size = book[:, ASK_PRICE], book[:, ASK_SIZE]
    bid, bid_size = book[:, BID_PRICE], book[:, BID_SIZE]
    total = ask_size + bid_size
    out = np.full(len(book), np.nan)
    np.divide(ask * bid_size + bid * ask_size, total, out=out, where=total > 0)
    return out


def depth_imbalance(book: np.ndarray) -> np.ndarray:
    """Per-level imbalance (bid_size_k - ask_size_k) / (bid_size_k + ask_size_k), shape (n, L).

    In [-1, 1]: +1 is all bid. 0 where both sides of a level are empty.
    """
    book = _check_book(book)
    levels = book.shape[1] // 4
    out = np.empty((len(book), levels), order="F")
    for k in range(levels):
        _imbalance(book[:, 4 * k + BID_SIZE], book[:, 4 * k + ASK_SIZE], out[:, k])
    return out


def cumulative_depth_imbalance(book: np.ndarray) -> np.ndarray:
    """Imbalance of the sizes summed over levels 1..k, for each k, shape (n, L).

    Column 0 equals the level-1 :func:`depth_imbalance`; the last column uses the whole visible book.
    """
    book = _check_book(book)
    levels = book.shape[1] // 4
    out = np.empty((len(book), levels), order="F")
    bid = book[:, BID_SIZE].copy()
    ask = book[:, ASK_SIZE].copy()
    for k in range(levels):
        if k:
            bid += book[:, 4 * k + BID_SIZE]
            ask += book[:, 4 * k + ASK_SIZE]
        _imbalance(bid, ask, out[:, k])
    return out


def _imbalance(bid: np.ndarray, ask: np.ndarray, out: np.ndarray) -> None:
    """(bid - ask) / (bid + ask) into ``out``, 0 where both are 0.

    Sizes are >= 0, so the total is 0 only when the numerator is 0 too; dividing by the smallest positive
    float there gives exactly 0 and keeps the loop free of masks (one column per level: the book is
    column-major, so each column is contiguous).
    """
    np.subtract(bid, ask, out=out)
    total = bid + ask
    np.maximum(total, np.finfo(np.float64).tiny, out=total)
    np.divide(out, total, out=out)
