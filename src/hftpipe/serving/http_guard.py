"""HTTP hardening for our uvicorn servers, without kserve: deadlines, a connection cap, safe log lines.

uvicorn's httptools protocol has a keep-alive timeout but no deadline for a request's head or body and no
cap on open connections: idle or half-sent connections are held forever, and enough of them exhaust file
descriptors (issue 10). :class:`GuardedHttpToolsProtocol` adds both; any uvicorn server gets them with
:func:`apply_connection_limits`. :func:`printable` and :class:`ClientErrorLog` keep client-controlled
values from forging or flooding log lines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def printable(value: object, limit: int = 300) -> str:
    """``value`` as one log-safe line: control characters and non-ASCII escaped (no forged lines), cut."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("unicode_escape").decode("ascii")


class ClientErrorLog:
    """One WARNING line per client error, at most ``burst`` per interval, then one summary line."""

    def __init__(self, interval_s: float, burst: int = 20, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self.clock = clock
        self._start = -math.inf
        self._logged = 0
        self._suppressed = 0

    def __call__(self, status: int, method: str, path: str, message: str) -> None:
        now = self.clock()
        if now - self._start >= self.interval_s:
            if self._suppressed:
                log.warning("%d more client errors in the last %.0f s were not logged one by one",
                            self._suppressed, now - self._start)
            self._start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self.burst:
            self._suppressed += 1
            return
        self._logged += 1
        log.warning("%d %s %s: %s", status, printable(method, 16), printable(path, 200), printable(message))


MAX_HEAD_BYTES = 64 * 1024  # request line + headers; ours need a few hundred bytes


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float  # from connect (or the end of the last response) to a complete request head
    body_timeout_s: float  # from the head to the complete body
    max_connections: int


_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                b"content-length: 24\r\n\r\nrequest not sent in time")
_FULL_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n"
             b"content-length: 26\r\n\r\ntoo many open connections\n")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus what it lacks: a deadline for a request's head and body (idle and
    half-sent connections are closed with 408), and a cap on open connections that closes the longest-idle
    connection to make room, so a probe still gets in while thousands of idle sockets are open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: ConnectionLimits = self.config.hftpipe_limits  # set by apply_connection_limits
        self._deadline: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._make_room():
            transport.write(_FULL_503)
            transport.close()
            return
        super().connection_made(transport)
        self.last_active = self.loop.time()
        self._arm(self.limits.header_timeout_s)

    def _make_room(self) -> bool:
        """Close the longest-idle connection (no request in progress); False if every one is busy."""
        idle = [c for c in self.connections
                if isinstance(c, GuardedHttpToolsProtocol) and (c.cycle is None or c.cycle.response_complete)]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_active)
        self.connections.discard(victim)
        victim._cancel()
        victim.transport.close()
        return True

    def _arm(self, seconds: float) -> None:
        self._cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._deadline is None:  # a new request on a keep-alive connection: its head has a deadline
            self._arm(self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        # httptools has no limit on the request head: raising here makes uvicorn answer 400 and close.
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise ValueError(f"request head over {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        self._cancel()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


def apply_connection_limits(config: Any, limits: ConnectionLimits, keep_alive_timeout_s: float) -> None:
    """Make a ``uvicorn.Config`` use the guarded httptools protocol with ``limits``."""
    config.http = GuardedHttpToolsProtocol
    config.timeout_keep_alive = keep_alive_timeout_s
    config.hftpipe_limits = limits
