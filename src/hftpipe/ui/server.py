"""Serve the UI with gunicorn: threads (live pages hold a server-sent-events response for a whole replay),
time limits on slow or idle clients, a connection cap and no version in the ``Server`` header.

What each limit does (values from the ``ui`` section of params.yaml):

- a new connection that sends nothing for 5 s (gunicorn's wait before it frees the thread) goes back to
  the poller, where it is closed after ``keepalive_s``; so is an idle keep-alive connection;
- once a client has started a request, it has ``request_timeout_s`` to send all of it (head and body),
  and each write of the answer may wait that long for the client to read: half-sent or trickled
  requests hold a thread for at most that long;
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
    """An accepted connection with time limits while a thread serves it.

    gunicorn puts a connection in blocking mode (no limit) while a thread serves it: a client that
    sends half a request and stops, or trickles a byte now and then, would hold that thread forever.
    Here each time a thread takes the connection (blocking mode on) a deadline starts: reading the
    request (head and body) must be done within ``io_timeout`` seconds, after which the client looks
    like one that hung up (closed quietly). Writing gets ``io_timeout`` per send, so a long stream of
    server-sent events is fine while a client that stops reading is a broken pipe.
    """

    io_timeout: float = 10.0
    _deadline: float | None = None

    def setblocking(self, flag: bool) -> None:
        if flag:
            self._deadline = time.monotonic() + self.io_timeout
            self.settimeout(self.io_timeout)
        else:
            self._deadline = None
            super().setblocking(False)

    _closing = False

    def shutdown(self, how: int) -> None:
        # gunicorn closes "gracefully" on its main loop: FIN, then up to 2 s reading until the peer
        # closes too. A client that never closes would stall every connection of the worker that long.
        super().shutdown(how)
        self._closing = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._closing:
            super().settimeout(0.0)  # drain what has arrived, never wait (BlockingIOError ends the drain)
            return super().recv(bufsize, flags)
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                return b""
            self.settimeout(left)
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            return b""

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._deadline is not None:
            self.settimeout(self.io_timeout)
        try:
            super().sendall(data, flags)
        except TimeoutError as exc:
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from exc

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        if self._deadline is not None:
            self.settimeout(self.io_timeout)
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

    io_timeout: float = 10.0

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

    def handle_request(self, req: Any, conn: Any) -> Any:
        # A body the app refuses unread (413) is not drained, so the connection cannot be reused: say
        # "Connection: close" in the answer rather than keep-alive and then hang up on the next request.
        limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        if limit is not None:
            for name, value in req.headers:
                if (name == "CONTENT-LENGTH" and value.strip().isdigit() and int(value) > limit) or \
                        (name == "TRANSFER-ENCODING" and "chunked" in value.lower()):
                    req.must_close = True
        return super().handle_request(req, conn)


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
