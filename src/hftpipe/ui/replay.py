"""Replay a recorded trading day through the model server and score it causally (no Flask here).

:class:`OutcomeTracker` sees one event at a time and only ever looks backwards: the outcome of the
prediction made at event t is known at t + k (the label's horizon, in events of the sampled stream) and
the simulated trade it triggers closes at t + latency + k. For a clock-time model (horizon h seconds) the
outcome is known at the first event strictly after time_t + h and the trade is held h seconds. :func:`replay_updates` drives the replay at a
given speed and keeps going through model-server outages (it reports them and retries the same event).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq

from hftpipe.data.schema import META_KEY, book_matrix, read_events
from hftpipe.errors import DataFormatError
from hftpipe.features.labels import CLASS_NAMES, ROUND_OFF
from hftpipe.features.sampling import sample_indices
from hftpipe.horizons import Horizon, parse_horizon

log = logging.getLogger(__name__)

BPS = 1e4


@dataclass(frozen=True)
class ReplayFile:
    """A canonical events Parquet that can be replayed."""

    path: Path
    symbol: str
    date: str
    levels: int
    rows: int

    @property
    def title(self) -> str:
        return f"{self.symbol} {self.date} ({self.levels} level{'s' if self.levels > 1 else ''}, {self.rows:,} events)"


_warned: set[tuple[str, float]] = set()  # (path, mtime) of unreadable files already logged


def describe_replay_file(path: str | Path) -> ReplayFile | None:
    """Read only the metadata of an events Parquet; None when it is not one written by ``hftpipe ingest``
    or when its hftpipe metadata cannot be read (a warning is logged once per file version)."""
    path = Path(path)
    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    except (OSError, ValueError):
        return None
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
        found = ReplayFile(path=path.resolve(), symbol=str(meta["symbol"]), date=str(meta["date"]),
                           levels=int(meta["levels"]), rows=int(meta["rows"]))
        if found.levels < 1 or found.rows < 0:
            raise ValueError(f"levels {found.levels}, rows {found.rows}")
        return found
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        try:
            version = (str(path.resolve()), path.stat().st_mtime)
        except OSError:
            version = (str(path), 0.0)
        if version not in _warned:
            _warned.add(version)
            log.warning("skipping %s in the replay folder: its hftpipe metadata is unreadable (%s: %s); "
                        "re-create it with `hftpipe ingest`", path, type(exc).__name__, exc)
        return None


def list_replay_files(source: str | Path) -> list[ReplayFile]:
    """The configured replay file first, then every other ingested Parquet in its folder."""
    source = Path(source)
    candidates = [source] + sorted(p for p in source.parent.glob("*.parquet") if p.resolve() != source.resolve()) \
        if source.parent.is_dir() else [source]
    found = [describe_replay_file(p) for p in candidates if p.is_file()]
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class ReplayDay:
    """What a replay needs from an events table: time, best quotes, mid and the raw book."""

    symbol: str
    date: str
    levels: int
    time: np.ndarray  # (n,) seconds after midnight
    book: np.ndarray  # (n, 4L) raw book, LOBSTER order
    mid: np.ndarray  # (n,)
    tick: float = 0.0  # price increment of the day (smallest gap between quoted prices); 0: unknown

    @property
    def bid(self) -> np.ndarray:
        return self.book[:, 2]

    @property
    def ask(self) -> np.ndarray:
        return self.book[:, 0]


def load_replay_day(path: str | Path, sampling: Literal["all", "top_of_book"] = "all") -> ReplayDay:
    """Load an events Parquet for replay, keeping only two-sided books.

    Args:
        sampling: the model's event sampling; ``top_of_book`` keeps only events that change the best
            quotes, so that "k events" means what it meant in training.
    """
    table = read_events(path)
    book = book_matrix(table.frame, table.meta.levels)
    keep = np.zeros(len(book), dtype=bool)
    keep[sample_indices(book, sampling)] = True  # the training stream's sampling
    keep &= np.isfinite(book[:, 0]) & np.isfinite(book[:, 2])  # a mid needs both sides
    book = np.ascontiguousarray(book[keep])
    if len(book) == 0:
        raise DataFormatError(f"{path} has no event with both a bid and an ask to replay")
    times = table.frame["time"].to_numpy(dtype=np.float64)[keep]
    return ReplayDay(symbol=table.meta.symbol, date=table.meta.date, levels=table.meta.levels, time=times,
                     book=book, mid=(book[:, 0] + book[:, 2]) / 2.0, tick=price_tick(book))


def price_tick(book: np.ndarray) -> float:
    """The day's tick: the smallest gap between distinct quoted prices (0 when there is only one)."""
    prices = book[:, 0::2]  # ask and bid prices of every level, LOBSTER order
    distinct = np.unique(prices[np.isfinite(prices)])
    if len(distinct) < 2:
        return 0.0
    gaps = np.diff(distinct)
    gaps = gaps[gaps > 1e-9 * np.abs(distinct).max()]  # float noise of dollar prices is no tick
    # 578.93 - 578.92 is 0.00999999999999; the tick is 0.01.
    return float(f"{gaps.min():.6g}") if len(gaps) else 0.0


def realised_class(ret: float, alpha: float) -> int:
    """Label of a realised label return (as :func:`hftpipe.features.labels.classify`): 0 down, 1, 2 up."""
    if ret > alpha:
        return 2
    if ret < -alpha:
        return 0
    return 1


@dataclass
class _Pending:
    index: int
    time: float  # the event's time (clock-time horizons: known at the first event after time + h)
    cls: int | None  # the model's class at this event (None: not predicted, scored for baselines only)
    reference: float  # mid_t (forward label) or the mean of mids t-k+1..t (deeplob label)
    future_sum: float = 0.0  # running sum of the mids after t
    baselines: dict[str, int] | None = None  # each baseline's class at this event


BASELINES = ("persistence", "momentum")


class _Score:
    def __init__(self) -> None:
        self.scored = 0
        self.hits = 0

    def add(self, hit: bool) -> None:
        self.scored += 1
        self.hits += int(hit)

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "hits": self.hits,
                "hit_rate": round(self.hits / self.scored, 4) if self.scored else None}


class OutcomeTracker:
    """Causal, incremental scoring of streamed predictions: hit rate and simulated PnL after costs.

    Outcomes follow the training label (:mod:`hftpipe.features.labels`): the label return at t is
    ``(mean(mid[t+1..t+k]) - ref) / ref`` with ref = mid_t (``forward``) or the mean of the previous k
    mids (``deeplob``), classified with the stationary band alpha; it is known at event t + k.

    A move under ``min_move`` (price units, e.g. one tick) is stationary whatever alpha says: a smoothed
    mid that moved by less than a tick is no up or down a trader could act on, and with a tiny fitted
    alpha it would otherwise count as a hit for an up/down call.

    Baselines scored on the same events as the model (causal, known at t): ``persistence`` predicts the
    label of event t-k (the latest one realised at t), ``momentum`` the class of the raw move
    ``(mid_t - mid_t-k) / mid_t-k`` under the same band.

    PnL follows the evaluation backtest's rule (:mod:`hftpipe.evaluation.backtest`), event by event: one
    share, long after "up" / short after "down", held k events from the latest signal in its direction,
    executed ``latency`` events later crossing the spread, ``fees_bps`` per side. The running net PnL is
    marked to liquidation (what closing the open position would fetch now, after its fee).

    Clock-time horizon h (``horizon="1s"``; pass each event's ``time``): the label of
    :func:`hftpipe.features.labels.clock_forward_return` (the mid in force at time_t + h against mid_t),
    known at the first event strictly after time_t + h; persistence is the latest label known, momentum the
    move from the mid in force at time_t - h (from h seconds into the replay on). A position is held h
    seconds after the latest signal (the evaluation backtest holds the day's mean number of events per h
    instead, which the replay cannot know before the day ends).
    """

    def __init__(self, horizon: int | str | Horizon, alpha: float, fees_bps: float = 0.0, latency: int = 1,
                 label: Literal["forward", "deeplob"] = "forward", min_move: float = 0.0) -> None:
        if isinstance(horizon, int) and not isinstance(horizon, bool) and horizon < 1:
            raise ValueError("horizon must be at least 1 event")
        h = parse_horizon(horizon)
        if h.is_clock and label != "forward":
            raise ValueError(f"the {label!r} label is defined in events only; clock-time horizon {h} needs forward")
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}")
        self.label_horizon = h
        self.seconds = h.seconds  # None: an event horizon
        self.horizon = h.events or 1  # k (clock time: unused by the event-count rules below)
        self.alpha = float(alpha)
        self.fee_rate = float(fees_bps) / BPS
        self.latency = max(int(latency), 0)
        self.label = label
        self.min_move = max(float(min_move), 0.0)
        self._pending: deque[_Pending] = deque()
        self._past: deque[float] = deque(maxlen=self.horizon)
        self._mids: deque[float] = deque(maxlen=self.horizon + 1)  # mid_t-k .. mid_t, for momentum
        self._latest_label: int | None = None  # label of event t-k, realised at t (persistence)
        self.baselines = {name: _Score() for name in BASELINES}
        self._wanted: deque[int] = deque()  # wanted positions not yet executed (latency)
        self._last_signal = (-1, 0)  # (index, direction) of the latest non-stationary signal
        self._last_signal_time = -math.inf
        self.position = 0
        self._cash_net = 0.0
        self._cash_gross = 0.0
        self._entry: tuple[float, float] | None = None  # (traded price, mid) of the open round trip
        self.scored = 0
        self.hits = 0
        self.trades = 0
        self.net_pnl = 0.0  # $ per share, marked to liquidation
        self.gross_pnl = 0.0  # $ per share, marked to mid
        self.net_pnl_bps = 0.0  # summed over closed round trips, relative to the entry mid
        self.last_index = -1
        self._last_time = -math.inf
        self._prev_mid = math.nan  # the previous event's mid: in force at t + h when the next event is after it
        self._clock_mids: deque[tuple[float, float]] = deque()  # (time, mid) from the one in force at t - h on
        self._first_time: float | None = None

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.scored if self.scored else None

    def stats(self) -> dict[str, Any]:
        return {"scored": self.scored, "hits": self.hits,
                "hit_rate": None if self.hit_rate is None else round(self.hit_rate, 4),
                "baselines": {name: score.to_dict() for name, score in self.baselines.items()},
                "trades": self.trades, "position": self.position,
                "net_pnl": round(self.net_pnl, 4), "gross_pnl": round(self.gross_pnl, 4),
                "net_pnl_bps": round(self.net_pnl_bps, 2)}

    def observe(self, index: int, bid: float, ask: float, cls: int | None = None,
                time: float | None = None) -> list[dict[str, Any]]:
        """Feed event ``index`` (strictly increasing) and the class predicted at it, if any.

        Args:
            time: the event's time in seconds (non-decreasing); required for a clock-time horizon.
        Returns:
            The outcomes that became known at this event: one dict per prediction made k events ago.
        """
        if index <= self.last_index:
            raise ValueError(f"events must arrive in order: got {index} after {self.last_index}")
        if self.seconds is not None and (time is None or not time >= self._last_time):
            raise ValueError(f"a clock-time horizon needs each event's time, in order; got {time!r} after "
                             f"{self._last_time!r}")
        t = math.nan if time is None else float(time)
        self.last_index = index
        self._last_time = t
        mid = (bid + ask) / 2.0
        outcomes = self._score(index, mid, t)
        self._trade(index, bid, ask, mid, cls, t)
        self._past.append(mid)
        self._mids.append(mid)
        self._prev_mid = mid
        reference = mid if self.label == "forward" else sum(self._past) / len(self._past)
        # The deeplob label needs k past mids; before that its outcome is undefined, as in training.
        if self.label == "forward" or len(self._past) == self.horizon:
            self._pending.append(_Pending(index, t, None if cls is None else int(cls), reference,
                                          baselines=self._baseline_calls(mid, t)))
        return outcomes

    def _classify(self, start: float, end: float) -> int:
        """Class of a move from ``start`` to ``end`` (label band alpha, and at least ``min_move``)."""
        ret = (end - start) / start
        ret = 0.0 if abs(ret) < ROUND_OFF else ret
        if abs(end - start) < self.min_move * (1 - 1e-6):  # a move of exactly one tick, give or take float noise, counts
            return 1
        return realised_class(ret, self.alpha)

    def _baseline_calls(self, mid: float, t: float) -> dict[str, int]:
        calls = {}
        if self._latest_label is not None:
            calls["persistence"] = self._latest_label
        if self.seconds is None:
            if len(self._mids) == self._mids.maxlen:
                calls["momentum"] = self._classify(self._mids[0], self._mids[-1])
            return calls
        if self._first_time is None:
            self._first_time = t
        self._clock_mids.append((t, mid))
        while len(self._clock_mids) > 1 and self._clock_mids[1][0] <= t - self.seconds:
            self._clock_mids.popleft()  # keep the mid in force at t - h (baselines.past_returns)
        if t >= self._first_time + self.seconds:
            calls["momentum"] = self._classify(self._clock_mids[0][1], mid)
        return calls

    def _due(self, index: int, mid: float, t: float) -> list[tuple[_Pending, float]]:
        """Predictions whose outcome this event makes known, with the future mid their label reads."""
        due = []
        if self.seconds is None:
            for pending in self._pending:
                pending.future_sum += mid
            while self._pending and self._pending[0].index + self.horizon <= index:
                pending = self._pending.popleft()
                due.append((pending, pending.future_sum / self.horizon))
        else:
            # This event is strictly after time + h: the previous event's mid was in force at time + h.
            while self._pending and self._pending[0].time + self.seconds < t:
                due.append((self._pending.popleft(), self._prev_mid))
        return due

    def _score(self, index: int, mid: float, t: float) -> list[dict[str, Any]]:
        outcomes = []
        for pending, future in self._due(index, mid, t):
            ret = (future - pending.reference) / pending.reference
            ret = 0.0 if abs(ret) < ROUND_OFF else ret
            real = self._classify(pending.reference, future)
            self._latest_label = real
            if pending.cls is None:
                continue
            hit = real == pending.cls
            self.scored += 1
            self.hits += int(hit)
            for name, call in (pending.baselines or {}).items():
                self.baselines[name].add(call == real)
            outcomes.append({"index": pending.index, "at": index, "predicted": pending.cls, "realised": real,
                             "label": CLASS_NAMES[real], "hit": hit, "ret_bps": round(ret * BPS, 3)})
        return outcomes

    def _trade(self, index: int, bid: float, ask: float, mid: float, cls: int | None, t: float) -> None:
        if cls is not None and cls != 1:
            self._last_signal = (index, cls - 1)
            self._last_signal_time = t
        last, direction = self._last_signal
        held = (index - last < self.horizon if self.seconds is None
                else t - self._last_signal_time < self.seconds)  # clock time: h seconds from the signal
        wanted = direction if last >= 0 and held else 0
        self._wanted.append(wanted)
        executed = self._wanted.popleft() if len(self._wanted) > self.latency else 0
        delta = executed - self.position
        if delta:
            traded = ask if delta > 0 else bid
            size = abs(delta)
            self._cash_gross -= delta * mid
            self._cash_net -= delta * mid + size * (ask - bid) / 2.0 + size * traded * self.fee_rate
            if self.position and self._entry is not None:  # a round trip closes (flat or flip)
                entry, entry_mid = self._entry
                side = self.position
                exit_price = bid if side > 0 else ask
                net = side * (exit_price - entry) - self.fee_rate * (entry + exit_price)
                self.net_pnl_bps += net / entry_mid * BPS
                self.trades += 1
                self._entry = None
            if executed:
                self._entry = (traded, mid)
            self.position = executed
        self.gross_pnl = self._cash_gross + self.position * mid
        liquidation = bid if self.position > 0 else ask
        # What flattening now would leave, closing fee included (the backtest's final forced exit).
        self.net_pnl = self._cash_net + self.position * liquidation - abs(self.position) * liquidation * self.fee_rate


@dataclass(frozen=True)
class Prediction:
    """What the replay needs from the server for one event."""

    ready: bool
    cls: int | None
    label: str | None
    probabilities: tuple[float, ...] | None


def replay_updates(day: ReplayDay, predict: Callable[[np.ndarray], Prediction], tracker: OutcomeTracker | None,
                   speed: float, start: int = 0, stop: int | None = None, flush_s: float = 0.25,
                   retry_s: tuple[float, ...] = (1.0, 2.0, 5.0), unavailable: type[Exception] = Exception,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """Replay ``day`` from event ``start`` at ``speed`` events per second (0: as fast as the server answers).

    Yields messages for the browser: ``{"type": "ticks", "ticks": [...], "stats": {...}}`` every
    ``flush_s`` seconds, ``{"type": "serving_down", "detail", "retry_in"}`` while ``predict`` raises
    ``unavailable`` (the same event is retried, with backoff), ``{"type": "serving_up"}`` on recovery and
    ``{"type": "done"}`` at the end of the day. Without a tracker, predictions are relayed unscored.
    """
    def stats() -> dict[str, Any] | None:
        return tracker.stats() if tracker is not None else None

    stop = len(day.mid) if stop is None else min(stop, len(day.mid))
    interval = 1.0 / speed if speed > 0 else 0.0
    ticks: list[dict[str, Any]] = []
    last_flush = clock()
    next_due = clock()
    failures = 0
    index = start
    while index < stop:
        if interval:
            wait = next_due - clock()
            if wait > 0:
                sleep(wait)
            next_due = max(next_due + interval, clock() - interval)  # never burst to catch up after a stall
        try:
            pred = predict(day.book[index])
        except unavailable as exc:
            delay = retry_s[min(failures, len(retry_s) - 1)]
            failures += 1
            log.warning("model server unavailable at event %d: %s (retry in %.0f s)", index, exc, delay)
            if ticks:
                yield {"type": "ticks", "ticks": ticks, "stats": stats()}
                ticks = []
            yield {"type": "serving_down", "detail": str(exc), "retry_in": delay, "index": index}
            sleep(delay)
            next_due = clock()
            continue
        if failures:
            failures = 0
            yield {"type": "serving_up", "index": index}
        outcomes = [] if tracker is None else tracker.observe(
            index, float(day.bid[index]), float(day.ask[index]), pred.cls if pred.ready else None,
            time=float(day.time[index]))
        ticks.append({
            "i": index, "t": float(day.time[index]), "mid": float(day.mid[index]),
            "bid": float(day.bid[index]), "ask": float(day.ask[index]), "ready": pred.ready,
            "cls": pred.cls, "label": pred.label,
            "p": None if pred.probabilities is None else [round(p, 4) for p in pred.probabilities],
            "outcomes": outcomes,
        })
        index += 1
        if clock() - last_flush >= flush_s:
            yield {"type": "ticks", "ticks": ticks, "stats": stats()}
            ticks = []
            last_flush = clock()
    if ticks:
        yield {"type": "ticks", "ticks": ticks, "stats": stats()}
    yield {"type": "done", "index": index, "stats": stats()}
