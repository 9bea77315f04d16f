"""The paper trader's pure core: backtest-live parity on a real LOBSTER slice, max-loss halt within one event,
the kill switch before the next order, the stale-data guard, and snapshot/restore."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import TradingConfig
from hftpipe.contracts import BookUpdate, Signal
from hftpipe.data import load_lobster
from hftpipe.data.schema import book_matrix, levels_of
from hftpipe.trading.backtest import run_backtest
from hftpipe.trading.execution import EXECUTE, NEW, Fees, Latency
from hftpipe.trading.paper_core import AUTO_ACTOR, PaperCore
from hftpipe.trading.policies import make_policy
from hftpipe.trading.risk import DenyReason, HaltCause, RiskEngine, RiskLimits, RiskState
from hftpipe.trading.state_store import RiskStateStore
from tests.conftest import lobster_zip

LOOSE = {"max_position": 1e9, "max_order_size": 1e9, "max_order_notional": 1e12, "max_orders": 0,
         "price_band_bps": 1e9, "max_daily_loss": math.inf, "max_daily_drawdown": math.inf,
         "max_book_age_s": 1e9, "max_signal_age_s": 1e9}
UP, DOWN = [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]


def _updates(events: pd.DataFrame, symbol: str = "GOOG") -> list[BookUpdate]:
    levels = levels_of(events)
    mat = book_matrix(events, levels)
    out = []
    for i, row in enumerate(events.itertuples(index=False)):
        out.append(BookUpdate(venue="NASDAQ", symbol=symbol, seq=i + 1, event_time=float(row.time), recv_time=0.0,
                              publish_time=0.0, levels=levels, book=mat[i].tolist(), event_type=int(row.type),
                              price=float(row.price), size=float(row.size), direction=int(row.direction)))
    return out


def _signal(seq: int, probs: list[float], event_time: float, symbol: str = "GOOG") -> Signal:
    return Signal(symbol=symbol, venue="NASDAQ", seq=seq, event_time=event_time, input_publish_time=0.0,
                  publish_time=0.0, probabilities=probs, predicted=int(np.argmax(probs)), model_name="m",
                  model_version="1", horizon=10)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    frame = load_lobster(lobster_zip("GOOG", 10)).frame.iloc[:4000].reset_index(drop=True)
    # The bus carries no exchange order ids; the core numbers each event -seq. Give the backtest the same ids.
    frame["order_id"] = -(np.arange(len(frame)) + 1)
    return frame


@pytest.mark.parametrize("policy_name", ["threshold", "passive"])
def test_core_matches_the_backtest_fill_for_fill(events: pd.DataFrame, policy_name: str) -> None:
    rng = np.random.default_rng(7)
    n = len(events)
    signals = np.full((n, 3), np.nan)
    raw = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    signals[60:] = raw[60:]  # the first events have no signal (the model's window is warming up)
    cfg = TradingConfig(hold_events=5)
    latency, fees = Latency(0.0005, 0.0005), Fees(cfg.maker_fee_per_share, cfg.taker_fee_per_share, cfg.fee_bps)
    limits = RiskLimits(max_position=300, max_order_size=200, max_daily_loss=math.inf,
                        max_daily_drawdown=math.inf, max_book_age_s=1e9, max_signal_age_s=1e9)
    result = run_backtest(events, signals, make_policy(policy_name, cfg, 10), RiskEngine(limits), latency, fees,
                          symbol="GOOG", bootstrap=10, flatten_at_end=False)

    core = PaperCore(lambda: make_policy(policy_name, cfg, 10), RiskEngine(limits), latency, fees)
    fills, orders = [], 0
    times = events["time"].to_numpy()
    for i, update in enumerate(_updates(events)):
        if np.isfinite(signals[i]).all():  # the signal known at event i (the backtest's row i)
            core.on_signal(_signal(update.seq, signals[i].tolist(), float(times[i])))
        step = core.on_book(update)
        fills.extend(step.fills)
        orders += sum(o.status == "accepted" for o in step.orders)
    last_t = float(times[-1])
    expected = [f for f in result.fills if f.time <= last_t]  # the backtest flushes in-flight orders at the end
    assert len(expected) >= 10, "too few fills to compare"
    got = [(f.order_id, f.event_time, f.side, f.qty, f.price, f.fee, f.maker) for f in fills]
    assert got == [(f.order_id, f.time, f.side, f.qty, f.price, f.fee, f.maker) for f in expected]
    assert orders == result.n_orders
    pos = core.position(core.symbols["GOOG"])
    assert pos.position == sum(f.side * f.qty for f in expected)
    cash = -sum(f.side * f.qty * f.price + f.fee for f in expected)
    assert pos.cash == pytest.approx(cash, abs=1e-6)
    assert pos.pnl == pytest.approx(cash + pos.position * pos.mid, abs=1e-6)


def _hand_book(seq: int, t: float, bid: float, ask: float, etype: int = 1, price: float = 0.0, size: float = 0.0,
               direction: int = 0, publish_time: float = 0.0) -> BookUpdate:
    return BookUpdate(venue="X", symbol="S", seq=seq, event_time=t, recv_time=0.0, publish_time=publish_time,
                      levels=1, book=[ask, 500.0, bid, 500.0], event_type=etype, price=price, size=size,
                      direction=direction)


def _threshold_core(limits: RiskLimits, control=None) -> PaperCore:
    cfg = TradingConfig(order_size=100, max_inventory=100, hold_events=1000)
    return PaperCore(lambda: make_policy("threshold", cfg, 10), RiskEngine(limits), Latency(0.0, 0.0), Fees(0, 0, 0),
                     control)


def test_max_loss_breach_halts_within_the_event_that_causes_it() -> None:
    core = _threshold_core(RiskLimits(**{**LOOSE, "max_daily_loss": 150.0}))
    core.on_signal(_signal(1, UP, 1.0, symbol="S"))
    step = core.on_book(_hand_book(1, 1.0, 100.00, 100.02))
    assert [o.status for o in step.orders] == ["accepted"]  # buy 100 at market
    step = core.on_book(_hand_book(2, 2.0, 100.00, 100.02))  # the order arrives: filled at the ask
    assert [(f.qty, f.price) for f in step.fills] == [(100.0, 100.02)]
    assert core.risk.state is RiskState.ACTIVE
    # The mid drops 1.00: loss 100 x 1.01 = 101 < 150, still trading; then 1.50 lower: 151 > 150 -> HALTED now.
    step = core.on_book(_hand_book(3, 3.0, 99.00, 99.02))
    assert core.risk.state is RiskState.ACTIVE and step.position.risk_state == "ACTIVE"
    step = core.on_book(_hand_book(4, 4.0, 98.50, 98.52))
    assert core.risk.state is RiskState.HALTED and core.risk.halt_cause is HaltCause.MAX_DAILY_LOSS
    assert step.position.risk_state == "HALTED" and step.orders == []
    assert [c.actor for c in step.changes] == [AUTO_ACTOR]
    assert step.position.day_pnl == pytest.approx(-151.0)
    # A fresh signal on the next event sends nothing.
    core.on_signal(_signal(5, DOWN, 5.0, symbol="S"))
    assert core.on_book(_hand_book(5, 5.0, 98.50, 98.52)).orders == []


class _StoreControl:
    """The service's control, on a real RiskStateStore (persists automatic halts, adopts the stored state)."""

    def __init__(self, store: RiskStateStore) -> None:
        self.store = store

    def sync(self, engine, now, automatic) -> None:
        from hftpipe.trading.paper import persist_automatic

        persist_automatic(self.store, automatic)
        self.store.apply_to(engine, now)


def test_kill_switch_stops_orders_before_the_next_event_and_cancels_resting(hftpipe_home: Path) -> None:
    from hftpipe import audit

    store = RiskStateStore(hftpipe_home / "risk.db")
    cfg = TradingConfig(order_size=100, max_inventory=100)
    core = PaperCore(lambda: make_policy("passive", cfg, 10), RiskEngine(RiskLimits(**LOOSE)), Latency(0, 0),
                     Fees(0, 0, 0), _StoreControl(store))
    step = core.on_book(_hand_book(1, 1.0, 100.00, 100.02))
    assert sorted(o.status for o in step.orders) == ["accepted", "accepted"]  # bid and ask quotes
    store.change(RiskState.HALTED, "desk says stop", "alice")  # what `hftpipe risk halt` does
    step = core.on_book(_hand_book(2, 2.0, 100.01, 100.03))  # the quotes would move: no new order, all pulled
    assert [o.status for o in step.orders] == ["cancel", "cancel"]
    assert all(o.reason == "halted" for o in step.orders)
    assert core.risk.state is RiskState.HALTED
    assert core.on_book(_hand_book(3, 3.0, 100.02, 100.04)).orders == []
    store.change(RiskState.ACTIVE, "all clear", "bob")
    assert sorted(o.status for o in core.on_book(_hand_book(4, 4.0, 100.02, 100.04)).orders) == ["accepted"] * 2
    kinds = [r.action for r in audit.open_trail().records()]
    assert kinds == [audit.KILL_SWITCH, audit.RISK_STATE]
    store.close()


def test_automatic_halt_is_written_to_the_store_and_the_audit_trail(hftpipe_home: Path) -> None:
    from hftpipe import audit

    store = RiskStateStore(hftpipe_home / "risk.db")
    store.change(RiskState.ACTIVE, "start of day", "alice")  # a stored ACTIVE must not undo the automatic halt
    core = _threshold_core(RiskLimits(**{**LOOSE, "max_daily_loss": 50.0}), _StoreControl(store))
    core.on_signal(_signal(1, UP, 1.0, symbol="S"))
    core.on_book(_hand_book(1, 1.0, 100.00, 100.02))
    core.on_book(_hand_book(2, 2.0, 100.00, 100.02))
    core.on_book(_hand_book(3, 3.0, 99.00, 99.02))
    assert core.risk.state is RiskState.HALTED
    assert store.current().state is RiskState.HALTED and store.current().actor == AUTO_ACTOR
    last = list(audit.open_trail().records())[-1]
    assert last.action == audit.KILL_SWITCH and "daily loss" in last.reason
    core.on_signal(_signal(4, UP, 4.0, symbol="S"))
    assert core.on_book(_hand_book(4, 4.0, 99.00, 99.02)).orders == []
    store.close()


def test_stale_book_and_signal_are_denied_by_the_risk_engine() -> None:
    core = _threshold_core(RiskLimits(**{**LOOSE, "max_book_age_s": 2.0, "max_signal_age_s": 2.0}))
    core.on_signal(_signal(1, UP, 1.0, symbol="S"))
    step = core.on_book(_hand_book(1, 1.0, 100.0, 100.02, publish_time=1000.0), wall_now=1003.0)  # 3 s late
    assert [(o.status, o.reason) for o in step.orders] == [("denied", DenyReason.STALE_BOOK.value)]
    # Exchange time: the signal of seq 1 is 10 s old at seq 2.
    step = core.on_book(_hand_book(2, 11.0, 100.0, 100.02))
    assert [(o.status, o.reason) for o in step.orders] == [("denied", DenyReason.STALE_SIGNAL.value)]
    assert core.risk.denials[DenyReason.STALE_BOOK] == 1 and core.risk.denials[DenyReason.STALE_SIGNAL] == 1


def test_duplicates_are_ignored_and_a_snapshot_restores_everything() -> None:
    core = _threshold_core(RiskLimits(**LOOSE))
    core.on_signal(_signal(1, UP, 1.0, symbol="S"))
    core.on_book(_hand_book(1, 1.0, 100.0, 100.02))
    blob = core.snapshot()
    step = core.on_book(_hand_book(2, 2.0, 100.0, 100.02))
    assert len(step.fills) == 1
    assert core.on_book(_hand_book(2, 2.0, 100.0, 100.02)).duplicate
    assert core.on_signal(_signal(1, UP, 1.0, symbol="S")).duplicate
    again = _threshold_core(RiskLimits(**LOOSE))
    again.restore(blob)
    replay = again.on_book(_hand_book(2, 2.0, 100.0, 100.02))  # same state + same input = same output
    assert replay.fills == step.fills and replay.position == step.position


def test_a_resting_order_behind_the_queue_fills_only_after_it_trades() -> None:
    cfg = TradingConfig(order_size=100, max_inventory=100)
    core = PaperCore(lambda: make_policy("passive", cfg, 10), RiskEngine(RiskLimits(**LOOSE)), Latency(0, 0),
                     Fees(-0.002, 0.003, 0))
    core.on_book(_hand_book(1, 1.0, 100.00, 100.02))  # quotes join 500 at each touch
    core.on_book(_hand_book(2, 2.0, 100.00, 100.02, NEW, 99.0, 1, 1))  # orders arrive; queue ahead 500
    step = core.on_book(_hand_book(3, 3.0, 100.00, 100.02, EXECUTE, 100.00, 400, 1))
    assert step.fills == []
    step = core.on_book(_hand_book(4, 4.0, 100.00, 100.02, EXECUTE, 100.00, 150, 1))
    assert [(f.side, f.qty, f.price, f.maker) for f in step.fills] == [(1, 50.0, 100.0, True)]
    assert step.position.position == 50.0 and step.position.fees == pytest.approx(-0.1)
