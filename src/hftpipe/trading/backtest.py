"""Event-driven backtest: policy -> risk engine -> queue-aware execution model, on the canonical event stream.

One pass over the events in exchange-time order. At each event the execution model applies it to our
resting orders (queue position, fills), the risk engine books fills and re-marks the position (a loss
breach halts trading at once), then the policy sees the book and the signal of that event as the
strategy would (``feed_latency`` later) and its orders go through the pre-trade check to the
execution model (which adds ``order_latency``). When trading halts, resting orders are cancelled. At
the end any open inventory is closed with a market order (outside the risk engine: the end-of-day
close), so every number is realised.

PnL is in dollars for the shares actually traded:

- ``gross_pnl``: at the fill prices, before fees and rebates (the spread crossed by market orders is
  in it; the spread earned by passive fills too);
- ``net_pnl``: gross minus fees plus rebates; the per-event net curve marks open inventory at the
  price it could be closed at (bid for a long, ask for a short), and so does the final number when
  the end-of-day close could not fill everything (``final_inventory`` != 0; gross marks it at the mid);
- ``adverse_selection_bps``: for passive fills, the mid move against us ``markout_events`` events after
  the fill, bps of the mid (positive = we were picked off);
- ``sharpe``: mean / standard deviation of net PnL per equal wall-clock bucket (not annualised);
- ``net_pnl_interval``: moving-block bootstrap of the per-event net PnL increments (blocks of
  ``block_events``), 95% percentile interval of the resampled totals.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hftpipe.data.schema import book_matrix, levels_of
from hftpipe.evaluation.bootstrap import Interval
from hftpipe.trading.execution import ExecutionModel, Fees, Fill, Latency
from hftpipe.trading.policies import Cancel, MarketView, Policy
from hftpipe.trading.risk import RiskEngine, RiskState


@dataclass(frozen=True)
class BacktestResult:
    """Summary numbers plus the fills and the per-event curves (kept out of :meth:`to_dict`)."""

    policy: str
    gross_pnl: float  # $, at fill prices, before fees
    fees: float  # $ paid (taker fees, bps fees)
    rebates: float  # $ received (maker rebates)
    net_pnl: float  # gross - fees + rebates
    net_pnl_interval: Interval
    n_orders: int
    n_cancels: int
    n_fills: int
    maker_fills: int
    shares_traded: float
    fill_ratio: float  # shares filled / shares ordered (orders that passed the risk check)
    adverse_selection_bps: float  # passive fills, mid move against us after markout_events events
    markout_bps: float  # all fills: (mid after - fill price) * side, bps; includes the spread paid or earned
    mean_abs_inventory: float  # shares, per event
    max_abs_inventory: float
    final_inventory: float  # shares the end-of-day close could not fill (the visible book was too thin)
    sharpe: float
    n_buckets: int
    max_drawdown: float  # $, of the net curve
    risk_denials: dict[str, int]
    risk_state: str
    n_events: int
    elapsed_s: float
    fills: list[Fill] = field(repr=False, compare=False, default_factory=list)
    equity_net: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    position: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("fills", "equity_net", "position"):
                continue
            value = getattr(self, name)
            if isinstance(value, Interval):
                value = value.to_dict()
            elif isinstance(value, (np.integer, np.floating)):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # e.g. adverse selection without a passive fill; JSON has no NaN
            out[name] = value
        return out


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value over gaps (leading gaps take the first finite value)."""
    bad = ~np.isfinite(values)
    if not bad.any() or bad.all():
        return values
    idx = np.maximum.accumulate(np.where(bad, 0, np.arange(values.size)))
    first = int(np.flatnonzero(~bad)[0])
    idx[:first] = first
    return values[idx]


def block_bootstrap_total(increments: np.ndarray, n_resamples: int, block: int, seed: int = 0,
                          level: float = 0.95) -> Interval:
    """Percentile interval of the total of a dependent series by the moving-block bootstrap."""
    x = np.asarray(increments, dtype=np.float64)
    n = x.size
    point = float(x.sum())
    if n == 0 or n_resamples < 1:
        return Interval(point, point, point)
    block = int(max(1, min(block, n)))
    n_blocks = -(-n // block)
    lengths = np.full(n_blocks, block)
    lengths[-1] = n - (n_blocks - 1) * block
    cum = np.concatenate([[0.0], np.cumsum(x)])
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(n_resamples, n_blocks))
    totals = (cum[starts + lengths[None, :]] - cum[starts]).sum(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(totals, [tail, 100.0 - tail])
    return Interval(point, float(low), float(high))


def _bucket_edges(times: np.ndarray, n_buckets: int) -> np.ndarray:
    n = times.size
    n_buckets = max(1, min(n_buckets, n))
    bounds = np.linspace(times[0], times[-1], n_buckets + 1)[1:]
    edges = np.searchsorted(times, bounds, side="right") - 1
    edges[-1] = n - 1
    return np.unique(np.clip(edges, 0, n - 1))


def run_backtest(events: pd.DataFrame, signals: np.ndarray, policy: Policy, risk: RiskEngine,
                 execution: Latency, costs: Fees, *, symbol: str = "", markout_events: int = 10,
                 sharpe_buckets: int = 50, bootstrap: int = 500, block_events: int = 1000, seed: int = 0,
                 flatten_at_end: bool = True) -> BacktestResult:
    """Replay ``events`` with ``policy`` acting on ``signals`` under ``risk``, filled by the execution model.

    Args:
        events: canonical event table (hftpipe.data.schema): event columns plus the book after each event.
        signals: (n, 3) class probabilities [down, stationary, up] known at each event; NaN rows: no signal.
        policy: a :class:`hftpipe.trading.policies.Policy`.
        risk: the pre-trade risk engine (its state and counters are updated in place).
        execution: feed and order latency of the execution model.
        costs: maker/taker fees and rebates.
    """
    started = _time.perf_counter()
    n = len(events)
    signals = np.asarray(signals, dtype=np.float64)
    if n == 0:
        raise ValueError("cannot backtest zero events")
    if signals.shape != (n, 3):
        raise ValueError(f"signals must have shape ({n}, 3) (one probability row per event); got {signals.shape}")
    levels = levels_of(events)
    mat = book_matrix(events, levels)
    times = events["time"].to_numpy(dtype=np.float64)
    bid = mat[:, 2]
    ask = mat[:, 0]
    mid = _ffill((bid + ask) / 2.0)
    types = events["type"].tolist()
    ids = events["order_id"].tolist()
    sizes = events["size"].tolist()
    prices = events["price"].tolist()
    dirs = events["direction"].tolist()
    t_list, bid_l, ask_l = times.tolist(), bid.tolist(), ask.tolist()
    bsz_l, asz_l, mid_l = mat[:, 3].tolist(), mat[:, 1].tolist(), mid.tolist()
    valid = np.isfinite(signals).all(axis=1)
    probs_l: list[tuple[float, float, float] | None] = [
        (float(a), float(b), float(c)) if ok else None for (a, b, c), ok in zip(signals.tolist(), valid)]

    ex = ExecutionModel(symbol, costs, execution)
    feed = execution.feed_s
    fills: list[Fill] = []
    fill_idx: list[int] = []
    position = 0.0
    n_orders = n_cancels = 0
    halted_done = False
    policy.reset()
    for i in range(n):
        t = t_list[i]
        new = ex.on_event(t, types[i], ids[i], sizes[i], prices[i], dirs[i], mat[i])
        for f in new:
            position += f.side * f.qty
            risk.on_fill(symbol, f.side, f.qty, f.price, f.fee, now=t)
            fills.append(f)
            fill_idx.append(i)
        if ex.cancelled:
            for o in ex.cancelled:
                risk.on_cancel(symbol, o.side, o.remaining)
            ex.cancelled.clear()
        risk.on_mark(symbol, mid_l[i], now=t)
        if risk.state is RiskState.HALTED:
            if not halted_done:  # kill switch or loss limit: pull everything resting, once
                for o in ex.open_orders():
                    ex.cancel(o.id, t + feed)
                    n_cancels += 1
                halted_done = True
            continue
        halted_done = False
        now = t + feed
        probs = probs_l[i]
        view = MarketView(now, t, bid_l[i], ask_l[i], bsz_l[i], asz_l[i])
        for action in policy.decide(view, probs, position, ex.open_orders()):
            if isinstance(action, Cancel):
                ex.cancel(action.order_id, now)
                n_cancels += 1
                continue
            decision = risk.check(symbol, action.side, action.qty, action.price, now, book_time=t,
                                  signal_time=t if probs is not None else None)
            if decision.allowed:
                ex.submit(action.side, action.qty, action.price, now)
                n_orders += 1

    last_t = t_list[-1]
    for o in ex.open_orders():
        ex.cancel(o.id, last_t + feed)
    tail = ex.flush()
    if flatten_at_end:
        rest = position + sum(f.side * f.qty for f in tail)
        if rest:
            ex.submit(-1 if rest > 0 else 1, abs(rest), None, last_t + feed)
            n_orders += 1
            tail += ex.flush()
    for f in tail:
        position += f.side * f.qty
        risk.on_fill(symbol, f.side, f.qty, f.price, f.fee, now=last_t)
        fills.append(f)
        fill_idx.append(n - 1)

    return _summarise(policy.name, fills, np.asarray(fill_idx, dtype=np.int64), n, times, mid, bid, ask,
                      ex, risk, n_orders, n_cancels, markout_events, sharpe_buckets, bootstrap, block_events, seed,
                      _time.perf_counter() - started)


def _summarise(policy: str, fills: list[Fill], idx: np.ndarray, n: int, times: np.ndarray, mid: np.ndarray,
               bid: np.ndarray, ask: np.ndarray, ex: ExecutionModel, risk: RiskEngine, n_orders: int,
               n_cancels: int, markout_events: int, sharpe_buckets: int, bootstrap: int, block_events: int,
               seed: int, elapsed: float) -> BacktestResult:
    side = np.array([f.side for f in fills], dtype=np.float64)
    qty = np.array([f.qty for f in fills], dtype=np.float64)
    price = np.array([f.price for f in fills], dtype=np.float64)
    fee = np.array([f.fee for f in fills], dtype=np.float64)
    maker = np.array([f.maker for f in fills], dtype=bool)
    signed = side * qty
    position = np.cumsum(np.bincount(idx, weights=signed, minlength=n)) if fills else np.zeros(n)
    cash = np.cumsum(np.bincount(idx, weights=-signed * price, minlength=n)) if fills else np.zeros(n)
    fee_cum = np.cumsum(np.bincount(idx, weights=fee, minlength=n)) if fills else np.zeros(n)
    liquidation = _ffill(np.where(position > 0, bid, ask))
    liquidation = np.where(np.isfinite(liquidation), liquidation, mid)
    equity_net = cash - fee_cum + position * liquidation
    gross = float(cash[-1] + position[-1] * mid[-1])
    fees_paid = float(fee[fee > 0].sum())
    rebates = float(-fee[fee < 0].sum()) + 0.0  # + 0.0: no '-0.00' when there is none

    later = mid[np.minimum(idx + markout_events, n - 1)] if fills else np.zeros(0)
    at_fill = mid[idx] if fills else np.zeros(0)
    if maker.any():
        move = -side[maker] * (later[maker] - at_fill[maker]) / at_fill[maker] * 1e4
        adverse = float(np.average(move, weights=qty[maker]))
    else:
        adverse = math.nan
    markout = float(np.average(side * (later - price) / price * 1e4, weights=qty)) if fills else math.nan

    edges = _bucket_edges(times, sharpe_buckets)
    bucket = np.diff(np.concatenate([[0.0], equity_net[edges]]))
    sd = bucket.std(ddof=1) if bucket.size > 1 else 0.0
    sharpe = float(bucket.mean() / sd) if sd > 0 else 0.0
    drawdown = float(np.max(np.maximum.accumulate(np.concatenate([[0.0], equity_net]))[1:] - equity_net))
    increments = np.diff(equity_net, prepend=0.0)
    interval = block_bootstrap_total(increments, bootstrap, block_events, seed)
    return BacktestResult(
        policy=policy, gross_pnl=gross, fees=fees_paid, rebates=rebates, net_pnl=float(equity_net[-1]),
        net_pnl_interval=interval, n_orders=n_orders, n_cancels=n_cancels, n_fills=len(fills),
        maker_fills=int(maker.sum()), shares_traded=float(qty.sum()),
        fill_ratio=float(ex.filled_qty / ex.submitted_qty) if ex.submitted_qty else 0.0,
        adverse_selection_bps=adverse, markout_bps=markout,
        mean_abs_inventory=float(np.abs(position).mean()), max_abs_inventory=float(np.abs(position).max()),
        final_inventory=float(position[-1]),
        sharpe=sharpe, n_buckets=int(edges.size), max_drawdown=drawdown,
        risk_denials={r.value: c for r, c in sorted(risk.denials.items(), key=lambda kv: kv[0].value)},
        risk_state=risk.state.value, n_events=n, elapsed_s=elapsed, fills=fills, equity_net=equity_net,
        position=position)
