"""Benchmark: events/s of the full feature set, vectorised (numpy) vs a naive per-row Python loop.

Everything runs in one process on one core (BLAS/OpenMP threads 1, CPU affinity pinned to one core) on
the GOOG 2012-06-21 10-level LOBSTER sample. The naive implementation computes the same columns row by
row in plain Python (running prefix sums, O(1) per row and window, the way one would write it without
numpy). It is timed two ways, from the same loader arrays the vectorised code gets: converting them to
Python lists first (conversion included in the time), and indexing the numpy arrays row by row. Naive
loops run on a prefix of the file and are extrapolated per event. All outputs are checked to agree on
that prefix before any number is printed.

Times are CPU time of this thread (``time.thread_time``), so other processes sharing the machine do not
inflate them; wall-clock times are printed alongside.

    python bench/features.py [--source ZIP] [--naive-rows 20000] [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import os

# One core: thread pools must be sized before numpy is imported (only when run as the benchmark; the
# tests import this file for its naive loop and must not change their own environment).
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hftpipe.data import load_lobster
from hftpipe.features import compute_features, feature_names

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
WINDOWS = (10, 50, 100)
TARGET_RATIO = 200.0
TARGET_RATE = 5e6


def naive_features(book: Sequence[Sequence[float]], event_type: Sequence[int], size: Sequence[int],
                   direction: Sequence[int], windows: tuple[int, ...]) -> list[list[float]]:
    """The same columns as ``compute_features`` (mid first), one Python loop over the rows.

    Works on Python lists or numpy arrays (then every element read is a numpy scalar).
    """
    levels = len(book[0]) // 4
    rows: list[list[float]] = []
    p_ofi, p_signed, p_count, p_sq = [0.0], [0.0], [0.0], [0.0]  # prefix sums, leading 0
    log_mids: list[float] = []
    prev_bid_p = prev_bid_q = prev_ask_p = prev_ask_q = 0.0
    for t, row in enumerate(book):
        ask_p, ask_q, bid_p, bid_q = row[0], row[1], row[2], row[3]
        mid = (ask_p + bid_p) * 0.5
        total = ask_q + bid_q
        micro = (ask_p * bid_q + bid_p * ask_q) / total if total > 0 else math.nan
        out = [mid, ask_p - bid_p, micro]
        per, cum = [], []
        bids = asks = 0.0
        for k in range(levels):
            b, a = row[4 * k + 3], row[4 * k + 1]
            per.append((b - a) / (b + a) if b + a > 0 else 0.0)
            bids += b
            asks += a
            cum.append((bids - asks) / (bids + asks) if bids + asks > 0 else 0.0)
        out += per
        out += cum
        # Cont-Kukanov-Stoikov increment; an empty side is price -inf (bid) / +inf (ask).
        bp = -math.inf if math.isnan(bid_p) else bid_p
        ap = math.inf if math.isnan(ask_p) else ask_p
        if t == 0:
            e = 0.0
        else:
            e = ((bid_q if bp >= prev_bid_p else 0.0) - (prev_bid_q if bp <= prev_bid_p else 0.0)
                 - (ask_q if ap <= prev_ask_p else 0.0) + (prev_ask_q if ap >= prev_ask_p else 0.0))
        prev_bid_p, prev_bid_q, prev_ask_p, prev_ask_q = bp, bid_q, ap, ask_q
        executed = event_type[t] == 4 or event_type[t] == 5
        signed = -direction[t] * size[t] if executed else 0
        log_mid = math.log(mid)
        step = log_mid - log_mids[-1] if t else 0.0
        log_mids.append(log_mid)
        p_ofi.append(p_ofi[-1] + e)
        p_signed.append(p_signed[-1] + signed)
        p_count.append(p_count[-1] + (1.0 if executed else 0.0))
        p_sq.append(p_sq[-1] + step * step)
        for w in windows:
            j = t - w + 1 if t >= w else 0  # prefix index of the window's first row (warm-up: row 0)
            vol = p_sq[t + 1] - p_sq[j]
            out += [
                p_ofi[t + 1] - p_ofi[j],
                log_mid - log_mids[t - w if t >= w else 0],
                math.sqrt(max(vol, 0.0)),
                p_signed[t + 1] - p_signed[j],
                (p_count[t + 1] - p_count[j]) / w,
            ]
        rows.append(out)
    return rows


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned (no sched_setaffinity)"


@dataclass
class Timing:
    name: str
    events: int
    cpu: list[float]
    wall: list[float]

    @property
    def rate(self) -> float:
        return self.events / min(self.cpu)


def _timed(name: str, events: int, repeat: int, fn: Callable[[], object]) -> tuple[Timing, object]:
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        result = fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return Timing(name, events, cpu, wall), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="LOBSTER zip (default: GOOG 10 levels)")
    parser.add_argument("--naive-rows", type=int, default=20_000, help="prefix the naive loops run on")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of the vectorised code (naive: 3)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    pinned = _pin_one_core()
    table = load_lobster(args.source)
    frame = table.frame
    book = table.book()
    event_type = frame["type"].to_numpy()
    size = frame["size"].to_numpy()
    direction = frame["direction"].to_numpy()
    n = len(book)
    names = ["mid", *feature_names(table.levels, WINDOWS)]

    compute_features(book, event_type, size, direction, WINDOWS)  # warm-up (page faults, caches)
    vec, vec_out = _timed("vectorised (numpy)", n, args.repeat,
                          lambda: compute_features(book, event_type, size, direction, WINDOWS))
    m = min(args.naive_rows, n)
    arrays = (book[:m], event_type[:m], size[:m], direction[:m])
    lists, lists_out = _timed("naive loop, Python lists", m, 3,
                              lambda: naive_features(*(a.tolist() for a in arrays), WINDOWS))
    rows, rows_out = _timed("naive loop, ndarray rows", m, 1, lambda: naive_features(*arrays, WINDOWS))

    got = np.column_stack([vec_out[name][:m] for name in names])  # type: ignore[index]
    for label, naive in (("lists", lists_out), ("ndarray rows", rows_out)):
        ref = np.asarray(naive, dtype=np.float64)
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True):
            bad = np.argwhere(~np.isclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True))
            raise SystemExit(f"vectorised and naive ({label}) features disagree, e.g. at (row, column) "
                             f"{bad[:5].tolist()}")

    print(f"feature set: {len(names)} columns (mid + {len(names) - 1} features), {table.meta.symbol} "
          f"{table.meta.date}, {table.levels} levels, windows {WINDOWS}, {n:,} events")
    print(f"one core ({pinned}), BLAS/OpenMP threads 1, numpy {np.__version__}, Python {platform.python_version()}; "
          f"CPU time of the thread, best of {args.repeat} (naive lists: 3, ndarray rows: 1)")
    print(f"all three agree on the first {m:,} events (rtol 1e-9)")
    print()
    print(f"{'implementation':<28}{'events':>10}{'CPU s':>10}{'wall s':>10}{'events/s':>14}{'vectorised is':>15}")
    for t in (vec, lists, rows):
        best = int(np.argmin(t.cpu))
        ratio = "" if t is vec else f"{vec.rate / t.rate:,.0f}x faster"
        print(f"{t.name:<28}{t.events:>10,}{t.cpu[best]:>10.4f}{t.wall[best]:>10.4f}{t.rate:>14,.0f}{ratio:>15}")
    print()
    if m < n:
        print(f"naive loops ran on the first {m:,} events, extrapolated per event "
              f"(full file: about {n / lists.rate:.1f} s with lists, {n / rows.rate:.1f} s with ndarray rows)")
    print(f"vectorised median of {args.repeat}: {statistics.median(vec.cpu):.4f} CPU s "
          f"({n / statistics.median(vec.cpu):,.0f} events/s)")
    for t in (lists, rows):
        ratio = vec.rate / t.rate
        print(f"speed-up vs {t.name}: {ratio:,.0f}x (target >= {TARGET_RATIO:.0f}x: "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    print(f"vectorised: {vec.rate / 1e6:.2f} M events/s "
          f"(target >= {TARGET_RATE / 1e6:.0f} M: {'met' if vec.rate >= TARGET_RATE else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({
            "source": str(args.source), "events": n, "columns": len(names), "windows": list(WINDOWS),
            "pinned": pinned, "timings": [
                {"name": t.name, "events": t.events, "cpu_s": t.cpu, "wall_s": t.wall, "events_per_s": t.rate}
                for t in (vec, lists, rows)],
            "speedup_vs_lists": vec.rate / lists.rate, "speedup_vs_ndarray_rows": vec.rate / rows.rate,
        }, indent=2))


if __name__ == "__main__":
    main()
