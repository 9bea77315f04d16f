"""The signal service: a durable JetStream pull consumer on ``md.>`` that publishes ``sig.<symbol>``.

Per batch (everything that arrived since the last one, up to ``signals.batch_max``):

1. decode and check each input; malformed, wrong-width, crossed/absurd books and seq gaps go to
   ``dlq.signals`` with the reason (a seq gap also resets the symbol's window, like a ``gap`` event);
2. inputs at or below the symbol's last applied seq are replays and are skipped (idempotence);
3. every good state enters its symbol's rolling window (``serving.stream.RollingWindows``); the full windows
   of the batch go through the model in ONE forward pass, in a worker thread (the event loop keeps reading);
   with ``signals.backlog: latest`` only each symbol's newest window in the batch is predicted;
4. signals are published with ``Nats-Msg-Id = <symbol>:<seq>`` and their JetStream acks awaited;
5. per-symbol progress is written to sqlite (``streaming.state``), then the batch is acknowledged (AckAll).

A crash anywhere in 1-5 redelivers the batch: signals already published are dropped by JetStream's dedup,
inputs already recorded are skipped, so each input seq yields exactly one signal. Windows are rebuilt after a
restart from the stream itself (the stored stream sequence of each window's oldest state).

Replicas: with ``signals.replicas = N`` each process (``--replica i``) has its own durable consumer and
handles the symbols whose crc32 is i mod N; each symbol is thus handled by one process, in stream order.
A symbol's window is ready after T states (the model's window length): the first T-1 inputs of a symbol,
and of each restart of its book after a gap, have no signal (counted as ``skipped{reason="warming"}``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hftpipe import paths
from hftpipe.bus.connection import BusClient, ensure_streams, msg_id, sig_subject
from hftpipe.bus.consumer import (
    ContinuousPull,
    Durable,
    dead_letter,
    decode_as,
    next_stored,
    publish_acked,
    reply_sequence,
    report_lag,
    resume_consumer,
)
from hftpipe.config import Config
from hftpipe.contracts import BookUpdate, ContractError, Gap, Signal, decode, encode, horizon_fields
from hftpipe.errors import BusError
from hftpipe.serving.runtime import ModelHolder
from hftpipe.serving.stream import RollingWindows
from hftpipe.streaming.checks import book_problem, sane_rows
from hftpipe.streaming.metrics import SignalMetrics
from hftpipe.streaming.state import SeqStore, SymbolState

log = logging.getLogger(__name__)

SERVICE = "signals"
DLQ_SUBJECT = f"dlq.{SERVICE}"


@dataclass
class _Symbol:
    subject: str
    last_seq: int = 0
    last_sseq: int = 0
    sseqs: deque = field(default_factory=deque)  # stream sequences of the states in the window

    def reset(self) -> None:
        self.sseqs.clear()


@dataclass
class _Candidate:
    update: BookUpdate
    window: np.ndarray


def partition_of(symbol_token: str, replicas: int) -> int:
    """Which replica handles a symbol (stable across processes and restarts)."""
    return zlib.crc32(symbol_token.encode()) % replicas


class SignalService:
    """One signal-service process: consumer, windows, model, publisher."""

    def __init__(self, config: Config, client: BusClient, holder: ModelHolder, replica: int = 0,
                 metrics: SignalMetrics | None = None) -> None:
        cfg = config.signals
        if not 0 <= replica < cfg.replicas:
            raise BusError(f"--replica {replica} is outside 0..{cfg.replicas - 1} (signals.replicas)")
        self.config = config
        self.cfg = cfg
        self.client = client
        self.holder = holder
        self.replica = replica
        self.durable = cfg.durable if cfg.replicas == 1 else f"{cfg.durable}-{replica}-of-{cfg.replicas}"
        self.consumer = Durable("MD", self.durable, "md.>", max_ack_pending=cfg.max_ack_pending,
                                ack_wait_s=cfg.ack_wait_s, max_waiting=64)
        self.metrics = metrics or SignalMetrics()
        self.windows = RollingWindows(cfg.max_symbols)
        self.symbols: dict[str, _Symbol] = {}
        self.store = SeqStore(paths.sub("signals") / f"{self.durable}.sqlite")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hftpipe-forward")
        self.pull = ContinuousPull(client, self.consumer, cfg.pull_batch)
        self._last_lag_warning = 0.0

    # ---- start-up -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create streams and the durable consumer, rebuild windows, start pulling."""
        await ensure_streams(self.client.js, self.config.bus)
        await resume_consumer(self.client.js, self.consumer)  # just after its ack floor: stream order again
        await self._restore()
        await self.pull.start()
        served = self.holder.current
        self.metrics.model_version.labels(served.name, served.version).set(1)

    async def _restore(self) -> None:
        """Rebuild each symbol's window from the stream: the states after the stored oldest one."""
        window = self.holder.current.bundle.window
        for symbol, state in self.store.load().items():
            sym = _Symbol(subject=state.subject, last_seq=state.last_seq, last_sseq=state.last_sseq,
                          sseqs=deque(maxlen=window))
            self.symbols[symbol] = sym
            sseq = state.window_first_sseq
            while 0 < sseq <= state.last_sseq:
                raw = await next_stored(self.client.js, "MD", state.subject, sseq)
                if raw is None or raw.seq is None or raw.seq > state.last_sseq:
                    break
                try:
                    message = decode(raw.data)
                except ContractError:
                    message = None
                if isinstance(message, BookUpdate) and self._usable(message) is None:
                    levels = self.holder.current.bundle.levels
                    self.windows.push(symbol, np.asarray(message.book[: 4 * levels], dtype=np.float64), window)
                    sym.sseqs.append(raw.seq)
                sseq = raw.seq + 1
            log.info("resumed %s after seq %d with %d state(s) in its window", symbol, state.last_seq,
                     len(sym.sseqs))

    # ---- running --------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Handle batches until ``stop`` is set; the batch in hand is finished first."""
        lag_task = asyncio.create_task(report_lag(self.client, [self.consumer], self.cfg.lag_interval_s, stop,
                                                  self._on_lag, reconnects=self.metrics.reconnects))
        try:
            await self.pull.run(stop, self.handle, self.cfg.batch_max)
        finally:
            lag_task.cancel()

    def _on_lag(self, _durable: Durable, lag: int, ack_pending: int) -> None:
        self.metrics.lag.set(lag)
        self.metrics.ack_pending.set(ack_pending)
        if lag > 10 * self.cfg.batch_max and time.monotonic() - self._last_lag_warning > 10.0:
            self._last_lag_warning = time.monotonic()
            log.warning("behind: %d book update(s) waiting (signals.backlog=%s)", lag, self.cfg.backlog)

    # ---- one batch ------------------------------------------------------------------------------------
    def _usable(self, update: BookUpdate) -> str | None:
        """The dead-letter reason for a decoded update, or None."""
        levels = self.holder.current.bundle.levels
        if update.levels < levels:  # deeper books are cut to the model's top levels, as evaluation does
            return f"wrong width: {update.levels} levels, the model takes {levels}"
        return book_problem(update.book[: 4 * levels], levels)

    async def handle(self, msgs: list) -> int:
        """Process one batch of JetStream messages; returns the number of signals published."""
        t0 = time.perf_counter()
        served = self.holder.current
        bundle = served.bundle
        window, levels = bundle.window, bundle.levels
        dead: list[tuple[str, str, str, bytes, int]] = []
        dirty: set[str] = set()
        # Pass 1, in stream order: decode, idempotence, seq gaps, width. Window operations are recorded in
        # order (a reset must happen between the pushes around it) and applied in pass 2.
        steps: list[tuple] = []  # ("reset", symbol) | ("push", update, sseq, row, subject, bytes)
        rows: list[list[float]] = []
        self.metrics.events_in.inc(len(msgs))
        for msg in msgs:
            sseq, _pending = reply_sequence(msg.reply or "")
            token = msg.subject.rsplit(".", 1)[-1]
            if self.cfg.replicas > 1 and partition_of(token, self.cfg.replicas) != self.replica:
                continue
            message, rejected = decode_as(msg.data, (Gap, BookUpdate), "a market-data subject")
            if rejected is not None:
                dead.append((*rejected, msg.subject, msg.data, sseq))
                continue
            if isinstance(message, Gap):
                sym = self._symbol(message.symbol, msg.subject, window)
                if message.next_seq - 1 >= sym.last_seq:  # not a replay of a gap already applied
                    sym.last_seq = message.next_seq - 1
                    steps.append(("reset", message.symbol))
                    dirty.add(message.symbol)
                continue
            sym = self._symbol(message.symbol, msg.subject, window)
            if message.seq <= sym.last_seq:
                self.metrics.skipped.labels("duplicate").inc()
                continue
            dirty.add(message.symbol)
            if sym.last_seq and message.seq != sym.last_seq + 1:
                dead.append(("seq_gap", (f"seq gap on {message.symbol}: expected {sym.last_seq + 1}, got "
                             f"{message.seq}; window reset"), msg.subject, msg.data, sseq))
                steps.append(("reset", message.symbol))
            sym.last_seq, sym.last_sseq = message.seq, sseq
            if message.levels < levels:  # a deeper book is cut to the model's top levels, as evaluation does
                dead.append(("wrong_width", (f"{message.symbol} seq {message.seq}: wrong width: {message.levels} "
                             f"levels, the model takes {levels}"), msg.subject, msg.data, sseq))
                continue
            steps.append(("push", message, sseq, len(rows), msg.subject, msg.data))
            rows.append(message.book[: 4 * levels])
        # Pass 2: one vectorised sanity check for the batch, then the windows in stream order.
        books = np.array(rows, dtype=np.float64).reshape(len(rows), 4 * levels)
        sane = sane_rows(books) if len(rows) else np.zeros(0, dtype=bool)
        candidates: dict[str, list[_Candidate]] = {}
        for step in steps:
            if step[0] == "reset":
                self._reset(step[1], self.symbols[step[1]])
                continue
            _, message, sseq, row, subject, payload = step
            if not sane[row]:
                problem = book_problem(message.book[: 4 * levels], levels)
                if problem is not None:
                    reason = "crossed" if problem.startswith("crossed") else "bad_book"
                    dead.append((reason, f"{message.symbol} seq {message.seq}: {problem}", subject, payload, sseq))
                    continue
            full, _ = self.windows.push(message.symbol, books[row], window)
            self.symbols[message.symbol].sseqs.append(sseq)
            if full is None:
                self.metrics.skipped.labels("warming").inc()
                continue
            candidates.setdefault(message.symbol, []).append(_Candidate(message, full))
        chosen: list[_Candidate] = []
        for items in candidates.values():
            if self.cfg.backlog == "latest" and len(items) > 1:
                self.metrics.skipped.labels("backlog_latest").inc(len(items) - 1)
                chosen.append(items[-1])
            else:
                chosen.extend(items)
        published = 0
        if chosen:
            windows = np.stack([c.window for c in chosen])
            proba = await asyncio.get_running_loop().run_in_executor(self._executor, bundle.predict_proba, windows)
            self.holder.recent = windows[-1:]
            published = await self._publish_signals(chosen, proba, served)
        if dead:
            dead.sort(key=lambda d: d[4])  # stream order (pass 2 finds bad books after pass 1's rejects)
            await self._publish_dead(dead)
        self.store.save([SymbolState(s, self.symbols[s].subject, self.symbols[s].last_seq,
                                     self.symbols[s].sseqs[0] if self.symbols[s].sseqs else 0,
                                     self.symbols[s].last_sseq) for s in dirty])
        await msgs[-1].ack()  # AckAll: acknowledges the whole batch, after its outputs are safe
        self.metrics.processing.observe(time.perf_counter() - t0)
        self.metrics.batch_size.observe(len(msgs))
        return published

    def _symbol(self, symbol: str, subject: str, window: int) -> _Symbol:
        sym = self.symbols.get(symbol)
        if sym is None:
            sym = self.symbols[symbol] = _Symbol(subject=subject, sseqs=deque(maxlen=window))
        elif sym.sseqs.maxlen != window:  # the model's window length changed on a reload
            sym.sseqs = deque(sym.sseqs, maxlen=window)
        return sym

    def _reset(self, symbol: str, sym: _Symbol) -> None:
        sym.reset()
        self.windows.reset(symbol)
        self.metrics.gaps.inc()

    async def _publish_signals(self, chosen: list[_Candidate], proba: np.ndarray, served) -> int:
        futures = []
        now = time.time()
        horizon = horizon_fields(served.bundle.horizon)  # k events, or h seconds with its unit
        for cand, p in zip(chosen, proba.tolist()):
            u = cand.update
            signal = Signal(symbol=u.symbol, venue=u.venue, seq=u.seq, event_time=u.event_time,
                            input_publish_time=u.publish_time, publish_time=now, probabilities=p,
                            predicted=int(np.argmax(p)), model_name=served.name, model_version=served.version,
                            correlation_id=u.correlation_id, **horizon)
            futures.append((sig_subject(u.symbol), encode(signal), msg_id(u.symbol, u.seq)))
            self.metrics.event_latency.observe(now - u.event_time)
            self.metrics.publish_latency.observe(now - u.publish_time)
        await publish_acked(self.client, futures)
        self.metrics.events_out.inc(len(futures))
        return len(futures)

    async def _publish_dead(self, dead: list[tuple[str, str, str, bytes, int]]) -> None:
        out = []
        for reason_kind, reason, subject, payload, sseq in dead:
            out.append((*dead_letter(SERVICE, subject, payload, reason), {"Nats-Msg-Id": f"dlq:{subject}:{sseq}"}))
            self.metrics.dead_letters.labels(reason_kind).inc()
        await publish_acked(self.client, out)

    async def close(self) -> None:
        await self.pull.close()
        self._executor.shutdown(wait=True)
        self.store.close()


async def run_signals(config: Config, model_uri: str | None = None, replica: int = 0, url: str | None = None,
                      stop: asyncio.Event | None = None, on_ready=None) -> None:
    """Run the signal service until SIGTERM/SIGINT (or ``stop``)."""
    import torch

    from hftpipe.bus.connection import connect
    from hftpipe.bus.lifecycle import serve_until_stopped, stop_event
    from hftpipe.serving.runtime import Reloader, load_served, model_source

    torch.set_num_threads(config.signals.torch_threads)
    stop = stop or stop_event()
    uri = model_uri or config.signals.model_uri or config.serve.model_uri
    source = model_source(uri, config.register.model_name)
    holder = ModelHolder(load_served(source))
    log.info("signals: serving %s", holder.current.describe())
    client = await connect(config.bus, f"hftpipe-signals-{replica}", url=url)
    metrics = SignalMetrics()
    service = SignalService(config, client, holder, replica=replica, metrics=metrics)

    def _swapped(old, new) -> None:
        metrics.model_version.labels(old.name, old.version).set(0)
        metrics.model_version.labels(new.name, new.version).set(1)

    reloader = Reloader(holder, source, config.signals.reload_interval_s, on_swap=_swapped)
    try:
        await serve_until_stopped(
            service, client, metrics.registry, config.signals.metrics_port, stop, on_ready,
            lambda port: f"consumer={service.durable} metrics_port={port} model={holder.current.version}",
            on_started=reloader.start)
    finally:
        reloader.stop()
