"""The metric names the rules and dashboards read, and the drift gauges the monitor exports.

:data:`CONTRACT` lists, per scrape job, the series a service must export for the rules in
``prometheus/rules.yml`` and the dashboards to work. Services that exist in this tree export them (a
test finds each name in the code); the paper trader and the monitor's live-quality scorer are built
elsewhere and must use exactly these names and labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from hftpipe.evaluation.drift import DriftReport

CONTRACT: dict[str, dict[str, str]] = {
    "hftpipe-model-server": {  # hftpipe.serving.metrics + kserve.metrics
        "request_predict_seconds": "histogram {model_name}: predict latency (KServe)",
        "hftpipe_predictions_total": "counter {model_name, model_version, label}",
        "hftpipe_served_model_version": "gauge {model_name}",
        "hftpipe_served_model_info": "gauge {model_name, model_version}",
        "hftpipe_model_reloads_total": "counter {model_name, outcome}",
        "hftpipe_bad_requests_total": "counter {model_name, protocol}",
    },
    "hftpipe-signals": {  # hftpipe.streaming.metrics
        "hftpipe_signals_events_in_total": "counter",
        "hftpipe_signals_events_out_total": "counter",
        "hftpipe_signals_dead_letters_total": "counter {reason}",
        "hftpipe_signals_consumer_lag": "gauge: messages not yet delivered",
        "hftpipe_signals_publish_latency_seconds": "histogram: signal publish - feed publish",
        "hftpipe_signals_event_time_latency_seconds": "histogram: signal publish - exchange event time",
        "hftpipe_signals_reconnects": "gauge",
    },
    "hftpipe-feed": {  # hftpipe.feeds.replay
        "hftpipe_feed_events_out_total": "counter {symbol}",
        "hftpipe_feed_gaps_total": "counter {symbol}",
        "hftpipe_feed_pending_acks": "gauge",
        "hftpipe_feed_reconnects": "gauge",
    },
    "hftpipe-trader": {  # the paper trader (to be built): these names and labels
        "hftpipe_paper_risk_state": "gauge {state=ACTIVE|REDUCING|HALTED}: 1 for the current state",
        "hftpipe_paper_orders_total": "counter {symbol, status=accepted|denied|cancel}",
        "hftpipe_paper_fills_total": "counter {symbol, liquidity=maker|taker}",
        "hftpipe_paper_position": "gauge {symbol}: shares",
        "hftpipe_paper_pnl_dollars": "gauge {symbol}: marked to the mid, fees included",
        "hftpipe_paper_denials_total": "counter {reason}",
    },
    "hftpipe-monitor": {  # live quality (to be built) and drift (DriftMetrics below)
        "hftpipe_live_macro_f1": "gauge {symbol, source=model|persistence|momentum}",
        "hftpipe_live_hit_rate": "gauge {symbol, source}",
        "hftpipe_live_brier": "gauge {symbol}",
        "hftpipe_outcomes_total": "counter {symbol}",
        "hftpipe_drift_psi": "gauge {feature}",
        "hftpipe_drift_ks": "gauge {feature}",
        "hftpipe_drift_prediction_psi": "gauge",
        "hftpipe_drift_detected": "gauge: 1 while the drift verdict holds",
    },
    "hftpipe-ui": {  # hftpipe.ui.monitoring
        "hftpipe_ui_requests_total": "counter {endpoint, status}",
        "hftpipe_ui_request_seconds": "histogram {endpoint}",
        "hftpipe_pipeline_runs": "gauge {step, status}: recent MLflow runs",
        "hftpipe_pipeline_last_run_timestamp_seconds": "gauge {step}",
    },
}


class DriftMetrics:
    """The drift gauges of one monitor instance (its own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.psi = Gauge("hftpipe_drift_psi", "PSI of a feature against the training reference", ["feature"], registry=r)
        self.ks = Gauge("hftpipe_drift_ks", "KS statistic of a feature against the training reference", ["feature"],
                        registry=r)
        self.prediction_psi = Gauge("hftpipe_drift_prediction_psi",
                                    "PSI of the predicted-class shares against training", registry=r)
        self.detected = Gauge("hftpipe_drift_detected", "1 while the drift verdict holds", registry=r)

    def update(self, report: DriftReport) -> None:
        """Set every gauge from a drift report."""
        for name, figures in report.features.items():
            self.psi.labels(name).set(figures["psi"])
            self.ks.labels(name).set(figures["ks"])
        if report.prediction and report.prediction.get("available"):
            self.prediction_psi.set(report.prediction["psi"])
        self.detected.set(1 if report.drift else 0)
