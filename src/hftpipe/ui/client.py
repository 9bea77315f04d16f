"""HTTP client for the KServe model server (V1 protocol); the UI never loads a model itself.

Every call has a timeout; any failure (refused, timed out, HTTP error, malformed answer) becomes
:class:`ServingUnavailable` with a message fit for the banner, never a traceback in the browser.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from hftpipe.errors import HftpipeError

log = logging.getLogger(__name__)


class ServingUnavailable(HftpipeError):
    """The model server is down, too slow, or failing (5xx): worth retrying."""


class ServingRejected(HftpipeError):
    """The model server refused the request (4xx): retrying the same request cannot help."""


@dataclass(frozen=True)
class ServingStatus:
    """One health probe of the model server."""

    up: bool
    url: str
    model_name: str | None = None
    latency_ms: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"up": self.up, "url": self.url, "model_name": self.model_name,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
                "detail": self.detail}


@dataclass(frozen=True)
class StreamPrediction:
    """The server's answer to one streaming-mode book state."""

    ready: bool  # False while the server's window is still filling
    filled: int | None
    window: int | None
    cls: int | None  # predicted class: 0 down, 1 stationary, 2 up
    label: str | None
    probabilities: tuple[float, ...] | None
    model_name: str | None
    model_version: str | None
    extra: dict[str, Any] = field(default_factory=dict)  # any other top-level fields (e.g. horizon, alpha)


def _json_book(book: Sequence[float]) -> list[float | None]:
    # JSON has no NaN: an empty book level (NaN price) travels as null.
    return [None if (isinstance(v, float) and math.isnan(v)) else float(v) for v in book]


class ServingClient:
    """Talks to one model server: health, model discovery and streaming predictions."""

    def __init__(self, base_url: str, timeout_s: float = 2.0, model_name: str | None = None,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._model_name = model_name
        self._session = session or requests.Session()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self._session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.Timeout as exc:
            raise ServingUnavailable(f"model server at {self.base_url} did not answer within "
                                     f"{self.timeout_s:g} s") from exc
        except requests.RequestException as exc:
            raise ServingUnavailable(f"model server at {self.base_url} is not reachable "
                                     f"({type(exc).__name__})") from exc
        if response.status_code >= 400:
            detail = _error_detail(response)
            error = ServingRejected if 400 <= response.status_code < 500 else ServingUnavailable
            raise error(f"model server answered HTTP {response.status_code} for {path}: {detail}")
        try:
            return response.json()
        except ValueError as exc:
            raise ServingUnavailable(f"model server sent a non-JSON answer for {path}") from exc

    def model_name(self) -> str:
        """The served model's name (asked once from ``GET /v1/models`` unless configured)."""
        if self._model_name is None:
            body = self._request("GET", "/v1/models")
            models = body.get("models") if isinstance(body, dict) else None
            if not models:
                raise ServingUnavailable(f"model server at {self.base_url} serves no model yet")
            self._model_name = str(models[0])
        return self._model_name

    def status(self) -> ServingStatus:
        """Probe the server: up means the model answers ``ready`` within the timeout."""
        start = time.perf_counter()
        try:
            name = self.model_name()
            body = self._request("GET", f"/v1/models/{name}")
        except (ServingUnavailable, ServingRejected) as exc:
            return ServingStatus(up=False, url=self.base_url, detail=str(exc))
        latency = (time.perf_counter() - start) * 1e3
        ready = bool(body.get("ready")) if isinstance(body, dict) else False
        return ServingStatus(up=ready, url=self.base_url, model_name=name, latency_ms=latency,
                             detail="" if ready else f"model {name} is loading (not ready yet)")

    def predict_book(self, symbol: str, book: Sequence[float], **fields: Any) -> StreamPrediction:
        """Send one raw book state (4L values, LOBSTER order) in streaming mode."""
        name = self.model_name()
        payload = {"symbol": symbol, "book": _json_book(book), **fields}
        body = self._request("POST", f"/v1/models/{name}:predict", json=payload)
        return parse_stream_response(body)

    def reset(self, symbol: str) -> StreamPrediction:
        """Forget the server's rolling window for ``symbol`` (a replay starts from an empty window)."""
        body = self._request("POST", f"/v1/models/{self.model_name()}:predict",
                             json={"symbol": symbol, "reset": True})
        return parse_stream_response(body)

    def close(self) -> None:
        self._session.close()


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:300]
    return str(body)[:300]


def parse_stream_response(body: Any) -> StreamPrediction:
    """Check and unpack a streaming-mode answer.

    Raises:
        ServingUnavailable: the answer lacks ``ready`` or a prediction is malformed.
    """
    if not isinstance(body, dict) or "ready" not in body:
        raise ServingUnavailable("model server answer has no 'ready' field: is it serving streaming mode?")
    predictions = body.get("predictions") or []
    known = {"ready", "filled", "window", "predictions", "model_name", "model_version", "symbol"}
    extra = {k: v for k, v in body.items() if k not in known}
    version = body.get("model_version")
    common: dict[str, Any] = {"ready": bool(body["ready"]), "filled": body.get("filled"),
                              "window": body.get("window"), "model_name": body.get("model_name"),
                              "model_version": None if version is None else str(version), "extra": extra}
    if not body["ready"] or not predictions:
        return StreamPrediction(cls=None, label=None, probabilities=None, **common)
    first = predictions[0]
    try:
        probabilities = tuple(float(p) for p in first["probabilities"])
        cls = int(first["class"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ServingUnavailable(f"model server sent a malformed prediction: {first!r:.200}") from exc
    return StreamPrediction(cls=cls, label=str(first.get("label", cls)), probabilities=probabilities, **common)
