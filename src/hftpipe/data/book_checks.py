"""The book rules training data obeys (``expectations/book.json``), as one fast check on raw book states.

Training data passes the Great Expectations book suite before anything is fitted; a served input or a
streamed update must pass the same rules, or the model sees books it has never seen (a crossed book, a
price of 1e308). :func:`check_book_states` checks states laid out like the canonical event table's book
columns, (..., 4L) with ``ask_price_k, ask_size_k, bid_price_k, bid_size_k`` per level, NaN for an empty
level's price. Pure numpy: the model server and the streaming signal service both call it.
"""

from __future__ import annotations

import numpy as np

from hftpipe.errors import InvalidBookState

# The smallest quoted price of any market we load: LOBSTER's unit is 1e-4 dollars, crypto books quote down
# to 1e-8 (one satoshi). Anything smaller is a unit mistake or an attack on the normalisation (1e-300
# makes a log-return of +700). The upper bounds are the book suite's (expectations/book.json).
MIN_PRICE = 1e-8
MAX_PRICE = 1e12
MAX_SIZE = 1e12

_COLUMN = ("ask price", "ask size", "bid price", "bid size")


def _where(mask: np.ndarray, columns: np.ndarray | None = None) -> str:
    """'state i, <column> at level k' of the first True in ``mask`` (..., L) or (...,) ."""
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    if mask.ndim == 0:
        return ""
    state = index[:-1] if columns is not None else index
    text = f"state {list(state)}" if state else "the state"
    if columns is not None:
        text += f", level {index[-1] + 1}"
    return text


def _all_levels_valid(books: np.ndarray) -> bool:
    """Fast path (a few vector ops): every level occupied and every rule holds."""
    sizes, prices = books[..., 1::2], books[..., 0::2]
    ask, bid = books[..., 0::4], books[..., 2::4]
    return bool((sizes >= 1).all() and (sizes <= MAX_SIZE).all()
                and (prices >= MIN_PRICE).all() and (prices <= MAX_PRICE).all()  # False on NaN
                and (ask[..., 0] > bid[..., 0]).all()
                and (np.diff(ask, axis=-1) > 0).all() and (np.diff(bid, axis=-1) < 0).all())


def check_book_states(books: np.ndarray) -> None:
    """Raise if any book state breaks a training-data rule; the message names the rule and the state.

    Args:
        books: float array (..., 4L): L levels of ask price, ask size, bid price, bid size (dollars, shares);
            an empty level has a NaN price and size 0.
    Raises:
        InvalidBookState: the first broken rule, e.g. a crossed or locked best level, a price outside
            [1e-8, 1e12], a size outside [0, 1e12], a missing price on a level with size, a level
            with a price but size 0, prices out of order with depth, or an empty level above an occupied one.
    """
    books = np.asarray(books, dtype=np.float64)
    if books.ndim == 0 or books.shape[-1] % 4 or books.shape[-1] == 0:
        raise InvalidBookState(f"a book state has 4 values per level; got {books.shape[-1:]} values")
    if _all_levels_valid(books):
        return  # the served case: a full, valid book; the detailed rules below only run to name a failure
    ask_p, ask_s = books[..., 0::4], books[..., 1::4]
    bid_p, bid_s = books[..., 2::4], books[..., 3::4]
    sizes = books[..., 1::2]
    if not np.isfinite(sizes).all():
        raise InvalidBookState("sizes must be numbers (only an empty level's price may be null/NaN)")
    if not ((sizes >= 0) & (sizes <= MAX_SIZE)).all():
        raise InvalidBookState(f"sizes must be between 0 and {MAX_SIZE:g} shares")
    for side, p, s in (("ask", ask_p, ask_s), ("bid", bid_p, bid_s)):
        present = ~np.isnan(p)
        if np.isinf(p).any():
            raise InvalidBookState(f"{side} prices must be finite")
        bad = present & ~((p >= MIN_PRICE) & (p <= MAX_PRICE))
        if bad.any():
            raise InvalidBookState(f"{side} prices must be between {MIN_PRICE:g} and {MAX_PRICE:g} dollars "
                                   f"(null for an empty level): {_where(bad, p)} has {p[bad][0]:.6g}")
        if (~present & (s != 0)).any():
            raise InvalidBookState(f"{side} price is missing on a level with size > 0 ({_where(~present & (s != 0), p)}): "
                                   "an empty level has a null price and size 0")
        if (present & (s == 0)).any():
            raise InvalidBookState(f"{side} level has a price but size 0 ({_where(present & (s == 0), p)}): "
                                   "an empty level has a null price and size 0")
        if p.shape[-1] > 1:
            gap = ~present[..., :-1] & present[..., 1:]
            if gap.any():
                raise InvalidBookState(f"{side} levels must be contiguous: an empty level above an occupied one "
                                       f"({_where(gap, p)})")
            step = np.diff(p, axis=-1)
            with np.errstate(invalid="ignore"):
                unordered = (step <= 0) if side == "ask" else (step >= 0)
            if (unordered & present[..., 1:]).any():
                order = "increase" if side == "ask" else "decrease"
                raise InvalidBookState(f"{side} prices must strictly {order} with depth "
                                       f"({_where(unordered & present[..., 1:], p)})")
    best_ask, best_bid = ask_p[..., 0], bid_p[..., 0]
    both = ~np.isnan(best_ask) & ~np.isnan(best_bid)
    crossed = both & (best_ask <= best_bid)
    if crossed.any():
        first = tuple(np.argwhere(crossed)[0])
        a, b = float(best_ask[first]), float(best_bid[first])
        kind = "locked (best ask == best bid)" if a == b else "crossed (best ask < best bid)"
        where = f"state {[int(i) for i in first]}" if first else "the state"
        raise InvalidBookState(f"the book is {kind} in {where}: ask {a:.6g}, bid {b:.6g}; "
                               "a valid book has best ask > best bid")
