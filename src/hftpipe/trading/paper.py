"""The paper trader service: durable JetStream consumers on ``md.>`` and ``sig.>`` around :class:`PaperCore`.

A thin async adapter (the decisions live in :mod:`hftpipe.trading.paper_core`, the same objects as the backtest):

1. two durable pull consumers (``<paper.durable>-md`` on stream MD, ``<paper.durable>-sig`` on SIG) feed one
   queue; each batch is handled in arrival order (per symbol, each stream keeps its order);
2. each input goes to the core: a signal waits for the next book of its symbol; a book update moves fills,
   marks, the risk state and the policy's orders (replays are skipped by the per-symbol seq in the core);
   malformed inputs go to ``dlq.paper`` with the reason;
3. before each decision the kill-switch store (``risk.state_db``, what ``hftpipe risk halt`` writes) is read and
   applied to the risk engine; an automatic halt (max loss, drawdown) is written there first, with its audit
   record, so ``hftpipe risk status`` shows it and a stored ACTIVE cannot undo it;
4. the core's snapshot and the batch's outputs are committed to the trader's store
   (:mod:`hftpipe.trading.paper_store`), then published -- ``ord.<symbol>``, ``fill.<symbol>`` and one
   ``pos.<symbol>`` per symbol and batch, each with a ``Nats-Msg-Id`` -- and only then are the inputs acknowledged.

Restart (also after ``kill -9``): the snapshot brings back positions, cash, resting orders (with their queue
positions), the policy's state and the last applied seqs; the unpublished outbox is sent again (JetStream drops
what did arrive); the consumers restart just after their ack floor, in stream order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hftpipe import paths
from hftpipe.bus.connection import STREAMS, BusClient, ensure_stream, ensure_streams, subject_token
from hftpipe.bus.consumer import Durable, PullConsumer, dead_letter, decode_as, publish_acked, report_lag
from hftpipe.config import Config
from hftpipe.contracts import BookUpdate, Gap, Signal, encode
from hftpipe.errors import ConfigError
from hftpipe.horizons import Horizon, parse_horizon
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.paper_core import AUTO_ACTOR, PaperCore, Step
from hftpipe.trading.paper_store import PaperStore
from hftpipe.trading.policies import Policy, make_policy
from hftpipe.trading.risk import RiskEngine, RiskState, StateChange, limits_from_config
from hftpipe.trading.state_store import RiskStateStore

log = logging.getLogger(__name__)

SERVICE = "paper"
READY_NAME = "trader"  # HFTPIPE_HOME/run/trader.ready
DLQ_SUBJECT = f"dlq.{SERVICE}"
# The trader's output streams (created here, like the signal service relies on ensure_streams for its own).
TRADING_STREAMS: dict[str, str] = {"ORD": "ord.>", "FILL": "fill.>", "POS": "pos.>"}
FETCH_TIMEOUT_S = 1.0
FETCH_RETRY_S = 0.2  # after a failed fetch (broker away)
# What each input stream may carry; anything else is dead-lettered.
ACCEPTS: dict[str, tuple[type, ...]] = {"MD": (BookUpdate, Gap), "SIG": (Signal, Gap)}
RISK_STATES = tuple(s.value for s in RiskState)


def persist_automatic(store: RiskStateStore, changes: list[StateChange], audit_url: str | None = None) -> None:
    """Write the engine's automatic state changes (loss limits) to the kill-switch store, with audit records."""
    for change in changes:
        if change.actor == AUTO_ACTOR:
            store.change(change.state, change.reason, AUTO_ACTOR, audit_url)
            log.warning("risk: %s -> %s (%s); written to %s and the audit trail", change.previous.value,
                        change.state.value, change.reason, store.path)


class StoreControl:
    """The core's risk control: persist automatic changes, then adopt the stored (kill-switch) state."""

    def __init__(self, store: RiskStateStore, audit_url: str | None = None) -> None:
        self.store = store
        self.audit_url = audit_url

    def sync(self, engine: RiskEngine, now: float, automatic: list[StateChange]) -> None:
        persist_automatic(self.store, automatic, self.audit_url)
        self.store.apply_to(engine, now)


class TraderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("hftpipe_paper_events_in_total", "Inputs taken from the bus", ["kind"], registry=r)
        self.duplicates = Counter("hftpipe_paper_duplicates_total", "Replayed inputs skipped (seq already applied)",
                                  ["kind"], registry=r)
        self.orders = Counter("hftpipe_paper_orders_total", "Order decisions: accepted, denied, cancel",
                              ["symbol", "status"], registry=r)
        self.denials = Counter("hftpipe_paper_denials_total", "Orders refused by the risk engine, by reason",
                               ["reason"], registry=r)
        self.fills = Counter("hftpipe_paper_fills_total", "Simulated fills", ["symbol", "liquidity"], registry=r)
        self.filled_shares = Counter("hftpipe_paper_filled_shares_total", "Shares filled", ["symbol"], registry=r)
        self.position = Gauge("hftpipe_paper_position", "Position in shares", ["symbol"], registry=r)
        self.pnl = Gauge("hftpipe_paper_pnl_dollars", "PnL marked to the mid, fees included", ["symbol"], registry=r)
        self.day_pnl = Gauge("hftpipe_paper_day_pnl_dollars", "PnL of the trading day", ["symbol"], registry=r)
        self.open_orders = Gauge("hftpipe_paper_open_orders", "Orders in flight or resting", ["symbol"], registry=r)
        self.risk_state = Gauge("hftpipe_paper_risk_state", "1 for the current trading state", ["state"], registry=r)
        self.risk_changes = Counter("hftpipe_paper_risk_changes_total", "Trading state changes",
                                    ["state", "actor"], registry=r)
        self.dead_letters = Counter("hftpipe_paper_dead_letters_total", "Inputs sent to dlq.paper", ["reason"],
                                    registry=r)
        self.lag = Gauge("hftpipe_paper_consumer_lag", "Messages not yet delivered to the trader", ["stream"],
                         registry=r)
        self.reconnects = Gauge("hftpipe_paper_reconnects", "Reconnects to NATS since start", registry=r)
        self.event_latency = Histogram("hftpipe_paper_decision_latency_seconds",
                                       "Wall time from the feed's publish of a book update to its outputs' publish",
                                       buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
                                       registry=r)
        self.processing = Histogram("hftpipe_paper_batch_seconds", "Time to handle one batch", registry=r,
                                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))

    def set_state(self, state: RiskState) -> None:
        for name in RISK_STATES:
            self.risk_state.labels(name).set(1 if name == state.value else 0)


def _stamp(message: Any, now: float) -> bytes:
    return encode(msgspec.structs.replace(message, publish_time=now))


class PaperTrader:
    """One paper-trader process: consumers, core, store, publisher."""

    def __init__(self, config: Config, client: BusClient, policy: str | None = None,
                 metrics: TraderMetrics | None = None, policy_factory: Callable[[], Policy] | None = None) -> None:
        self.config = config
        self.cfg = config.paper
        self.client = client
        self._hold_horizon: Horizon | None = None  # the horizon the policy holds for, when it is paper.horizon
        self._warned: set[tuple[str, str]] = set()
        self.metrics = metrics or TraderMetrics()
        tcfg = config.trading
        self.policy_name = policy or self.cfg.policy or tcfg.policy
        if policy_factory is None:
            if self.policy_name == "rl":
                raise ConfigError("the rl policy is loaded by the CLI: run `hftpipe trade --paper --policy rl`")
            # Fail now on a bad policy (or a clock-time paper.horizon the threshold policy cannot hold for
            # without trading.hold_events), not at the first book.
            make_policy(self.policy_name, tcfg, self.cfg.horizon)
            policy_factory = lambda: make_policy(self.policy_name, tcfg, self.cfg.horizon)
            if self.policy_name == "threshold" and tcfg.hold_events is None:
                self._hold_horizon = parse_horizon(self.cfg.horizon)
        else:
            self.policy_name = policy_factory().name  # fail now on a bad policy, not at the first book
        self.risk_store = RiskStateStore(config.risk.state_db)
        engine = RiskEngine(limits_from_config(config.risk))
        self.core = PaperCore(policy_factory, engine,
                              Latency(tcfg.feed_latency_s, tcfg.order_latency_s),
                              Fees(tcfg.maker_fee_per_share, tcfg.taker_fee_per_share, tcfg.fee_bps),
                              StoreControl(self.risk_store, config.audit.url))
        store_path = self.cfg.store or paths.sub("paper") / f"{self.cfg.durable}.sqlite"
        self.store = PaperStore(store_path)
        self.durables = {"MD": f"{self.cfg.durable}-md", "SIG": f"{self.cfg.durable}-sig"}
        self.consumers = {stream: PullConsumer(Durable(stream, durable, STREAMS[stream],
                                                       max_ack_pending=self.cfg.max_ack_pending,
                                                       ack_wait_s=self.cfg.ack_wait_s, max_waiting=64))
                          for stream, durable in self.durables.items()}
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=4 * self.cfg.pull_batch)
        self._tasks: list[asyncio.Task] = []

    # ---- start-up -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Streams, consumers (restarted after their ack floor), the snapshot, the unpublished outbox."""
        js = self.client.js
        await ensure_streams(js, self.config.bus)
        for name, subjects in TRADING_STREAMS.items():
            await ensure_stream(js, name, subjects, self.config.bus)
        for consumer in self.consumers.values():
            await consumer.resume(js)  # just after its ack floor: stream order again
        blob = self.store.load()
        if blob is not None:
            self.core.restore(blob)
            for symbol, st in sorted(self.core.symbols.items()):
                log.info("resumed %s after book seq %d: position %g, %d open order(s), %d fill(s)", symbol,
                         st.last_book_seq, st.position, len(st.execution.open_orders()), st.n_fills)
        pending = self.store.outbox()
        if pending:
            log.info("publishing %d output(s) committed before the last stop", len(pending))
            await publish_acked(self.client, [(i.subject, i.data, {"Nats-Msg-Id": i.msg_id}) for i in pending])
            self.store.published(pending[-1].id)
        self.core.control.sync(self.core.risk, time.time(), [])  # type: ignore[union-attr]
        self.core.risk.drain_changes()
        self.metrics.set_state(self.core.risk.state)
        for stream, consumer in self.consumers.items():
            await consumer.bind(js)
            self._tasks.append(asyncio.create_task(self._reader(stream)))

    async def _reader(self, stream: str) -> None:
        consumer = self.consumers[stream]
        while True:
            for msg in await consumer.fetch(self.cfg.pull_batch, FETCH_TIMEOUT_S, FETCH_RETRY_S):
                await self._queue.put((stream, msg))

    # ---- running --------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Handle batches until ``stop`` is set; the batch in hand is finished first."""
        lag_task = asyncio.create_task(report_lag(
            self.client, [c.durable for c in self.consumers.values()], self.cfg.lag_interval_s, stop,
            lambda durable, lag, _ack_pending: self.metrics.lag.labels(durable.stream).set(lag),
            reconnects=self.metrics.reconnects))
        try:
            while not stop.is_set():
                try:
                    first = await asyncio.wait_for(self._queue.get(), timeout=0.25)
                except TimeoutError:
                    continue
                batch = [first]
                while len(batch) < self.cfg.batch_max and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self.handle(batch)
        finally:
            lag_task.cancel()

    async def handle(self, batch: list[tuple[str, Any]]) -> None:
        """Handle one batch: core, commit, publish, acknowledge."""
        t0 = time.perf_counter()
        m = self.metrics
        wall_guard = self.cfg.wall_clock_guard
        outbox: list[tuple[str, str, bytes]] = []
        fills, positions, published_books = [], {}, []
        last: dict[str, Any] = {}
        now = time.time()
        for stream, msg in batch:
            last[stream] = msg
            message, rejected = decode_as(msg.data, ACCEPTS.get(stream, ()), msg.subject)
            if rejected is not None:
                outbox.append(self._dead(*rejected, msg))
                continue
            if isinstance(message, BookUpdate):
                m.events_in.labels("book").inc()
                step = self.core.on_book(message, wall_now=time.time() if wall_guard else None)
                if step.duplicate:
                    m.duplicates.labels("book").inc()
                    continue
                published_books.append(message.publish_time)
                self._collect(step, now, outbox, fills, positions)
            elif isinstance(message, Signal):
                m.events_in.labels("signal").inc()
                self._check_horizon(message)
                if self.core.on_signal(message).duplicate:
                    m.duplicates.labels("signal").inc()
            elif isinstance(message, Gap):
                m.events_in.labels("gap").inc()  # books are full L2 states: the next one is used as it is
                self.core.on_gap(message)  # but a policy's windows over past events start over
        for p in positions.values():
            outbox.append((f"pos.{subject_token(p.symbol)}", f"pos:{p.symbol}:{p.seq}", _stamp(p, now)))
        self.store.commit(self.core.snapshot(), outbox, fills, list(positions.values()))
        if outbox:
            pending = self.store.outbox()
            await publish_acked(self.client, [(i.subject, i.data, {"Nats-Msg-Id": i.msg_id}) for i in pending])
            self.store.published(pending[-1].id)
        done = time.time()
        for t in published_books:
            m.event_latency.observe(done - t)
        for msg in last.values():
            await msg.ack()  # AckAll: the whole batch of that consumer, after its outputs are safe
        m.processing.observe(time.perf_counter() - t0)

    def _check_horizon(self, signal: Signal) -> None:
        """Say once per model version when its signals' horizon is not the paper.horizon the policy holds for."""
        key = (signal.model_name, signal.model_version)
        if self._hold_horizon is None or key in self._warned or signal.label_horizon == self._hold_horizon:
            return
        self._warned.add(key)
        log.warning("signals of %s %s are at horizon %s but the threshold policy holds for paper.horizon=%s: set "
                    "paper.horizon to the model's horizon (a clock-time one also needs trading.hold_events)",
                    *key, signal.label_horizon.describe(), self._hold_horizon.describe())

    def _collect(self, step: Step, now: float, outbox: list, fills: list, positions: dict) -> None:
        m = self.metrics
        for o in step.orders:
            token = subject_token(o.symbol)
            m.orders.labels(o.symbol, o.status).inc()
            if o.status == "denied":
                m.denials.labels(o.reason).inc()
                key = f"ord:{o.symbol}:deny:{o.seq}:{o.side}:{o.qty:g}:{o.price}"
                log.debug("denied %s %+d x %g: %s", o.symbol, o.side, o.qty, o.text)
            else:
                key = f"ord:{o.symbol}:{o.order_id}:{o.status}"
            outbox.append((f"ord.{token}", key, _stamp(o, now)))
        for f in step.fills:
            m.fills.labels(f.symbol, "maker" if f.maker else "taker").inc()
            m.filled_shares.labels(f.symbol).inc(f.qty)
            fills.append(f)
            outbox.append((f"fill.{subject_token(f.symbol)}", f"fill:{f.symbol}:{f.fill_id}", _stamp(f, now)))
            log.info("fill %s #%d: %+d x %g @ %.4f (%s, fee %.4f)", f.symbol, f.fill_id, f.side, f.qty, f.price,
                     "maker" if f.maker else "taker", f.fee)
        for change in step.changes:
            m.risk_changes.labels(change.state.value, change.actor).inc()
            log.warning("trading %s -> %s by %s: %s", change.previous.value, change.state.value, change.actor,
                        change.reason)
        if step.changes:
            m.set_state(self.core.risk.state)
        p = step.position
        if p is not None:
            m.position.labels(p.symbol).set(p.position)
            m.pnl.labels(p.symbol).set(p.pnl)
            m.day_pnl.labels(p.symbol).set(p.day_pnl)
            m.open_orders.labels(p.symbol).set(p.open_orders)
            positions[p.symbol] = p  # one position message per symbol and batch: the newest

    def _dead(self, kind: str, reason: str, msg: Any) -> tuple[str, str, bytes]:
        """The outbox entry of a rejected input (published with the batch's outputs, deduplicated by its id)."""
        self.metrics.dead_letters.labels(kind).inc()
        subject, letter = dead_letter(SERVICE, msg.subject, msg.data, reason)
        sseq = msg.metadata.sequence.stream if msg.metadata else 0
        return subject, f"dlq:{SERVICE}:{msg.subject}:{sseq}", letter

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - shutting down
                log.debug("reader at close: %r", exc)
        for consumer in self.consumers.values():
            await consumer.close()
        self.store.close()
        self.risk_store.close()


async def run_paper(config: Config, policy: str | None = None, url: str | None = None,
                    stop: asyncio.Event | None = None, on_ready=None,
                    policy_factory: Callable[[], Policy] | None = None) -> None:
    """Run the paper trader until SIGTERM/SIGINT (or ``stop``); ``policy_factory`` makes each symbol's policy
    (the CLI's for ``rl``: this module stays below ``hftpipe.rl``), else ``policy`` names a simple one."""
    from hftpipe.bus.connection import connect
    from hftpipe.bus.lifecycle import serve_until_stopped, stop_event

    stop = stop or stop_event()
    client = await connect(config.bus, "hftpipe-paper-trader", url=url)
    metrics = TraderMetrics()
    trader = PaperTrader(config, client, policy=policy, metrics=metrics, policy_factory=policy_factory)
    await serve_until_stopped(
        trader, client, metrics.registry, config.paper.metrics_port, stop, on_ready,
        lambda port: (f"policy={trader.policy_name} consumers={','.join(trader.durables.values())} "
                      f"metrics_port={port} risk={trader.core.risk.state.value}"))
