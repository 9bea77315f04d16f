"""Build LOBSTER message/orderbook CSV pairs in tmp folders from slices of the real shipped files.

Used by the loader tests (other tickers, level counts, sentinels, halts) and by the validation tests
(one corruption per file). Values are the raw LOBSTER integers (prices x 10000), as in the real files.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import lobster_zip

ASK_SENTINEL = 9_999_999_999
BID_SENTINEL = -9_999_999_999


@functools.lru_cache(maxsize=4)
def _raw(symbol: str, levels: int, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(lobster_zip(symbol, levels)) as archive:
        names = archive.namelist()
        message = next(n for n in names if "message" in n)
        book = next(n for n in names if "orderbook" in n)
        with archive.open(message) as fh:
            messages = pd.read_csv(fh, header=None, nrows=rows)
        with archive.open(book) as fh:
            books = pd.read_csv(fh, header=None, nrows=rows)
    return messages, books


def raw_slice(rows: int = 2000, symbol: str = "GOOG", levels: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First ``rows`` raw rows of a shipped file: messages (time float, rest int) and the int book."""
    messages, books = _raw(symbol, levels, rows)
    return messages.copy(), books.copy()


def pair_name(symbol: str, date: str, levels: int, kind: str, start_ms: int = 34_200_000,
              end_ms: int = 57_600_000) -> str:
    return f"{symbol}_{date}_{start_ms}_{end_ms}_{kind}_{levels}.csv"


def write_pair(folder: Path, messages: pd.DataFrame, book: pd.DataFrame, *, symbol: str = "GOOG",
               date: str = "2012-06-21", levels: int | None = None, start_ms: int = 34_200_000,
               end_ms: int = 57_600_000) -> Path:
    """Write a LOBSTER-named CSV pair into ``folder``; return the message file's path.

    ``levels`` is the count written in the file names (default: the book's columns / 4).
    """
    folder.mkdir(parents=True, exist_ok=True)
    levels = levels if levels is not None else book.shape[1] // 4
    msg_path = folder / pair_name(symbol, date, levels, "message", start_ms, end_ms)
    book_path = folder / pair_name(symbol, date, levels, "orderbook", start_ms, end_ms)
    messages.to_csv(msg_path, header=False, index=False)
    book.to_csv(book_path, header=False, index=False)
    return msg_path


def book_levels(book: pd.DataFrame, levels: int) -> pd.DataFrame:
    """The first ``levels`` levels of a raw book (4 columns per level), renumbered 0..4L-1."""
    out = book.iloc[:, : 4 * levels].copy()
    out.columns = range(4 * levels)
    return out


def empty_levels_from(book: pd.DataFrame, rows: np.ndarray | slice, first_empty: int) -> pd.DataFrame:
    """Mark levels ``first_empty``.. (1-based) empty with LOBSTER's sentinels on ``rows``: a thinner book."""
    out = book.copy()
    levels = out.shape[1] // 4
    for k in range(first_empty, levels + 1):
        base = 4 * (k - 1)
        out.iloc[rows, base] = ASK_SENTINEL
        out.iloc[rows, base + 1] = 0
        out.iloc[rows, base + 2] = BID_SENTINEL
        out.iloc[rows, base + 3] = 0
    return out
