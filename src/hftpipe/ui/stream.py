"""The stream page: signals and book updates from NATS, pushed to browsers as server-sent events.

One :class:`StreamHub` per UI process (a :class:`~hftpipe.ui.bus_hub.BusHub`) holds one NATS connection
(core subscriptions on ``sig.>`` and ``md.>``) and fans every message out to each connected browser's queue, so any number of browsers watch the same stream at the cost of one subscription. Book
updates are thinned to at most ``BOOK_HZ`` per symbol per browser (the newest wins); signals all go through.
A browser that cannot keep up loses its oldest events, never blocks the others.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, render_template, request

from hftpipe.contracts import BookUpdate, Gap, Signal
from hftpipe.ui.bus_hub import BusHub, Event, app_hub, sse

bp = Blueprint("stream", __name__)

HUB_KEY = "hftpipe.stream_hub"
BOOK_HZ = 10.0  # book updates per symbol per second sent to browsers
HEARTBEAT_S = 10.0  # an SSE comment keeps proxies from closing an idle stream


def _signal_event(m: Signal) -> dict[str, Any]:
    return {"symbol": m.symbol, "venue": m.venue, "seq": m.seq, "event_time": m.event_time,
            "probabilities": m.probabilities, "predicted": m.predicted, "model_name": m.model_name,
            "model_version": m.model_version, "horizon": m.label_horizon.value,
            "horizon_text": m.label_horizon.describe(),
            "latency_ms": round(1000 * (m.publish_time - m.input_publish_time), 3)}


def _book_event(m: BookUpdate) -> dict[str, Any]:
    ask, ask_size, bid, bid_size = m.book[0], m.book[1], m.book[2], m.book[3]
    mid = None if math.isnan(ask) or math.isnan(bid) else (ask + bid) / 2  # NaN: an empty side
    return {"symbol": m.symbol, "venue": m.venue, "seq": m.seq, "event_time": m.event_time, "ask": ask,
            "ask_size": ask_size, "bid": bid, "bid_size": bid_size, "mid": mid}


class StreamHub(BusHub):
    """Signals, book updates (thinned) and gaps, with the newest event per (kind, symbol) for newcomers."""

    subjects = ("sig.>", "md.>")
    name = "hftpipe-ui-stream"

    def __init__(self, url: str, reconnect_wait_s: float = 0.5) -> None:
        super().__init__(url, reconnect_wait_s)
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, symbol) -> last event
        self._last_book: dict[str, float] = {}  # symbol -> monotonic time of the last book event sent

    def symbols(self) -> list[str]:
        with self._lock:
            return sorted({symbol for _, symbol in self._latest})

    def events(self, message: Any) -> Iterable[Event]:
        if isinstance(message, Signal):
            return [("signal", _signal_event(message))]
        if isinstance(message, BookUpdate):
            now = time.monotonic()
            if now - self._last_book.get(message.symbol, 0.0) >= 1.0 / BOOK_HZ:
                self._last_book[message.symbol] = now
                return [("book", _book_event(message))]
        elif isinstance(message, Gap):
            return [("gap", {"symbol": message.symbol, "reason": message.reason})]
        return []

    def remember(self, kind: str, event: dict[str, Any]) -> None:
        self._latest[(kind, event["symbol"])] = event

    def backlog(self) -> list[Event]:
        return [(kind, event) for (kind, _symbol), event in self._latest.items()]


def hub() -> StreamHub:
    """The app's hub, started on first use (one per process)."""
    return app_hub(HUB_KEY, StreamHub)


@bp.get("/stream")
def page() -> str:
    """Follow live signals and books of any symbol on the bus."""
    h = hub()
    return render_template("stream.html", active="stream", bus_url=h.url, symbol=request.args.get("symbol", ""))


@bp.get("/stream/symbols")
def symbols() -> dict[str, Any]:
    h = hub()
    return {"symbols": h.symbols(), "bus_connected": h.connected}


@bp.get("/stream/events")
def events() -> Response:
    """Server-sent events: ``signal``, ``book``, ``gap`` and ``status`` (bus connected or not)."""
    h = hub()
    symbol = request.args.get("symbol") or None

    def _generate() -> Iterator[bytes]:
        q = h.subscribe()
        try:
            yield sse("status", {"bus_connected": h.connected, "symbols": h.symbols()})
            last_beat = time.monotonic()
            while True:
                try:
                    kind, event = q.get(timeout=1.0)
                except queue.Empty:
                    kind = None
                if kind is not None and (symbol is None or event.get("symbol") == symbol):
                    yield sse(kind, event)
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    last_beat = time.monotonic()
                    yield sse("status", {"bus_connected": h.connected, "symbols": h.symbols()})
        finally:
            h.unsubscribe(q)

    return Response(_generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
