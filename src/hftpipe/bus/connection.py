"""Connecting to NATS with a reconnect policy, and creating the JetStream streams idempotently.

Streams (one per subject family, limits from the ``bus`` section of params.yaml):

- ``MD``: ``md.>``, book updates and gaps from the feeds;
- ``SIG``: ``sig.>``, signals;
- ``DLQ``: ``dlq.>``, dead letters.

Every producer sets ``Nats-Msg-Id`` to ``<symbol>:<seq>`` so JetStream drops a republished message inside
``bus.duplicate_window_s`` (a feed or the signal service restarted after publishing, before recording it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from hftpipe.config import BusConfig
from hftpipe.errors import BusError

log = logging.getLogger(__name__)

STREAMS: dict[str, str] = {"MD": "md.>", "SIG": "sig.>", "DLQ": "dlq.>"}
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_\-]")


def subject_token(name: str) -> str:
    """A symbol or venue as one subject token: '.', '*', '>' and spaces would split or wildcard it."""
    token = _TOKEN_BAD.sub("_", name)
    if not token:
        raise BusError(f"{name!r} cannot be used in a subject")
    return token


def md_subject(venue: str, symbol: str) -> str:
    return f"md.{subject_token(venue)}.{subject_token(symbol)}"


def sig_subject(symbol: str) -> str:
    return f"sig.{subject_token(symbol)}"


def msg_id(symbol: str, seq: int) -> dict[str, str]:
    """The dedup header of one message: JetStream keeps the first of two publishes with the same id."""
    return {"Nats-Msg-Id": f"{symbol}:{seq}"}


def bus_url(cfg: BusConfig) -> str:
    return f"nats://{cfg.host}:{cfg.port}"


@dataclass
class BusClient:
    """A connected client: core NATS, JetStream, and counters the services export as metrics."""

    nc: Client
    js: JetStreamContext
    reconnects: int = 0
    disconnects: int = 0
    on_reconnect: list[Callable[[], None]] = field(default_factory=list)
    closing: bool = False

    async def close(self) -> None:
        self.closing = True
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real exit
                await self.nc.close()


async def connect(cfg: BusConfig, name: str, url: str | None = None, max_pending: int = 4000) -> BusClient:
    """Connect with unlimited reconnects (a NATS restart must not need the service restarted).

    Raises:
        BusError: nothing answers at the URL within ``bus.connect_timeout_s`` (say `hftpipe bus up`).
    """
    url = url or bus_url(cfg)
    holder: dict[str, BusClient] = {}

    async def _disconnected() -> None:
        client = holder.get("c")
        if client is None or client.closing:
            return
        client.disconnects += 1
        log.warning("%s: disconnected from %s; reconnecting", name, url)

    async def _reconnected() -> None:
        client = holder.get("c")
        if client is not None:
            client.reconnects += 1
            for hook in client.on_reconnect:
                hook()
        log.warning("%s: reconnected to %s", name, url)

    async def _error(exc: Exception) -> None:
        log.debug("%s: nats client error: %s", name, exc)

    try:
        nc = await nats.connect(
            url, name=name, connect_timeout=cfg.connect_timeout_s, reconnect_time_wait=cfg.reconnect_wait_s,
            max_reconnect_attempts=-1, allow_reconnect=True, ping_interval=5, max_outstanding_pings=3,
            disconnected_cb=_disconnected, reconnected_cb=_reconnected, error_cb=_error,
            pending_size=64 * 1024 * 1024)
    except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
        raise BusError(f"cannot reach NATS at {url} ({type(exc).__name__}): start it with `hftpipe bus up` "
                       "or set bus.host/bus.port") from None
    client = BusClient(nc=nc, js=nc.jetstream(timeout=5.0, publish_async_max_pending=max_pending))
    holder["c"] = client
    return client


def stream_config(name: str, subjects: str, cfg: BusConfig) -> StreamConfig:
    return StreamConfig(
        name=name, subjects=[subjects], retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=cfg.max_age_s, max_msgs=cfg.max_msgs, max_bytes=cfg.max_bytes, discard=DiscardPolicy.OLD,
        duplicate_window=cfg.duplicate_window_s)


async def ensure_streams(js: JetStreamContext, cfg: BusConfig) -> list[str]:
    """Create the streams, or update their limits to params.yaml's; safe to call from every service.

    Returns the names of the streams that were created (not those that existed).
    """
    return [name for name, subjects in STREAMS.items() if await ensure_stream(js, name, subjects, cfg, update=True)]


async def ensure_stream(js: JetStreamContext, name: str, subjects: str, cfg: BusConfig, update: bool = False) -> bool:
    """Create one stream unless it exists (then, with ``update``, set its limits to params.yaml's).

    Returns whether this call created it (not when another service did between the two calls).

    Raises:
        BusError: the server refuses the stream (e.g. its subjects overlap another stream's).
    """
    wanted = stream_config(name, subjects, cfg)
    try:
        await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream(wanted)
        except BadRequestError as exc:  # another service created it between the two calls
            if "already in use" not in str(exc):
                raise BusError(f"cannot create stream {name} ({subjects}): {exc}") from None
            return False
        log.info("created stream %s (%s)", name, subjects)
        return True
    if update:
        await js.update_stream(wanted)
    return False
