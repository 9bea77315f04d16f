"""Replay a recorded day onto the bus, keeping its inter-event timing scaled by a speed factor.

Sequence numbers continue where the stream left off for the symbol (read back from JetStream), so
restarting the feed, or looping the file, never reuses a seq: a consumer's idempotence check would silently
drop those updates. Wherever the book jumps (a restart mid-file, the loop back to the first event) a
:class:`~hftpipe.contracts.Gap` is published first, so consumers reset that symbol's window instead of
mixing two unrelated books.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge

from hftpipe.bus.connection import BusClient, md_subject, msg_id
from hftpipe.contracts import BookUpdate, ContractError, Gap, decode, encode
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

RESEND_AFTER_S = 5.0  # a publish not acknowledged by then is sent again (dedup makes that safe)


@dataclass(frozen=True)
class ReplayData:
    """One symbol's recorded events as arrays (book after each event, LOBSTER order)."""

    venue: str
    symbol: str
    levels: int
    event_time: np.ndarray  # (n,) seconds since the Unix epoch
    event_type: np.ndarray  # (n,) int
    price: np.ndarray
    size: np.ndarray
    direction: np.ndarray
    book: np.ndarray  # (n, 4L) float64

    def __len__(self) -> int:
        return len(self.event_time)


def _session_epoch(date: str) -> float:
    """Midnight (UTC) of the session date; LOBSTER times are seconds after midnight."""
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        return 0.0  # "unknown" date: event times stay seconds after midnight
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _venue_of(meta: object, source: str) -> str:
    """The venue a table came from: its metadata when it says, NASDAQ for LOBSTER files."""
    venue = getattr(meta, "venue", None)
    if venue:
        return str(venue)
    if "lobster" in source.lower() or source.endswith((".zip", "_message_1.csv")) or "_message_" in source:
        return "NASDAQ"
    return "UNKNOWN"


def load_replay(path: str | Path, venue: str | None = None, symbol: str | None = None) -> ReplayData:
    """Load a LOBSTER zip / CSV pair / folder, or a canonical events Parquet, for replay.

    Raises:
        DataFormatError: the file is not one ``hftpipe ingest`` accepts (nor its output).
    """
    from hftpipe.config import DataConfig, ValidateConfig
    from hftpipe.data import read_events
    from hftpipe.prepare import load_source

    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    if _is_parquet(path):  # `hftpipe ingest`'s output, also as a pipeline artifact (a file with no suffix)
        table = read_events(path)
    else:  # LOBSTER zip / CSV pair / folder, or a Bitstamp L3 capture: the loaders `hftpipe ingest` uses
        session = ValidateConfig()
        table = load_source(path, DataConfig(), (session.session_start, session.session_end), require_symbol=False)
    frame = table.frame
    if len(frame) == 0:
        raise DataFormatError(f"{path} holds no events")
    book = table.book().astype(np.float64, copy=False)
    return ReplayData(
        venue=venue or _venue_of(table.meta, str(table.meta.source or path)),
        symbol=symbol or table.meta.symbol,
        levels=table.levels,
        event_time=_session_epoch(table.meta.date) + frame["time"].to_numpy(np.float64),
        event_type=frame["type"].to_numpy(np.int64),
        price=frame["price"].to_numpy(np.float64),
        size=frame["size"].to_numpy(np.float64),
        direction=frame["direction"].to_numpy(np.int64),
        book=book,
    )


def _is_parquet(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.published = Counter("hftpipe_feed_events_out_total", "Book updates published", ["symbol"], registry=r)
        self.gaps = Counter("hftpipe_feed_gaps_total", "Gap events published", ["symbol"], registry=r)
        self.resends = Counter("hftpipe_feed_resends_total", "Publishes sent again after no ack", registry=r)
        self.reconnects = Gauge("hftpipe_feed_reconnects", "Reconnects to NATS since start", registry=r)
        self.pending = Gauge("hftpipe_feed_pending_acks", "Publishes awaiting a JetStream ack", registry=r)


class FeedPublisher:
    """Publishes one symbol's updates with contiguous seqs, dedup ids and acknowledged delivery."""

    def __init__(self, client: BusClient, venue: str, symbol: str, metrics: FeedMetrics | None = None,
                 max_pending: int = 4000) -> None:
        self.client = client
        self.venue = venue
        self.symbol = symbol
        self.subject = md_subject(venue, symbol)
        self.metrics = metrics or FeedMetrics()
        self.max_pending = max_pending
        self.next_seq = 1
        self._inflight: dict[asyncio.Future, tuple[bytes, dict[str, str], float]] = {}

    async def resume(self) -> int:
        """Continue after the last seq on the stream for this subject; publish a gap if there was one."""
        try:
            raw = await self.client.js.get_last_msg("MD", self.subject)
        except NotFoundError:
            return self.next_seq
        try:
            last = decode(raw.data)
        except ContractError:
            log.warning("%s: last message on the stream is malformed; starting at seq 1", self.subject)
            return self.next_seq
        last_seq = last.seq if isinstance(last, BookUpdate) else getattr(last, "next_seq", 1) - 1
        self.next_seq = last_seq + 1
        await self.gap("feed restarted: the book restarts from the replay's first event")
        return self.next_seq

    async def gap(self, reason: str) -> None:
        message = Gap(venue=self.venue, symbol=self.symbol, next_seq=self.next_seq, reason=reason,
                      publish_time=time.time())
        await self._send(encode(message), {"Nats-Msg-Id": f"{self.symbol}:gap:{self.next_seq}"})
        self.metrics.gaps.labels(self.symbol).inc()

    async def publish(self, event_time: float, book: list[float], levels: int, event_type: int = 0,
                      price: float = 0.0, size: float = 0.0, direction: int = 0, recv_time: float | None = None,
                      correlation_id: str = "") -> int:
        """Publish one book update (not awaiting its ack); returns its seq.

        ``correlation_id`` follows the event from feed to signal to outcome (logs carry it as ``trace.id``);
        by default ``<venue>:<symbol>:<seq>``, unique on the stream.
        """
        seq = self.next_seq
        now = time.time()
        update = BookUpdate(venue=self.venue, symbol=self.symbol, seq=seq, event_time=event_time,
                            recv_time=recv_time if recv_time is not None else now, publish_time=now,
                            levels=levels, book=book, event_type=event_type, price=price, size=size,
                            direction=direction,
                            correlation_id=correlation_id or f"{self.venue}:{self.symbol}:{seq}")
        await self._send(encode(update), msg_id(self.symbol, seq))
        self.next_seq = seq + 1
        self.metrics.published.labels(self.symbol).inc()
        return seq

    async def _send(self, data: bytes, headers: dict[str, str]) -> None:
        if len(self._inflight) >= self.max_pending:
            await self.settle(self.max_pending // 2)
        if not self.client.nc.is_connected:
            await self._after_reconnect()
        future = await self.client.js.publish_async(self.subject, data, headers=headers)
        self._inflight[future] = (data, headers, time.monotonic())

    async def _after_reconnect(self) -> None:
        """Hold new publishes while the broker is away, then resend every unacknowledged one in seq order.

        Publishes written to the old connection just before it dropped may never have reached the broker;
        resending them before anything new keeps each symbol's stream in seq order (JetStream drops the copies
        that did arrive, by Nats-Msg-Id)."""
        while not self.client.nc.is_connected and not self.client.nc.is_closed:
            await asyncio.sleep(0.05)
        pending = [(data, headers) for future, (data, headers, _sent) in self._inflight.items()
                   if not (future.done() and not future.cancelled() and future.exception() is None)]
        for future in list(self._inflight):
            if not future.done():
                future.cancel()
        self._inflight.clear()
        for data, headers in pending:  # dict order is publish order, i.e. seq order
            await self._resend(data, headers)

    async def settle(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` publishes are unacknowledged, resending any that stalled.

        A publish lost in a disconnect is sent again after RESEND_AFTER_S; JetStream drops the copy if the
        first one did arrive (same Nats-Msg-Id).
        """
        while len(self._inflight) > keep:
            done, _ = await asyncio.wait(list(self._inflight), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                data, headers, _sent = self._inflight.pop(future)
                if future.cancelled() or future.exception() is not None:
                    await self._resend(data, headers)
            now = time.monotonic()
            for future, (data, headers, sent) in list(self._inflight.items()):
                if now - sent > RESEND_AFTER_S and not future.done():
                    self._inflight.pop(future)
                    future.cancel()
                    await self._resend(data, headers)
            self.metrics.pending.set(len(self._inflight))
            self.metrics.reconnects.set(self.client.reconnects)

    async def _resend(self, data: bytes, headers: dict[str, str]) -> None:
        self.metrics.resends.inc()
        future = await self.client.js.publish_async(self.subject, data, headers=headers)
        self._inflight[future] = (data, headers, time.monotonic())


async def replay(data: ReplayData, publisher: FeedPublisher, speed: float = 1.0, loop: bool = False,
                 limit: int | None = None, stop: asyncio.Event | None = None) -> int:
    """Publish the recorded events, sleeping so that inter-event gaps are the recorded ones / ``speed``.

    Args:
        speed: 0 (or inf) publishes as fast as the broker acknowledges.
        loop: start over at the end (after a gap event), until ``limit`` or ``stop``.
        limit: publish at most this many events in total.
    Returns:
        The number of book updates published.
    """
    stop = stop or asyncio.Event()
    paced = speed > 0 and np.isfinite(speed)
    n, published, offset = len(data), 0, 0.0
    span = float(data.event_time[-1] - data.event_time[0]) + 1.0
    while not stop.is_set():
        wall0, t0 = time.monotonic(), float(data.event_time[0])
        for i in range(n):
            if stop.is_set() or (limit is not None and published >= limit):
                break
            if paced:
                ahead = wall0 + (float(data.event_time[i]) - t0) / speed - time.monotonic()
                if ahead > 0.001:
                    try:  # sleep, but wake up at once on SIGTERM (LOBSTER gaps can last seconds)
                        await asyncio.wait_for(stop.wait(), timeout=ahead)
                        break
                    except TimeoutError:
                        pass
            await publisher.publish(
                float(data.event_time[i]) + offset, data.book[i].tolist(), data.levels,
                int(data.event_type[i]), float(data.price[i]), float(data.size[i]), int(data.direction[i]))
            published += 1
            if published % 1024 == 0:
                await asyncio.sleep(0)  # let acks and pings through when publishing at full speed
        if not loop or (limit is not None and published >= limit):
            break
        offset += span  # event time keeps increasing across loops
        await publisher.gap("replay looped: the book restarts at the file's first event")
    try:
        # On SIGTERM give outstanding acks a moment; otherwise wait for all (resending what got lost).
        await asyncio.wait_for(publisher.settle(0), timeout=2.0 if stop.is_set() else None)
    except TimeoutError:
        log.warning("%d publish(es) unacknowledged at shutdown", len(publisher._inflight))
    return published
