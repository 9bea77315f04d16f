"""The learned policy live: an incremental, causal observation builder and the paper trader's ``rl`` policy.

The environment (:class:`hftpipe.rl.env.BatchSim`) reads its observations from whole-day arrays: features from
:func:`hftpipe.features.build.compute_features` over the day, the classifier's probabilities at every event, the
time of day. Live there is no day, only one book update after another. :class:`FeatureStream` keeps what the
window features need (running cumulative sums, the last ``max(windows)`` of them and of the log mids) and turns
each book update into that event's feature row in O(levels + windows), with the same operations in the same
order as the batch code, so the same floating-point numbers (a test replays a real slice and compares every
event). Nothing it holds comes from after the event, so it is causal by construction.

:class:`LivePolicy` is a :class:`hftpipe.trading.policies.Policy`. The paper core (and any caller) gives it every
book update through ``on_book`` (also while the trader is halted, so the windows stay current) and asks
``decide`` on the events it decides on. The observation is assembled exactly as the environment's: standardised
features (the training split's mean and standard deviation, saved with the policy), the probabilities in force
(the newest signal; 1/3 each before the first, as the environment's NaN rows), the trading state read from the
execution model's open orders (:func:`order_state`), the time of day. The greedy action becomes orders through
:func:`hftpipe.rl.actions.orders_for`, the same mapping as the environment's; the risk engine and the execution
model are the caller's.

During the windows' warm-up (the first ``max(windows)`` events after a start or a gap) the policy holds: those
rows are split -1 in the day, so the agent never saw such observations in training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hftpipe.config import Config
from hftpipe.errors import ModelError
from hftpipe.features.book import depth_imbalances, microprice, mid_price, spread
from hftpipe.features.build import feature_names
from hftpipe.features.flow import EXECUTION_TYPES
from hftpipe.rl.actions import ACTIONS, HOLD, orders_for
from hftpipe.rl.env import OBS_BOUND, SimSettings, fill_probs, standardise, state_features
from hftpipe.trading.policies import Action, MarketView

log = logging.getLogger(__name__)

DAY_S = 86_400.0
# per-event increments summed by the windows, in this column order (see compute_features)
OFI, SIGNED, COUNT, SQ_RET, BAD = range(5)


class FeatureStream:
    """:func:`hftpipe.features.build.compute_features` (every event sampled) one event at a time, top ``levels``."""

    def __init__(self, levels: int, windows: Sequence[int]) -> None:
        self.levels = int(levels)
        self.windows = tuple(int(w) for w in windows)
        if not self.windows or min(self.windows) < 1:
            raise ValueError(f"windows must be positive numbers of events; got {list(windows)}")
        self.names = feature_names(self.levels, self.windows)
        self._hist_len = max(self.windows) + 1
        # one-row buffers in the batch code's (column-major) layout
        self._one = np.empty((1, 4 * self.levels), order="F")
        self._mid = np.empty(1)
        self._book_feats = np.empty((1, 2 + 2 * self.levels), order="F")  # spread, microprice, depth imbalances
        self._scratch = np.empty((1, 3), order="F")
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new day, or a gap in the feed): the next event is row 0 again."""
        self.n = 0  # events seen since the reset
        self.last_time = math.nan
        self._top = (math.nan, 0.0, math.nan, 0.0)  # the previous best level (ask, size, bid, size)
        self._sums = np.zeros(5)  # running cumulative sums (np.cumsum adds in the same order)
        self._hist = np.zeros((self._hist_len, 5))  # _sums after each of the last events, by n % len
        self._logm = np.full(self._hist_len, np.nan)  # log mid after each of the last events
        self._logm0 = math.nan

    def _ofi(self, row: np.ndarray) -> float:
        """:func:`hftpipe.features.flow.order_flow_imbalance_increments` of this event (the same four terms)."""
        ap0, aq0, bp0, bq0 = self._top
        ap, aq, bp, bq = float(row[0]), float(row[1]), float(row[2]), float(row[3])
        # an empty side is price -inf (bid) / +inf (ask)
        bp, bp0 = (-math.inf if math.isnan(bp) else bp), (-math.inf if math.isnan(bp0) else bp0)
        ap, ap0 = (math.inf if math.isnan(ap) else ap), (math.inf if math.isnan(ap0) else ap0)
        e = float(bp >= bp0) * bq
        e -= float(bp <= bp0) * bq0
        e -= float(ap <= ap0) * aq
        e += float(ap >= ap0) * aq0
        return e

    @property
    def warm(self) -> bool:
        """True once every window spans real history (the rows the environment trains on)."""
        return self.n > max(self.windows)

    def update(self, event_time: float, book: Sequence[float], event_type: int, size: float,
               direction: int) -> np.ndarray:
        """The feature row (in :attr:`names` order) of the event that left ``book`` (4L values, LOBSTER order)."""
        row = np.asarray(book, dtype=np.float64)[: 4 * self.levels]
        if row.size < 4 * self.levels:
            raise ModelError(f"a book update holds {row.size // 4} level(s); the policy reads {self.levels}")
        t = self.n
        # the book features and the mid of one row, by the batch code's own functions (they read that row only)
        one, bf, levels = self._one, self._book_feats, self.levels
        one[0] = row
        mid_price(one, out=self._mid)
        spread(one, out=bf[:, 0])
        microprice(one, out=bf[:, 1], scratch=self._scratch[:, 0])
        depth_imbalances(one, bf[:, 2: 2 + levels], bf[:, 2 + levels: 2 + 2 * levels], self._scratch)
        inc = np.empty(5)
        inc[OFI] = self._ofi(row) if t else 0.0
        self._top = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
        executed = 1.0 if event_type in EXECUTION_TYPES else 0.0
        inc[SIGNED] = -(executed * float(size)) * float(direction)  # aggressor sign: -direction
        inc[COUNT] = executed
        with np.errstate(invalid="ignore", divide="ignore"):
            logm = float(np.log(self._mid)[0])
        r1 = logm - float(self._logm[(t - 1) % self._hist_len]) if t else 0.0
        bad = not math.isfinite(r1)
        inc[SQ_RET] = 0.0 if bad else r1 * r1
        inc[BAD] = 1.0 if bad else 0.0
        self._sums += inc
        slot = t % self._hist_len
        self._hist[slot] = self._sums
        self._logm[slot] = logm
        if t == 0:
            self._logm0 = logm
        out = np.empty(len(self.names))
        k = 2 + 2 * levels
        out[:k] = bf[0]
        for w in self.windows:
            if t < w:  # warm-up: the history there is (compute_features' rule)
                win, ret = self._sums.copy(), logm - self._logm0
            else:
                past = (t - w) % self._hist_len
                win, ret = self._sums - self._hist[past], logm - self._logm[past]
            vol = math.sqrt(max(win[SQ_RET], 0.0)) if win[BAD] == 0 else math.nan
            out[k: k + 5] = (win[OFI], ret, vol, win[SIGNED], win[COUNT] / w)
            k += 5
        self.n += 1
        self.last_time = float(event_time)
        return out


def order_state(position: float, open_orders: list[Any]) -> tuple[float, bool, bool, bool, float, float]:
    """(position, bid open, ask open, market order open, queue ahead of the bid, of the ask) from open orders.

    What :class:`hftpipe.rl.env.BatchSim` holds in its slots: a quote counts as open from its submission until
    its cancel takes effect; the queue ahead counts only while it rests.
    """
    quotes: dict[int, Any] = {1: None, -1: None}
    for o in open_orders:
        if o.price is not None:
            quotes[o.side] = o
    bid, ask = quotes[1], quotes[-1]
    return (position, bid is not None, ask is not None, any(o.price is None for o in open_orders),
            bid.queue_ahead if bid is not None and bid.status.value == "resting" else 0.0,
            ask.queue_ahead if ask is not None and ask.status.value == "resting" else 0.0)


class ObservationBuilder:
    """The environment's observation of the newest event, built incrementally (see the module docstring)."""

    def __init__(self, settings: SimSettings, levels: int, windows: Sequence[int], stats: tuple[np.ndarray, np.ndarray],
                 with_probs: bool, session: tuple[float, float]) -> None:
        self.settings = settings
        self.stream = FeatureStream(levels, windows)
        mean, std = (np.asarray(s, dtype=np.float64) for s in stats)
        if mean.shape != (len(self.stream.names),) or std.shape != mean.shape:
            raise ModelError(f"the policy's feature statistics have {mean.size} values; its layout "
                             f"({levels} level(s), windows {list(windows)}) has {len(self.stream.names)} features")
        self.mean, self.std = mean, std
        self.with_probs = with_probs
        self.session = (float(session[0]), float(session[1]))
        self.z = np.zeros(len(self.stream.names), dtype=np.float32)

    def reset(self) -> None:
        self.stream.reset()
        self.z[:] = 0.0

    def on_book(self, event_time: float, book: Sequence[float], event_type: int, size: float,
                direction: int) -> None:
        features = self.stream.update(event_time, book, event_type, size, direction)
        self.z = standardise(features[None, :], self.mean, self.std)[0]

    def time_of_day(self, event_time: float) -> np.float32:
        """As the environment's: seconds after midnight (UTC; the replay feed's epoch is the date's midnight
        plus the LOBSTER time) over the session."""
        start, end = self.session
        return np.float32((event_time % DAY_S - start) / max(end - start, 1e-9))

    def observation(self, probs: Sequence[float] | None, position: float, open_orders: list[Any]) -> np.ndarray:
        parts = [self.z]
        if self.with_probs:
            p = np.full(3, np.nan) if probs is None else np.asarray(probs, dtype=np.float64)
            parts.append(fill_probs(p[None, :])[0])
        pos, bid_open, ask_open, market_open, ahead_bid, ahead_ask = order_state(position, open_orders)
        parts.append(state_features(self.settings, [pos], [bid_open], [ask_open], [market_open], [ahead_bid],
                                    [ahead_ask], [self.time_of_day(self.stream.last_time)])[0])
        return np.clip(np.concatenate(parts), -OBS_BOUND, OBS_BOUND)


class LivePolicy:
    """The learned policy as a trading policy fed one book update at a time (see the module docstring)."""

    name = "rl"

    def __init__(self, choose: Callable[[np.ndarray], int], builder: ObservationBuilder, model_id: str = "") -> None:
        self.choose: Callable[[np.ndarray], int] | None = choose
        self.builder = builder
        self.model_id = model_id
        self.actions = np.zeros(len(ACTIONS), dtype=np.int64)  # how often each action was chosen
        self.last_action = HOLD
        self.last_observation: np.ndarray | None = None

    @classmethod
    def from_loaded(cls, policy: Any, model_id: str = "") -> LivePolicy:
        """From a :class:`hftpipe.rl.agent.LoadedPolicy` (its network, standardisation and training config)."""
        return cls(policy.choose, builder_for(policy.config, policy.meta), model_id or str(policy.directory))

    # -- the trading Policy protocol, plus the paper core's optional hooks ------------------------------
    def reset(self) -> None:
        self.builder.reset()
        self.actions[:] = 0
        self.last_action = HOLD
        self.last_observation = None

    def on_book(self, update: Any) -> None:
        """Every book update of the symbol, in order (a :class:`hftpipe.contracts.BookUpdate`)."""
        self.builder.on_book(update.event_time, update.book, update.event_type, update.size, update.direction)

    def on_gap(self) -> None:
        """The feed lost events: the windows restart (and warm up again) from the next update."""
        self.builder.reset()

    def decide(self, view: MarketView, probs: tuple[float, float, float] | None, position: float,
               open_orders: list[Any]) -> list[Action]:
        stream = self.builder.stream
        if stream.last_time != view.event_time:
            raise RuntimeError(f"the rl policy last saw the book at {stream.last_time}, the decision is on "
                               f"{view.event_time}: call on_book with every book update before decide")
        if self.choose is None:
            raise RuntimeError("the rl policy has no network: rebind it after restoring a snapshot")
        obs = self.builder.observation(probs, position, open_orders)
        self.last_observation = obs
        action = int(self.choose(obs)) if stream.warm else HOLD
        self.last_action = action
        self.actions[action] += 1
        s = self.builder.settings
        return orders_for(action, view, position, open_orders, s.order_size, s.max_inventory)

    # -- snapshots: the state travels, the network does not (it is reloaded, never pickled per batch) ----
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["choose"] = None
        return state

    def rebind(self, fresh: Any) -> Any:
        """After a restore: take ``fresh``'s network, keeping the window history when the layout matches."""
        if isinstance(fresh, LivePolicy) and fresh.layout() == self.layout():
            self.choose = fresh.choose
            self.builder.mean, self.builder.std = fresh.builder.mean, fresh.builder.std
            if fresh.model_id != self.model_id:
                log.info("rl policy: %s replaces %s (same observation layout, windows kept)", fresh.model_id,
                         self.model_id)
            self.model_id = fresh.model_id
            return self
        log.info("rl policy: the stored state does not fit %s; starting it fresh",
                 getattr(fresh, "model_id", getattr(fresh, "name", "?")))
        return fresh

    def layout(self) -> tuple[Any, ...]:
        b = self.builder
        return (b.stream.levels, b.stream.windows, b.with_probs, b.session, b.settings.order_size,
                b.settings.max_inventory)


def builder_for(cfg: Config, meta: dict[str, Any]) -> ObservationBuilder:
    """The observation builder of a trained policy (its training config and ``policy.json``)."""
    windows = tuple(cfg.features.windows)
    names = feature_names(cfg.rl.levels, windows)
    if list(meta.get("feature_names", names)) != names:
        raise ModelError(f"the policy's features {meta.get('feature_names')} are not those of its config "
                         f"({cfg.rl.levels} level(s), windows {list(windows)}); retrain it with `hftpipe rl train`")
    session = meta.get("session") or (cfg.validate.session_start, cfg.validate.session_end)
    return ObservationBuilder(SimSettings.from_config(cfg), cfg.rl.levels, windows,
                              (np.asarray(meta["feature_mean"]), np.asarray(meta["feature_std"])),
                              bool(meta.get("with_probs")), (float(session[0]), float(session[1])))
