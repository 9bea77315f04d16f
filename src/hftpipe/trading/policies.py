"""Policies: what to do with a signal, as orders and cancels. The same objects run offline and live.

A policy sees the market as the strategy sees it (:class:`MarketView`, already delayed by the feed
latency), the latest class probabilities [down, stationary, up] (or None before the first signal), its
position and its open orders, and returns :class:`Submit` / :class:`Cancel` actions. It never sees the
future, the risk engine or the exchange: the backtest and the paper trader route its actions through
the risk engine and the execution model.

- ``threshold`` (the evaluation backtest's rule, with real orders): when P(up) or P(down) beats the
  threshold, aim for a position of +/- ``order_size`` held for ``hold_events`` events after the latest
  such signal (a repeat extends it, the opposite flips it), trading at market.
- ``passive``: quote ``order_size`` at the best bid and the best ask (joining the queue); when the
  signal says the price will move against a quote (P(down) > threshold for the bid, P(up) for the ask)
  that quote is pulled (``skew="pull"``) or moved one tick behind (``skew="skew"``); a side whose
  fill would take the inventory beyond ``max_inventory`` is not quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from hftpipe.errors import ConfigError
from hftpipe.horizons import Horizon, parse_horizon

TICK = 0.01  # US equities above $1


@dataclass(frozen=True, slots=True)
class MarketView:
    """The top of the book as the strategy sees it."""

    time: float  # local time (exchange time of the event + feed latency)
    event_time: float  # exchange time of the last event seen
    bid: float
    ask: float
    bid_size: float
    ask_size: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@dataclass(frozen=True, slots=True)
class Submit:
    side: int  # +1 buy, -1 sell
    qty: float
    price: float | None  # None: market order
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: int


Action = Submit | Cancel


class OpenOrder(Protocol):
    id: int
    side: int
    price: float | None
    cancel_at: float | None

    @property
    def remaining(self) -> float: ...


class Policy(Protocol):
    name: str

    def decide(self, view: MarketView, probs: tuple[float, float, float] | None, position: float,
               open_orders: list[Any]) -> list[Action]: ...

    def reset(self) -> None: ...


class ThresholdPolicy:
    """Market orders toward +/- ``order_size`` after a confident signal, held ``hold_events`` events."""

    name = "threshold"

    def __init__(self, order_size: float, threshold: float, hold_events: int, max_inventory: float) -> None:
        if hold_events < 1:
            raise ValueError(f"hold_events must be >= 1; got {hold_events}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1); got {threshold}")
        self.order_size = float(min(order_size, max_inventory))
        self.threshold = threshold
        self.hold_events = hold_events
        self.reset()

    def reset(self) -> None:
        self._direction = 0
        self._age = 0

    def decide(self, view: MarketView, probs: tuple[float, float, float] | None, position: float,
               open_orders: list[Any]) -> list[Action]:
        direction = 0
        if probs is not None:
            down, _, up = probs
            if up > self.threshold and up >= down:
                direction = 1
            elif down > self.threshold:
                direction = -1
        if direction:
            self._direction, self._age = direction, 0
        else:
            self._age += 1
        target = self._direction * self.order_size if self._age < self.hold_events else 0.0
        if open_orders:  # a market order is on its way: wait for its fill before sending another
            return []
        gap = target - position
        if gap == 0:
            return []
        return [Submit(1 if gap > 0 else -1, abs(gap), None, "target")]


class PassivePolicy:
    """Join the best bid and ask; pull or step back the quote the signal says will be picked off."""

    name = "passive"

    def __init__(self, order_size: float, threshold: float, max_inventory: float, skew: str = "pull") -> None:
        if skew not in ("pull", "skew"):
            raise ValueError(f"skew must be 'pull' or 'skew'; got {skew!r}")
        self.order_size = float(order_size)
        self.threshold = threshold
        self.max_inventory = float(max_inventory)
        self.skew = skew

    def reset(self) -> None:
        pass

    def _wanted(self, side: int, view: MarketView, probs: tuple[float, float, float] | None,
                position: float) -> tuple[float, float] | None:
        """(price, qty) of the quote wanted on one side, or None."""
        room = self.max_inventory - side * position
        qty = min(self.order_size, room)
        best = view.bid if side > 0 else view.ask
        if qty <= 0 or math.isnan(best):
            return None
        against = probs is not None and (probs[0] if side > 0 else probs[2]) > self.threshold
        if against:
            if self.skew == "pull":
                return None
            best = round(best - side * TICK, 2)
        return best, qty

    def decide(self, view: MarketView, probs: tuple[float, float, float] | None, position: float,
               open_orders: list[Any]) -> list[Action]:
        actions: list[Action] = []
        for side in (1, -1):
            wanted = self._wanted(side, view, probs, position)
            live = [o for o in open_orders if o.side == side and o.cancel_at is None]
            keep = None
            for order in live:
                if (keep is None and wanted is not None and order.price is not None
                        and abs(order.price - wanted[0]) < 1e-9):
                    keep = order
                else:
                    actions.append(Cancel(order.id))
            pending = any(o.side == side and o.cancel_at is not None for o in open_orders)
            if keep is None and wanted is not None and not pending:
                actions.append(Submit(side, wanted[1], wanted[0], "quote"))
        return actions


POLICY_NAMES = ("threshold", "passive")


def make_policy(name: str, cfg: Any, horizon: int | str | Horizon) -> Policy:
    """A policy from the ``trading`` section of params.yaml (``horizon``: the model's k, the default hold).

    Raises:
        ConfigError: the threshold policy would hold for a clock-time horizon ('1s'): it counts events, so
            ``trading.hold_events`` must say how many (nothing converts seconds to events behind your back).
    """
    if name == "threshold":
        hold = cfg.hold_events
        if hold is None:
            h = parse_horizon(horizon)
            if h.is_clock:
                raise ConfigError(f"the threshold policy holds a position for a number of events, but the model's "
                                  f"horizon is {h.describe()} of clock time: set trading.hold_events (e.g. the "
                                  f"events your data has in {h.describe()}) or use the passive policy")
            hold = h.events
        return ThresholdPolicy(cfg.order_size, cfg.threshold, hold, cfg.max_inventory)
    if name == "passive":
        return PassivePolicy(cfg.order_size, cfg.threshold, cfg.max_inventory, cfg.passive_skew)
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
