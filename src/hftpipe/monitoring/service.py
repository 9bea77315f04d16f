"""The outcome store (``hftpipe monitor run``): durable consumers on ``md.>`` and ``sig.>`` (and the paper
trader's ``ord.>`` and ``fill.>``), outcomes out.

Per step:

1. fetch a batch from each durable JetStream pull consumer (``<durable>-md`` on stream MD, ``<durable>-sig``
   on SIG, and with ``feedback.join_trades`` ``<durable>-ord`` on ORD and ``<durable>-fill`` on FILL);
   undecodable messages go to ``dlq.feedback`` with the reason;
2. orders and fills enter the pure :class:`~hftpipe.monitoring.trades.TradeLedger` (attributed to the signal
   of their order, keyed by id: idempotent); book updates, then signals, enter the pure
   :class:`~hftpipe.monitoring.outcomes.OutcomeJoiner` (replayed seqs are skipped there, per symbol:
   idempotence); outcomes whose k events have passed come out, with the trades their signal caused so far
   (later trades are rows of the ``orders``/``fills`` tables: see :mod:`hftpipe.monitoring.trades`);
3. outcomes are published to ``out.<symbol>`` (stream OUT) with ``Nats-Msg-Id = out:<symbol>:<seq>`` and their
   JetStream acks awaited; they update the rolling live quality (model and baselines) and its gauges;
4. the joiner's per-symbol state and the new Parquet rows (outcomes, and book updates when
   ``feedback.record_books``) are committed to one sqlite transaction, THEN both batches are acknowledged.
   Full row groups (``feedback.flush_rows``) are written as Parquet files at once, partial ones every
   ``feedback.flush_interval_s`` and at shutdown.

A crash anywhere redelivers the unacknowledged messages: already-published outcomes are dropped by the dedup
id, already-applied seqs are skipped, and rows are keyed by seq: no outcome is lost or doubled.

Every ``feedback.retrain_check_s`` the retrain trigger (:mod:`hftpipe.monitoring.retrain`) is evaluated on the
live quality (and on a drift flag when a drift provider is wired in); the decision and its evidence go to
the audit trail when it fires, and with ``feedback.retrain`` the local pipeline retrains on the recorded live
data through the promotion gate (:mod:`hftpipe.monitoring.retrain_job`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from hftpipe import paths
from hftpipe.bus.connection import BusClient, ensure_stream, ensure_streams, subject_token
from hftpipe.bus.consumer import Durable, PullConsumer, dead_letter, decode_as, publish_acked, report_lag
from hftpipe.config import Config
from hftpipe.contracts import BookUpdate, Fill, Gap, Order, Outcome, Signal, encode
from hftpipe.monitoring import feedback_store as store
from hftpipe.monitoring.live_drift import LiveDrift
from hftpipe.monitoring.outcomes import LabelSpec, OutcomeJoiner
from hftpipe.monitoring.quality import PREDICTORS, RollingQuality
from hftpipe.monitoring.retrain import Decision, Observation, TriggerPolicy, TriggerState, decide, json_safe
from hftpipe.monitoring.trades import TradeLedger

log = logging.getLogger(__name__)

SERVICE = "feedback"
DLQ_SUBJECT = f"dlq.{SERVICE}"
OUT_STREAM, OUT_SUBJECTS = "OUT", "out.>"
# The paper trader's output streams we read (it creates them too; whoever starts first does).
TRADE_STREAMS = {"ORD": "ord.>", "FILL": "fill.>"}
FETCH_WAIT_S = 0.2
FETCH_RETRY_S = 0.5  # after a failed fetch (broker away)
LAG_INTERVAL_S = 1.0
GAUGE_INTERVAL_S = 0.5  # a quality snapshot of 5000 outcomes takes ~20 ms: not on every small batch


def out_subject(symbol: str) -> str:
    return f"out.{subject_token(symbol)}"


class FeedbackMetrics:
    """Prometheus metrics of the outcome store (one registry per instance)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.books = Counter("hftpipe_feedback_books_total", "Book updates applied", registry=r)
        self.signals = Counter("hftpipe_feedback_signals_total", "Signals applied", registry=r)
        self.trades = Counter("hftpipe_feedback_trades_total", "Paper-trader orders and fills applied", ["kind"],
                              registry=r)
        # Names and labels of the "hftpipe-monitor" scrape job's contract (hftpipe.monitoring.metrics.CONTRACT):
        # the alert rules and dashboards read exactly these.
        self.outcomes = Counter("hftpipe_outcomes_total", "Outcomes published", ["symbol"], registry=r)
        self.dropped = Gauge("hftpipe_feedback_signals_dropped", "Signals without an outcome, by reason",
                             ["reason"], registry=r)
        self.dead_letters = Counter("hftpipe_feedback_dead_letters_total", "Messages sent to dlq.feedback",
                                    registry=r)
        self.parquet_files = Counter("hftpipe_feedback_parquet_files_total", "Parquet files written", ["table"],
                                     registry=r)
        self.rows_recorded = Gauge("hftpipe_feedback_rows_recorded", "Book updates recorded (all time)", registry=r)
        self.lag = Gauge("hftpipe_feedback_consumer_lag", "Messages not yet delivered", ["stream"], registry=r)
        self.window = Gauge("hftpipe_live_window_outcomes", "Scored outcomes in the live quality window",
                            ["symbol"], registry=r)
        self.macro_f1 = Gauge("hftpipe_live_macro_f1", "Rolling live macro-F1 (source: model or a baseline)",
                              ["symbol", "source"], registry=r)
        self.accuracy = Gauge("hftpipe_live_accuracy", "Rolling live accuracy", ["symbol", "source"], registry=r)
        self.hit_rate = Gauge("hftpipe_live_hit_rate", "Rolling live hit rate of up/down calls (a move inside the "
                              "stationary band is a miss)", ["symbol", "source"], registry=r)
        self.brier = Gauge("hftpipe_live_brier", "Rolling Brier score of the model", ["symbol"], registry=r)
        self.ece = Gauge("hftpipe_live_ece", "Rolling expected calibration error of the model", ["symbol"],
                         registry=r)
        self.reliability = Gauge("hftpipe_live_reliability_accuracy", "Model accuracy per top-label confidence bin "
                                 "(bin = its upper edge)", ["symbol", "bin"], registry=r)
        self.retrain_reason = Gauge("hftpipe_feedback_retrain_reason", "1 while a retrain reason holds", ["reason"],
                                    registry=r)
        self.retrain_triggers = Counter("hftpipe_feedback_retrain_triggers_total", "Retrain triggers fired",
                                        registry=r)
        self.model_info = Gauge("hftpipe_feedback_model_info", "The label definition in use",
                                ["name", "version", "horizon", "alpha"], registry=r)


class FeedbackService:
    """One outcome-store process."""

    def __init__(self, config: Config, client: BusClient, spec: LabelSpec, model: tuple[str, str] = ("", ""),
                 metrics: FeedbackMetrics | None = None, drift: Callable[[], tuple[bool | None, dict]] | None = None,
                 on_trigger: Callable[[Decision], Any] | None = None) -> None:
        self.config = config
        self.cfg = config.feedback
        self.client = client
        self.spec = spec
        self.model = model
        self.metrics = metrics or FeedbackMetrics()
        self.root = Path(self.cfg.output) if self.cfg.output else paths.sub("feedback")
        self.root.mkdir(parents=True, exist_ok=True)
        self.buffer = store.RowBuffer(self.root / f".{self.cfg.durable}.sqlite")
        self.joiner = OutcomeJoiner(spec, max_delay_events=self.cfg.max_signal_delay_events)
        self.ledger = TradeLedger()
        self.streams = {"MD": "md.>", "SIG": "sig.>", **(TRADE_STREAMS if self.cfg.join_trades else {})}
        self.consumers = {stream: PullConsumer(Durable(stream, f"{self.cfg.durable}-{stream.lower()}", subject,
                                                       max_ack_pending=-1, ack_wait_s=60.0))
                          for stream, subject in self.streams.items()}
        self.quality = RollingQuality(self.cfg.quality_window, self.cfg.reliability_bins)  # all symbols: the trigger
        self.quality_by_symbol: dict[str, RollingQuality] = {}  # per symbol: the gauges
        self.policy = TriggerPolicy.from_config(self.cfg)
        self.trigger_state = TriggerState()
        self.drift = drift
        # A LiveDrift given as the provider also needs the stream's books and predictions fed in.
        self.live_drift = drift if isinstance(drift, LiveDrift) else None
        self.on_trigger = on_trigger
        self.rows_recorded = 0
        self.decisions: list[Decision] = []
        self._last_flush = time.monotonic()
        self._last_check = time.monotonic()
        self._last_gauges = 0.0
        self._tasks: set[asyncio.Task] = set()
        self.outcomes_published = 0

    # ---- start-up -------------------------------------------------------------------------------------
    async def start(self) -> None:
        js = self.client.js
        await ensure_streams(js, self.config.bus)
        await ensure_stream(js, OUT_STREAM, OUT_SUBJECTS, self.config.bus)
        for name, subjects in self.streams.items():
            if name in TRADE_STREAMS:  # the trader's; whoever starts first creates them
                await ensure_stream(js, name, subjects, self.config.bus)
        self._restore()
        for consumer in self.consumers.values():
            await consumer.resume(js)  # just after its ack floor: stream order again
            await consumer.bind(js)
        self.metrics.model_info.labels(self.model[0], self.model[1], str(self.spec.horizon),  # '10' or '1s'
                                       repr(self.spec.alpha)).set(1)

    def _restore(self) -> None:
        saved = self.buffer.state()
        for key, snap in saved.items():
            if key.startswith("joiner:"):
                self.joiner.restore(key.split(":", 1)[1], snap)
            elif key.startswith("trades:"):
                self.ledger.restore(key.split(":", 1)[1], snap)
        self.rows_recorded = int(saved.get("rows_recorded", 0))
        trig = saved.get("trigger")
        if trig:
            self.trigger_state = TriggerState(**trig)
        if self.joiner.symbols:
            log.info("resumed %d symbol(s): %s", len(self.joiner.symbols),
                     ", ".join(f"{s} after seq {st.last_seq}" for s, st in self.joiner.symbols.items()))

    # ---- the loop -------------------------------------------------------------------------------------
    async def _fetch(self, stream: str) -> list:
        return await self.consumers[stream].fetch(self.cfg.pull_batch, FETCH_WAIT_S, FETCH_RETRY_S)

    async def run(self, stop: asyncio.Event) -> None:
        lag_task = asyncio.create_task(report_lag(
            self.client, [c.durable for c in self.consumers.values()], LAG_INTERVAL_S, stop,
            lambda durable, lag, _ack_pending: self.metrics.lag.labels(durable.stream).set(lag)))
        try:
            while not stop.is_set():
                md = await self._fetch("MD")
                sig = await self._fetch("SIG")
                trades = [m for s in TRADE_STREAMS if s in self.consumers for m in await self._fetch(s)]
                if md or sig or trades:
                    await self.handle(md, sig, trades)
                now = time.monotonic()
                if now - self._last_gauges >= GAUGE_INTERVAL_S:
                    self._update_gauges()
                if now - self._last_flush >= self.cfg.flush_interval_s:
                    self._flush(partial=True)
                if now - self._last_check >= self.cfg.retrain_check_s:
                    self._last_check = now
                    await self.check_trigger(time.time())
        finally:
            lag_task.cancel()
            self._flush(partial=True)

    async def handle(self, md: list, sig: list, trades: list = ()) -> list[Outcome]:
        """Apply one batch of each stream (``trades``: the ORD and FILL batches); returns the outcomes published."""
        outcomes: list[Outcome] = []
        rows: list[tuple[str, str, str, int, dict]] = []
        dead: list[tuple[str, bytes, str]] = []
        dirty: set[str] = set()
        traded: set[str] = set()
        # Trades first: a fill applied in this batch is in the outcomes this batch matures.
        for message in _decoded(trades, (Order, Fill), "trading", dead):
            made = self.ledger.on_order(message) if isinstance(message, Order) else self.ledger.on_fill(message)
            self.metrics.trades.labels("order" if isinstance(message, Order) else "fill").inc()
            traded.add(message.symbol)
            rows += [(table, row["symbol"], store.utc_date(row["event_time"]), row["seq"], row) for table, row in made]
        for message in _decoded(md, (Gap, BookUpdate), "market-data", dead):
            if isinstance(message, Gap):
                self.joiner.on_gap(message.symbol, message.next_seq)
                dirty.add(message.symbol)
                continue
            before = self.joiner.stats.books
            outcomes += self.joiner.on_book(message.symbol, message.seq, message.event_time, message.book)
            dirty.add(message.symbol)
            if self.joiner.stats.books > before:  # not a replay
                self.metrics.books.inc()
                if self.live_drift is not None:
                    self.live_drift.add_book(message.book)
                if self.cfg.record_books:
                    rows.append(("books", message.symbol, store.utc_date(message.event_time), message.seq,
                                 store.book_row(message)))
                    self.rows_recorded += 1
        for message in _decoded(sig, (Signal,), "signal", dead):
            before = self.joiner.stats.signals
            outcomes += self.joiner.on_signal(message)
            dirty.add(message.symbol)
            if self.joiner.stats.signals > before:
                self.metrics.signals.inc()
                if self.live_drift is not None:
                    self.live_drift.add_prediction(message.predicted)
        now = time.time()
        outcomes = [msgspec.structs.replace(o, publish_time=now,
                                            **self.ledger.summary(o.symbol, o.seq).fields(o.outcome_mid))
                    for o in outcomes]
        await publish_acked(self.client, [(out_subject(o.symbol), encode(o),
                                           {"Nats-Msg-Id": f"out:{o.symbol}:{o.seq}"}) for o in outcomes])
        if dead:
            await self._publish_dead(dead)
        for o in outcomes:
            self.quality.add(o)
            by_symbol = self.quality_by_symbol.get(o.symbol)
            if by_symbol is None:
                by_symbol = self.quality_by_symbol[o.symbol] = RollingQuality(self.cfg.quality_window,
                                                                              self.cfg.reliability_bins)
            by_symbol.add(o)
            self.metrics.outcomes.labels(o.symbol).inc()
            rows.append(("outcomes", o.symbol, store.utc_date(o.event_time), o.seq, store.outcome_row(o)))
        self.outcomes_published += len(outcomes)
        state: dict[str, Any] = {f"joiner:{s}": self.joiner.state_of(s) for s in dirty}
        state.update({f"trades:{s}": self.ledger.state_of(s) for s in traded})
        state["rows_recorded"] = self.rows_recorded
        self.buffer.commit(rows, state)
        last: dict[str, Any] = {}  # AckAll: each consumer's last message acknowledges its batch, once safe
        for msg in (*md, *sig, *trades):
            last[msg.metadata.stream if msg.metadata else msg.subject] = msg
        for msg in last.values():
            await msg.ack()
        self._flush(partial=False)
        if time.monotonic() - self._last_gauges >= GAUGE_INTERVAL_S:
            self._update_gauges()
        return outcomes

    def _flush(self, partial: bool) -> None:
        written = store.flush(self.buffer, self.root, self.cfg.flush_rows, partial)
        for path in written:
            self.metrics.parquet_files.labels(path.parts[-4]).inc()
        if partial:
            self._last_flush = time.monotonic()

    def _update_gauges(self) -> None:
        self._last_gauges = time.monotonic()
        m = self.metrics
        for reason, n in self.joiner.stats.dropped.items():
            m.dropped.labels(reason).set(n)
        m.rows_recorded.set(self.rows_recorded)
        for symbol, quality in self.quality_by_symbol.items():
            snap = quality.snapshot()
            m.window.labels(symbol).set(snap.n)
            for name in PREDICTORS:
                sc = snap.scores[name]
                m.macro_f1.labels(symbol, name).set(sc["macro_f1"])
                m.accuracy.labels(symbol, name).set(sc["accuracy"])
                m.hit_rate.labels(symbol, name).set(sc["hit_rate"])
            m.brier.labels(symbol).set(snap.brier)
            m.ece.labels(symbol).set(snap.reliability["ece"])
            for bn in snap.reliability["bins"]:
                m.reliability.labels(symbol, f"{bn['high']:.2f}").set(bn["accuracy"])

    async def check_trigger(self, now: float) -> Decision:
        """Evaluate the retrain trigger once; audit and act on it when it fires."""
        snap = self.quality.snapshot()
        drift, detail = (None, {})
        if self.drift is not None:
            drift, detail = self.drift()
        obs = Observation(time=now, rows_recorded=self.rows_recorded, outcomes=snap.n,
                          model_macro_f1=snap.scores["model"]["macro_f1"],
                          baseline_macro_f1={b: snap.scores[b]["macro_f1"] for b in ("persistence", "momentum")},
                          drift=drift, drift_detail=detail)
        decision, self.trigger_state = decide(self.policy, self.trigger_state, obs)
        self.buffer.commit([], {"trigger": self.trigger_state.__dict__})
        for reason in ("drift", "below_baseline", "below_floor"):
            self.metrics.retrain_reason.labels(reason).set(1 if reason in decision.reasons else 0)
        self.decisions.append(decision)
        if decision.trigger:
            self.metrics.retrain_triggers.inc()
            log.warning("retrain trigger fired: %s", ", ".join(decision.reasons))
            from hftpipe import audit

            audit.record(audit.RETRAIN_TRIGGER, self.model[0] or "model", reason=", ".join(decision.reasons),
                         details=json_safe({"evidence": decision.evidence, "model_version": self.model[1],
                                         "action": "retrain" if self.cfg.retrain else "none (feedback.retrain off)"}),
                         url=self.config.audit.url)
            if self.cfg.retrain and self.on_trigger is not None:
                self._flush(partial=True)  # the retrain reads the recorded data from Parquet
                result = self.on_trigger(decision)
                if asyncio.iscoroutine(result):
                    task = asyncio.create_task(result)
                    self._tasks.add(task)  # a reference, or the task may be garbage-collected mid-run
                    task.add_done_callback(self._tasks.discard)
        return decision

    # ---- publishing -----------------------------------------------------------------------------------
    async def _publish_dead(self, dead: list[tuple[str, bytes, str]]) -> None:
        items = []
        for subject, payload, reason in dead:
            items.append((*dead_letter(SERVICE, subject, payload, reason), None))
            self.metrics.dead_letters.inc()
        await publish_acked(self.client, items)

    async def close(self) -> None:
        for task in list(self._tasks):  # a running retrain: its child gets SIGTERM (see RetrainJob)
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - shutting down either way
                log.info("retrain task ended at shutdown: %s", type(exc).__name__)
        for consumer in self.consumers.values():
            await consumer.close()
        self._flush(partial=True)
        self.buffer.close()


def _decoded(batch: Any, kinds: tuple[type, ...], what: str, dead: list[tuple[str, bytes, str]]) -> Any:
    """The batch's messages of the expected kinds; the rest go to ``dead`` with the reason."""
    for msg in batch:
        message, rejected = decode_as(msg.data, kinds, f"a {what} subject")
        if rejected is not None:
            dead.append((msg.subject, msg.data, rejected[1]))
            continue
        yield message


def load_label(config: Config, model_uri: str | None, with_reference: bool = False) -> tuple:
    """The label definition (and model name, version) from the model the signals come from; with
    ``with_reference`` also its drift reference (None for a bundle trained before drift existed)."""
    from hftpipe.evaluation.drift import DriftReference
    from hftpipe.serving.runtime import load_served, model_source

    uri = model_uri or config.feedback.model_uri or config.signals.model_uri or config.serve.model_uri
    served = load_served(model_source(uri, config.register.model_name))
    label = LabelSpec.from_bundle(served.bundle, config.feedback.alpha), (served.name, served.version)
    if not with_reference:
        return label
    raw = getattr(served.bundle, "drift_reference", None)
    reference = DriftReference.from_dict(raw) if isinstance(raw, dict) else raw
    return (*label, reference)


async def run_feedback(config: Config, model_uri: str | None = None, url: str | None = None,
                       stop: asyncio.Event | None = None, on_ready=None) -> None:
    """Run the outcome store until SIGTERM/SIGINT (or ``stop``)."""
    from hftpipe.bus.connection import connect
    from hftpipe.bus.lifecycle import serve_until_stopped, stop_event
    from hftpipe.monitoring.retrain_job import RetrainJob

    stop = stop or stop_event()
    spec, model, reference = load_label(config, model_uri, with_reference=True)
    log.info("feedback: label at %s alpha=%.6g (%s, sampling %s) of %s %s", spec.label_horizon.describe(),
             spec.alpha, spec.kind, spec.sampling, *model)
    client = await connect(config.bus, "hftpipe-feedback", url=url)
    metrics = FeedbackMetrics()
    from hftpipe.monitoring.report import thresholds_of

    drift = LiveDrift(reference, thresholds_of(config), config.monitor.min_rows) if config.feedback.retrain_drift \
        else None
    service = FeedbackService(config, client, spec, model=model, metrics=metrics, drift=drift)
    service.on_trigger = RetrainJob(config, service.root).start
    consumers = ",".join(c.durable.name for c in service.consumers.values())
    await serve_until_stopped(service, client, metrics.registry, config.feedback.metrics_port, stop, on_ready,
                              lambda port: f"consumers={consumers} metrics_port={port} "
                                           f"horizon={spec.horizon} alpha={spec.alpha:.6g}")
