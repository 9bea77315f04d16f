"""A local exchange that replays a recorded Bitstamp L3 capture in Bitstamp's WebSocket v2 wire format.

There is no internet here, so the live client (``hftpipe.feeds.bitstamp``) is tested against this: one
port on 127.0.0.1 serves

- the WebSocket feed (any path): ``bts:subscribe`` to ``live_orders_<pair>`` / ``live_trades_<pair>``,
  ``bts:heartbeat`` answered, ``order_created|order_changed|order_deleted`` and ``trade`` events;
- the REST order book snapshot, ``GET /api/v2/order_book/<pair>/`` (Bitstamp's ``group=2`` layout: every
  resting order as ``[price, amount, order_id]``, with the ``microtimestamp`` it is valid at);
- ``GET /control/drop``: drop every open connection (what a test or an operator uses to cut the feed).

Like a real exchange, the market moves on whether anyone listens: an exchange clock advances through the
capture at ``speed`` times real time (``speed=None``: as fast as the connections take it), and a client
that subscribes starts at the clock's position, so a client that reconnects has missed events and must
rebuild from a snapshot. Snapshots are taken at an uncrossed book (a matching engine never shows a
half-matched book). Event microtimestamps are the capture's exchange milliseconds with the event's rank
inside its millisecond added as microseconds, so they are unique and a snapshot's time is exact.

The exchange's own book is an :class:`hftpipe.data.bitstamp.L3Book` fed the same stream as the batch
loader, so a client synchronised from its snapshot must show the batch loader's book at every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hftpipe.data.bitstamp import (
    ASK,
    BID,
    CHANGED,
    CREATED,
    DELETED,
    SIZE_SCALE,
    TRADE,
    WARMUP,
    EventStream,
    L3Book,
    capture_events,
    find_capture,
)

log = logging.getLogger(__name__)

ORDER_EVENTS = {CREATED: "order_created", CHANGED: "order_changed", DELETED: "order_deleted"}


def micro_timestamps(exchange_ms: np.ndarray) -> np.ndarray:
    """Unique microsecond timestamps: exchange ms * 1000 + the event's rank inside its millisecond."""
    ms = np.asarray(exchange_ms, dtype=np.int64)
    if len(ms) == 0:
        return ms
    starts = np.r_[0, np.flatnonzero(np.diff(ms)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(ms)]))
    rank = np.arange(len(ms)) - run_start
    return ms * 1000 + np.minimum(rank, 999)


def _amount(units: int) -> tuple[float, str]:
    return units / SIZE_SCALE, f"{units / SIZE_SCALE:.8f}"


class ExchangeSim:
    """Serves one capture; ``start()`` binds, ``stop()`` closes.

    Args:
        capture: a capture folder or orders file (``hftpipe.data.bitstamp`` layout).
        speed: replay speed (1.0 = the recorded pace); None = as fast as the connections read.
        drop_after: drop each of the first ``drops`` connections after it has sent this many events.
        drops: how many connections ``drop_after`` applies to.
        levels: the exchange book's levels (only for snapshots' sanity; every order is served).
    """

    def __init__(self, capture: str | Path, *, speed: float | None = 1.0, drop_after: int | None = None,
                 drops: int = 1, host: str = "127.0.0.1", port: int = 0, levels: int = 10) -> None:
        cap = find_capture(capture)
        self.pair = cap.pair
        self.stream: EventStream = capture_events(cap)
        warm = np.flatnonzero(self.stream.emit != WARMUP)
        self.first_live = int(warm[0]) if len(warm) else len(self.stream)  # events before it: the start book
        self.micro = micro_timestamps(self.stream.exchange_ms)
        rel = (self.stream.exchange_ms[self.first_live:] - self.stream.exchange_ms[self.first_live]) / 1000.0
        self._rel_s = rel.astype(np.float64)
        self.speed = speed
        self.drop_after = drop_after
        self._drops_left = drops if drop_after else 0
        self.host, self.port = host, port
        self.book = L3Book(levels)
        self._applied = 0
        self._advance(self.first_live)
        self._t0 = 0.0
        self._fastest = self.first_live  # speed=None: the clock is the most advanced connection
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()
        self.sent = 0
        self.connections_served = 0
        self.snapshots_served = 0

    # -- the exchange clock and book -----------------------------------------------------------

    def position(self) -> int:
        """Index of the next event the market will produce (events before it have happened)."""
        if self.speed is None:
            return self._fastest
        elapsed = (time.monotonic() - self._t0) * self.speed
        return self.first_live + int(np.searchsorted(self._rel_s, elapsed, side="right"))

    def _advance(self, pos: int) -> None:
        s = self.stream
        if pos > self._applied:
            sl = slice(self._applied, pos)
            self.book.apply(s.action[sl], s.side[sl], s.order_id[sl], s.price[sl], s.size[sl], s.emit[sl])
            self._applied = pos

    def snapshot(self) -> dict[str, Any]:
        """The REST order book at the clock's position (moved on to the next uncrossed book)."""
        pos = max(self.position(), self._applied)
        self._advance(pos)
        while self.book.crossed and self._applied < len(self.stream):
            self._advance(self._applied + 1)
        micro = int(self.micro[self._applied - 1]) if self._applied else 0
        orders = self.book.orders()
        bids = orders[orders["side"] == "bid"].sort_values("price", ascending=False, kind="stable")
        asks = orders[orders["side"] == "ask"].sort_values("price", kind="stable")

        def rows(frame):
            return [[repr(float(p)), _amount(int(q))[1], str(int(i))]
                    for p, q, i in zip(frame["price"], frame["size"], frame["id"])]

        self.snapshots_served += 1
        return {"timestamp": str(micro // 1_000_000), "microtimestamp": str(micro),
                "bids": rows(bids), "asks": rows(asks)}

    def message(self, i: int) -> dict[str, Any]:
        """Event i of the stream in Bitstamp's wire format."""
        s = self.stream
        micro = int(self.micro[i])
        amount, amount_str = _amount(int(s.size[i]))
        price = float(s.price[i])
        a = int(s.action[i])
        if a == TRADE:
            passive = int(s.order_id[i])
            buy = int(s.side[i]) == ASK  # a buyer-initiated trade hit an ask
            data = {"id": i, "timestamp": str(micro // 1_000_000), "amount": amount, "amount_str": amount_str,
                    "price": price, "price_str": repr(price), "type": 0 if buy else 1,
                    "microtimestamp": str(micro), "buy_order_id": 0 if buy else passive,
                    "sell_order_id": passive if buy else 0}
            return {"data": data, "channel": f"live_trades_{self.pair}", "event": "trade"}
        oid = int(s.order_id[i])
        data = {"id": oid, "id_str": str(oid), "order_type": 0 if int(s.side[i]) == BID else 1,
                "datetime": str(micro // 1_000_000), "microtimestamp": str(micro), "amount": amount,
                "amount_str": amount_str, "price": price, "price_str": repr(price)}
        return {"data": data, "channel": f"live_orders_{self.pair}", "event": ORDER_EVENTS[a]}

    # -- serving -------------------------------------------------------------------------------

    async def start(self) -> int:
        """Bind and start the clock; returns the port."""
        self._t0 = time.monotonic()
        self._server = await serve(self._handle, self.host, self.port, process_request=self._http,
                                   ping_interval=None, max_queue=None)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("exchange-sim on ws://%s:%d (%d live events, speed %s)", self.host, self.port,
                 len(self.stream) - self.first_live, self.speed or "max")
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def drop_connections(self) -> int:
        """Cut every open connection as a network failure would (no closing handshake)."""
        n = 0
        for ws in list(self._connections):
            ws.transport.abort()
            n += 1
        return n

    async def request_reconnect(self) -> int:
        """Send ``bts:request_reconnect`` to every open connection (Bitstamp does so before maintenance)."""
        n = 0
        for ws in list(self._connections):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"event": "bts:request_reconnect", "channel": "", "data": ""}))
                n += 1
        return n

    @property
    def finished(self) -> bool:
        return self.position() >= len(self.stream)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if path == f"/api/v2/order_book/{self.pair}":
            body = json.dumps(self.snapshot()).encode()
            return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": "application/json",
                                                          "Content-Length": str(len(body))}), body)
        if path == "/control/drop":
            body = json.dumps({"dropped": self.drop_connections()}).encode()
            return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": "application/json",
                                                          "Content-Length": str(len(body))}), body)
        if path == "/healthz":
            body = json.dumps({"position": self.position(), "events": len(self.stream)}).encode()
            return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": "application/json",
                                                          "Content-Length": str(len(body))}), body)
        return connection.respond(HTTPStatus.NOT_FOUND, f"no such path {path}; the feed is a WebSocket\n")

    async def _handle(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        self.connections_served += 1
        channels: set[str] = set()
        sender: asyncio.Task | None = None
        known = {f"live_orders_{self.pair}", f"live_trades_{self.pair}"}
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    event = msg.get("event")
                    channel = (msg.get("data") or {}).get("channel", "") if event != "bts:heartbeat" else ""
                except (ValueError, AttributeError):
                    event, channel = None, ""
                if event == "bts:subscribe" and channel in known:
                    channels.add(channel)
                    await ws.send(json.dumps({"event": "bts:subscription_succeeded", "channel": channel,
                                              "data": {}}))
                    if sender is None:
                        sender = asyncio.create_task(self._send_events(ws, channels, self.position()))
                elif event == "bts:unsubscribe" and channel in channels:
                    channels.discard(channel)
                    await ws.send(json.dumps({"event": "bts:unsubscription_succeeded", "channel": channel,
                                              "data": {}}))
                elif event == "bts:heartbeat":
                    await ws.send(json.dumps({"event": "bts:heartbeat", "channel": "",
                                              "data": {"status": "success"}}))
                else:
                    await ws.send(json.dumps({"event": "bts:error", "channel": channel,
                                              "data": {"code": None, "message": "Bad subscription string."}}))
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)
            if sender is not None:
                sender.cancel()

    async def _send_events(self, ws: ServerConnection, channels: set[str], cursor: int) -> None:
        sent = 0
        n = len(self.stream)
        drop_here = self._drops_left > 0
        if drop_here:
            self._drops_left -= 1
        try:
            for i in range(cursor, n):
                if self.speed is not None:
                    due = self._t0 + self._rel_s[i - self.first_live] / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    self._fastest = max(self._fastest, i + 1)
                msg = self.message(i)
                if msg["channel"] in channels:
                    await ws.send(json.dumps(msg))
                    sent += 1
                    self.sent += 1
                    if sent % 256 == 0:
                        await asyncio.sleep(0)  # let heartbeats and other connections through
                if drop_here and self.drop_after is not None and sent >= self.drop_after:
                    log.info("exchange-sim: dropping a connection after %d events", sent)
                    ws.transport.abort()
                    return
        except ConnectionClosed:
            return


async def run_sim(capture: str | Path, *, port: int = 0, speed: float | None = 1.0,
                  drop_after: int | None = None,
                  on_ready: Callable[[ExchangeSim], None] | None = None) -> None:
    """Serve until cancelled (the CLI's body); ``on_ready`` is called once the port is bound."""
    sim = ExchangeSim(capture, speed=speed, drop_after=drop_after, port=port)
    await sim.start()
    if on_ready is not None:
        on_ready(sim)
    try:
        await asyncio.Future()
    finally:
        await sim.stop()
