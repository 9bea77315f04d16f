"""Prometheus metrics of the signal service (one registry per service instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class SignalMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("hftpipe_signals_events_in_total", "Messages taken from md.>", registry=r)
        self.events_out = Counter("hftpipe_signals_events_out_total", "Signals published", registry=r)
        self.skipped = Counter("hftpipe_signals_skipped_total", "Inputs without a signal, by reason",
                               ["reason"], registry=r)
        self.dead_letters = Counter("hftpipe_signals_dead_letters_total", "Inputs sent to dlq.signals",
                                    ["reason"], registry=r)
        self.gaps = Counter("hftpipe_signals_gaps_total", "Window resets: gap events and seq gaps", registry=r)
        self.reconnects = Gauge("hftpipe_signals_reconnects", "Reconnects to NATS since start", registry=r)
        self.lag = Gauge("hftpipe_signals_consumer_lag", "Messages on md.> not yet delivered to the service",
                         registry=r)
        self.ack_pending = Gauge("hftpipe_signals_ack_pending", "Delivered, not yet acknowledged", registry=r)
        self.event_latency = Histogram("hftpipe_signals_event_time_latency_seconds",
                                       "Signal publish time minus the input's exchange event time",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.publish_latency = Histogram("hftpipe_signals_publish_latency_seconds",
                                         "Signal publish time minus the feed's publish time of the input",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.processing = Histogram("hftpipe_signals_batch_seconds", "Time to handle one batch", registry=r,
                                    buckets=LATENCY_BUCKETS)
        self.batch_size = Histogram("hftpipe_signals_batch_size", "Inputs per batch", registry=r,
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self.model_version = Gauge("hftpipe_signals_model_info", "The model serving signals", ["name", "version"],
                                   registry=r)
