"""Run the KServe model server for ``serve.*``: loopback by default, body limit, model ready before listening.

KServe 0.21 binds its REST server to 0.0.0.0 and starts gRPC unless told otherwise; :class:`HostModelServer`
binds the configured host instead, and gRPC stays off unless ``serve.grpc`` is true.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import orjson

from hftpipe.config import Config
from hftpipe.errors import ConfigError
from hftpipe.serving._kserve import InvalidInput, model_server
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


class HostModelServer(model_server.ModelServer):
    """KServe's ModelServer with the REST host as a setting (KServe hard-codes 0.0.0.0)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def setup_event_loop(self) -> None:
        # ModelServer.start() builds the REST server, then calls this just before the event loop runs:
        # the one moment the uvicorn config can still be changed (kserve pinned to 0.21).
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        elif self.workers > 1:
            raise ConfigError("serve.workers > 1 is not supported: scale with replicas instead")
        log.info("REST on http://%s:%d%s", self.host, self.http_port,
                 f", gRPC on [::]:{self.grpc_port}" if self.enable_grpc else " (gRPC off)")
        super().setup_event_loop()


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
    predictor = build_predictor(cfg)  # the port only opens once the model answers: readiness == loaded
    server = HostModelServer(
        host=serve_cfg.host,
        http_port=serve_cfg.port,
        grpc_port=serve_cfg.grpc_port,
        enable_grpc=serve_cfg.grpc,
        workers=1,
        enable_latency_logging=False,  # KServe logs several lines per request otherwise
        enable_docs_url=False,
    )
    # Per-request access lines cost more than a small model's forward pass; errors still log.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("kserve").addFilter(_QuietInvalidInput())
    # KServe 0.21 answers with FastAPI's ORJSONResponse, which warns on every request in FastAPI >= 0.120.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    model_server.app.add_middleware(BodyLimit, max_bytes=serve_cfg.max_body_bytes)
    try:
        server.start([predictor])
    finally:
        predictor.stop()
