"""Backtest on hand-made price paths with PnL worked out by hand (spread, fees and latency included)."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.evaluation.backtest import backtest, target_position

# Best bid per event; the ask is always one dollar above (spread 1, half-spread 0.5).
BID = np.array([99.0, 99.0, 100.0, 101.0, 102.0, 102.0, 101.0, 100.0, 99.0, 99.0])
ASK = BID + 1.0


def test_long_then_short_with_latency_one() -> None:
    # "up" at t=0 -> long executed at t=1 (buy at ask 100), held k=3 events -> sold at t=4 (bid 102): +2.
    # "down" at t=5 -> short at t=6 (sell at bid 101), bought back at t=9 (ask 100): +1.
    signal = np.array([2, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    r = backtest(signal, BID, ASK, horizon=3, fees_bps=0.0, latency=1, sharpe_buckets=5)
    assert r.position.tolist() == [0, 1, 1, 1, 0, 0, -1, -1, -1, 0]
    assert r.n_trades == 2
    assert r.net_pnl == pytest.approx(3.0)
    assert r.gross_pnl == pytest.approx((102.5 - 99.5) + (101.5 - 99.5))  # mid to mid
    assert r.spread_cost == pytest.approx(4 * 0.5)  # four fills, half a spread each
    assert r.fee_cost == 0.0
    assert r.hit_rate == 1.0
    assert r.pnl_per_trade == pytest.approx(1.5)
    assert r.net_pnl_bps == pytest.approx(2 / 99.5 * 1e4 + 1 / 101.5 * 1e4)
    assert r.shares_traded == 4.0 and r.turnover == pytest.approx(0.4)
    assert r.equity_net[-1] == pytest.approx(r.net_pnl)
    assert r.equity_gross[-1] == pytest.approx(r.gross_pnl)


def test_fees_are_charged_per_side_on_the_traded_price() -> None:
    signal = np.array([2, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    r = backtest(signal, BID, ASK, horizon=3, fees_bps=10.0, latency=1)
    fees = 10e-4 * (100 + 102 + 101 + 100)
    assert r.fee_cost == pytest.approx(fees)
    assert r.net_pnl == pytest.approx(3.0 - fees)
    assert r.net_pnl == pytest.approx(r.gross_pnl - r.spread_cost - r.fee_cost)


def test_latency_shifts_the_fills() -> None:
    signal = np.array([2, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    r0 = backtest(signal, BID, ASK, horizon=3, latency=0)
    r2 = backtest(signal, BID, ASK, horizon=3, latency=2)
    assert r0.net_pnl == pytest.approx(101.0 - 100.0)  # buy ask[0]=100, sell bid[3]=101
    assert r2.net_pnl == pytest.approx(102.0 - 101.0)  # buy ask[2]=101, sell bid[5]=102


def test_an_opposite_signal_flips_the_position() -> None:
    # up at 0 (long from t=1 at ask 100); down at 3 flips at t=4: sell 2 at bid 102, i.e. close the long
    # (+2) and open a short at 102 held until t=7 (buy back at ask 101: +1).
    signal = np.array([2, 1, 1, 0, 1, 1, 1, 1, 1, 1])
    r = backtest(signal, BID, ASK, horizon=3, latency=1)
    assert r.position.tolist() == [0, 1, 1, 1, -1, -1, -1, 0, 0, 0]
    assert r.n_trades == 2
    assert r.shares_traded == 4.0
    assert r.net_pnl == pytest.approx(2.0 + 1.0)


def test_a_repeated_signal_extends_the_hold_and_an_open_position_is_closed_at_the_end() -> None:
    signal = np.array([2, 1, 2, 1, 1, 2, 1, 1, 1, 1])
    assert target_position(signal, 3).tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    r = backtest(signal, BID, ASK, horizon=3, latency=1)
    assert r.n_trades == 1  # one long from t=1 to t=9, never re-paying the spread
    assert r.net_pnl == pytest.approx(99.0 - 100.0)
    assert r.hit_rate == 0.0
    late = backtest(np.array([1] * 7 + [2, 1, 1]), BID, ASK, horizon=5, latency=1)
    assert late.n_trades == 1 and late.net_pnl == pytest.approx(-1.0)  # bought at ask[8]=100, closed at bid[9]=99


def test_stationary_signal_never_trades() -> None:
    r = backtest(np.ones(10, dtype=int), BID, ASK, horizon=3)
    assert (r.n_trades, r.net_pnl, r.sharpe, r.hit_rate) == (0, 0.0, 0.0, 0.0)


def test_missing_quotes_carry_the_last_one() -> None:
    bid = BID.copy()
    bid[4] = np.nan  # an empty best bid at the exit: the last known bid (101) is used
    r = backtest(np.array([2, 1, 1, 1, 1, 0, 1, 1, 1, 1]), bid, ASK, horizon=3, latency=1)
    assert r.net_pnl == pytest.approx(1.0 + 1.0)


def test_sharpe_uses_time_buckets() -> None:
    rng = np.random.default_rng(0)
    bid = 100 + np.cumsum(rng.normal(0, 0.05, 2000))
    signal = rng.integers(0, 3, 2000)
    r = backtest(signal, bid, bid + 0.02, horizon=10, sharpe_buckets=20, time=np.linspace(0, 100, 2000))
    assert r.n_buckets == 20
    buckets = np.diff(np.concatenate([[0.0], r.equity_net[np.linspace(0, 2000, 21).astype(int)[1:] - 1]]))
    assert r.sharpe == pytest.approx(buckets.mean() / buckets.std(ddof=1))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"latency": -1}, "latency must be >= 0"),
    ({"fees_bps": -1.0}, "fees_bps must be >= 0"),
    ({"horizon": 0}, "horizon must be >= 1"),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    args = {"horizon": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        backtest(np.ones(10, dtype=int), BID, ASK, **args)
