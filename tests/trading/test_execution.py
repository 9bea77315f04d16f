"""Fill model on hand-made books: queue position, latency, market orders walking the book, fees."""

from __future__ import annotations

import pytest

from hftpipe.trading.execution import (
    DELETE,
    EXECUTE,
    HIDDEN_EXECUTE,
    NEW,
    PARTIAL_CANCEL,
    ExecutionModel,
    Fees,
    Latency,
    OrderStatus,
)

NO_FEES = Fees(0.0, 0.0, 0.0)


def row(ask: float, ask_size: float, bid: float, bid_size: float, *deeper: float) -> list[float]:
    return [ask, ask_size, bid, bid_size, *deeper]


def test_limit_order_behind_300_fills_only_after_300_traded_or_cancelled_ahead() -> None:
    ex = ExecutionModel("X", NO_FEES)
    ex.on_event(0.0, NEW, 1, 300, 100.00, 1, row(100.01, 500, 100.00, 300))
    order = ex.submit(1, 100, 100.00, now=0.5)
    book = row(100.01, 500, 100.00, 300)
    assert ex.on_event(1.0, NEW, 2, 0, 100.01, -1, row(100.01, 500, 100.00, 300)) == []  # unrelated event
    assert order.status is OrderStatus.RESTING and order.queue_ahead == 300
    steps = [
        (EXECUTE, 10, 100, row(100.01, 500, 100.00, 200)),  # 100 traded ahead of us
        (PARTIAL_CANCEL, 11, 100, row(100.01, 500, 100.00, 100)),  # 100 cancelled ahead
        (NEW, 50, 200, row(100.01, 500, 100.00, 300)),  # joins BEHIND us
        (DELETE, 50, 200, row(100.01, 500, 100.00, 100)),  # its cancel does not move us
        (DELETE, 12, 60, row(100.01, 500, 100.00, 40)),  # 60 more cancelled ahead: 260 gone
        (EXECUTE, 13, 40, row(100.01, 500, 100.00, 0)),  # 40 traded: exactly 300 gone, nothing for us yet
    ]
    t = 2.0
    for etype, oid, size, book in steps:
        assert ex.on_event(t, etype, oid, size, 100.00, 1, book) == [], (etype, oid)
        t += 1.0
    assert order.queue_ahead == 0 and order.filled == 0
    fills = ex.on_event(t, EXECUTE, 14, 30, 100.00, 1, row(100.01, 500, 100.00, 0))
    assert [(f.qty, f.price, f.maker) for f in fills] == [(30, 100.00, True)]  # partial fill
    fills = ex.on_event(t + 1, EXECUTE, 15, 200, 100.00, 1, row(100.01, 500, 99.99, 100))
    assert [f.qty for f in fills] == [70] and order.status is OrderStatus.FILLED
    assert book  # the first book row is only the set-up


def test_cancels_ahead_without_order_ids_count_in_proportion() -> None:
    ex = ExecutionModel("X", NO_FEES)
    ex.on_event(0.0, NEW, 1, 300, 100.00, 1, row(100.01, 500, 100.00, 300))
    order = ex.submit(1, 100, 100.00, now=0.5)
    ex.on_event(1.0, NEW, 0, 100, 100.00, 1, row(100.01, 500, 100.00, 400))  # behind, unknown id
    assert order.queue_ahead == 300
    ex.on_event(2.0, PARTIAL_CANCEL, 0, 200, 100.00, 1, row(100.01, 500, 100.00, 200))
    assert order.queue_ahead == pytest.approx(300 - 200 * 300 / 400)


def test_executions_at_a_worse_price_or_of_an_order_behind_fill_us() -> None:
    ex = ExecutionModel("X", NO_FEES)
    ex.on_event(0.0, NEW, 1, 300, 100.02, -1, row(100.02, 300, 100.00, 100))
    better = ex.submit(-1, 50, 100.01, now=0.1)  # improves the ask: alone at 100.01 (the real book never shows us)
    ex.on_event(1.0, NEW, 2, 10, 99.99, 1, row(100.02, 300, 100.00, 100, 100.03, 10, 99.99, 10))
    assert better.queue_ahead == 0
    fills = ex.on_event(2.0, EXECUTE, 1, 20, 100.02, -1, row(100.02, 280, 100.00, 100))
    assert [(f.qty, f.price) for f in fills] == [(20, 100.01)]  # the buyer would have met us first
    join = ex.submit(-1, 10, 100.02, now=2.5)
    ex.on_event(3.0, NEW, 7, 5, 100.02, -1, row(100.02, 285, 100.00, 100))
    assert join.queue_ahead == 280
    fills = ex.on_event(4.0, EXECUTE, 7, 5, 100.02, -1, row(100.02, 280, 100.00, 100))
    assert sorted((f.order_id, f.qty) for f in fills) == [(better.id, 5), (join.id, 5)]  # 7 queued behind `join`
    hidden = ex.on_event(5.0, HIDDEN_EXECUTE, 99, 100, 100.02, -1, row(100.02, 280, 100.00, 100))
    assert [(f.order_id, f.qty) for f in hidden] == [(better.id, 25)]  # hidden trade above our 100.01
    assert join.remaining == 5 and join.queue_ahead == 280  # a hidden trade at our price skips the visible queue


def test_opposite_side_reaching_our_price_fills_us() -> None:
    ex = ExecutionModel("X", NO_FEES)
    ex.on_event(0.0, NEW, 1, 1, 100.00, 1, row(100.05, 100, 100.00, 100))
    order = ex.submit(1, 10, 100.02, now=0.0)
    ex.on_event(1.0, NEW, 2, 1, 100.04, -1, row(100.04, 1, 100.02, 0))
    fills = ex.on_event(2.0, NEW, 3, 4, 100.02, -1, row(100.02, 4, 100.00, 100))
    assert [(f.qty, f.price, f.maker) for f in fills] == [(4, 100.02, True)]  # a sell at our bid meets us
    ex.on_event(3.0, DELETE, 2, 1, 100.04, -1, row(100.02, 4, 100.00, 100))  # a cancel trades nothing
    fills = ex.on_event(4.0, NEW, 4, 50, 100.01, -1, row(100.01, 50, 100.00, 100))
    assert [f.qty for f in fills] == [6] and order.status is OrderStatus.FILLED


def test_market_order_walks_the_book_with_taker_fee_and_partial_fill() -> None:
    ex = ExecutionModel("X", Fees(maker_per_share=-0.002, taker_per_share=0.003, bps=1.0))
    book = row(100.01, 100, 100.00, 100, 100.02, 50, 99.99, 100)
    ex.on_event(0.0, NEW, 1, 1, 100.0, 1, book)
    order = ex.submit(1, 200, None, now=0.0)
    fills = ex.on_event(1.0, NEW, 2, 1, 99.0, 1, book)
    assert [(f.qty, f.price, f.maker) for f in fills] == [(100, 100.01, False), (50, 100.02, False)]
    assert fills[0].fee == pytest.approx(100 * 0.003 + 100 * 100.01 * 1e-4)
    assert order.status is OrderStatus.CANCELLED and order.filled == 150  # the book had only 150


def test_marketable_limit_takes_up_to_its_price_and_rests_the_rest() -> None:
    ex = ExecutionModel("X", NO_FEES)
    book = row(100.01, 100, 100.00, 100, 100.02, 50, 99.99, 100)
    ex.on_event(0.0, NEW, 1, 1, 100.0, 1, book)
    order = ex.submit(1, 150, 100.01, now=0.0)
    fills = ex.on_event(1.0, NEW, 2, 1, 99.0, 1, book)
    assert [(f.qty, f.price) for f in fills] == [(100, 100.01)]
    assert order.status is OrderStatus.RESTING and order.remaining == 50 and order.queue_ahead == 0


def test_order_latency_delays_arrival_so_the_order_meets_a_later_book() -> None:
    def run(latency: Latency) -> float:
        ex = ExecutionModel("X", NO_FEES, latency)
        ex.on_event(0.0, NEW, 1, 1, 100.0, 1, row(100.01, 100, 100.00, 100))
        ex.submit(1, 10, None, now=ex.decision_time(0.0))
        fills = ex.on_event(0.001, NEW, 2, 1, 100.05, -1, row(100.05, 100, 100.04, 100))  # the ask moves up
        fills += ex.on_event(0.010, NEW, 3, 1, 100.09, -1, row(100.09, 100, 100.08, 100))
        fills += ex.flush()
        (fill,) = fills
        return fill.price

    assert run(Latency(0.0, 0.0)) == 100.01
    assert run(Latency(feed_s=0.0, order_s=0.002)) == 100.05  # arrives after the move at 1 ms
    assert run(Latency(feed_s=0.002, order_s=0.0)) == 100.05  # sees the event late: same delay
    assert run(Latency(feed_s=0.004, order_s=0.008)) == 100.09  # 12 ms: after both moves


def test_cancel_also_takes_order_latency_fills_before_it_count() -> None:
    ex = ExecutionModel("X", NO_FEES, Latency(0.0, 0.005))
    ex.on_event(0.0, NEW, 1, 1, 100.0, 1, row(100.01, 100, 100.00, 0))
    order = ex.submit(1, 10, 100.00, now=0.0)
    ex.on_event(0.006, NEW, 2, 1, 100.02, -1, row(100.01, 100, 100.00, 0))  # arrived at 5 ms, first in queue
    ex.cancel(order.id, now=0.007)  # reaches the book at 12 ms
    fills = ex.on_event(0.010, EXECUTE, 9, 4, 100.00, 1, row(100.01, 100, 100.00, 0))
    assert [f.qty for f in fills] == [4]
    ex.on_event(0.013, EXECUTE, 9, 4, 100.00, 1, row(100.01, 100, 100.00, 0))
    assert order.status is OrderStatus.CANCELLED and order.filled == 4


def test_bad_orders_and_latencies_are_refused() -> None:
    with pytest.raises(ValueError, match="side"):
        ExecutionModel().submit(0, 1, None, now=0.0)
    with pytest.raises(ValueError, match="latencies"):
        Latency(-1.0, 0.0)
