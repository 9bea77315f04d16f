"""Live client for Bitstamp's public WebSocket v2 feed: L3 order events in, canonical book updates out.

Protocol (``wss://ws.bitstamp.net``): the client sends
``{"event": "bts:subscribe", "data": {"channel": "live_orders_btcusd"}}`` (and ``live_trades_btcusd``);
the server answers ``bts:subscription_succeeded`` and then streams ``order_created``, ``order_changed``,
``order_deleted`` (data: ``id``, ``id_str``, ``order_type`` 0 buy / 1 sell, ``amount`` = the order's
remaining amount, ``price``, ``microtimestamp``, ``datetime``) and ``trade`` events (``type`` 0 buy /
1 sell aggressor, ``buy_order_id``, ``sell_order_id``). ``bts:heartbeat`` sent by the client is answered
with ``bts:heartbeat``; ``bts:request_reconnect`` asks the client to reconnect (maintenance).

Synchronisation (Bitstamp's documented recipe for the full order book): subscribe, buffer the events,
fetch the REST order book (``/api/v2/order_book/<pair>/?group=2``, every order with its id), load it,
drop buffered events at or before the snapshot's ``microtimestamp`` and apply the rest. The book itself is
:class:`hftpipe.data.bitstamp.L3Book`, the batch loader's builder, so live and batch books agree.

Failures: the connection is watched (heartbeats every ``heartbeat_s``; no message for ``stale_s`` means
dead; at most 1024 messages are queued unread, so a client that falls behind pushes back on the
socket instead of buffering without bound), and on any loss the client reconnects with exponential back-off (``backoff_initial`` doubling up
to ``backoff_max``, reset after a successful synchronisation). Events lost while disconnected cannot be
recovered, so after a reconnect the book is rebuilt from a fresh snapshot and a
:class:`hftpipe.contracts.Gap` is emitted before the first update that follows it.

The client knows nothing of the bus: it calls ``await emit(message)`` with each
:class:`~hftpipe.contracts.BookUpdate` / :class:`~hftpipe.contracts.Gap` (venue ``bitstamp``, symbol the
upper-case pair, ``seq`` contiguous per symbol). Sizes are size units (satoshis), as in the batch table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hftpipe.contracts import BookUpdate, Gap, Message, now
from hftpipe.data.bitstamp import (
    ASK,
    BID,
    CHANGED,
    CREATED,
    CROSS_GRACE,
    DEFAULT_LEVELS,
    DELETED,
    TRADE,
    VENUE,
    L3Book,
    to_units,
)
from hftpipe.errors import HftpipeError

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.bitstamp.net"
DEFAULT_REST_URL = "https://www.bitstamp.net/api/v2/order_book/{pair}/?group=2"
ORDER_ACTIONS = {"order_created": CREATED, "order_changed": CHANGED, "order_deleted": DELETED}

Emit = Callable[[Message], Awaitable[None]]


class FeedError(HftpipeError):
    """The exchange answered something the client cannot use (bad snapshot, refused subscription)."""


class _Reconnect(Exception):
    """Internal: leave the session and reconnect (reason in args[0])."""


@dataclass
class FeedStats:
    """Counters a service exports as metrics."""

    connects: int = 0
    reconnects: int = 0
    gaps: int = 0
    updates: int = 0
    heartbeats: int = 0
    snapshots: int = 0
    stale_dropped: int = 0  # buffered events already contained in a snapshot
    bad_messages: int = 0


def rest_url_for(url: str, pair: str) -> str:
    """The REST snapshot URL that goes with a WebSocket URL (the real exchange, or a local exchange-sim)."""
    if url.rstrip("/") == DEFAULT_URL:
        return DEFAULT_REST_URL.format(pair=pair)
    base = url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")
    return f"{base}/api/v2/order_book/{pair}/?group=2"


class BitstampClient:
    """Keeps one pair's L3 book in sync with Bitstamp and emits canonical book updates.

    Args:
        emit: ``async`` callable receiving each BookUpdate and Gap, in order.
        url: WebSocket endpoint; rest_url: order book snapshot (default: derived from url).
        pair: Bitstamp pair, e.g. ``btcusd``; the symbol is its upper case.
        levels: book levels per update.
    """

    def __init__(self, emit: Emit, *, url: str = DEFAULT_URL, rest_url: str | None = None, pair: str = "btcusd",
                 levels: int = DEFAULT_LEVELS, heartbeat_s: float = 10.0, stale_s: float = 30.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0, cross_grace: int = CROSS_GRACE,
                 snapshot_timeout_s: float = 10.0) -> None:
        self.emit = emit
        self.url = url
        self.pair = pair.lower()
        self.rest_url = rest_url or rest_url_for(url, self.pair)
        self.symbol = self.pair.upper()
        self.levels = levels
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.snapshot_timeout_s = snapshot_timeout_s
        self.book = L3Book(levels, cross_grace=cross_grace)
        self.seq = 0
        self.stats = FeedStats()
        self._synced_once = False
        self._snapshot_micro = 0
        self._held_trades: deque[tuple[int, int]] = deque()
        self._stop = asyncio.Event()

    @property
    def channels(self) -> tuple[str, str]:
        return f"live_orders_{self.pair}", f"live_trades_{self.pair}"

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current message."""
        self._stop.set()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based): doubling, capped."""
        return min(self.backoff_max, self.backoff_initial * (2 ** attempt))

    async def run(self) -> None:
        """Connect, synchronise and stream until :meth:`stop`; reconnect on every failure."""
        attempt = 0
        while not self._stop.is_set():
            reason = "connection lost"
            try:
                async with websockets.connect(self.url, ping_interval=self.heartbeat_s, ping_timeout=self.stale_s,
                                              open_timeout=10, max_queue=1024) as ws:
                    self.stats.connects += 1
                    synced = await self._session(ws)
                    if synced:
                        attempt = 0
                    if self._stop.is_set():
                        return
            except _Reconnect as exc:
                reason = str(exc)
                if self.book_synced:
                    attempt = 0
            except (TimeoutError, ConnectionClosed, OSError, InvalidHandshake, FeedError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except InvalidURI as exc:
                raise FeedError(f"bad feed URL {self.url}: {exc}") from None
            if self._stop.is_set():
                return
            self.book_synced = False
            delay = self.backoff(attempt)
            attempt += 1
            self.stats.reconnects += 1
            log.warning("bitstamp %s: %s; reconnecting in %.1f s", self.pair, reason, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    book_synced = False

    async def _session(self, ws: Any) -> bool:
        """One connection: subscribe, synchronise from a snapshot, then apply events until it fails."""
        for channel in self.channels:
            await ws.send(json.dumps({"event": "bts:subscribe", "data": {"channel": channel}}))
        buffer: list[dict[str, Any]] = []
        snapshot_task: asyncio.Task | None = None
        heartbeat = asyncio.create_task(self._heartbeats(ws))
        self.book_synced = False
        try:
            while not self._stop.is_set():
                recv = asyncio.ensure_future(ws.recv())
                waiting = {recv} | ({snapshot_task} if snapshot_task and not self.book_synced else set())
                done, _ = await asyncio.wait(waiting, timeout=self.stale_s, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    recv.cancel()
                    raise _Reconnect(f"no message for {self.stale_s} s")
                if snapshot_task in done and not self.book_synced:
                    await self._synchronise(snapshot_task.result(), buffer)
                    buffer = []
                if recv not in done:
                    recv.cancel()
                    continue
                msg = self._decode(recv.result())
                if msg is None:
                    continue
                event = msg.get("event", "")
                if event == "bts:subscription_succeeded":
                    if msg.get("channel") == self.channels[0] and snapshot_task is None:
                        snapshot_task = asyncio.create_task(self._fetch_snapshot())
                elif event == "bts:heartbeat":
                    self.stats.heartbeats += 1
                elif event == "bts:request_reconnect":
                    raise _Reconnect("exchange requested a reconnect")
                elif event == "bts:error":
                    raise FeedError(f"exchange refused: {msg.get('data')}")
                elif event in ORDER_ACTIONS or event == "trade":
                    if not self.book_synced:
                        buffer.append(msg)
                    elif _micro(msg) <= self._snapshot_micro:
                        self.stats.stale_dropped += 1  # in flight when the snapshot was taken: already in it
                    else:
                        await self._apply(msg)
            return self.book_synced
        finally:
            heartbeat.cancel()
            if snapshot_task is not None and not snapshot_task.done():
                snapshot_task.cancel()

    async def _heartbeats(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await ws.send(json.dumps({"event": "bts:heartbeat"}))
            except ConnectionClosed:
                return

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(raw)
        except ValueError:
            self.stats.bad_messages += 1
            log.warning("bitstamp %s: undecodable message dropped", self.pair)
            return None
        if not isinstance(msg, dict):
            self.stats.bad_messages += 1
            return None
        return msg

    async def _fetch_snapshot(self) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            try:
                with urllib.request.urlopen(self.rest_url, timeout=self.snapshot_timeout_s) as resp:
                    return json.loads(resp.read())
            except (urllib.error.URLError, ValueError, TimeoutError) as exc:
                raise FeedError(f"order book snapshot from {self.rest_url} failed: {exc}") from None

        return await asyncio.to_thread(get)

    async def _synchronise(self, snapshot: dict[str, Any], buffer: list[dict[str, Any]]) -> None:
        try:
            micro = int(snapshot["microtimestamp"])
            bids, asks = snapshot["bids"], snapshot["asks"]
            rows = [(int(o[2]), BID, float(o[0]), o[1]) for o in bids] + \
                   [(int(o[2]), ASK, float(o[0]), o[1]) for o in asks]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise FeedError(f"order book snapshot is not Bitstamp's group=2 layout: {exc}") from None
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        sides = np.array([r[1] for r in rows], dtype=np.int8)
        prices = np.array([r[2] for r in rows], dtype=np.float64)
        sizes = to_units(np.array([float(r[3]) for r in rows], dtype=np.float64))
        self.book.load_snapshot(ids, sides, prices, sizes)
        self._held_trades.clear()
        self._snapshot_micro = micro
        self.stats.snapshots += 1
        if self._synced_once:
            # Whatever happened while disconnected is lost: consumers must reset this symbol.
            self.stats.gaps += 1
            await self.emit(Gap(venue=VENUE, symbol=self.symbol, next_seq=self.seq + 1,
                                reason="reconnect: book rebuilt from snapshot", publish_time=now()))
        self._synced_once = True
        self.book_synced = True
        log.info("bitstamp %s: synchronised from snapshot at %d (%d orders, %d buffered events)", self.pair,
                 micro, len(rows), len(buffer))
        for msg in buffer:
            if _micro(msg) <= micro:
                self.stats.stale_dropped += 1
                continue
            await self._apply(msg)

    async def _apply(self, msg: dict[str, Any]) -> None:
        recv_time = now()
        try:
            data = msg["data"]
            micro = int(data["microtimestamp"])
            price = float(data["price"])
            size = int(to_units(np.array([float(data["amount"])]))[0])
            if msg["event"] == "trade":
                buy = int(data["type"]) == 0
                action = TRADE
                side = ASK if buy else BID  # the passive order's side
                oid = int(data["sell_order_id"] if buy else data["buy_order_id"])
            else:
                action = ORDER_ACTIONS[msg["event"]]
                side = BID if int(data["order_type"]) == 0 else ASK
                oid = int(data["id"])
        except (KeyError, TypeError, ValueError) as exc:
            self.stats.bad_messages += 1
            log.warning("bitstamp %s: malformed %s dropped: %s", self.pair, msg.get("event"), exc)
            return
        rows = self.book.apply(np.array([action], np.int8), np.array([side], np.int8), np.array([oid], np.int64),
                               np.array([price]), np.array([size], np.int64))
        if action == TRADE and len(rows) == 0 and self.book.crossed:
            self._held_trades.append((micro, oid))  # the builder emits it once the book uncrosses
        for r in range(len(rows)):
            # Rows before the last are trades that waited for an uncrossed book: they keep their own time.
            ev_micro, ev_oid = self._held_trades.popleft() if r < len(rows) - 1 and self._held_trades \
                else (micro, oid)
            self.seq += 1
            self.stats.updates += 1
            await self.emit(BookUpdate(
                venue=VENUE, symbol=self.symbol, seq=self.seq, event_time=ev_micro / 1e6, recv_time=recv_time,
                publish_time=now(), levels=self.levels, book=rows.book[r].tolist(),
                event_type=int(rows.event_type[r]), price=float(rows.price[r]), size=float(rows.size[r]),
                direction=int(rows.direction[r]), correlation_id=f"{ev_micro}:{ev_oid}"))


def _micro(msg: dict[str, Any]) -> int:
    try:
        return int(msg["data"]["microtimestamp"])
    except (KeyError, TypeError, ValueError):
        return 0
