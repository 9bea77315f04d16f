"""Pre-trade risk engine: one object for the backtest, the paper trader and the RL environment.

Pure and synchronous (no I/O, no clock of its own: every call takes the time ``now`` in seconds), so
a backtest replays it exactly and the live trader calls it before each order.

Trading state (global, like NautilusTrader's ``TradingState``):

- ``ACTIVE``: every order that passes the limits may go;
- ``REDUCING``: only orders that bring a symbol's position (plus its working orders) towards zero;
- ``HALTED``: no order at all; the caller cancels resting orders (:attr:`RiskEngine.state` says so).

Limits are per symbol (:class:`RiskLimits`; one default for symbols without their own): max position
(position plus working orders on the same side), max order size and notional, max order rate, a price
band around the mid, a stale-data guard on the book and on the model output, and max loss and max
drawdown per day. A loss or drawdown breach halts trading automatically; only a manual ``resume``
(with a reason and an actor) lifts it. Every denial carries a :class:`DenyReason` and a text and is
counted; every state change is kept as a :class:`StateChange` for the audit trail.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

BPS = 1e4


class RiskState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class DenyReason(str, enum.Enum):
    HALTED = "halted"
    REDUCE_ONLY = "reduce_only"
    INVALID_ORDER = "invalid_order"
    MAX_ORDER_SIZE = "max_order_size"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION = "max_position"
    MAX_ORDER_RATE = "max_order_rate"
    PRICE_BAND = "price_band"
    NO_MID = "no_mid"
    STALE_BOOK = "stale_book"
    STALE_SIGNAL = "stale_signal"


class HaltCause(str, enum.Enum):
    MANUAL = "manual"
    MAX_DAILY_LOSS = "max_daily_loss"
    MAX_DAILY_DRAWDOWN = "max_daily_drawdown"


@dataclass(frozen=True)
class RiskLimits:
    """Limits of one symbol; ``math.inf`` (or a non-positive rate) switches a limit off."""

    max_position: float = 100.0  # shares, |position + working orders on the order's side|
    max_order_size: float = 100.0  # shares per order
    max_order_notional: float = 100_000.0  # dollars per order (limit price, or the mid for a market order)
    max_orders: int = 50  # orders per rate window; <= 0: no rate limit
    rate_window_s: float = 1.0
    price_band_bps: float = 50.0  # a limit price further than this from the mid is refused
    max_daily_loss: float = 5_000.0  # dollars of the day's PnL below zero -> HALTED
    max_daily_drawdown: float = 7_500.0  # dollars below the day's peak PnL -> HALTED
    max_book_age_s: float = 5.0  # no order when the book is older than this
    max_signal_age_s: float = 5.0  # no order when the model output is older than this


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one pre-trade check."""

    allowed: bool
    reason: DenyReason | None = None
    text: str = ""


ALLOWED = Decision(True)


@dataclass(frozen=True)
class StateChange:
    """One transition of the trading state (manual or automatic)."""

    time: float
    previous: RiskState
    state: RiskState
    reason: str
    actor: str
    cause: HaltCause | None = None  # why a halt happened (manual or which limit)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "previous": self.previous.value, "state": self.state.value,
                "reason": self.reason, "actor": self.actor, "cause": self.cause.value if self.cause else None}


@dataclass
class SymbolBook:
    """What the engine keeps per symbol: position, working orders, cash and the day's PnL."""

    position: float = 0.0
    working_buy: float = 0.0  # shares in orders allowed but not yet filled or cancelled
    working_sell: float = 0.0
    cash: float = 0.0  # signed cash from fills, fees included
    mid: float = math.nan
    day_start_pnl: float = 0.0
    day_peak_pnl: float = 0.0
    orders: deque[float] = field(default_factory=deque)  # times of recent allowed orders

    def pnl(self) -> float:
        """Mark-to-mid PnL since inception (cash plus position at the last mid)."""
        mark = 0.0 if self.position == 0 or not math.isfinite(self.mid) else self.position * self.mid
        return self.cash + mark

    def day_pnl(self) -> float:
        return self.pnl() - self.day_start_pnl


class RiskEngine:
    """Pre-trade checks, positions and daily PnL per symbol, and the trading state."""

    def __init__(self, default: RiskLimits | None = None, per_symbol: dict[str, RiskLimits] | None = None,
                 state: RiskState = RiskState.ACTIVE) -> None:
        self.default = default or RiskLimits()
        self.per_symbol = dict(per_symbol or {})
        self.state = state
        self.books: dict[str, SymbolBook] = {}
        self.denials: Counter[DenyReason] = Counter()
        self.checks = 0
        self.changes: list[StateChange] = []
        self.halt_cause: HaltCause | None = None

    # -- configuration ---------------------------------------------------------------------------
    def limits(self, symbol: str) -> RiskLimits:
        return self.per_symbol.get(symbol, self.default)

    def set_limits(self, symbol: str | None, **changes: Any) -> RiskLimits:
        """Change limits of one symbol (None: the default); returns the new limits."""
        if symbol is None:
            self.default = replace(self.default, **changes)
            return self.default
        self.per_symbol[symbol] = replace(self.limits(symbol), **changes)
        return self.per_symbol[symbol]

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook()
        return book

    # -- the pre-trade check ---------------------------------------------------------------------
    def _deny(self, reason: DenyReason, text: str) -> Decision:
        self.denials[reason] += 1
        return Decision(False, reason, text)

    def check(self, symbol: str, side: int, qty: float, price: float | None, now: float,
              book_time: float | None = None, signal_time: float | None = None) -> Decision:
        """Check one order before it is sent; an allowed order counts as working until filled or cancelled.

        Args:
            symbol: the instrument.
            side: +1 buy, -1 sell.
            qty: shares (> 0).
            price: limit price, or None for a market order.
            now: the decision time in seconds (same clock as the two times below).
            book_time: time of the book the decision used (None: not checked).
            signal_time: time of the model output the decision used (None: not checked).
        """
        self.checks += 1
        lim = self.per_symbol.get(symbol, self.default)
        state = self.state
        if state is RiskState.HALTED:
            return self._deny(DenyReason.HALTED, f"trading is HALTED ({self.halt_cause.value if self.halt_cause else 'manual'})")
        if side not in (1, -1) or not qty > 0 or (price is not None and not price > 0):
            return self._deny(DenyReason.INVALID_ORDER, f"invalid order: side {side}, qty {qty}, price {price}")
        book = self.books.get(symbol)
        if book is None:
            book = self.book(symbol)
        if book_time is not None and now - book_time > lim.max_book_age_s:
            return self._deny(DenyReason.STALE_BOOK, f"book is {now - book_time:.3f} s old "
                                                      f"(limit {lim.max_book_age_s} s)")
        if signal_time is not None and now - signal_time > lim.max_signal_age_s:
            return self._deny(DenyReason.STALE_SIGNAL, f"model output is {now - signal_time:.3f} s old "
                                                        f"(limit {lim.max_signal_age_s} s)")
        if qty > lim.max_order_size:
            return self._deny(DenyReason.MAX_ORDER_SIZE, f"order of {qty:g} shares exceeds {lim.max_order_size:g}")
        mid = book.mid
        if math.isnan(mid):  # no book seen for this symbol yet
            return self._deny(DenyReason.NO_MID, f"no mid price known for {symbol}")
        notional = qty * (mid if price is None else price)
        if notional > lim.max_order_notional:
            return self._deny(DenyReason.MAX_ORDER_NOTIONAL,
                              f"order notional {notional:,.2f} exceeds {lim.max_order_notional:,.2f}")
        if price is not None and abs(price - mid) * BPS > lim.price_band_bps * mid:
            return self._deny(DenyReason.PRICE_BAND, f"price {price:.4f} is {abs(price / mid - 1) * BPS:.1f} bps "
                                                     f"from the mid {mid:.4f} (band {lim.price_band_bps:g} bps)")
        # Exposure if every working order on this side fills, then this one.
        if side > 0:
            exposure = book.position + book.working_buy + qty
        else:
            exposure = book.position - book.working_sell - qty
        if state is RiskState.REDUCING:
            current = book.position + (book.working_buy if side > 0 else -book.working_sell)
            if abs(exposure) >= abs(current) or exposure * current < 0:
                return self._deny(DenyReason.REDUCE_ONLY, f"trading is REDUCING: a {'buy' if side > 0 else 'sell'} "
                                                          f"of {qty:g} does not reduce the position {book.position:g}")
        if abs(exposure) > lim.max_position:
            return self._deny(DenyReason.MAX_POSITION, f"position would reach {exposure:g} "
                                                       f"(limit {lim.max_position:g})")
        if lim.max_orders > 0:
            recent = book.orders
            horizon = now - lim.rate_window_s
            while recent and recent[0] <= horizon:
                recent.popleft()
            if len(recent) >= lim.max_orders:
                return self._deny(DenyReason.MAX_ORDER_RATE, f"{len(recent)} orders in the last "
                                                             f"{lim.rate_window_s:g} s (limit {lim.max_orders})")
            recent.append(now)
        if side > 0:
            book.working_buy += qty
        else:
            book.working_sell += qty
        return ALLOWED

    # -- what happened to allowed orders ---------------------------------------------------------
    def on_fill(self, symbol: str, side: int, qty: float, price: float, fee: float = 0.0,
                now: float | None = None) -> RiskState:
        """Book a fill (fee > 0 is paid, < 0 a rebate); checks the daily loss limits at once."""
        book = self.book(symbol)
        if side > 0:
            book.working_buy = max(0.0, book.working_buy - qty)
        else:
            book.working_sell = max(0.0, book.working_sell - qty)
        book.position += side * qty
        book.cash -= side * qty * price + fee
        if book.mid != book.mid:
            book.mid = price
        return self._check_loss(symbol, book, now)

    def on_cancel(self, symbol: str, side: int, qty: float) -> None:
        """An allowed order was cancelled or refused downstream: its shares stop counting as working."""
        book = self.book(symbol)
        if side > 0:
            book.working_buy = max(0.0, book.working_buy - qty)
        else:
            book.working_sell = max(0.0, book.working_sell - qty)

    def on_mark(self, symbol: str, mid: float, now: float | None = None) -> RiskState:
        """New mid price: re-mark the position; a loss or drawdown breach halts trading."""
        book = self.books.get(symbol)
        if book is None:
            book = self.book(symbol)
        if not math.isnan(mid):
            book.mid = mid
        if book.position == 0.0:
            return self.state
        return self._check_loss(symbol, book, now)

    def _check_loss(self, symbol: str, book: SymbolBook, now: float | None) -> RiskState:
        lim = self.per_symbol.get(symbol, self.default)
        day = book.day_pnl()
        book.day_peak_pnl = max(book.day_peak_pnl, day)
        if self.state is RiskState.HALTED:
            return self.state
        if -day > lim.max_daily_loss:
            self._transition(RiskState.HALTED, f"{symbol}: daily loss {-day:,.2f} exceeds {lim.max_daily_loss:,.2f}",
                             "risk-engine", now, HaltCause.MAX_DAILY_LOSS)
        elif book.day_peak_pnl - day > lim.max_daily_drawdown:
            self._transition(RiskState.HALTED, f"{symbol}: daily drawdown {book.day_peak_pnl - day:,.2f} exceeds "
                             f"{lim.max_daily_drawdown:,.2f}", "risk-engine", now, HaltCause.MAX_DAILY_DRAWDOWN)
        return self.state

    def new_day(self) -> None:
        """Start a new trading day: daily PnL and peak restart from the current marks (state is kept)."""
        for book in self.books.values():
            book.day_start_pnl = book.pnl()
            book.day_peak_pnl = 0.0

    # -- manual control --------------------------------------------------------------------------
    def _transition(self, state: RiskState, reason: str, actor: str, now: float | None,
                    cause: HaltCause | None = None) -> StateChange:
        if not reason or not reason.strip():
            raise ValueError("a risk state change needs a reason")
        if not actor or not actor.strip():
            raise ValueError("a risk state change needs an actor")
        change = StateChange(time=0.0 if now is None else float(now), previous=self.state, state=state,
                             reason=reason, actor=actor, cause=cause)
        self.state = state
        self.halt_cause = cause if state is RiskState.HALTED else None
        self.changes.append(change)
        return change

    def halt(self, reason: str, actor: str, now: float | None = None) -> StateChange:
        """Kill switch: no more orders; the caller cancels resting orders."""
        return self._transition(RiskState.HALTED, reason, actor, now, HaltCause.MANUAL)

    def reduce(self, reason: str, actor: str, now: float | None = None) -> StateChange:
        """Only position-reducing orders from now on."""
        return self._transition(RiskState.REDUCING, reason, actor, now)

    def resume(self, reason: str, actor: str, now: float | None = None) -> StateChange:
        """Back to ACTIVE (also after an automatic halt: a person decides)."""
        return self._transition(RiskState.ACTIVE, reason, actor, now)

    def drain_changes(self) -> list[StateChange]:
        """State changes since the last call (for the audit trail and the bus)."""
        out, self.changes = self.changes, []
        return out

    def snapshot(self) -> dict[str, Any]:
        """State, denial counts and positions as plain data (status pages, JSON)."""
        return {
            "state": self.state.value,
            "halt_cause": self.halt_cause.value if self.halt_cause else None,
            "checks": self.checks,
            "denials": {reason.value: n for reason, n in sorted(self.denials.items(), key=lambda kv: kv[0].value)},
            "positions": {s: {"position": b.position, "working_buy": b.working_buy, "working_sell": b.working_sell,
                              "day_pnl": b.day_pnl(), "mid": b.mid} for s, b in sorted(self.books.items())},
        }


def limits_from_config(cfg: Any) -> RiskLimits:
    """:class:`RiskLimits` from the ``risk`` section of params.yaml (:class:`hftpipe.config.RiskConfig`)."""
    return RiskLimits(max_position=cfg.max_position, max_order_size=cfg.max_order_size,
                      max_order_notional=cfg.max_order_notional, max_orders=cfg.max_orders,
                      rate_window_s=cfg.rate_window_s, price_band_bps=cfg.price_band_bps,
                      max_daily_loss=cfg.max_daily_loss, max_daily_drawdown=cfg.max_daily_drawdown,
                      max_book_age_s=cfg.max_book_age_s, max_signal_age_s=cfg.max_signal_age_s)
