"""The paper trader's pure core: book updates and signals in, orders, fills, positions and PnL out.

Synchronous and free of I/O; the async service (:mod:`hftpipe.trading.paper`) wires it to the bus. Per book
update it runs the SAME steps, on the SAME objects, as one iteration of :func:`hftpipe.trading.backtest.run_backtest`
(backtest-live parity; a test feeds both the same events and signals and compares fills and PnL):

1. the execution model applies the market event to our resting orders (queue position, fills);
2. the risk engine books the fills and cancels and re-marks the position at the mid: a max-loss or drawdown
   breach moves it to HALTED here, within the event that caused it;
3. the risk control (``control``; live: the kill-switch store, see :class:`RiskControl`) persists automatic
   state changes and then brings the engine to the stored state, so ``hftpipe risk halt`` takes effect before
   the next order;
4. HALTED: resting orders are cancelled (once) and nothing is decided; otherwise the policy sees the book and
   the latest signal and its orders go through the pre-trade check to the execution model.

A policy that keeps state per event (the learned ``rl`` policy's feature windows) has an ``on_book(update)``
hook, called with every new book update before step 1 (halted or not), and ``on_gap()`` for a feed gap.

Signals: the decision on book ``seq`` N uses the newest signal with seq <= N received so far, held until a
newer one arrives (as the backtest holds a sampled signal stream forward); signals for books not yet seen wait.
Live, the signal of book N is computed after book N, so it usually acts from book N+1 on: the backtest with
signals delayed by one event. Clocks: the execution model and the risk engine run on exchange time (the
decision time is ``event_time + feed_latency``, as in the backtest); with ``wall_now`` given, the stale-data
guard also counts the wall-clock age of the book and the signal (a trader catching up on a backlog, or fed by
a dead feed, must not trade on it).

Book updates carry no exchange order ids (L2 feed), so each event gets a unique negative id: the execution
model then shrinks the queue ahead of a cancel in proportion, its documented rule for feeds without ids.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hftpipe.contracts import BookUpdate, Fill, Gap, Order, PositionUpdate, Signal
from hftpipe.trading.execution import ExecutionModel, Fees, Latency
from hftpipe.trading.policies import Cancel, MarketView, Policy
from hftpipe.trading.risk import Decision, RiskEngine, RiskState, StateChange

AUTO_ACTOR = "risk-engine"  # the actor of automatic state changes (RiskEngine._check_loss)
MAX_WAITING = 10_000  # signals kept per symbol for books not yet seen


class RiskControl(Protocol):
    """What the core asks before deciding: persist automatic changes, then adopt the stored state."""

    def sync(self, engine: RiskEngine, now: float, automatic: list[StateChange]) -> None: ...


@dataclass
class SymbolTrader:
    """Everything the core keeps for one symbol (pickled whole into the service's store)."""

    symbol: str
    venue: str
    execution: ExecutionModel
    policy: Policy
    position: float = 0.0
    fees: float = 0.0  # paid minus rebates
    n_fills: int = 0
    last_book_seq: int = 0
    last_signal_seq: int = 0  # newest signal received (used or waiting)
    probs: tuple[float, float, float] | None = None  # the signal in force
    probs_seq: int = 0
    signal_event_time: float | None = None
    signal_publish_time: float | None = None
    waiting: list[Signal] = field(default_factory=list)  # signals for books not yet seen, by seq
    halted_done: bool = False
    last_event_time: float = math.nan


@dataclass
class Step:
    """What one input produced (contract messages with ``publish_time`` 0: the adapter stamps it)."""

    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    position: PositionUpdate | None = None
    changes: list[StateChange] = field(default_factory=list)
    duplicate: bool = False


class PaperCore:
    """Policies, the risk engine and execution models for any number of symbols."""

    def __init__(self, make_policy: Callable[[], Policy], risk: RiskEngine, latency: Latency, fees: Fees,
                 control: RiskControl | None = None) -> None:
        self.make_policy = make_policy
        self.risk = risk
        self.latency = latency
        self.fees = fees
        self.control = control
        self.symbols: dict[str, SymbolTrader] = {}
        self.day: int | None = None  # exchange-time day number (UTC) of the last event

    # ---- state -------------------------------------------------------------------------------------------
    def trader(self, symbol: str, venue: str = "") -> SymbolTrader:
        st = self.symbols.get(symbol)
        if st is None:
            policy = self.make_policy()
            policy.reset()
            st = self.symbols[symbol] = SymbolTrader(symbol, venue, ExecutionModel(symbol, self.fees, self.latency),
                                                     policy)
        return st

    def snapshot(self) -> bytes:
        """Every symbol's state and the risk engine, for the service's store (restored by :meth:`restore`)."""
        return pickle.dumps((self.symbols, self.risk, self.day), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Back to a :meth:`snapshot` (the blob comes from this service's own store, never from the bus).

        A policy whose snapshot leaves out heavy parts (the rl policy's network) gets them back through its
        ``rebind(fresh)`` hook from a policy made now; the hook returns the policy to keep.
        """
        self.symbols, self.risk, self.day = pickle.loads(blob)  # our own file under HFTPIPE_HOME, never bus input
        for st in self.symbols.values():
            rebind = getattr(st.policy, "rebind", None)
            if rebind is not None:
                fresh = self.make_policy()
                fresh.reset()
                st.policy = rebind(fresh)

    def on_gap(self, gap: Gap) -> None:
        """The feed lost events of a symbol: a policy with per-event state (``on_gap`` hook) starts it over."""
        st = self.symbols.get(gap.symbol)
        hook = getattr(st.policy, "on_gap", None) if st is not None else None
        if hook is not None:
            hook()

    # ---- inputs ------------------------------------------------------------------------------------------
    def on_signal(self, signal: Signal) -> Step:
        """Take a signal into account for the next book update of its symbol (at or after its seq)."""
        st = self.trader(signal.symbol, signal.venue)
        if signal.seq <= st.last_signal_seq:
            return Step(duplicate=True)
        st.last_signal_seq = signal.seq
        st.waiting.append(signal)
        if len(st.waiting) > MAX_WAITING:  # signals far ahead of the books: keep the newest
            del st.waiting[:-MAX_WAITING]
        return Step()

    def _signal_for(self, st: SymbolTrader, seq: int) -> None:
        """Put in force the newest waiting signal with seq <= the book's seq."""
        if not st.waiting:
            return
        ready = [s for s in st.waiting if s.seq <= seq]
        if not ready:
            return
        st.waiting = [s for s in st.waiting if s.seq > seq]
        newest = ready[-1]  # signals arrive in seq order per symbol (one durable consumer)
        p = newest.probabilities
        st.probs = (float(p[0]), float(p[1]), float(p[2])) if len(p) == 3 else None
        st.probs_seq = newest.seq
        st.signal_event_time = newest.event_time
        st.signal_publish_time = newest.publish_time

    def on_book(self, update: BookUpdate, wall_now: float | None = None) -> Step:
        """Apply one book update: fills, marks, risk state, then the policy's orders through the risk check."""
        st = self.trader(update.symbol, update.venue)
        if update.seq <= st.last_book_seq:
            return Step(duplicate=True)
        st.last_book_seq = update.seq
        on_book = getattr(st.policy, "on_book", None)
        if on_book is not None:  # a policy with its own state per event (rl): every update, halted or not
            on_book(update)
        step = Step()
        risk, ex, symbol = self.risk, st.execution, st.symbol
        t = update.event_time
        st.last_event_time = t
        day = int(t // 86400)
        if self.day is not None and day > self.day:  # a new trading day: daily loss and drawdown restart
            self.risk.new_day()
        self.day = day if self.day is None else max(self.day, day)
        book = update.book
        price = update.price if update.price else math.nan
        for f in ex.on_event(t, update.event_type, -update.seq, update.size, price, update.direction, book):
            st.position += f.side * f.qty
            st.fees += f.fee
            st.n_fills += 1
            risk.on_fill(symbol, f.side, f.qty, f.price, f.fee, now=t)
            step.fills.append(Fill(symbol=symbol, venue=st.venue, fill_id=st.n_fills, order_id=f.order_id,
                                   side=f.side, qty=f.qty, price=f.price, fee=f.fee, maker=f.maker, seq=update.seq,
                                   event_time=f.time, publish_time=0.0))
        if ex.cancelled:
            for o in ex.cancelled:
                risk.on_cancel(symbol, o.side, o.remaining)
            ex.cancelled.clear()
        ask, ask_size, bid, bid_size = book[0], book[1], book[2], book[3]
        risk.on_mark(symbol, (bid + ask) / 2.0, now=t)  # NaN (an empty side) keeps the last mid
        now = t + self.latency.feed_s
        automatic = risk.drain_changes()
        step.changes.extend(automatic)
        if self.control is not None:
            self.control.sync(risk, now, automatic)
            step.changes.extend(risk.drain_changes())
        self._signal_for(st, update.seq)
        if risk.state is RiskState.HALTED:
            if not st.halted_done:  # kill switch or loss limit: pull everything resting, once
                for o in ex.open_orders():
                    ex.cancel(o.id, now)
                    step.orders.append(self._order(st, update, "cancel", o.id, o.side, o.remaining, o.price,
                                                   reason="halted"))
                st.halted_done = True
        else:
            st.halted_done = False
            self._decide(st, update, now, wall_now, step, bid, ask, bid_size, ask_size)
        if len(ex.orders) > 64 + 2 * len(ex.open_orders()):  # closed orders are never looked up again
            ex.orders = {o.id: o for o in ex.open_orders()}
        step.position = self.position(st, update)
        return step

    def _decide(self, st: SymbolTrader, update: BookUpdate, now: float, wall_now: float | None, step: Step,
                bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        t = update.event_time
        ex = st.execution
        view = MarketView(now, t, bid, ask, bid_size, ask_size)
        # Stale-data guard, in the risk engine: the age it sees is the larger of the exchange-time age and,
        # live, the wall-clock age since the feed (and the signal service) published.
        book_time = t
        signal_time = st.signal_event_time
        if wall_now is not None:
            book_time = min(book_time, now - (wall_now - update.publish_time))
            if signal_time is not None and st.signal_publish_time is not None:
                signal_time = min(signal_time, now - (wall_now - st.signal_publish_time))
        for action in st.policy.decide(view, st.probs, st.position, ex.open_orders()):
            if isinstance(action, Cancel):
                ex.cancel(action.order_id, now)
                o = ex.orders[action.order_id]
                step.orders.append(self._order(st, update, "cancel", o.id, o.side, o.remaining, o.price,
                                               reason="policy"))
                continue
            decision: Decision = self.risk.check(st.symbol, action.side, action.qty, action.price, now,
                                                 book_time=book_time,
                                                 signal_time=signal_time if st.probs is not None else None)
            if decision.allowed:
                order = ex.submit(action.side, action.qty, action.price, now)
                step.orders.append(self._order(st, update, "accepted", order.id, order.side, order.qty, order.price))
            else:
                step.orders.append(self._order(st, update, "denied", 0, action.side, action.qty, action.price,
                                               reason=decision.reason.value if decision.reason else "",
                                               text=decision.text))

    def _order(self, st: SymbolTrader, update: BookUpdate, status: str, order_id: int, side: int, qty: float,
               price: float | None, reason: str = "", text: str = "") -> Order:
        return Order(symbol=st.symbol, venue=st.venue, status=status, order_id=order_id, side=side, qty=float(qty),
                     price=price, seq=update.seq, event_time=update.event_time, publish_time=0.0,
                     policy=st.policy.name, signal_seq=st.probs_seq, reason=reason, text=text)

    def position(self, st: SymbolTrader, update: BookUpdate | None = None) -> PositionUpdate:
        rb = self.risk.book(st.symbol)
        return PositionUpdate(symbol=st.symbol, venue=st.venue, seq=st.last_book_seq,
                              event_time=st.last_event_time if update is None else update.event_time,
                              position=st.position, cash=rb.cash, mid=rb.mid, pnl=rb.pnl(), day_pnl=rb.day_pnl(),
                              fees=st.fees, open_orders=len(st.execution.open_orders()), fills=st.n_fills,
                              risk_state=self.risk.state.value, publish_time=0.0)
