"""Risk engine: every limit, every state, manual control and automatic halts."""

from __future__ import annotations

import math

import pytest

from hftpipe.trading.risk import DenyReason, HaltCause, RiskEngine, RiskLimits, RiskState

SYM = "GOOG"
OFF = {"max_orders": 0, "max_daily_loss": math.inf, "max_daily_drawdown": math.inf}


def engine(**limits: float) -> RiskEngine:
    base = {"max_position": 100.0, "max_order_size": 100.0, "max_order_notional": 1e9, "price_band_bps": 50.0,
            "max_book_age_s": 1.0, "max_signal_age_s": 1.0, **OFF}
    base.update(limits)
    eng = RiskEngine(RiskLimits(**base))
    eng.on_mark(SYM, 100.0, 0.0)
    return eng


def test_allows_a_plain_order_and_counts_it_as_working() -> None:
    eng = engine()
    d = eng.check(SYM, 1, 10, 100.0, now=0.0)
    assert d.allowed and d.reason is None
    assert eng.book(SYM).working_buy == 10 and eng.checks == 1 and not eng.denials


@pytest.mark.parametrize("side, qty, price", [(0, 10, 100.0), (1, 0, 100.0), (1, -5, None), (1, 10, -1.0)])
def test_invalid_orders_are_denied(side: int, qty: float, price: float | None) -> None:
    d = engine().check(SYM, side, qty, price, now=0.0)
    assert not d.allowed and d.reason is DenyReason.INVALID_ORDER


def test_max_order_size() -> None:
    eng = engine(max_order_size=50)
    d = eng.check(SYM, 1, 51, None, now=0.0)
    assert d.reason is DenyReason.MAX_ORDER_SIZE and "51 shares exceeds 50" in d.text
    assert eng.check(SYM, 1, 50, None, now=0.0).allowed
    assert eng.denials[DenyReason.MAX_ORDER_SIZE] == 1


def test_max_order_notional_uses_limit_price_or_mid() -> None:
    eng = engine(max_order_notional=5_000.0)
    assert eng.check(SYM, 1, 50, None, now=0.0).allowed  # 50 x mid 100 = 5000
    d = eng.check(SYM, -1, 51, 100.0, now=0.0)
    assert d.reason is DenyReason.MAX_ORDER_NOTIONAL and "5,100.00" in d.text


def test_max_position_counts_position_and_working_orders_on_the_same_side() -> None:
    eng = engine(max_position=100)
    assert eng.check(SYM, 1, 60, 100.0, now=0.0).allowed
    eng.on_fill(SYM, 1, 60, 100.0)
    assert eng.check(SYM, 1, 30, 100.0, now=0.0).allowed  # 60 held + 30 working
    d = eng.check(SYM, 1, 20, 100.0, now=0.0)  # would reach 110
    assert d.reason is DenyReason.MAX_POSITION and "110" in d.text
    assert eng.check(SYM, -1, 100, 100.0, now=0.0).allowed  # selling goes towards -40: fine
    eng.on_cancel(SYM, 1, 30)
    assert eng.check(SYM, 1, 40, 100.0, now=0.0).allowed


def test_max_order_rate_is_a_sliding_window() -> None:
    eng = engine(max_orders=3, rate_window_s=1.0, max_position=1e9)
    for t in (0.0, 0.1, 0.2):
        assert eng.check(SYM, 1, 1, None, now=t).allowed
    d = eng.check(SYM, 1, 1, None, now=0.5)
    assert d.reason is DenyReason.MAX_ORDER_RATE and "3 orders in the last 1 s" in d.text
    assert eng.check(SYM, 1, 1, None, now=1.05).allowed  # the order at 0.0 left the window


def test_price_band_around_the_mid() -> None:
    eng = engine(price_band_bps=50.0)
    assert eng.check(SYM, 1, 1, 100.5, now=0.0).allowed  # exactly 50 bps
    d = eng.check(SYM, 1, 1, 100.51, now=0.0)
    assert d.reason is DenyReason.PRICE_BAND and "band 50 bps" in d.text
    assert eng.check(SYM, -1, 1, 99.4, now=0.0).reason is DenyReason.PRICE_BAND


def test_no_mid_no_order() -> None:
    eng = RiskEngine(RiskLimits(**OFF))
    assert eng.check("AAPL", 1, 1, None, now=0.0).reason is DenyReason.NO_MID


@pytest.mark.parametrize("field, reason", [("book_time", DenyReason.STALE_BOOK),
                                           ("signal_time", DenyReason.STALE_SIGNAL)])
def test_stale_data_guard(field: str, reason: DenyReason) -> None:
    eng = engine(max_book_age_s=1.0, max_signal_age_s=1.0)
    assert eng.check(SYM, 1, 1, None, now=10.0, **{field: 9.0}).allowed  # exactly 1 s old
    d = eng.check(SYM, 1, 1, None, now=10.0, **{field: 8.9})
    assert d.reason is reason and "limit 1.0 s" in d.text


def test_halted_denies_everything_until_a_manual_resume() -> None:
    eng = engine()
    change = eng.halt("desk says stop", actor="alice", now=5.0)
    assert change.previous is RiskState.ACTIVE and change.state is RiskState.HALTED and change.cause is HaltCause.MANUAL
    d = eng.check(SYM, 1, 1, None, now=6.0)
    assert d.reason is DenyReason.HALTED and "HALTED (manual)" in d.text
    eng.resume("checked", actor="bob", now=7.0)
    assert eng.check(SYM, 1, 1, None, now=8.0).allowed
    assert [c.state for c in eng.drain_changes()] == [RiskState.HALTED, RiskState.ACTIVE]
    assert eng.drain_changes() == []


def test_reducing_allows_only_orders_towards_flat() -> None:
    eng = engine()
    eng.on_fill(SYM, 1, 50, 100.0)
    eng.reduce("end of day", actor="alice")
    assert eng.check(SYM, 1, 1, None, now=0.0).reason is DenyReason.REDUCE_ONLY
    assert eng.check(SYM, -1, 60, None, now=0.0).reason is DenyReason.REDUCE_ONLY  # would flip to short
    assert eng.check(SYM, -1, 30, None, now=0.0).allowed
    assert eng.check(SYM, -1, 20, None, now=0.0).allowed  # 30 + 20 working: flat if both fill
    assert eng.check(SYM, -1, 1, None, now=0.0).reason is DenyReason.REDUCE_ONLY
    flat = engine()
    flat.reduce("flat book", actor="alice")
    assert flat.check(SYM, -1, 1, None, now=0.0).reason is DenyReason.REDUCE_ONLY


def test_daily_loss_breach_halts_automatically_on_the_mark() -> None:
    eng = engine(max_daily_loss=1_000.0)
    eng.on_fill(SYM, 1, 100, 100.0)
    assert eng.on_mark(SYM, 90.01, now=1.0) is RiskState.ACTIVE  # -999
    assert eng.on_mark(SYM, 89.99, now=2.0) is RiskState.HALTED  # -1001
    (change,) = eng.drain_changes()
    assert change.cause is HaltCause.MAX_DAILY_LOSS and change.actor == "risk-engine" and "1,001.00" in change.reason
    assert eng.check(SYM, -1, 100, None, now=3.0).reason is DenyReason.HALTED
    assert eng.snapshot()["halt_cause"] == "max_daily_loss"


def test_daily_loss_counts_fees_and_checks_on_fill() -> None:
    eng = engine(max_daily_loss=10.0)
    assert eng.on_fill(SYM, 1, 10, 100.0, fee=10.5) is RiskState.HALTED


def test_daily_drawdown_from_the_peak_halts() -> None:
    eng = engine(max_daily_drawdown=500.0, max_daily_loss=math.inf)
    eng.on_fill(SYM, 1, 100, 100.0)
    eng.on_mark(SYM, 110.0)  # +1000 peak
    assert eng.on_mark(SYM, 105.01) is RiskState.ACTIVE  # 499 below the peak
    assert eng.on_mark(SYM, 104.99) is RiskState.HALTED
    assert eng.halt_cause is HaltCause.MAX_DAILY_DRAWDOWN


def test_new_day_restarts_the_daily_pnl() -> None:
    eng = engine(max_daily_loss=1_000.0)
    eng.on_fill(SYM, 1, 100, 100.0)
    eng.on_mark(SYM, 95.0)  # -500 today
    eng.new_day()
    assert eng.on_mark(SYM, 89.0) is RiskState.ACTIVE  # -600 on the new day, -1100 overall
    assert eng.on_mark(SYM, 84.9) is RiskState.HALTED


def test_per_symbol_limits_override_the_default() -> None:
    eng = engine(max_order_size=100)
    eng.set_limits("AAPL", max_order_size=5)
    eng.on_mark("AAPL", 50.0)
    assert eng.check("AAPL", 1, 6, None, now=0.0).reason is DenyReason.MAX_ORDER_SIZE
    assert eng.check(SYM, 1, 6, None, now=0.0).allowed


def test_state_change_needs_reason_and_actor() -> None:
    eng = engine()
    with pytest.raises(ValueError, match="reason"):
        eng.halt(" ", actor="alice")
    with pytest.raises(ValueError, match="actor"):
        eng.halt("why", actor="")


def test_every_denial_is_counted_by_reason() -> None:
    eng = engine(max_order_size=10)
    eng.check(SYM, 1, 11, None, now=0.0)
    eng.check(SYM, 1, 12, None, now=0.0)
    eng.halt("stop", actor="a")
    eng.check(SYM, 1, 1, None, now=0.0)
    snap = eng.snapshot()
    assert snap["denials"] == {"halted": 1, "max_order_size": 2} and snap["checks"] == 3
