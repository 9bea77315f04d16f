"""Queue-aware fill model on the canonical (LOBSTER) event stream: one model for backtest, paper trader, RL.

Our orders are virtual: the replayed market does not react to them, and they fill as they would
have, had they been in the book:

- **Latency.** An order (or a cancel) decided at local time ``now`` reaches the exchange at
  ``now + order_latency_s``. The strategy sees an event of exchange time ``t`` at ``t + feed_latency_s``,
  so a decision on event ``t`` reaches the exchange at ``t + feed_latency_s + order_latency_s`` and
  meets the book as it is THEN (:meth:`ExecutionModel.decision_time`). Fills are reported with the same
  feed latency, so at the decision for event ``t`` the strategy knows exactly the fills of exchange
  time ``<= t``: feeding fills back after each event is exact.
- **Market orders** walk the book at arrival, level by level (taker fee); what the visible book cannot
  fill is cancelled (a partial fill).
- **Limit orders** that cross take liquidity like a market order up to their price; the rest joins
  the queue at its price BEHIND the visible size there at arrival. The queue ahead shrinks as that
  size trades (type 4 executions at the price) or is cancelled (types 2 and 3); orders that arrive
  later (type 1 after our arrival) queue behind us, so their cancels do not move us. LOBSTER's order
  ids make this exact FIFO bookkeeping. Executed volume beyond the queue ahead fills our order
  (maker fee or rebate); so does an execution of an order that queued behind us, an execution at a
  price worse than ours (the aggressor would have met us first), or a new order on the other side at
  or through our price. The replay shows the real book, which never holds our orders, so liquidity
  we took is not removed from it (no market impact). Without order ids (e.g. a live L2 feed), a cancel at our price shrinks the
  queue ahead in proportion to its share of the level (hftbacktest's probabilistic queue models take
  the same view).
- **Fees**: per share (maker negative = rebate) plus basis points of the notional, per fill.

Prices are compared in integer ticks of 1/10000 dollar (LOBSTER's own price unit), never as floats.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PRICE_SCALE = 10_000  # LOBSTER prices are integers in 1/10000 dollar
NEW, PARTIAL_CANCEL, DELETE, EXECUTE, HIDDEN_EXECUTE = 1, 2, 3, 4, 5


def to_ticks(price: float) -> int:
    return round(price * PRICE_SCALE)


@dataclass(frozen=True)
class Fees:
    """Per-fill costs in dollars: ``per_share * qty + bps * notional``; negative maker fee = rebate."""

    maker_per_share: float = -0.002
    taker_per_share: float = 0.003
    bps: float = 0.0

    def fee(self, qty: float, price: float, maker: bool) -> float:
        per_share = self.maker_per_share if maker else self.taker_per_share
        return qty * per_share + qty * price * self.bps / 1e4


@dataclass(frozen=True)
class Latency:
    feed_s: float = 0.0  # exchange -> strategy (market data and fill reports)
    order_s: float = 0.0  # strategy -> exchange (orders and cancels)

    def __post_init__(self) -> None:
        if self.feed_s < 0 or self.order_s < 0:
            raise ValueError(f"latencies must be >= 0 s; got feed {self.feed_s}, order {self.order_s}")


class OrderStatus(str, enum.Enum):
    IN_FLIGHT = "in_flight"  # sent, not yet at the exchange
    RESTING = "resting"  # in the queue
    FILLED = "filled"
    CANCELLED = "cancelled"  # by us, or the unfilled rest of a market order


@dataclass
class SimOrder:
    """One of our orders as the exchange would hold it."""

    id: int
    symbol: str
    side: int  # +1 buy, -1 sell
    qty: float
    price: float | None  # None: market order
    sent_at: float  # local time of the decision
    arrives_at: float  # exchange time it reaches the book
    filled: float = 0.0
    status: OrderStatus = OrderStatus.IN_FLIGHT
    queue_ahead: float = 0.0  # visible shares ahead of us at our price
    cancel_at: float | None = None  # exchange time our cancel arrives
    tick: int = 0
    behind: set[int] = field(default_factory=set, repr=False)  # ids of orders that joined after us

    @property
    def remaining(self) -> float:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.IN_FLIGHT, OrderStatus.RESTING)


@dataclass(frozen=True, slots=True)
class Fill:
    """A (partial) execution of one of our orders."""

    order_id: int
    symbol: str
    time: float  # exchange time
    side: int
    qty: float
    price: float
    maker: bool
    fee: float


def _levels(book: Sequence[float], side: int) -> list[tuple[float, float]]:
    """(price, size) of one side of a LOBSTER-layout book row, best first; empty levels skipped."""
    offset = 0 if side < 0 else 2  # asks (sell side) first in each level's 4 values
    out = []
    for j in range(offset, len(book), 4):
        price, size = float(book[j]), float(book[j + 1])
        if not math.isnan(price) and size > 0:
            out.append((price, size))
    return out


def level_size(book: Sequence[float], side: int, tick: int) -> float:
    """Visible size at ``tick`` on one side (0 when that price is not among the book's levels)."""
    for price, size in _levels(book, side):
        if to_ticks(price) == tick:
            return size
    return 0.0


class ExecutionModel:
    """Simulated exchange side of our orders for one symbol, driven by the canonical event stream."""

    def __init__(self, symbol: str = "", fees: Fees | None = None, latency: Latency | None = None) -> None:
        self.symbol = symbol
        self.fees = fees or Fees()
        self.latency = latency or Latency()
        self.orders: dict[int, SimOrder] = {}
        self._open: list[SimOrder] = []
        self._book: Sequence[float] = ()
        self._next_id = 1
        self.submitted_qty = 0.0
        self.filled_qty = 0.0
        self.cancelled: list[SimOrder] = []  # orders closed with an unfilled rest (drained by the caller)

    def decision_time(self, event_time: float) -> float:
        """Local time at which the strategy sees an event of exchange time ``event_time``."""
        return event_time + self.latency.feed_s

    # -- orders from the strategy ----------------------------------------------------------------
    def submit(self, side: int, qty: float, price: float | None, now: float) -> SimOrder:
        """Send an order at local time ``now``; it reaches the book ``order_latency`` later."""
        if side not in (1, -1) or not qty > 0:
            raise ValueError(f"an order needs side +1/-1 and qty > 0; got side {side}, qty {qty}")
        order = SimOrder(id=self._next_id, symbol=self.symbol, side=side, qty=float(qty), price=price, sent_at=now,
                         arrives_at=now + self.latency.order_s, tick=0 if price is None else to_ticks(price))
        self._next_id += 1
        self.orders[order.id] = order
        self._open.append(order)
        self.submitted_qty += order.qty
        return order

    def cancel(self, order_id: int, now: float) -> None:
        """Ask to cancel at local time ``now``; fills before the cancel arrives still happen."""
        order = self.orders[order_id]
        if order.is_open and order.cancel_at is None:
            order.cancel_at = now + self.latency.order_s

    def open_orders(self) -> list[SimOrder]:
        return [o for o in self._open if o.is_open]

    # -- the market --------------------------------------------------------------------------------
    def _fill(self, order: SimOrder, qty: float, price: float, maker: bool, time: float, out: list[Fill]) -> None:
        qty = min(qty, order.remaining)
        if qty <= 0:
            return
        order.filled += qty
        self.filled_qty += qty
        if order.remaining <= 1e-9:
            order.status = OrderStatus.FILLED
        out.append(Fill(order.id, self.symbol, time, order.side, qty, price, maker, self.fees.fee(qty, price, maker)))

    def _arrive(self, order: SimOrder, out: list[Fill]) -> None:
        """The order reaches the book as it is now: take what crosses, queue the rest (limit orders)."""
        book = self._book
        for price, size in _levels(book, -order.side):
            if order.price is not None and order.side * (to_ticks(price) - order.tick) > 0:
                break  # beyond the limit price
            self._fill(order, size, price, False, order.arrives_at, out)
            if order.status is OrderStatus.FILLED:
                return
        if order.price is None:
            order.status = OrderStatus.CANCELLED  # the unfilled rest of a market order
            self.cancelled.append(order)
            return
        order.status = OrderStatus.RESTING
        order.queue_ahead = level_size(book, order.side, order.tick)

    def _due(self, time: float, out: list[Fill]) -> None:
        """Orders and cancels that reach the exchange strictly before an event at ``time``."""
        for order in self._open:
            if order.status is OrderStatus.IN_FLIGHT and order.arrives_at < time:
                if order.cancel_at is not None and order.cancel_at <= order.arrives_at:
                    order.status = OrderStatus.CANCELLED
                    self.cancelled.append(order)
                else:
                    self._arrive(order, out)
            if order.status is OrderStatus.RESTING and order.cancel_at is not None and order.cancel_at < time:
                order.status = OrderStatus.CANCELLED
                self.cancelled.append(order)

    def on_event(self, time: float, etype: int, order_id: int, size: float, price: float, direction: int,
                 book: Sequence[float]) -> list[Fill]:
        """Apply one market event (the book row is the book AFTER it); returns our fills it caused."""
        out: list[Fill] = []
        if not self._open:
            self._book = book
            return out
        self._due(time, out)
        tick = 0 if math.isnan(price) else to_ticks(price)
        for order in self._open:
            if order.status is not OrderStatus.RESTING:
                continue
            if etype in (EXECUTE, HIDDEN_EXECUTE) and direction == order.side:
                better = order.side * (order.tick - tick) > 0  # our price is better than the traded one
                if better:
                    self._fill(order, size, order.price, True, time, out)  # type: ignore[arg-type]
                elif etype == EXECUTE and tick == order.tick:
                    if order_id in order.behind:
                        self._fill(order, size, order.price, True, time, out)  # type: ignore[arg-type]
                    else:
                        excess = size - order.queue_ahead
                        order.queue_ahead = max(0.0, order.queue_ahead - size)
                        if excess > 0:
                            self._fill(order, excess, order.price, True, time, out)  # type: ignore[arg-type]
            elif tick == order.tick and direction == order.side:
                if etype == NEW:
                    order.behind.add(order_id)
                elif etype in (PARTIAL_CANCEL, DELETE):
                    if order_id > 0:
                        if order_id not in order.behind:
                            order.queue_ahead = max(0.0, order.queue_ahead - size)
                    else:  # no order ids: the cancel is ahead of us in proportion to the queue ahead
                        before = level_size(book, order.side, order.tick) + size
                        if before > 0:
                            order.queue_ahead = max(0.0, order.queue_ahead - size * order.queue_ahead / before)
            elif etype == NEW and direction == -order.side and order.side * (order.tick - tick) >= 0:
                # A new order on the other side at (or through) our price would have traded with us.
                self._fill(order, size, order.price, True, time, out)  # type: ignore[arg-type]
            if order.status is OrderStatus.RESTING and order.queue_ahead > 0:
                order.queue_ahead = min(order.queue_ahead, level_size(book, order.side, order.tick))
        self._book = book
        self._open = [o for o in self._open if o.is_open]
        return out

    def flush(self, time: float = math.inf) -> list[Fill]:
        """Deliver orders and cancels due before ``time`` against the last book (end of the replay)."""
        out: list[Fill] = []
        self._due(time, out)
        self._open = [o for o in self._open if o.is_open]
        return out

