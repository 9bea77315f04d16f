"""Which trades each signal caused: the paper trader's orders and fills attributed to signals (pure, no I/O).

Attribution: an accepted order carries ``signal_seq``, the seq of the signal the decision used; a fill carries
the ``order_id`` of its order. So a fill belongs to the signal of its order. Orders and fills come on two
streams (``ord.<symbol>``, ``fill.<symbol>``): a fill whose order has not arrived yet waits for it.

Idempotence: orders are keyed by ``order_id`` (per symbol), fills by ``fill_id`` (per symbol, contiguous): a
redelivered order or fill changes nothing.

Timing rule (no bounded wait, no look-ahead): an outcome is published as soon as its k events have passed
(:class:`~hftpipe.monitoring.outcomes.OutcomeJoiner`); it carries the trades of its signal that the monitor
had applied by then (:meth:`TradeLedger.summary`). Trades that arrive later are not lost: every attributed
order and fill is also a row of the feedback data set (tables ``orders`` and ``fills``, keyed by id), and
:func:`hftpipe.monitoring.feedback_store.read_outcomes` recomputes each outcome's trade columns from them, so
the data set's figures are complete whatever the arrival order. The markout marks every fill of the signal to
``outcome_mid`` (the mid k events after the signal): a fill after that point is marked to an earlier mid,
never to a later one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from hftpipe.contracts import Fill, Order

MAX_ORDERS = 5000  # order_id -> signal_seq kept per symbol (fills of older orders are not attributed)
MAX_WAITING_FILLS = 5000  # fills per symbol kept while their order has not arrived
MAX_SIGNALS = 5000  # per-signal summaries kept per symbol (newest); older ones are in the data set


@dataclass
class TradeSummary:
    """The trades of one signal."""

    orders: int = 0
    fills: int = 0
    filled_qty: float = 0.0
    net_qty: float = 0.0
    notional: float = 0.0  # sum of qty x price
    signed_notional: float = 0.0  # sum of side x qty x price
    fees: float = 0.0

    def add_fill(self, side: int, qty: float, price: float, fee: float) -> None:
        self.fills += 1
        self.filled_qty += qty
        self.net_qty += side * qty
        self.notional += qty * price
        self.signed_notional += side * qty * price
        self.fees += fee

    def fields(self, mid: float) -> dict[str, Any]:
        """The Outcome's trade fields, the fills marked to ``mid`` (no markout without a finite mid)."""
        marked = self.fills > 0 and math.isfinite(mid) and mid > 0
        markout = self.net_qty * mid - self.signed_notional - self.fees if marked else 0.0
        return {"orders": self.orders, "fills": self.fills, "filled_qty": self.filled_qty, "net_qty": self.net_qty,
                "avg_price": self.notional / self.filled_qty if self.filled_qty else 0.0, "fees": self.fees,
                "markout_pnl": markout}


@dataclass
class _SymbolTrades:
    last_fill_id: int = 0
    orders: OrderedDict = field(default_factory=OrderedDict)  # order_id -> signal_seq
    waiting: dict = field(default_factory=dict)  # order_id -> [Fill] whose order has not arrived
    signals: OrderedDict = field(default_factory=OrderedDict)  # signal_seq -> TradeSummary


@dataclass
class TradeStats:
    orders: int = 0
    fills: int = 0
    duplicates: int = 0
    unattributed: int = 0  # fills of orders placed without a signal, or forgotten


class TradeLedger:
    """Orders and fills in, per-signal trade summaries and attributed rows out."""

    def __init__(self) -> None:
        self.symbols: dict[str, _SymbolTrades] = {}
        self.stats = TradeStats()

    def _state(self, symbol: str) -> _SymbolTrades:
        return self.symbols.setdefault(symbol, _SymbolTrades())

    def _summary(self, st: _SymbolTrades, signal_seq: int) -> TradeSummary:
        summary = st.signals.get(signal_seq)
        if summary is None:
            summary = st.signals[signal_seq] = TradeSummary()
            while len(st.signals) > MAX_SIGNALS:
                st.signals.popitem(last=False)
        return summary

    def on_order(self, order: Order) -> list[tuple[str, dict[str, Any]]]:
        """Apply one order decision; returns the data-set rows it makes: ``("orders", row)`` for a new accepted
        order, then ``("fills", row)`` for fills that were waiting for it. Denials and cancels trade nothing."""
        if order.status != "accepted" or order.order_id <= 0:
            return []
        st = self._state(order.symbol)
        if order.order_id in st.orders:
            self.stats.duplicates += 1
            return []
        st.orders[order.order_id] = order.signal_seq
        while len(st.orders) > MAX_ORDERS:
            st.orders.popitem(last=False)
        self.stats.orders += 1
        rows: list[tuple[str, dict[str, Any]]] = [("orders", order_row(order))]
        if order.signal_seq > 0:
            self._summary(st, order.signal_seq).orders += 1
        for fill in st.waiting.pop(order.order_id, []):
            rows += self._attribute(st, fill, order.signal_seq)
        return rows

    def on_fill(self, fill: Fill) -> list[tuple[str, dict[str, Any]]]:
        """Apply one fill; returns ``[("fills", row)]`` once its order is known (else it waits, no row yet)."""
        st = self._state(fill.symbol)
        if fill.fill_id <= st.last_fill_id:
            self.stats.duplicates += 1
            return []
        st.last_fill_id = fill.fill_id
        self.stats.fills += 1
        signal_seq = st.orders.get(fill.order_id)
        if signal_seq is None:
            if sum(len(v) for v in st.waiting.values()) >= MAX_WAITING_FILLS:
                self.stats.unattributed += 1
                return [("fills", fill_row(fill, 0))]
            st.waiting.setdefault(fill.order_id, []).append(fill)
            return []
        return self._attribute(st, fill, signal_seq)

    def _attribute(self, st: _SymbolTrades, fill: Fill, signal_seq: int) -> list[tuple[str, dict[str, Any]]]:
        if signal_seq > 0:
            self._summary(st, signal_seq).add_fill(fill.side, fill.qty, fill.price, fill.fee)
        else:
            self.stats.unattributed += 1
        return [("fills", fill_row(fill, signal_seq))]

    def summary(self, symbol: str, signal_seq: int) -> TradeSummary:
        """The trades of one signal applied so far (empty when none)."""
        st = self.symbols.get(symbol)
        found = st.signals.get(signal_seq) if st is not None else None
        return found if found is not None else TradeSummary()

    # ---- persistence across restarts (stored with the batch, like the joiner's state) -------------------
    def state_of(self, symbol: str) -> dict[str, Any]:
        st = self._state(symbol)
        return {"last_fill_id": st.last_fill_id, "orders": [[k, v] for k, v in st.orders.items()],
                "waiting": [fill_row(f, 0) for fs in st.waiting.values() for f in fs],
                "signals": [[k, asdict(v)] for k, v in st.signals.items()]}

    def restore(self, symbol: str, snap: dict[str, Any]) -> None:
        st = self.symbols[symbol] = _SymbolTrades(last_fill_id=int(snap["last_fill_id"]))
        st.orders.update((int(k), int(v)) for k, v in snap["orders"])
        for row in snap["waiting"]:
            fill = Fill(symbol=symbol, venue=row["venue"], fill_id=row["fill_id"], order_id=row["order_id"],
                        side=row["side"], qty=row["qty"], price=row["price"], fee=row["fee"], maker=row["maker"],
                        seq=row["book_seq"], event_time=row["event_time"], publish_time=row["publish_time"])
            st.waiting.setdefault(fill.order_id, []).append(fill)
        st.signals.update((int(k), TradeSummary(**v)) for k, v in snap["signals"])


def order_row(o: Order) -> dict[str, Any]:
    """A row of the ``orders`` table; ``seq`` is the order id (the table's key), ``book_seq`` the decision's book."""
    return {"symbol": o.symbol, "venue": o.venue, "seq": o.order_id, "order_id": o.order_id,
            "signal_seq": o.signal_seq, "book_seq": o.seq, "event_time": o.event_time, "side": o.side, "qty": o.qty,
            "price": o.price, "policy": o.policy, "publish_time": o.publish_time}


def fill_row(f: Fill, signal_seq: int) -> dict[str, Any]:
    """A row of the ``fills`` table; ``seq`` is the fill id (the table's key), ``signal_seq`` 0: unattributed."""
    return {"symbol": f.symbol, "venue": f.venue, "seq": f.fill_id, "fill_id": f.fill_id, "order_id": f.order_id,
            "signal_seq": signal_seq, "book_seq": f.seq, "event_time": f.event_time, "side": f.side, "qty": f.qty,
            "price": f.price, "fee": f.fee, "maker": f.maker, "publish_time": f.publish_time}
