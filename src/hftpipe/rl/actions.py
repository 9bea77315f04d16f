"""The agent's discrete actions as trading orders: one mapping for the environment and the backtest.

:func:`orders_for` turns an action into :class:`~hftpipe.trading.policies.Submit` /
:class:`~hftpipe.trading.policies.Cancel` exactly as the batched environment does it in arrays, so a
learned policy runs unchanged through :func:`hftpipe.trading.backtest.run_backtest` (evaluation, the
paper trader) and through :class:`hftpipe.rl.env.BatchLobEnv` (training). The rules keep at most one
market order in flight and one quote per side, which is what lets the environment hold each in a slot:

- ``hold``: nothing;
- ``buy`` / ``sell``: a market order of ``order_size`` (cut to stay within ``max_inventory``), unless one
  is already in flight;
- ``quote_bid`` / ``quote_ask``: join the best bid / ask with ``order_size`` (cut likewise) when that
  side has no order; a quote at another price is cancelled (re-quoted on a later step);
- ``cancel``: cancel every quote;
- ``flatten``: cancel every quote and send a market order for the whole position.
"""

from __future__ import annotations

import math
from typing import Any

from hftpipe.trading.policies import Action, Cancel, MarketView, Submit

ACTIONS = ("hold", "buy", "sell", "quote_bid", "quote_ask", "cancel", "flatten")
HOLD, BUY, SELL, QUOTE_BID, QUOTE_ASK, CANCEL, FLATTEN = range(len(ACTIONS))


def orders_for(action: int, view: MarketView, position: float, open_orders: list[Any], order_size: float,
               max_inventory: float) -> list[Action]:
    """The orders and cancels of one action (see the module docstring)."""
    market_open = any(o.price is None for o in open_orders)
    out: list[Action] = []
    if action in (BUY, SELL):
        side = 1 if action == BUY else -1
        qty = min(order_size, max_inventory - side * position)
        if not market_open and qty > 0:
            out.append(Submit(side, qty, None, "rl"))
    elif action in (QUOTE_BID, QUOTE_ASK):
        side = 1 if action == QUOTE_BID else -1
        best = view.bid if side > 0 else view.ask
        mine = [o for o in open_orders if o.price is not None and o.side == side]
        if mine:
            for o in mine:
                if o.cancel_at is None and not math.isnan(best) and abs(o.price - best) > 1e-9:
                    out.append(Cancel(o.id))
        else:
            qty = min(order_size, max_inventory - side * position)
            if qty > 0 and not math.isnan(best):
                out.append(Submit(side, qty, best, "rl"))
    elif action in (CANCEL, FLATTEN):
        out.extend(Cancel(o.id) for o in open_orders if o.price is not None and o.cancel_at is None)
        if action == FLATTEN and position != 0 and not market_open:
            out.append(Submit(-1 if position > 0 else 1, abs(position), None, "rl"))
    return out
