"""Outcomes joined with the trades their signal caused: attribution via order_id -> signal_seq, idempotence,
fills before or after the outcome matures (the message has what was applied by then, the data set has all),
and backwards-compatible decoding of outcomes written before the trade fields existed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from hftpipe.config import load_config
from hftpipe.contracts import SCHEMA_VERSION, BookUpdate, Fill, Order, Outcome, Signal, decode, encode
from hftpipe.monitoring import feedback_store as store
from hftpipe.monitoring.outcomes import LabelSpec
from hftpipe.monitoring.service import FeedbackService
from hftpipe.monitoring.trades import TradeLedger

K = 2


def _order(order_id: int, signal_seq: int, status: str = "accepted", side: int = 1, seq: int = 1) -> Order:
    return Order(symbol="GOOG", venue="NASDAQ", status=status, order_id=order_id, side=side, qty=100.0, price=None,
                 seq=seq, event_time=float(seq), publish_time=0.0, signal_seq=signal_seq)


def _fill(fill_id: int, order_id: int, qty: float, price: float, side: int = 1, fee: float = 0.3,
          seq: int = 2) -> Fill:
    return Fill(symbol="GOOG", venue="NASDAQ", fill_id=fill_id, order_id=order_id, side=side, qty=qty, price=price,
                fee=fee, maker=False, seq=seq, event_time=float(seq), publish_time=0.0)


def test_old_outcome_messages_still_decode() -> None:
    class OldOutcome(msgspec.Struct, tag="outcome", frozen=True, omit_defaults=True):  # the contract before trades
        symbol: str
        venue: str
        seq: int
        event_time: float
        outcome_time: float
        publish_time: float
        horizon: int
        alpha: float
        label_return: float
        realised: int
        predicted: int
        probabilities: list[float]
        persistence: int
        momentum: int
        model_name: str
        model_version: str
        signal_publish_time: float = 0.0
        correlation_id: str = ""
        version: int = SCHEMA_VERSION

    old = OldOutcome("GOOG", "NASDAQ", 7, 1.0, 2.0, 3.0, 10, 1e-5, 0.0, 1, 2, [0.1, 0.2, 0.7], 1, 0, "m", "3")
    got = decode(msgspec.msgpack.encode(old))
    assert isinstance(got, Outcome) and got.seq == 7 and got.predicted == 2
    assert (got.orders, got.fills, got.filled_qty, got.markout_pnl, got.outcome_mid) == (0, 0, 0.0, 0.0, 0.0)


def test_ledger_attributes_fills_through_their_order_in_any_arrival_order() -> None:
    ledger = TradeLedger()
    assert ledger.on_fill(_fill(1, order_id=5, qty=40, price=100.0)) == []  # its order is not known yet: waits
    rows = ledger.on_order(_order(5, signal_seq=9))
    assert [t for t, _ in rows] == ["orders", "fills"] and rows[1][1]["signal_seq"] == 9
    rows = ledger.on_fill(_fill(2, order_id=5, qty=60, price=101.0, fee=0.5))
    assert [(t, r["seq"], r["signal_seq"]) for t, r in rows] == [("fills", 2, 9)]
    assert ledger.on_order(_order(0, signal_seq=9, status="denied")) == []  # denials and cancels trade nothing
    assert ledger.on_order(_order(5, signal_seq=9, status="cancel")) == []
    # redelivery changes nothing
    assert ledger.on_order(_order(5, signal_seq=9)) == [] and ledger.on_fill(_fill(2, 5, 60, 101.0)) == []
    fields = ledger.summary("GOOG", 9).fields(mid=102.0)
    assert fields["orders"] == 1 and fields["fills"] == 2
    assert fields["filled_qty"] == 100 and fields["net_qty"] == 100
    assert fields["avg_price"] == pytest.approx((40 * 100.0 + 60 * 101.0) / 100)
    assert fields["fees"] == pytest.approx(0.8)
    assert fields["markout_pnl"] == pytest.approx(40 * 2.0 + 60 * 1.0 - 0.8)  # bought below the later mid
    assert ledger.summary("GOOG", 8).fields(102.0)["fills"] == 0
    # a sell is marked the other way round; a snapshot restores the same ledger
    ledger.on_order(_order(6, signal_seq=10, side=-1))
    ledger.on_fill(_fill(3, order_id=6, qty=100, price=101.0, side=-1, fee=0.0))
    assert ledger.summary("GOOG", 10).fields(102.0)["markout_pnl"] == pytest.approx(-100.0)
    again = TradeLedger()
    again.restore("GOOG", msgspec.json.decode(msgspec.json.encode(ledger.state_of("GOOG"))))
    assert again.summary("GOOG", 9) == ledger.summary("GOOG", 9)
    assert again.on_fill(_fill(3, 6, 100, 101.0)) == []  # the fill id high-water mark came back too


class _Msg:
    def __init__(self, stream: str, message) -> None:
        self.data = encode(message)
        self.subject = f"{stream.lower()}.GOOG"
        self.metadata = SimpleNamespace(stream=stream)
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1


class _Client:
    """Enough of a BusClient for FeedbackService.handle: publishes are recorded, acks are immediate."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        loop_future = self._done

        class Js:
            async def publish_async(js, subject, data, headers=None):  # noqa: N805 - a tiny stand-in
                self.published.append((subject, data))
                return loop_future()

        class Nc:
            async def publish(nc, subject, data, headers=None):  # noqa: N805
                self.published.append((subject, data))

        self.js, self.nc = Js(), Nc()

    @staticmethod
    def _done():
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _book(seq: int, mid: float) -> BookUpdate:
    return BookUpdate(venue="NASDAQ", symbol="GOOG", seq=seq, event_time=1_340_280_000.0 + seq, recv_time=0.0,
                      publish_time=0.0, levels=1, book=[mid + 0.01, 100.0, mid - 0.01, 100.0])


def _signal(seq: int) -> Signal:
    return Signal(symbol="GOOG", venue="NASDAQ", seq=seq, event_time=1_340_280_000.0 + seq, input_publish_time=0.0,
                  publish_time=0.0, probabilities=[0.1, 0.1, 0.8], predicted=2, model_name="m", model_version="1",
                  horizon=K)


def test_service_joins_trades_before_maturity_into_the_message_and_later_ones_into_the_data_set(
        tmp_path: Path) -> None:
    cfg = load_config(None, [f"feedback.output={tmp_path / 'fb'}", "feedback.record_books=false"])
    client = _Client()
    service = FeedbackService(cfg, client=client, spec=LabelSpec(horizon=K, alpha=1e-6))

    async def run() -> list[Outcome]:
        out = []
        # signal 1 on book 1; the trader buys on it (order 1); one fill lands before the outcome matures
        early = [_Msg("ORD", _order(1, signal_seq=1, seq=2)), _Msg("FILL", _fill(1, 1, 30, 100.0, seq=2))]
        batch = ([_Msg("MD", _book(1, 100.0)), _Msg("MD", _book(2, 100.5))], [_Msg("SIG", _signal(1))], early)
        out += await service.handle(*batch)
        out += await service.handle(*batch)  # a redelivery of the whole batch: nothing doubles
        out += await service.handle([_Msg("MD", _book(3, 101.0))], [], [])  # k=2 events after book 1: matures
        # a second fill of the same order arrives after the outcome went out
        out += await service.handle([_Msg("MD", _book(4, 101.0))], [], [_Msg("FILL", _fill(2, 1, 70, 100.2, seq=4))])
        return out

    outcomes = asyncio.run(run())
    assert [o.seq for o in outcomes] == [1]
    o = outcomes[0]
    # the message: the trades applied when it was published (the first fill only), marked to the mid at book 3
    assert (o.orders, o.fills, o.filled_qty, o.outcome_mid) == (1, 1, 30.0, 101.0)
    assert o.markout_pnl == pytest.approx(30 * (101.0 - 100.0) - 0.3)
    assert decode(next(d for s, d in client.published if s.startswith("out."))) == o
    store.flush(service.buffer, service.root, cfg.feedback.flush_rows, partial=True)
    frame = store.read_outcomes(service.root)
    row = frame.iloc[0]
    # the data set: both fills, whatever arrived after the outcome
    assert (row["orders"], row["fills"], row["filled_qty"], row["net_qty"]) == (1, 2, 100.0, 100.0)
    assert row["avg_price"] == pytest.approx((30 * 100.0 + 70 * 100.2) / 100)
    assert row["markout_pnl"] == pytest.approx(30 * 1.0 + 70 * 0.8 - 0.6)
    assert list(store.read_table(service.root, "fills")["seq"]) == [1, 2]  # once each, despite the redelivery
    assert list(store.read_table(service.root, "orders")["signal_seq"]) == [1]
    assert store.outcome_from_row(next(frame.itertuples(index=False))).fills == 2
    service.buffer.close()
