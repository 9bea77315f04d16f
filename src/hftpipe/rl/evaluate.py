"""The learned policy against the simple policies, all through the same backtest (fills, fees, risk engine).

Scope: the test split when the file is the policy's own training day (same symbol, date and source
hash), the whole file otherwise. Every policy runs through :func:`hftpipe.trading.backtest.run_backtest`
with a fresh risk engine: ``learned`` (the agent, greedy), ``flat`` (never trades), ``threshold`` (on
the classifier's probabilities; with no classifier it never trades and the report says so),
``passive`` (joins the best bid and ask), ``random`` (uniform random actions, seeded). Each result has
net PnL with a moving-block bootstrap interval, Sharpe over wall-clock buckets, max drawdown,
turnover, fill ratio and the inventory profile; the learned policy's margin over the best simple
policy gets a paired block-bootstrap interval (the same resampled blocks for both curves).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hftpipe.config import Config
from hftpipe.errors import ModelError
from hftpipe.features.splits import TEST
from hftpipe.rl.actions import ACTIONS
from hftpipe.rl.agent import LoadedPolicy
from hftpipe.rl.day import Day
from hftpipe.rl.env import SimSettings
from hftpipe.rl.policy import AgentPolicy
from hftpipe.trading.backtest import BacktestResult, block_bootstrap_total, run_backtest
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.policies import Action, MarketView, make_policy
from hftpipe.trading.risk import RiskEngine, limits_from_config

log = logging.getLogger(__name__)

SIMPLE = ("flat", "threshold", "passive", "random")


class FlatPolicy:
    """Never trades: the zero every other policy must beat after costs."""

    name = "flat"

    def reset(self) -> None:
        pass

    def decide(self, view: MarketView, probs: Any, position: float, open_orders: list[Any]) -> list[Action]:
        return []


def scope_rows(day: Day, policy: LoadedPolicy) -> tuple[int, int, str]:
    """(first, last) event of the evaluation: the test split of the training day, else the whole file."""
    trained = policy.meta.get("data", {})
    same = (trained.get("symbol") == day.symbol and trained.get("date") == day.date
            and trained.get("source_sha256") == day.meta.get("source_sha256"))
    if same:
        rows = day.rows(TEST)
        return int(rows[0]), int(rows[-1]), "test"
    return 0, len(day) - 1, "all"


def _profile(res: BacktestResult) -> dict[str, Any]:
    pos = res.position
    return {
        "mean_abs": float(np.abs(pos).mean()), "max_abs": float(np.abs(pos).max()),
        "time_long": float((pos > 0).mean()), "time_short": float((pos < 0).mean()),
        "time_flat": float((pos == 0).mean()),
        "quantiles": {str(q): float(np.quantile(pos, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "turnover_shares": float(res.shares_traded),
        "turnover_notional": float(sum(f.qty * f.price for f in res.fills)),
    }


def evaluate_policies(cfg: Config, day: Day, policy: LoadedPolicy, seed: int = 0) -> dict[str, Any]:
    """Backtest the learned and the simple policies on ``day``'s scope; the report as a plain dict."""
    first, last, scope = scope_rows(day, policy)
    events = day.events.iloc[first:last + 1].reset_index(drop=True)
    if policy.meta.get("with_probs") and day.probs is None:
        raise ModelError(f"this policy reads the probabilities of classifier {policy.meta.get('classifier')}: "
                         "pass --classifier (or set rl.classifier)")
    settings = SimSettings.from_config(cfg)
    t = cfg.trading
    signals = day.probs[first:last + 1] if day.probs is not None else np.full((len(events), 3), np.nan)
    rng = np.random.default_rng(seed)
    random_actions = rng.integers(0, len(ACTIONS), size=len(events))
    policies: dict[str, Any] = {
        "learned": AgentPolicy("learned", policy.choose, day, settings, policy.stats, policy.meta.get("with_probs"),
                               start=first),
        "flat": FlatPolicy(),
        "threshold": make_policy("threshold", t, cfg.train.horizon),
        "passive": make_policy("passive", t, cfg.train.horizon),
        "random": AgentPolicy("random", lambda obs, i: int(random_actions[i - first]), day, settings,
                              policy.stats, policy.meta.get("with_probs"), start=first),
    }
    results: dict[str, BacktestResult] = {}
    report_policies: dict[str, Any] = {}
    for name, pol in policies.items():
        res = run_backtest(events, signals, pol, RiskEngine(limits_from_config(cfg.risk)),
                           Latency(t.feed_latency_s, t.order_latency_s),
                           Fees(t.maker_fee_per_share, t.taker_fee_per_share, t.fee_bps), symbol=day.symbol,
                           markout_events=t.markout_events or 10, sharpe_buckets=t.sharpe_buckets,
                           bootstrap=t.bootstrap, block_events=t.block_events, seed=seed,
                           flatten_at_end=t.flatten_at_end)
        results[name] = res
        entry = res.to_dict()
        entry["inventory_profile"] = _profile(res)
        if isinstance(pol, AgentPolicy):
            entry["actions"] = {a: int(c) for a, c in zip(ACTIONS, pol.actions)}
        if name == "threshold" and day.probs is None:
            entry["note"] = "no classifier probabilities: the threshold policy never trades (pass --classifier)"
        report_policies[name] = entry
        log.info("%s: net %.2f $ (%d fills, %.1f s)", name, res.net_pnl, res.n_fills, res.elapsed_s)
    best = max(SIMPLE, key=lambda n: results[n].net_pnl)
    diff = np.diff(results["learned"].equity_net, prepend=0.0) - np.diff(results[best].equity_net, prepend=0.0)
    margin = block_bootstrap_total(diff, t.bootstrap, t.block_events, seed)
    return {
        "policy": {"dir": str(policy.directory), "algo": policy.meta.get("algo"), "trained_on": policy.meta.get("data")},
        "data": {"symbol": day.symbol, "date": day.date, "source": day.meta.get("source"),
                 "source_sha256": day.meta.get("source_sha256"), "scope": scope, "events": len(events),
                 "time_from": float(events["time"].iloc[0]), "time_to": float(events["time"].iloc[-1]),
                 "classifier": day.meta.get("classifier")},
        "policies": report_policies,
        "best_simple": best,
        "margin_over_best_simple": margin.to_dict(),
    }


def render_table(report: dict[str, Any]) -> list[str]:
    """The report as a Markdown table, one row per policy."""
    d = report["data"]
    lines = [(f"RL evaluation on {d['symbol']} {d['date']} ({d['scope']}, {d['events']} events); "
             f"policy {report['policy']['dir']}"), "",
             "| policy | net $ | 95% interval $ | Sharpe/bucket | max DD $ | turnover sh | fill ratio | mean abs inv | risk |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in report["policies"].items():
        iv = r["net_pnl_interval"]
        lines.append(f"| {name} | {r['net_pnl']:+.2f} | {iv['low']:+.0f} to {iv['high']:+.0f} | {r['sharpe']:+.3f} | "
                     f"{r['max_drawdown']:.0f} | {r['shares_traded']:.0f} | {r['fill_ratio']:.3f} | "
                     f"{r['mean_abs_inventory']:.1f} | {r['risk_state']} |")
    m = report["margin_over_best_simple"]
    lines += ["", f"learned - {report['best_simple']}: {m['point']:+.2f} $ (95% {m['low']:+.0f} to {m['high']:+.0f})"]
    return lines
