"""A learned (or scripted) action chooser as a :class:`hftpipe.trading.policies.Policy`.

The backtest (and the paper trader) call ``decide`` once per event with the market view, the signal,
the position and the open orders; :class:`AgentPolicy` rebuilds the environment's observation from
them (the same features, probabilities and state features as :class:`hftpipe.rl.env.BatchSim`),
asks ``choose`` for an action and turns it into orders with :func:`hftpipe.rl.actions.orders_for`.
It reads the day's precomputed arrays (evaluation over a whole file); live, where events come one at a
time, :class:`hftpipe.rl.live.LivePolicy` builds the same observation incrementally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hftpipe.rl.actions import ACTIONS, orders_for
from hftpipe.rl.day import Day
from hftpipe.rl.env import OBS_BOUND, BatchSim, SimSettings, state_features
from hftpipe.rl.live import order_state
from hftpipe.trading.policies import Action, MarketView


class AgentPolicy:
    """Replays a day from event ``start``: call ``decide`` for events start, start+1, ... in order."""

    def __init__(self, name: str, choose: Callable[[np.ndarray, int], int], day: Day, settings: SimSettings,
                 stats: tuple[np.ndarray, np.ndarray] | None = None, with_probs: bool | None = None,
                 start: int = 0) -> None:
        self.name = name
        self.choose = choose
        self.settings = settings
        self.sim = BatchSim(day, settings, 1, stats, with_probs)  # for its feature / probability arrays
        self.start = start
        self.actions = np.zeros(len(ACTIONS), dtype=np.int64)  # how often each action was chosen
        self.reset()

    def reset(self) -> None:
        self.i = self.start
        self.actions[:] = 0

    def observation(self, i: int, position: float, open_orders: list[Any]) -> np.ndarray:
        sim = self.sim
        pos, bid_open, ask_open, market_open, ahead_bid, ahead_ask = order_state(position, open_orders)
        extra = state_features(self.settings, [pos], [bid_open], [ask_open], [market_open], [ahead_bid],
                               [ahead_ask], [sim.tod[i]])[0]
        parts = [sim.z[i]] + ([sim.probs[i]] if sim.with_probs else []) + [extra]
        return np.clip(np.concatenate(parts), -OBS_BOUND, OBS_BOUND)

    def decide(self, view: MarketView, probs: tuple[float, float, float] | None, position: float,
               open_orders: list[Any]) -> list[Action]:
        i = self.i
        self.i += 1
        if self.sim.day.times[i] != view.event_time:
            raise RuntimeError(f"policy out of step: event {i} is at {self.sim.day.times[i]}, "
                               f"the view at {view.event_time}")
        action = int(self.choose(self.observation(i, position, open_orders), i))
        self.actions[action] += 1
        return orders_for(action, view, position, open_orders, self.settings.order_size,
                          self.settings.max_inventory)
