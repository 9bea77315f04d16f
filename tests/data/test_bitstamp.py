"""The L3 book builder on a hand-made sequence with a known book after each step, and the shipped capture."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.config import DataConfig, ValidateConfig
from hftpipe.data import read_events
from hftpipe.data.bitstamp import ASK, BID, CHANGED, CREATED, DELETED, TRADE, L3Book, load_bitstamp
from hftpipe.errors import DataFormatError
from hftpipe.prepare import ingest, validate_path
from tests.conftest import RAW

CAPTURE = RAW / "bitstamp-btcusd-l3-2026-05-02"
NAN = np.nan

# (action, side, id, price, size) -> expected top-2 book after it (ask_p1, ask_s1, bid_p1, bid_s1, ask_p2,
# ask_s2, bid_p2, bid_s2), or None when the event must emit no row.
STEPS = [
    ((CREATED, BID, 1, 100.0, 5), [NAN, 0, 100, 5, NAN, 0, NAN, 0]),
    ((CREATED, ASK, 2, 102.0, 3), [102, 3, 100, 5, NAN, 0, NAN, 0]),
    ((CREATED, BID, 3, 99.0, 4), [102, 3, 100, 5, NAN, 0, 99, 4]),
    ((CREATED, BID, 4, 100.0, 2), [102, 3, 100, 7, NAN, 0, 99, 4]),  # same level: sizes add
    ((DELETED, BID, 777, 100.0, 1), None),  # created before the capture: unknown, ignored
    ((CHANGED, BID, 1, 100.0, 1), [102, 3, 100, 3, NAN, 0, 99, 4]),  # remaining 5 -> 1
    ((CHANGED, ASK, 2, 103.0, 3), [103, 3, 100, 3, NAN, 0, 99, 4]),  # re-priced
    ((CREATED, ASK, 5, 0.0, 1), None),  # outlier price
    ((CREATED, ASK, 6, 999999999.0, 1), None),  # outlier price
    ((CHANGED, ASK, 8, 104.0, 2), [103, 3, 100, 3, 104, 2, 99, 4]),  # unknown order: adopted
    ((CREATED, BID, 9, 103.0, 1), None),  # locks the book: held
    ((DELETED, BID, 9, 103.0, 1), None),  # ... and the book is as before: a transient, no row
    ((TRADE, ASK, 2, 103.0, 1), [103, 3, 100, 3, 104, 2, 99, 4]),
    ((DELETED, BID, 3, 99.0, 4), [103, 3, 100, 3, 104, 2, NAN, 0]),
    ((DELETED, BID, 1, 100.0, 1), [103, 3, 100, 2, 104, 2, NAN, 0]),
    ((DELETED, BID, 4, 100.0, 2), [103, 3, NAN, 0, 104, 2, NAN, 0]),
]


def _columns(events):
    a = np.array([e[0] for e in events], dtype=np.int8)
    s = np.array([e[1] for e in events], dtype=np.int8)
    i = np.array([e[2] for e in events], dtype=np.int64)
    p = np.array([e[3] for e in events], dtype=np.float64)
    q = np.array([e[4] for e in events], dtype=np.int64)
    return a, s, i, p, q


def _lobster_order(expected):
    # expected is level-major (ask_p, ask_s, bid_p, bid_s) per level already
    return np.array(expected, dtype=np.float64)


def test_hand_made_sequence_gives_the_known_book_after_each_step() -> None:
    book = L3Book(levels=2, cross_grace=3)
    for event, expected in STEPS:
        rows = book.apply(*_columns([event]))
        if expected is None:
            assert len(rows) == 0, f"{event} must emit no row"
        else:
            assert len(rows) == 1, f"{event} must emit one row"
            np.testing.assert_array_equal(rows.book[0], _lobster_order(expected), err_msg=str(event))
    report = book.report
    assert (report.unknown_deletes, report.outliers, report.unknown_changes) == (1, 2, 1)
    assert (report.crossed_rows, report.transient, report.repairs) == (1, 1, 0)
    assert report.rows == sum(e is not None for _, e in STEPS)


def test_event_codes_sizes_and_directions() -> None:
    book = L3Book(levels=1)
    rows = book.apply(*_columns([(CREATED, BID, 1, 100.0, 5), (CHANGED, BID, 1, 100.0, 2),
                                 (CHANGED, BID, 1, 101.0, 2), (TRADE, BID, 1, 101.0, 1), (DELETED, BID, 1, 0.5, 9)]))
    assert rows.event_type.tolist() == [1, 2, 1, 4, 3]
    assert rows.size.tolist() == [5, 3, 2, 1, 2]  # partial cancel: the decrease; delete: what was resting
    assert rows.price.tolist() == [100.0, 100.0, 101.0, 101.0, 101.0]  # a delete reports the resting price
    assert rows.direction.tolist() == [1, 1, 1, 1, 1]


def test_a_stale_crossing_order_is_removed_after_the_grace_and_counted() -> None:
    # Ask 7 was filled before the capture began: its deletion never comes. The market moves up through it.
    book = L3Book(levels=1, cross_grace=2)
    book.apply(*_columns([(CREATED, ASK, 7, 100.0, 1), (CREATED, BID, 1, 99.0, 1), (CREATED, ASK, 2, 105.0, 1)]))
    rows = book.apply(*_columns([(CREATED, BID, 3, 101.0, 4),  # crosses the stale ask: held
                                 (CREATED, BID, 4, 100.5, 1),  # still crossed: held
                                 (CREATED, BID, 5, 100.2, 1)]))  # third crossed event > grace: repaired
    assert len(rows) == 1
    np.testing.assert_array_equal(rows.book[0], [105.0, 1, 101.0, 4])
    report = book.report
    assert (report.repairs, report.repair_events, report.crossed_rows) == (1, 1, 2)
    assert not book.crossed
    # the stale order is gone from the order table too: its late deletion is now an unknown delete
    assert len(book.apply(*_columns([(DELETED, ASK, 7, 100.0, 1)]))) == 0
    assert book.report.unknown_deletes == 1


def test_trades_while_crossed_wait_for_the_uncrossed_book() -> None:
    book = L3Book(levels=1, cross_grace=50)
    book.apply(*_columns([(CREATED, ASK, 1, 100.0, 3), (CREATED, BID, 2, 98.0, 1)]))
    rows = book.apply(*_columns([(CREATED, BID, 9, 101.0, 5),  # a taker sweeps ask 1
                                 (TRADE, ASK, 1, 100.0, 3),
                                 (DELETED, ASK, 1, 100.0, 0),  # filled
                                 (CHANGED, BID, 9, 101.0, 2)]))
    assert rows.event_type.tolist() == [4, 3, 2]  # the trade comes out first, with the uncrossed book
    np.testing.assert_array_equal(rows.book[0], [NAN, 0, 101.0, 5])
    np.testing.assert_array_equal(rows.book[-1], [NAN, 0, 101.0, 2])
    assert book.report.deferred_trades == 1


def test_growth_keeps_every_order() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    prices = 1000.0 + rng.integers(0, 3000, n)
    book = L3Book(levels=3, order_capacity=16, level_capacity=8)
    book.apply(np.zeros(n, np.int8), np.zeros(n, np.int8), np.arange(n), prices, np.ones(n, np.int64))
    assert book.order_count == n
    depth = book.depth("bid")
    assert sum(size for _, size in depth) == n and len(depth) == len(np.unique(prices))
    assert [p for p, _ in depth] == sorted(np.unique(prices), reverse=True)


def test_snapshot_load_then_events() -> None:
    book = L3Book(levels=1)
    book.load_snapshot(np.array([1, 2]), np.array([BID, ASK]), np.array([99.0, 101.0]), np.array([3, 4]))
    assert book.report.events == 0 and book.report.snapshot_orders == 2
    rows = book.apply(*_columns([(DELETED, BID, 1, 99.0, 3)]))
    np.testing.assert_array_equal(rows.book[0], [101.0, 4, NAN, 0])


def test_a_file_that_is_not_a_capture_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "orders.csv"
    bad.write_text("id,timestamp,exchange_timestamp,price,volume,action,direction\n1,1,1,10.0,1.0,moved,bid\n")
    with pytest.raises(DataFormatError, match="action 'moved'"):
        load_bitstamp(bad)


@pytest.mark.slow
def test_shipped_capture_ingests_and_validates(tmp_path) -> None:
    result = validate_path(CAPTURE, ValidateConfig())
    assert result.success, "\n".join(result.summary_lines())
    out = tmp_path / "events.parquet"
    table = ingest(DataConfig(), source=CAPTURE / "orders.csv.gz", output=out)
    back = read_events(out)
    meta = back.meta
    assert (meta.symbol, meta.venue, meta.date, meta.levels) == ("BTCUSD", "bitstamp", "2026-05-02", 10)
    assert meta.rows == table.meta.rows > 90_000
    report = meta.source_report
    assert report["warmup_rows"] > 6000 and report["closing_rows_dropped"] == 6518
    assert report["unknown_deletes"] > 0 and report["outliers"] > 0 and report["dropped_trades"] == 0
    frame = back.frame
    assert (frame["type"] == 4).sum() == 284  # every trade is in the table
    assert 9380 < frame["time"].iloc[0] < frame["time"].iloc[-1] < 11181  # 02:36:20-03:06:20 UTC
    book = back.book()
    assert (book[:, 0] > book[:, 2]).all()
    assert 78_000 < np.median(book[:, 0]) < 79_000


@pytest.mark.slow
def test_the_orders_file_alone_is_enough(tmp_path) -> None:
    import shutil

    shutil.copy(CAPTURE / "orders.csv.gz", tmp_path / "orders.csv.gz")  # no trades.csv, no meta.json
    table = load_bitstamp(tmp_path / "orders.csv.gz", levels=5)
    report = table.meta.source_report
    assert (table.frame["type"] == 4).sum() == 0 and table.meta.levels == 5
    assert report["warmup_rows"] >= 6490 and report["closing_rows_dropped"] == 6518  # found without meta.json
    result = validate_path(tmp_path / "orders.csv.gz", ValidateConfig(), data_cfg=DataConfig(levels=5))
    assert result.success, "\n".join(result.summary_lines())
