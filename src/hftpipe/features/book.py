"""Features of the book state at one event: mid, spread, microprice, depth imbalance.

Every function takes the (n, 4L) book matrix of the canonical table (LOBSTER order: ask price, ask size,
bid price, bid size per level; prices in dollars, an empty level has price NaN and size 0) and returns a
value per row that depends on that row only, so all of them are causal by construction.
"""

from __future__ import annotations

import numpy as np

ASK_PRICE, ASK_SIZE, BID_PRICE, BID_SIZE = 0, 1, 2, 3
_TINY = float(np.finfo(np.float64).tiny)


def _check_book(book: np.ndarray) -> np.ndarray:
    book = np.asarray(book, dtype=np.float64)
    if book.ndim != 2 or book.shape[1] == 0 or book.shape[1] % 4:
        raise ValueError(f"a book matrix has shape (n, 4L); got {book.shape}")
    return book


def levels_of_book(book: np.ndarray) -> int:
    """Number of levels L of an (n, 4L) book matrix."""
    return _check_book(book).shape[1] // 4


def _out(n: int, out: np.ndarray | None, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The caller's output buffer, or a new one (column-major, so each level's column is contiguous)."""
    if out is None:
        return np.empty(shape or (n,), order="F")
    if out.shape != (shape or (n,)):
        raise ValueError(f"out has shape {out.shape}; expected {shape or (n,)}")
    return out


def mid_price(book: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Mid-price (best ask + best bid) / 2 in dollars; NaN when a side of the book is empty.

    ``out`` (here and below): an optional buffer to write into, so the full feature set can fill one
    preallocated block instead of page-faulting a fresh array per feature.
    """
    book = _check_book(book)
    out = _out(len(book), out)
    np.add(book[:, ASK_PRICE], book[:, BID_PRICE], out=out)
    out *= 0.5
    return out


def spread(book: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Quoted spread, best ask - best bid, in dollars; NaN when a side of the book is empty."""
    book = _check_book(book)
    return np.subtract(book[:, ASK_PRICE], book[:, BID_PRICE], out=_out(len(book), out))


def microprice(book: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """Size-weighted mid (ask * bid_size + bid * ask_size) / (ask_size + bid_size), in dollars.

    It leans towards the side with less size, i.e. the side more likely to be taken out next.
    NaN when a side of the book is empty (its price is NaN, or both sizes are 0: 0/0).
    """
    book = _check_book(book)
    n = len(book)
    out = _out(n, out)
    tmp = _out(n, scratch)
    ask, ask_size = book[:, ASK_PRICE], book[:, ASK_SIZE]
    bid, bid_size = book[:, BID_PRICE], book[:, BID_SIZE]
    np.multiply(ask, bid_size, out=out)
    np.multiply(bid, ask_size, out=tmp)
    out += tmp
    np.add(ask_size, bid_size, out=tmp)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(out, tmp, out=out)
    return out


def depth_imbalance(book: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
                    ) -> np.ndarray:
    """Per-level imbalance (bid_size_k - ask_size_k) / (bid_size_k + ask_size_k), shape (n, L).

    In [-1, 1]: +1 is all bid. 0 where both sides of a level are empty.
    """
    book = _check_book(book)
    levels = book.shape[1] // 4
    out = _out(len(book), out, (len(book), levels))
    tmp = _out(len(book), scratch)
    for k in range(levels):
        _imbalance(book[:, 4 * k + BID_SIZE], book[:, 4 * k + ASK_SIZE], out[:, k], tmp)
    return out


def cumulative_depth_imbalance(book: np.ndarray, out: np.ndarray | None = None,
                               scratch: np.ndarray | None = None) -> np.ndarray:
    """Imbalance of the sizes summed over levels 1..k, for each k, shape (n, L).

    Column 0 equals the level-1 :func:`depth_imbalance`; the last column uses the whole visible book.
    ``scratch``: optional (n, 3) buffer for the running sums.
    """
    book = _check_book(book)
    n, levels = len(book), book.shape[1] // 4
    out = _out(n, out, (n, levels))
    work = _out(n, scratch, (n, 3))
    bid, ask, tmp = work[:, 0], work[:, 1], work[:, 2]
    bid[:] = book[:, BID_SIZE]
    ask[:] = book[:, ASK_SIZE]
    for k in range(levels):
        if k:
            bid += book[:, 4 * k + BID_SIZE]
            ask += book[:, 4 * k + ASK_SIZE]
        _imbalance(bid, ask, out[:, k], tmp)
    return out


def depth_imbalances(book: np.ndarray, per_level: np.ndarray, cumulative: np.ndarray,
                     scratch: np.ndarray) -> None:
    """Both :func:`depth_imbalance` and :func:`cumulative_depth_imbalance` in one pass over the levels.

    Shares each level's (bid - ask) and (bid + ask) between the two: 7 array passes per level instead of
    10. ``per_level`` and ``cumulative`` are (n, L) outputs, ``scratch`` an (n, 3) buffer.
    """
    book = _check_book(book)
    diff_sum, total_sum, total = scratch[:, 0], scratch[:, 1], scratch[:, 2]
    diff_sum[:] = 0.0
    total_sum[:] = _TINY  # vanishes in the first real total, turns an all-empty prefix's 0/0 into 0
    for k in range(book.shape[1] // 4):
        bid, ask, diff = book[:, 4 * k + BID_SIZE], book[:, 4 * k + ASK_SIZE], per_level[:, k]
        np.subtract(bid, ask, out=diff)
        np.add(bid, ask, out=total)
        diff_sum += diff
        total_sum += total
        np.divide(diff_sum, total_sum, out=cumulative[:, k])
        total += _TINY
        np.divide(diff, total, out=diff)


def _imbalance(bid: np.ndarray, ask: np.ndarray, out: np.ndarray, total: np.ndarray) -> None:
    """(bid - ask) / (bid + ask) into ``out`` (``total`` is scratch), 0 where both are 0.

    Sizes are >= 0, so the total is 0 only when the numerator is 0 too. Adding the smallest positive
    float to the total turns 0/0 into exactly 0 and leaves every real total unchanged (it is far below
    half an ulp of any share count, even a fractional crypto one), with no mask in the loop. One column
    per level: the book is column-major, so each column is contiguous.
    """
    np.subtract(bid, ask, out=out)
    np.add(bid, ask, out=total)
    total += _TINY
    np.divide(out, total, out=out)
