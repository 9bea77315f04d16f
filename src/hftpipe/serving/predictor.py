"""The KServe predictor: window and streaming mode on V1 and V2 REST, over a hot-swappable model.

Kept small on purpose: parsing lives in :mod:`hftpipe.serving.protocol`, rolling windows in
:mod:`hftpipe.serving.stream`, loading and hot reload in :mod:`hftpipe.serving.runtime`, and the
preprocessing is :meth:`hftpipe.models.bundle.ModelBundle.predict_proba` (the training feature code).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson

from hftpipe.config import ServeConfig
from hftpipe.errors import HftpipeError, ModelError
from hftpipe.serving import metrics
from hftpipe.serving._kserve import InferOutput, InferRequest, InferResponse, InvalidInput, kserve
from hftpipe.serving.batching import MicroBatcher
from hftpipe.serving.protocol import (
    BOOK_INPUT,
    WINDOW_INPUT,
    BadRequest,
    Layout,
    StreamRequest,
    TensorInput,
    parse_v1,
    parse_v2,
    predictions,
)
from hftpipe.serving.runtime import (
    ModelHolder,
    ModelSource,
    Reloader,
    ServedModel,
    fallback_source,
    load_served,
)
from hftpipe.serving.stream import RollingWindows, SymbolLimit

log = logging.getLogger(__name__)

CLIENT_HEADER = "x-hftpipe-client"  # set by the server's middleware from the socket (any sent value is replaced)


class TooManyRequests(Exception):
    """A client went over a per-client limit (HTTP 429); the message says which and what to do."""


class LobPredictor(kserve.Model):
    """Serves the model behind ``source`` as endpoint ``name``; ``load()`` makes it ready."""

    def __init__(self, name: str, source: ModelSource, cfg: ServeConfig) -> None:
        # return_response_headers: predict() can set the content type of the JSON bytes it returns for V1.
        super().__init__(name, return_response_headers=True)
        self.source = source
        self.cfg = cfg
        self.allowed = frozenset(cfg.symbols)
        self.windows = RollingWindows(cfg.max_symbols, cfg.max_new_symbols_per_client, cfg.log_interval_s)
        self.fallback = False
        self.holder: ModelHolder | None = None
        self.reloader: Reloader | None = None
        self.batcher = MicroBatcher()
        self._class_counters: dict[tuple[str, str], Any] = {}  # (version, label) -> prometheus child
        self._stream_symbols = metrics.STREAM_SYMBOLS.labels(name)

    def load(self) -> bool:
        """Fetch, load and smoke-test the model; raises (and stays not ready) if any step fails.

        When the configured alias (e.g. champion) cannot be loaded and ``serve.allow_fallback`` is on, the
        ``previous`` alias is served instead, with a loud warning; the watcher keeps retrying the alias.
        """
        failed: tuple[str, str] | None = None
        try:
            served = load_served(self.source)
        except (HftpipeError, OSError) as exc:
            fallback = fallback_source(self.source) if self.cfg.allow_fallback else None
            if fallback is None:
                hint = ("" if self.cfg.allow_fallback or fallback_source(self.source) is None else
                        "; serve.allow_fallback=true would serve the 'previous' alias meanwhile")
                raise ModelError(f"cannot serve {self.source.uri}: {exc}{hint}") from exc
            try:
                version = self.source.current_version()
            except Exception:  # noqa: BLE001 - only for the message and the retry bookkeeping
                version = "?"
            try:
                served = load_served(fallback)
            except (HftpipeError, OSError) as exc2:
                raise ModelError(f"cannot serve {self.source.uri} ({exc}) nor its fallback {fallback.uri} "
                                 f"({exc2})") from exc2
            failed = (version, f"{type(exc).__name__}: {exc}")
            log.critical("FALLBACK: %s (version %s) cannot be loaded: %s. Serving %s version %s instead "
                         "(serve.allow_fallback); the alias is retried every %.0f s", self.source.uri, version, exc,
                         fallback.uri, served.version, self.cfg.retry_refused_s)
        self.fallback = failed is not None
        self.holder = ModelHolder(served)
        self.reloader = Reloader(self.holder, self.source, self.cfg.reload_interval_s,
                                 on_swap=self._swapped, on_refuse=self._refused,
                                 retry_refused_s=self.cfg.retry_refused_s, on_poll=self._polled)
        if failed is not None:
            self.reloader.source_version = failed[0]
            self.reloader.refuse(*failed)
        metrics.set_served(self.name, served.version)
        self._update_in_sync()
        log.info("serving %s as /v1/models/%s and /v2/models/%s", served.describe(), self.name, self.name)
        self.ready = True
        return self.ready

    def health_detail(self) -> dict[str, Any]:
        """What is served versus what the source points at (for /v2/health/detail)."""
        served = self.holder.current if self.holder else None
        reloader = self.reloader
        source_version = reloader.source_version if reloader else None
        return {
            "name": self.name, "ready": bool(self.ready), "source": self.source.uri,
            "served_version": served.version if served else None,
            "served_from": served.source if served else None,
            "source_version": source_version,
            "in_sync": served is not None and (source_version is None or source_version == served.version),
            "fallback": served is not None and served.source != self.source.uri,
            "refused": dict(reloader.refused) if reloader else {},
            **({"horizon": served.label_info["horizon"], "horizon_unit": served.label_info["horizon_unit"]}
               if served else {}),
        }

    def _update_in_sync(self) -> None:
        detail = self.health_detail()
        metrics.IN_SYNC.labels(self.name).set(1 if detail["in_sync"] else 0)
        if not detail["in_sync"]:
            log.warning("%s points at version %s but version %s is served (see /v2/health/detail)",
                        self.source.uri, detail["source_version"], detail["served_version"])

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 model metadata: the window-mode and streaming-mode inputs of the served model (-1: any B)."""
        bundle = self.holder.current.bundle
        columns = 4 * bundle.levels
        return [{"name": WINDOW_INPUT, "datatype": "FP64", "shape": [-1, bundle.window, columns]},
                {"name": BOOK_INPUT, "datatype": "FP64", "shape": [columns]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        classes = len(self.holder.current.bundle.class_names)
        return [{"name": "class", "datatype": "INT64", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes]}]

    def start(self) -> None:
        """Called by the model server once registered: start watching for new versions."""
        if self.reloader is not None:
            self.reloader.start()

    def stop(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()

    def _swapped(self, old: ServedModel, new: ServedModel) -> None:
        metrics.RELOADS.labels(self.name, "success").inc()
        metrics.set_served(self.name, new.version, previous=old.version)
        metrics.IN_SYNC.labels(self.name).set(1)

    def _polled(self, version: str) -> None:
        metrics.IN_SYNC.labels(self.name).set(1 if version == self.holder.current.version else 0)

    def _refused(self, version: str, reason: str) -> None:
        metrics.RELOADS.labels(self.name, "failure").inc()
        metrics.IN_SYNC.labels(self.name).set(0)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> bytes | InferResponse:
        """Answer one V1 (dict) or V2 (InferRequest) request; caller errors become 400 InvalidInput.

        A V1 answer is returned as JSON bytes (orjson, numpy-aware) with its content type set in
        ``response_headers``: KServe sends bytes as they are, instead of re-serialising a dict.
        """
        served = self.holder.current  # one model for the whole request, even if a swap happens meanwhile
        bundle = served.bundle
        layout = Layout(bundle.window, bundle.levels)
        v2 = isinstance(payload, InferRequest)
        try:
            if v2:
                request = parse_v2([_tensor_input(t) for t in payload.inputs], _parameters(payload.parameters),
                                   layout, self.allowed)
            else:
                if isinstance(payload, (bytes, str)):
                    # A body sent without a JSON content type reaches us undecoded.
                    try:
                        payload = orjson.loads(payload)
                    except orjson.JSONDecodeError as exc:
                        raise BadRequest(f"the request body is not JSON: {exc}") from None
                request = parse_v1(payload, layout, self.allowed)
        except BadRequest as exc:
            # The REST server's error handler logs one escaped line per client error.
            metrics.BAD_REQUESTS.labels(self.name, "v2" if v2 else "v1").inc()
            raise InvalidInput(str(exc)) from None

        stream: dict[str, Any] | None = None
        if isinstance(request, StreamRequest):
            try:
                window, stream = self._stream(request, served, (headers or {}).get(CLIENT_HEADER, ""))
            except SymbolLimit as exc:
                metrics.BAD_REQUESTS.labels(self.name, "v2" if v2 else "v1").inc()
                raise TooManyRequests(str(exc)) from None
            proba = (np.empty((0, len(bundle.class_names))) if window is None
                     else await self.batcher.predict_proba(bundle, window))
        else:
            proba = await self.batcher.predict_proba(bundle, request.windows)
            self.holder.recent = request.windows[-1:]
        names = bundle.class_names
        for c in proba.argmax(axis=1).tolist():
            self._class_counter(served.version, names[c]).inc()
        if v2:
            return _v2_response(payload, served, proba, stream)
        body: dict[str, Any] = dict(stream) if stream else {}
        body["predictions"] = predictions(proba, names)
        body["model_name"] = served.name
        body["model_version"] = served.version
        if response_headers is not None:
            response_headers["content-type"] = "application/json"
        return orjson.dumps(body)

    def _class_counter(self, version: str, label: str) -> Any:
        """The predictions counter for (version, label): ``labels()`` hashes and locks on every call."""
        key = (version, label)
        child = self._class_counters.get(key)
        if child is None:
            child = self._class_counters[key] = metrics.PREDICTIONS.labels(self.name, version, label)
        return child

    def _stream(self, request: StreamRequest, served: ServedModel,
                client: str) -> tuple[np.ndarray | None, dict[str, Any]]:
        """Update the symbol's rolling window; return it as (1, T, 4L) once full (else None) and the state."""
        bundle = served.bundle
        if request.reset:
            self.windows.reset(request.symbol)
        window, filled = None, 0
        if request.book is not None:
            window, filled = self.windows.push(request.symbol, request.book, bundle.window, client)
        self._stream_symbols.set(len(self.windows))
        if window is not None:
            window = window[None]
            self.holder.recent = window
        # The label the classes refer to (horizon with its unit, alpha): a client can score the answers.
        info = {"symbol": request.symbol, "ready": window is not None, "filled": filled,
                "window": bundle.window, **served.label_info}
        return window, info


def _tensor_input(inp: Any) -> TensorInput:
    """kserve's InferInput to our plain TensorInput (binary tensors decoded by kserve)."""
    data = inp.data
    if getattr(inp, "_raw_data", None) is not None:
        try:
            data = inp.as_numpy()
        except Exception as exc:  # noqa: BLE001 - kserve raises ValueError/InvalidInput for a size/shape mismatch
            raise BadRequest(f"input '{inp.name}': binary data does not match shape {inp.shape}: {exc}") from None
    return TensorInput(name=inp.name, shape=list(inp.shape or []), datatype=inp.datatype, data=data)


def _parameters(params: Any) -> dict[str, Any]:
    """V2 request parameters as a plain dict (kserve may hand a pydantic model or None)."""
    if params is None:
        return {}
    if hasattr(params, "model_dump"):
        return dict(params.model_dump())
    return dict(params)


def _v2_response(request: Any, served: ServedModel, proba: np.ndarray,
                 stream: dict[str, Any] | None) -> InferResponse:
    classes = proba.argmax(axis=1).astype(np.int64) if len(proba) else np.empty(0, dtype=np.int64)
    labels = np.array([served.bundle.class_names[c] for c in classes.tolist()], dtype=object)
    outputs = [
        InferOutput("class", [len(proba)], "INT64", classes),
        InferOutput("label", [len(proba)], "BYTES", labels),
        InferOutput("probabilities", list(proba.shape), "FP64", proba.astype(np.float64, copy=False)),
    ]
    # Requested outputs (OIP "outputs") narrow the answer; an unknown name is a 400 from kserve.
    return InferResponse(response_id=request.id or "", model_name=served.name, model_version=served.version,
                         infer_outputs=outputs, parameters=stream, requested_outputs=request.request_outputs)
