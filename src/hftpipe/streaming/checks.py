"""Pure sanity checks on one book state before it reaches a model (no I/O, no bus).

The signal service dead-letters a book update that fails here instead of feeding it to the model: a crossed
book, a non-finite or absurd price, or a negative size is a feed bug, and a model answers anything for it.
(The model server gets an equivalent check in ``serving``; the two are meant to be merged into one.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_PRICE = 1e9  # no instrument trades above this; 1e308 and friends are corrupt values


def book_problem(book: Sequence[float], levels: int) -> str | None:
    """Why the book (4L values, LOBSTER order) is unusable, or None when it is sane.

    Empty levels (price NaN, size 0) are allowed; a filled level needs a finite positive price below
    MAX_PRICE and a finite non-negative size. Asks must rise and bids fall with depth, and the best ask must
    be above the best bid (a crossed or locked book is rejected).
    """
    if len(book) != 4 * levels:
        return f"wrong width: {len(book)} values for {levels} levels"
    last_ask, last_bid = -math.inf, math.inf
    for k in range(levels):
        for side, price, size in (("ask", book[4 * k], book[4 * k + 1]), ("bid", book[4 * k + 2], book[4 * k + 3])):
            if not math.isfinite(size) or size < 0:
                return f"bad size {size!r} at {side} level {k + 1}"
            if math.isnan(price):
                if size != 0:
                    return f"size {size!r} at empty {side} level {k + 1}"
                continue
            if not (0 < price < MAX_PRICE):
                return f"bad price {price!r} at {side} level {k + 1}"
            if side == "ask":
                if price <= last_ask:
                    return f"asks not increasing at level {k + 1}"
                last_ask = price
            else:
                if price >= last_bid:
                    return f"bids not decreasing at level {k + 1}"
                last_bid = price
    best_ask, best_bid = book[0], book[2]
    if not math.isnan(best_ask) and not math.isnan(best_bid) and best_ask <= best_bid:
        return f"crossed book: best ask {best_ask} <= best bid {best_bid}"
    return None


def sane_rows(books: np.ndarray) -> np.ndarray:
    """Vectorised pre-check of a batch (B, 4L): True where :func:`book_problem` would surely return None.

    A False row is not necessarily bad: call :func:`book_problem` on it for the verdict and the reason.
    (One pass over the whole batch costs about as much as the scalar check on one row.)
    """
    ask_p, ask_s, bid_p, bid_s = books[:, 0::4], books[:, 1::4], books[:, 2::4], books[:, 3::4]
    with np.errstate(invalid="ignore"):
        sizes_ok = (np.isfinite(ask_s) & (ask_s >= 0) & np.isfinite(bid_s) & (bid_s >= 0)).all(axis=1)
        filled_ok = ((ask_p > 0) & (ask_p < MAX_PRICE) & (bid_p > 0) & (bid_p < MAX_PRICE)).all(axis=1)
        # Fast path only for fully filled books; rows with empty levels take the scalar check.
        order_ok = (np.diff(ask_p, axis=1) > 0).all(axis=1) & (np.diff(bid_p, axis=1) < 0).all(axis=1)
        uncrossed = ask_p[:, 0] > bid_p[:, 0]
    return sizes_ok & filled_ok & order_ok & uncrossed
