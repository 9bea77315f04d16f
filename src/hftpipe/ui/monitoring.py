"""The monitoring page (the dashboards' key panels, drawn from the real Prometheus HTTP API) and the UI's
own Prometheus endpoint ``/metrics``: request counts and durations, and recent pipeline runs by step.

The page's browser code never sends PromQL: it names a panel, and the server runs that panel's queries
(:mod:`hftpipe.monitoring.dashboards`) through ``/api/v1/query_range``; an unknown panel is a 404.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from flask import Blueprint, Response, current_app, g, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hftpipe.monitoring.dashboards import find_panel, key_panels
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)
bp = Blueprint("monitoring", __name__)

METRICS_KEY = "hftpipe.ui.metrics"
MAX_MINUTES = 24 * 60
POINTS = 240  # samples per series asked of Prometheus (step = range / POINTS)
RUNS_CACHE_S = 60.0  # MLflow is read at most this often for the pipeline-runs gauges


class PipelineRunsCollector(Collector):
    """Recent MLflow runs by step and status, read from the tracking store (cached)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def _runs(self) -> list[Any]:
        from hftpipe.ui import catalog

        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < RUNS_CACHE_S:
                return self._cached[1]
            try:
                runs = catalog.recent_runs(self.config, limit=200, step=None)
            except Exception as exc:  # noqa: BLE001 - an unreachable store must not break /metrics
                log.warning("pipeline-run metrics skipped: %s", exc)
                runs = []
            self._cached = (time.monotonic(), runs)
            return runs

    def collect(self) -> Any:
        counts = GaugeMetricFamily("hftpipe_pipeline_runs", "Recent MLflow runs by step and status",
                                   labels=["step", "status"])
        last = GaugeMetricFamily("hftpipe_pipeline_last_run_timestamp_seconds",
                                 "Start time of the newest run of each step", labels=["step"])
        tally: dict[tuple[str, str], int] = {}
        newest: dict[str, float] = {}
        for run in self._runs():
            step = run.step or "other"
            tally[(step, run.status.lower())] = tally.get((step, run.status.lower()), 0) + 1
            newest[step] = max(newest.get(step, 0.0), run.started_ms / 1000.0)
        for (step, status), n in sorted(tally.items()):
            counts.add_metric([step, status], n)
        for step, ts in sorted(newest.items()):
            last.add_metric([step], ts)
        yield counts
        yield last


class UiMetrics:
    """The UI's metrics in a registry of its own (one per app: tests build many apps in one process)."""

    def __init__(self, config: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hftpipe_ui_requests", "Responses by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.seconds = Histogram("hftpipe_ui_request_seconds", "Time to answer, by endpoint", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
        self.registry.register(PipelineRunsCollector(config))


def _metrics() -> UiMetrics:
    return current_app.extensions[METRICS_KEY]


@bp.record_once
def _setup(state: Any) -> None:
    state.app.extensions[METRICS_KEY] = UiMetrics(state.app.config[CONFIG_KEY])


@bp.before_app_request
def _start_timer() -> None:
    g.hftpipe_started = time.perf_counter()


@bp.after_app_request
def _count(response: Response) -> Response:
    started = g.get("hftpipe_started")
    if started is not None and request.endpoint != "monitoring.metrics":
        endpoint = request.endpoint or "unknown"  # never the raw path: unbounded label values
        m = _metrics()
        m.requests.labels(endpoint, str(response.status_code)).inc()
        m.seconds.labels(endpoint).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition of the UI's metrics (public, like /healthz: Prometheus does not log in)."""
    return Response(generate_latest(_metrics().registry), mimetype=CONTENT_TYPE_LATEST)


def prometheus_url() -> str:
    m = current_app.config[CONFIG_KEY].monitor
    return (m.prometheus_url or f"http://127.0.0.1:{m.prometheus_port}").rstrip("/")


@bp.get("/monitoring")
def page() -> str:
    """The key panels of every dashboard; the browser fetches each panel's series from the API below."""
    panels = [{"id": p.id, "title": p.title, "unit": p.unit, "dashboard": d.title} for d, p in key_panels()]
    return render_template("monitoring.html", active="monitoring", panels=panels, prometheus=prometheus_url())


@bp.get("/api/monitoring/panel/<panel_id>")
def panel_data(panel_id: str) -> tuple[dict[str, Any], int] | dict[str, Any]:
    """The series of one panel over the last ``minutes`` (default 60), from Prometheus's query_range."""
    panel = find_panel(panel_id)
    if panel is None:
        return {"error": f"no panel {panel_id!r}"}, 404
    try:
        minutes = float(request.args.get("minutes", "60"))
    except ValueError:
        return {"error": "minutes must be a number"}, 400
    if not 1 <= minutes <= MAX_MINUTES:
        return {"error": f"minutes must be between 1 and {MAX_MINUTES}"}, 400
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, (end - start) / POINTS)
    series = []
    base = prometheus_url()
    for expr, legend in panel.queries:
        try:
            resp = requests.get(f"{base}/api/v1/query_range", timeout=5,
                                params={"query": expr, "start": start, "end": end, "step": step})
            body = resp.json()
        except (requests.RequestException, ValueError) as exc:
            return {"error": f"Prometheus at {base} is not answering: {type(exc).__name__}", "series": []}, 502
        if body.get("status") != "success":
            return {"error": f"Prometheus refused the query: {body.get('error', resp.status_code)}", "series": []}, 502
        for result in body["data"]["result"]:
            labels = result.get("metric", {})
            name = legend
            for key, value in labels.items():
                name = name.replace("{{" + key + "}}", value)
            series.append({"name": name, "labels": labels,
                           "t": [float(t) for t, _ in result["values"]],
                           "v": [float(v) for _, v in result["values"]]})
    return {"panel": panel.id, "title": panel.title, "unit": panel.unit, "series": series}
