"""The signal service's pure book check on real GOOG rows and hand-broken copies of them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftpipe.data import book_matrix, load_lobster
from hftpipe.streaming.checks import book_problem
from tests.conftest import lobster_zip


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return book_matrix(load_lobster(lobster_zip("GOOG", 10)).frame)[:500]


def test_real_books_pass(rows: np.ndarray) -> None:
    assert [book_problem(r.tolist(), 10) for r in rows] == [None] * len(rows)


def _broken(row: np.ndarray, index: int, value: float) -> list[float]:
    out = row.tolist()
    out[index] = value
    return out


@pytest.mark.parametrize(("index", "value", "message"), [
    (0, 500.0, "crossed book"),  # best ask far below the best bid
    (0, 1e308, "bad price 1e+308 at ask level 1"),
    (2, math.inf, "bad price inf at bid level 1"),
    (3, -5.0, "bad size -5.0 at bid level 1"),
    (4, 1.0, "asks not increasing at level 2"),
    (6, 1e6, "bids not decreasing at level 2"),
    (36, math.nan, "size"),  # level 10 ask price missing but its size kept
])
def test_broken_books_are_named(rows: np.ndarray, index: int, value: float, message: str) -> None:
    problem = book_problem(_broken(rows[0], index, value), 10)
    assert problem is not None and message in problem


def test_wrong_width(rows: np.ndarray) -> None:
    assert book_problem(rows[0].tolist()[:20], 10) == "wrong width: 20 values for 10 levels"


def test_empty_levels_are_fine(rows: np.ndarray) -> None:
    row = rows[0].tolist()
    row[36:40] = [math.nan, 0.0, math.nan, 0.0]  # level 10 empty on both sides
    assert book_problem(row, 10) is None


def test_vectorised_precheck_never_passes_a_bad_book(rows: np.ndarray) -> None:
    from hftpipe.streaming.checks import sane_rows

    rng = np.random.default_rng(0)
    books = rows[:200].copy()
    for i in range(0, 200, 3):  # break a third of them at random places with random bad values
        books[i, rng.integers(0, 40)] = rng.choice([-1.0, 0.0, 1e308, np.inf, np.nan, 1.0, 1e6])
    fast = sane_rows(books)
    slow = np.array([book_problem(b.tolist(), 10) is None for b in books])
    assert not (fast & ~slow).any()  # the fast path never lets a bad book through
    assert fast[~np.isin(np.arange(200), np.arange(0, 200, 3))].all()  # and passes every untouched real book
    assert (~slow).sum() > 30
