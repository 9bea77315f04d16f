"""Benchmark: latency of one pre-trade risk check in process (target p99 < 50 us).

Every check runs every limit (stale-data guard, size, notional, band, position, rate) on a mix of
allowed and denied orders, timed one at a time with ``time.perf_counter_ns``.

    python bench/risk.py [--checks 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

import numpy as np

from hftpipe.trading.risk import RiskEngine, RiskLimits


def run(checks: int, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    eng = RiskEngine(RiskLimits(max_position=1e12, max_orders=1000, rate_window_s=0.001,
                                max_daily_loss=math.inf, max_daily_drawdown=math.inf))
    eng.on_mark("GOOG", 580.0, 0.0)
    orders = [(rng.choice((1, -1)), rng.choice((1, 100, 200)), rng.choice((None, 579.9, 580.1, 600.0)))
              for _ in range(1024)]
    out = np.empty(checks, dtype=np.int64)
    clock = time.perf_counter_ns
    now = 0.0
    for i in range(checks):
        side, qty, price = orders[i & 1023]
        now += 1e-5
        t0 = clock()
        eng.check("GOOG", side, qty, price, now, now, now)
        out[i] = clock() - t0
    us = out / 1e3
    allowed = eng.checks - sum(eng.denials.values())
    return {"checks": int(checks), "allowed": int(allowed), "denied": int(eng.checks - allowed),
            "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "p999_us": float(np.percentile(us, 99.9)), "mean_us": float(us.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    run(2000)  # warm-up
    res = run(args.checks)
    print(f"pre-trade risk check: {res['checks']} checks ({res['allowed']} allowed, {res['denied']} denied): "
          f"p50 {res['p50_us']:.2f} us, p99 {res['p99_us']:.2f} us, p99.9 {res['p999_us']:.2f} us, "
          f"mean {res['mean_us']:.2f} us; target p99 < 50 us: {'met' if res['p99_us'] < 50 else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
