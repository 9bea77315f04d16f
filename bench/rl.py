"""Benchmark: RL environment steps/s, vectorised vs the per-event objects vs a naive pandas environment.

Three environments step the same GOOG day with the same kind of random actions (mostly holds and
quotes), in the same run:

- ``vectorised``: :class:`hftpipe.rl.env.BatchSim` with ``--envs`` environments per call;
- ``objects``: the trading package's per-event objects (ExecutionModel + RiskEngine) through
  ``run_backtest`` with a scripted :class:`hftpipe.rl.policy.AgentPolicy` (the reference the
  vectorised fills are tested equal to);
- ``naive``: a gym-style environment that reads a pandas DataFrame row by row (``df.iloc[i]``),
  fills market orders at the best price and marks to the mid (far simpler than ours, and still slow).

Steps/s are per wall-clock second and per CPU second of this process (``time.process_time``): on a
shared machine the second is the per-core number. Target: vectorised >= 50,000 steps/s per core.

    python bench/rl.py [--envs 256] [--steps 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: the number is per core

import numpy as np
import pandas as pd

from hftpipe.config import load_config
from hftpipe.rl.actions import ACTIONS
from hftpipe.rl.day import load_day
from hftpipe.rl.env import BatchSim, SimSettings
from hftpipe.rl.policy import AgentPolicy
from hftpipe.trading.backtest import run_backtest
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.risk import RiskEngine

P = np.array([0.55, 0.01, 0.01, 0.2, 0.2, 0.02, 0.01])


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


class NaiveEnv:
    """A DataFrame stepped row by row: market orders at the best quote, marked to the mid."""

    def __init__(self, frame: pd.DataFrame, start: int) -> None:
        self.df, self.i, self.pos, self.cash, self.equity = frame, start, 0.0, 0.0, 0.0

    def step(self, action: int) -> tuple[np.ndarray, float]:
        row = self.df.iloc[self.i]
        if action == 1:
            self.pos += 100
            self.cash -= 100 * row["ask_price_1"] + 0.3
        elif action == 2:
            self.pos -= 100
            self.cash += 100 * row["bid_price_1"] - 0.3
        self.i += 1
        row = self.df.iloc[self.i]
        mid = (row["ask_price_1"] + row["bid_price_1"]) / 2
        equity = self.cash + self.pos * mid
        reward, self.equity = equity - self.equity, equity
        obs = row[["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]].to_numpy(dtype=np.float32)
        return obs, reward


def run(envs: int, steps: int, seed: int = 0) -> dict[str, float]:
    cfg = load_config("params.yaml")
    day = load_day(cfg)
    # no loss halt: a halted environment stops trading and would flatter both simulators
    settings = dataclasses.replace(SimSettings.from_config(cfg), limits=dataclasses.replace(
        SimSettings.from_config(cfg).limits, max_daily_loss=math.inf, max_daily_drawdown=math.inf))
    rng = np.random.default_rng(seed)
    train = day.rows(0)
    starts = rng.integers(train[0], train[-1] - steps - 1, size=envs)
    acts = rng.choice(len(ACTIONS), size=(steps, envs), p=P)

    sim = BatchSim(day, settings, envs)
    sim.reset_all(starts, starts + steps)

    def vec() -> None:
        for k in range(steps):
            sim.step(acts[k])
            sim.observe()

    vw, vc = _timed(vec)
    n_obj = 20_000
    obj_acts = rng.choice(len(ACTIONS), size=n_obj + 1, p=P)
    s0 = int(train[0]) + 1000
    policy = AgentPolicy("bench", lambda obs, i: int(obj_acts[i - s0]), day, settings, start=s0)
    events = day.events.iloc[s0:s0 + n_obj + 1].reset_index(drop=True)
    t = cfg.trading
    ow, oc = _timed(lambda: run_backtest(events, np.full((len(events), 3), np.nan), policy,
                                         RiskEngine(settings.limits), Latency(t.feed_latency_s, t.order_latency_s),
                                         Fees(t.maker_fee_per_share, t.taker_fee_per_share), bootstrap=0))
    n_naive = 5_000
    naive = NaiveEnv(day.events, s0)
    naive_acts = rng.choice(len(ACTIONS), size=n_naive, p=P)
    nw, nc = _timed(lambda: [naive.step(int(a)) for a in naive_acts])
    assert not sim.halted.any() and policy.i == s0 + n_obj + 1, "a simulator halted: the numbers would be flattered"
    total = envs * steps
    out = {
        "envs": envs, "steps_per_env": steps,
        "vectorised_steps_per_s": total / vw, "vectorised_steps_per_cpu_s": total / vc,
        "objects_steps_per_s": (n_obj + 1) / ow, "objects_steps_per_cpu_s": (n_obj + 1) / oc,
        "naive_pandas_steps_per_s": n_naive / nw, "naive_pandas_steps_per_cpu_s": n_naive / nc,
    }
    out["ratio_vectorised_to_naive"] = out["vectorised_steps_per_cpu_s"] / out["naive_pandas_steps_per_cpu_s"]
    out["ratio_vectorised_to_objects"] = out["vectorised_steps_per_cpu_s"] / out["objects_steps_per_cpu_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run(args.envs, args.steps)
    for k, v in res.items():
        print(f"{k:34s} {v:,.1f}" if isinstance(v, float) else f"{k:34s} {v}")
    target = res["vectorised_steps_per_cpu_s"] >= 50_000
    print(f"vectorised / naive pandas: {res['ratio_vectorised_to_naive']:,.0f}x; "
          f"target 50,000 steps/s per core: {'met' if target else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
