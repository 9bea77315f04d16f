"""Running a bus service as a process: pid and ready files, SIGTERM, a Prometheus endpoint.

``hftpipe run`` (and tests) start a service, wait for ``HFTPIPE_HOME/run/<name>.ready`` to appear, and stop
it with SIGTERM; the files go away when the service exits cleanly (a ``.pid`` left behind after a crash is
harmless: the next start overwrites it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self

from prometheus_client import CollectorRegistry, start_http_server

from hftpipe import paths
from hftpipe.errors import BusError

log = logging.getLogger(__name__)


class ServiceRun:
    """The pid/ready files of one running service."""

    def __init__(self, name: str) -> None:
        self.name = name
        run_dir = paths.sub("run")
        self.pid_file = run_dir / f"{name}.pid"
        self.ready_file = run_dir / f"{name}.ready"

    def __enter__(self) -> Self:
        self.ready_file.unlink(missing_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")
        return self

    def ready(self, detail: str = "") -> None:
        """Say the service is connected and consuming/publishing (the file holds a one-line detail)."""
        self.ready_file.write_text(f"{os.getpid()} {detail}\n")
        log.info("%s ready %s", self.name, detail)

    def __exit__(self, *exc: object) -> None:
        for path in (self.ready_file, self.pid_file):
            try:
                if path.read_text().split(" ", 1)[0].strip() == str(os.getpid()):
                    path.unlink()
            except OSError:
                pass


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> int:
    """Expose ``registry`` on http://host:port/metrics (0: off); returns the port.

    Raises:
        BusError: the port is taken.
    """
    if port <= 0:
        return 0
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise BusError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; set another *.metrics_port") from None
    return int(server.server_port)


class BusService(Protocol):
    """What :func:`serve_until_stopped` runs: a service with a start, a loop and a close."""

    async def start(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


class _Closable(Protocol):
    async def close(self) -> None: ...


async def serve_until_stopped(service: BusService, client: _Closable, registry: CollectorRegistry, metrics_port: int,
                              stop: asyncio.Event, on_ready: Callable[[str], None] | None,
                              ready_detail: Callable[[int], str],
                              on_started: Callable[[], None] | None = None) -> None:
    """Start ``service``, expose its metrics, say it is ready, run it until ``stop``; always close it, then
    its bus client.

    ``ready_detail(metrics port)`` is the one line ``on_ready`` gets (the ready file's detail); ``on_started``
    runs between the metrics endpoint and the ready line (e.g. a model reloader's thread).
    """
    try:
        await service.start()
        port = serve_metrics(registry, metrics_port)
        if on_started is not None:
            on_started()
        if on_ready:
            on_ready(ready_detail(port))
        await service.run(stop)
    finally:
        await service.close()
        await client.close()


def ready_path(name: str) -> Path:
    return paths.sub("run") / f"{name}.ready"
