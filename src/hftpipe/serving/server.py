"""Run the KServe model server for ``serve.*``: loopback by default, body limit, model ready before listening.

KServe 0.21 binds its REST server to 0.0.0.0 and starts gRPC unless told otherwise; :class:`HostModelServer`
binds the configured host instead, and gRPC stays off unless ``serve.grpc`` is true.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import re
import sys
import warnings
from typing import Any

import orjson
import uvloop
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from hftpipe.config import Config, ServeConfig
from hftpipe.errors import ConfigError
from hftpipe.serving._kserve import (
    FASTAPI_APP_IMPORT_STRING,
    DataPlane,
    GRPCServer,
    InferenceRequest,
    InferRequest,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    RESTServer,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
    model_server,
)
from hftpipe.serving.http_guard import ClientErrorLog, ConnectionLimits, apply_connection_limits, printable
from hftpipe.serving.predictor import CLIENT_HEADER, LobPredictor, TooManyRequests
from hftpipe.serving.protocol import INFERENCE_HEADER, BadRequest, split_v2_body
from hftpipe.serving.runtime import model_source

log = logging.getLogger(__name__)

_REGISTERED_NAME = re.compile(r"^models:/([^@/]+)")
_CLIENT_HEADER = CLIENT_HEADER.encode()
REPOSITORY_PREFIX = "/v2/repository"


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
    """ASGI middleware: answer 413 for bodies over ``max_bytes`` before any parsing happens, and pass the
    client's address to the predictor as header ``x-hftpipe-client``."""

    def __init__(self, app: Any, max_bytes: int, repository_api: bool = False) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.repository_api = repository_api

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        headers = scope.get("headers", [])
        for key, value in headers:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif key == _CLIENT_HEADER:
                headers = [h for h in headers if h[0] != _CLIENT_HEADER]  # never trust a client's own claim
        # The predictor only sees headers: hand it the socket's peer address for per-client limits.
        client = scope.get("client")
        scope["headers"] = [*headers, (_CLIENT_HEADER, (client[0] if client else "").encode())]
        if not self.repository_api and scope["path"].startswith(REPOSITORY_PREFIX):
            # Second guard, independent of how the routes were removed: the repository API is off.
            await _send_json(send, 404, {"error": "the repository API is off (serve.repository_api)"})
            return
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
        await _send_json(send, 413, {"error": f"request body is {size}; the limit is {self.max_bytes} bytes "
                                              "(serve.max_body_bytes): send fewer windows per request"})


async def _send_json(send: Any, status: int, content: dict[str, Any]) -> None:
    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _RESTServer(RESTServer):
    """KServe's REST server on a configurable host, with our body limit, timeouts, connection cap, guarded
    repository endpoints and quiet, escaped client-error logging.

    KServe's TimingMiddleware is left out: it only feeds a debug log line (the latency histograms live in
    ``Model.__call__``) and resolves the route name a second time on every request.
    """

    def __init__(self, *args: Any, host: str, serve_cfg: ServeConfig, repository_token: str | None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serve_cfg = serve_cfg
        self.repository_token = repository_token
        self.config.host = host
        self.config.access_log = False  # a line per request costs more than a small model's forward pass
        # uvicorn applies access_log when its Config is built (before this line): silence the logger itself.
        access = logging.getLogger("uvicorn.access")
        access.handlers, access.propagate = [], False
        # The C parser (not h11), with header/body timeouts and the connection cap uvicorn lacks.
        apply_connection_limits(self.config, ConnectionLimits(serve_cfg.header_timeout_s, serve_cfg.body_timeout_s,
                                                              serve_cfg.max_connections),
                                serve_cfg.keep_alive_timeout_s)
        self.max_body_bytes = serve_cfg.max_body_bytes
        self.client_errors = ClientErrorLog(serve_cfg.log_interval_s)

    def _add_middlewares(self, app: Any) -> None:
        app.add_middleware(BodyLimit, max_bytes=self.max_body_bytes, repository_api=self.serve_cfg.repository_api)

    def _register_endpoints(self, app: Any) -> None:
        super()._register_endpoints(app)
        # KServe registers the model repository extension (load/unload) for anyone: an unauthenticated
        # unload takes the model out of service. Off unless serve.repository_api and a token are set.
        _drop_routes(app.router, REPOSITORY_PREFIX)
        app.add_api_route("/v2/health/detail", self._health_detail, methods=["GET"], tags=["V2"],
                          summary="Served version versus the version serve.model_uri points at")
        if self.serve_cfg.repository_api:
            app.add_api_route("/v2/repository/models/{model_name}/load", self._load, methods=["POST"],
                              tags=["V2"])
            app.add_api_route("/v2/repository/models/{model_name}/unload", self._unload, methods=["POST"],
                              tags=["V2"])

    async def _health_detail(self) -> dict[str, Any]:
        models = self.dataplane.model_registry.get_models()
        details = [m.health_detail() for m in models.values() if hasattr(m, "health_detail")]
        return {"ready": await self.dataplane.ready(), "models": details}

    def _authorise(self, request: Request) -> None:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {self.repository_token}"
        if not self.repository_token or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorised("the repository API needs 'Authorization: Bearer <HFTPIPE_REPOSITORY_TOKEN>'")

    def _repository_model(self, model_name: str) -> Any:
        model = self.dataplane.model_registry.get_model(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        return model

    async def _unload(self, model_name: str, request: Request) -> dict[str, Any]:
        """Take the model out of service: predictions and readiness answer 503 until it is loaded again."""
        self._authorise(request)
        self._repository_model(model_name).ready = False
        log.warning("repository API: %s unloaded (not ready) by %s", printable(model_name),
                    request.client.host if request.client else "?")
        return {"name": model_name, "unload": True}

    async def _load(self, model_name: str, request: Request) -> dict[str, Any]:
        """Back in service, after one reload check of the model source (picks up a new version)."""
        self._authorise(request)
        model = self._repository_model(model_name)
        if getattr(model, "reloader", None) is not None:
            await asyncio.to_thread(model.reloader.check_once)
        model.ready = True
        log.warning("repository API: %s loaded (ready) by %s", printable(model_name),
                    request.client.host if request.client else "?")
        return {"name": model_name, "load": True}

    def _add_exception_handlers(self, app: Any) -> None:
        # KServe's handlers log every exception with a traceback at ERROR (a flood for a client's mistakes,
        # and a forged log line when a value holds a newline): one escaped line per client error instead.
        for exc_type, status in _CLIENT_ERRORS.items():
            app.add_exception_handler(exc_type, self._client_error_handler(status))
        app.add_exception_handler(ClientDisconnect, _client_went_away)
        app.add_exception_handler(Exception, _server_error)

    def _client_error_handler(self, status: int) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            message = str(exc)
            if isinstance(exc, NotImplementedError):
                message = f"{message} (address the model without a version)"
            # scope["path"], not request.url: urllib drops newlines, hiding what the client really sent.
            self.client_errors(status, request.method, request.scope.get("path", ""), message)
            headers = {"www-authenticate": "Bearer"} if status == 401 else None
            return JSONResponse(status_code=status, content={"error": message}, headers=headers)

        return handler


def _drop_routes(router: Any, prefix: str) -> None:
    """Remove every route under ``prefix``, also inside included routers (FastAPI >= 0.120 nests them)."""
    router.routes = [r for r in router.routes if not str(getattr(r, "path", "") or "").startswith(prefix)]
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            _drop_routes(inner, prefix)


class Unauthorised(Exception):
    """A repository API call without the right bearer token (HTTP 401)."""


# Client mistakes and their status; anything else is ours (500, logged with its traceback).
_CLIENT_ERRORS: dict[type[Exception], int] = {
    InvalidInput: 400, UnsupportedProtocol: 400, ModelNotFound: 404, NotImplementedError: 404,
    Unauthorised: 401, TooManyRequests: 429, ModelNotReady: 503, ServerNotReady: 503, ServerNotLive: 503,
}


async def _client_went_away(request: Request, exc: Exception) -> JSONResponse:
    """The client closed (or was closed for a timeout) before its body arrived: nobody reads the answer."""
    log.info("client went away before sending its body: %s %s", request.method,
             printable(request.scope.get("path", "")))
    return JSONResponse(status_code=400, content={"error": "incomplete request body"})


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("500 %s %s: %s", request.method, printable(request.scope.get("path", "")), printable(exc),
              exc_info=exc)
    return JSONResponse(status_code=500, content={"error": f"internal error: {type(exc).__name__}"})


class _DataPlane(DataPlane):
    """KServe's data plane with readiness that means "a model is served", and a strict V2 body decoder."""

    async def ready(self) -> bool:
        """Ready only while at least one model is registered and every registered model is ready."""
        models = self.model_registry.get_models()
        if not models:
            return False
        for name in list(models):
            if not await self.model_registry.is_model_ready(name):
                return False
        return True

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        """Decode a V2 body that FastAPI did not parse as JSON: binary tensors (sizes checked) or plain JSON
        sent without a content type (tritonclient's JSON mode)."""
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        try:
            head, binary = split_v2_body(body, headers.get(INFERENCE_HEADER))
        except BadRequest as exc:
            raise InvalidInput(str(exc)) from None
        for inp in head["inputs"]:
            if inp.get("name") in binary:
                inp["data"] = []  # validated below with the rest; the decoded array is put back after
        try:
            request = InferenceRequest.model_validate(head)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidInput(f"not an inference request: {where}: {first.get('msg')}") from None
        infer_request = InferRequest.from_inference_request(request, model_name)
        for inp in infer_request.inputs:
            if inp.name in binary:
                inp._data = binary[inp.name]  # numpy, as decoded and size-checked by split_v2_body
        return infer_request


class HostModelServer(model_server.ModelServer):
    """KServe's ModelServer with the REST host as a setting (KServe 0.21 hard-codes 0.0.0.0), one worker."""

    def __init__(self, host: str, serve_cfg: ServeConfig, repository_token: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.serve_cfg = serve_cfg
        self.repository_token = repository_token
        self.dataplane = _DataPlane(model_registry=self.registered_models)

    def start(self, models: list[Any]) -> None:
        """ModelServer.start for one worker, with our REST server; blocks until SIGINT/SIGTERM."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = _RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            host=self.host, serve_cfg=self.serve_cfg, repository_token=self.repository_token,
            access_log_format=self.access_log_format, workers=1, grace_period=self.grace_period,
            event_loop=self.event_loop,
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


REPOSITORY_TOKEN_ENV = "HFTPIPE_REPOSITORY_TOKEN"


def check_serve_settings(serve_cfg: ServeConfig) -> str | None:
    """Check the hardening settings; return the repository API token (None when the API is off).

    Raises:
        ConfigError: a non-positive timeout or connection cap, or the repository API on without a token.
    """
    for key in ("keep_alive_timeout_s", "header_timeout_s", "body_timeout_s", "log_interval_s"):
        if getattr(serve_cfg, key) <= 0:
            raise ConfigError(f"serve.{key} must be > 0 seconds, got {getattr(serve_cfg, key)}")
    if serve_cfg.max_connections < 2:
        raise ConfigError(f"serve.max_connections must be >= 2, got {serve_cfg.max_connections}")
    _raise_fd_limit(serve_cfg.max_connections)
    if not serve_cfg.repository_api:
        return None
    token = os.environ.get(REPOSITORY_TOKEN_ENV, "")
    if len(token) < 16:
        raise ConfigError(f"serve.repository_api=true needs a token of at least 16 characters in "
                          f"${REPOSITORY_TOKEN_ENV} (callers send 'Authorization: Bearer <token>')")
    return token


def _raise_fd_limit(max_connections: int) -> None:
    """Make room for max_connections sockets plus the process's own files, or say what to do."""
    import resource

    needed = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise ConfigError(f"serve.max_connections={max_connections} needs {needed} file descriptors; "
                              f"the hard limit is {hard}: lower serve.max_connections or raise `ulimit -n`")


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
    repository_token = check_serve_settings(serve_cfg)
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
        serve_cfg=serve_cfg,
        repository_token=repository_token,
        workers=1,
        enable_latency_logging=False,  # KServe logs several lines per request otherwise
        enable_docs_url=False,
    )
    quiet_kserve()
    try:
        server.start([predictor])
    finally:
        predictor.stop()
