"""The stream page: signals and book updates from NATS, pushed to browsers as server-sent events.

One :class:`StreamHub` per UI process holds one NATS connection (core subscriptions on ``sig.>`` and
``md.>``, in a background thread with its own event loop) and fans every message out to each connected
browser's queue, so any number of browsers watch the same stream at the cost of one subscription. Book
updates are thinned to at most ``BOOK_HZ`` per symbol per browser (the newest wins); signals all go through.
A browser that cannot keep up loses its oldest events, never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, render_template, request

from hftpipe.config import Config
from hftpipe.contracts import BookUpdate, ContractError, Gap, Signal, decode
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

HUB_KEY = "hftpipe.stream_hub"
BOOK_HZ = 10.0  # book updates per symbol per second sent to browsers
HEARTBEAT_S = 10.0  # an SSE comment keeps proxies from closing an idle stream
CLIENT_QUEUE = 2000  # events buffered per browser before its oldest are dropped


def _signal_event(m: Signal) -> dict[str, Any]:
    return {"symbol": m.symbol, "venue": m.venue, "seq": m.seq, "event_time": m.event_time,
            "probabilities": m.probabilities, "predicted": m.predicted, "model_name": m.model_name,
            "model_version": m.model_version, "horizon": m.horizon,
            "latency_ms": round(1000 * (m.publish_time - m.input_publish_time), 3)}


def _book_event(m: BookUpdate) -> dict[str, Any]:
    ask, ask_size, bid, bid_size = m.book[0], m.book[1], m.book[2], m.book[3]
    mid = None if math.isnan(ask) or math.isnan(bid) else (ask + bid) / 2  # NaN: an empty side
    return {"symbol": m.symbol, "venue": m.venue, "seq": m.seq, "event_time": m.event_time, "ask": ask,
            "ask_size": ask_size, "bid": bid, "bid_size": bid_size, "mid": mid}


class StreamHub:
    """One NATS connection per UI process, fanned out to every browser."""

    def __init__(self, url: str, reconnect_wait_s: float = 0.5) -> None:
        self.url = url
        self.reconnect_wait_s = reconnect_wait_s
        self.connected = False
        self._clients: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, symbol) -> last event, for newcomers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hftpipe-stream-hub", daemon=True)
        self.dropped = 0

    def start(self) -> StreamHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def symbols(self) -> list[str]:
        with self._lock:
            return sorted({symbol for _, symbol in self._latest})

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)
            for (kind, _symbol), event in self._latest.items():
                q.put_nowait((kind, event))
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, kind: str, event: dict[str, Any]) -> None:
        """Hand one event to every browser (the newest-per-symbol copy is kept for late joiners)."""
        with self._lock:
            self._latest[(kind, event["symbol"])] = event
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait((kind, event))
            except queue.Full:
                try:
                    q.get_nowait()  # drop this browser's oldest event, keep the stream moving
                    q.put_nowait((kind, event))
                except (queue.Empty, queue.Full):
                    pass
                self.dropped += 1

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import nats

        last_book: dict[str, float] = {}

        async def _on_msg(msg) -> None:
            try:
                message = decode(msg.data)
            except ContractError:
                return
            if isinstance(message, Signal):
                self.publish("signal", _signal_event(message))
            elif isinstance(message, BookUpdate):
                now = time.monotonic()
                if now - last_book.get(message.symbol, 0.0) >= 1.0 / BOOK_HZ:
                    last_book[message.symbol] = now
                    self.publish("book", _book_event(message))
            elif isinstance(message, Gap):
                self.publish("gap", {"symbol": message.symbol, "reason": message.reason})

        async def _up() -> None:
            self.connected = True

        async def _down() -> None:
            self.connected = False

        async def _error(exc: Exception) -> None:  # the page shows "bus down"; keep the log quiet
            log.debug("stream hub: %s", exc)

        while not self._stop.is_set():
            try:
                nc = await nats.connect(self.url, name="hftpipe-ui-stream", max_reconnect_attempts=-1,
                                        reconnect_time_wait=self.reconnect_wait_s, connect_timeout=2,
                                        reconnected_cb=_up, disconnected_cb=_down, error_cb=_error)
            except Exception as exc:  # noqa: BLE001 - broker not up yet: the page says so, we retry
                log.debug("stream hub: cannot reach %s: %s", self.url, exc)
                await asyncio.sleep(1.0)
                continue
            self.connected = True
            await nc.subscribe("sig.>", cb=_on_msg)
            await nc.subscribe("md.>", cb=_on_msg)
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            await nc.close()


def hub() -> StreamHub:
    """The app's hub, started on first use (one per process)."""
    app = current_app
    found = app.extensions.get(HUB_KEY)
    if found is None:

        cfg: Config = app.config[CONFIG_KEY]
        with _HUB_LOCK:
            found = app.extensions.get(HUB_KEY)
            if found is None:
                found = StreamHub(f"nats://{cfg.bus.host}:{cfg.bus.port}", cfg.bus.reconnect_wait_s).start()
                app.extensions[HUB_KEY] = found
    return found


_HUB_LOCK = threading.Lock()


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


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
            yield _sse("status", {"bus_connected": h.connected, "symbols": h.symbols()})
            last_beat = time.monotonic()
            while True:
                try:
                    kind, event = q.get(timeout=1.0)
                except queue.Empty:
                    kind = None
                if kind is not None and (symbol is None or event.get("symbol") == symbol):
                    yield _sse(kind, event)
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    last_beat = time.monotonic()
                    yield _sse("status", {"bus_connected": h.connected, "symbols": h.symbols()})
        finally:
            h.unsubscribe(q)

    return Response(_generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
