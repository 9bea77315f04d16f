"""Prometheus metrics of our own, next to KServe's latency histograms on the same ``/metrics``.

Module-level singletons: prometheus_client refuses to register a name twice in one process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PREDICTIONS = Counter(
    "hftpipe_predictions", "Predictions answered, by predicted class and serving model version",
    ["model_name", "model_version", "label"],
)
SERVED_VERSION = Gauge(
    "hftpipe_served_model_version",
    "Registry version of the model being served (0 for a local bundle folder)", ["model_name"],
)
SERVED_INFO = Gauge(
    "hftpipe_served_model_info", "1 for the model version being served", ["model_name", "model_version"],
)
RELOADS = Counter(
    "hftpipe_model_reloads", "Hot reloads of the served model, by outcome (success or failure)",
    ["model_name", "outcome"],
)
BAD_REQUESTS = Counter(
    "hftpipe_bad_requests", "Requests refused with a 4xx, by protocol", ["model_name", "protocol"],
)
STREAM_SYMBOLS = Gauge(
    "hftpipe_stream_symbols", "Symbols with a rolling window in streaming mode", ["model_name"],
)

IN_SYNC = Gauge(
    "hftpipe_served_model_in_sync",
    "1 when the served version is the one serve.model_uri points at; 0 during a fallback or a refused version",
    ["model_name"],
)


def set_served(endpoint: str, version: str, previous: str | None = None) -> None:
    """Point the version gauges at ``version``."""
    if previous is not None:
        SERVED_INFO.labels(endpoint, previous).set(0)
    SERVED_INFO.labels(endpoint, version).set(1)
    SERVED_VERSION.labels(endpoint).set(int(version) if version.isdigit() else 0)
