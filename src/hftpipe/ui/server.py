"""Serve the UI with gunicorn: threads (live pages hold a server-sent-events response for a whole replay),
time limits on slow or idle clients, a connection cap and no version in the ``Server`` header.

What each limit does (values from the ``ui`` section of params.yaml):

- a new connection that sends nothing for 5 s (gunicorn's wait before it frees the thread) goes back to
  the poller, where it is closed after ``keepalive_s``; so is an idle keep-alive connection;
- once a client has started a request, every pause longer than ``request_timeout_s`` while it sends
  headers or body (or reads the answer) ends the connection, so half-sent requests do not hold a thread;
- at most ``max_connections`` open connections per worker (idle ones included); more wait in the
  listen backlog until one closes, so descriptors are never exhausted;
- request line, header count and header size are capped; the app itself caps bodies at 64 KiB.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from functools import partial
from typing import Any

import gunicorn.http.wsgi as gunicorn_wsgi
from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from hftpipe.config import UIConfig

log = logging.getLogger(__name__)

# gunicorn writes "Server: gunicorn" on every answer (its Response reads this module global when it is
# built). Say what answers, never which server software and version.
SERVER_HEADER = "hftpipe"
gunicorn_wsgi.SERVER = SERVER_HEADER
gunicorn_wsgi.SERVER_SOFTWARE = SERVER_HEADER  # what the app sees as SERVER_SOFTWARE


class TimedSocket(socket.socket):
    """An accepted connection whose blocking reads and writes give up after ``io_timeout`` seconds.

    gunicorn puts a connection in blocking mode (no limit) while a thread serves it: a client that
    sends half a request and stops would hold that thread forever. Here blocking mode means "blocking
    with a timeout"; a stalled sender then looks like one that hung up (closed quietly), a stalled
    reader like a broken pipe.
    """

    io_timeout: float = 30.0

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.io_timeout)
        else:
            super().setblocking(False)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            return b""

    def sendall(self, data: Any, flags: int = 0) -> None:
        try:
            super().sendall(data, flags)
        except TimeoutError as exc:
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from exc

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        try:
            return super().sendfile(file, offset, count)
        except TimeoutError as exc:
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from exc


class UiWorker(ThreadWorker):
    """gunicorn's threaded worker, with :class:`TimedSocket` connections that get a thread only once
    they have sent something.

    gunicorn hands every new connection to a thread, which waits up to 5 s for its first byte: a few
    hundred silent connections would keep every thread waiting and queue real requests behind them for
    minutes. Here a new connection waits in the poller like an idle keep-alive one (no thread), and is
    closed after ``keepalive`` seconds of silence.
    """

    io_timeout: float = 30.0

    def accept(self, listener: socket.socket) -> None:
        try:
            plain, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        sock = TimedSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.io_timeout = self.io_timeout
        self.nr_conns += 1
        conn = TConn(self.cfg, sock, address, listener.getsockname())  # leaves the socket non-blocking
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))


def gunicorn_options(ui: UIConfig) -> dict[str, Any]:
    """gunicorn settings for the UI from the ``ui`` config section."""
    host = f"[{ui.host}]" if ":" in ui.host else ui.host
    return {
        "bind": [f"{host}:{ui.port}"],
        "workers": ui.server_workers,
        "worker_class": f"{__name__}.UiWorker",
        "threads": ui.server_threads,
        "worker_connections": ui.max_connections,
        "keepalive": max(1, ui.keepalive_s),  # also how long a silent new connection may wait
        "timeout": 60,  # a worker whose main loop stalls this long is restarted
        "graceful_timeout": 5,  # live pages are endless streams: do not wait 30 s for them at shutdown
        "limit_request_line": 4094,
        "limit_request_fields": 50,
        "limit_request_field_size": 8190,
        "backlog": 256,
        "proc_name": "hftpipe-ui",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "control_socket_disable": True,  # no unix control socket in $HOME (read-only in the container)
    }


class UiServer(BaseApplication):
    """The UI app under gunicorn, configured in code (no gunicorn command line or config file is read)."""

    def __init__(self, app: Flask, ui: UIConfig) -> None:
        self.application = app
        self.options = gunicorn_options(ui)
        UiWorker.io_timeout = ui.request_timeout_s  # inherited by the forked workers
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(app: Flask, ui: UIConfig) -> None:
    """Run the UI under gunicorn until SIGTERM / SIGINT."""
    UiServer(app, ui).run()
