"""One NATS connection per UI process, fanned out to every browser as server-sent events.

The stream page (:mod:`hftpipe.ui.stream`) and the trading page (:mod:`hftpipe.ui.trading`) both need the
same plumbing: a background thread with its own event loop holding core subscriptions on some subjects,
a bounded queue per connected browser, and a fan-out that never lets a slow browser block the others (it
loses its oldest events instead). :class:`BusHub` is that plumbing; a page subclasses it to say which
subjects it follows, how a decoded message becomes a browser event, and what it remembers for a browser
that connects later.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any, ClassVar, Self, TypeVar

import orjson
from flask import current_app

from hftpipe.config import Config
from hftpipe.contracts import ContractError, decode
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)

CLIENT_QUEUE = 2000  # events buffered per browser before its oldest are dropped
Event = tuple[str, dict[str, Any]]
H = TypeVar("H", bound="BusHub")


class BusHub:
    """Subscribe once, fan out to every browser's queue. Subclasses set ``subjects``/``name`` and
    override :meth:`events` (message -> browser events) and, to keep state for newcomers, :meth:`remember`
    and :meth:`backlog`."""

    subjects: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str] = "hftpipe-ui-hub"

    def __init__(self, url: str, reconnect_wait_s: float = 0.5) -> None:
        self.url = url
        self.reconnect_wait_s = reconnect_wait_s
        self.connected = False
        self.dropped = 0
        self._clients: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- what a page overrides -------------------------------------------------------------------
    def events(self, message: Any) -> Iterable[Event]:
        """The browser events one decoded bus message becomes (none by default)."""
        return ()

    def remember(self, kind: str, event: dict[str, Any]) -> None:
        """Keep what a browser opening the page later needs (called under the hub's lock)."""

    def backlog(self) -> list[Event]:
        """Events queued for a browser as it subscribes (called under the hub's lock)."""
        return []

    # -- the shared plumbing ---------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)
            for item in self.backlog():
                q.put_nowait(item)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, kind: str, event: dict[str, Any]) -> None:
        """Hand one event to every browser, after :meth:`remember` has seen it."""
        with self._lock:
            self.remember(kind, event)
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

        async def _on_msg(msg) -> None:
            try:
                message = decode(msg.data)
            except ContractError:
                return
            for kind, event in self.events(message):
                self.publish(kind, event)

        async def _up() -> None:
            self.connected = True

        async def _down() -> None:
            self.connected = False

        async def _error(exc: Exception) -> None:  # the page shows "bus down"; keep the log quiet
            log.debug("%s: %s", self.name, exc)

        while not self._stop.is_set():
            try:
                nc = await nats.connect(self.url, name=self.name, max_reconnect_attempts=-1,
                                        reconnect_time_wait=self.reconnect_wait_s, connect_timeout=2,
                                        reconnected_cb=_up, disconnected_cb=_down, error_cb=_error)
            except Exception as exc:  # noqa: BLE001 - broker not up yet: the page says so, we retry
                log.debug("%s: cannot reach %s: %s", self.name, self.url, exc)
                await asyncio.sleep(1.0)
                continue
            self.connected = True
            for subject in self.subjects:
                await nc.subscribe(subject, cb=_on_msg)
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            await nc.close()


_HUB_LOCK = threading.Lock()


def app_hub(key: str, cls: type[H]) -> H:
    """The current app's hub of class ``cls``, started on first use (one per process)."""
    app = current_app
    found = app.extensions.get(key)
    if found is None:
        cfg: Config = app.config[CONFIG_KEY]
        with _HUB_LOCK:
            found = app.extensions.get(key)
            if found is None:
                found = cls(f"nats://{cfg.bus.host}:{cfg.bus.port}", cfg.bus.reconnect_wait_s).start()
                app.extensions[key] = found
    return found


def sse(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
