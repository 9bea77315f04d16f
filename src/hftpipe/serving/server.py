"""Run the KServe model server for ``serve.*``: loopback by default, body limit, model ready before listening.

KServe 0.21 binds its REST server to 0.0.0.0 and starts gRPC unless told otherwise; :class:`HostModelServer`
binds the configured host instead, and gRPC stays off unless ``serve.grpc`` is true.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import warnings
from typing import Any

import orjson
import uvloop

from hftpipe.config import Config
from hftpipe.errors import ConfigError
from hftpipe.serving._kserve import (
    FASTAPI_APP_IMPORT_STRING,
    GRPCServer,
    InvalidInput,
    RESTServer,
    model_server,
)
from hftpipe.serving.predictor import LobPredictor
from hftpipe.serving.runtime import model_source

log = logging.getLogger(__name__)

_REGISTERED_NAME = re.compile(r"^models:/([^@/]+)")


def endpoint_name(cfg: Config) -> str:
    """URL name of the served model: the registered name in ``serve.model_uri``, else register.model_name."""
    match = _REGISTERED_NAME.match(cfg.serve.model_uri)
    return match.group(1) if match else cfg.register.model_name


class _QuietInvalidInput(logging.Filter):
    """Drop KServe's ERROR traceback for a caller's bad input (400); the predictor logs one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InvalidInput)


class BodyLimit:
    """ASGI middleware: answer 413 for bodies over ``max_bytes`` before any parsing happens."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                declared = int(value) if value.isdigit() else None
                break
        if declared is not None:
            if declared > self.max_bytes:
                await self._reject(send, declared)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked upload): read at most max_bytes + 1, then replay what was read.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(send, None)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Any, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else f"more than {self.max_bytes} bytes"
        body = orjson.dumps({"error": f"request body is {size}; the limit is {self.max_bytes} bytes "
                                      "(serve.max_body_bytes): send fewer windows per request"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _RESTServer(RESTServer):
    """KServe's REST server on a configurable host, with our body limit in front.

    KServe's TimingMiddleware is left out: it only feeds a debug log line (the latency histograms live in
    ``Model.__call__``) and resolves the route name a second time on every request.
    """

    def __init__(self, *args: Any, host: str, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.config.access_log = False  # a line per request costs more than a small model's forward pass
        self.config.http = "httptools"  # the C parser, not h11 (uvicorn's "auto" falls back silently)
        self.max_body_bytes = max_body_bytes

    def _add_middlewares(self, app: Any) -> None:
        app.add_middleware(BodyLimit, max_bytes=self.max_body_bytes)


class HostModelServer(model_server.ModelServer):
    """KServe's ModelServer with the REST host as a setting (KServe 0.21 hard-codes 0.0.0.0), one worker."""

    def __init__(self, host: str, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes

    def start(self, models: list[Any]) -> None:
        """ModelServer.start for one worker, with our REST server; blocks until SIGINT/SIGTERM."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = _RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            host=self.host, max_body_bytes=self.max_body_bytes, access_log_format=self.access_log_format,
            workers=1, grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = GRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                           kwargs=vars(model_server.args), grace_period=self.grace_period)
            self.servers.append(self._grpc_server.start(self.max_threads))
        log.info("REST on http://%s:%d%s", self.host, self.http_port,
                 f", gRPC on [::]:{self.grpc_port}" if self.enable_grpc else " (gRPC off)")
        self.register_signal_handler()

        async def main() -> None:
            self.setup_event_loop()  # KServe's exception handler and executor, on the running loop
            await self._serve()

        # uvloop: KServe's asyncio.run would use the stdlib loop, whose socket writes and scheduling cost
        # about a tenth of a small request's CPU; uvicorn's own loop="uvloop" is unused when KServe runs it.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())


def quiet_kserve() -> None:
    """No per-request log lines or warnings from KServe (each costs more than a small model's forward)."""
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("kserve").addFilter(_QuietInvalidInput())
    # KServe 0.21 answers with FastAPI's ORJSONResponse, which warns on every request in FastAPI >= 0.120.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def build_predictor(cfg: Config) -> LobPredictor:
    """The loaded, smoke-tested predictor for ``serve.model_uri`` (raises ModelError/RegistryError)."""
    name = endpoint_name(cfg)
    predictor = LobPredictor(name, model_source(cfg.serve.model_uri, name), cfg.serve)
    predictor.load()
    return predictor


def serve(cfg: Config) -> None:
    """Load the model, then serve it until SIGINT/SIGTERM (blocks; must run in the main thread)."""
    serve_cfg = cfg.serve
    if serve_cfg.workers != 1:
        raise ConfigError("serve.workers must be 1: streaming windows and hot reload live in one process; "
                          "scale with more replicas (serving/inferenceservice.yaml) instead")
    if serve_cfg.max_body_bytes < 1024:
        raise ConfigError(f"serve.max_body_bytes={serve_cfg.max_body_bytes} is too small for one book window")
    import torch

    torch.set_num_threads(serve_cfg.torch_threads)
    # The hot-reload watcher polls the registry from a thread (about 9 ms of Python under the GIL per poll);
    # the event loop gets the GIL back within 0.5 ms instead of the default 5 ms, keeping it out of the p99.
    sys.setswitchinterval(0.0005)
    predictor = build_predictor(cfg)  # the port only opens once the model answers: readiness == loaded
    # Everything imported and loaded so far lives for the whole process: keep the collector off it, so
    # full collections (latency spikes) only walk what requests allocate.
    gc.collect()
    gc.freeze()
    server = HostModelServer(
        host=serve_cfg.host,
        http_port=serve_cfg.port,
        grpc_port=serve_cfg.grpc_port,
        enable_grpc=serve_cfg.grpc,
        max_body_bytes=serve_cfg.max_body_bytes,
        workers=1,
        enable_latency_logging=False,  # KServe logs several lines per request otherwise
        enable_docs_url=False,
    )
    quiet_kserve()
    try:
        server.start([predictor])
    finally:
        predictor.stop()
