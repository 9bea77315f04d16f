from __future__ import annotations

import numpy as np
import pytest

from hftpipe.data import load_lobster, read_events, write_events
from hftpipe.errors import DataFormatError
from tests.conftest import lobster_zip


@pytest.mark.parametrize("symbol,levels,rows", [("GOOG", 1, 49482), ("GOOG", 5, 112673), ("GOOG", 10, 147916),
                                                 ("AAPL", 1, 118497)])
def test_every_shipped_file_loads(symbol: str, levels: int, rows: int) -> None:
    table = load_lobster(lobster_zip(symbol, levels))
    assert table.meta.symbol == symbol and table.meta.levels == levels and table.meta.rows == rows
    assert table.frame.shape == (rows, 6 + 4 * levels)
    book = table.book()
    assert (book[:, 0] > book[:, 2]).all()  # best ask above best bid, in dollars
    assert 500 < np.nanmedian(book[:, 0]) < 700


def test_parquet_round_trip_keeps_metadata(tmp_path, goog1) -> None:
    table = load_lobster(goog1)
    write_events(table, tmp_path / "e.parquet")
    back = read_events(tmp_path / "e.parquet")
    assert back.meta == table.meta
    assert back.frame.equals(table.frame)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataFormatError, match="does not exist"):
        load_lobster(tmp_path / "nope.zip")
