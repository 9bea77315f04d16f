"""The trading environment: N replayed order-book episodes stepped together in numpy arrays.

:class:`BatchSim` is the fast path of :class:`hftpipe.trading.execution.ExecutionModel` plus
:class:`hftpipe.trading.risk.RiskEngine` for the orders :mod:`hftpipe.rl.actions` can produce (at most
one market order in flight and one quote per side): the same latency, book walk, FIFO queue position
(LOBSTER order ids: an order that joined our price after us is "behind"), maker/taker fees, and the
same pre-trade checks in the same order. The per-event Python objects run about 10^5 events/s with no
order open and far fewer with orders; the arrays step every environment at once. Tests replay the
same actions through :func:`hftpipe.trading.backtest.run_backtest` and require identical fills, PnL
and risk decisions. Not mirrored: the loss/drawdown halt is checked once per event (the engine checks
after each fill too), and a halt ends the episode (the backtest keeps marking the open position).

One step = the agent's action at event ``t`` (decided ``feed_latency`` after it, reaching the exchange
``order_latency`` later), then event ``t + 1`` applied to our orders. Reward = change of the net
equity (cash - fees + position marked at the price it could be closed at: bid for a long, ask for a
short, as the backtest's net curve) minus ``inventory_penalty`` x |position|, times ``reward_scale``.

:class:`BatchLobEnv` is stable-baselines3's ``VecEnv`` over it (episodes are random contiguous slices
of the training split, seeded); :class:`LobEnv` is the single-environment gymnasium API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from hftpipe.config import Config
from hftpipe.features.splits import TRAIN
from hftpipe.rl.actions import ACTIONS, BUY, CANCEL, FLATTEN, QUOTE_ASK, QUOTE_BID, SELL
from hftpipe.rl.day import NO_TICK, Day
from hftpipe.trading.execution import DELETE, EXECUTE, HIDDEN_EXECUTE, NEW, PARTIAL_CANCEL
from hftpipe.trading.risk import BPS, RiskLimits, limits_from_config

N_ACTIONS = len(ACTIONS)
CLIP = 5.0  # standardised features are clipped to +/- this many training standard deviations
OBS_BOUND = 10.0  # every observation value lies within +/- this (features by CLIP, the rest by construction)


@dataclass(frozen=True)
class SimSettings:
    """What the simulator needs from ``trading``, ``risk`` and ``rl``."""

    order_size: float
    max_inventory: float
    feed_s: float
    order_s: float
    maker_per_share: float
    taker_per_share: float
    fee_bps: float
    limits: RiskLimits
    inventory_penalty: float
    reward_scale: float

    @classmethod
    def from_config(cls, cfg: Config) -> SimSettings:
        t = cfg.trading
        return cls(float(cfg.rl.order_size), float(cfg.rl.max_inventory), t.feed_latency_s, t.order_latency_s,
                   t.maker_fee_per_share, t.taker_fee_per_share, t.fee_bps, limits_from_config(cfg.risk),
                   cfg.rl.inventory_penalty, cfg.rl.reward_scale)


def feature_stats(day: Day) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature over the training rows (what the policy is fitted on)."""
    x = day.features[day.split == TRAIN]
    mean = np.nanmean(x, axis=0) if len(x) else np.zeros(day.features.shape[1])
    std = np.nanstd(x, axis=0) if len(x) else np.ones(day.features.shape[1])
    return mean, np.where(std > 0, std, 1.0)


def obs_size(n_features: int, with_probs: bool) -> int:
    return n_features + (3 if with_probs else 0) + 7


def standardise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The observation's feature part: (x - mean) / std, clipped to +/- CLIP (NaN: 0), float32.

    Row by row, so the live builder (:mod:`hftpipe.rl.live`) gets the same numbers one event at a time.
    """
    with np.errstate(invalid="ignore"):
        z = (features - mean) / std
    z[np.isnan(z)] = 0.0
    return np.clip(z, -CLIP, CLIP, out=z).astype(np.float32)  # +/- inf land on +/- CLIP


def fill_probs(probs: np.ndarray) -> np.ndarray:
    """The observation's probability part: a missing probability (no full window yet, no signal) reads 1/3."""
    return np.where(np.isfinite(probs), probs, 1.0 / 3.0).astype(np.float32)


def state_features(s: SimSettings, pos: Any, bid_open: Any, ask_open: Any, market_open: Any, ahead_bid: Any,
                   ahead_ask: Any, tod: Any) -> np.ndarray:
    """The trading-state part of the observation: inventory, our orders, queue ahead, time of day."""
    size = max(s.order_size, 1.0)
    return np.column_stack([
        np.asarray(pos, dtype=np.float64) / max(s.max_inventory, 1.0), bid_open, ask_open, market_open,
        np.minimum(np.asarray(ahead_bid) / size, CLIP), np.minimum(np.asarray(ahead_ask) / size, CLIP),
        tod]).astype(np.float32)


class BatchSim:
    """N episodes over one :class:`Day`, each at its own event, stepped in arrays."""

    def __init__(self, day: Day, settings: SimSettings, n: int, stats: tuple[np.ndarray, np.ndarray] | None = None,
                 with_probs: bool | None = None) -> None:
        self.day, self.s, self.n = day, settings, n
        mean, std = stats if stats is not None else feature_stats(day)
        self.z = standardise(day.features, mean, std)
        self.with_probs = day.probs is not None if with_probs is None else with_probs
        if self.with_probs:
            self.probs = fill_probs(day.probs if day.probs is not None else np.full((len(day), 3), np.nan))
        start, end = day.session
        self.tod = ((day.times - start) / max(end - start, 1e-9)).astype(np.float32)
        self.obs_dim = obs_size(self.z.shape[1], self.with_probs)
        lim = settings.limits
        # The stale-data guards compare "now - book/signal time" = the feed latency with their limits.
        self.stale = settings.feed_s > lim.max_book_age_s or settings.feed_s > lim.max_signal_age_s
        self.ring_len = max(lim.max_orders, 1)
        self.reset_all(np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))

    # -- state ---------------------------------------------------------------------------------------------------
    # name -> (dtype, trailing shape, initial value) of the per-environment state
    _STATE: ClassVar[dict[str, tuple[Any, tuple[Any, ...], Any]]] = {
        "pos": (float, (), 0.0), "cash": (float, (), 0.0), "fees": (float, (), 0.0),  # fees: paid minus rebates
        "halted": (bool, (), False), "working": (float, (2,), 0.0), "risk_peak": (float, (), 0.0),
        "ring": (float, ("ring",), -np.inf), "ring_ptr": (np.int64, (), 0),
        # the market-order slot
        "m_open": (bool, (), False), "m_side": (np.int64, (), 0), "m_rem": (float, (), 0.0),
        "m_arrive": (float, (), 0.0),
        # quote slots, [:, 0] bid (buy), [:, 1] ask (sell); state 0 none, 1 in flight, 2 resting
        "q_state": (np.int64, (2,), 0), "q_tick": (np.int64, (2,), 0), "q_price": (float, (2,), 0.0),
        "q_rem": (float, (2,), 0.0), "q_arrive": (float, (2,), 0.0), "q_cancel": (float, (2,), np.inf),
        "q_ahead": (float, (2,), 0.0), "q_join": (np.int64, (2,), 0),
        # counters
        "submitted": (float, (), 0.0), "filled": (float, (), 0.0), "n_orders": (np.int64, (), 0),
        "n_denied": (np.int64, (), 0), "n_fills": (np.int64, (), 0),
    }

    def reset_all(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Start a new episode in every environment: events ``starts`` (observed) to ``ends``."""
        self.cur = np.asarray(starts, dtype=np.int64).copy()
        self.end = np.asarray(ends, dtype=np.int64).copy()
        for name, (dtype, shape, value) in self._STATE.items():
            dims = tuple(self.ring_len if d == "ring" else d for d in shape)
            setattr(self, name, np.full((self.n, *dims), value, dtype=dtype))
        self.equity = self._equity(self.cur)

    def reset_some(self, mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        """Start new episodes in the environments of ``mask`` only."""
        self.cur[mask], self.end[mask] = starts, ends
        for name, (_, _, value) in self._STATE.items():
            getattr(self, name)[mask] = value
        self.equity[mask] = self._equity(self.cur)[mask]

    def _equity(self, idx: np.ndarray) -> np.ndarray:
        d = self.day
        liq = np.where(self.pos > 0, d.bid_ff[idx], d.ask_ff[idx])
        liq = np.where(np.isfinite(liq), liq, d.mid[idx])
        mark = np.where(self.pos != 0, self.pos * liq, 0.0)
        return self.cash - self.fees + mark

    def observe(self) -> np.ndarray:
        """Observations at each environment's current event: nothing after it is read."""
        i = self.cur
        parts = [self.z[i]]
        if self.with_probs:
            parts.append(self.probs[i])
        extra = state_features(self.s, self.pos, self.q_state[:, 0] > 0, self.q_state[:, 1] > 0, self.m_open,
                               np.where(self.q_state[:, 0] == 2, self.q_ahead[:, 0], 0.0),
                               np.where(self.q_state[:, 1] == 2, self.q_ahead[:, 1], 0.0), self.tod[i])
        parts.append(extra)
        return np.clip(np.concatenate(parts, axis=1), -OBS_BOUND, OBS_BOUND)

    # -- the risk engine's pre-trade check, in arrays --------------------------------------------------------------
    def _risk_check(self, want: np.ndarray, side: np.ndarray, qty: np.ndarray, price: np.ndarray, now: np.ndarray,
                    mid: np.ndarray) -> np.ndarray:
        lim = self.s.limits
        ok = want & ~self.halted
        if self.stale:
            ok &= False
        ok &= qty <= lim.max_order_size
        ok &= np.isfinite(mid)
        market = np.isnan(price)
        notional = qty * np.where(market, mid, price)
        ok &= ~(notional > lim.max_order_notional)
        ok &= ~(~market & (np.abs(price - mid) * BPS > lim.price_band_bps * mid))
        exposure = np.where(side > 0, self.pos + self.working[:, 0] + qty, self.pos - self.working[:, 1] - qty)
        ok &= ~(np.abs(exposure) > lim.max_position)
        if lim.max_orders > 0:
            rows = np.arange(self.n)
            oldest = self.ring[rows, self.ring_ptr]
            ok &= ~(oldest > now - lim.rate_window_s)
            e = np.flatnonzero(ok)
            self.ring[e, self.ring_ptr[e]] = now[e]
            self.ring_ptr[e] = (self.ring_ptr[e] + 1) % self.ring_len
        self.n_denied += want & ~ok
        col = np.where(side > 0, 0, 1)
        e = np.flatnonzero(ok)
        self.working[e, col[e]] += qty[e]
        return ok

    def _release(self, e: np.ndarray, col: np.ndarray | int, qty: np.ndarray) -> None:
        """Shares of allowed orders that stopped working (filled or cancelled)."""
        self.working[e, col] = np.maximum(0.0, self.working[e, col] - qty)

    # -- the agent's action at the current event -------------------------------------------------------------------
    def act(self, actions: np.ndarray) -> None:
        d, s = self.day, self.s
        a = np.asarray(actions, dtype=np.int64)
        i = self.cur
        now = d.times[i] + s.feed_s
        live = ~self.halted
        bid_tick, ask_tick = d.bid_tick[i, 0], d.ask_tick[i, 0]
        best_tick = np.column_stack([bid_tick, ask_tick])
        best_price = np.column_stack([d.bid_price[i, 0], d.ask_price[i, 0]])
        has_best = best_tick != NO_TICK
        # cancels: quote actions at another price, cancel, flatten
        for col, act_q in ((0, QUOTE_BID), (1, QUOTE_ASK)):
            open_q = self.q_state[:, col] > 0
            pending = np.isfinite(self.q_cancel[:, col])
            moved = (a == act_q) & open_q & ~pending & has_best[:, col] & (self.q_tick[:, col] != best_tick[:, col])
            every = ((a == CANCEL) | (a == FLATTEN)) & open_q & ~pending
            c = live & (moved | every)
            self.q_cancel[c, col] = now[c] + s.order_s
        # at most one submit per environment and step
        want = np.zeros(self.n, dtype=bool)
        side = np.zeros(self.n, dtype=np.int64)
        qty = np.zeros(self.n)
        price = np.full(self.n, np.nan)
        for act_m, sd in ((BUY, 1), (SELL, -1)):
            q = np.minimum(s.order_size, s.max_inventory - sd * self.pos)
            m = (a == act_m) & ~self.m_open & (q > 0)
            want |= m
            side[m], qty[m] = sd, q[m]
        for col, act_q, sd in ((0, QUOTE_BID, 1), (1, QUOTE_ASK, -1)):
            q = np.minimum(s.order_size, s.max_inventory - sd * self.pos)
            m = (a == act_q) & (self.q_state[:, col] == 0) & (q > 0) & has_best[:, col]
            want |= m
            side[m], qty[m], price[m] = sd, q[m], best_price[m, col]
        m = (a == FLATTEN) & (self.pos != 0) & ~self.m_open
        want |= m
        side[m], qty[m] = np.where(self.pos[m] > 0, -1, 1), np.abs(self.pos[m])
        want &= live
        ok = self._risk_check(want, side, qty, price, now, d.mid[i])
        self.n_orders += ok
        self.submitted += np.where(ok, qty, 0.0)
        market = ok & np.isnan(price)
        self.m_open |= market
        self.m_side[market], self.m_rem[market] = side[market], qty[market]
        self.m_arrive[market] = now[market] + s.order_s
        for col, sd in ((0, 1), (1, -1)):
            q = ok & ~np.isnan(price) & (side == sd)
            self.q_state[q, col] = 1
            self.q_price[q, col] = price[q]
            self.q_tick[q, col] = np.round(price[q] * 10_000).astype(np.int64)
            self.q_rem[q, col] = qty[q]
            self.q_arrive[q, col] = now[q] + s.order_s
            self.q_cancel[q, col] = np.inf
            self.q_ahead[q, col] = 0.0

    # -- fills ---------------------------------------------------------------------------------------------------
    def _book_fill(self, e: np.ndarray, side: np.ndarray, qty: np.ndarray, value: np.ndarray, fee: np.ndarray,
                   n_fills: np.ndarray) -> None:
        self.pos[e] += side * qty
        self.cash[e] -= side * value
        self.fees[e] += fee
        self.filled[e] += qty
        self.n_fills[e] += n_fills
        self._release(e, np.where(side > 0, 0, 1), qty)

    def _walk(self, e: np.ndarray, side: np.ndarray, qty: np.ndarray, row: np.ndarray,
              limit_tick: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Take liquidity from the other side of book ``row``: (shares, value, taker fee, fills) per env."""
        d, s = self.day, self.s
        buy = (side > 0)[:, None]
        ticks = np.where(buy, d.ask_tick[row], d.bid_tick[row])
        sizes = np.where(buy, d.ask_size[row], d.bid_size[row])
        prices = np.where(buy, d.ask_price[row], d.bid_price[row])
        if limit_tick is not None:
            # levels beyond the limit price (and all after them) are out of reach
            beyond = np.where(buy, ticks > limit_tick[:, None], ticks < limit_tick[:, None]) & (ticks != NO_TICK)
            sizes = np.where(np.cumsum(beyond, axis=1) > 0, 0.0, sizes)
        before = np.cumsum(sizes, axis=1) - sizes
        take = np.clip(qty[:, None] - before, 0.0, sizes)
        take = np.where(take > 0, take, 0.0)
        value = np.nansum(take * np.where(take > 0, prices, 0.0), axis=1)
        shares = take.sum(axis=1)
        fee = shares * s.taker_per_share + value * s.fee_bps / 1e4
        return shares, value, fee, (take > 0).sum(axis=1)

    def _level_size(self, row: np.ndarray, col: int, tick: np.ndarray) -> np.ndarray:
        d = self.day
        ticks, sizes = (d.bid_tick[row], d.bid_size[row]) if col == 0 else (d.ask_tick[row], d.ask_size[row])
        return np.where(ticks == tick[:, None], sizes, 0.0).sum(axis=1)

    def _close_quote(self, e: np.ndarray, col: int) -> None:
        self._release(e, col, self.q_rem[e, col])
        self.q_state[e, col] = 0
        self.q_cancel[e, col] = np.inf
        self.q_rem[e, col] = 0.0

    def _maker_fill(self, e: np.ndarray, col: int, size: np.ndarray) -> None:
        if e.size == 0:
            return
        q = np.minimum(size, self.q_rem[e, col])
        e, q = e[q > 0], q[q > 0]
        if e.size == 0:
            return
        sd = np.full(e.size, 1 if col == 0 else -1)
        price = self.q_price[e, col]
        fee = q * self.s.maker_per_share + q * price * self.s.fee_bps / 1e4
        self._book_fill(e, sd, q, q * price, fee, np.ones(e.size, dtype=np.int64))
        self.q_rem[e, col] -= q
        done = e[self.q_rem[e, col] <= 1e-9]
        self.q_state[done, col] = 0
        self.q_cancel[done, col] = np.inf
        self.q_rem[done, col] = 0.0

    def advance(self) -> None:
        """Apply the next event of every live environment to its orders (ExecutionModel.on_event)."""
        d = self.day
        self.cur = np.minimum(self.cur + 1, len(d) - 1)
        i = self.cur
        t = d.times[i]
        prev = i - 1
        # orders reaching the exchange strictly before this event meet the book as it was after the last one
        m = np.flatnonzero(self.m_open & (self.m_arrive < t))
        if m.size:
            shares, value, fee, nf = self._walk(m, self.m_side[m], self.m_rem[m], prev[m], None)
            got = shares > 0
            self._book_fill(m[got], self.m_side[m][got], shares[got], value[got], fee[got], nf[got])
            rest = self.m_rem[m] - shares
            self._release(m, np.where(self.m_side[m] > 0, 0, 1), np.maximum(rest, 0.0))  # the unfilled rest
            self.m_open[m] = False
            self.m_rem[m] = 0.0
        for col, sd in ((0, 1), (1, -1)):
            arriving = np.flatnonzero((self.q_state[:, col] == 1) & (self.q_arrive[:, col] < t))
            if arriving.size:
                dead = self.q_cancel[arriving, col] <= self.q_arrive[arriving, col]
                self._close_quote(arriving[dead], col)
                e = arriving[~dead]
                if e.size:
                    shares, value, fee, nf = self._walk(e, np.full(e.size, sd), self.q_rem[e, col], prev[e],
                                                        self.q_tick[e, col])
                    got = shares > 0
                    self._book_fill(e[got], np.full(int(got.sum()), sd), shares[got], value[got], fee[got], nf[got])
                    self.q_rem[e, col] -= shares
                    full = self.q_rem[e, col] <= 1e-9
                    self.q_state[e[full], col] = 0
                    self.q_rem[e[full], col] = 0.0
                    self.q_cancel[e[full], col] = np.inf
                    r = e[~full]
                    self.q_state[r, col] = 2
                    self.q_ahead[r, col] = self._level_size(prev[r], col, self.q_tick[r, col])
                    self.q_join[r, col] = i[r]
            gone = np.flatnonzero((self.q_state[:, col] == 2) & (self.q_cancel[:, col] < t))
            self._close_quote(gone, col)
        # the event itself, against resting quotes
        et, oid, size, tick, dr = d.etype[i], d.order_id[i], d.size[i], d.price_tick[i], d.direction[i]
        behind = d.new_at[i]
        for col, sd in ((0, 1), (1, -1)):
            resting = self.q_state[:, col] == 2
            if not resting.any():
                continue
            qt = self.q_tick[:, col]
            is_exec = (et == EXECUTE) | (et == HIDDEN_EXECUTE)
            a = resting & is_exec & (dr == sd)
            better = a & (sd * (qt - tick) > 0)
            at_px = a & ~better & (et == EXECUTE) & (tick == qt)
            joined_later = at_px & (behind >= self.q_join[:, col])
            queued = at_px & ~joined_later
            excess = size - self.q_ahead[:, col]
            self.q_ahead[:, col] = np.where(queued, np.maximum(0.0, self.q_ahead[:, col] - size), self.q_ahead[:, col])
            b = resting & ~a & (tick == qt) & (dr == sd) & ((et == PARTIAL_CANCEL) | (et == DELETE))
            with_id = b & (oid > 0) & (behind < self.q_join[:, col])
            self.q_ahead[:, col] = np.where(with_id, np.maximum(0.0, self.q_ahead[:, col] - size), self.q_ahead[:, col])
            no_id = np.flatnonzero(b & (oid <= 0))
            if no_id.size:  # no order ids: the cancel is ahead of us in proportion to the queue ahead
                before = self._level_size(i[no_id], col, qt[no_id]) + size[no_id]
                qa = self.q_ahead[no_id, col]
                shrink = np.where(before > 0, size[no_id] * qa / np.where(before > 0, before, 1.0), 0.0)
                self.q_ahead[no_id, col] = np.maximum(0.0, qa - shrink)
            c = resting & ~a & ~((tick == qt) & (dr == sd)) & (et == NEW) & (dr == -sd) & (sd * (qt - tick) >= 0)
            fill_size = np.where(better | joined_later | c, size, np.where(queued, np.maximum(excess, 0.0), 0.0))
            self._maker_fill(np.flatnonzero(fill_size > 0), col, fill_size[fill_size > 0])
            still = np.flatnonzero((self.q_state[:, col] == 2) & (self.q_ahead[:, col] > 0))
            if still.size:
                self.q_ahead[still, col] = np.minimum(self.q_ahead[still, col],
                                                      self._level_size(i[still], col, self.q_tick[still, col]))

    def _check_loss(self, which: np.ndarray, mid: np.ndarray) -> None:
        """The risk engine's daily loss and drawdown limits (``_check_loss``) for the envs of ``which``."""
        lim = self.s.limits
        pnl = self.cash - self.fees + np.where(self.pos != 0, self.pos * np.where(np.isfinite(mid), mid, 0.0), 0.0)
        self.risk_peak = np.where(which, np.maximum(self.risk_peak, pnl), self.risk_peak)
        breach = which & ((-pnl > lim.max_daily_loss) | (self.risk_peak - pnl > lim.max_daily_drawdown))
        self.halted |= breach

    def mark(self, filled_before: np.ndarray) -> None:
        """Fills are booked at the previous mark, then the new mid re-marks an open position (the engine's order)."""
        i = self.cur
        self._check_loss(self.n_fills != filled_before, self.day.mid[i - 1])
        self._check_loss(self.pos != 0, self.day.mid[i])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Act at the current event, apply the next one; returns (reward, net PnL change in $)."""
        self.act(actions)
        fills = self.n_fills.copy()
        self.advance()
        self.mark(fills)
        equity = self._equity(self.cur)
        pnl = equity - self.equity
        self.equity = equity
        reward = (pnl - self.s.inventory_penalty * np.abs(self.pos)) * self.s.reward_scale
        return reward, pnl


class BatchLobEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` of ``n_envs`` episodes: random contiguous slices of the training split."""

    def __init__(self, day: Day, cfg: Config, n_envs: int | None = None, episode_events: int | None = None,
                 seed: int | None = None, stats: tuple[np.ndarray, np.ndarray] | None = None,
                 split: int = TRAIN) -> None:
        n = int(n_envs or cfg.rl.n_envs)
        self.sim = BatchSim(day, SimSettings.from_config(cfg), n, stats)
        self.episode_events = int(episode_events or cfg.rl.episode_events)
        rows = day.rows(split)
        if rows.size < 2:
            raise ValueError(f"the split holds {rows.size} events; nothing to train on")
        # contiguous runs of the split (purged gaps cut them): an episode never crosses a gap
        breaks = np.flatnonzero(np.diff(rows) != 1)
        first = np.concatenate([[rows[0]], rows[breaks + 1]])
        last = np.concatenate([rows[breaks], [rows[-1]]])
        longest = int(np.argmax(last - first))
        self.first, self.last = int(first[longest]), int(last[longest])
        self.episode_events = max(1, min(self.episode_events, self.last - self.first))
        self.rng = np.random.default_rng(cfg.rl.seed if seed is None else seed)
        space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(self.sim.obs_dim,), dtype=np.float32)
        self.render_mode = None
        super().__init__(n, space, gym.spaces.Discrete(N_ACTIONS))
        self._actions = np.zeros(n, dtype=np.int64)

    def _starts(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        starts = self.rng.integers(self.first, self.last - self.episode_events + 1, size=k)
        return starts, starts + self.episode_events

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None:
            self.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self.sim.reset_all(*self._starts(self.num_envs))
        return self.sim.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(-1)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        reward, _pnl = self.sim.step(self._actions)
        truncated = self.sim.cur >= self.sim.end
        terminated = self.sim.halted.copy()
        done = truncated | terminated
        obs = self.sim.observe()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            for e in np.flatnonzero(done):
                infos[e] = {"terminal_observation": obs[e].copy(), "TimeLimit.truncated": bool(truncated[e] and not terminated[e]),
                            "episode_pnl": float(self.sim.equity[e])}
            self.sim.reset_some(done, *self._starts(int(done.sum())))
            obs = self.sim.observe()
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class LobEnv(gym.Env):
    """The single-environment gymnasium API over the same simulator (one episode = ``episode_events``)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, day: Day, cfg: Config, episode_events: int | None = None, split: int = TRAIN) -> None:
        self.vec = BatchLobEnv(day, cfg, n_envs=1, episode_events=episode_events, split=split)
        self.observation_space = self.vec.observation_space
        self.action_space = self.vec.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.vec.rng = np.random.default_rng(seed)
        sim = self.vec.sim
        start = (options or {}).get("start")
        if start is None:
            starts, ends = self.vec._starts(1)
        else:
            starts = np.array([int(start)])
            ends = starts + self.vec.episode_events
        sim.reset_all(starts, np.minimum(ends, len(sim.day) - 1))
        return sim.observe()[0], {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        sim = self.vec.sim
        reward, pnl = sim.step(np.array([int(action)]))
        terminated = bool(sim.halted[0])
        truncated = bool(sim.cur[0] >= sim.end[0]) and not terminated
        return sim.observe()[0], float(reward[0]), terminated, truncated, {"pnl": float(pnl[0]),
                                                                           "position": float(sim.pos[0])}

