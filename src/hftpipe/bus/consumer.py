"""Durable JetStream pull consumers as the bus services (signals, paper trader, outcome monitor) use them.

Every service follows one recipe (see ``ONLINE.md``: at-least-once delivery, idempotent consumers):

- :func:`resume_consumer` creates the durable consumer, or deletes and recreates it just after its ack floor;
- :class:`PullConsumer` fetches batches (``[]`` on a timeout or while the broker is away), or
  :class:`ContinuousPull` keeps a pull request open so messages arrive as they are stored;
- each input is decoded with :func:`decode_as`; a rejected one becomes a :func:`dead_letter` on
  ``dlq.<service>``, never an exception;
- outputs go out with :func:`publish_acked` (one awaited ack per stream), progress is committed, and only then is
  the batch acknowledged (``AckPolicy.ALL``: the last message acknowledges its consumer's batch);
- :func:`report_lag` exports what each consumer still has to deliver.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from hftpipe.bus.connection import BusClient
from hftpipe.contracts import ContractError, DeadLetter, decode, encode
from hftpipe.errors import BusError

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 5.0  # a publish not acknowledged by then is sent again (the dedup ids make that safe)
PULL_EXPIRES_S = 5.0  # a continuous pull request lives this long; it is renewed before it runs out


@dataclass(frozen=True)
class Durable:
    """One durable pull consumer: its stream, name, subject filter and flow limits."""

    stream: str
    name: str
    subject: str
    max_ack_pending: int = -1  # -1: unlimited
    ack_wait_s: float = 30.0
    max_waiting: int | None = None  # pull requests the server queues (None: the server's default)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(durable_name=self.name, ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL,
                              filter_subject=self.subject, max_ack_pending=self.max_ack_pending,
                              ack_wait=self.ack_wait_s, max_waiting=self.max_waiting)


async def resume_consumer(js: JetStreamContext, durable: Durable) -> int:
    """Create the durable consumer, or recreate it just after its ack floor; returns the floor (0: from the start).

    A previous process that died held delivered, unacknowledged messages (redelivered only after ack_wait, i.e.
    after newer ones: a seq gap) and maybe a pull request that would keep feeding its dead inbox. Starting at
    the floor redelivers them now, in stream order; what was already applied is skipped by the per-symbol seq.

    Raises:
        BusError: the server refuses the consumer (e.g. its stream is missing).
    """
    wanted = durable.config()
    floor = 0
    try:
        info = await js.consumer_info(durable.stream, durable.name)
    except NotFoundError:
        info = None
    if info is not None:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        await js.delete_consumer(durable.stream, durable.name)
        if floor:
            wanted = dataclasses.replace(wanted, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=floor + 1)
        log.info("consumer %s resumes after stream sequence %d", durable.name, floor)
    try:
        await js.add_consumer(durable.stream, wanted)
    except BadRequestError as exc:
        raise BusError(f"cannot create consumer {durable.name} on stream {durable.stream}: {exc}") from None
    return floor


class PullConsumer:
    """A pull subscription bound to a durable consumer; :meth:`fetch` never raises for timeouts or outages."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._sub: Any = None
        self._failing = False

    async def resume(self, js: JetStreamContext) -> int:
        """:func:`resume_consumer` for this consumer; returns its ack floor."""
        return await resume_consumer(js, self.durable)

    async def bind(self, js: JetStreamContext) -> None:
        """Subscribe to the (resumed) consumer; :meth:`fetch` works from then on."""
        self._sub = await js.pull_subscribe_bind(durable=self.durable.name, stream=self.durable.stream)

    async def fetch(self, batch: int, timeout_s: float, retry_s: float) -> list:
        """Up to ``batch`` messages, waiting at most ``timeout_s``; ``[]`` after a timeout, or ``retry_s`` after
        a failure (the broker is away: the client reconnects by itself, the next call asks again)."""
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except TimeoutError:  # nats.errors.TimeoutError and its fetch variant derive from it
            return []
        except Exception as exc:  # noqa: BLE001 - a disconnect surfaces as several client error types
            # One warning per outage, not one per retry while the broker restarts.
            (log.debug if self._failing else log.warning)("fetch from %s failed (%s: %s); retrying",
                                                          self.durable.name, type(exc).__name__, exc)
            self._failing = True
            await asyncio.sleep(retry_s)
            return []
        self._failing = False
        return msgs

    async def close(self) -> None:
        await _unsubscribe(self._sub)


class ContinuousPull:
    """Keep one pull request open on a durable consumer, so messages arrive as they are stored.

    Cheaper than :meth:`PullConsumer.fetch` per message (no request/reply round trip per batch): the service asks
    for ``pull_batch`` messages that are delivered to its inbox as they come, and asks again when half of them
    arrived, when the request expired or was cancelled (a 408/409/404 status), or after a reconnect.
    """

    def __init__(self, client: BusClient, durable: Durable, pull_batch: int,
                 expires_s: float = PULL_EXPIRES_S) -> None:
        self.client = client
        self.durable = durable
        self.pull_batch = pull_batch
        self.expires_s = expires_s
        self._queue: asyncio.Queue = asyncio.Queue()
        self._inbox = ""
        self._credit = 0
        self._sub: Any = None
        self._last_heard = time.monotonic()

    async def start(self) -> None:
        """Subscribe the inbox and send the first request."""
        self._inbox = self.client.nc.new_inbox()
        self._sub = await self.client.nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000,
                                                   pending_bytes_limit=512 * 1024 * 1024)
        self.client.on_reconnect.append(lambda: self._queue.put_nowait(None))  # None: ask for messages again
        await self._request()

    async def _on_msg(self, msg: Any) -> None:
        self._queue.put_nowait(msg)

    async def _request(self) -> None:
        body = orjson.dumps({"batch": self.pull_batch, "expires": int(self.expires_s * 1e9)})
        await self.client.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.durable.stream}.{self.durable.name}", body,
                                     reply=self._inbox)
        self._credit = self.pull_batch
        self._last_heard = time.monotonic()

    async def run(self, stop: asyncio.Event, handle: Callable[[list], Awaitable[Any]], batch_max: int,
                  wait_s: float = 0.25) -> None:
        """Call ``handle`` with each batch (up to ``batch_max`` messages that arrived) until ``stop`` is set."""
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=wait_s)
            except TimeoutError:
                if time.monotonic() - self._last_heard > self.expires_s + 1.0:
                    await self._request()  # the request was lost (disconnect): ask again
                continue
            batch, renew = [], first is None
            if first is not None:
                batch.append(first)
            while len(batch) < batch_max and not self._queue.empty():
                msg = self._queue.get_nowait()
                if msg is None:
                    renew = True
                else:
                    batch.append(msg)
            data = []
            for msg in batch:
                self._last_heard = time.monotonic()
                status = msg.headers.get("Status") if msg.headers else None
                if status is None:
                    data.append(msg)
                elif status in ("408", "409", "404"):
                    renew = True  # request expired or was cancelled: ask again
            if data:
                self._credit -= len(data)
                await handle(data)
            if renew or self._credit <= self.pull_batch // 2:
                await self._request()

    async def close(self) -> None:
        await _unsubscribe(self._sub)


async def _unsubscribe(sub: Any) -> None:
    if sub is None:
        return
    try:
        await sub.unsubscribe()
    except Exception as exc:  # noqa: BLE001 - the connection may already be gone
        log.debug("unsubscribe at close: %s", exc)


def reply_sequence(reply: str) -> tuple[int, int]:
    """(stream sequence, messages pending) from a JetStream ack subject (v1 and v2 layouts); (0, 0) if neither.

    Cheaper than ``msg.metadata`` on the hot path of :class:`ContinuousPull`'s raw messages.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[10])
    return 0, 0


async def next_stored(js: JetStreamContext, stream: str, subject: str, seq: int) -> Any:
    """The first message of ``subject`` stored in ``stream`` at or after sequence ``seq``; None if there is none."""
    try:
        return await js.get_msg(stream, seq=seq, subject=subject, next=True)
    except NotFoundError:
        return None


class _Settable(Protocol):
    def set(self, value: float) -> None: ...


async def report_lag(client: BusClient, durables: Sequence[Durable], interval_s: float, stop: asyncio.Event,
                     on_lag: Callable[[Durable, int, int], None], reconnects: _Settable | None = None) -> None:
    """Every ``interval_s`` until ``stop``: ``on_lag(durable, pending, ack_pending)`` per consumer (best effort:
    skipped while the broker is away), and the client's reconnect count into ``reconnects``."""
    while not stop.is_set():
        for durable in durables:
            try:
                info = await client.js.consumer_info(durable.stream, durable.name)
                on_lag(durable, info.num_pending or 0, info.num_ack_pending or 0)
            except Exception as exc:  # noqa: BLE001 - lag is best effort while the broker is away
                log.debug("consumer info failed: %s", exc)
        if reconnects is not None:
            reconnects.set(client.reconnects)
        await asyncio.sleep(interval_s)


def decode_as(data: bytes, kinds: tuple[type, ...], where: str) -> tuple[Any, tuple[str, str] | None]:
    """``(message, None)`` for a message of one of ``kinds``, else ``(None, (kind, reason))`` to dead-letter:
    kind ``malformed`` (no contract decodes it) or ``unexpected`` (a contract that does not belong ``where``)."""
    try:
        message = decode(data)
    except ContractError as exc:
        return None, ("malformed", str(exc))
    if not isinstance(message, kinds):
        return None, ("unexpected", f"{type(message).__name__} on {where}")
    return message, None


def dlq_subject(service: str) -> str:
    return f"dlq.{service}"


def dead_letter(service: str, subject: str, payload: bytes, reason: str) -> tuple[str, bytes]:
    """The dead-letter subject and encoded :class:`DeadLetter` of one rejected input (logged as a warning)."""
    log.warning("dead letter: %s", reason)
    letter = DeadLetter(service=service, subject=subject, reason=reason, payload=payload, publish_time=time.time())
    return dlq_subject(service), encode(letter)


async def publish_acked(client: BusClient, items: Sequence[tuple[str, bytes, dict[str, str] | None]],
                        timeout_s: float = ACK_TIMEOUT_S) -> None:
    """Publish ``(subject, data, headers)`` items; return once JetStream acknowledged them all, sending everything
    again after ``timeout_s`` or a JetStream error.

    Only each stream's last message asks for an ack: the server stores one connection's messages to a stream in
    the order they were sent, so that ack covers the rest (a per-message ack costs a future, a reply subject and
    a callback each: about half a service's time). A resend is harmless: the ``Nats-Msg-Id`` of each message
    makes JetStream drop copies that did arrive. Streams are told apart by the first subject token (each of
    ours holds ``<token>.>``).
    """
    if not items:
        return
    last_of: dict[str, int] = {}
    for i, (subject, _, _) in enumerate(items):
        last_of[subject.split(".", 1)[0]] = i
    acked = set(last_of.values())
    while True:
        futures = []
        for i, (subject, data, headers) in enumerate(items):
            if i in acked:
                futures.append(await client.js.publish_async(subject, data, headers=headers or None))
            else:
                await client.nc.publish(subject, data, headers=headers or None)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=timeout_s)
            return
        except Exception as exc:  # noqa: BLE001 - a timeout or a JetStream error: the batch goes again
            log.warning("%d publish(es) not acknowledged (%s: %s); sending them again", len(items),
                        type(exc).__name__, exc)
