"""The Grafana dashboards, defined once here: the JSON files (``src/hftpipe/monitoring/grafana``) and the
Kubernetes ConfigMap are generated from these definitions (``hftpipe monitor render``; a test fails when a
committed file is stale), and the UI's monitoring page draws the panels marked ``key`` from the same queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39


@dataclass(frozen=True)
class Panel:
    """One time-series or stat panel: a title, PromQL queries (legend per query), a unit."""

    id: str  # stable slug, also the UI's panel key
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"  # Grafana unit: s, reqps, short, percentunit, currencyUSD
    kind: str = "timeseries"  # or "stat"
    key: bool = False  # drawn on the UI's monitoring page


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard("hftpipe-serving", "hftpipe / Serving", "The KServe model server: traffic, latency, versions, errors.", (
        Panel("serving-up", "Model server up", (('up{job="hftpipe-model-server"}', "{{instance}}"),), kind="stat"),
        Panel("serving-rate", "Predictions per second by class",
              (("sum by (label) (rate(hftpipe_predictions_total[5m]))", "{{label}}"),), "reqps", key=True),
        Panel("serving-latency", "Predict latency p50 / p99",
              (("histogram_quantile(0.5, sum by (le) (rate(request_predict_seconds_bucket[5m])))", "p50"),
               ("hftpipe:request_predict_seconds:p99_5m", "p99")), "s", key=True),
        Panel("serving-version", "Served model version",
              (("max by (model_name) (hftpipe_served_model_version)", "{{model_name}}"),), kind="stat"),
        Panel("serving-reloads", "Hot reloads (1 h)",
              (("sum by (outcome) (increase(hftpipe_model_reloads_total[1h]))", "{{outcome}}"),)),
        Panel("serving-bad", "Refused requests (4xx) per second",
              (("sum by (protocol) (rate(hftpipe_bad_requests_total[5m]))", "{{protocol}}"),), "reqps"),
    )),
    Dashboard("hftpipe-streaming", "hftpipe / Streaming", "Feed and signal service on the NATS JetStream bus.", (
        Panel("stream-throughput", "Book updates in, signals out per second",
              (("sum(rate(hftpipe_feed_events_out_total[5m]))", "feed out"),
               ("sum(rate(hftpipe_signals_events_in_total[5m]))", "signals in"),
               ("hftpipe:signals_events_out:rate5m", "signals out")), "reqps", key=True),
        Panel("stream-latency", "Signal latency p99 (from feed publish / from event time)",
              (("hftpipe:signals_publish_latency_seconds:p99_5m", "from feed publish"),
               ("histogram_quantile(0.99, sum by (le) (rate(hftpipe_signals_event_time_latency_seconds_bucket[5m])))",
                "from event time")), "s", key=True),
        Panel("stream-lag", "Consumer lag (messages)",
              (("max by (job, instance) (hftpipe_signals_consumer_lag)", "{{instance}}"),), key=True),
        Panel("stream-dlq", "Dead letters (5 m)", (("hftpipe:dead_letters:increase5m", "{{job}}"),)),
        Panel("stream-reconnects", "Reconnects to NATS",
              (("max by (job) (hftpipe_signals_reconnects)", "signals"),
               ("max by (job) (hftpipe_feed_reconnects)", "feed"))),
        Panel("stream-pending", "Feed publishes awaiting an ack", (("sum(hftpipe_feed_pending_acks)", "pending"),)),
    )),
    Dashboard("hftpipe-quality", "hftpipe / Live model quality",
              "Live macro-F1 and hit rate of the model beside the naive baselines on the same events; drift.", (
        Panel("quality-f1", "Live macro-F1: model vs baselines",
              (("max by (symbol, source) (hftpipe_live_macro_f1)", "{{symbol}} {{source}}"),), "percentunit",
              key=True),
        Panel("quality-margin", "Macro-F1 margin over the best baseline",
              (("hftpipe:live_macro_f1_margin", "{{symbol}}"),), "percentunit"),
        Panel("quality-hit", "Hit rate", (("max by (symbol, source) (hftpipe_live_hit_rate)", "{{symbol}} {{source}}"),),
              "percentunit"),
        Panel("quality-brier", "Brier score", (("max by (symbol) (hftpipe_live_brier)", "{{symbol}}"),)),
        Panel("quality-drift", "Feature drift (PSI)", (("max by (feature) (hftpipe_drift_psi)", "{{feature}}"),),
              key=True),
        Panel("quality-drift-ks", "Feature drift (KS)", (("max by (feature) (hftpipe_drift_ks)", "{{feature}}"),)),
        Panel("quality-pred-drift", "Prediction drift (PSI) and verdict",
              (("max(hftpipe_drift_prediction_psi)", "prediction PSI"), ("max(hftpipe_drift_detected)", "drift"))),
        Panel("quality-outcomes", "Outcomes scored per second",
              (("sum by (symbol) (rate(hftpipe_outcomes_total[5m]))", "{{symbol}}"),), "reqps"),
    )),
    Dashboard("hftpipe-trading", "hftpipe / Trading and risk", "The paper trader: orders, fills, position, PnL, risk.", (
        Panel("trading-pnl", "PnL (dollars)", (("sum by (symbol) (hftpipe_paper_pnl_dollars)", "{{symbol}}"),),
              "currencyUSD", key=True),
        Panel("trading-position", "Position (shares)", (("sum by (symbol) (hftpipe_paper_position)", "{{symbol}}"),)),
        Panel("trading-orders", "Orders and fills per second",
              (("sum by (status) (rate(hftpipe_paper_orders_total[5m]))", "orders {{status}}"),
               ("sum by (liquidity) (rate(hftpipe_paper_fills_total[5m]))", "fills {{liquidity}}")), "reqps"),
        Panel("trading-denials", "Risk denials (5 m)",
              (("sum by (reason) (increase(hftpipe_paper_denials_total[5m]))", "{{reason}}"),)),
        Panel("trading-halted", "Risk halted", (("max(hftpipe_paper_risk_state{state=\"HALTED\"})", "halted"),), kind="stat",
              key=True),
    )),
    Dashboard("hftpipe-pipeline", "hftpipe / Pipeline runs", "Training, evaluation and registration runs; service health.", (
        Panel("pipeline-runs", "Recent runs by step and status",
              (("sum by (step, status) (hftpipe_pipeline_runs)", "{{step}} {{status}}"),), key=True),
        Panel("pipeline-age", "Time since the last run",
              (("time() - max by (step) (hftpipe_pipeline_last_run_timestamp_seconds)", "{{step}}"),), "s"),
        Panel("pipeline-up", "Targets up", (('up{job=~"hftpipe-.+"}', "{{job}}"),), kind="stat", key=True),
        Panel("pipeline-ui", "UI requests per second",
              (("sum by (status) (rate(hftpipe_ui_requests_total[5m]))", "{{status}}"),), "reqps"),
    )),
)


def _panel_json(panel: Panel, index: int) -> dict[str, Any]:
    width = 12
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * width, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if panel.kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(panel.queries)],
    }


def grafana_json(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard model (JSON) of one definition."""
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["hftpipe"],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": [_panel_json(p, i) for i, p in enumerate(dashboard.panels)],
    }


def key_panels() -> list[tuple[Dashboard, Panel]]:
    """The panels the UI's monitoring page draws, dashboard by dashboard."""
    return [(d, p) for d in DASHBOARDS for p in d.panels if p.key]


def find_panel(panel_id: str) -> Panel | None:
    return next((p for d in DASHBOARDS for p in d.panels if p.id == panel_id), None)
