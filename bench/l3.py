"""Benchmark: order events/s of the L3 book builder against a naive per-event rebuild, in one run.

Both run in this process on one core (CPU affinity pinned), on the shipped Bitstamp BTC/USD capture
(``data/raw/bitstamp-btcusd-l3-2026-05-02``: about 308k order events and trades after the closing rows).

- builder: :class:`hftpipe.data.bitstamp.L3Book` over the whole stream in one call (compiled once before
  timing), the top 10 levels written after every emitted event; best of ``--repeat`` runs.
- naive: the same event rules in plain Python, with the book rebuilt after every event by aggregating
  and sorting every resting order (what one writes without incremental price levels). It runs on
  ``--naive-events`` events after the starting snapshot and is extrapolated per event.

The two books are checked to agree on every event of the naive prefix where the builder emitted a row
before any number is printed. Times are this thread's CPU time (``time.thread_time``), so other
processes on the machine do not inflate them.

    python bench/l3.py [--capture DIR] [--naive-events 1500] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from hftpipe.data.bitstamp import (
    ASK,
    BID,
    CHANGED,
    DELETED,
    OUTLIER_PRICE,
    TRADE,
    L3Book,
    capture_events,
    find_capture,
)

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "data" / "raw" / "bitstamp-btcusd-l3-2026-05-02"


def naive_rebuild(orders: dict[int, tuple[int, float, int]], levels: int) -> list[float]:
    """Top-L book from scratch: aggregate every resting order by price, sort, cut."""
    agg: list[dict[float, int]] = [{}, {}]
    for side, price, qty in orders.values():
        book = agg[side]
        book[price] = book.get(price, 0) + qty
    bids = sorted(agg[BID].items(), reverse=True)[:levels]
    asks = sorted(agg[ASK].items())[:levels]
    row: list[float] = []
    for k in range(levels):
        ap, asz = asks[k] if k < len(asks) else (math.nan, 0)
        bp, bsz = bids[k] if k < len(bids) else (math.nan, 0)
        row += [ap, float(asz), bp, float(bsz)]
    return row


def naive_apply(orders: dict[int, tuple[int, float, int]], a: int, s: int, oid: int, p: float, q: int) -> None:
    """The builder's event rules (unknown deletes ignored, unknown changes adopted, outliers ignored)."""
    if not (0.0 < p < OUTLIER_PRICE):
        if a == CHANGED:
            orders.pop(oid, None)
        return
    if a == TRADE:
        return
    if a == DELETED or (a == CHANGED and q <= 0):
        orders.pop(oid, None)
    elif q > 0:
        orders[oid] = (s, p, q)


def run(capture: Path, naive_events: int, repeat: int, levels: int = 10) -> dict:
    stream = capture_events(find_capture(capture))
    n = len(stream)
    args = (stream.action, stream.side, stream.order_id, stream.price, stream.size, stream.emit)
    L3Book(levels).apply(*(x[:100] for x in args))  # compile (or load the cache) outside the timing

    best_cpu, best_wall, rows = math.inf, math.inf, None
    for _ in range(repeat):
        book = L3Book(levels)
        c0, w0 = time.thread_time(), time.perf_counter()
        rows = book.apply(*args)
        best_cpu = min(best_cpu, time.thread_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    assert rows is not None

    # Naive: load the starting snapshot (not timed), then rebuild after each of the next events.
    start = int(np.flatnonzero(stream.emit == 1)[0])
    orders: dict[int, tuple[int, float, int]] = {}
    a, s, i_, p, q = (x.tolist() for x in args[:5])
    for i in range(start):
        naive_apply(orders, a[i], s[i], i_[i], p[i], q[i])
    stop = min(n, start + naive_events)
    naive_books: dict[int, list[float]] = {}
    c0, w0 = time.thread_time(), time.perf_counter()
    for i in range(start, stop):
        naive_apply(orders, a[i], s[i], i_[i], p[i], q[i])
        naive_books[i] = naive_rebuild(orders, levels)
    naive_cpu = time.thread_time() - c0
    naive_wall = time.perf_counter() - w0

    checked = 0
    for r, src in enumerate(rows.source.tolist()):
        if start <= src < stop and rows.event_type[r] != 4:
            np.testing.assert_array_equal(rows.book[r], np.array(naive_books[src]), err_msg=f"event {src}")
            checked += 1
    if checked == 0:
        raise SystemExit("no row to compare: raise --naive-events")

    builder_rate = n / best_cpu
    naive_rate = (stop - start) / naive_cpu
    return {
        "events": n, "rows": len(rows), "levels": levels,
        "builder_events_per_s": builder_rate, "builder_cpu_s": best_cpu, "builder_wall_s": best_wall,
        "naive_events": stop - start, "naive_events_per_s": naive_rate, "naive_cpu_s": naive_cpu,
        "naive_wall_s": naive_wall, "speedup": builder_rate / naive_rate, "rows_checked": checked,
        "python": platform.python_version(), "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=CAPTURE)
    parser.add_argument("--naive-events", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    ns = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    res = run(ns.capture, ns.naive_events, ns.repeat)
    print(f"L3 builder : {res['builder_events_per_s'] / 1e6:6.2f} M order events/s  "
          f"({res['events']:,} events -> {res['rows']:,} rows in {res['builder_cpu_s']:.3f} s CPU, "
          f"{res['builder_wall_s']:.3f} s wall)")
    print(f"naive      : {res['naive_events_per_s'] / 1e3:6.2f} k order events/s  "
          f"({res['naive_events']:,} events, full re-sort of the resting orders after each)")
    print(f"ratio      : {res['speedup']:,.0f}x   (books agree on {res['rows_checked']:,} rows)")
    if ns.json:
        ns.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
