"""The trading page: the paper trader's positions, PnL, orders, fills, denials and the risk state, live.

Like the stream page (:mod:`hftpipe.ui.stream`): one :class:`TradingHub` per UI process (a
:class:`~hftpipe.ui.bus_hub.BusHub`) holds one NATS connection (core subscriptions on ``ord.>``, ``fill.>`` and
``pos.>``) and fans each message out to every browser as server-sent events. The hub keeps what a browser opening the page needs at once: the newest
position per symbol, the last orders and fills, and denial counts by reason since the UI started. The trading
state itself (ACTIVE / REDUCING / HALTED, who set it and why) comes from the kill-switch store that
``hftpipe risk`` and the paper trader share; it is sent on connect and whenever it changes.
"""

from __future__ import annotations

import math
import queue
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, render_template

from hftpipe.config import Config
from hftpipe.contracts import Fill, Order, PositionUpdate
from hftpipe.ui.bus_hub import BusHub, Event, app_hub, sse

bp = Blueprint("trading", __name__)

HUB_KEY = "hftpipe.trading_hub"
HEARTBEAT_S = 10.0
RISK_POLL_S = 1.0  # how often the kill-switch store is read for the page
RECENT = 50  # orders and fills kept for a newly opened page


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x  # JSON has no NaN


def _order_event(m: Order) -> dict[str, Any]:
    return {"symbol": m.symbol, "status": m.status, "order_id": m.order_id, "side": m.side, "qty": m.qty,
            "price": _num(m.price), "seq": m.seq, "event_time": m.event_time, "reason": m.reason, "text": m.text,
            "policy": m.policy, "signal_seq": m.signal_seq}


def _fill_event(m: Fill) -> dict[str, Any]:
    return {"symbol": m.symbol, "fill_id": m.fill_id, "order_id": m.order_id, "side": m.side, "qty": m.qty,
            "price": m.price, "fee": m.fee, "maker": m.maker, "seq": m.seq, "event_time": m.event_time}


def _position_event(m: PositionUpdate) -> dict[str, Any]:
    return {"symbol": m.symbol, "venue": m.venue, "seq": m.seq, "position": m.position, "cash": m.cash,
            "mid": _num(m.mid), "pnl": _num(m.pnl), "day_pnl": _num(m.day_pnl), "fees": m.fees,
            "open_orders": m.open_orders, "fills": m.fills, "risk_state": m.risk_state}


class TradingHub(BusHub):
    """The trader's subjects; keeps the newest position per symbol, the last orders and fills, and denials."""

    subjects = ("ord.>", "fill.>", "pos.>")
    name = "hftpipe-ui-trading"

    def __init__(self, url: str, reconnect_wait_s: float = 0.5) -> None:
        super().__init__(url, reconnect_wait_s)
        self.positions: dict[str, dict[str, Any]] = {}
        self.orders: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.fills: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.denials: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"positions": sorted(self.positions.values(), key=lambda p: p["symbol"]),
                    "orders": list(self.orders), "fills": list(self.fills), "denials": dict(self.denials),
                    "bus_connected": self.connected}

    def events(self, message: Any) -> Iterable[Event]:
        if isinstance(message, PositionUpdate):
            return [("position", _position_event(message))]
        if isinstance(message, Order):
            return [("order", _order_event(message))]
        if isinstance(message, Fill):
            return [("fill", _fill_event(message))]
        return []

    def remember(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "position":
            self.positions[event["symbol"]] = event
        elif kind == "order":
            self.orders.append(event)
            if event["status"] == "denied":
                self.denials[event["reason"]] += 1
        elif kind == "fill":
            self.fills.append(event)


def hub() -> TradingHub:
    """The app's hub, started on first use (one per process)."""
    return app_hub(HUB_KEY, TradingHub)


def risk_state() -> dict[str, Any]:
    """The kill-switch store's state (what `hftpipe risk status` prints)."""
    from hftpipe.trading.state_store import RiskStateError, RiskStateStore
    from hftpipe.ui.keys import CONFIG_KEY

    cfg: Config = current_app.config[CONFIG_KEY]
    try:
        store = RiskStateStore(cfg.risk.state_db)
    except RiskStateError as exc:
        return {"state": "UNKNOWN", "reason": str(exc), "actor": "", "time": "", "version": -1}
    try:
        return store.current().to_dict()
    finally:
        store.close()


@bp.get("/trading")
def page() -> str:
    """Positions, PnL, orders, fills, denials and the risk state of the paper trader."""
    h = hub()
    return render_template("trading.html", active="trading", bus_url=h.url, risk=risk_state())


@bp.get("/trading/state")
def state() -> dict[str, Any]:
    """Everything the page shows, as JSON (also for scripts)."""
    return {**hub().snapshot(), "risk": risk_state()}


@bp.get("/trading/events")
def events() -> Response:
    """Server-sent events: ``snapshot`` first, then ``position``, ``order``, ``fill``, ``risk`` and ``status``."""
    h = hub()
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def _generate() -> Iterator[bytes]:
        q = h.subscribe()
        try:
            with app.app_context():
                risk = risk_state()
            yield sse("snapshot", {**h.snapshot(), "risk": risk})
            last_beat = last_risk = time.monotonic()
            while True:
                try:
                    kind, event = q.get(timeout=0.5)
                    yield sse(kind, event)
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now - last_risk > RISK_POLL_S:
                    last_risk = now
                    with app.app_context():
                        fresh = risk_state()
                    if fresh.get("version") != risk.get("version"):
                        risk = fresh
                        yield sse("risk", risk)
                if now - last_beat > HEARTBEAT_S:
                    last_beat = now
                    yield sse("status", {"bus_connected": h.connected})
        finally:
            h.unsubscribe(q)

    return Response(_generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
