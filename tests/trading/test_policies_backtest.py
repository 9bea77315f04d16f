"""Policies and the event-driven backtest core on hand-made event streams (plus one real slice)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hftpipe.trading.backtest import block_bootstrap_total, run_backtest
from hftpipe.trading.execution import EXECUTE, NEW, Fees, Latency
from hftpipe.trading.policies import Cancel, MarketView, PassivePolicy, Submit, ThresholdPolicy, make_policy
from hftpipe.trading.risk import RiskEngine, RiskLimits, RiskState

UP, DOWN, FLAT = (0.1, 0.1, 0.8), (0.8, 0.1, 0.1), (0.2, 0.6, 0.2)
VIEW = MarketView(0.0, 0.0, 100.00, 100.01, 100, 100)
ROOT = Path(__file__).resolve().parents[2]


def frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (time, type, order_id, size, price, direction, ask, ask_size, bid, bid_size)."""
    cols = ["time", "type", "order_id", "size", "price", "direction", "ask_price_1", "ask_size_1", "bid_price_1",
            "bid_size_1"]
    return pd.DataFrame(rows, columns=cols)


def loose_risk(**kw: float) -> RiskEngine:
    base = {"max_position": 1e9, "max_order_size": 1e9, "max_order_notional": 1e12, "max_orders": 0, "price_band_bps": 1e9,
                "max_daily_loss": math.inf, "max_daily_drawdown": math.inf, "max_book_age_s": 1e9, "max_signal_age_s": 1e9}
    base.update(kw)
    return RiskEngine(RiskLimits(**base))


def test_threshold_policy_targets_and_holds() -> None:
    pol = ThresholdPolicy(order_size=100, threshold=0.5, hold_events=2, max_inventory=100)
    assert pol.decide(VIEW, UP, 0, []) == [Submit(1, 100, None, "target")]
    assert pol.decide(VIEW, FLAT, 0, ["in flight"]) == []  # event 2 of the hold: waits for the fill
    assert pol.decide(VIEW, FLAT, 100, []) == [Submit(-1, 100, None, "target")]  # 2-event hold expired
    assert pol.decide(VIEW, DOWN, 0, []) == [Submit(-1, 100, None, "target")]
    assert pol.decide(VIEW, None, -100, []) == []
    assert pol.decide(VIEW, (0.3, 0.3, 0.4), -100, []) == [Submit(1, 100, None, "target")]  # weak: no renewal


class _Order:
    def __init__(self, id: int, side: int, price: float, cancel_at: float | None = None) -> None:
        self.id, self.side, self.price, self.cancel_at, self.remaining = id, side, price, cancel_at, 100.0


def test_passive_policy_joins_pulls_and_skews() -> None:
    pol = PassivePolicy(order_size=100, threshold=0.5, max_inventory=150)
    assert pol.decide(VIEW, FLAT, 0, []) == [Submit(1, 100, 100.00, "quote"), Submit(-1, 100, 100.01, "quote")]
    resting = [_Order(1, 1, 100.00), _Order(2, -1, 100.01)]
    assert pol.decide(VIEW, FLAT, 0, resting) == []  # already at the touch
    assert pol.decide(VIEW, DOWN, 0, resting) == [Cancel(1)]  # the bid would be picked off: pull it
    moved = MarketView(0.0, 0.0, 100.01, 100.02, 100, 100)
    assert pol.decide(moved, FLAT, 0, resting) == [Cancel(1), Submit(1, 100, 100.01, "quote"), Cancel(2),
                                                   Submit(-1, 100, 100.02, "quote")]
    assert pol.decide(VIEW, FLAT, 100, []) == [Submit(1, 50, 100.00, "quote"), Submit(-1, 100, 100.01, "quote")]
    skew = PassivePolicy(order_size=100, threshold=0.5, max_inventory=150, skew="skew")
    assert skew.decide(VIEW, UP, 0, [])[1] == Submit(-1, 100, 100.02, "quote")  # ask one tick behind
    assert pol.decide(VIEW, FLAT, 0, [_Order(3, 1, 99.99, cancel_at=1.0)]) == [Submit(-1, 100, 100.01, "quote")]


def test_make_policy_rejects_unknown_names() -> None:
    from hftpipe.config import TradingConfig

    assert make_policy("passive", TradingConfig(), 10).name == "passive"
    assert make_policy("threshold", TradingConfig(), 10).hold_events == 10
    with pytest.raises(ValueError, match="unknown policy 'x'; choose one of threshold, passive"):
        make_policy("x", TradingConfig(), 10)


def _trend_events() -> pd.DataFrame:
    # The mid steps up by one cent every second; every event is a new bid at the new best bid.
    rows = []
    for i in range(20):
        bid = 100.00 + 0.01 * i
        rows.append((float(i), NEW, i + 1, 100, bid, 1, round(bid + 0.01, 2), 100, bid, 100))
    return frame(rows)


def test_market_orders_pnl_fees_and_flatten() -> None:
    events = _trend_events()
    signals = np.tile(FLAT, (len(events), 1))
    signals[0] = UP
    pol = ThresholdPolicy(order_size=100, threshold=0.5, hold_events=5, max_inventory=100)
    res = run_backtest(events, signals, pol, loose_risk(), Latency(0.0, 0.0), Fees(-0.002, 0.003, 0.0),
                       markout_events=1, bootstrap=50, block_events=2)
    buy, sell = res.fills
    # Bought at the ask of event 0 (arrives before event 1), sold 5 events later at the bid of event 5.
    assert (buy.side, buy.price, sell.side, sell.price) == (1, 100.01, -1, 100.05)
    assert res.gross_pnl == pytest.approx(100 * (100.05 - 100.01))
    assert res.fees == pytest.approx(2 * 100 * 0.003) and res.rebates == 0
    assert res.net_pnl == pytest.approx(res.gross_pnl - res.fees)
    assert res.position[-1] == 0 and res.max_abs_inventory == 100 and res.fill_ratio == 1.0
    assert res.net_pnl_interval.point == pytest.approx(res.net_pnl)


def test_loss_breach_halts_within_one_event_and_cancels_resting() -> None:
    rows = [(0.0, NEW, 1, 100, 100.00, 1, 100.01, 100, 100.00, 100)]
    for i in range(1, 10):  # the price collapses one dollar per event
        bid = 100.00 - i
        rows.append((float(i), NEW, i + 1, 100, bid, 1, bid + 0.01, 100, bid, 100))
    events = frame(rows)
    signals = np.tile(UP, (len(events), 1))
    risk = loose_risk(max_daily_loss=150.0)
    pol = ThresholdPolicy(order_size=100, threshold=0.5, hold_events=100, max_inventory=100)
    res = run_backtest(events, signals, pol, risk, Latency(0.0, 0.0), Fees(0, 0, 0), bootstrap=10, block_events=2)
    (change,) = risk.drain_changes()
    # Bought 100 at 100.01 (arriving before event 1); at event 2 the mid is 98.005: loss 200 > 150 -> HALTED.
    assert change.state is RiskState.HALTED and change.time == 2.0
    assert res.risk_state == "HALTED" and res.n_orders == 2  # the buy, then the end-of-day close
    assert res.fills[-1].side == -1


def test_passive_fills_after_the_queue_ahead_trades() -> None:
    rows = [(0.0, NEW, 1, 300, 100.00, 1, 100.01, 100, 100.00, 300)]
    rows.append((1.0, EXECUTE, 1, 300, 100.00, 1, 100.01, 100, 100.00, 0))  # the 300 ahead trade: nothing for us
    rows.append((2.0, NEW, 2, 100, 100.00, 1, 100.01, 100, 100.00, 100))  # queues behind us
    rows.append((3.0, EXECUTE, 2, 60, 100.00, 1, 100.01, 100, 100.00, 40))  # we are ahead of it: 60 for us
    rows.append((4.0, NEW, 3, 5, 99.00, 1, 100.01, 100, 100.00, 40))
    events = frame(rows)
    signals = np.tile(FLAT, (len(events), 1))
    pol = PassivePolicy(order_size=100, threshold=0.5, max_inventory=100)
    res = run_backtest(events, signals, pol, loose_risk(), Latency(0.0, 0.0), Fees(-0.002, 0.003, 0.0),
                       bootstrap=10, block_events=2, flatten_at_end=False)
    maker = [f for f in res.fills if f.maker]
    assert [(f.side, f.qty, f.price, f.time) for f in maker] == [(1, 60, 100.00, 3.0)]
    assert res.rebates == pytest.approx(60 * 0.002) and res.position[-1] == 60


def test_signals_must_align_with_events() -> None:
    with pytest.raises(ValueError, match=r"shape \(20, 3\)"):
        run_backtest(_trend_events(), np.zeros((3, 3)), ThresholdPolicy(1, 0.5, 1, 1), loose_risk(), Latency(),
                     Fees())


def test_block_bootstrap_total_brackets_the_sum() -> None:
    x = np.random.default_rng(1).normal(0.1, 1.0, 5000)
    iv = block_bootstrap_total(x, 300, 50, seed=0)
    assert iv.point == pytest.approx(x.sum()) and iv.low < iv.point < iv.high


@pytest.mark.slow
def test_real_goog_slice_runs_both_policies_fast() -> None:
    from hftpipe.data import load_lobster

    table = load_lobster(ROOT / "data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip")
    events = table.frame.iloc[:30000].reset_index(drop=True)
    cls = np.random.default_rng(0).integers(0, 3, len(events))
    signals = np.eye(3)[cls]
    for pol in (ThresholdPolicy(100, 0.5, 10, 100), PassivePolicy(100, 0.5, 100)):
        res = run_backtest(events, signals, pol, loose_risk(), Latency(0.0005, 0.0005), Fees(), symbol="GOOG",
                           bootstrap=100)
        assert res.n_fills > 0 and res.position[-1] == 0 and res.elapsed_s < 10
        assert res.net_pnl == pytest.approx(res.gross_pnl - res.fees + res.rebates, abs=1e-6)
