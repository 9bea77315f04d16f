"""Cost-aware backtest of a three-class signal on the best quotes, one share at a time.

Trading rule (vectorised over the whole event stream):

- The signal at event t (0 down, 1 stationary, 2 up) sets the wanted position: +1 after "up", -1 after
  "down", held for k events from the latest non-stationary signal, so a repeated signal extends the
  hold, an opposite one flips it, and "stationary" never opens or closes anything by itself.
- The order reaches the book ``latency`` events later and crosses the spread: buys pay the ask, sells
  get the bid, and fees of ``fees_bps`` are charged per side on the traded price. Whatever is still
  open at the last event is closed there.

PnL is in dollars per share traded (a unit position) and decomposed as
``net = gross - spread_cost - fee_cost`` where ``gross`` is the mid-to-mid PnL of the same executed
positions. The Sharpe ratio is that of the net mark-to-liquidation PnL over equal time buckets
(per bucket, not annualised: one day of events is all there is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BPS = 1e4


@dataclass(frozen=True)
class BacktestResult:
    """Summary numbers plus the per-event curves (curves stay out of :meth:`to_dict`)."""

    gross_pnl: float  # $ per share, mid to mid
    spread_cost: float  # $ per share paid by crossing half the spread on every trade
    fee_cost: float  # $ per share in fees
    net_pnl: float  # gross - spread_cost - fee_cost
    gross_pnl_bps: float  # sum over round trips of the trade PnL relative to its entry mid
    net_pnl_bps: float
    n_trades: int  # round trips (a flip closes one and opens another)
    pnl_per_trade: float  # net $ per round trip
    pnl_per_trade_bps: float  # net bps per round trip
    hit_rate: float  # fraction of round trips with positive net PnL
    shares_traded: float
    turnover: float  # shares traded per event
    time_in_market: float  # fraction of events with an open position
    sharpe: float  # mean / std of net PnL per time bucket
    n_buckets: int
    n_events: int
    equity_net: np.ndarray = field(repr=False, compare=False)  # (n,) net PnL marked to liquidation
    equity_gross: np.ndarray = field(repr=False, compare=False)  # (n,) gross PnL marked to mid
    position: np.ndarray = field(repr=False, compare=False)  # (n,) executed position in {-1, 0, 1}

    def to_dict(self) -> dict[str, Any]:
        """Scalar results as plain Python numbers (JSON-ready)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("equity_net", "equity_gross", "position"):
                continue
            value = getattr(self, name)
            out[name] = int(value) if isinstance(value, (int, np.integer)) else float(value)
        return out


def target_position(signal: np.ndarray, horizon: int) -> np.ndarray:
    """Wanted position per event: direction of the latest non-stationary signal within the last k events."""
    signal = np.asarray(signal, dtype=np.int64)
    if signal.size and (signal.min() < 0 or signal.max() > 2):
        raise ValueError("signal must hold classes 0 (down), 1 (stationary), 2 (up)")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 event; got {horizon}")
    direction = signal - 1
    idx = np.arange(signal.size)
    last = np.maximum.accumulate(np.where(direction != 0, idx, -1)) if signal.size else idx
    live = (last >= 0) & (idx - last < horizon)
    return np.where(live, direction[np.maximum(last, 0)], 0).astype(np.int64)


def _fill_quotes(values: np.ndarray, name: str) -> np.ndarray:
    """Carry the last known quote over gaps (an empty best level); leading gaps take the first quote."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if bad.all():
        raise ValueError(f"{name} has no finite quote")
    idx = np.where(bad, 0, np.arange(values.size))
    idx = np.maximum.accumulate(idx)
    first = np.flatnonzero(~bad)[0]
    idx[:first] = first
    return values[idx]


def _bucket_edges(n: int, n_buckets: int, time: np.ndarray | None) -> np.ndarray:
    """Last event index of each bucket: equal wall-clock spans if ``time`` is given, else equal counts."""
    n_buckets = max(1, min(n_buckets, n))
    if time is None:
        edges = np.linspace(0, n, n_buckets + 1).round().astype(np.int64)[1:] - 1
    else:
        time = np.asarray(time, dtype=np.float64)
        bounds = np.linspace(time[0], time[-1], n_buckets + 1)[1:]
        edges = np.searchsorted(time, bounds, side="right") - 1
        edges[-1] = n - 1
    return np.unique(np.clip(edges, 0, n - 1))


def backtest(signal: np.ndarray, bid: np.ndarray, ask: np.ndarray, horizon: int, fees_bps: float = 0.0,
             latency: int = 1, sharpe_buckets: int = 50, time: np.ndarray | None = None) -> BacktestResult:
    """Trade a per-event signal on the best quotes; see the module docstring for the rule.

    Args:
        signal: (n,) ints, 0 down / 1 stationary / 2 up, one per event of a contiguous stream.
        bid, ask: (n,) best bid and ask at each event (gaps carry the last quote).
        horizon: k, events a position is held after the latest signal in its direction.
        fees_bps: fee per side in basis points of the traded price.
        latency: events between the signal and the book the order executes against.
        sharpe_buckets: number of time buckets for the Sharpe ratio.
        time: optional (n,) event times; buckets then span equal wall-clock time.
    Returns:
        :class:`BacktestResult`.
    """
    signal = np.asarray(signal)
    n = signal.size
    if n == 0:
        raise ValueError("cannot backtest an empty signal")
    if len(bid) != n or len(ask) != n:
        raise ValueError(f"signal, bid and ask must have equal length; got {n}, {len(bid)}, {len(ask)}")
    if latency < 0:
        raise ValueError(f"latency must be >= 0 events; got {latency}")
    if fees_bps < 0:
        raise ValueError(f"fees_bps must be >= 0; got {fees_bps}")
    bid = _fill_quotes(bid, "bid")
    ask = _fill_quotes(ask, "ask")
    mid = (bid + ask) / 2.0
    fee_rate = fees_bps / BPS

    wanted = target_position(signal, horizon)
    position = np.zeros(n, dtype=np.int64)
    if latency < n:
        position[latency:] = wanted[: n - latency]
    position[-1] = 0  # flat at the end of the stream: every trade is a closed round trip

    delta = np.diff(position, prepend=0)
    size = np.abs(delta).astype(np.float64)
    traded_price = np.where(delta > 0, ask, bid)
    spread_paid = size * (ask - bid) / 2.0
    fee_paid = size * traded_price * fee_rate
    cash_gross = np.cumsum(-delta * mid)
    cash_net = np.cumsum(-delta * mid - spread_paid - fee_paid)
    equity_gross = cash_gross + position * mid
    liquidation = np.where(position > 0, bid, ask)  # what closing the open position would fetch
    equity_net = cash_net + position * liquidation

    # Round trips: maximal runs of one non-zero position; each ends at the next change of position.
    changes = np.flatnonzero(delta != 0)
    starts_at = changes[position[changes] != 0]
    order = np.searchsorted(changes, starts_at)
    ends_at = changes[order + 1]  # exists: the position is forced flat at the last event
    side = position[starts_at].astype(np.float64)
    entry = np.where(side > 0, ask[starts_at], bid[starts_at])
    exit_ = np.where(side > 0, bid[ends_at], ask[ends_at])
    trade_gross = side * (mid[ends_at] - mid[starts_at])
    trade_net = side * (exit_ - entry) - fee_rate * (entry + exit_)
    entry_mid = mid[starts_at]
    n_trades = int(starts_at.size)

    edges = _bucket_edges(n, sharpe_buckets, time)
    bucket_pnl = np.diff(np.concatenate([[0.0], equity_net[edges]]))
    sd = bucket_pnl.std(ddof=1) if bucket_pnl.size > 1 else 0.0
    sharpe = float(bucket_pnl.mean() / sd) if sd > 0 else 0.0

    return BacktestResult(
        gross_pnl=float(cash_gross[-1]),
        spread_cost=float(spread_paid.sum()),
        fee_cost=float(fee_paid.sum()),
        net_pnl=float(cash_net[-1]),
        gross_pnl_bps=float((trade_gross / entry_mid).sum() * BPS),
        net_pnl_bps=float((trade_net / entry_mid).sum() * BPS),
        n_trades=n_trades,
        pnl_per_trade=float(trade_net.mean()) if n_trades else 0.0,
        pnl_per_trade_bps=float((trade_net / entry_mid).mean() * BPS) if n_trades else 0.0,
        hit_rate=float((trade_net > 0).mean()) if n_trades else 0.0,
        shares_traded=float(size.sum()),
        turnover=float(size.sum() / n),
        time_in_market=float((position != 0).mean()),
        sharpe=sharpe,
        n_buckets=int(edges.size),
        n_events=n,
        equity_net=equity_net,
        equity_gross=equity_gross,
        position=position,
    )
