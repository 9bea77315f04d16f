"""Loaders work for any level count and any ticker: pairs built from slices of the real GOOG file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import DataConfig, ValidateConfig
from hftpipe.data import load_lobster
from hftpipe.data.schema import EventTable
from hftpipe.prepare import validate_path
from hftpipe.validation import validate_table
from tests.data.lobster_pairs import (
    ASK_SENTINEL,
    BID_SENTINEL,
    book_levels,
    empty_levels_from,
    raw_slice,
    write_pair,
)

ROWS = 1500


@pytest.mark.parametrize("symbol,date,levels", [("MSFT", "2013-03-04", 3), ("BRK.B", "2019-11-29", 7)])
def test_other_ticker_day_and_level_count(tmp_path, symbol: str, date: str, levels: int) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book_levels(book, levels), symbol=symbol, date=date)

    table = load_lobster(path)

    assert (table.meta.symbol, table.meta.date, table.meta.levels, table.meta.rows) == (symbol, date, levels, ROWS)
    assert table.frame.shape == (ROWS, 6 + 4 * levels)
    assert list(table.frame.columns[-4:]) == [f"ask_price_{levels}", f"ask_size_{levels}",
                                              f"bid_price_{levels}", f"bid_size_{levels}"]
    # Same numbers as the source file: prices in dollars, sizes in shares, level by level.
    raw = book.to_numpy(dtype=np.float64)[:, : 4 * levels]
    np.testing.assert_allclose(table.book()[:, 0::2], raw[:, 0::2] / 10_000)
    np.testing.assert_array_equal(table.book()[:, 1::2], raw[:, 1::2])
    result = validate_path(path, ValidateConfig())
    assert result.success, "\n".join(result.summary_lines())
    assert result.meta["levels"] == levels and result.meta["symbol"] == symbol


def test_level_count_comes_from_the_columns_when_the_name_has_none(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    messages.to_csv(tmp_path / "day_message.csv", header=False, index=False)
    book_levels(book, 4).to_csv(tmp_path / "day_orderbook.csv", header=False, index=False)

    table = load_lobster(tmp_path / "day_message.csv", symbol="XYZ", date="2020-01-02")

    assert table.meta.levels == 4 and table.meta.symbol == "XYZ"
    # Without a name the session comes from the config defaults (regular NASDAQ hours).
    assert (table.meta.session_start, table.meta.session_end) == (34200.0, 57600.0)
    assert validate_table(table, ValidateConfig()).success


def test_empty_level_sentinels_become_nan_and_zero(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    thin_rows = np.arange(100, 400)
    thin = empty_levels_from(book, thin_rows, first_empty=6)  # levels 6..10 empty on those rows
    assert (thin.iloc[thin_rows, 20] == ASK_SENTINEL).all() and (thin.iloc[thin_rows, 22] == BID_SENTINEL).all()
    path = write_pair(tmp_path, messages, thin, symbol="AMZN", date="2021-05-03")

    table = load_lobster(path)

    frame = table.frame
    for k in range(6, 11):
        for side in ("ask", "bid"):
            assert frame[f"{side}_price_{k}"].iloc[thin_rows].isna().all()
            assert (frame[f"{side}_size_{k}"].iloc[thin_rows] == 0).all()
            assert frame[f"{side}_price_{k}"].drop(index=thin_rows).notna().all()
    assert frame["ask_price_5"].iloc[thin_rows].notna().all()
    assert np.nanmax(table.book()[:, 0::2]) < 10_000  # no sentinel survives as a price
    result = validate_path(path, ValidateConfig())
    assert result.success, "\n".join(result.summary_lines())


def _with_halt(messages: pd.DataFrame, book: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Insert a LOBSTER trading-halt message (type 7, price -1) after row ``at``; the book repeats."""
    halt = pd.DataFrame([[messages.iloc[at, 0], 7, 0, 0, -1, -1]], columns=messages.columns)
    halt_msgs = pd.concat([messages.iloc[: at + 1], halt, messages.iloc[at + 1:]], ignore_index=True)
    halt_book = pd.concat([book.iloc[: at + 1], book.iloc[[at]], book.iloc[at + 1:]], ignore_index=True)
    return halt_msgs, halt_book


def test_trading_halt_is_dropped_and_recorded(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    halt_msgs, halt_book = _with_halt(messages, book, at=700)
    path = write_pair(tmp_path, halt_msgs, halt_book)

    table = load_lobster(path)

    assert table.meta.rows == ROWS and len(table.frame) == ROWS
    assert 7 not in set(table.frame["type"])
    assert table.meta.halts == [{"time": float(messages.iloc[700, 0]), "code": -1.0}]
    result = validate_path(path, ValidateConfig())
    assert result.success, "\n".join(result.summary_lines())
    assert result.meta["halts"] == 1


def test_trading_halt_kept_when_asked_still_validates(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    halt_msgs, halt_book = _with_halt(messages, book, at=700)
    path = write_pair(tmp_path, halt_msgs, halt_book)

    table = load_lobster(path, halts="keep")

    assert len(table.frame) == ROWS + 1 and table.frame["type"].iloc[701] == 7
    # Halt rows carry a status code, not an order: the size/price checks skip them, type 7 is allowed.
    result = validate_path(path, ValidateConfig(), DataConfig(halts="keep"))
    assert result.success, "\n".join(result.summary_lines())


def test_a_halt_row_the_metadata_does_not_declare_fails(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    halt_msgs, halt_book = _with_halt(messages, book, at=700)
    table = load_lobster(write_pair(tmp_path, halt_msgs, halt_book), halts="keep")
    undeclared = EventTable(table.frame, type(table.meta)(**{**table.meta.to_dict(), "halts": []}))

    result = validate_table(undeclared, ValidateConfig())

    assert not result.success
    assert any(f.expectation == "expect_column_values_to_be_in_set" and f.columns == ("type",)
               for f in result.failures)
