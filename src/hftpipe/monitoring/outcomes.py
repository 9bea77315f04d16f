"""Outcome scoring: join each signal with its realised label k events (or h seconds) later (pure, no I/O).

The label is EXACTLY the model's (``hftpipe.features.labels``): the same horizon (k events, or h seconds
below), label kind
(``forward`` or ``deeplob``), event sampling (``all`` or ``top_of_book``) and stationary band alpha as the
model bundle says. The smoothed move is computed from running prefix sums of ``mid - ref`` in the same
order and with the same reference (the first finite mid of the stream) as the offline cumulative sums, so
a replay of a file from its first event yields bit-identical label returns, hence identical classes, to
``build_features`` on that file (no boundary case can flip at ``|r| == alpha``).

No look-ahead: the label of event t needs the mids of events t+1..t+k, so an outcome is produced only when
the k-th sampled event after t is applied (its ``outcome_time`` is that event's time). A signal that
arrives later than that gets its outcome at once; one that arrives before its book update waits for it.

The naive baselines of ``hftpipe.evaluation.baselines`` are computed for every event from the past only:
persistence (the label of event t-k, whose window closed at t) and momentum (the past k-event mid move
thresholded with alpha); -1 before the k-th event of a segment, exactly where the offline evaluation does
not score them.

Clock-time models (horizon h seconds, e.g. ``"1s"``; ``forward`` label only), matching
``labels.clock_forward_return`` exactly: the label of event t is ``(mid[e] - mid_t) / mid_t`` with ``e`` the
last sampled event whose time is at or before ``time_t + h`` (the mid in force at t + h). Events sharing the
timestamp ``time_t + h`` all belong to it, so the outcome is final only when the first sampled event strictly
after ``time_t + h`` arrives; the outcome is produced then (``outcome_time`` is that event's time, the
mid is the previous event's). Offline, a row whose ``time_t + h`` is exactly the file's last time has a label
that the stream has not finalised yet: it is produced when the next event comes. The baselines are
``evaluation.baselines``'s clock forms: persistence is the label of the latest event whose ``time + h`` is
strictly before ``time_t`` (the latest outcome finalised when t arrived), momentum thresholds
``mid_t / mid[s] - 1`` with ``s`` the event in force at ``time_t - h``; both are -1 while ``time_t`` is less
than h after the segment's first event (``baselines.min_history``). Event times must not go backwards
(offline they cannot); a book whose time does is treated like a gap.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from hftpipe.contracts import ContractError, Outcome, Signal, horizon_fields
from hftpipe.errors import ConfigError, ModelError
from hftpipe.features.labels import DOWN, ROUND_OFF, STATIONARY, UNDEFINED, UP
from hftpipe.horizons import Horizon, parse_horizon

SamplingMode = Literal["all", "top_of_book"]
LabelKind = Literal["forward", "deeplob"]


@dataclass(frozen=True)
class LabelSpec:
    """The label a model was trained on: what an outcome means."""

    horizon: int | str  # k events (10) or clock time ('1s'), as in bundle.json (hftpipe.horizons)
    alpha: float
    kind: LabelKind = "forward"
    sampling: SamplingMode = "all"

    def __post_init__(self) -> None:
        try:
            h = parse_horizon(self.horizon, "label horizon")
        except ConfigError as exc:
            raise ModelError(str(exc)) from None
        object.__setattr__(self, "horizon", h.value)  # canonical: '500ms' -> '0.5s'
        if h.is_clock and self.kind != "forward":
            raise ModelError(f"the {self.kind!r} label is defined in events only; a clock-time horizon ({h}) "
                             "needs label forward")
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ModelError(f"alpha must be a finite number >= 0; got {self.alpha!r}")
        if self.kind not in ("forward", "deeplob"):
            raise ModelError(f"unknown label kind {self.kind!r}; expected forward or deeplob")
        if self.sampling not in ("all", "top_of_book"):
            raise ModelError(f"unknown sampling {self.sampling!r}; expected all or top_of_book")

    @classmethod
    def from_bundle(cls, bundle: Any, fallback_alpha: float | None = None) -> LabelSpec:
        """The label of a loaded :class:`~hftpipe.models.bundle.ModelBundle` (its horizon, alpha, kind, sampling).

        Raises:
            ModelError: the bundle has no alpha and no fallback (``feedback.alpha``) is given.
        """
        alpha = bundle.alpha if bundle.alpha is not None else fallback_alpha
        if alpha is None:
            raise ModelError("the model bundle records no stationary band alpha; set feedback.alpha")
        meta = dict(getattr(bundle, "feature_meta", {}) or {})
        features = (getattr(bundle, "config_dict", {}) or {}).get("features") or {}
        kind = meta.get("label") or features.get("label") or "forward"
        sampling = meta.get("sampling") or features.get("sampling") or "all"
        return cls(horizon=bundle.horizon, alpha=float(alpha), kind=kind, sampling=sampling)

    @property
    def label_horizon(self) -> Horizon:
        """The horizon with its unit (``.describe()``: '10 events', '1 s')."""
        return parse_horizon(self.horizon)


def classify_return(r: float, alpha: float) -> int:
    """One label return to a class, as ``labels.classify``: down below -alpha, up above alpha, -1 for NaN."""
    if math.isnan(r):
        return UNDEFINED
    if r < -alpha:
        return DOWN
    if r > alpha:
        return UP
    return STATIONARY


def _snap(r: float) -> float:
    return 0.0 if abs(r) < ROUND_OFF else r


def _ratio(a: float, b: float) -> float:
    """``a / b`` as numpy divides float64 (a zero mid gives inf or NaN offline, not an exception)."""
    if b != 0.0:
        return a / b
    return math.nan if a == 0.0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)


@dataclass
class _Event:
    index: int  # position in the sampled stream
    seq: int
    event_time: float
    mid: float
    c_before: float  # prefix sum of (mid - ref) over the events before this one
    nbad_before: int  # missing mids before this one


@dataclass
class _Record:
    """One sampled event waiting for (or holding) its outcome, and maybe its signal."""

    index: int
    seq: int
    event_time: float
    persistence: int
    momentum: int
    realised: int | None = None  # None: its k events have not passed yet
    label_return: float = math.nan
    outcome_time: float = math.nan
    signal: Signal | None = None
    outcome_mid: float = math.nan  # mid of the k-th event after this one (the trades' markout mark)


@dataclass
class _SymbolState:
    last_seq: int = 0
    last_signal_seq: int = 0
    n: int = 0  # sampled events so far (index of the next one)
    segment_start: int = 0  # index of the first event since the last reset (gap)
    ref: float | None = None
    c_total: float = 0.0
    nbad_total: int = 0
    prev_top: tuple[float, float, float, float] | None = None
    history: deque = field(default_factory=deque)
    records: OrderedDict = field(default_factory=OrderedDict)  # seq -> _Record, oldest first
    early: dict = field(default_factory=dict)  # seq -> Signal that came before its book update
    # Clock-time horizons only: events whose t + h has not been passed yet, the segment's first event time,
    # the label of the latest finalised event (persistence) and the last event time (times never go back).
    pending: deque = field(default_factory=deque)
    segment_time: float | None = None
    last_label: int = UNDEFINED
    last_time: float | None = None


@dataclass
class JoinStats:
    """Counters a service exports as metrics."""

    books: int = 0
    duplicates: int = 0
    gaps: int = 0
    signals: int = 0
    outcomes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> signals without an outcome

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class OutcomeJoiner:
    """Per-symbol join of book updates and signals into outcomes (feed it in per-symbol seq order).

    Args:
        spec: the model's label.
        max_delay_events: how many sampled events a signal may trail its book update before it is dropped.
        max_early: signals kept per symbol while their book update has not arrived yet.
    """

    def __init__(self, spec: LabelSpec, max_delay_events: int = 100_000, max_early: int = 100_000) -> None:
        self.spec = spec
        horizon = spec.label_horizon
        self._seconds = horizon.seconds  # None: an event horizon
        k = horizon.events or 0
        self.max_delay = max(int(max_delay_events), k + 1)
        self.max_early = max_early
        self.symbols: dict[str, _SymbolState] = {}
        self.stats = JoinStats()
        self._horizon_fields = horizon_fields(horizon)
        # Events of history a label needs; a clock-time horizon keeps what its last h seconds hold (no bound).
        self._keep: int | None = None if horizon.is_clock else (2 * k + 2 if spec.kind == "deeplob" else k + 1)

    def _state(self, symbol: str) -> _SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            st = self.symbols[symbol] = _SymbolState(history=deque(maxlen=self._keep))
        return st

    # ---- market data --------------------------------------------------------------------------------
    def on_gap(self, symbol: str, next_seq: int | None = None) -> None:
        """Events were lost: pending outcomes are dropped and the label restarts after the gap."""
        st = self._state(symbol)
        self._reset(st)
        if next_seq is not None and next_seq - 1 > st.last_seq:
            st.last_seq = next_seq - 1

    def _reset(self, st: _SymbolState, reason: str = "gap") -> None:
        pending = sum(1 for r in st.records.values() if r.realised is None and r.signal is not None)
        self.stats.drop(reason, pending)
        self.stats.gaps += 1
        st.records.clear()
        st.history.clear()
        st.segment_start = st.n
        st.prev_top = None
        st.pending.clear()
        st.segment_time = None
        st.last_label = UNDEFINED
        st.last_time = None

    def on_book(self, symbol: str, seq: int, event_time: float, book: list[float] | tuple[float, ...]) -> list[Outcome]:
        """Apply one book update (LOBSTER order, ``book[:4]`` = best ask price/size, best bid price/size).

        Returns the outcomes that became known with it (signals of the event k sampled events earlier).
        A replayed seq (at or below the last applied) is ignored; a seq jump resets the symbol like a gap.
        """
        st = self._state(symbol)
        if seq <= st.last_seq:
            self.stats.duplicates += 1
            return []
        if st.last_seq and seq != st.last_seq + 1:
            self._reset(st)
        st.last_seq = seq
        self.stats.books += 1
        top = (float(book[0]), float(book[1]), float(book[2]), float(book[3]))
        if self.spec.sampling == "top_of_book":
            # Causal sampling (features.sampling): kept when the quotes differ from the previous update's.
            changed = st.prev_top is None or not all(_same(a, b) for a, b in zip(top, st.prev_top))
            st.prev_top = top
            if not changed:
                self._drop_early_up_to(st, seq, "not_sampled")
                return []
        mid = (top[0] + top[2]) * 0.5  # features.book.mid_price: (ask + bid) / 2 in float64
        if self._seconds is not None:
            return self._on_clock_book(st, seq, float(event_time), mid)
        bad = not math.isfinite(mid)
        if st.ref is None and not bad:
            st.ref = mid
        event = _Event(st.n, seq, float(event_time), mid, st.c_total, st.nbad_total)
        # The same sequential accumulation as np.cumsum(np.where(bad, 0, mid - ref)): bit-identical sums.
        st.c_total = st.c_total + (0.0 if bad else mid - st.ref)
        st.nbad_total += int(bad)
        st.history.append(event)
        st.n += 1
        out: list[Outcome] = []
        k = self.spec.horizon
        seg = event.index - st.segment_start  # events of this segment before this one
        past_label = UNDEFINED
        if seg >= k:
            j_event = st.history[-1 - k]
            r = self._label_return(st, j_event)
            past_label = classify_return(r, self.spec.alpha)
            rec = st.records.get(j_event.seq)
            if rec is not None:
                rec.realised, rec.label_return, rec.outcome_time = past_label, r, event.event_time
                rec.outcome_mid = mid
                if rec.signal is not None:
                    out.append(self._outcome(rec))
        if seg >= k:
            persistence = STATIONARY if past_label == UNDEFINED else past_label
            before = st.history[-1 - k].mid
            momentum = classify_return(mid / before - 1.0, self.spec.alpha)  # baselines.momentum_baseline
            momentum = STATIONARY if momentum == UNDEFINED else momentum
        else:
            persistence = momentum = UNDEFINED  # the offline evaluation scores no row before k either
        rec = _Record(index=event.index, seq=seq, event_time=event.event_time, persistence=persistence,
                      momentum=momentum)
        self._add_record(st, rec)
        return out

    def _add_record(self, st: _SymbolState, rec: _Record) -> None:
        """Keep the event's record (with a signal that came before it) and forget records past max_delay."""
        st.records[rec.seq] = rec
        early = st.early.pop(rec.seq, None)
        if early is not None:
            rec.signal = early
        self._drop_early_up_to(st, rec.seq - 1, "no_book")
        while st.records and next(iter(st.records.values())).index < st.n - self.max_delay:
            if next(iter(st.records.values())).realised is None and self._seconds is not None:
                break  # a clock outcome still to come: kept until t + h has passed, however many events that is
            old = st.records.popitem(last=False)[1]
            if old.realised is None and old.signal is not None:  # cannot happen while max_delay > k
                self.stats.drop("too_late")

    def _on_clock_book(self, st: _SymbolState, seq: int, t: float, mid: float) -> list[Outcome]:
        """One sampled event at a clock-time horizon h (see the module docstring)."""
        h = self._seconds
        assert h is not None
        if st.last_time is not None and t < st.last_time:
            # labels.clock_targets needs non-decreasing times: a clock that went back starts a new segment
            self._reset(st, "time_reversal")
        out: list[Outcome] = []
        if st.pending:
            # This event is strictly after t_j + h for the oldest pending events: the mid in force at
            # t_j + h is the previous event's (times only grow, so it is the last one at or before t_j + h).
            in_force = st.history[-1]
            while st.pending and st.pending[0].event_time + h < t:
                j = st.pending.popleft()
                r = _snap(_ratio(in_force.mid - j.mid, j.mid))
                label = classify_return(r, self.spec.alpha)
                st.last_label = label  # persistence: the latest label whose window closed before t
                rec = st.records.get(j.seq)
                if rec is not None:
                    rec.realised, rec.label_return, rec.outcome_time = label, r, t
                    rec.outcome_mid = in_force.mid
                    if rec.signal is not None:
                        out.append(self._outcome(rec))
        if st.segment_time is None:
            st.segment_time = t
        st.last_time = t
        event = _Event(st.n, seq, t, mid, 0.0, 0)
        st.history.append(event)
        st.pending.append(event)
        st.n += 1
        start = t - h  # baselines.past_returns: the event in force at t - h
        while len(st.history) > 1 and st.history[1].event_time <= start:
            st.history.popleft()
        if t >= st.segment_time + h:  # baselines.min_history: h seconds of past in this segment
            persistence = STATIONARY if st.last_label == UNDEFINED else st.last_label
            momentum = classify_return(_ratio(mid, st.history[0].mid) - 1.0, self.spec.alpha)
            momentum = STATIONARY if momentum == UNDEFINED else momentum
        else:
            persistence = momentum = UNDEFINED
        self._add_record(st, _Record(index=event.index, seq=seq, event_time=t, persistence=persistence,
                                     momentum=momentum))
        return out

    def _label_return(self, st: _SymbolState, j: _Event) -> float:
        """``labels.forward_return`` / ``deeplob_return`` of event j, now that its k-th successor arrived."""
        k = self.spec.horizon
        hist = st.history
        pos = len(hist) - 1 - k  # j's position in the history
        nxt = hist[pos + 1]
        future = (st.c_total - nxt.c_before) / k
        if self.spec.kind == "forward":
            if st.nbad_total - nxt.nbad_before > 0:
                return math.nan
            r = (future - (j.mid - st.ref)) / j.mid
            return _snap(r)
        # deeplob: needs events j-k+1 .. j of the same segment
        if j.index - st.segment_start < k - 1 or pos - (k - 1) < 0:
            return math.nan
        first = hist[pos - (k - 1)]
        if st.nbad_total - first.nbad_before > 0:
            return math.nan
        past = (nxt.c_before - first.c_before) / k
        return _snap((future - past) / (past + st.ref))

    def _drop_early_up_to(self, st: _SymbolState, seq: int, reason: str) -> None:
        stale = [s for s in st.early if s <= seq]
        for s in stale:
            del st.early[s]
        self.stats.drop(reason, len(stale))

    # ---- signals ------------------------------------------------------------------------------------
    def on_signal(self, signal: Signal) -> list[Outcome]:
        """Attach a signal to its event; returns its outcome at once when its k events have already passed."""
        st = self._state(signal.symbol)
        if signal.seq <= st.last_signal_seq:
            self.stats.duplicates += 1
            return []
        st.last_signal_seq = signal.seq
        self.stats.signals += 1
        try:
            same = signal.label_horizon == self.spec.label_horizon  # 10 events is never 10 s
        except ContractError:
            same = False
        if not same:
            self.stats.drop("horizon_mismatch")
            return []
        rec = st.records.get(signal.seq)
        if rec is None:
            if signal.seq > st.last_seq:
                if len(st.early) >= self.max_early:
                    self.stats.drop("early_overflow")
                    return []
                st.early[signal.seq] = signal
            else:
                self.stats.drop("no_book")  # before a gap, not sampled, or older than max_delay_events
            return []
        rec.signal = signal
        if rec.realised is not None:
            return [self._outcome(rec)]
        return []

    def _outcome(self, rec: _Record) -> Outcome:
        s = rec.signal
        assert s is not None
        self.stats.outcomes += 1
        out = Outcome(symbol=s.symbol, venue=s.venue, seq=s.seq, event_time=rec.event_time,
                      outcome_time=rec.outcome_time, publish_time=0.0, **self._horizon_fields,
                      alpha=self.spec.alpha, label_return=rec.label_return, realised=int(rec.realised),
                      predicted=int(s.predicted), probabilities=list(s.probabilities),
                      persistence=rec.persistence, momentum=rec.momentum, model_name=s.model_name,
                      model_version=s.model_version, signal_publish_time=s.publish_time,
                      correlation_id=s.correlation_id,
                      outcome_mid=rec.outcome_mid if math.isfinite(rec.outcome_mid) else 0.0)
        rec.signal = None  # one outcome per signal
        return out

    # ---- persistence across restarts ----------------------------------------------------------------
    def state_of(self, symbol: str, late_tail: int = 1000) -> dict[str, Any]:
        """A JSON-able snapshot of one symbol (the service stores it with the batch it applied).

        Resolved records without a signal are kept only for the last ``late_tail`` events (for signals that
        trail their book update a little): persisting all ``max_delay_events`` of them on every batch would
        cost more than the join itself. A signal later than that after a restart is dropped as ``no_book``.
        """
        st = self._state(symbol)
        keep_from = st.n - (self.spec.label_horizon.events or 0) - 1 - late_tail
        records = [r for r in st.records.values()
                   if r.index >= keep_from or r.signal is not None or r.realised is None]
        return {
            "last_seq": st.last_seq, "last_signal_seq": st.last_signal_seq, "n": st.n,
            "segment_start": st.segment_start, "ref": st.ref, "c_total": st.c_total, "nbad_total": st.nbad_total,
            "prev_top": list(st.prev_top) if st.prev_top is not None else None,
            "history": [[e.index, e.seq, e.event_time, e.mid, e.c_before, e.nbad_before] for e in st.history],
            "records": [[r.index, r.seq, r.event_time, r.persistence, r.momentum, r.realised, r.label_return,
                         r.outcome_time, msgspec.to_builtins(r.signal) if r.signal is not None else None,
                         r.outcome_mid]
                        for r in records],
            "early": [msgspec.to_builtins(s) for s in st.early.values()],
            # clock-time horizons: events still waiting for t + h to pass, and the baselines' state
            "pending": [[e.index, e.seq, e.event_time, e.mid, e.c_before, e.nbad_before] for e in st.pending],
            "segment_time": st.segment_time, "last_label": st.last_label, "last_time": st.last_time,
        }

    def restore(self, symbol: str, snap: dict[str, Any]) -> None:
        """Rebuild one symbol from :meth:`state_of` (after a restart)."""
        st = self.symbols[symbol] = _SymbolState(history=deque(maxlen=self._keep))
        st.last_seq, st.last_signal_seq, st.n = snap["last_seq"], snap["last_signal_seq"], snap["n"]
        st.segment_start, st.ref, st.c_total = snap["segment_start"], snap["ref"], snap["c_total"]
        st.nbad_total = snap["nbad_total"]
        st.prev_top = tuple(snap["prev_top"]) if snap["prev_top"] is not None else None
        for e in snap["history"]:
            st.history.append(_Event(*e))
        for idx, seq, t, pers, mom, realised, ret, out_t, sig, *more in snap["records"]:
            # ``more``: the outcome mid, absent from snapshots written before trades were joined
            st.records[seq] = _Record(idx, seq, t, pers, mom, realised, ret, out_t,
                                      _to_signal(sig) if sig is not None else None,
                                      more[0] if more and more[0] is not None else math.nan)
        for sig in snap["early"]:
            signal = _to_signal(sig)
            st.early[signal.seq] = signal
        # absent from snapshots written before clock-time horizons (event horizons do not use them)
        st.pending.extend(_Event(*e) for e in snap.get("pending", ()))
        st.segment_time, st.last_time = snap.get("segment_time"), snap.get("last_time")
        st.last_label = snap.get("last_label", UNDEFINED)


def _to_signal(raw: dict[str, Any]) -> Signal:
    raw = {k: v for k, v in raw.items() if k != "type"}
    return msgspec.convert(raw, Signal)
